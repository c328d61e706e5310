//! Writes an [`ArchSpec`] with its weights as an ONNX model (IR 8, opset 17) through the
//! `onnx-protobuf` types: batch norm folded into the convolutions, a dynamic batch axis,
//! a named `representation` output, a `projection` output, and optionally one output per
//! layer (`layer1`...) for per-layer memorization.

use std::path::Path;

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::arch::{conv_out, ArchSpec, Backbone, ResNetSpec, Weights};
use crate::error::{Error, Result};

mod vit;

pub const INPUT: &str = "input";
pub const REPRESENTATION: &str = "representation";
pub const PROJECTION: &str = "projection";
/// A ViT's every token after its final norm, `[batch, tokens, width]`: what the SSLMem
/// authors' code scores for an MAE encoder (masking off, all tokens, flattened).
pub const TOKENS: &str = "tokens";
pub const OPSET: i64 = 17;
pub const IR_VERSION: i64 = 8;

/// What to write besides the representation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// Add `layer1`...`layerN` feature-map outputs.
    pub layer_outputs: bool,
}

struct Graph<'a> {
    arch: &'a ArchSpec,
    weights: &'a Weights,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// A float tensor's type with dims given as fixed sizes or symbolic names.
fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims
        .iter()
        .map(|d| {
            let mut dim = tensor_shape_proto::Dimension::new();
            dim.value = Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam((*s).into()),
            });
            dim
        })
        .collect();
    let mut tt = type_proto::Tensor::new();
    tt.elem_type = DataType::FLOAT as i32;
    tt.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(ty).into();
    vi
}

/// Graph outputs by name, with their shapes.
type Outputs = Vec<(String, Vec<Dim>)>;

enum Dim {
    Fixed(usize),
    Named(&'static str),
}

impl Graph<'_> {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{}", self.nodes.len());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.into()];
        n.attribute = attrs;
        self.nodes.push(n);
    }

    fn get(&self, name: &str) -> Result<&crate::arch::Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| Error::Param(format!("weights lack '{name}'")))
    }

    /// Conv followed by batch norm, folded: W' = W * g / sqrt(v + eps), b' = beta - m * g / sqrt(v + eps).
    fn conv_bn(
        &mut self,
        input: &str,
        conv: &str,
        bn: &str,
        stride: usize,
        output: &str,
    ) -> Result<()> {
        let w = self.get(&format!("{conv}.weight"))?.clone();
        let gamma = &self.get(&format!("{bn}.weight"))?.data;
        let beta = &self.get(&format!("{bn}.bias"))?.data;
        let mean = &self.get(&format!("{bn}.running_mean"))?.data;
        let var = &self.get(&format!("{bn}.running_var"))?.data;
        let (o, k) = (w.shape[0], w.shape[2]);
        let per_out = w.data.len() / o;
        let mut wf = w.data.clone();
        let mut bf = vec![0f32; o];
        for c in 0..o {
            let scale =
                f64::from(gamma[c]) / (f64::from(var[c]) + f64::from(self.arch.bn_eps)).sqrt();
            for v in &mut wf[c * per_out..(c + 1) * per_out] {
                *v = (f64::from(*v) * scale) as f32;
            }
            bf[c] = (f64::from(beta[c]) - f64::from(mean[c]) * scale) as f32;
        }
        let (wn, bn_name) = (
            format!("{conv}.weight_folded"),
            format!("{conv}.bias_folded"),
        );
        self.inits.push(tensor(&wn, &w.shape, &wf));
        self.inits.push(tensor(&bn_name, &[o], &bf));
        let pad = (k / 2) as i64;
        self.node(
            "Conv",
            &[input, &wn, &bn_name],
            output,
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[pad, pad, pad, pad]),
            ],
        );
        Ok(())
    }

    fn relu(&mut self, input: &str, output: &str) {
        self.node("Relu", &[input], output, vec![]);
    }

    /// The stem (conv, BN, ReLU, optional 2x2 max-pool) into `out`; returns the spatial size
    /// after it.
    fn stem(&mut self, r: &ResNetSpec, out: &str) -> Result<(usize, usize)> {
        let a = self.arch;
        let (mut h, mut w) = (
            conv_out(a.height, r.stem.kernel, r.stem.stride),
            conv_out(a.width, r.stem.kernel, r.stem.stride),
        );
        self.conv_bn(INPUT, "stem.conv", "stem.bn", r.stem.stride, "stem.bn_out")?;
        let stem_out = if r.stem.max_pool {
            "stem.relu_out"
        } else {
            out
        };
        self.relu("stem.bn_out", stem_out);
        if r.stem.max_pool {
            self.node(
                "MaxPool",
                &[stem_out],
                out,
                vec![
                    attr_ints("kernel_shape", &[2, 2]),
                    attr_ints("strides", &[2, 2]),
                ],
            );
            h /= 2;
            w /= 2;
        }
        Ok((h, w))
    }

    /// Residual block `i` (conv-BN-ReLU, conv-BN, plus the identity or a projection
    /// shortcut, then ReLU) from `x` into `out`.
    fn residual_block(&mut self, r: &ResNetSpec, i: usize, x: &str, out: &str) -> Result<()> {
        let b = &r.blocks[i];
        let p = format!("blocks.{i}");
        self.conv_bn(
            x,
            &format!("{p}.conv1"),
            &format!("{p}.bn1"),
            b.stride,
            &format!("{p}.bn1_out"),
        )?;
        self.relu(&format!("{p}.bn1_out"), &format!("{p}.relu1_out"));
        self.conv_bn(
            &format!("{p}.relu1_out"),
            &format!("{p}.conv2"),
            &format!("{p}.bn2"),
            1,
            &format!("{p}.bn2_out"),
        )?;
        let shortcut = if r.block_has_projection_shortcut(i) {
            let s = format!("{p}.shortcut_out");
            self.conv_bn(
                x,
                &format!("{p}.shortcut.conv"),
                &format!("{p}.shortcut.bn"),
                b.stride,
                &s,
            )?;
            s
        } else {
            x.to_string()
        };
        self.node(
            "Add",
            &[&format!("{p}.bn2_out"), &shortcut],
            &format!("{p}.sum"),
            vec![],
        );
        self.relu(&format!("{p}.sum"), out);
        Ok(())
    }

    /// The projector's Linear (Gemm) and ReLU layers from the representation to the projection,
    /// a batch norm after a linear folded into it as into a convolution ([`Self::conv_bn`]):
    /// W' = W * g / sqrt(v + eps) row by row, b' = (b - m) * g / sqrt(v + eps) + beta.
    fn projector(&mut self) -> Result<()> {
        let a = self.arch;
        let mut y = REPRESENTATION.to_string();
        for j in 0..a.projector.len() {
            let p = a.projector_linear(j);
            let mut wt = self.get(&format!("{p}.weight"))?.clone();
            let mut bt = self.get(&format!("{p}.bias"))?.clone();
            let (wn, bn_name) = match a.projector_norm(j) {
                None => (format!("{p}.weight"), format!("{p}.bias")),
                Some(bn) => {
                    let gamma = &self.get(&format!("{bn}.weight"))?.data;
                    let beta = &self.get(&format!("{bn}.bias"))?.data;
                    let mean = &self.get(&format!("{bn}.running_mean"))?.data;
                    let var = &self.get(&format!("{bn}.running_var"))?.data;
                    let d_in = wt.shape[1];
                    for o in 0..wt.shape[0] {
                        let scale =
                            f64::from(gamma[o]) / (f64::from(var[o]) + f64::from(a.bn_eps)).sqrt();
                        for v in &mut wt.data[o * d_in..(o + 1) * d_in] {
                            *v = (f64::from(*v) * scale) as f32;
                        }
                        bt.data[o] = ((f64::from(bt.data[o]) - f64::from(mean[o])) * scale
                            + f64::from(beta[o])) as f32;
                    }
                    (format!("{p}.weight_folded"), format!("{p}.bias_folded"))
                }
            };
            self.inits.push(tensor(&wn, &wt.shape, &wt.data));
            self.inits.push(tensor(&bn_name, &bt.shape, &bt.data));
            let last = j + 1 == a.projector.len();
            let out = if last {
                PROJECTION.to_string()
            } else {
                format!("{p}.out")
            };
            self.node(
                "Gemm",
                &[&y, &wn, &bn_name],
                &out,
                vec![attr_int("transB", 1)],
            );
            y = if last {
                out
            } else {
                let r = format!("{p}.relu_out");
                self.relu(&out, &r);
                r
            };
        }
        Ok(())
    }

    /// The ResNet backbone from the input to [`REPRESENTATION`] (global average pooling);
    /// returns its layer outputs with their shapes.
    fn resnet(&mut self, r: &ResNetSpec) -> Result<Outputs> {
        let layer_names = self.arch.layer_names();
        let mut outputs = Vec::new();
        // Spatial size after each step, for the declared output shapes.
        let (mut h, mut w) = self.stem(r, &layer_names[0])?;
        outputs.push((
            layer_names[0].clone(),
            vec![
                Dim::Named("batch"),
                Dim::Fixed(r.stem.channels),
                Dim::Fixed(h),
                Dim::Fixed(w),
            ],
        ));
        let mut x = layer_names[0].clone();
        for (i, b) in r.blocks.iter().enumerate() {
            let out = layer_names[i + 1].clone();
            self.residual_block(r, i, &x, &out)?;
            h = conv_out(h, 3, b.stride);
            w = conv_out(w, 3, b.stride);
            outputs.push((
                out.clone(),
                vec![
                    Dim::Named("batch"),
                    Dim::Fixed(b.channels),
                    Dim::Fixed(h),
                    Dim::Fixed(w),
                ],
            ));
            x = out;
        }
        self.node("GlobalAveragePool", &[&x], "pooled", vec![]);
        self.node(
            "Flatten",
            &["pooled"],
            REPRESENTATION,
            vec![attr_int("axis", 1)],
        );
        Ok(outputs)
    }

    fn build(&mut self, opts: ExportOptions) -> Result<Outputs> {
        let a = self.arch;
        let (layers, extra) = match &a.backbone {
            Backbone::ResNet(r) => (self.resnet(r)?, Vec::new()),
            Backbone::Vit { vit } => self.vit(vit)?,
        };
        self.projector()?;

        let mut graph_outputs = vec![(
            REPRESENTATION.to_string(),
            vec![Dim::Named("batch"), Dim::Fixed(a.representation_dim())],
        )];
        if let Some(&d) = a.projector.last() {
            graph_outputs.push((
                PROJECTION.to_string(),
                vec![Dim::Named("batch"), Dim::Fixed(d)],
            ));
        }
        graph_outputs.extend(extra);
        if opts.layer_outputs {
            graph_outputs.extend(layers);
        }
        Ok(graph_outputs)
    }
}

/// Builds the ONNX model for `arch` with `weights`.
pub fn model(arch: &ArchSpec, weights: &Weights, opts: ExportOptions) -> Result<ModelProto> {
    arch.validate()?;
    arch.check_weights(weights)?;
    let mut g = Graph {
        arch,
        weights,
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    let outputs = g.build(opts)?;

    let mut graph = GraphProto::new();
    graph.name = arch.name.clone();
    graph.node = g.nodes;
    graph.initializer = g.inits;
    graph.input = vec![value_info(
        INPUT,
        &[
            Dim::Named("batch"),
            Dim::Fixed(arch.in_channels),
            Dim::Fixed(arch.height),
            Dim::Fixed(arch.width),
        ],
    )];
    graph.output = outputs.iter().map(|(n, d)| value_info(n, d)).collect();

    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    let mut m = ModelProto::new();
    m.ir_version = IR_VERSION;
    m.opset_import = vec![opset];
    m.producer_name = "sslmem".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.graph = Some(graph).into();
    Ok(m)
}

/// Serialises the model to bytes.
pub fn to_bytes(arch: &ArchSpec, weights: &Weights, opts: ExportOptions) -> Result<Vec<u8>> {
    model(arch, weights, opts)?
        .write_to_bytes()
        .map_err(|e| Error::Param(format!("cannot serialise ONNX model: {e}")))
}

/// Writes the model to `path` atomically (temporary file, then rename).
pub fn write(path: &Path, arch: &ArchSpec, weights: &Weights, opts: ExportOptions) -> Result<()> {
    let bytes = to_bytes(arch, weights, opts)?;
    crate::fsutil::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_has_the_declared_interface_and_folded_weights() {
        let arch = ArchSpec::resnet_mini_28();
        let w = arch.random_weights(3);
        let m = model(
            &arch,
            &w,
            ExportOptions {
                layer_outputs: true,
            },
        )
        .expect("model");
        let g = m.graph.as_ref().expect("graph");
        assert_eq!(m.opset_import[0].version, 17);
        assert_eq!(g.input[0].name, INPUT);
        let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            outs,
            [
                "representation",
                "projection",
                "layer1",
                "layer2",
                "layer3",
                "layer4"
            ]
        );
        assert!(g.node.iter().all(|n| n.op_type != "BatchNormalization"));
        let convs = g.node.iter().filter(|n| n.op_type == "Conv").count();
        assert_eq!(convs, 1 + 2 * 3 + 2);
        let plain = model(&arch, &w, ExportOptions::default()).expect("model");
        assert_eq!(plain.graph.as_ref().expect("graph").output.len(), 2);
    }

    #[test]
    fn a_projector_batch_norm_is_folded_into_its_linear_layer() {
        let mut arch = ArchSpec::resnet_mini_28();
        arch.projector = vec![4, 3];
        arch.projector_bn = true;
        let w = arch.random_weights(5);
        let m = model(&arch, &w, ExportOptions::default()).expect("model");
        let g = m.graph.as_ref().expect("graph");
        assert!(g.node.iter().all(|n| n.op_type != "BatchNormalization"));
        let init = |name: &str| {
            g.initializer
                .iter()
                .find(|t| t.name == name)
                .map(|t| {
                    t.raw_data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect::<Vec<f32>>()
                })
                .expect(name)
        };
        // By hand for output 2 of the first layer, a row of 128 weights.
        let (wf, bf) = (
            init("projector.0.weight_folded"),
            init("projector.0.bias_folded"),
        );
        let v = |n: &str, i: usize| f64::from(w[n].data[i]);
        let scale = v("projector.1.weight", 2) / (v("projector.1.running_var", 2) + 1e-5).sqrt();
        let want_b = (v("projector.0.bias", 2) - v("projector.1.running_mean", 2)) * scale
            + v("projector.1.bias", 2);
        assert!((f64::from(bf[2]) - want_b).abs() < 1e-6);
        for k in [0, 77, 127] {
            let want = v("projector.0.weight", 2 * 128 + k) * scale;
            assert!((f64::from(wf[2 * 128 + k]) - want).abs() < 1e-6);
        }
        // The last layer has no batch norm and keeps its weights.
        assert_eq!(init("projector.3.weight"), w["projector.3.weight"].data);
    }

    #[test]
    fn incomplete_weights_are_refused() {
        let arch = ArchSpec::resnet_mini_28();
        let mut w = arch.random_weights(3);
        w.remove("stem.bn.running_var");
        assert!(model(&arch, &w, ExportOptions::default()).is_err());
    }
}
