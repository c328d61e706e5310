//! The ViT backbone as an ONNX graph (opset 17): the patch embedding as a strided `Conv`,
//! `LayerNormalization`, attention from `MatMul` and `Softmax`, GELU through `Erf`. Linear
//! layers are `MatMul` by the transposed weight plus the bias, on `[batch, tokens, width]`.

use onnx_protobuf::{tensor_proto::DataType, AttributeProto, TensorProto};

use super::{attr_int, attr_ints, tensor, Dim, Graph, Outputs, INPUT, REPRESENTATION, TOKENS};
use crate::arch::{ParamKind, VitSpec};
use crate::error::Result;

fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::INT64 as i32;
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = onnx_protobuf::attribute_proto::AttributeType::FLOAT.into();
    a.f = v;
    a
}

impl Graph<'_> {
    /// An int64 constant (shapes, indices) as an initializer named `name`.
    fn const_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        self.inits.push(tensor_i64(name, dims, data));
        name.to_string()
    }

    /// `x @ W^T + b` for the linear layer `name` (weight `[out, in]`) on `[..., in]`.
    fn linear(&mut self, x: &str, name: &str, out: &str) -> Result<()> {
        let w = self.get(&format!("{name}.weight"))?;
        let (o, i) = (w.shape[0], w.shape[1]);
        let mut wt = vec![0f32; o * i];
        for r in 0..o {
            for c in 0..i {
                wt[c * o + r] = w.data[r * i + c];
            }
        }
        let wt_name = format!("{name}.weight_t");
        self.inits.push(tensor(&wt_name, &[i, o], &wt));
        let mm = format!("{name}.matmul_out");
        self.node("MatMul", &[x, &wt_name], &mm, vec![]);
        self.node("Add", &[&mm, &format!("{name}.bias")], out, vec![]);
        Ok(())
    }

    fn layer_norm(&mut self, x: &str, name: &str, eps: f32, out: &str) {
        self.node(
            "LayerNormalization",
            &[x, &format!("{name}.weight"), &format!("{name}.bias")],
            out,
            vec![attr_int("axis", -1), attr_float("epsilon", eps)],
        );
    }

    /// The exact GELU, `x/2 (1 + erf(x / √2))` (PyTorch's `gelu(approximate="none")`).
    fn gelu(&mut self, x: &str, out: &str) {
        let p = out.to_string();
        self.node("Div", &[x, "vit.sqrt2"], &format!("{p}.div"), vec![]);
        self.node("Erf", &[&format!("{p}.div")], &format!("{p}.erf"), vec![]);
        self.node(
            "Add",
            &[&format!("{p}.erf"), "vit.one"],
            &format!("{p}.add"),
            vec![],
        );
        self.node(
            "Mul",
            &[x, &format!("{p}.add")],
            &format!("{p}.mul"),
            vec![],
        );
        self.node("Mul", &[&format!("{p}.mul"), "vit.half"], out, vec![]);
    }

    /// Block `b`'s multi-head self-attention on the norm of `x`, into `{b}.attn_out`.
    fn attention(&mut self, v: &VitSpec, b: &str, x: &str) -> Result<()> {
        self.layer_norm(
            x,
            &format!("{b}.norm1"),
            v.ln_eps,
            &format!("{b}.norm1_out"),
        );
        self.linear(
            &format!("{b}.norm1_out"),
            &format!("{b}.attn.qkv"),
            &format!("{b}.qkv"),
        )?;
        // [n, t, 3d] -> [n, t, 3, heads, d/heads] -> [3, n, heads, t, d/heads].
        self.node(
            "Reshape",
            &[&format!("{b}.qkv"), "vit.qkv_shape"],
            &format!("{b}.qkv_split"),
            vec![],
        );
        self.node(
            "Transpose",
            &[&format!("{b}.qkv_split")],
            &format!("{b}.qkv_heads"),
            vec![attr_ints("perm", &[2, 0, 3, 1, 4])],
        );
        for (k, part) in ["q", "k", "v"].iter().enumerate() {
            self.node(
                "Gather",
                &[&format!("{b}.qkv_heads"), &format!("vit.index{k}")],
                &format!("{b}.{part}"),
                vec![attr_int("axis", 0)],
            );
        }
        // softmax(q k^T / sqrt(d/heads)) v, the scale on q as timm applies it.
        self.node(
            "Mul",
            &[&format!("{b}.q"), "vit.attn_scale"],
            &format!("{b}.q_scaled"),
            vec![],
        );
        self.node(
            "Transpose",
            &[&format!("{b}.k")],
            &format!("{b}.k_t"),
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        self.node(
            "MatMul",
            &[&format!("{b}.q_scaled"), &format!("{b}.k_t")],
            &format!("{b}.scores"),
            vec![],
        );
        self.node(
            "Softmax",
            &[&format!("{b}.scores")],
            &format!("{b}.attn_weights"),
            vec![attr_int("axis", -1)],
        );
        self.node(
            "MatMul",
            &[&format!("{b}.attn_weights"), &format!("{b}.v")],
            &format!("{b}.context"),
            vec![],
        );
        self.node(
            "Transpose",
            &[&format!("{b}.context")],
            &format!("{b}.context_t"),
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        self.node(
            "Reshape",
            &[&format!("{b}.context_t"), "vit.token_shape"],
            &format!("{b}.context_merged"),
            vec![],
        );
        self.linear(
            &format!("{b}.context_merged"),
            &format!("{b}.attn.proj"),
            &format!("{b}.attn_out"),
        )?;
        Ok(())
    }

    /// Block `i` (from 0) from the residual stream `x`: writes `block{i+1}.attn` and
    /// `block{i+1}.mlp`, and returns the latter.
    fn vit_block(&mut self, v: &VitSpec, i: usize, x: &str) -> Result<String> {
        let b = format!("blocks.{i}");
        self.attention(v, &b, x)?;
        let attn = format!("block{}.attn", i + 1);
        self.node("Add", &[x, &format!("{b}.attn_out")], &attn, vec![]);
        self.layer_norm(
            &attn,
            &format!("{b}.norm2"),
            v.ln_eps,
            &format!("{b}.norm2_out"),
        );
        self.linear(
            &format!("{b}.norm2_out"),
            &format!("{b}.mlp.fc1"),
            &format!("{b}.fc1_out"),
        )?;
        self.gelu(&format!("{b}.fc1_out"), &format!("{b}.gelu_out"));
        self.linear(
            &format!("{b}.gelu_out"),
            &format!("{b}.mlp.fc2"),
            &format!("{b}.mlp_out"),
        )?;
        let mlp = format!("block{}.mlp", i + 1);
        self.node("Add", &[&attn, &format!("{b}.mlp_out")], &mlp, vec![]);
        Ok(mlp)
    }

    /// The ViT from the input to [`REPRESENTATION`] (the class token after the final norm)
    /// and [`TOKENS`]; returns its layer outputs and the extra graph output [`TOKENS`], with
    /// their shapes.
    pub(super) fn vit(&mut self, v: &VitSpec) -> Result<(Outputs, Outputs)> {
        let a = self.arch;
        let t = v.tokens(a.height, a.width);
        self.vit_constants(v);
        // Patches: [n, c, h, w] -> [n, d, h/p, w/p] -> [n, patches, d].
        let p = v.patch as i64;
        self.node(
            "Conv",
            &[INPUT, "patch_embed.proj.weight", "patch_embed.proj.bias"],
            "patch_embed.out",
            vec![
                attr_ints("kernel_shape", &[p, p]),
                attr_ints("strides", &[p, p]),
            ],
        );
        self.node(
            "Reshape",
            &["patch_embed.out", "vit.patch_shape"],
            "patch_embed.flat",
            vec![],
        );
        self.node(
            "Transpose",
            &["patch_embed.flat"],
            "patch_embed.tokens",
            vec![attr_ints("perm", &[0, 2, 1])],
        );
        // The class token, repeated over the batch, before the patches; then positions.
        self.node(
            "Shape",
            &[INPUT],
            "vit.batch",
            vec![attr_int("start", 0), attr_int("end", 1)],
        );
        self.node(
            "Concat",
            &["vit.batch", "vit.cls_dims"],
            "vit.cls_shape",
            vec![attr_int("axis", 0)],
        );
        self.node("Expand", &["cls_token", "vit.cls_shape"], "vit.cls", vec![]);
        self.node(
            "Concat",
            &["vit.cls", "patch_embed.tokens"],
            "vit.tokens_in",
            vec![attr_int("axis", 1)],
        );
        self.node(
            "Add",
            &["vit.tokens_in", "pos_embed"],
            "vit.embedded",
            vec![],
        );

        let token_dims = || vec![Dim::Named("batch"), Dim::Fixed(t), Dim::Fixed(v.width)];
        let mut layers = Vec::new();
        let mut x = "vit.embedded".to_string();
        for i in 0..v.depth {
            x = self.vit_block(v, i, &x)?;
            layers.push((format!("block{}.attn", i + 1), token_dims()));
            layers.push((x.clone(), token_dims()));
        }
        self.layer_norm(&x, "norm", v.ln_eps, TOKENS);
        self.node(
            "Gather",
            &[TOKENS, "vit.index0"],
            REPRESENTATION,
            vec![attr_int("axis", 1)],
        );
        self.vit_weights(v)?;
        Ok((layers, vec![(TOKENS.to_string(), token_dims())]))
    }
    /// The constants every block shares: shapes, indices, the attention scale, GELU's.
    fn vit_constants(&mut self, v: &VitSpec) {
        let (d, heads) = (v.width as i64, v.heads as i64);
        self.const_i64("vit.patch_shape", &[3], &[0, d, -1]);
        self.const_i64("vit.cls_dims", &[2], &[1, d]);
        self.const_i64("vit.qkv_shape", &[5], &[0, 0, 3, heads, d / heads]);
        self.const_i64("vit.token_shape", &[3], &[0, 0, d]);
        for k in 0..3 {
            self.const_i64(&format!("vit.index{k}"), &[], &[k]);
        }
        let scale = 1.0 / ((v.width / v.heads) as f32).sqrt();
        self.inits.push(tensor("vit.attn_scale", &[], &[scale]));
        self.inits
            .push(tensor("vit.sqrt2", &[], &[std::f32::consts::SQRT_2]));
        self.inits.push(tensor("vit.one", &[], &[1.0]));
        self.inits.push(tensor("vit.half", &[], &[0.5]));
    }

    /// The weights the graph reads by their own names (the linear layers' are transposed
    /// copies).
    fn vit_weights(&mut self, v: &VitSpec) -> Result<()> {
        let arch = self.arch;
        for p in v.params(arch) {
            if p.kind != ParamKind::LinearWeight {
                let w = self.get(&p.name)?.clone();
                self.inits.push(tensor(&p.name, &w.shape, &w.data));
            }
        }
        Ok(())
    }
}
