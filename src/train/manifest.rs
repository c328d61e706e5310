//! What a trainer writes into a bundle's manifest besides its encoders, the same for
//! `sslmem-train pair` and `subsample`: the input and representation the encoders were
//! exported with, the augmentations, the architecture and the `training` record (recipe,
//! dataset, runs, evaluation, command); and each finished run's record and training log.

use std::fs;
use std::path::Path;

use super::checkpoint;
use super::collapse::OutputSpreads;
use super::eval::output_spreads;
use super::job::{Exported, Job};
use super::monitor::MonitorSpec;
use super::trainer::TrainConfig;
use crate::bundle::{self, InputSpec, Manifest, ModelFile, RepresentationSpec, TrainingRecord};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::onnx;
use crate::recipe::{EvalLine, RunRecord};
use crate::runtime::Pooling;

/// How the encoders of a bundle were made, as the manifest records it.
pub struct Provenance<'a> {
    /// The recipe, with the normalisation filled in.
    pub config: &'a TrainConfig,
    /// As given to `--dataset`.
    pub dataset: &'a str,
    /// `(train, test)` example counts the dataset was cut to; `None`: all of it.
    pub subset: Option<(usize, usize)>,
    /// The ONNX output the bundle scores: [`onnx::REPRESENTATION`] or [`onnx::PROJECTION`].
    pub score_output: &'a str,
    pub monitor: &'a MonitorSpec,
    /// The device trained on, as the trainer prints it (`Cpu`, `Cuda(0)`).
    pub device: String,
    /// The training command line(s).
    pub command: String,
}

impl Provenance<'_> {
    /// The manifest of a bundle whose encoders are `f` and `g`, made from `runs`, with the
    /// raw-pixel baseline `raw` (test accuracy in [0, 1]; `None` without labels); no split
    /// and no subsample record (the caller adds its own).
    pub fn manifest(
        &self,
        f: Vec<ModelFile>,
        g: Vec<ModelFile>,
        runs: Vec<RunRecord>,
        raw: Option<f64>,
    ) -> Manifest {
        let config = self.config;
        Manifest {
            format: bundle::FORMAT.into(),
            name: Some(
                format!(
                    "{} {} on {}",
                    config.arch.name,
                    config.method.name(),
                    self.dataset
                )
                .to_lowercase(),
            ),
            input: InputSpec {
                name: onnx::INPUT.into(),
                channels: config.arch.in_channels,
                height: config.arch.height,
                width: config.arch.width,
                mean: config.mean.clone(),
                std: config.std.clone(),
                ..Default::default()
            },
            representation: RepresentationSpec {
                output: self.score_output.into(),
                layers: config.arch.layer_names(),
                pooling: (self.score_output == onnx::TOKENS).then_some(Pooling::Flatten),
            },
            augment: Some(config.augment.clone()),
            f,
            g,
            architecture: Some(bundle::Architecture::from(&config.arch)),
            split: None,
            training: Some(TrainingRecord {
                representation: Some(
                    match (self.score_output, config.arch.vit().is_some()) {
                        (onnx::PROJECTION, _) => "projector output (what the SSL loss sees)",
                        (onnx::TOKENS, _) => {
                            "every token after the final norm, flattened (as the SSLMem authors score MAE)"
                        }
                        (_, true) => "class token after the final norm",
                        (_, false) => "backbone output after global average pooling",
                    }
                    .into(),
                ),
                config: Some(config.clone().into()),
                dataset: Some(self.dataset.into()),
                subset: self.subset,
                runs: Some(runs.into()),
                raw_pixel_linear_probe_accuracy: raw,
                monitor: Some(self.monitor.clone().into()),
                device: Some(self.device.clone()),
                command: Some(self.command.clone()),
                sslmem_version: Some(env!("CARGO_PKG_VERSION").into()),
                eval_command: None,
                other: serde_json::Map::new(),
            }),
            subsample: None,
        }
    }
}

/// The record of `job`'s finished encoder `e` as encoder `index` of `side` (`f` or `g`),
/// listed in the bundle as `file` and trained on `train_examples` distinct examples: the
/// spread of its outputs over the test images, with the collapse check's word in the log;
/// and its training log, with the evaluation appended, written to `log`.
///
/// Errors: the export cannot be run over the test images; the log cannot be written.
pub fn run_record(
    job: &Job,
    e: &Exported,
    side: &str,
    index: usize,
    train_examples: usize,
    file: String,
    log: &Path,
) -> Result<RunRecord> {
    let label = &job.trainer.label;
    let spread = output_spreads(e.path, job.test, job.norm)?;
    let collapsed = collapse_report(label, &spread, job.trainer.config.epochs);
    let record = RunRecord {
        side: side.into(),
        index,
        seed: job.trainer.config.seed,
        train_examples,
        eval: e.eval.clone(),
        parity_max_rel_err: e.parity,
        file,
        spread: Some(spread),
        collapsed,
    };
    let line = EvalLine {
        run: label.clone(),
        eval: record.eval.clone(),
        parity_max_rel_err: e.parity,
    };
    let mut text = fs::read(job.trainer.workdir.join(checkpoint::LOG)).unwrap_or_default();
    text.extend_from_slice(
        (serde_json::to_string(&line).map_err(|e| Error::output("JSON", e))? + "\n").as_bytes(),
    );
    write_atomic(log, &text)?;
    Ok(record)
}

/// The outputs of `label` that collapsed after `epochs` (by their spread over the test
/// images), said in the log: a warning when any did.
pub fn collapse_report(label: &str, spread: &OutputSpreads, epochs: usize) -> Vec<String> {
    let collapsed: Vec<String> = spread
        .collapsed(epochs)
        .into_iter()
        .map(String::from)
        .collect();
    if collapsed.is_empty() {
        tracing::info!(run = %label, representation = ?spread.representation, projection = ?spread.projection, "effective rank over the test images");
    } else {
        tracing::warn!(
            run = %label,
            representation = ?spread.representation,
            projection = ?spread.projection,
            "COLLAPSED ({}): {label}'s effective rank over the test images is below \
             {:.0}% of the output's dimension: its audit is unlikely to show memorization; \
             change the method's settings (docs/train.md)",
            collapsed.join(", "),
            100.0 * super::collapse::COLLAPSE_FRACTION
        );
    }
    collapsed
}
