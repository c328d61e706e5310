//! The encoder architecture, described once. The ONNX writer and the trainer both walk
//! this description, so the exported graph and the trained model cannot drift apart.
//!
//! Two backbones ([`Backbone`]), each followed by the same projector. A Vision Transformer
//! ([`vit`]); or a small ResNet: stem (conv-BN-ReLU, optional 2x2 max-pool), a chain of basic blocks
//! (conv-BN-ReLU-conv-BN plus shortcut, add, ReLU), global average pooling (the
//! *representation*), and an MLP projector (the *projection*, used only by the SSL loss):
//! Linear, ReLU, ..., Linear, or with [`ArchSpec::projector_bn`] Linear, BN, ReLU, ...,
//! Linear (SimSiam's and BYOL's projector; both collapse without it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

pub mod vit;

pub use vit::VitSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StemSpec {
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    #[serde(default)]
    pub max_pool: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSpec {
    pub channels: usize,
    pub stride: usize,
}

/// The ResNet backbone: the stem, then basic blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetSpec {
    pub stem: StemSpec,
    pub blocks: Vec<BlockSpec>,
}

/// The backbone before the projector. In a record a ResNet's fields sit beside the
/// architecture's own (`"stem"`, `"blocks"`, as before ViTs existed), a ViT's under `"vit"`;
/// reading one dispatches on the `"vit"` key, so that a malformed record's error names the
/// field at fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Backbone {
    ResNet(ResNetSpec),
    Vit { vit: VitSpec },
}

impl<'de> Deserialize<'de> for Backbone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        match fields.remove("vit") {
            Some(_) if fields.contains_key("stem") || fields.contains_key("blocks") => Err(
                D::Error::custom("an architecture has a ViT (\"vit\") or a ResNet (\"stem\", \"blocks\"), not both"),
            ),
            Some(vit) => serde_json::from_value(vit)
                .map(|vit| Self::Vit { vit })
                .map_err(|e| D::Error::custom(format!("vit: {e}"))),
            None => serde_json::from_value(serde_json::Value::Object(fields))
                .map(Self::ResNet)
                .map_err(D::Error::custom),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchSpec {
    pub name: String,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    #[serde(flatten)]
    pub backbone: Backbone,
    /// Widths of the projector's linear layers (ReLU between them).
    pub projector: Vec<usize>,
    /// Batch norm after each hidden linear layer of the projector, before its ReLU (as
    /// `nn.Sequential(Linear, BatchNorm1d, ReLU, ..., Linear)`; Chen & He 2021, section 3;
    /// Grill et al. 2020, section 3.3). The trainer gives the methods' predictors the same.
    /// Absent from older records: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub projector_bn: bool,
    #[serde(default = "default_eps")]
    pub bn_eps: f32,
}

fn default_eps() -> f32 {
    1e-5
}

/// A named parameter tensor, row-major, with PyTorch's layouts
/// (conv `[out, in, kh, kw]`, linear `[out, in]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::Param(format!(
                "tensor of shape {shape:?} given {} values",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }
}

/// Parameters by name, e.g. `blocks.0.conv1.weight`, `stem.bn.running_var`.
pub type Weights = BTreeMap<String, Tensor>;

/// What kind of initialisation a parameter gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    ConvWeight,
    /// A convolution's bias (a ViT's patch embedding).
    ConvBias,
    BnWeight,
    BnBias,
    BnMean,
    BnVar,
    LinearWeight,
    LinearBias,
    /// Layer norm scale (initially 1) and shift (initially 0).
    LnWeight,
    LnBias,
    /// A learned token or position embedding (truncated normal, std 0.02, as timm's ViT).
    Embedding,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

/// A batch norm's four parameters (`{bn}.weight`, `.bias`, `.running_mean`, `.running_var`)
/// over `width` channels.
fn bn_params(out: &mut Vec<ParamInfo>, bn: &str, width: usize) {
    for (suffix, kind) in [
        ("weight", ParamKind::BnWeight),
        ("bias", ParamKind::BnBias),
        ("running_mean", ParamKind::BnMean),
        ("running_var", ParamKind::BnVar),
    ] {
        out.push(ParamInfo {
            name: format!("{bn}.{suffix}"),
            shape: vec![width],
            kind,
        });
    }
}

impl ResNetSpec {
    /// The backbone's parameters for `in_channels` input channels, in a fixed order.
    fn params(&self, in_channels: usize) -> Vec<ParamInfo> {
        let mut all = Vec::new();
        let out = &mut all;
        let conv_bn =
            |out: &mut Vec<ParamInfo>, prefix: &str, bn: &str, o: usize, i: usize, k: usize| {
                out.push(ParamInfo {
                    name: format!("{prefix}.weight"),
                    shape: vec![o, i, k, k],
                    kind: ParamKind::ConvWeight,
                });
                bn_params(out, bn, o);
            };
        conv_bn(
            out,
            "stem.conv",
            "stem.bn",
            self.stem.channels,
            in_channels,
            self.stem.kernel,
        );
        let mut c_in = self.stem.channels;
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            conv_bn(
                out,
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                b.channels,
                c_in,
                3,
            );
            conv_bn(
                out,
                &format!("{p}.conv2"),
                &format!("{p}.bn2"),
                b.channels,
                b.channels,
                3,
            );
            if self.block_has_projection_shortcut(i) {
                conv_bn(
                    out,
                    &format!("{p}.shortcut.conv"),
                    &format!("{p}.shortcut.bn"),
                    b.channels,
                    c_in,
                    1,
                );
            }
            c_in = b.channels;
        }
        all
    }

    /// Whether block `i` needs a 1x1 conv shortcut (stride or width change).
    pub fn block_has_projection_shortcut(&self, i: usize) -> bool {
        let c_in = if i == 0 {
            self.stem.channels
        } else {
            self.blocks[i - 1].channels
        };
        self.blocks[i].stride != 1 || self.blocks[i].channels != c_in
    }

    /// [`ArchSpec::forward_flops`] of the backbone alone, for `in_channels` x `height` x
    /// `width` inputs.
    fn forward_flops(&self, in_channels: usize, height: usize, width: usize) -> u64 {
        let conv = |c_out: usize, c_in: usize, k: usize, h: usize, w: usize| {
            2 * (c_out * c_in * k * k * h * w) as u64
        };
        let (mut h, mut w) = (
            conv_out(height, self.stem.kernel, self.stem.stride),
            conv_out(width, self.stem.kernel, self.stem.stride),
        );
        let mut flops = conv(self.stem.channels, in_channels, self.stem.kernel, h, w);
        if self.stem.max_pool {
            h /= 2;
            w /= 2;
        }
        let mut c_in = self.stem.channels;
        for (i, b) in self.blocks.iter().enumerate() {
            let (ho, wo) = (conv_out(h, 3, b.stride), conv_out(w, 3, b.stride));
            flops += conv(b.channels, c_in, 3, ho, wo) + conv(b.channels, b.channels, 3, ho, wo);
            if self.block_has_projection_shortcut(i) {
                flops += conv(b.channels, c_in, 1, ho, wo);
            }
            (h, w, c_in) = (ho, wo, b.channels);
        }
        flops
    }
}

impl ArchSpec {
    /// The 28x28x1 preset (MNIST, Fashion-MNIST): channels 32-64-128, ~0.33M parameters.
    pub fn resnet_mini_28() -> Self {
        Self {
            name: "resnet-mini-28x28x1".into(),
            in_channels: 1,
            height: 28,
            width: 28,
            backbone: Backbone::ResNet(ResNetSpec {
                stem: StemSpec {
                    channels: 32,
                    kernel: 3,
                    stride: 1,
                    max_pool: false,
                },
                blocks: vec![
                    BlockSpec {
                        channels: 32,
                        stride: 1,
                    },
                    BlockSpec {
                        channels: 64,
                        stride: 2,
                    },
                    BlockSpec {
                        channels: 128,
                        stride: 2,
                    },
                ],
            }),
            projector: vec![128, 64],
            projector_bn: false,
            bn_eps: 1e-5,
        }
    }

    /// The 32x32x3 preset (CIFAR-like).
    pub fn resnet_mini_32() -> Self {
        Self {
            name: "resnet-mini-32x32x3".into(),
            in_channels: 3,
            height: 32,
            width: 32,
            ..Self::resnet_mini_28()
        }
    }

    /// The names [`Self::preset`] knows.
    pub const PRESETS: [&'static str; 4] = [
        "resnet-mini-28x28x1",
        "resnet-mini-32x32x3",
        "vit-tiny-28x28x1",
        "vit-tiny-32x32x3",
    ];

    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "resnet-mini-28x28x1" => Ok(Self::resnet_mini_28()),
            "resnet-mini-32x32x3" => Ok(Self::resnet_mini_32()),
            "vit-tiny-28x28x1" => Ok(vit::vit_tiny_28()),
            "vit-tiny-32x32x3" => Ok(vit::vit_tiny_32()),
            other => Err(Error::Param(format!(
                "unknown architecture '{other}' ({})",
                Self::PRESETS.join(", ")
            ))),
        }
    }

    /// The ResNet backbone, if this is one.
    pub fn resnet(&self) -> Option<&ResNetSpec> {
        match &self.backbone {
            Backbone::ResNet(r) => Some(r),
            Backbone::Vit { .. } => None,
        }
    }

    /// The ResNet backbone to change, if this is one.
    pub fn resnet_mut(&mut self) -> Option<&mut ResNetSpec> {
        match &mut self.backbone {
            Backbone::ResNet(r) => Some(r),
            Backbone::Vit { .. } => None,
        }
    }

    /// The ViT backbone, if this is one.
    pub fn vit(&self) -> Option<&VitSpec> {
        match &self.backbone {
            Backbone::Vit { vit } => Some(vit),
            Backbone::ResNet(_) => None,
        }
    }

    /// Width of the representation: the last block's channels (ResNet), the embedding width
    /// (ViT, the class token).
    pub fn representation_dim(&self) -> usize {
        match &self.backbone {
            Backbone::ResNet(r) => r.blocks.last().map_or(r.stem.channels, |b| b.channels),
            Backbone::Vit { vit } => vit.width,
        }
    }

    /// Names of the per-layer outputs: for a ResNet `layer1` after the stem, then one per
    /// block; for a ViT `block1.attn` and `block1.mlp` (the residual stream after block 1's
    /// attention and after its MLP), then block 2's...
    pub fn layer_names(&self) -> Vec<String> {
        match &self.backbone {
            Backbone::ResNet(r) => (1..=r.blocks.len() + 1)
                .map(|i| format!("layer{i}"))
                .collect(),
            Backbone::Vit { vit } => vit.layer_names(),
        }
    }

    /// Every parameter in a fixed order, with its shape and kind.
    pub fn params(&self) -> Vec<ParamInfo> {
        let mut out = match &self.backbone {
            Backbone::ResNet(r) => r.params(self.in_channels),
            Backbone::Vit { vit } => vit.params(self),
        };
        self.projector_params(&mut out);
        out
    }

    fn projector_params(&self, out: &mut Vec<ParamInfo>) {
        let mut d_in = self.representation_dim();
        for (j, &d) in self.projector.iter().enumerate() {
            let p = self.projector_linear(j);
            out.push(ParamInfo {
                name: format!("{p}.weight"),
                shape: vec![d, d_in],
                kind: ParamKind::LinearWeight,
            });
            out.push(ParamInfo {
                name: format!("{p}.bias"),
                shape: vec![d],
                kind: ParamKind::LinearBias,
            });
            if let Some(bn) = self.projector_norm(j) {
                bn_params(out, &bn, d);
            }
            d_in = d;
        }
    }

    /// The name of the projector's `j`-th linear layer, indexed as in PyTorch's
    /// `nn.Sequential(Linear, ReLU, Linear, ...)` (`projector.0`, `projector.2`...) or, with
    /// [`Self::projector_bn`], `nn.Sequential(Linear, BatchNorm1d, ReLU, ...)`
    /// (`projector.0`, `projector.3`...).
    pub fn projector_linear(&self, j: usize) -> String {
        let stride = if self.projector_bn { 3 } else { 2 };
        format!("projector.{}", stride * j)
    }

    /// The batch norm after the projector's `j`-th linear layer (`projector.1`,
    /// `projector.4`...): only with [`Self::projector_bn`], and never after the last layer.
    pub fn projector_norm(&self, j: usize) -> Option<String> {
        (self.projector_bn && j + 1 < self.projector.len())
            .then(|| format!("projector.{}", 3 * j + 1))
    }

    /// Floating-point operations of one view's forward pass up to the projection: 2 per
    /// multiply-add of every convolution (stem, both convolutions of each block, 1x1
    /// shortcuts) and every projector layer, as FLOP counts are usually quoted (e.g. the
    /// ResNet paper's "FLOPs" counted multiply-adds; this counts each as 2). Batch norm is
    /// folded into the convolutions and linears at export; ReLU, the residual add and the
    /// poolings are left out (they are elementwise, a fraction of a percent here). Unit: FLOPs per view
    /// (one image through one encoder). `scripts/bench-score.sh` divides measured throughput
    /// by it to compare the forward pass with the machine's matrix-multiply rate.
    pub fn forward_flops(&self) -> u64 {
        let mut flops = match &self.backbone {
            Backbone::ResNet(r) => r.forward_flops(self.in_channels, self.height, self.width),
            Backbone::Vit { vit } => vit.forward_flops(self),
        };
        let mut d_in = self.representation_dim();
        for &d in &self.projector {
            flops += 2 * (d * d_in) as u64;
            d_in = d;
        }
        flops
    }

    /// Checks the description itself.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Param(format!("architecture {}: {m}", self.name)));
        if !matches!(self.in_channels, 1 | 3) {
            return bad(format!("in_channels {} (1 or 3)", self.in_channels));
        }
        if self.height == 0 || self.width == 0 {
            return bad("zero input size".into());
        }
        match &self.backbone {
            Backbone::ResNet(r) => {
                if r.stem.kernel.is_multiple_of(2) || r.stem.stride == 0 || r.stem.channels == 0 {
                    return bad("stem needs an odd kernel, positive stride and channels".into());
                }
                if r.blocks.iter().any(|b| b.stride == 0 || b.channels == 0) {
                    return bad("blocks need positive stride and channels".into());
                }
            }
            Backbone::Vit { vit } => vit.validate(self.height, self.width).or_else(bad)?,
        }
        Ok(())
    }

    /// Checks that `w` holds exactly this architecture's parameters with the right shapes.
    pub fn check_weights(&self, w: &Weights) -> Result<()> {
        let params = self.params();
        for p in &params {
            match w.get(&p.name) {
                None => return Err(Error::Param(format!("weights lack '{}'", p.name))),
                Some(t) if t.shape != p.shape => {
                    return Err(Error::Param(format!(
                        "weight '{}' has shape {:?}, the architecture needs {:?}",
                        p.name, t.shape, p.shape
                    )))
                }
                Some(_) => {}
            }
        }
        if w.len() != params.len() {
            let extra: Vec<&String> = w
                .keys()
                .filter(|k| !params.iter().any(|p| &p.name == *k))
                .collect();
            return Err(Error::Param(format!(
                "weights have unknown entries {extra:?}"
            )));
        }
        Ok(())
    }

    /// Seeded random weights: Kaiming-normal convs, PyTorch-default linears, and batch-norm
    /// statistics and layer norms drawn away from the identity so that folding and
    /// normalising them are really exercised.
    pub fn random_weights(&self, seed: u64) -> Weights {
        let mut rng = Rng::from_seed(seed);
        let mut normal = move |std: f64| {
            // Box-Muller.
            let u1 = rng.next_f64().max(1e-12);
            let u2 = rng.next_f64();
            (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        };
        self.params()
            .into_iter()
            .map(|p| {
                let n: usize = p.shape.iter().product();
                let data: Vec<f32> = match p.kind {
                    ParamKind::ConvWeight => {
                        let fan_out = (p.shape[0] * p.shape[2] * p.shape[3]) as f64;
                        (0..n).map(|_| normal((2.0 / fan_out).sqrt())).collect()
                    }
                    ParamKind::LinearWeight => {
                        let fan_in = p.shape[1].max(1) as f64;
                        (0..n).map(|_| normal(1.0 / fan_in.sqrt())).collect()
                    }
                    ParamKind::LinearBias | ParamKind::ConvBias => {
                        (0..n).map(|_| normal(0.05)).collect()
                    }
                    ParamKind::BnWeight | ParamKind::LnWeight => {
                        (0..n).map(|_| 1.0 + normal(0.1)).collect()
                    }
                    ParamKind::BnBias | ParamKind::BnMean | ParamKind::LnBias => {
                        (0..n).map(|_| normal(0.1)).collect()
                    }
                    // Larger than training's 0.02, so that a wrong position shows.
                    ParamKind::Embedding => (0..n).map(|_| normal(0.5)).collect(),
                    ParamKind::BnVar => (0..n).map(|_| 1.0 + normal(0.2).abs()).collect(),
                };
                (
                    p.name,
                    Tensor {
                        shape: p.shape,
                        data,
                    },
                )
            })
            .collect()
    }
}

/// Output size of a convolution with kernel `k` (odd), padding `k / 2` and stride `s` over
/// `n` pixels (PyTorch's formula with dilation 1).
pub(crate) fn conv_out(n: usize, k: usize, s: usize) -> usize {
    (n + 2 * (k / 2) - k) / s + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_count_every_multiply_add_twice() {
        // resnet-mini-28x28x1 with a stride-2 stem (the default bundle), by hand:
        // stem 32x1x3x3 at 14x14; block 0 two 32x32x3x3 at 14x14; block 1 64x32x3x3,
        // 64x64x3x3 and a 64x32 shortcut at 7x7; block 2 128x64x3x3, 128x128x3x3 and a
        // 128x64 shortcut at 4x4; projector 128->128->64.
        let macs = 32 * 9 * 196
            + 2 * 32 * 32 * 9 * 196
            + (64 * 32 * 9 + 64 * 64 * 9 + 64 * 32) * 49
            + (128 * 64 * 9 + 128 * 128 * 9 + 128 * 64) * 16
            + 128 * 128
            + 128 * 64;
        let mut a = ArchSpec::resnet_mini_28();
        a.resnet_mut().expect("resnet").stem.stride = 2;
        assert_eq!(a.forward_flops(), 2 * macs as u64);
        // Stride 1: the stem and block 0 at 28x28, block 1 at 14x14, block 2 at 7x7.
        let body = |s0: usize, s1: usize, s2: usize| {
            2 * 32 * 32 * 9 * s0
                + (64 * 32 * 9 + 64 * 64 * 9 + 64 * 32) * s1
                + (128 * 64 * 9 + 128 * 128 * 9 + 128 * 64) * s2
        };
        let head = 128 * 128 + 128 * 64;
        let one = ArchSpec::resnet_mini_28().forward_flops();
        assert_eq!(one, 2 * (32 * 9 * 784 + body(784, 196, 49) + head) as u64);
        // A 2x2 max-pool after a stride-1 stem: the stem at 28x28, the blocks as with stride 2.
        let mut pooled = ArchSpec::resnet_mini_28();
        pooled.resnet_mut().expect("resnet").stem.max_pool = true;
        assert_eq!(
            pooled.forward_flops(),
            2 * (32 * 9 * 784 + body(196, 49, 16) + head) as u64
        );
    }

    #[test]
    fn preset_28_has_the_documented_size() {
        let a = ArchSpec::resnet_mini_28();
        a.validate().expect("valid");
        let n: usize = a
            .params()
            .iter()
            .filter(|p| p.kind != ParamKind::BnMean && p.kind != ParamKind::BnVar)
            .map(|p| p.shape.iter().product::<usize>())
            .sum();
        // Convs 305,440 + batch norm 1,344 (affine) + projector 24,768, counted by hand.
        assert_eq!(n, 305_440 + 1_344 + 24_768);
        assert_eq!(a.representation_dim(), 128);
        assert_eq!(a.layer_names(), ["layer1", "layer2", "layer3", "layer4"]);
    }

    #[test]
    fn a_projector_with_batch_norm_is_named_as_pytorch_sequential_names_it() {
        let mut a = ArchSpec::resnet_mini_28();
        a.projector = vec![96, 80, 64];
        let linears = |a: &ArchSpec| (0..3).map(|j| a.projector_linear(j)).collect::<Vec<_>>();
        assert_eq!(linears(&a), ["projector.0", "projector.2", "projector.4"]);
        assert_eq!(a.projector_norm(0), None);
        a.projector_bn = true;
        assert_eq!(linears(&a), ["projector.0", "projector.3", "projector.6"]);
        let norms: Vec<_> = (0..3).map(|j| a.projector_norm(j)).collect();
        assert_eq!(
            norms,
            [Some("projector.1".into()), Some("projector.4".into()), None]
        );
        let names: Vec<String> = a
            .params()
            .into_iter()
            .filter(|p| p.name.starts_with("projector."))
            .map(|p| p.name)
            .collect();
        assert_eq!(names.len(), 3 * 2 + 2 * 4);
        assert!(names.contains(&"projector.4.running_var".to_string()));
        a.check_weights(&a.random_weights(1)).expect("complete");
        // An older record (no field) reads as no batch norm, and a record without it is
        // written as before the field existed.
        let plain = ArchSpec::resnet_mini_28();
        let json = serde_json::to_string(&plain).expect("json");
        assert!(!json.contains("projector_bn"));
        let back: ArchSpec = serde_json::from_str(&json).expect("read");
        assert!(!back.projector_bn);
        assert!(serde_json::to_string(&a)
            .expect("json")
            .contains("\"projector_bn\":true"));
    }

    #[test]
    fn random_weights_match_the_description_and_are_seeded() {
        let a = ArchSpec::resnet_mini_32();
        let w = a.random_weights(1);
        a.check_weights(&w).expect("complete");
        assert_eq!(w, a.random_weights(1));
        assert_ne!(w, a.random_weights(2));
        let mut missing = w.clone();
        missing.remove("blocks.1.shortcut.conv.weight");
        assert!(a.check_weights(&missing).is_err());
        let mut wrong = w;
        wrong.insert(
            "stem.conv.weight".into(),
            Tensor {
                shape: vec![1],
                data: vec![0.0],
            },
        );
        assert!(a.check_weights(&wrong).is_err());
    }
}
