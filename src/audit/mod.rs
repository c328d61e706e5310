//! `sslmem audit`: scores every example of the chosen sets of a bundle's split, of sets the
//! user names (members and non-members of `f`'s training data: [`AuditOptions::sources`]),
//! or of any inputs,
//! streaming each chunk of results to a journal as it is computed, so that a killed run
//! resumes where it stopped with the same command and ends with the same files as an
//! uninterrupted one. The final files (`scores.jsonl`, `scores.csv`, `summary.json`, the
//! figures and `report.html`) are written atomically from the journal by [`finish`]; then
//! the journal is removed.
//!
//! An audit can also run as `N` shards ([`shard`]: each scores a contiguous slice of the same
//! work list into its own folder) whose folders [`merge`] turns into the files an unsharded
//! audit writes, through the same [`finish`].

pub mod calibration;
pub mod compare;
pub mod estimators;
pub mod figures;
pub mod html;
pub mod layer_mem;
pub mod many_model;
pub mod merge;
pub mod one_model;
pub mod scores;
pub mod shard;
pub mod summary;
pub mod text;
pub mod typicality;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bundle::{self, Bundle};
use crate::data::dataset;
use crate::data::inputs::{resolve, Input};
use crate::data::split::SplitRecord;
use crate::engine::{Engine, EstimatorOptions, Quiet};
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::runtime::RuntimeOptions;
use crate::score::{set_normalize, ImageScore, ScoreRecord, SetNorm, ViewAlignment};
use scores::ScoreRow;
use shard::{ShardRecord, ShardSpec};

pub use crate::data::split::SplitSet;
pub use calibration::ReferenceSpec;

/// What `sslmem audit` does (the command line's flags, parsed).
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Model bundle folder (holds sslmem.json; its `split` says which example is in which set).
    pub bundle: PathBuf,
    /// Output folder: scores.jsonl, scores.csv, summary.json, figures, report.html; with
    /// `shard`, the shard folder.
    pub out: PathBuf,
    /// Dataset the split indexes (default: the one the bundle was trained on).
    pub dataset: Option<String>,
    /// Split sets to score (empty: every set the bundle has, canaries included).
    pub sets: Vec<SplitSet>,
    /// Every set the bundle has (the default).
    pub all: bool,
    /// Score only the first N examples of each set (in index order).
    pub limit: Option<usize>,
    /// How each example is scored (estimator settings, batch size, largest image).
    pub est: EstimatorOptions,
    /// Images written to the journal at a time (a killed run loses at most one chunk).
    pub chunk: usize,
    /// Score these inputs (files, folders, datasets) as one set `inputs` instead of the split.
    pub inputs: Vec<String>,
    /// Sets the user names instead of the split: each set's inputs (files, folders, datasets
    /// with ranges, `@FILE` lists). Members of `f`'s training data that `g` did not see are
    /// the `candidate` set, images neither saw the `extra` set (the non-members), and
    /// `shared` / `independent` as in a split. See [`SplitSet::member_flag`].
    pub sources: BTreeMap<SplitSet, Vec<String>>,
    /// The reference population of the one-model scores (`--reference`): one of the audited
    /// sets, or inputs scored as the set `reference` after the others. `None`: no calibrated
    /// one-model scores (a pair still reports `align_f` beside SSLMem).
    pub reference: Option<ReferenceSpec>,
    /// Reference neighbours of the local one-model calibration (`knn_gap`).
    pub knn: usize,
    /// Score only this shard of the work list into `out`, for `sslmem audit-merge`.
    pub shard: Option<ShardSpec>,
    /// When the report says the files were written: seconds since 1970, UTC (the command
    /// line takes `SOURCE_DATE_EPOCH`, else the clock).
    pub date: i64,
    /// The classes (labels) the grid of most and least memorized examples shows, a row each
    /// in this order; empty: every class.
    pub grid_classes: Vec<u8>,
}

/// What an audit is: what a journal was started with (a resume must match it), what every
/// shard of one audit shares, and `params` in `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditParams {
    /// `sha256` of each encoder file, f then g.
    pub encoders: Vec<String>,
    /// The dataset the split indexes; `None` for an audit of inputs.
    pub dataset: Option<String>,
    /// The sets scored, in order; empty for an audit of inputs.
    pub sets: Vec<SplitSet>,
    /// The inputs scored as the set `inputs`, as given; empty for a split audit.
    pub inputs: Vec<String>,
    /// The inputs of each set the user named (`--members`: `candidate`, `--non-members`:
    /// `extra`, ...), as given; empty (and left out of the file) otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<SplitSet, Vec<String>>,
    /// The reference population of the one-model scores, as given to `--reference`; absent
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceSpec>,
    /// Reference neighbours of `knn_gap`; absent without a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<usize>,
    /// Examples scored per set at most (the first ones, in index order).
    pub limit: Option<usize>,
    /// View pairs per example.
    pub pairs: usize,
    /// Seed of the augmentations.
    pub seed: u64,
    /// `aug-vs-aug` or `orig-vs-aug`.
    pub mode: String,
    /// Distance between representations (`l2`, `cosine`, `l1`).
    pub distance: String,
    /// Representation normalisation before the distance (`l2`, `none`).
    pub normalize: String,
    /// Examples in the work list.
    pub items: usize,
}

impl AuditParams {
    /// The options every image was scored with (the journal's `pairs`, `seed`, `mode`,
    /// `distance`, `normalize`).
    ///
    /// Errors: a recorded choice this version does not know.
    pub fn score_options(&self) -> Result<crate::score::ScoreOptions> {
        let parse =
            |what: &str, v: &str| Error::Param(format!("the audit's {what} '{v}' is unknown"));
        Ok(crate::score::ScoreOptions {
            pairs: self.pairs,
            seed: self.seed,
            mode: self.mode.parse().map_err(|_| parse("mode", &self.mode))?,
            distance: self
                .distance
                .parse()
                .map_err(|_| parse("distance", &self.distance))?,
            normalize: self
                .normalize
                .parse()
                .map_err(|_| parse("normalize", &self.normalize))?,
        })
    }
}

/// One scored example, as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The set it belongs to.
    pub set: SplitSet,
    /// Its index in its dataset (its position among the inputs for an audit of inputs).
    pub index: usize,
    /// Its name (`fashion-mnist:train#12`, a file path).
    pub input: String,
    /// Its class, when known.
    pub label: Option<u8>,
    /// Its SSLMem score; `None` when it could not be scored, and for a one-model bundle.
    pub score: Option<ImageScore>,
    /// Its alignment under `f` alone: a one-model bundle's estimate (`None` for a pair, whose
    /// `score` holds `align_f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<ViewAlignment>,
    /// A many-model bundle's pool image: its mean alignment under each encoder, in `f`'s
    /// order (`score` holds the estimate, in-encoders as `f` and out-encoders as `g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_encoder: Option<Vec<f64>>,
    /// Why the example could not be scored.
    pub error: Option<String>,
}

impl Record {
    /// Its alignment under `f`: from the SSLMem score of a pair, or a one-model estimate;
    /// `None` when it could not be scored.
    pub fn align_f(&self) -> Option<f64> {
        self.score
            .as_ref()
            .map(|s| s.align_f)
            .or_else(|| self.alignment.as_ref().map(|a| a.align_f))
    }

    /// Whether it was scored (by either estimator).
    pub fn scored(&self) -> bool {
        self.score.is_some() || self.alignment.is_some()
    }
}

struct Item {
    set: SplitSet,
    index: usize,
    input: Input,
}

/// Where an unsharded audit journals: a shard folder (see [`shard`]) inside `--out`.
const JOURNAL_DIR: &str = ".audit";

/// An audit's examples in their fixed order, with what they were chosen from.
pub(super) struct WorkList {
    items: Vec<Item>,
    /// The dataset spec the split indexes; `None` for an audit of inputs.
    dataset: Option<String>,
    /// The sets scored, in order; empty for an audit of inputs.
    sets: Vec<SplitSet>,
    /// Class names by label, where the dataset has them.
    classes: Vec<String>,
}

/// `sha256` of each encoder file of a bundle, f then g.
fn encoder_hashes(bundle: &Bundle) -> Vec<String> {
    let m = &bundle.manifest;
    m.f.iter().chain(&m.g).map(|f| f.sha256.clone()).collect()
}

/// Runs (or resumes, or recognises as finished) an audit, or with `shard` one shard of it;
/// `Ok(true)` when every example was scored (a shard: when its slice is journaled, unreadable
/// examples included; the merge reports those).
pub fn run(a: &AuditOptions, rt: &RuntimeOptions) -> Result<bool> {
    if a.chunk == 0 {
        return Err(Error::Param(
            "the journal chunk must be at least 1 example".into(),
        ));
    }
    let engine = Engine::start(Bundle::load(&a.bundle, rt)?, a.est.queue(), Arc::new(Quiet))?;
    let bundle = engine.bundle();
    let has_canaries = bundle
        .manifest
        .split
        .as_ref()
        .is_some_and(|s| s.canaries.is_some());
    let sets = if bundle.manifest.subsample.is_some() {
        if !a.sets.is_empty() {
            return Err(Error::Param(
                "a many-model bundle (sslmem-train subsample) has no split sets: its audit \
                 scores every pool image as the set `pool`; leave out --sets"
                    .into(),
            ));
        }
        vec![SplitSet::Pool]
    } else {
        a.selected_sets(has_canaries)
    };
    let mut work = work_list(
        bundle,
        a.dataset.as_deref(),
        &sets,
        &a.inputs,
        &a.sources,
        a.limit,
    )?;
    if let Some(r) = &a.reference {
        calibration::add_reference(&mut work, r, a.limit)?;
    }
    if bundle.manifest.is_one_model() && a.reference.is_none() {
        tracing::warn!(
            "the bundle holds f only and no --reference was given: the audit reports each \
             image's alignment under f, uncalibrated (see docs/science.md#one-model-scores)"
        );
    }
    if work.items.is_empty() {
        return Err(Error::Param(
            "nothing to audit: the chosen sets are empty".into(),
        ));
    }
    let s = &a.est.score;
    let params = AuditParams {
        encoders: encoder_hashes(bundle),
        dataset: work.dataset.clone(),
        sets: work.sets.clone(),
        inputs: a.inputs.clone(),
        sources: a.sources.clone(),
        reference: a.reference.clone(),
        knn: a.reference.as_ref().map(|_| a.knn),
        limit: a.limit,
        pairs: s.pairs,
        seed: s.seed,
        mode: s.mode.to_string(),
        distance: s.distance.to_string(),
        normalize: s.normalize.to_string(),
        items: work.items.len(),
    };
    match a.shard {
        Some(spec) => run_shard(a, &engine, &work, &params, spec),
        None => run_whole(a, &engine, &work, &params),
    }
}

/// The unsharded audit: shard `0/1` journaled in `OUT/.audit/`, then the final files.
fn run_whole(
    a: &AuditOptions,
    engine: &Engine,
    work: &WorkList,
    params: &AuditParams,
) -> Result<bool> {
    if let Some(all_scored) = finished(&a.out, params)? {
        tracing::info!("{} is already complete", a.out.display());
        return Ok(all_scored);
    }
    let dir = a.out.join(JOURNAL_DIR);
    let rec = ShardRecord::new(&a.bundle, params, ShardSpec::WHOLE);
    let mut records = shard::open(&dir, &a.out, &rec, &work.items)?;
    if !records.is_empty() {
        tracing::info!(
            done = records.len(),
            total = work.items.len(),
            "resuming {}",
            a.out.display()
        );
    }
    shard::score_remaining(a, engine, &dir, &work.items, &mut records)?;

    let failed = records.iter().filter(|r| r.error.is_some()).count();
    finish(
        &a.out,
        engine,
        params,
        work,
        &records,
        a.date,
        &a.grid_classes,
    )?;
    fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    tracing::info!(
        scored = records.len() - failed,
        failed,
        "audit written to {}",
        a.out.display()
    );
    Ok(failed == 0)
}

/// One shard: its slice of the work list journaled in `--out` (a shard folder), kept for
/// `sslmem audit-merge`.
fn run_shard(
    a: &AuditOptions,
    engine: &Engine,
    work: &WorkList,
    params: &AuditParams,
    spec: ShardSpec,
) -> Result<bool> {
    let rec = ShardRecord::new(&a.bundle, params, spec);
    let items = &work.items[rec.start..rec.end];
    let mut records = shard::open(&a.out, &a.out, &rec, items)?;
    if records.len() == items.len() {
        tracing::info!("{}: shard {spec} is already complete", a.out.display());
    } else {
        if !records.is_empty() {
            tracing::info!(
                done = records.len(),
                total = items.len(),
                "resuming shard {spec} in {}",
                a.out.display()
            );
        }
        shard::score_remaining(a, engine, &a.out, items, &mut records)?;
    }
    let failed = records.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        tracing::warn!(
            failed,
            "examples could not be read (journaled; `sslmem audit-merge` lists them and exits 1)"
        );
    }
    tracing::info!(
        examples = items.len(),
        of = work.items.len(),
        "shard {spec} (work list {}..{}) written to {}; merge the shards with `sslmem audit-merge`",
        rec.start,
        rec.end,
        a.out.display()
    );
    Ok(true)
}

/// `Some(whether every example was scored)` when `out` holds the finished audit `params`;
/// `None` when it holds no finished audit; an error when it holds another one.
fn finished(out: &Path, params: &AuditParams) -> Result<Option<bool>> {
    let summary_path = out.join("summary.json");
    if !summary_path.is_file() || out.join(JOURNAL_DIR).exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&summary_path).map_err(|e| Error::io(&summary_path, e))?;
    // Valid JSON of another shape (another version's summary) is another audit.
    let done = match serde_json::from_str::<summary::Summary>(&text) {
        Ok(done) => Some(done),
        Err(e) if e.is_data() => None,
        Err(e) => return Err(Error::Param(format!("{}: {e}", summary_path.display()))),
    };
    match done.filter(|d| d.params == *params) {
        Some(d) => Ok(Some(d.failed.is_empty())),
        None => Err(Error::Param(format!(
            "{} holds a finished audit with other parameters; choose another --out",
            out.display()
        ))),
    }
}

/// A command that runs this audit again, as a shell would read it: the bundle, what was
/// scored and the estimator's parameters, without `--out`, `--shard` or the settings that
/// change no result. A sharded audit records the same command as an unsharded one.
pub fn command_line(bundle: &Path, p: &AuditParams) -> String {
    let mut w: Vec<String> = ["sslmem", "audit", "--bundle"].map(String::from).to_vec();
    w.push(bundle.display().to_string());
    for (set, inputs) in &p.sources {
        w.push(format!("--{}", set.member_flag()));
        w.extend(inputs.iter().cloned());
    }
    if p.inputs.is_empty() && p.sources.is_empty() {
        if let Some(d) = &p.dataset {
            w.extend(["--dataset".into(), d.clone()]);
        }
        let sets: Vec<&str> = p.sets.iter().map(|s| s.name()).collect();
        w.extend(["--sets".into(), sets.join(",")]);
    }
    if let Some(r) = &p.reference {
        w.push("--reference".into());
        w.extend(r.words());
        if let Some(k) = p.knn {
            w.extend(["--knn".into(), k.to_string()]);
        }
    }
    if let Some(l) = p.limit {
        w.extend(["--limit".into(), l.to_string()]);
    }
    w.extend([
        "--pairs".into(),
        p.pairs.to_string(),
        "--seed".into(),
        p.seed.to_string(),
        "--mode".into(),
        p.mode.clone(),
        "--distance".into(),
        p.distance.clone(),
        "--normalize".into(),
        p.normalize.clone(),
    ]);
    if !p.inputs.is_empty() {
        w.push("--".into());
        w.extend(p.inputs.iter().cloned());
    }
    w.iter()
        .map(|s| shell_word(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` as one word of a POSIX shell: as is when it is plain, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl AuditOptions {
    /// The sets asked for; every set the bundle has when none are named.
    fn selected_sets(&self, has_canaries: bool) -> Vec<SplitSet> {
        if !self.inputs.is_empty() || !self.sources.is_empty() {
            return Vec::new();
        }
        let mut s = if self.all || self.sets.is_empty() {
            SplitSet::ALL
                .into_iter()
                .filter(|s| has_canaries || !s.is_canary())
                .collect()
        } else {
            self.sets.clone()
        };
        s.sort();
        s.dedup();
        s
    }
}

/// The examples to score, in their fixed order: the first `limit` of each of `sets` (already
/// chosen, in [`SplitSet`]'s order) of the bundle's split, images from `dataset` (default:
/// the bundle's training dataset); or, when `sources` are given, the first `limit` inputs of
/// each named set, in [`SplitSet`]'s order; or, when `inputs` are given, those.
fn work_list(
    bundle: &Bundle,
    dataset: Option<&str>,
    sets: &[SplitSet],
    inputs: &[String],
    sources: &BTreeMap<SplitSet, Vec<String>>,
    limit: Option<usize>,
) -> Result<WorkList> {
    let limit = limit.unwrap_or(usize::MAX);
    if !sources.is_empty() {
        return named_sets(sources, limit);
    }
    if let (Some(rec), true) = (&bundle.manifest.subsample, inputs.is_empty()) {
        return many_model::work_list(bundle, rec, dataset, sets, limit);
    }
    if !inputs.is_empty() {
        let items = resolve(inputs)?
            .into_iter()
            .take(limit)
            .enumerate()
            .map(|(index, input)| Item {
                set: SplitSet::Inputs,
                index,
                input,
            })
            .collect();
        return Ok(WorkList {
            items,
            dataset: None,
            sets: Vec::new(),
            classes: Vec::new(),
        });
    }
    let m = &bundle.manifest;
    let split = m.split.as_ref().ok_or_else(|| {
        Error::bundle(
            bundle.dir.join(bundle::MANIFEST),
            "has no split record, so there are no sets to audit; pass INPUTS to score \
                 images instead",
        )
    })?;
    split.validate()?;
    let spec = dataset
        .or_else(|| m.training_dataset())
        .map(str::to_string)
        .ok_or_else(|| Error::Param("the bundle records no dataset; pass --dataset".into()))?;
    let subset = m.training_subset();
    let i = &m.input;
    let tt = dataset::load(&spec, Some([i.channels, i.height, i.width]), subset)?;
    if tt.train.len() != split.size {
        return Err(Error::Param(format!(
            "{spec} has {} training examples but the bundle's split was made for {}; \
             is --dataset the one the bundle was trained on?",
            tt.train.len(),
            split.size
        )));
    }
    dataset::check_recorded_data(&spec, split.data_sha256.as_deref(), &tt)?;
    let (train, test) = (Arc::new(tt.train), Arc::new(tt.test));
    let mut items = Vec::new();
    for &set in sets {
        let (idx, data, name) = match set {
            SplitSet::Candidate => (&split.candidate, &train, &split.dataset),
            SplitSet::Shared => (&split.shared, &train, &split.dataset),
            SplitSet::Independent => (&split.independent, &train, &split.dataset),
            SplitSet::Extra => (&split.extra, &test, &split.extra_dataset),
            SplitSet::CanaryCandidate | SplitSet::CanaryIndependent | SplitSet::CanaryHeldout => {
                items.extend(canary_items(bundle, split, set, limit)?);
                continue;
            }
            SplitSet::Inputs | SplitSet::Reference | SplitSet::Pool => {
                return Err(Error::Param(format!(
                    "`{set}` is not a set of the split; pass INPUTS to score images, \
                     --reference for a reference population"
                )))
            }
        };
        idx.validate(data.len())?;
        items.extend(idx.iter().take(limit).map(|index| Item {
            set,
            index,
            input: Input::example(format!("{name}#{index}"), data.clone(), index),
        }));
    }
    Ok(WorkList {
        items,
        dataset: Some(spec),
        sets: sets.to_vec(),
        classes: tt.classes,
    })
}

/// The work list of sets the user named: each set's inputs resolved (any image size: the
/// engine resizes as `sslmem score` does), the first `limit` of each. An input named in two
/// sets, or a set with no images, is refused: either would make the comparison meaningless.
fn named_sets(sources: &BTreeMap<SplitSet, Vec<String>>, limit: usize) -> Result<WorkList> {
    let mut items = Vec::new();
    let mut seen: BTreeMap<String, SplitSet> = BTreeMap::new();
    for (&set, inputs) in sources {
        if !set.member_flag_allowed() {
            return Err(Error::Param(format!(
                "{set} cannot be named by the user; name members, non-members, shared or \
                 independent images"
            )));
        }
        let flag = set.member_flag();
        let resolved = resolve(inputs).map_err(|e| Error::Param(format!("--{flag}: {e}")))?;
        if resolved.is_empty() {
            return Err(Error::Param(format!(
                "--{flag} {}: no images found (folders are searched for PNG, JPEG, BMP, GIF, \
                 TIFF, WebP and PNM files)",
                inputs.join(" ")
            )));
        }
        for (index, input) in resolved.into_iter().take(limit).enumerate() {
            match seen.insert(input.source_key(), set) {
                Some(other) if other == set => {
                    return Err(Error::Param(format!(
                        "{} is named twice by --{flag}; name each image once",
                        input.name
                    )))
                }
                Some(other) => {
                    return Err(Error::Param(format!(
                        "{} is named by both --{} and --{flag}; an image belongs to one set",
                        input.name,
                        other.member_flag()
                    )))
                }
                None => {}
            }
            items.push(Item { set, index, input });
        }
    }
    Ok(WorkList {
        items,
        dataset: None,
        sets: sources.keys().copied().collect(),
        classes: Vec::new(),
    })
}

/// The canaries of one canary set, as files of the bundle whose hashes are checked.
fn canary_items(
    bundle: &Bundle,
    split: &SplitRecord,
    set: SplitSet,
    limit: usize,
) -> Result<Vec<Item>> {
    let c = split.canaries.as_ref().ok_or_else(|| {
        Error::Param(format!(
            "--sets {}: the bundle has no canaries (train it with `sslmem-train pair --canaries N`)",
            set.name()
        ))
    })?;
    let idx = match set {
        SplitSet::CanaryCandidate => &c.candidate,
        SplitSet::CanaryIndependent => &c.independent,
        _ => &c.heldout,
    };
    idx.iter()
        .take(limit)
        .map(|j| {
            let file = &c.files[j];
            let path = bundle::verify_file(&bundle.dir, &file.into())?;
            Ok(Item {
                set,
                index: j,
                input: Input::file(path),
            })
        })
        .collect()
}

/// The sets of the records, in the order they first appear: the order they were scored in,
/// which is [`SplitSet`]'s.
fn sets_of(records: &[Record]) -> Vec<SplitSet> {
    let mut sets: Vec<SplitSet> = Vec::new();
    for r in records {
        if !sets.contains(&r.set) {
            sets.push(r.set);
        }
    }
    sets
}

/// Writes scores.jsonl, scores.csv, summary.json, the figures and report.html (each
/// atomically) into `out` from the records of the whole work list: the one ending of an
/// unsharded audit and of `sslmem audit-merge`, so that both write the same bytes. `date`
/// (seconds since 1970, UTC) is the report's.
fn finish(
    out: &Path,
    engine: &Engine,
    params: &AuditParams,
    work: &WorkList,
    records: &[Record],
    date: i64,
    grid_classes: &[u8],
) -> Result<()> {
    tracing::info!("typicality, statistics and figures");
    let bundle = engine.bundle();
    let one_model = bundle.manifest.is_one_model();
    let emb = typicality::embeddings(engine, &work.items)?;
    let typ = typicality::typicality(emb.typicality_side(bundle.g.is_empty()), records);
    let calibrated = match &params.reference {
        Some(spec) => calibration::calibrate(
            records,
            &emb.f,
            spec,
            params.knn.unwrap_or(crate::score::calibrate::DEFAULT_KNN),
        ),
        None => vec![None; records.len()],
    };
    let compared = estimators::compare(records, &calibrated, params.seed);
    if one_model {
        let parts = OneModelParts {
            calibrated: &calibrated,
            typ: &typ,
            compared,
        };
        return finish_one_model(out, bundle, params, work, records, parts, date);
    }
    let rows = ranked_rows(records, &typ, &calibrated);
    write_atomic(
        &out.join("scores.jsonl"),
        scores::to_jsonl(&rows)?.as_bytes(),
    )?;
    write_atomic(&out.join("scores.csv"), &scores::to_csv(&rows)?)?;
    let membership = summary::membership(records, params.seed);
    let mut summary = summary::summarize(bundle, params, records, &typ, &membership)?;
    summary.estimators = compared;
    summary.layer_mem = layer_mem::measure(engine, &work.items, records, &params.score_options()?)?;
    if let Some(rec) = &bundle.manifest.subsample {
        summary.many_model = Some(many_model::summarize(rec, records, params.seed));
        summary.score = MANY_MODEL_SCORE.into();
    }
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::output("JSON", e))?;
    write_atomic(&out.join("summary.json"), (text + "\n").as_bytes())?;

    // Figures, as files and in the report.
    let figs = draw_figures(
        out,
        bundle,
        work,
        records,
        &rows,
        &summary,
        &membership,
        grid_classes,
    )?;
    let run = html::RunRecord {
        date,
        command: command_line(&bundle.dir, params),
        manifest_sha256: sha256_file(&bundle.dir.join(bundle::MANIFEST))?,
        classes: work.classes.clone(),
    };
    let page = html::html(bundle, params, &summary, records, &figs, &run)?;
    write_atomic(&out.join("report.html"), page.as_bytes())
}

/// The rows of scores.jsonl and scores.csv, set by set in [`sets_of`]'s order: each scored
/// record with its rank in its set (1 = most memorized), its set-level normalisations over the
/// set, its typicality (`typ`, one per record) and its calibration (`calibrated`, one per record).
fn ranked_rows(
    records: &[Record],
    typ: &[Option<f64>],
    calibrated: &[Option<crate::score::calibrate::Calibrated>],
) -> Vec<ScoreRow> {
    let sets = sets_of(records);
    let mut rows: Vec<ScoreRow> = Vec::with_capacity(records.len());
    for set in &sets {
        let scored: Vec<(usize, &Record, &ImageScore, Option<f64>)> = records
            .iter()
            .zip(typ)
            .enumerate()
            .filter(|(_, (r, _))| r.set == *set)
            .filter_map(|(k, (r, t))| r.score.as_ref().map(|s| (k, r, s, *t)))
            .collect();
        let plain: Vec<ImageScore> = scored.iter().map(|(_, _, s, _)| (*s).clone()).collect();
        let range = set_normalize(&plain, SetNorm::Range);
        let max = set_normalize(&plain, SetNorm::Max);
        let mut order: Vec<usize> = (0..scored.len()).collect();
        order.sort_by(|&x, &y| {
            scored[y]
                .2
                .score
                .total_cmp(&scored[x].2.score)
                .then(x.cmp(&y))
        });
        let mut rank = vec![0; scored.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r + 1;
        }
        for (i, (k, rec, s, typicality)) in scored.into_iter().enumerate() {
            let record = ScoreRecord::new(rec.input.clone(), s);
            let c = calibrated[k].unwrap_or_default();
            rows.push(ScoreRow {
                score_range: range[i],
                score_max: max[i],
                typicality,
                align_f_percentile: c.align_f_percentile,
                knn_gap: c.knn_gap,
                ..ScoreRow::of(rec.set, rec.index, rec.label, record, rank[i])
            });
        }
    }
    rows
}

/// What [`finish`] computed that a one-model audit's files need.
struct OneModelParts<'a> {
    calibrated: &'a [Option<crate::score::calibrate::Calibrated>],
    typ: &'a [Option<f64>],
    compared: Vec<estimators::EstimatorMembership>,
}

/// [`finish`] for a one-model bundle: its rows ([`one_model::OneModelRow`]), summary, the
/// estimators' ROC and its report.
fn finish_one_model(
    out: &Path,
    bundle: &Bundle,
    params: &AuditParams,
    work: &WorkList,
    records: &[Record],
    p: OneModelParts,
    date: i64,
) -> Result<()> {
    let rows = one_model::rows(records, p.calibrated, p.typ);
    write_atomic(
        &out.join("scores.jsonl"),
        scores::to_jsonl(&rows)?.as_bytes(),
    )?;
    write_atomic(&out.join("scores.csv"), &one_model::to_csv(&rows)?)?;
    let reference_images = params.reference.as_ref().map(|r| {
        records
            .iter()
            .filter(|x| x.set == r.set() && x.scored())
            .count()
    });
    let mut summary = summary::summarize(bundle, params, records, p.typ, &[])?;
    summary.score = one_model::FIELDS.into();
    summary.sets.clear();
    summary.classes.clear();
    summary.tests.clear();
    summary.typicality.clear();
    summary.checks.clear();
    summary.one_model = Some(one_model::summarize(&rows, reference_images, params.knn));
    summary.estimators = p.compared;
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::output("JSON", e))?;
    write_atomic(&out.join("summary.json"), (text + "\n").as_bytes())?;
    let roc = figures::estimators_roc_png(&summary.estimators)?;
    if let Some(png) = &roc {
        write_atomic(&out.join("figures").join("roc-estimators.png"), png)?;
    }
    let run = html::RunRecord {
        date,
        command: command_line(&bundle.dir, params),
        manifest_sha256: sha256_file(&bundle.dir.join(bundle::MANIFEST))?,
        classes: work.classes.clone(),
    };
    let page = html::one_model_html(bundle, params, &summary, roc.as_deref(), &run);
    write_atomic(&out.join("report.html"), page.as_bytes())
}

/// What a many-model audit's score is, as `summary.json` says it.
const MANY_MODEL_SCORE: &str = "many-model: the mean alignment of an image's views under the encoders that did not train on it minus under those that did (align_g: out, align_f: in), docs/science.md#the-many-model-estimator; significant: the 95% interval over view pairs lies above 0";

/// Draws the report's figures from the audit's rows and writes each to `out/figures/`.
// Every argument is a different input of the figures; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn draw_figures(
    out: &Path,
    bundle: &Bundle,
    work: &WorkList,
    records: &[Record],
    rows: &[ScoreRow],
    summary: &summary::Summary,
    membership: &[crate::membership::Membership],
    grid_classes: &[u8],
) -> Result<figures::Figures> {
    let sets = sets_of(records);
    let by_set: Vec<(SplitSet, Vec<f64>)> = sets
        .iter()
        .map(|set| {
            let v = rows
                .iter()
                .filter(|r| r.set == *set)
                .map(|r| r.score)
                .collect();
            (*set, v)
        })
        .collect();
    let points: Vec<(SplitSet, Vec<(f64, f64)>)> = sets
        .iter()
        .map(|set| {
            let v = rows
                .iter()
                .filter(|r| r.set == *set)
                .filter_map(|r| r.typicality.map(|t| (t, r.score)))
                .collect();
            (*set, v)
        })
        .collect();
    let grid_set = text::grid_set(&sets);

    let grid_memorized = text::scores_are_memorization(grid_set, summary);
    let grids = figures::class_grids(
        &work.items,
        records,
        grid_set,
        bundle.manifest.input.channels,
        grid_classes,
    );
    let figs = figures::Figures {
        histogram: figures::histogram_png(&by_set)?,
        typicality: figures::typicality_png(&points)?,
        grid: figures::grid_png(&grids, grid_set, grid_memorized, &work.classes)?,
        grids,
        grid_set,
        grid_memorized,
        roc: if membership.is_empty() {
            None
        } else {
            Some(figures::roc_png(membership)?)
        },
        roc_estimators: figures::estimators_roc_png(&summary.estimators)?,
        layer_mem: match &summary.layer_mem {
            Some(m) => Some(figures::layer_mem_png(m)?),
            None => None,
        },
    };
    let dir = out.join("figures");
    write_atomic(&dir.join("score-histogram.png"), &figs.histogram)?;
    write_atomic(&dir.join("score-vs-typicality.png"), &figs.typicality)?;
    write_atomic(&dir.join("memorized-grid.png"), &figs.grid)?;
    if let Some(roc) = &figs.roc {
        write_atomic(&dir.join("roc.png"), roc)?;
    }
    if let Some(roc) = &figs.roc_estimators {
        write_atomic(&dir.join("roc-estimators.png"), roc)?;
    }
    if let Some(png) = &figs.layer_mem {
        write_atomic(&dir.join("layer-mem.png"), png)?;
    }
    Ok(figs)
}
