//! A Vision Transformer backbone (Dosovitskiy et al. 2021), as timm's `VisionTransformer`
//! builds it and names its parameters: a patch embedding (a convolution with kernel and stride
//! the patch size), a class token, learned position embeddings, pre-norm blocks (layer norm,
//! multi-head self-attention, residual add; layer norm, MLP with GELU, residual add) and a
//! final layer norm. The representation is the class token after the final norm; the
//! projector reads it as it reads a ResNet's pooled features.

use serde::{Deserialize, Serialize};

use super::{ArchSpec, Backbone, ParamInfo, ParamKind};

/// The transformer's sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitSpec {
    /// Patch side in pixels; divides the image's height and width.
    pub patch: usize,
    /// Token width (embedding dimension) `D`.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads; divides `width`.
    pub heads: usize,
    /// Hidden width of each block's MLP (timm's `mlp_ratio` times `width`).
    pub mlp_width: usize,
    /// Layer norm epsilon (timm's ViT: 1e-6).
    #[serde(default = "default_ln_eps")]
    pub ln_eps: f32,
}

fn default_ln_eps() -> f32 {
    1e-6
}

/// `vit-tiny-28x28x1`: 7x7 patches of a 28x28 greyscale image (16 patches and the class
/// token), width 96, 6 blocks of 3 heads, MLP 384: about as many FLOPs per image as the
/// default `resnet-mini` with a stride-2 stem, so that it trains on 2 cores.
pub fn vit_tiny_28() -> ArchSpec {
    ArchSpec {
        name: "vit-tiny-28x28x1".into(),
        in_channels: 1,
        height: 28,
        width: 28,
        backbone: Backbone::Vit {
            vit: VitSpec {
                patch: 7,
                width: 96,
                depth: 6,
                heads: 3,
                mlp_width: 384,
                ln_eps: default_ln_eps(),
            },
        },
        projector: vec![128, 64],
        projector_bn: false,
        bn_eps: 1e-5,
    }
}

/// `vit-tiny-32x32x3`: 4x4 patches of a 32x32 colour image (64 patches and the class token),
/// otherwise as [`vit_tiny_28`]; the usual patch size of ViTs trained on CIFAR-10.
pub fn vit_tiny_32() -> ArchSpec {
    let mut a = vit_tiny_28();
    a.name = "vit-tiny-32x32x3".into();
    a.in_channels = 3;
    a.height = 32;
    a.width = 32;
    if let Backbone::Vit { vit } = &mut a.backbone {
        vit.patch = 4;
    }
    a
}

impl VitSpec {
    /// Patches per image for `height` x `width` inputs.
    pub fn patches(&self, height: usize, width: usize) -> usize {
        (height / self.patch) * (width / self.patch)
    }

    /// Tokens per image: the patches and the class token.
    pub fn tokens(&self, height: usize, width: usize) -> usize {
        self.patches(height, width) + 1
    }

    /// The per-layer outputs: the residual stream after each block's attention
    /// (`block1.attn`) and after its MLP (`block1.mlp`), blocks counted from 1.
    pub fn layer_names(&self) -> Vec<String> {
        (1..=self.depth)
            .flat_map(|i| [format!("block{i}.attn"), format!("block{i}.mlp")])
            .collect()
    }

    /// The sizes' own consistency; the message says what is wrong.
    pub(super) fn validate(&self, height: usize, width: usize) -> Result<(), String> {
        if self.patch == 0
            || !height.is_multiple_of(self.patch)
            || !width.is_multiple_of(self.patch)
        {
            return Err(format!(
                "patch {} must divide the image's {height}x{width}",
                self.patch
            ));
        }
        if self.width == 0 || self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "width {} must be a positive multiple of heads {}",
                self.width, self.heads
            ));
        }
        if self.depth == 0 || self.mlp_width == 0 {
            return Err("depth and mlp_width must be positive".into());
        }
        if self.ln_eps.is_nan() || self.ln_eps <= 0.0 {
            return Err(format!("ln_eps {} must be positive", self.ln_eps));
        }
        Ok(())
    }

    /// The backbone's parameters in a fixed order, named as timm names them.
    pub(crate) fn params(&self, arch: &ArchSpec) -> Vec<ParamInfo> {
        let d = self.width;
        let t = self.tokens(arch.height, arch.width);
        let p = |name: String, shape: Vec<usize>, kind| ParamInfo { name, shape, kind };
        let mut out = vec![
            p(
                "patch_embed.proj.weight".into(),
                vec![d, arch.in_channels, self.patch, self.patch],
                ParamKind::ConvWeight,
            ),
            p("patch_embed.proj.bias".into(), vec![d], ParamKind::ConvBias),
            p("cls_token".into(), vec![1, 1, d], ParamKind::Embedding),
            p("pos_embed".into(), vec![1, t, d], ParamKind::Embedding),
        ];
        let norm = |out: &mut Vec<ParamInfo>, name: &str| {
            out.push(p(format!("{name}.weight"), vec![d], ParamKind::LnWeight));
            out.push(p(format!("{name}.bias"), vec![d], ParamKind::LnBias));
        };
        let linear = |out: &mut Vec<ParamInfo>, name: &str, o: usize, i: usize| {
            out.push(p(
                format!("{name}.weight"),
                vec![o, i],
                ParamKind::LinearWeight,
            ));
            out.push(p(format!("{name}.bias"), vec![o], ParamKind::LinearBias));
        };
        for i in 0..self.depth {
            let b = format!("blocks.{i}");
            norm(&mut out, &format!("{b}.norm1"));
            linear(&mut out, &format!("{b}.attn.qkv"), 3 * d, d);
            linear(&mut out, &format!("{b}.attn.proj"), d, d);
            norm(&mut out, &format!("{b}.norm2"));
            linear(&mut out, &format!("{b}.mlp.fc1"), self.mlp_width, d);
            linear(&mut out, &format!("{b}.mlp.fc2"), d, self.mlp_width);
        }
        norm(&mut out, "norm");
        out
    }

    /// [`ArchSpec::forward_flops`] of the backbone alone: the patch embedding, and per block
    /// and token the query-key-value, output and MLP projections, plus the attention's two
    /// `T x T x D` products (scores and weighted values). Layer norms, softmax, GELU and the
    /// adds are left out, as the ResNet's elementwise operations are.
    pub(super) fn forward_flops(&self, arch: &ArchSpec) -> u64 {
        let (d, m) = (self.width as u64, self.mlp_width as u64);
        let n = self.patches(arch.height, arch.width) as u64;
        let t = n + 1;
        let patch = 2 * d * (arch.in_channels * self.patch * self.patch) as u64 * n;
        let per_block = 2 * t * (3 * d * d + d * d + 2 * d * m) + 2 * 2 * t * t * d;
        patch + self.depth as u64 * per_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_tiny_has_the_documented_size_names_and_flops() {
        let a = vit_tiny_28();
        a.validate().expect("valid");
        let v = a.vit().expect("vit");
        assert_eq!((v.patches(28, 28), v.tokens(28, 28)), (16, 17));
        assert_eq!(a.representation_dim(), 96);
        assert_eq!(
            a.layer_names()[..3],
            ["block1.attn", "block1.mlp", "block2.attn"]
        );
        assert_eq!(a.layer_names().len(), 12);
        // By hand: patch embedding 96x1x7x7 (+96), class token 96, positions 17x96; per block
        // 2 norms of 2x96, qkv 288x96+288, proj 96x96+96, fc1 384x96+384, fc2 96x384+96; a
        // final norm 2x96; the projector 96->128->64.
        let block =
            2 * 2 * 96 + (288 * 96 + 288) + (96 * 96 + 96) + (384 * 96 + 384) + (96 * 384 + 96);
        let n: usize = a
            .params()
            .iter()
            .map(|p| p.shape.iter().product::<usize>())
            .sum();
        assert_eq!(
            n,
            96 * 49 + 96 + 96 + 17 * 96 + 6 * block + 2 * 96 + (96 * 128 + 128) + (128 * 64 + 64)
        );
        // FLOPs, by hand: 2 per multiply-add of the patch embedding (16 patches of 49 pixels
        // to 96), per block and token 12 x 96² (qkv 3, proj 1, MLP 2 x 4), the attention's
        // 2 x 17² x 96, and the projector.
        let macs = 16 * 49 * 96 + 6 * (17 * 12 * 96 * 96 + 2 * 17 * 17 * 96) + 96 * 128 + 128 * 64;
        assert_eq!(a.forward_flops(), 2 * macs as u64);
        let c = vit_tiny_32();
        c.validate().expect("valid");
        assert_eq!(c.vit().expect("vit").tokens(32, 32), 65);
        c.check_weights(&c.random_weights(2)).expect("complete");
    }

    #[test]
    fn a_vit_record_reads_back_and_bad_sizes_are_refused() {
        let a = vit_tiny_28();
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["vit"]["patch"], 7);
        assert!(json.get("stem").is_none());
        let back: ArchSpec = serde_json::from_value(json).expect("read");
        assert_eq!(back, a);
        // A ResNet record keeps its fields beside the architecture's own.
        let r = serde_json::to_value(ArchSpec::resnet_mini_28()).expect("json");
        assert_eq!(r["stem"]["channels"], 32);
        assert!(r.get("vit").is_none());
        // A malformed record names its field; a record with both backbones is refused.
        let mut bad = serde_json::to_value(&a).expect("json");
        bad["vit"]["heads"] = "three".into();
        let e = serde_json::from_value::<ArchSpec>(bad)
            .expect_err("bad")
            .to_string();
        assert!(e.contains("vit") && e.contains("invalid type"), "{e}");
        let mut both = serde_json::to_value(&a).expect("json");
        both["stem"] = r["stem"].clone();
        both["blocks"] = r["blocks"].clone();
        let e = serde_json::from_value::<ArchSpec>(both)
            .expect_err("both")
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let mut no_stem = r.clone();
        no_stem.as_object_mut().expect("object").remove("stem");
        let e = serde_json::from_value::<ArchSpec>(no_stem)
            .expect_err("no stem")
            .to_string();
        assert!(e.contains("stem"), "{e}");
        for (patch, heads, what) in [(5, 3, "patch 5"), (7, 5, "heads 5")] {
            let mut b = vit_tiny_28();
            if let Backbone::Vit { vit } = &mut b.backbone {
                vit.patch = patch;
                vit.heads = heads;
            }
            let e = b.validate().expect_err(what).to_string();
            assert!(e.contains(what), "{e}");
        }
    }
}
