//! `sslmem-train subsample` and `subsample-bundle`: the bundle of the many-model
//! (subsampling) estimator. `M` encoders in complementary pairs, each trained with one
//! recipe on a random half of a pool of training examples ([`crate::data::subsample`]), so
//! that every image of the pool can be scored by the encoders that did not see it against
//! those that did.
//!
//! Every encoder is an independent job ([`Job`]: train, export, parity check, evaluation,
//! record), resumable, in its own folder, so that `M` processes (the pods of an Indexed Job)
//! can train them side by side into one `OUT` on a shared volume:
//!
//! ```text
//! OUT/subsample-plan.json         what every encoder shares (Plan): written by the first job,
//!                                 checked by every later one
//! OUT/encoders/m{I}/              encoder I: checkpoints while it trains, log.jsonl,
//!                                 encoder.onnx, train.jsonl (log + evaluation), done.json
//! OUT/sslmem.json, f{I}.onnx,     the bundle (write_bundle), once all M are done
//!   train-f{I}.jsonl
//! ```
//!
//! Encoder `I` trains on the pool examples `members(size, seed, M)[I]` from the training
//! seed `seed + I` (as `pair` seeds its encoder `I`). A finished encoder's checkpoints are
//! removed; its `done.json` ([`EncoderRecord`]) makes a rerun skip it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use super::checkpoint;
use super::eval::raw_pixel_probe;
use super::job::Job;
use super::manifest::{run_record, Provenance};
use super::monitor::{sample, Monitor, MonitorSets, MonitorSpec};
use super::trainer::{TrainConfig, Trainer};
use crate::augment::Normalize;
use crate::bundle::{self, Manifest, ModelFile};
use crate::data::dataset;
use crate::data::subsample::{check_models, SubsampleRecord};
use crate::data::ImageArray;
use crate::error::{Error, Result};
use crate::fsutil::{copy_atomic, sha256_file, write_atomic};
use crate::onnx::ExportOptions;
use crate::recipe::RunRecord;

/// The plan's file in `OUT`.
pub const PLAN: &str = "subsample-plan.json";
/// The folder of `OUT` that holds one folder per encoder, `m{I}`.
pub const ENCODERS: &str = "encoders";
/// An encoder's record in its folder, written when it is done.
const DONE: &str = "done.json";
/// An encoder's export in its folder (the bundle lists a copy, `f{I}.onnx`).
const EXPORT: &str = "encoder.onnx";
/// An encoder's training log with its evaluation appended, in its folder.
const TRAIN_LOG: &str = "train.jsonl";

/// Where and how `sslmem-train subsample` trains (the recipe itself is a [`TrainConfig`]).
pub struct SubsampleOptions {
    /// As given to `--dataset`.
    pub dataset: String,
    /// `(train, test)` example counts to keep; the pool is the training part.
    pub subset: Option<(usize, usize)>,
    /// Encoders, `M`: even, at least 2.
    pub models: usize,
    /// Train only this encoder (`0..M`); `None`: every encoder not yet done, in order.
    pub index: Option<usize>,
    /// The memorization monitor (`every: 0` switches it off): each encoder's own members
    /// against its pair partner's.
    pub monitor: MonitorSpec,
    /// Seconds between checkpoints (see [`Trainer::checkpoint_seconds`]).
    pub checkpoint_seconds: f64,
    /// The ONNX output the bundle scores: [`crate::onnx::REPRESENTATION`] or
    /// [`crate::onnx::PROJECTION`].
    pub score_output: String,
    pub out: PathBuf,
    /// Continue an encoder that was started; without it, such an encoder is refused.
    pub resume: bool,
    pub device: Device,
    /// The command line, recorded with each encoder.
    pub command: String,
}

/// What every encoder of one `OUT` shares: the dataset and pool, the design, the recipe and
/// what the bundle records. The first job writes it to `OUT/subsample-plan.json`; a job whose
/// flags give another plan is refused, so one bundle never mixes recipes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// As given to `--dataset`.
    pub dataset: String,
    /// `(train, test)` example counts the dataset was cut to; `None`: all of it.
    pub subset: Option<(usize, usize)>,
    /// Examples in the pool (the training set after `subset`).
    pub size: usize,
    /// Encoders, `M`.
    pub models: usize,
    pub score_output: String,
    pub monitor: MonitorSpec,
    /// The recipe, normalisation filled in; its `seed` seeds the design and, plus `I`,
    /// encoder `I`'s training.
    pub config: TrainConfig,
    /// SHA-256 of the pool's images as loaded (`dataset::data_sha256`): a later job must
    /// load the same ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
}

impl Plan {
    /// The membership design of the plan.
    ///
    /// Errors: as [`SubsampleRecord::make`].
    pub fn record(&self) -> Result<SubsampleRecord> {
        let mut r = SubsampleRecord::make(&self.dataset, self.size, self.config.seed, self.models)?;
        r.data_sha256 = self.data_sha256.clone();
        Ok(r)
    }

    /// The fields in which `self` and `other` differ, as dotted paths (`config.epochs`).
    fn differences(&self, other: &Plan) -> Vec<String> {
        match (serde_json::to_value(self), serde_json::to_value(other)) {
            (Ok(a), Ok(b)) => {
                let mut out = Vec::new();
                differences("", &a, &b, &mut out);
                out
            }
            _ => vec!["(unreadable)".into()],
        }
    }
}

/// Appends to `out` the paths under `at` where `a` and `b` differ: into objects present on
/// both sides, the whole value elsewhere.
fn differences(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(&path, x, y, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

/// A finished encoder's record, `OUT/encoders/m{I}/done.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderRecord {
    /// The plan it was trained under.
    pub plan: Plan,
    /// Its run, as the manifest's `training.runs` lists it (`side` `f`, `index` `I`, `file`
    /// `f{I}.onnx`).
    pub run: RunRecord,
    /// The device it trained on (`Cpu`, `Cuda(0)`).
    pub device: String,
    /// The command line that trained it.
    pub command: String,
}

/// Encoder `index`'s folder under `out`.
pub fn encoder_dir(out: &Path, index: usize) -> PathBuf {
    out.join(ENCODERS).join(format!("m{index}"))
}

/// Trains the encoders `o` asks for (those not yet done), then writes the bundle when all
/// `M` are done ([`write_bundle`]); returns its manifest, or `None` while some encoder is
/// still to be trained (by another process, or a later run).
///
/// Errors: `M` odd or below 2, or `--index` outside `0..M`; the bundle exists (without
/// `resume`); `OUT` was started with another plan; an encoder was started and `resume` is
/// not set; the dataset cannot be loaded; an encoder's job fails ([`Job::run`]); the bundle
/// cannot be written or does not load.
pub fn run_subsample(config: &TrainConfig, o: &SubsampleOptions) -> Result<Option<Manifest>> {
    check_models(o.models)?;
    if let Some(i) = o.index.filter(|&i| i >= o.models) {
        return Err(Error::Param(format!(
            "--index {i} is not an encoder of --models {}: give one of 0..{}",
            o.models,
            o.models - 1
        )));
    }
    if o.out.join(bundle::MANIFEST).exists() && !o.resume {
        return Err(Error::bundle(
            o.out.join(bundle::MANIFEST),
            "already exists; choose another --out, or add --resume (finished encoders are \
             skipped)",
        ));
    }
    let pool = Pool::prepare(config, o)?;
    settle_plan(&o.out, &pool.plan)?;
    let todo: Vec<usize> = match o.index {
        Some(i) => vec![i],
        None => (0..o.models).collect(),
    };
    for i in todo {
        pool.train(o, i)?;
    }
    let missing = missing(&o.out, &pool.plan)?;
    if !missing.is_empty() {
        tracing::info!(
            "{} of {} encoders done; the bundle is written when the others are ({})",
            o.models - missing.len(),
            o.models,
            names(&missing)
        );
        return Ok(None);
    }
    pool.bundle(&o.out, o.device).map(Some)
}

/// `sslmem-train subsample-bundle`: writes the bundle of `out` once all its encoders are done
/// (the step `subsample` takes by itself after the last one): copies each encoder's export
/// to `f{I}.onnx` and its log to `train-f{I}.jsonl`, writes `sslmem.json` (the encoders in
/// `f`, `g` empty, the `subsample` record; atomically, last), and loads the bundle as the
/// scorer will. A bundle already complete is left as it is. The raw-pixel baseline is
/// fitted on encoder 0's members (the dataset is loaded again for it), on `device`.
///
/// Errors: `out` has no plan; an encoder is not done (all missing ones are named); a done
/// record belongs to another plan; the dataset no longer has the pool's size; a file cannot
/// be copied or written; the bundle does not load.
pub fn write_bundle(out: &Path, device: Device) -> Result<Manifest> {
    let plan = read_plan(out)?.ok_or_else(|| {
        Error::bundle(
            out.join(PLAN),
            "is missing: is this the --out of `sslmem-train subsample`?",
        )
    })?;
    let missing = missing(out, &plan)?;
    if !missing.is_empty() {
        return Err(Error::bundle(
            out,
            format!(
                "encoders {} of {} are not finished (no {ENCODERS}/m<I>/{DONE}); train each \
                 with `sslmem-train subsample --models {} --index <I> --resume` and the flags \
                 of the others, then write the bundle again",
                names(&missing),
                plan.models,
                plan.models
            ),
        ));
    }
    Pool::from_plan(plan)?.bundle(out, device)
}

/// `m1, m3`: encoder names for messages.
fn names(encoders: &[usize]) -> String {
    encoders
        .iter()
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `OUT/subsample-plan.json`; `None` when it does not exist.
fn read_plan(out: &Path) -> Result<Option<Plan>> {
    let path = out.join(PLAN);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::bundle(&path, format!("is not a subsample plan: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Writes `plan` as `OUT`'s plan, or checks it against the one there.
///
/// Errors: `OUT` holds another plan (the differing fields are named).
fn settle_plan(out: &Path, plan: &Plan) -> Result<()> {
    match read_plan(out)? {
        Some(old) if &old == plan => Ok(()),
        Some(old) => Err(Error::bundle(
            out.join(PLAN),
            format!(
                "was written by a run with other settings (they differ in: {}); give every \
                 encoder of one --out the same flags (only --index differs), or choose another \
                 --out",
                old.differences(plan).join(", ")
            ),
        )),
        None => write_atomic(
            &out.join(PLAN),
            &serde_json::to_vec_pretty(plan).map_err(|e| Error::output("JSON", e))?,
        ),
    }
}

/// Encoder `i`'s record, `None` when it is not done.
///
/// Errors: the record cannot be read, or belongs to another plan.
fn read_done(out: &Path, i: usize, plan: &Plan) -> Result<Option<EncoderRecord>> {
    let path = encoder_dir(out, i).join(DONE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let r: EncoderRecord = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bundle(
            &path,
            format!("cannot be read ({e}); remove its folder to train the encoder again"),
        )
    })?;
    if &r.plan != plan {
        return Err(Error::bundle(
            &path,
            format!(
                "was trained under another plan than {PLAN} (they differ in: {}); remove its \
                 folder to train it again",
                r.plan.differences(plan).join(", ")
            ),
        ));
    }
    Ok(Some(r))
}

/// The encoders of `plan` that are not done, in order.
fn missing(out: &Path, plan: &Plan) -> Result<Vec<usize>> {
    let mut missing = Vec::new();
    for i in 0..plan.models {
        if read_done(out, i, plan)?.is_none() {
            missing.push(i);
        }
    }
    Ok(missing)
}

/// What every encoder of a plan shares: the plan and its design, the data and the
/// normalisation.
struct Pool {
    plan: Plan,
    record: SubsampleRecord,
    train: ImageArray,
    test: ImageArray,
    labelled: bool,
    norm: Normalize,
}

impl Pool {
    /// Loads the dataset, fills in the recipe's normalisation and makes the plan of `o`.
    fn prepare(config: &TrainConfig, o: &SubsampleOptions) -> Result<Self> {
        let (config, dataset::TrainTest { train, test, .. }) =
            super::job::load_data(config, &o.dataset, o.subset)?;
        let data_sha256 = Some(dataset::data_sha256(&train, &test));
        let plan = Plan {
            dataset: o.dataset.clone(),
            subset: o.subset,
            size: train.len(),
            models: o.models,
            score_output: o.score_output.clone(),
            monitor: o.monitor.clone(),
            config,
            data_sha256,
        };
        Self::new(plan, train, test)
    }

    /// Loads the dataset of a plan read back from `OUT`.
    ///
    /// Errors: the dataset cannot be loaded or no longer has the pool's size.
    fn from_plan(plan: Plan) -> Result<Self> {
        let arch = &plan.config.arch;
        let shape = [arch.in_channels, arch.height, arch.width];
        let tt = dataset::load(&plan.dataset, Some(shape), plan.subset)?;
        dataset::check_recorded_data(&plan.dataset, plan.data_sha256.as_deref(), &tt)?;
        let dataset::TrainTest { train, test, .. } = tt;
        if train.len() != plan.size {
            return Err(Error::Dataset {
                name: plan.dataset.clone(),
                reason: format!(
                    "has {} training examples (after the subset), the plan's pool {}",
                    train.len(),
                    plan.size
                ),
            });
        }
        Self::new(plan, train, test)
    }

    fn new(plan: Plan, train: ImageArray, test: ImageArray) -> Result<Self> {
        let labelled = train.labels.is_some() && test.labels.is_some();
        if !labelled {
            tracing::warn!(
                "{} has no labels: the encoders will be trained and exported but not evaluated",
                plan.dataset
            );
        }
        let c = &plan.config;
        let norm = Normalize::new(c.mean.clone(), c.std.clone(), c.arch.in_channels)?;
        Ok(Self {
            record: plan.record()?,
            plan,
            train,
            test,
            labelled,
            norm,
        })
    }

    /// Trains, exports and evaluates encoder `i` on its members, unless it is done; removes
    /// its checkpoints once its record is written.
    ///
    /// Errors: the encoder was started and `o.resume` is not set; its job fails.
    fn train(&self, o: &SubsampleOptions, i: usize) -> Result<()> {
        let dir = encoder_dir(&o.out, i);
        let label = format!("m{i}");
        if read_done(&o.out, i, &self.plan)?.is_some() {
            tracing::info!(run = %label, "already done; skipping");
            return Ok(());
        }
        let started = fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
        if started && !o.resume {
            return Err(Error::bundle(
                &dir,
                "holds an unfinished run of this encoder; add --resume to continue it, or \
                 choose another --out",
            ));
        }
        let idx: Vec<usize> = self.record.members[i].iter().collect();
        // The pair partner's members: the examples this encoder never sees.
        let unseen: Vec<usize> = self.record.members[i ^ 1].iter().collect();
        let n = self.plan.monitor.sample;
        let seed = self.plan.config.seed.wrapping_add(i as u64);
        tracing::info!(run = %label, of = self.plan.models, examples = idx.len(), seed, "training encoder");
        let job = Job {
            trainer: Trainer {
                config: TrainConfig {
                    seed,
                    ..self.plan.config.clone()
                },
                data: &self.train,
                indices: idx.clone(),
                workdir: dir.clone(),
                device: o.device,
                label,
                monitor: Some(Monitor {
                    spec: self.plan.monitor.clone(),
                    sets: MonitorSets {
                        seen: sample(&idx, n),
                        unseen: sample(&unseen, n),
                        ..MonitorSets::default()
                    },
                }),
                checkpoint_seconds: o.checkpoint_seconds,
            },
            resume: o.resume,
            onnx: dir.join(EXPORT),
            export: ExportOptions {
                layer_outputs: true,
            },
            record: dir.join(DONE),
            test: &self.test,
            norm: &self.norm,
            eval: self.labelled.then_some((&self.train, idx.as_slice())),
        };
        job.run(|e| {
            let file = format!("f{i}.onnx");
            Ok(EncoderRecord {
                plan: self.plan.clone(),
                run: run_record(&job, e, "f", i, idx.len(), file, &dir.join(TRAIN_LOG))?,
                device: format!("{:?}", o.device),
                command: o.command.clone(),
            })
        })?;
        // Its record makes the checkpoints useless.
        checkpoint::remove_all(&dir);
        Ok(())
    }

    /// Writes the bundle of `out` from its done encoders (see [`write_bundle`]), unless it
    /// is already complete.
    fn bundle(&self, out: &Path, device: Device) -> Result<Manifest> {
        let mut records = Vec::with_capacity(self.plan.models);
        for i in 0..self.plan.models {
            records.push(read_done(out, i, &self.plan)?.ok_or_else(|| {
                Error::Param(format!("encoder m{i} of {} is not done", out.display()))
            })?);
        }
        let mut f = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let dir = encoder_dir(out, i);
            f.push(ModelFile {
                sha256: sha256_file(&dir.join(EXPORT))?,
                path: r.run.file.clone(),
                external_data: Vec::new(),
            });
        }
        if let Some(m) = self.complete(out, &f) {
            tracing::info!("{} is already complete", out.display());
            return Ok(m);
        }
        for (i, mf) in f.iter().enumerate() {
            let dir = encoder_dir(out, i);
            copy_atomic(&dir.join(EXPORT), &out.join(&mf.path))?;
            copy_atomic(&dir.join(TRAIN_LOG), &out.join(format!("train-f{i}.jsonl")))?;
        }
        let raw = if self.labelled {
            let first: Vec<usize> = self.record.members[0].iter().collect();
            Some(raw_pixel_probe(
                &self.train,
                &first,
                &self.test,
                &self.norm,
                device,
            )?)
        } else {
            None
        };
        let distinct = |each: fn(&EncoderRecord) -> &str, sep: &str| {
            let mut seen: Vec<&str> = Vec::new();
            for r in &records {
                if !seen.contains(&each(r)) {
                    seen.push(each(r));
                }
            }
            seen.join(sep)
        };
        let provenance = Provenance {
            config: &self.plan.config,
            dataset: &self.plan.dataset,
            subset: self.plan.subset,
            score_output: &self.plan.score_output,
            monitor: &self.plan.monitor,
            device: distinct(|r| &r.device, ", "),
            command: distinct(|r| &r.command, "\n"),
        };
        let runs = records.into_iter().map(|r| r.run).collect();
        let base = provenance.manifest(f, Vec::new(), runs, raw);
        let manifest = Manifest {
            name: base
                .name
                .as_ref()
                .map(|n| format!("{n}, subsample of {}", self.plan.models)),
            subsample: Some(self.record.clone()),
            ..base
        };
        bundle::write_manifest(out, &manifest)?;
        // The bundle must load as the scorer will load it.
        bundle::Bundle::load(out, &crate::runtime::RuntimeOptions::default())?;
        tracing::info!(
            encoders = self.plan.models,
            "wrote bundle {}",
            out.display()
        );
        Ok(manifest)
    }

    /// The manifest of `out` when the bundle is already complete: it reads, holds this
    /// design, and lists `f` (the encoders' exports, by hash) with each copy in place.
    fn complete(&self, out: &Path, f: &[ModelFile]) -> Option<Manifest> {
        let m = bundle::read_manifest(out).ok()?;
        let same = m.subsample.as_ref() == Some(&self.record)
            && m.g.is_empty()
            && m.f.len() == f.len()
            && m.f.iter().zip(f).all(|(a, b)| {
                a.path == b.path
                    && a.sha256 == b.sha256
                    && sha256_file(&out.join(&a.path)).is_ok_and(|h| h == a.sha256)
            });
        same.then_some(m)
    }
}
