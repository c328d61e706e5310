//! The ViT backbone ([`crate::arch::vit`]) in libtorch, the same operations in the same order
//! as the ONNX graph (`crate::onnx`): patch embedding, class token, positions, pre-norm
//! blocks, final norm.

use tch::{Kind, Tensor};

use super::Encoder;
use crate::arch::VitSpec;

impl Encoder {
    fn linear_named(&self, x: &Tensor, name: &str) -> Tensor {
        x.linear(
            self.p(&format!("{name}.weight")),
            Some(self.p(&format!("{name}.bias"))),
        )
    }

    fn layer_norm_named(&self, x: &Tensor, name: &str, eps: f32) -> Tensor {
        let d = x.size()[x.dim() - 1];
        x.layer_norm(
            [d],
            Some(self.p(&format!("{name}.weight"))),
            Some(self.p(&format!("{name}.bias"))),
            f64::from(eps),
            false,
        )
    }

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
        let b = format!("blocks.{i}");
        let (n, t) = (x.size()[0], x.size()[1]);
        let (d, heads) = (v.width as i64, v.heads as i64);
        let h = self.layer_norm_named(x, &format!("{b}.norm1"), v.ln_eps);
        let qkv = self
            .linear_named(&h, &format!("{b}.attn.qkv"))
            .reshape([n, t, 3, heads, d / heads])
            .permute([2, 0, 3, 1, 4]);
        let scale = 1.0 / ((d / heads) as f64).sqrt();
        let (q, k, val) = (qkv.get(0) * scale, qkv.get(1), qkv.get(2));
        let weights = q.matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let context = weights.matmul(&val).transpose(1, 2).reshape([n, t, d]);
        let attn = x + self.linear_named(&context, &format!("{b}.attn.proj"));
        let h = self.layer_norm_named(&attn, &format!("{b}.norm2"), v.ln_eps);
        let h = self.linear_named(&h, &format!("{b}.mlp.fc1")).gelu("none");
        let mlp = &attn + self.linear_named(&h, &format!("{b}.mlp.fc2"));
        (attn, mlp)
    }

    /// The final norm of the residual stream.
    pub(crate) fn vit_norm(&self, v: &VitSpec, x: &Tensor) -> Tensor {
        self.layer_norm_named(x, "norm", v.ln_eps)
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
