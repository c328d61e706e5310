//! One encoder's resumable run, as `sslmem-train pair` and `removal` both run their
//! encoders: train (from the run's checkpoints when resuming), export to ONNX, check the
//! export against the trained model, evaluate the export, and write the run's record
//! atomically; a run whose record exists and reads is not run again.

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{Device, Kind};

use super::eval::{evaluate, exported_engine, images, EvalReport};
use super::model::Encoder;
use super::trainer::{TrainConfig, Trainer};
use crate::augment::Normalize;
use crate::data::dataset;
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::onnx::{self, ExportOptions};

/// Largest relative difference allowed between the trained encoder and its export.
pub const PARITY_TOLERANCE: f64 = 1e-4;

/// One encoder to train, export, check, evaluate and record.
pub struct Job<'a> {
    pub trainer: Trainer<'a>,
    /// Skip the job when its record exists; continue training from its checkpoints.
    pub resume: bool,
    /// Where the ONNX export goes.
    pub onnx: PathBuf,
    pub export: ExportOptions,
    /// The job's record (JSON), written last.
    pub record: PathBuf,
    /// Test images: the parity check's, and the evaluation's.
    pub test: &'a ImageArray,
    pub norm: &'a Normalize,
    /// Labelled training images and the indices the evaluation fits on (`None`: no labels,
    /// not evaluated).
    pub eval: Option<(&'a ImageArray, &'a [usize])>,
}

/// What a job made, for its record.
pub struct Exported<'j> {
    /// The ONNX export.
    pub path: &'j Path,
    /// [`check_parity`]'s relative difference.
    pub parity: f64,
    pub eval: Option<EvalReport>,
}

impl Job<'_> {
    /// Runs the job, or reads its record when resuming a job already done. `record` makes
    /// the record from what the job made (and may write files of its own).
    ///
    /// Errors: training, export, the parity check, evaluation, `record` or writing the
    /// record failed.
    pub fn run<R: Serialize + DeserializeOwned>(
        &self,
        record: impl FnOnce(&Exported) -> Result<R>,
    ) -> Result<R> {
        let label = &self.trainer.label;
        if self.resume {
            let done = fs::read(&self.record)
                .ok()
                .and_then(|text| serde_json::from_slice::<R>(&text).ok());
            if let Some(r) = done {
                tracing::info!(run = %label, "already done; skipping");
                return Ok(r);
            }
        }
        let model = self.trainer.run(self.resume)?;
        let arch = &self.trainer.config.arch;
        onnx::write(&self.onnx, arch, &model.encoder.weights()?, self.export)?;
        let parity = check_parity(
            &model.encoder,
            &self.onnx,
            self.test,
            self.norm,
            PARITY_TOLERANCE,
        )?;
        let eval = match self.eval {
            Some((train, idx)) => {
                let exported =
                    exported_engine(&self.onnx, self.test, self.norm, onnx::REPRESENTATION)?;
                let e = evaluate(&exported, train, idx, self.test, self.norm)?;
                tracing::info!(run = %label, knn = e.knn_accuracy, linear_probe = e.linear_probe_accuracy, parity, "trained and exported");
                Some(e)
            }
            None => {
                tracing::info!(run = %label, parity, "trained and exported (no labels: not evaluated)");
                None
            }
        };
        let r = record(&Exported {
            path: &self.onnx,
            parity,
            eval,
        })?;
        write_atomic(
            &self.record,
            &serde_json::to_vec_pretty(&r).map_err(|e| Error::output("JSON", e))?,
        )?;
        Ok(r)
    }
}

/// The dataset `spec` (cut to the first `subset` examples) at the recipe's input size, and the
/// recipe with its normalisation taken from the training images when it has none: what
/// `pair` and `subsample` start from. Returns `(recipe, the training and test arrays)`.
///
/// # Errors
/// When the dataset cannot be loaded or cut.
pub fn load_data(
    config: &TrainConfig,
    spec: &str,
    subset: Option<(usize, usize)>,
) -> Result<(TrainConfig, dataset::TrainTest)> {
    let arch = &config.arch;
    let shape = [arch.in_channels, arch.height, arch.width];
    let tt = dataset::load(spec, Some(shape), subset)?;
    let mut config = config.clone();
    if config.mean.is_empty() {
        (config.mean, config.std) = dataset::normalisation(spec, &tt.train);
        tracing::info!(mean = ?config.mean, std = ?config.std, "input normalisation");
    }
    Ok((config, tt))
}

/// Runs the tch encoder (eval mode) and ONNX Runtime on the same images; fails when they
/// differ by more than `tol` relative to the output scale.
pub fn check_parity(
    enc: &Encoder,
    onnx_path: &Path,
    data: &ImageArray,
    norm: &crate::augment::Normalize,
    tol: f64,
) -> Result<f64> {
    let idx: Vec<usize> = (0..data.len().min(32)).collect();
    let x = images(data, &idx, norm, Device::Cpu)?;
    let cpu_vs = tch::nn::VarStore::new(Device::Cpu);
    // Compare on the CPU, where the ONNX model runs.
    let cpu = Encoder::new(&cpu_vs.root(), &enc.arch)?;
    let w = enc.weights()?;
    tch::no_grad(|| -> Result<()> {
        for (name, mut t) in cpu_vs.variables() {
            let src = w
                .get(&name)
                .ok_or_else(|| Error::Train(format!("no weight {name}")))?;
            let shape: Vec<i64> = src.shape.iter().map(|&d| d as i64).collect();
            t.f_copy_(&tch::Tensor::from_slice(&src.data).reshape(shape))
                .map_err(|e| Error::Train(e.to_string()))?;
        }
        Ok(())
    })?;
    let want = tch::no_grad(|| cpu.forward(&x, false).representation);
    let ort = exported_engine(onnx_path, data, norm, onnx::REPRESENTATION)?;
    let input = Vec::<f32>::try_from(x.flatten(0, -1)).map_err(|e| Error::Train(e.to_string()))?;
    let reps = ort.embed_normalized(input)?;
    let got = reps
        .f
        .first()
        .ok_or_else(|| Error::Train("the export check's engine has no encoder".into()))?;
    let want = Vec::<f32>::try_from(want.to_kind(Kind::Float).flatten(0, -1))
        .map_err(|e| Error::Train(e.to_string()))?;
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
        / scale;
    if f64::from(err) > tol {
        return Err(Error::Model {
            model: onnx_path.display().to_string(),
            reason: format!("ONNX export differs from the trained model by {err:.2e} relative (limit {tol:.0e})"),
        });
    }
    Ok(f64::from(err))
}
