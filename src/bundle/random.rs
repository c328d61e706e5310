//! `sslmem bundle random`: a bundle of seeded, untrained encoders written from an
//! architecture description, for tests, benchmarks and null controls (scores are noise, or
//! exactly 0 with `same`).

use std::path::Path;

use super::manifest::{
    write_manifest, Architecture, InputSpec, Manifest, ModelFile, RepresentationSpec, FORMAT,
};
use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;
use crate::error::{Error, Result};
use crate::fsutil::sha256_file;
use crate::onnx::{self, ExportOptions};

/// Normalisation constants of the datasets the presets are made for.
fn default_normalization(channels: usize) -> (Vec<f32>, Vec<f32>) {
    if channels == 1 {
        (vec![0.2860], vec![0.3530]) // Fashion-MNIST
    } else {
        (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]) // CIFAR-10
    }
}

/// Writes a bundle of seeded random encoders built from an architecture description
/// (`sslmem bundle random`): `models` per side, `g{k}` identical to `f{k}` when `same`
/// (every score is then exactly 0), per-layer outputs when `layers`.
pub fn write_random(
    out: &Path,
    arch: &ArchSpec,
    seed: u64,
    models: usize,
    layers: bool,
    same: bool,
    augment: AugmentSpec,
) -> Result<Manifest> {
    if models == 0 {
        return Err(Error::Param(
            "a random bundle needs at least one encoder per side".into(),
        ));
    }
    let opts = ExportOptions {
        layer_outputs: layers,
    };
    let side = |name: &str, base: u64| -> Result<Vec<ModelFile>> {
        (0..models)
            .map(|i| {
                let file = format!("{name}{i}.onnx");
                let path = out.join(&file);
                onnx::write(
                    &path,
                    arch,
                    &arch.random_weights(base.wrapping_add(i as u64)),
                    opts,
                )?;
                Ok(ModelFile {
                    sha256: sha256_file(&path)?,
                    path: file,
                    external_data: Vec::new(),
                })
            })
            .collect()
    };
    let f = side("f", seed)?;
    let g = if same {
        f.clone()
    } else {
        side("g", seed.wrapping_add(1_000_003))?
    };
    let (mean, std) = default_normalization(arch.in_channels);
    let manifest = Manifest {
        format: FORMAT.into(),
        name: Some(format!(
            "random {} (seed {seed}); not trained, scores are noise",
            arch.name
        )),
        input: InputSpec {
            name: onnx::INPUT.into(),
            channels: arch.in_channels,
            height: arch.height,
            width: arch.width,
            mean,
            std,
            ..Default::default()
        },
        representation: RepresentationSpec {
            output: onnx::REPRESENTATION.into(),
            layers: if layers {
                arch.layer_names()
            } else {
                Vec::new()
            },
            pooling: None,
        },
        augment: Some(augment),
        f,
        g,
        architecture: Some(Architecture::from(arch)),
        split: None,
        training: None,
        subsample: None,
    };
    write_manifest(out, &manifest)?;
    Ok(manifest)
}
