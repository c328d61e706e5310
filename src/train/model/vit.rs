//! The ViT backbone ([`crate::arch::vit`]) in libtorch, the same operations in the same order
//! as the ONNX graph (`crate::onnx`): patch embedding, class token, positions, pre-norm
//! blocks, final norm.

use std::collections::BTreeMap;

use tch::Tensor;

use super::Encoder;
use crate::arch::VitSpec;

/// `params[name]`: every name asked for is one the caller created.
fn param<'a>(params: &'a BTreeMap<String, Tensor>, name: &str) -> &'a Tensor {
    &params[name]
}

fn linear(params: &BTreeMap<String, Tensor>, x: &Tensor, name: &str) -> Tensor {
    x.linear(
        param(params, &format!("{name}.weight")),
        Some(param(params, &format!("{name}.bias"))),
    )
}

/// Layer norm `name` over the last dimension of `x`.
pub(crate) fn layer_norm(
    params: &BTreeMap<String, Tensor>,
    x: &Tensor,
    name: &str,
    eps: f32,
) -> Tensor {
    let d = x.size()[x.dim() - 1];
    x.layer_norm(
        [d],
        Some(param(params, &format!("{name}.weight"))),
        Some(param(params, &format!("{name}.bias"))),
        f64::from(eps),
        false,
    )
}

/// The pre-norm transformer block named `b` (timm's names under it: `norm1`, `attn.qkv`,
/// `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`) on the residual stream `x` `[n, t, width]`
/// with `heads` heads: the stream after its attention and after its MLP. The encoder's blocks
/// and MAE's decoder blocks are both this.
pub(crate) fn block(
    params: &BTreeMap<String, Tensor>,
    b: &str,
    heads: i64,
    eps: f32,
    x: &Tensor,
) -> (Tensor, Tensor) {
    let (n, t, d) = (x.size()[0], x.size()[1], x.size()[2]);
    let h = layer_norm(params, x, &format!("{b}.norm1"), eps);
    let qkv = linear(params, &h, &format!("{b}.attn.qkv"))
        .reshape([n, t, 3, heads, d / heads])
        .permute([2, 0, 3, 1, 4]);
    // softmax(q k^T / sqrt(d/heads)) v in PyTorch's fused kernel, as timm computes it (no
    // [n, heads, t, t] weights kept for the backward pass; at 17 tokens as fast as the
    // three-op form, docs/benchmarks.md); the ONNX graph spells the three ops out
    // (src/onnx/vit.rs).
    let scale = 1.0 / ((d / heads) as f64).sqrt();
    let context = Tensor::scaled_dot_product_attention::<Tensor>(
        &qkv.get(0),
        &qkv.get(1),
        &qkv.get(2),
        None,
        0.0,
        false,
        scale,
        false,
    )
    .transpose(1, 2)
    .reshape([n, t, d]);
    let attn = x + linear(params, &context, &format!("{b}.attn.proj"));
    let h = layer_norm(params, &attn, &format!("{b}.norm2"), eps);
    let h = linear(params, &h, &format!("{b}.mlp.fc1")).gelu("none");
    let mlp = &attn + linear(params, &h, &format!("{b}.mlp.fc2"));
    (attn, mlp)
}

impl Encoder {
    /// The patch embedding, class token and positions of `x` `[n, c, h, w]`: `[n, tokens,
    /// width]`. An input of another size than the architecture's (a multi-crop method's local
    /// views) gets the patch positions resized bicubically to its grid, as DINO's
    /// `interpolate_pos_encoding` does; the class token's position is kept.
    pub(crate) fn vit_embed(&self, v: &VitSpec, x: &Tensor) -> Tensor {
        let p = v.patch as i64;
        let patches = x
            .conv2d(
                self.p("patch_embed.proj.weight"),
                Some(self.p("patch_embed.proj.bias")),
                [p, p],
                [0, 0],
                [1, 1],
                1,
            )
            .flatten(2, -1)
            .transpose(1, 2);
        let n = patches.size()[0];
        let cls = self.p("cls_token").expand([n, 1, v.width as i64], false);
        let grid = [x.size()[2] / p, x.size()[3] / p];
        Tensor::cat(&[cls, patches], 1) + self.positions(v, grid)
    }

    /// The position embeddings `[1, 1 + gh gw, width]` for a grid of `grid` = `[gh, gw]`
    /// patches: the learned ones at the architecture's grid, resized (bicubic, corners not
    /// aligned) at any other.
    fn positions(&self, v: &VitSpec, grid: [i64; 2]) -> Tensor {
        let pos = self.p("pos_embed");
        let p = v.patch as i64;
        let trained = [self.arch.height as i64 / p, self.arch.width as i64 / p];
        if grid == trained {
            return pos.shallow_clone();
        }
        let d = v.width as i64;
        let patches = pos
            .narrow(1, 1, trained[0] * trained[1])
            .reshape([1, trained[0], trained[1], d])
            .permute([0, 3, 1, 2])
            .upsample_bicubic2d(grid, false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, grid[0] * grid[1], d]);
        Tensor::cat(&[pos.narrow(1, 0, 1), patches], 1)
    }

    /// Block `i` (from 0) on the residual stream `x` `[n, t, width]`: the stream after its
    /// attention and after its MLP.
    pub(crate) fn vit_block(&self, v: &VitSpec, i: usize, x: &Tensor) -> (Tensor, Tensor) {
        block(
            &self.params,
            &format!("blocks.{i}"),
            v.heads as i64,
            v.ln_eps,
            x,
        )
    }

    /// The final norm of the residual stream.
    pub(crate) fn vit_norm(&self, v: &VitSpec, x: &Tensor) -> Tensor {
        layer_norm(&self.params, x, "norm", v.ln_eps)
    }

    /// The whole backbone on `x` `[n, c, h, w]`: the layer outputs (after each block's
    /// attention and MLP) and every token after the final norm, `[n, tokens, width]`.
    pub(super) fn vit(&self, v: &VitSpec, x: &Tensor) -> (Vec<Tensor>, Tensor) {
        let mut y = self.vit_embed(v, x);
        let mut layers = Vec::with_capacity(2 * v.depth);
        for i in 0..v.depth {
            let (attn, mlp) = self.vit_block(v, i, &y);
            layers.push(attn);
            layers.push(mlp.shallow_clone());
            y = mlp;
        }
        (layers, self.vit_norm(v, &y))
    }
}

#[cfg(test)]
mod tests {
    use tch::{nn, Device, Kind, Tensor};

    use crate::train::model::Encoder;

    #[test]
    fn positions_are_resized_per_channel_for_another_grid() {
        tch::manual_seed(3);
        let arch = crate::arch::vit::vit_tiny_28();
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = Encoder::new(&(vs.root() / "encoder"), &arch).expect("encoder");
        let v = arch.vit().expect("vit").clone();
        let d = v.width as i64;
        // Each channel constant over the positions, the class token's apart: resizing keeps
        // every channel's value (bicubic weights sum to 1) unless channels get mixed.
        let per_channel = Tensor::arange(d, (Kind::Float, Device::Cpu)) / 10.0;
        tch::no_grad(|| {
            let mut pos = enc.p("pos_embed").shallow_clone();
            pos.copy_(&per_channel.view([1, 1, d]).expand([1, 17, d], false));
            let _ = pos.narrow(1, 0, 1).fill_(-5.0);
        });
        let same = enc.positions(&v, [4, 4]);
        assert!(same.equal(enc.p("pos_embed")));
        let small = enc.positions(&v, [2, 2]);
        assert_eq!(small.size(), [1, 5, d]);
        assert_eq!(small.double_value(&[0, 0, 3]), -5.0);
        let patches = small.narrow(1, 1, 4);
        let want = per_channel.view([1, 1, d]).expand([1, 4, d], false);
        assert!((patches - want).abs().max().double_value(&[]) < 1e-5);
        // A 14x14 input (a local crop) embeds to 1 + 2x2 tokens and runs through the blocks.
        let x = Tensor::randn([3, 1, 14, 14], (Kind::Float, Device::Cpu));
        let out = enc.forward(&x, true);
        assert_eq!(out.tokens.expect("tokens").size(), [3, 5, d]);
        assert_eq!(out.projection.size()[0], 3);
    }
}
