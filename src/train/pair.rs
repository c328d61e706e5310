//! `sslmem-train pair`: trains `f` on shared ∪ candidate and `g` on shared ∪ independent with
//! the same recipe and seeds, evaluates both, exports them to ONNX with a parity check, and
//! writes a model bundle. Each finished encoder is recorded, so a killed run resumes where
//! it stopped.

use std::fs;
use std::path::{Path, PathBuf};

use tch::Device;

use super::eval::{evaluate, exported_engine, output_spreads, raw_pixel_probe};
use super::job::Job;
use super::manifest::{collapse_report, run_record, Provenance};
use super::monitor::{sample, Monitor, MonitorSets, MonitorSpec};
use super::trainer::{TrainConfig, Trainer};
use crate::augment::Normalize;
use crate::bundle::{self, Manifest, ModelFile};
use crate::data::canary::{self, CanarySpec};
use crate::data::dataset;
use crate::data::split::{CanaryFile, CanaryRecord, IndexSet};
use crate::data::split::{SplitRecord, SplitSpec};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::onnx::ExportOptions;
use crate::recipe::RunRecord;

/// Where and how `sslmem-train pair` trains (the recipe itself is a [`TrainConfig`]).
pub struct PairOptions {
    pub dataset: String,
    /// Canaries to plant (`None`: none).
    pub canaries: Option<CanarySpec>,
    /// The memorization monitor (`every: 0` switches it off).
    pub monitor: MonitorSpec,
    /// Seconds between checkpoints (see [`Trainer::checkpoint_seconds`]).
    pub checkpoint_seconds: f64,
    /// The ONNX output the bundle scores: [`crate::onnx::REPRESENTATION`] or
    /// [`crate::onnx::PROJECTION`].
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
///
/// Errors: `--models 0`; the bundle exists (without `resume`); the dataset, the split or
/// the canaries cannot be made; a run fails ([`Job::run`]); the bundle does not load.
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
    let data = PairData::prepare(config, o, &work)?;
    let mut records = Vec::new();
    for m in 0..o.models {
        for side in [Side::F, Side::G] {
            records.push(data.train(o, &work, m, side)?);
        }
    }
    let raw = if data.labelled {
        Some(raw_pixel_probe(
            &data.train,
            &data.split.f_train(),
            &data.test,
            &data.norm,
            o.device,
        )?)
    } else {
        None
    };
    let manifest = data.manifest(o, records, raw)?;
    bundle::write_manifest(&o.out, &manifest)?;
    // The bundle must load as the scorer will load it.
    bundle::Bundle::load(&o.out, &crate::runtime::RuntimeOptions::default())?;
    let _ = fs::remove_dir_all(&work);
    Ok(manifest)
}

/// The side of a pair: `f` trains on shared ∪ candidate, `g` on shared ∪ independent.
#[derive(Clone, Copy)]
enum Side {
    F,
    G,
}

/// What every run of a pair shares: the recipe with its normalisation filled in, the data
/// (canaries appended to the training array) and the split.
struct PairData {
    config: TrainConfig,
    train: ImageArray,
    test: ImageArray,
    split: SplitRecord,
    /// Canary `j` is training example `base + j`.
    base: usize,
    labelled: bool,
    norm: Normalize,
}

impl PairData {
    /// Loads the dataset, makes the split and the canaries, and writes `split.json` and the
    /// canary images into the bundle folder.
    fn prepare(config: &TrainConfig, o: &PairOptions, work: &Path) -> Result<Self> {
        let (config, tt) = super::job::load_data(config, &o.dataset, o.subset)?;
        let labelled = tt.train.labels.is_some() && tt.test.labels.is_some();
        if !labelled {
            tracing::warn!(
                "{} has no labels: the encoders will be trained and exported but not evaluated",
                o.dataset
            );
        }
        let mut split = SplitRecord::make(
            &tt.train.name,
            tt.train.len(),
            o.split,
            &tt.test.name,
            tt.test.len(),
        )?;
        // A resumed run must train on the images it started on.
        let recorded = o.out.join("split.json");
        if o.resume && work.exists() && recorded.is_file() {
            let text = fs::read_to_string(&recorded).map_err(|e| Error::io(&recorded, e))?;
            let old: SplitRecord = serde_json::from_str(&text)
                .map_err(|e| Error::bundle(&recorded, format!("is not a split record: {e}")))?;
            dataset::check_recorded_data(&o.dataset, old.data_sha256.as_deref(), &tt)?;
        }
        split.data_sha256 = Some(dataset::data_sha256(&tt.train, &tt.test));
        let (train, test) = (tt.train, tt.test);
        fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
        let base = train.len();
        let train = match o.canaries {
            Some(spec) => {
                let c = canary::make(
                    spec,
                    config.arch.in_channels,
                    config.arch.height,
                    config.arch.width,
                )?;
                split.canaries = Some(write_canaries(&o.out, &c, spec)?);
                canary::append(&train, &c)?
            }
            None => train,
        };
        write_atomic(
            &o.out.join("split.json"),
            &serde_json::to_vec_pretty(&split).map_err(|e| Error::output("JSON", e))?,
        )?;
        let norm = Normalize::new(
            config.mean.clone(),
            config.std.clone(),
            config.arch.in_channels,
        )?;
        Ok(Self {
            config,
            train,
            test,
            split,
            base,
            labelled,
            norm,
        })
    }

    /// Training indices of one canary set (empty without canaries).
    fn canaries(&self, pick: fn(&CanaryRecord) -> &IndexSet) -> Vec<usize> {
        self.split
            .canaries
            .as_ref()
            .map(|c| pick(c).iter().map(|j| self.base + j).collect())
            .unwrap_or_default()
    }

    /// A side's training examples, the examples it never sees, and its canaries.
    fn side(&self, side: Side) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let s = &self.split;
        match side {
            Side::F => (
                s.f_train(),
                s.independent.iter().collect(),
                self.canaries(|c| &c.candidate),
            ),
            Side::G => (
                s.g_train(),
                s.candidate.iter().collect(),
                self.canaries(|c| &c.independent),
            ),
        }
    }

    /// Trains, exports and evaluates encoder `m` of `side` (or reads its record when it is
    /// done and `o.resume`), and copies its training log into the bundle.
    fn train(&self, o: &PairOptions, work: &Path, m: usize, side: Side) -> Result<RunRecord> {
        let name = match side {
            Side::F => "f",
            Side::G => "g",
        };
        let label = format!("{name}{m}");
        let (idx, unseen, canaries) = self.side(side);
        let repeats = o.canaries.map_or(1, |c| c.repeats);
        let n = o.monitor.sample;
        let config = TrainConfig {
            seed: self.config.seed.wrapping_add(m as u64),
            ..self.config.clone()
        };
        let job = Job {
            trainer: Trainer {
                config,
                data: &self.train,
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
                        canaries_unseen: self.canaries(|c| &c.heldout),
                    },
                }),
                checkpoint_seconds: o.checkpoint_seconds,
            },
            resume: o.resume,
            onnx: o.out.join(format!("{label}.onnx")),
            export: ExportOptions {
                layer_outputs: true,
            },
            record: work.join(&label).join("done.json"),
            test: &self.test,
            norm: &self.norm,
            eval: self.labelled.then_some((&self.train, idx.as_slice())),
        };
        job.run(|e| {
            let log = o.out.join(format!("train-{label}.jsonl"));
            run_record(&job, e, name, m, idx.len(), format!("{label}.onnx"), &log)
        })
    }

    /// The bundle's manifest over `records`.
    fn manifest(
        self,
        o: &PairOptions,
        records: Vec<RunRecord>,
        raw: Option<f64>,
    ) -> Result<Manifest> {
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
        let (f, g) = (files("f")?, files("g")?);
        let provenance = Provenance {
            config: &self.config,
            dataset: &o.dataset,
            subset: o.subset,
            score_output: &o.score_output,
            monitor: &o.monitor,
            device: format!("{:?}", o.device),
            command: o.command.clone(),
        };
        Ok(Manifest {
            split: Some(self.split),
            ..provenance.manifest(f, g, records, raw)
        })
    }
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

/// Folder of a bundle that holds its canaries.
pub const CANARY_DIR: &str = "canaries";

/// Re-evaluates every encoder of a bundle written by [`run_pair`] (kNN and linear probe of
/// the exported models, the spread of their outputs over the test images with the collapse
/// check's verdict, and the raw-pixel baseline) and updates its `training` record.
pub fn reevaluate(dir: &Path, dataset: Option<&str>, command: &str) -> Result<Manifest> {
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
    // The subset the bundle was trained on (`pair --subset/--test-subset`), as it recorded.
    let tt = dataset::load(dataset, Some(shape), m.training_subset())?;
    dataset::check_recorded_data(dataset, split.data_sha256.as_deref(), &tt)?;
    let dataset::TrainTest { train, test, .. } = tt;
    if train.labels.is_none() || test.labels.is_none() {
        return Err(Error::Dataset {
            name: dataset.into(),
            reason: "has no labels; evaluation needs them".into(),
        });
    }
    if train.len() != split.size {
        return Err(Error::Param(format!(
            "{dataset} has {} training examples, the split {} (trained on a subset the \
             manifest does not record as training.subset?)",
            train.len(),
            split.size
        )));
    }
    let i = &m.input;
    let norm = crate::augment::Normalize::new(i.mean.clone(), i.std.clone(), i.channels)?;
    let mut training = m.training.clone().unwrap_or_default();
    // The recipe's epochs, for the collapse check: from the recorded config, read as JSON so
    // that a recipe of another version still gives them. Unknown, the verdicts training
    // recorded are kept.
    let epochs = training.config.as_ref().and_then(|c| match c {
        crate::recipe::Recorded::Typed(t) => Some(t.epochs),
        crate::recipe::Recorded::Read { json, .. } => json
            .get("epochs")
            .and_then(serde_json::Value::as_u64)
            .and_then(|e| usize::try_from(e).ok()),
    });
    if epochs.is_none() {
        tracing::warn!(
            bundle = %dir.display(),
            "the manifest records no epochs: the collapse verdicts it has are kept, not re-judged"
        );
    }
    // A runs record this version cannot read is refused, not replaced: the manifest is
    // written back.
    let mut runs: Vec<RunRecord> = match training.runs.as_ref().map(|r| r.typed()) {
        None => Vec::new(),
        Some(Ok(runs)) => runs,
        Some(Err(e)) => {
            return Err(Error::bundle(
                dir.join(bundle::MANIFEST),
                format!("its training.runs record cannot be read ({e}); eval would overwrite it"),
            ))
        }
    };
    for (side, files, idx) in [("f", &m.f, split.f_train()), ("g", &m.g, split.g_train())] {
        for (k, mf) in files.iter().enumerate() {
            let path = bundle::verify_file(dir, mf)?;
            // The backbone's representation, as training evaluated it (not the scored output,
            // which may be the projection).
            let enc = exported_engine(&path, &test, &norm, crate::onnx::REPRESENTATION)?;
            let eval = evaluate(&enc, &train, &idx, &test, &norm)?;
            let label = format!("{side}{k}");
            tracing::info!(run = %label, knn = eval.knn_accuracy, linear_probe = eval.linear_probe_accuracy, "evaluated");
            let spread = output_spreads(&path, &test, &norm)?;
            let Some(r) = runs.iter_mut().find(|r| r.side == side && r.index == k) else {
                tracing::warn!(run = %label, "not in the manifest's training.runs (made by another tool?): its evaluation is not recorded");
                continue;
            };
            r.eval = Some(eval);
            if let Some(epochs) = epochs {
                r.collapsed = collapse_report(&label, &spread, epochs);
            }
            r.spread = Some(spread);
        }
    }
    training.runs = Some(runs.into());
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
