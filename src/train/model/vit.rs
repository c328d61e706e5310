//! The ViT backbone ([`crate::arch::vit`]) in libtorch, the same operations in the same order
//! as the ONNX graph (`crate::onnx`): patch embedding, class token, positions, pre-norm
//! blocks, final norm.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

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
    let scale = 1.0 / ((d / heads) as f64).sqrt();
    let (q, k, val) = (qkv.get(0) * scale, qkv.get(1), qkv.get(2));
    let weights = q.matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
    let context = weights.matmul(&val).transpose(1, 2).reshape([n, t, d]);
    let attn = x + linear(params, &context, &format!("{b}.attn.proj"));
    let h = layer_norm(params, &attn, &format!("{b}.norm2"), eps);
    let h = linear(params, &h, &format!("{b}.mlp.fc1")).gelu("none");
    let mlp = &attn + linear(params, &h, &format!("{b}.mlp.fc2"));
    (attn, mlp)
}

impl Encoder {
    /// The patch embedding, class token and positions of `x` `[n, c, h, w]`: `[n, tokens,
    /// width]`.
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
        Tensor::cat(&[cls, patches], 1) + self.p("pos_embed")
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
