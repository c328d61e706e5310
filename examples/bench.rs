//! Helpers of `scripts/bench-score.sh` (a benchmark, not a test):
//!
//!   bench pngs OUT N                      write the first N Fashion-MNIST test images as PNG
//!   bench forward BUNDLE VIEWS BATCH      time a bare forward pass of VIEWS views through
//!                                         every encoder of BUNDLE, BATCH views per run
//!   bench flops BUNDLE                    FLOPs of one view through one encoder, from the
//!                                         manifest's architecture (ArchSpec::forward_flops)
//!   bench sgemm N RUNS                    the machine's single-precision matrix-multiply
//!                                         rate in GFLOP/s: an N x N by N x N MatMul in ONNX
//!                                         Runtime (its MLAS kernels, the sessions' settings)
//!
//! The forward baseline uses the same sessions (`Bundle::load`), batch size and encoder
//! schedule (side by side or in turn) as `sslmem score`, with inputs made before the clock
//! starts.

use std::path::Path;
use std::time::Instant;

use onnx_protobuf::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, Message, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use sslmem::bundle::Bundle;
use sslmem::data::inputs::load_dataset;
use sslmem::runtime::EncoderSession;
use sslmem::runtime::RuntimeOptions;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["pngs", out, n] => {
            let n: usize = n.parse()?;
            let arr = load_dataset("fashion-mnist:test")?;
            std::fs::create_dir_all(out)?;
            for i in 0..n.min(arr.len()) {
                let img = arr.get(i)?;
                let g = image::GrayImage::from_raw(img.width as u32, img.height as u32, img.data)
                    .ok_or("bad image")?;
                g.save(Path::new(out).join(format!("{i:05}.png")))?;
            }
            Ok(())
        }
        ["forward", bundle, views, batch] => {
            let (views, batch): (usize, usize) = (views.parse()?, batch.parse()?);
            let b = Bundle::load(Path::new(bundle), &RuntimeOptions::default())?;
            let i = &b.manifest.input;
            let len = i.channels * i.height * i.width;
            let out = &b.manifest.representation.output;
            // Warm-up, as the scorer's first batch also pays for it.
            for e in b.encoders() {
                e.embed(vec![0.0; len], [1, i.channels, i.height, i.width], out)?;
            }
            let data: Vec<f32> = (0..batch * len)
                .map(|k| ((k * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let start = Instant::now();
            let mut done = 0;
            while done < views {
                let n = batch.min(views - done);
                let shape = [n, i.channels, i.height, i.width];
                // As the engine runs them: every encoder at once when the bundle loaded them
                // side by side, else one after the other.
                if b.side_by_side {
                    std::thread::scope(|s| {
                        let running: Vec<_> = b
                            .encoders()
                            .map(|e| s.spawn(|| e.embed(data[..n * len].to_vec(), shape, out)))
                            .collect();
                        running
                            .into_iter()
                            .try_for_each(|r| r.join().map_err(|_| "encoder panicked")?.map(drop).map_err(|e| e.to_string()))
                    })?;
                } else {
                    for e in b.encoders() {
                        e.embed(data[..n * len].to_vec(), shape, out)?;
                    }
                }
                done += n;
            }
            println!("{:.4}", start.elapsed().as_secs_f64());
            Ok(())
        }
        ["flops", bundle] => {
            let b = sslmem::bundle::read_manifest(Path::new(bundle))?;
            let arch = b
                .architecture
                .as_ref()
                .and_then(sslmem::bundle::Architecture::spec)
                .ok_or("the bundle's manifest has no architecture sslmem can read")?;
            println!("{}", arch.forward_flops());
            Ok(())
        }
        ["sgemm", n, runs] => {
            let (n, runs): (usize, usize) = (n.parse()?, runs.parse()?);
            let dir = std::env::temp_dir().join(format!("sslmem-sgemm-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("matmul.onnx");
            std::fs::write(&path, matmul_model(n).write_to_bytes()?)?;
            let enc = EncoderSession::load(&path, &RuntimeOptions::default());
            let _ = std::fs::remove_dir_all(&dir);
            let enc = enc?;
            let a: Vec<f32> = (0..n * n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0).collect();
            let out = vec!["sum".to_string()];
            enc.run_owned(a.clone(), [1, 1, n, n], &out)?; // warm-up: weights packed
            let start = Instant::now();
            for _ in 0..runs {
                enc.run_owned(a.clone(), [1, 1, n, n], &out)?;
            }
            let secs = start.elapsed().as_secs_f64();
            println!("{:.1}", 2.0 * (n as f64).powi(3) * runs as f64 / secs / 1e9);
            Ok(())
        }
        _ => Err("usage: bench pngs OUT N | bench forward BUNDLE VIEWS BATCH | bench flops BUNDLE | bench sgemm N RUNS".into()),
    }
}

/// `sum = ReduceSum(MatMul(a, b))` with `a` `[1, 1, n, n]` and a constant `b` `[n, n]`: the
/// matrix multiply dominates (2n^3 FLOPs against n^2 additions) and the output is one number,
/// so nothing but the multiply is timed.
fn matmul_model(n: usize) -> ModelProto {
    let dims = |d: &[i64]| {
        let mut shape = TensorShapeProto::new();
        shape.dim = d
            .iter()
            .map(|&v| {
                let mut dim = tensor_shape_proto::Dimension::new();
                dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(v));
                dim
            })
            .collect();
        let mut t = type_proto::Tensor::new();
        t.elem_type = DataType::FLOAT as i32;
        t.shape = Some(shape).into();
        let mut ty = TypeProto::new();
        ty.value = Some(type_proto::Value::TensorType(t));
        ty
    };
    let value = |name: &str, d: &[i64]| {
        let mut v = ValueInfoProto::new();
        v.name = name.into();
        v.type_ = Some(dims(d)).into();
        v
    };
    let node = |op: &str, inputs: &[&str], output: &str| {
        let mut nd = NodeProto::new();
        nd.op_type = op.into();
        nd.input = inputs.iter().map(|s| s.to_string()).collect();
        nd.output = vec![output.into()];
        nd
    };
    let mut b = TensorProto::new();
    b.name = "b".into();
    b.dims = vec![n as i64, n as i64];
    b.data_type = DataType::FLOAT as i32;
    b.raw_data = (0..n * n)
        .flat_map(|k| (((k * 104_729) % 1000) as f32 / 1000.0).to_le_bytes())
        .collect();
    let mut g = GraphProto::new();
    g.name = "sgemm".into();
    g.node = vec![
        node("MatMul", &["a", "b"], "c"),
        node("ReduceSum", &["c"], "sum"),
    ];
    g.initializer = vec![b];
    let n = n as i64;
    g.input = vec![value("a", &[1, 1, n, n])];
    g.output = vec![value("sum", &[1, 1, 1, 1])];
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut opset = OperatorSetIdProto::new();
    opset.version = 17;
    m.opset_import = vec![opset];
    m.graph = Some(g).into();
    m
}
