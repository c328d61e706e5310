//! MAE (He et al. 2022): a random 75% of each image's patches are dropped, the ViT encoder
//! sees only the rest (and the class token), and a light transformer decoder, given the
//! encoded tokens and a shared mask token at every dropped position, reconstructs the dropped
//! patches' pixels, each patch normalised by its own mean and variance (the paper's "norm pix"
//! target); the loss is the mean squared error over the dropped patches only. The encoder is
//! exported and scored with masking off. Needs a ViT (`--arch vit-...`).
//!
//! The decoder's position embeddings are learned here (the paper's are fixed sin-cos); its
//! sizes are flags, small by default for 2-core training (the paper's: width 512, depth 8).

use std::collections::BTreeMap;

use serde::Deserialize;
use tch::{nn, Kind, Tensor};

use super::{MethodSpec, Param, Range, SslMethod, ViewKind};
use crate::arch::{ArchSpec, VitSpec};
use crate::error::{Error, Result};
use crate::train::model::{fan_in_uniform, vit_block, vit_layer_norm, Encoder};

pub static METHOD: MethodSpec = MethodSpec {
    name: "mae",
    about: "masked autoencoder: reconstruct the pixels of 75% masked patches from the rest \
            (He et al. 2022, \"Masked Autoencoders Are Scalable Vision Learners\"); ViTs only",
    params: &[
        Param {
            field: "mask_ratio",
            flag: "mask-ratio",
            default: 0.75,
            source: "He et al. 2022, section 4.1 (75% is best, Fig. 5)",
            range: Range::Between(0.05, 0.95),
            help: "MAE: fraction of each image's patches dropped before the encoder",
        },
        Param {
            field: "decoder_width",
            flag: "mae-decoder-width",
            default: 64.0,
            source: "a light decoder for 2 cores (the paper's: 512, Table 1b)",
            range: Range::Between(32.0, 1024.0),
            help: "MAE: width of the decoder's tokens, a multiple of 32 (one head per 32)",
        },
        Param {
            field: "decoder_depth",
            flag: "mae-decoder-depth",
            default: 2.0,
            source: "a light decoder for 2 cores (the paper's: 8, Table 1a; 1 block works)",
            range: Range::Between(1.0, 16.0),
            help: "MAE: number of transformer blocks in the decoder",
        },
    ],
    build: |c, online, arch| Ok(Box::new(Mae::new(c.typed()?, online, arch)?)),
};

/// MAE's hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaeConfig {
    mask_ratio: f64,
    decoder_width: f64,
    decoder_depth: f64,
}

struct Mae {
    vit: VitSpec,
    /// Patches per image.
    patches: i64,
    keep: i64,
    width: i64,
    heads: i64,
    depth: usize,
    /// The decoder's parameters by name: `decoder_embed`, `mask_token`, `decoder_pos_embed`,
    /// `decoder_blocks.{j}.*` (timm's block names), `decoder_norm`, `decoder_pred`.
    decoder: BTreeMap<String, Tensor>,
}

/// Pixels of every patch of `x` `[n, c, h, w]`: `[n, patches, p·p·c]`, patches in the patch
/// embedding's order (row by row), each patch's pixels row by row, channels last.
pub(crate) fn patchify(x: &Tensor, p: i64) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    x.reshape([n, c, h / p, p, w / p, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([n, (h / p) * (w / p), p * p * c])
}

/// MAE's loss: each target patch normalised by its mean and (unbiased) variance, plus 1e-6
/// (He et al. 2022, section 3, "normalized pixels"; their `forward_loss`), then the squared
/// error per patch averaged over its pixels, averaged over the patches where `mask` is 1.
/// Shapes: `pred`, `target` `[n, patches, pixels]`, `mask` `[n, patches]`.
pub(crate) fn reconstruction_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let mean = target.mean_dim(-1, true, Kind::Float);
    let var = target.var_dim(-1, true, true);
    let target = (target - mean) / (var + 1e-6).sqrt();
    let per_patch = (pred - target)
        .square()
        .mean_dim(-1, false, Kind::Float);
    (per_patch * mask).sum(Kind::Float) / mask.sum(Kind::Float)
}

impl Mae {
    fn new(config: MaeConfig, online: &nn::VarStore, arch: &ArchSpec) -> Result<Self> {
        let v = arch.vit().ok_or_else(|| {
            Error::Param(format!(
                "--method mae needs a Vision Transformer (--arch vit-tiny-28x28x1 or \
                 vit-tiny-32x32x3), not {}",
                arch.name
            ))
        })?;
        let width = config.decoder_width as i64;
        if config.decoder_width.fract() != 0.0 || width % 32 != 0 {
            return Err(Error::Param(format!(
                "--mae-decoder-width is {}; it must be a multiple of 32",
                config.decoder_width
            )));
        }
        if config.decoder_depth.fract() != 0.0 {
            return Err(Error::Param(format!(
                "--mae-decoder-depth is {}; it must be a whole number",
                config.decoder_depth
            )));
        }
        let patches = v.patches(arch.height, arch.width) as i64;
        // As the paper's code: int(L * (1 - mask_ratio)), and at least one patch.
        let keep = ((patches as f64 * (1.0 - config.mask_ratio)) as i64).max(1);
        if keep >= patches {
            return Err(Error::Param(format!(
                "--mask-ratio {} drops none of {}'s {patches} patches; raise it or use smaller \
                 patches",
                config.mask_ratio, arch.name
            )));
        }
        let patch_pixels = (v.patch * v.patch * arch.in_channels) as i64;
        let depth = config.decoder_depth as usize;
        let d = v.width as i64;
        let root = online.root() / "mae";
        let mut decoder = BTreeMap::new();
        let mut var = |name: &str, shape: &[i64], init: nn::Init| {
            let path = name.split('.').fold(root.clone(), |p, c| p / c);
            decoder.insert(name.to_string(), path.var("v", shape, init));
        };
        let linear = |var: &mut dyn FnMut(&str, &[i64], nn::Init), name: &str, o: i64, i: i64| {
            var(&format!("{name}.weight"), &[o, i], fan_in_uniform(i));
            var(&format!("{name}.bias"), &[o], fan_in_uniform(i));
        };
        let norm = |var: &mut dyn FnMut(&str, &[i64], nn::Init), name: &str, w: i64| {
            var(&format!("{name}.weight"), &[w], nn::Init::Const(1.0));
            var(&format!("{name}.bias"), &[w], nn::Init::Const(0.0));
        };
        let embedding = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        linear(&mut var, "decoder_embed", width, d);
        var("mask_token", &[1, 1, width], embedding);
        var("decoder_pos_embed", &[1, patches + 1, width], embedding);
        for j in 0..depth {
            let b = format!("decoder_blocks.{j}");
            norm(&mut var, &format!("{b}.norm1"), width);
            linear(&mut var, &format!("{b}.attn.qkv"), 3 * width, width);
            linear(&mut var, &format!("{b}.attn.proj"), width, width);
            norm(&mut var, &format!("{b}.norm2"), width);
            linear(&mut var, &format!("{b}.mlp.fc1"), 4 * width, width);
            linear(&mut var, &format!("{b}.mlp.fc2"), width, 4 * width);
        }
        norm(&mut var, "decoder_norm", width);
        linear(&mut var, "decoder_pred", patch_pixels, width);
        Ok(Self {
            vit: v.clone(),
            patches,
            keep,
            width,
            heads: width / 32,
            depth,
            decoder,
        })
    }

    /// A random mask per image: the patch indices kept (`[n, keep]`), the permutation that
    /// puts the shuffled tokens back (`[n, patches]`) and the mask, 1 where dropped.
    fn random_mask(&self, n: i64, device: tch::Device) -> (Tensor, Tensor, Tensor) {
        let noise = Tensor::rand([n, self.patches], (Kind::Float, device));
        let shuffle = noise.argsort(1, false);
        let restore = shuffle.argsort(1, false);
        let kept = shuffle.narrow(1, 0, self.keep);
        let mask = Tensor::ones([n, self.patches], (Kind::Float, device));
        let _ = mask.narrow(1, 0, self.keep).fill_(0.0);
        let mask = mask.gather(1, &restore, false);
        (kept, restore, mask)
    }
}

impl SslMethod for Mae {
    fn views(&self) -> &'static [ViewKind] {
        &[ViewKind::Global]
    }

    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let [x] = views else {
            return Err(Error::Train(format!(
                "MAE takes one view per image, given {}",
                views.len()
            )));
        };
        if x.dim() != 4 {
            return Err(Error::Train(format!(
                "MAE takes views [batch, channels, height, width], given {:?}",
                x.size()
            )));
        }
        let v = &self.vit;
        let (n, d) = (x.size()[0], v.width as i64);
        let (kept, restore, mask) = self.random_mask(n, x.device());
        // The encoder on the class token and the kept patches (positions added before).
        let tokens = encoder.vit_embed(v, x);
        let visible = tokens.narrow(1, 1, self.patches).gather(
            1,
            &kept.unsqueeze(-1).expand([n, self.keep, d], false),
            false,
        );
        let mut y = Tensor::cat(&[tokens.narrow(1, 0, 1), visible], 1);
        for i in 0..v.depth {
            y = encoder.vit_block(v, i, &y).1;
        }
        let y = encoder.vit_norm(v, &y);
        // The decoder: mask tokens at the dropped positions, the tokens put back in order.
        let dec = &self.decoder;
        let z = y.linear(&dec["decoder_embed.weight"], Some(&dec["decoder_embed.bias"]));
        let masked = dec["mask_token"].expand([n, self.patches - self.keep, self.width], false);
        let shuffled = Tensor::cat(&[z.narrow(1, 1, self.keep), masked], 1);
        let ordered = shuffled.gather(
            1,
            &restore
                .unsqueeze(-1)
                .expand([n, self.patches, self.width], false),
            false,
        );
        let mut z = Tensor::cat(&[z.narrow(1, 0, 1), ordered], 1) + &dec["decoder_pos_embed"];
        for j in 0..self.depth {
            z = vit_block(dec, &format!("decoder_blocks.{j}"), self.heads, v.ln_eps, &z).1;
        }
        let z = vit_layer_norm(dec, &z, "decoder_norm", v.ln_eps);
        let pred = z
            .linear(&dec["decoder_pred.weight"], Some(&dec["decoder_pred.bias"]))
            .narrow(1, 1, self.patches);
        Ok(reconstruction_loss(&pred, &patchify(x, v.patch as i64), &mask))
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::OptimizerConfig;
    use tch::Device;

    use super::*;

    #[test]
    fn patches_are_read_in_the_patch_embeddings_order() {
        // A 2-channel 4x4 image of 2x2 patches: value = 100 c + 10 y + x.
        let v: Vec<f32> = (0..2)
            .flat_map(|c| (0..4).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x) as f32)))
            .collect();
        let img = Tensor::from_slice(&v).reshape([1, 2, 4, 4]);
        let p = patchify(&img, 2);
        assert_eq!(p.size(), [1, 4, 8]);
        // Patch 1 is the top-right one (x 2..4, y 0..2); its pixels row by row, channels last.
        let got = Vec::<f32>::try_from(p.get(0).get(1)).expect("values");
        assert_eq!(got, [2., 102., 3., 103., 12., 112., 13., 113.]);
    }

    #[test]
    fn the_loss_is_the_normalised_pixel_error_of_the_dropped_patches_only() {
        // One image, two patches of 3 pixels; patch 0 kept (mask 0), patch 1 dropped.
        let target = Tensor::from_slice(&[9f32, 9., 9., 1., 2., 6.]).reshape([1, 2, 3]);
        let pred = Tensor::from_slice(&[5f32, 5., 5., 0., 0., 0.]).reshape([1, 2, 3]);
        let mask = Tensor::from_slice(&[0f32, 1.]).reshape([1, 2]);
        // Patch 1: mean 3, unbiased variance ((−2)² + (−1)² + 3²)/2 = 7, normalised
        // (−2, −1, 3)/√(7 + 1e-6); against a prediction of 0 the mean square is 14/3 / 7.
        let want = (4.0 + 1.0 + 9.0) / 3.0 / (7.0 + 1e-6);
        let got = f64::try_from(reconstruction_loss(&pred, &target, &mask)).expect("scalar");
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn a_masked_step_reconstructs_better_than_the_untrained_decoder() {
        tch::manual_seed(3);
        let arch = crate::arch::vit::vit_tiny_28();
        let online = nn::VarStore::new(Device::Cpu);
        let encoder = Encoder::new(&online.root(), &arch).expect("encoder");
        let config = METHOD.default_config();
        let mae = Mae::new(config.typed().expect("typed"), &online, &arch).expect("mae");
        assert_eq!((mae.patches, mae.keep, mae.heads), (16, 4, 2));
        let (_, _, mask) = mae.random_mask(5, Device::Cpu);
        let dropped = Vec::<f32>::try_from(mask.sum_dim_intlist(1, false, Kind::Float))
            .expect("sums");
        assert_eq!(dropped, [12.0; 5]);
        let x = Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu));
        let mut opt = nn::Adam::default().build(&online, 1e-3).expect("adam");
        let first = f64::try_from(mae.loss(&encoder, &[x.shallow_clone()]).expect("loss"))
            .expect("scalar");
        let mut last = first;
        for _ in 0..30 {
            let l = mae.loss(&encoder, &[x.shallow_clone()]).expect("loss");
            opt.backward_step(&l);
            last = f64::try_from(l).expect("scalar");
        }
        assert!(last < first, "{first} -> {last}");
        // A ResNet is refused with the reason.
        let resnet = ArchSpec::resnet_mini_28();
        let e = Mae::new(config.typed().expect("typed"), &online, &resnet)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("needs a Vision Transformer"), "{e}");
        // One 28x28 patch: nothing would be left to reconstruct.
        let mut whole = crate::arch::vit::vit_tiny_28();
        if let crate::arch::Backbone::Vit { vit } = &mut whole.backbone {
            vit.patch = 28;
        }
        let e = Mae::new(config.typed().expect("typed"), &online, &whole)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("drops none"), "{e}");
    }
}
