//! Trainer models export to ONNX that matches them: the tch encoder (eval mode) against
//! ONNX Runtime on the writer's output, after training-mode passes moved the batch-norm
//! statistics away from their initial values.
#![cfg(feature = "train")]

use sslmem::arch::{ArchSpec, StemSpec};
use sslmem::onnx::{self, ExportOptions};
use sslmem::runtime::{EncoderSession, RuntimeOptions};
use sslmem::train::model::Encoder;
use tch::{nn, Device, Kind, Tensor};

fn parity(arch: &ArchSpec) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Encoder::new(&vs.root(), arch).expect("encoder");
    let shape = [
        16,
        arch.in_channels as i64,
        arch.height as i64,
        arch.width as i64,
    ];
    // Training-mode passes update the running statistics; perturb the affine parameters too.
    tch::no_grad(|| {
        for _ in 0..3 {
            let _ = enc.forward(
                &(Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 2.0 + 0.5),
                true,
            );
        }
        for (name, mut v) in vs.variables() {
            if name.ends_with("bn.weight")
                || name.ends_with("bn1.bias")
                || name.starts_with("projector.1.")
                || name.contains("norm")
            {
                let noise = Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.1;
                let _ = v.g_add_(&noise);
            }
        }
    });
    let x = Tensor::randn(
        [5, shape[1], shape[2], shape[3]],
        (Kind::Float, Device::Cpu),
    );
    let out = tch::no_grad(|| enc.forward(&x, false));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("enc.onnx");
    onnx::write(
        &path,
        arch,
        &enc.weights().expect("weights"),
        ExportOptions {
            layer_outputs: true,
        },
    )
    .expect("write");
    let ort = EncoderSession::load(&path, &RuntimeOptions::default()).expect("load");
    let input = Vec::<f32>::try_from(x.flatten(0, -1)).expect("input");
    let mut names = vec![
        onnx::REPRESENTATION.to_string(),
        onnx::PROJECTION.to_string(),
        arch.layer_names()[1].clone(),
    ];
    let mut wanted = vec![&out.representation, &out.projection, &out.layers[1]];
    if let Some(tokens) = &out.tokens {
        names.push(onnx::TOKENS.to_string());
        wanted.push(tokens);
    }
    let got = ort
        .run_owned(
            input,
            [5, arch.in_channels, arch.height, arch.width],
            &names,
        )
        .expect("run");
    assert_eq!(got.len(), wanted.len());
    for (g, want) in got.iter().zip(wanted) {
        let want = Vec::<f32>::try_from(want.flatten(0, -1)).expect("tensor");
        let g: Vec<f32> = g.iter().copied().collect();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let err = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
            / scale;
        assert!(
            err < 1e-4,
            "{}: ONNX differs from tch by {err} relative to the output scale",
            arch.name
        );
        assert!(g.iter().all(|v| v.is_finite()), "{}", arch.name);
    }
}

#[test]
fn export_matches_tch_28x28x1() {
    parity(&ArchSpec::resnet_mini_28());
}

#[test]
fn export_matches_tch_32x32x3_with_pooling_stem() {
    let mut arch = ArchSpec::resnet_mini_32();
    arch.resnet_mut().expect("resnet").stem = StemSpec {
        channels: 16,
        kernel: 5,
        stride: 2,
        max_pool: true,
    };
    parity(&arch);
}

#[test]
fn export_matches_tch_with_batch_norm_in_the_projector() {
    let mut arch = ArchSpec::resnet_mini_28();
    arch.resnet_mut().expect("resnet").stem.stride = 2;
    arch.projector = vec![96, 80, 64];
    arch.projector_bn = true;
    parity(&arch);
}

#[test]
fn export_matches_tch_vit_28x28x1() {
    parity(&ArchSpec::preset("vit-tiny-28x28x1").expect("preset"));
}

#[test]
fn export_matches_tch_vit_32x32x3_with_batch_norm_in_the_projector() {
    let mut arch = ArchSpec::preset("vit-tiny-32x32x3").expect("preset");
    arch.projector_bn = true;
    parity(&arch);
}

#[test]
fn parameter_names_are_the_architecture_names() {
    let arch = ArchSpec::resnet_mini_28();
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = Encoder::new(&vs.root(), &arch).expect("encoder");
    let w = enc.weights().expect("weights");
    arch.check_weights(&w)
        .expect("every parameter, nothing else");
    assert!(
        w["stem.bn.weight"].data.iter().all(|&v| v == 1.0),
        "batch-norm weights start at 1"
    );
    assert!(w["stem.bn.running_var"].data.iter().all(|&v| v == 1.0));
}
