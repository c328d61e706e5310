//! `sslmem-train pair`: trains `f` on shared ∪ candidate and `g` on shared ∪ independent with
//! the same recipe and seeds, evaluates both, exports them to ONNX with a parity check, and
//! writes a model bundle. Each finished encoder is recorded, so a killed run resumes where
//! it stopped.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::collapse::OutputSpreads;
use super::eval::{evaluate, exported_engine, images, output_spreads, raw_pixel_probe, EvalReport};
use super::model::Encoder;
use super::monitor::{sample, Monitor, MonitorSets, MonitorSpec};
use super::trainer::{TrainConfig, Trainer};
use crate::bundle::{self, InputSpec, Manifest, ModelFile, RepresentationSpec, TrainingRecord};
use crate::data::canary::{self, CanarySpec};
use crate::data::dataset;
use crate::data::split::{CanaryFile, CanaryRecord, IndexSet};
use crate::data::split::{SplitRecord, SplitSpec};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::onnx::{self, ExportOptions};

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub side: String,
    pub index: usize,
    pub seed: u64,
    pub train_examples: usize,
    /// `None` when the dataset has no labels.
    pub eval: Option<EvalReport>,
    pub parity_max_rel_err: f64,
    pub file: String,
    /// Directions each output uses over the test images (absent in records written before
    /// the collapse check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<OutputSpreads>,
    /// The outputs that collapsed ([`crate::train::collapse`]); empty when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed: Vec<String>,
}

pub struct PairOptions {
    pub dataset: String,
    /// Canaries to plant (`None`: none).
    pub canaries: Option<CanarySpec>,
    /// The memorization monitor (`every: 0` switches it off).
    pub monitor: MonitorSpec,
    /// Seconds between checkpoints (see [`Trainer::checkpoint_seconds`]).
    pub checkpoint_seconds: f64,
    /// The ONNX output the bundle scores: [`onnx::REPRESENTATION`] or [`onnx::PROJECTION`].
    pub score_output: String,
    pub out: PathBuf,
    pub models: usize,
    pub split: SplitSpec,
    pub subset: Option<(usize, usize)>,
    pub resume: bool,
    pub device: Device,
    /// The command line, recorded in the manifest.
    pub command: String,
}

/// Trains and exports the pair(s) and writes the bundle; returns the manifest.
pub fn run_pair(config: &TrainConfig, o: &PairOptions) -> Result<Manifest> {
    if o.models == 0 {
        return Err(Error::Param("--models must be at least 1".into()));
    }
    let work = o.out.join(".work");
    if o.out.join(bundle::MANIFEST).exists() {
        if o.resume && !work.exists() {
            tracing::info!("{} is already complete", o.out.display());
            return bundle::read_manifest(&o.out);
        }
        if !o.resume {
            return Err(Error::bundle(
                o.out.join(bundle::MANIFEST),
                "already exists; choose another --out",
            ));
        }
    }
    let arch = &config.arch;
    let shape = [arch.in_channels, arch.height, arch.width];
    let dataset::TrainTest { train, test, .. } = dataset::load(&o.dataset, Some(shape), o.subset)?;
    let mut config = config.clone();
    if config.mean.is_empty() {
        (config.mean, config.std) = dataset::normalisation(&o.dataset, &train);
        tracing::info!(mean = ?config.mean, std = ?config.std, "input normalisation");
    }
    let config = &config;
    let labelled = train.labels.is_some() && test.labels.is_some();
    if !labelled {
        tracing::warn!(
            "{} has no labels: the encoders will be trained and exported but not evaluated",
            o.dataset
        );
    }
    let mut split = SplitRecord::make(&train.name, train.len(), o.split, &test.name, test.len())?;
    fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    // Canaries are appended to the training array: canary j is example `base + j`.
    let base = train.len();
    let train = match o.canaries {
        Some(spec) => {
            let c = canary::make(spec, arch.in_channels, arch.height, arch.width)?;
            split.canaries = Some(write_canaries(&o.out, &c, spec)?);
            canary::append(&train, &c)?
        }
        None => train,
    };
    let canary_set = |pick: fn(&CanaryRecord) -> &IndexSet| -> Vec<usize> {
        split
            .canaries
            .as_ref()
            .map(|c| pick(c).iter().map(|j| base + j).collect())
            .unwrap_or_default()
    };
    let repeats = o.canaries.map_or(1, |c| c.repeats);
    write_atomic(
        &o.out.join("split.json"),
        &serde_json::to_vec_pretty(&split).map_err(|e| Error::output("JSON", e))?,
    )?;
    let norm = crate::augment::Normalize::new(
        config.mean.clone(),
        config.std.clone(),
        config.arch.in_channels,
    )?;
    let mut records = Vec::new();
    let heldout = canary_set(|c| &c.heldout);
    for m in 0..o.models {
        for (side, idx, unseen, canaries) in [
            (
                "f",
                split.f_train(),
                split.independent.iter().collect::<Vec<_>>(),
                canary_set(|c| &c.candidate),
            ),
            (
                "g",
                split.g_train(),
                split.candidate.iter().collect(),
                canary_set(|c| &c.independent),
            ),
        ] {
            let label = format!("{side}{m}");
            let done = work.join(&label).join("done.json");
            if o.resume {
                if let Ok(text) = fs::read(&done) {
                    if let Ok(r) = serde_json::from_slice::<RunRecord>(&text) {
                        tracing::info!(run = %label, "already trained; skipping");
                        records.push(r);
                        continue;
                    }
                }
            }
            let cfg = TrainConfig {
                seed: config.seed.wrapping_add(m as u64),
                ..config.clone()
            };
            let n = o.monitor.sample;
            let trainer = Trainer {
                config: cfg.clone(),
                data: &train,
                indices: idx
                    .iter()
                    .copied()
                    .chain((0..repeats).flat_map(|_| canaries.iter().copied()))
                    .collect(),
                workdir: work.join(&label),
                device: o.device,
                label: label.clone(),
                monitor: Some(Monitor {
                    spec: o.monitor.clone(),
                    sets: MonitorSets {
                        seen: sample(&idx, n),
                        unseen: sample(&unseen, n),
                        canaries_seen: canaries.clone(),
                        canaries_unseen: heldout.clone(),
                    },
                }),
                checkpoint_seconds: o.checkpoint_seconds,
            };
            let model = trainer.run(o.resume)?;
            let file = format!("{label}.onnx");
            let path = o.out.join(&file);
            onnx::write(
                &path,
                &config.arch,
                &model.encoder.weights()?,
                ExportOptions {
                    layer_outputs: true,
                },
            )?;
            let parity = check_parity(&model.encoder, &path, &test, &norm, 1e-4)?;
            let exported = exported_engine(&path, &test, &norm, onnx::REPRESENTATION)?;
            let eval = if labelled {
                let e = evaluate(&exported, &train, &idx, &test, &norm)?;
                tracing::info!(run = %label, knn = e.knn_accuracy, linear_probe = e.linear_probe_accuracy, parity, "trained and exported");
                Some(e)
            } else {
                tracing::info!(run = %label, parity, "trained and exported (no labels: not evaluated)");
                None
            };
            let spread = output_spreads(&path, &test, &norm)?;
            let collapsed: Vec<String> = spread
                .collapsed(cfg.epochs)
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
            let record = RunRecord {
                side: side.into(),
                index: m,
                seed: cfg.seed,
                train_examples: idx.len(),
                eval,
                parity_max_rel_err: parity,
                file,
                spread: Some(spread),
                collapsed,
            };
            let log_src = work.join(&label).join("log.jsonl");
            let mut log = fs::read(&log_src).unwrap_or_default();
            log.extend_from_slice(format!("{}\n", serde_json::json!({"run": label, "eval": record.eval, "parity_max_rel_err": parity})).as_bytes());
            write_atomic(&o.out.join(format!("train-{label}.jsonl")), &log)?;
            write_atomic(
                &done,
                &serde_json::to_vec_pretty(&record).map_err(|e| Error::output("JSON", e))?,
            )?;
            records.push(record);
        }
    }
    let raw = if labelled {
        Some(raw_pixel_probe(
            &train,
            &split.f_train(),
            &test,
            &norm,
            o.device,
        )?)
    } else {
        None
    };
    let files = |side: &str| -> Result<Vec<ModelFile>> {
        records
            .iter()
            .filter(|r| r.side == side)
            .map(|r| {
                Ok(ModelFile {
                    sha256: sha256_file(&o.out.join(&r.file))?,
                    path: r.file.clone(),
                    external_data: Vec::new(),
                })
            })
            .collect()
    };
    let manifest = Manifest {
        format: bundle::FORMAT.into(),
        name: Some(
            format!(
                "{} {:?} on {}",
                config.arch.name, config.method.method, o.dataset
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
            output: o.score_output.clone(),
            layers: config.arch.layer_names(),
            pooling: None,
        },
        augment: Some(config.augment.clone()),
        f: files("f")?,
        g: files("g")?,
        architecture: Some(bundle::Architecture::from(&config.arch)),
        split: Some(split),
        training: Some(TrainingRecord {
            representation: Some(
                if o.score_output == onnx::PROJECTION {
                    "projector output (what the SSL loss sees)"
                } else {
                    "backbone output after global average pooling"
                }
                .into(),
            ),
            config: Some(to_json(config)?),
            dataset: Some(o.dataset.clone()),
            subset: o.subset,
            runs: Some(to_json(&records)?),
            raw_pixel_linear_probe_accuracy: raw,
            monitor: Some(to_json(&o.monitor)?),
            device: Some(format!("{:?}", o.device)),
            command: Some(o.command.clone()),
            sslmem_version: Some(env!("CARGO_PKG_VERSION").into()),
            eval_command: None,
            other: serde_json::Map::new(),
        }),
    };
    bundle::write_manifest(&o.out, &manifest)?;
    // The bundle must load as the scorer will load it.
    bundle::Bundle::load(&o.out, &crate::runtime::RuntimeOptions::default())?;
    let _ = fs::remove_dir_all(&work);
    Ok(manifest)
}

/// Writes the canaries as `canaries/NNNN.png` under the bundle folder and returns their
/// record (sets and hashes).
fn write_canaries(out: &Path, canaries: &ImageArray, spec: CanarySpec) -> Result<CanaryRecord> {
    let dir = out.join(CANARY_DIR);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files = Vec::with_capacity(canaries.len());
    for j in 0..canaries.len() {
        let png = crate::pixels::encode_png(&canary::image(canaries, j)?)
            .map_err(|e| Error::Train(format!("canary {j}: {e}")))?;
        let path = format!("{CANARY_DIR}/{j:04}.png");
        write_atomic(&out.join(&path), &png)?;
        files.push(CanaryFile {
            sha256: sha256_file(&out.join(&path))?,
            path,
        });
    }
    let [c, i, h] = canary::ranges(spec.count);
    Ok(CanaryRecord {
        spec,
        files,
        candidate: IndexSet::range(c.start, c.end),
        independent: IndexSet::range(i.start, i.end),
        heldout: IndexSet::range(h.start, h.end),
    })
}

/// Reads a bundle's canaries back (hashes checked) as one array, in record order.
pub fn read_canaries(dir: &Path, rec: &CanaryRecord, shape: [usize; 3]) -> Result<ImageArray> {
    let [channels, height, width] = shape;
    let mut pixels = Vec::with_capacity(rec.files.len() * channels * height * width);
    for f in &rec.files {
        let path = bundle::verify_file(dir, &f.into())?;
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let img = crate::pixels::decode(&bytes, channels, Default::default())
            .map_err(|e| Error::bundle(&path, e.to_string()))?;
        if (img.height, img.width) != (height, width) {
            return Err(Error::bundle(
                &path,
                format!(
                    "canary is {}x{}, the encoders take {height}x{width}",
                    img.width, img.height
                ),
            ));
        }
        pixels.extend_from_slice(&img.data);
    }
    Ok(ImageArray {
        name: format!("canaries:{}", rec.spec.kind),
        channels,
        height,
        width,
        pixels,
        labels: None,
    })
}

/// A record as JSON, for the manifest's `training` (errors are the serializer's).
fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::output("JSON", e))
}

/// Folder of a bundle that holds its canaries.
pub const CANARY_DIR: &str = "canaries";

/// Re-evaluates every encoder of a bundle written by [`run_pair`] (kNN and linear probe of
/// the exported models, and the raw-pixel baseline) and updates its `training` record.
pub fn reevaluate(
    dir: &Path,
    dataset: Option<&str>,
    subset: Option<(usize, usize)>,
    command: &str,
) -> Result<Manifest> {
    let mut m = bundle::read_manifest(dir)?;
    let split = m.split.clone().ok_or_else(|| {
        Error::bundle(
            dir.join(bundle::MANIFEST),
            "has no split record from sslmem-train",
        )
    })?;
    split.validate()?;
    let dataset = dataset
        .or(m.training_dataset())
        .map(str::to_string)
        .ok_or_else(|| Error::Param("the bundle records no dataset; pass --dataset".into()))?;
    let dataset = dataset.as_str();
    let i = &m.input;
    let shape = [i.channels, i.height, i.width];
    let dataset::TrainTest { train, test, .. } = dataset::load(dataset, Some(shape), subset)?;
    if train.labels.is_none() || test.labels.is_none() {
        return Err(Error::Dataset {
            name: dataset.into(),
            reason: "has no labels; evaluation needs them".into(),
        });
    }
    if train.len() != split.size {
        return Err(Error::Param(format!(
            "{dataset} has {} training examples, the split {}",
            train.len(),
            split.size
        )));
    }
    let i = &m.input;
    let norm = crate::augment::Normalize::new(i.mean.clone(), i.std.clone(), i.channels)?;
    let mut training = m.training.clone().unwrap_or_default();
    let mut runs: Vec<RunRecord> = training
        .runs
        .clone()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    for (side, files, idx) in [("f", &m.f, split.f_train()), ("g", &m.g, split.g_train())] {
        for (k, mf) in files.iter().enumerate() {
            let path = bundle::verify_file(dir, mf)?;
            let enc = exported_engine(&path, &test, &norm, &m.representation.output)?;
            let eval = evaluate(&enc, &train, &idx, &test, &norm)?;
            tracing::info!(run = %format!("{side}{k}"), knn = eval.knn_accuracy, linear_probe = eval.linear_probe_accuracy, "evaluated");
            if let Some(r) = runs.iter_mut().find(|r| r.side == side && r.index == k) {
                r.eval = Some(eval);
            }
        }
    }
    training.runs = Some(to_json(&runs)?);
    training.raw_pixel_linear_probe_accuracy = Some(raw_pixel_probe(
        &train,
        &split.f_train(),
        &test,
        &norm,
        Device::Cpu,
    )?);
    training.eval_command = Some(command.into());
    m.training = Some(training);
    bundle::write_manifest(dir, &m)?;
    Ok(m)
}
