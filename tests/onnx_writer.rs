//! The ONNX writer against an independent forward pass: seeded random weights, written as
//! ONNX, run in ONNX Runtime, compared with a direct convolution with explicit batch norm.

mod common;

use std::process::Command;

use common::{onnx_python, reference_forward, reference_vit_forward};
use sslmem::arch::{ArchSpec, StemSpec};
use sslmem::onnx::{self, ExportOptions};
use sslmem::rng::Rng;
use sslmem::runtime::{EncoderSession, RuntimeOptions};

fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        .fold(0.0, f64::max)
        / scale
}

/// `arch` with seeded random weights, written with its layers to a temporary folder, loaded
/// in ONNX Runtime and run on 3 seeded random images for `names` (then the layers).
struct Run {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    w: sslmem::arch::Weights,
    input: Vec<f32>,
    outs: Vec<ndarray::ArrayD<f32>>,
    names: Vec<String>,
}

fn write_and_run(arch: &ArchSpec, seed: u64, input_seed: u64, outputs: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("enc.onnx");
    let w = arch.random_weights(seed);
    onnx::write(
        &path,
        arch,
        &w,
        ExportOptions {
            layer_outputs: true,
        },
    )
    .expect("write onnx");
    let enc = EncoderSession::load(&path, &RuntimeOptions::default())
        .expect("ONNX Runtime loads the model");
    let len = arch.in_channels * arch.height * arch.width;
    let mut rng = Rng::from_seed(input_seed);
    let input: Vec<f32> = (0..N * len)
        .map(|_| rng.uniform(-2.0, 2.0) as f32)
        .collect();
    let mut names: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
    names.extend(arch.layer_names());
    let outs = enc
        .run_owned(
            input.clone(),
            [N, arch.in_channels, arch.height, arch.width],
            &names,
        )
        .expect("run");
    Run {
        _dir: dir,
        path,
        w,
        input,
        outs,
        names,
    }
}

/// Images per [`write_and_run`].
const N: usize = 3;

fn check(arch: &ArchSpec, seed: u64) {
    let Run {
        path,
        w,
        input,
        outs,
        _dir,
        ..
    } = write_and_run(
        arch,
        seed,
        seed + 99,
        &[onnx::REPRESENTATION, onnx::PROJECTION],
    );
    let n = N;
    let len = arch.in_channels * arch.height * arch.width;

    for b in 0..n {
        let r = reference_forward(arch, &w, &input[b * len..(b + 1) * len]);
        for (l, want) in r.layers.iter().enumerate() {
            let got = outs[2 + l].index_axis(ndarray::Axis(0), b);
            assert_eq!(
                got.shape(),
                [want.c, want.h, want.w],
                "layer{} shape",
                l + 1
            );
            let e = max_rel_err(
                got.as_standard_layout().as_slice().expect("contiguous"),
                &want.v,
            );
            assert!(e < 1e-4, "{}: layer{} differs by {e}", arch.name, l + 1);
        }
        let rep = outs[0].index_axis(ndarray::Axis(0), b);
        let e = max_rel_err(rep.as_slice().expect("contiguous"), &r.representation);
        assert!(e < 1e-4, "{}: representation differs by {e}", arch.name);
        let proj = outs[1].index_axis(ndarray::Axis(0), b);
        let e = max_rel_err(proj.as_slice().expect("contiguous"), &r.projection);
        assert!(e < 1e-4, "{}: projection differs by {e}", arch.name);
    }

    onnx_checker(&path);
}

/// `onnx.checker` accepts the model at opset 17 (when the venv with `onnx` is there; required
/// with `SSLMEM_REQUIRE_ONNX_CHECKER`).
fn onnx_checker(path: &std::path::Path) {
    if let Some(py) = onnx_python() {
        let o = Command::new(py)
            .args(["-c", "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print(m.opset_import[0].version)"])
            .arg(path)
            .output()
            .expect("run python");
        assert!(
            o.status.success(),
            "onnx.checker rejected the model: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "17");
    } else if std::env::var_os("SSLMEM_REQUIRE_ONNX_CHECKER").is_some() {
        panic!(
            "onnx checker required but $SSLMEM_HOME/py is missing: run scripts/setup.sh --python"
        );
    }
}

#[test]
fn writer_matches_reference_28x28x1() {
    check(&ArchSpec::resnet_mini_28(), 1);
}

#[test]
fn writer_matches_reference_32x32x3() {
    check(&ArchSpec::resnet_mini_32(), 2);
}

#[test]
fn writer_matches_reference_with_strided_stem_and_max_pool() {
    let mut arch = ArchSpec::resnet_mini_32();
    arch.name = "strided".into();
    let r = arch.resnet_mut().expect("resnet");
    r.stem = StemSpec {
        channels: 16,
        kernel: 5,
        stride: 2,
        max_pool: true,
    };
    r.blocks.truncate(2);
    arch.projector = vec![32];
    check(&arch, 3);
}

#[test]
fn dynamic_batch_axis_takes_any_batch_size() {
    let arch = ArchSpec::resnet_mini_28();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("enc.onnx");
    onnx::write(
        &path,
        &arch,
        &arch.random_weights(5),
        ExportOptions::default(),
    )
    .expect("write");
    let enc = EncoderSession::load(&path, &RuntimeOptions::default()).expect("load");
    assert_eq!(enc.input.shape, vec![None, Some(1), Some(28), Some(28)]);
    for n in [1, 5, 33] {
        let reps = enc
            .embed(vec![0.1; n * 784], [n, 1, 28, 28], onnx::REPRESENTATION)
            .expect("run");
        assert_eq!(reps.shape(), [n, 128]);
    }
}

/// The representation-only graph: one output, no node the output does not need (the
/// projection head and nothing else goes), and the same values as the whole model; a session
/// loaded with it still answers calls for the other outputs (through the whole model).
#[test]
fn representation_only_graph_computes_the_same_output_with_fewer_nodes() {
    use onnx_protobuf::Message;
    let arch = ArchSpec::resnet_mini_28();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("enc.onnx");
    let w = arch.random_weights(5);
    onnx::write(
        &path,
        &arch,
        &w,
        ExportOptions {
            layer_outputs: true,
        },
    )
    .expect("write onnx");
    let whole = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&path).expect("read"))
        .expect("parse");
    let bytes = sslmem::runtime::representation_only(&path, onnx::REPRESENTATION)
        .expect("reduce")
        .expect("a model with layer outputs and a projection head reduces");
    let reduced = onnx_protobuf::ModelProto::parse_from_bytes(&bytes).expect("parse");
    let (g, r) = (whole.graph.unwrap(), reduced.graph.unwrap());
    assert_eq!(g.output.len(), 2 + arch.layer_names().len());
    let names: Vec<&str> = r.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [onnx::REPRESENTATION]);
    // Gemm, Relu, Gemm of the projector are gone, with their four initializers.
    assert_eq!(r.node.len(), g.node.len() - 3);
    assert!(r.node.iter().all(|n| n.op_type != "Gemm"));
    assert_eq!(r.initializer.len(), g.initializer.len() - 4);
    // Reducing to the projection keeps every node; a one-output model is left alone.
    let to_projection = sslmem::runtime::representation_only(&path, onnx::PROJECTION)
        .expect("reduce")
        .expect("layer outputs go");
    let p = onnx_protobuf::ModelProto::parse_from_bytes(&to_projection).expect("parse");
    assert_eq!(p.graph.unwrap().node.len(), g.node.len());
    let single = dir.path().join("single.onnx");
    std::fs::write(&single, &bytes).expect("write");
    assert!(
        sslmem::runtime::representation_only(&single, onnx::REPRESENTATION)
            .expect("reduce")
            .is_none()
    );

    // Same values: the whole model and a session specialised to the representation.
    let shape = [4, arch.in_channels, arch.height, arch.width];
    let mut rng = Rng::from_seed(6);
    let input: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.uniform(-2.0, 2.0) as f32)
        .collect();
    let opts = RuntimeOptions::default();
    let all = EncoderSession::load(&path, &opts).expect("load whole");
    let fast =
        EncoderSession::load_with(&path, &opts, Default::default(), Some(onnx::REPRESENTATION))
            .expect("load specialised");
    assert_eq!(
        fast.outputs, all.outputs,
        "the interface is the whole model's"
    );
    let want = all
        .embed(input.clone(), shape, onnx::REPRESENTATION)
        .expect("whole");
    let got = fast
        .embed(input.clone(), shape, onnx::REPRESENTATION)
        .expect("fast");
    let diff = (&got - &want).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(diff <= 1e-5, "max |difference| {diff}");
    // Another output: the whole model is loaded on demand and answers.
    let layer = fast
        .run_owned(input.clone(), shape, &["layer2".to_string()])
        .expect("layer output");
    let layer_want = all
        .run_owned(input, shape, &["layer2".to_string()])
        .expect("layer output");
    assert_eq!(layer[0].shape(), layer_want[0].shape());
    assert_eq!(layer[0], layer_want[0]);
}

/// A ViT written as ONNX against [`reference_vit_forward`]: every block's attention and MLP
/// outputs, the final tokens, the class token and the projection, for three images.
fn check_vit(arch: &ArchSpec, seed: u64) {
    let Run {
        path,
        w,
        input,
        outs,
        names,
        _dir,
    } = write_and_run(
        arch,
        seed,
        seed + 7,
        &[onnx::REPRESENTATION, onnx::PROJECTION, onnx::TOKENS],
    );
    let n = N;
    let len = arch.in_channels * arch.height * arch.width;
    let v = arch.vit().expect("vit");
    let t = v.tokens(arch.height, arch.width);
    for b in 0..n {
        let r = reference_vit_forward(arch, &w, &input[b * len..(b + 1) * len]);
        let got = |k: usize| {
            outs[k]
                .index_axis(ndarray::Axis(0), b)
                .as_standard_layout()
                .iter()
                .copied()
                .collect::<Vec<f32>>()
        };
        for (k, want, what) in [
            (0, &r.representation, "representation"),
            (1, &r.projection, "projection"),
            (2, &r.tokens, "tokens"),
        ] {
            let e = max_rel_err(&got(k), want);
            assert!(e < 1e-4, "{}: {what} differs by {e}", arch.name);
        }
        assert_eq!(outs[2].shape(), [n, t, v.width]);
        for (l, want) in r.layers.iter().enumerate() {
            assert_eq!(outs[3 + l].shape(), [n, t, v.width], "{}", names[3 + l]);
            let e = max_rel_err(&got(3 + l), want);
            assert!(e < 1e-4, "{}: {} differs by {e}", arch.name, names[3 + l]);
        }
    }
    onnx_checker(&path);
}

#[test]
fn vit_writer_matches_reference_28x28x1() {
    check_vit(&ArchSpec::preset("vit-tiny-28x28x1").expect("preset"), 4);
}

#[test]
fn vit_writer_matches_reference_32x32x3_with_a_one_layer_projector() {
    let mut arch = ArchSpec::preset("vit-tiny-32x32x3").expect("preset");
    arch.projector = vec![64];
    check_vit(&arch, 5);
}
