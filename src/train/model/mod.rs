//! The encoder of an [`ArchSpec`] as libtorch tensors: parameters created from
//! [`ArchSpec::params`] under the same names, a forward pass that mirrors the ONNX graph
//! (with batch norm unfolded), and export of the weights for [`crate::onnx`].

use std::collections::BTreeMap;

use tch::{nn, Kind, Tensor};

use crate::arch::{ArchSpec, Backbone, ParamKind, ResNetSpec, Tensor as ArchTensor, Weights};
use crate::error::{Error, Result};

mod vit;

pub(crate) use vit::{block as vit_block, layer_norm as vit_layer_norm};

/// PyTorch's default initialisation of linear and convolution parameters.
pub(crate) fn fan_in_uniform(fan_in: i64) -> nn::Init {
    let bound = (1.0 / fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Outputs of one forward pass.
pub struct Forward {
    /// The layer outputs in [`ArchSpec::layer_names`]' order: a ResNet's feature maps after
    /// the stem and after each block (`layer1`...), a ViT's residual stream `[batch, tokens,
    /// width]` after each block's attention and MLP.
    pub layers: Vec<Tensor>,
    /// The backbone's output `[batch, dim]`: a ResNet's global-average-pooled features, a
    /// ViT's class token after its final norm.
    pub representation: Tensor,
    /// A ViT's every token after its final norm, `[batch, tokens, width]`.
    pub tokens: Option<Tensor>,
    /// Projector output `[batch, d]`: what the SSL loss sees.
    pub projection: Tensor,
}

/// An encoder's parameters in a `VarStore`, by the architecture's names.
pub struct Encoder {
    pub arch: ArchSpec,
    params: BTreeMap<String, Tensor>,
    /// Batch-norm momentum for the running statistics (PyTorch's default 0.1).
    pub bn_momentum: f64,
}

impl Encoder {
    /// Creates the parameters under `path` with PyTorch's default initialisations
    /// (Kaiming-uniform convolutions and linears, batch-norm weight 1 and bias 0).
    pub fn new(path: &nn::Path, arch: &ArchSpec) -> Result<Self> {
        arch.validate()?;
        let mut params = BTreeMap::new();
        for p in arch.params() {
            let mut parts: Vec<&str> = p.name.split('.').collect();
            let leaf = parts
                .pop()
                .ok_or_else(|| Error::Param(format!("bad parameter name '{}'", p.name)))?;
            let sub = parts.iter().fold(path.clone(), |acc, c| acc / *c);
            let shape: Vec<i64> = p.shape.iter().map(|&d| d as i64).collect();
            let t = match p.kind {
                // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), a bias using its
                // weight's fan-in.
                ParamKind::ConvWeight | ParamKind::LinearWeight => {
                    sub.var(leaf, &shape, fan_in_uniform(shape[1..].iter().product()))
                }
                ParamKind::LinearBias | ParamKind::ConvBias => {
                    let fan_in: usize = arch
                        .params()
                        .iter()
                        .find(|q| q.name == p.name.replace(".bias", ".weight"))
                        .map_or(1, |q| q.shape[1..].iter().product());
                    sub.var(leaf, &shape, fan_in_uniform(fan_in as i64))
                }
                // tch initialises batch-norm weights uniformly; PyTorch (and we) use 1.
                ParamKind::BnWeight | ParamKind::LnWeight => {
                    sub.var(leaf, &shape, nn::Init::Const(1.0))
                }
                ParamKind::BnBias | ParamKind::LnBias => {
                    sub.var(leaf, &shape, nn::Init::Const(0.0))
                }
                // timm: trunc_normal_(std=0.02); at this std the truncation at ±2 never bites.
                ParamKind::Embedding => sub.var(
                    leaf,
                    &shape,
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                ),
                ParamKind::BnMean => sub.zeros_no_train(leaf, &shape),
                ParamKind::BnVar => sub.ones_no_train(leaf, &shape),
            };
            params.insert(p.name, t);
        }
        Ok(Self {
            arch: arch.clone(),
            params,
            bn_momentum: 0.1,
        })
    }

    /// Stores the convolution weights channels-last (same shape and values, NHWC in memory):
    /// libtorch then runs every convolution, batch norm and gradient of the network in that
    /// layout, which oneDNN computes without reordering to its blocked formats.
    pub fn to_channels_last(&self) {
        tch::no_grad(|| {
            for t in self.params.values().filter(|t| t.dim() == 4) {
                // Strides written out: a permute and `contiguous` would keep a one-channel
                // weight's strides, which libtorch then takes for NCHW.
                let [_, c, h, w] = t.size()[..] else { continue };
                let mut nhwc = Tensor::empty_strided(
                    t.size(),
                    [h * w * c, 1, w * c, c],
                    (t.kind(), t.device()),
                );
                nhwc.copy_(t);
                t.shallow_clone().set_data(&nhwc);
            }
        });
    }

    fn p(&self, name: &str) -> &Tensor {
        // Every name asked for comes from the architecture that created the map.
        &self.params[name]
    }

    fn conv_bn(&self, x: &Tensor, conv: &str, bn: &str, stride: i64, train: bool) -> Tensor {
        let w = self.p(&format!("{conv}.weight"));
        let k = w.size()[2];
        let y = x.conv2d(
            w,
            None::<Tensor>,
            [stride, stride],
            [k / 2, k / 2],
            [1, 1],
            1,
        );
        self.bn(&y, bn, train)
    }

    /// Batch norm `bn` over the channels (dimension 1) of `[n, c, ...]`; `train` uses batch
    /// statistics and updates the running ones.
    fn bn(&self, y: &Tensor, bn: &str, train: bool) -> Tensor {
        Tensor::batch_norm(
            y,
            Some(self.p(&format!("{bn}.weight"))),
            Some(self.p(&format!("{bn}.bias"))),
            Some(self.p(&format!("{bn}.running_mean"))),
            Some(self.p(&format!("{bn}.running_var"))),
            train,
            self.bn_momentum,
            f64::from(self.arch.bn_eps),
            false,
        )
    }

    /// The forward pass; `train` uses batch statistics and updates the running ones.
    pub fn forward(&self, x: &Tensor, train: bool) -> Forward {
        let (layers, representation, tokens) = match &self.arch.backbone {
            Backbone::ResNet(r) => {
                let (layers, representation) = self.resnet(r, x, train);
                (layers, representation, None)
            }
            Backbone::Vit { vit } => {
                let (layers, tokens) = self.vit(vit, x);
                (layers, tokens.select(1, 0), Some(tokens))
            }
        };
        let projection = self.project(&representation, train);
        Forward {
            layers,
            representation,
            tokens,
            projection,
        }
    }

    /// The ResNet backbone: its layer outputs and the pooled representation.
    fn resnet(&self, r: &ResNetSpec, x: &Tensor, train: bool) -> (Vec<Tensor>, Tensor) {
        let mut y = self
            .conv_bn(x, "stem.conv", "stem.bn", r.stem.stride as i64, train)
            .relu();
        if r.stem.max_pool {
            y = y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let mut layers = vec![y.shallow_clone()];
        for (i, b) in r.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            let s = b.stride as i64;
            let h = self
                .conv_bn(&y, &format!("{p}.conv1"), &format!("{p}.bn1"), s, train)
                .relu();
            let h = self.conv_bn(&h, &format!("{p}.conv2"), &format!("{p}.bn2"), 1, train);
            let short = if r.block_has_projection_shortcut(i) {
                self.conv_bn(
                    &y,
                    &format!("{p}.shortcut.conv"),
                    &format!("{p}.shortcut.bn"),
                    s,
                    train,
                )
            } else {
                y.shallow_clone()
            };
            y = (h + short).relu();
            layers.push(y.shallow_clone());
        }
        let representation = y.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        (layers, representation)
    }

    /// The projector on `representation`.
    fn project(&self, representation: &Tensor, train: bool) -> Tensor {
        let a = &self.arch;
        let mut z = representation.shallow_clone();
        for j in 0..a.projector.len() {
            let name = a.projector_linear(j);
            z = z.linear(
                self.p(&format!("{name}.weight")),
                Some(self.p(&format!("{name}.bias"))),
            );
            if let Some(bn) = a.projector_norm(j) {
                z = self.bn(&z, &bn, train);
            }
            if j + 1 < a.projector.len() {
                z = z.relu();
            }
        }
        z
    }

    /// The parameters (and batch-norm statistics) as plain arrays for the ONNX writer.
    pub fn weights(&self) -> Result<Weights> {
        self.params
            .iter()
            .map(|(name, t)| {
                let t = t
                    .detach()
                    .to_device(tch::Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous();
                let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
                let data = Vec::<f32>::try_from(t.flatten(0, -1))
                    .map_err(|e| Error::Train(format!("cannot read parameter {name}: {e}")))?;
                Ok((name.clone(), ArchTensor::new(shape, data)?))
            })
            .collect()
    }
}
