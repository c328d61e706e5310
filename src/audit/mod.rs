//! `sslmem audit`: scores every example of the chosen sets of a bundle's split (or any inputs),
//! streaming each chunk of results to a journal as it is computed, so that a killed run
//! resumes where it stopped with the same command and ends with the same files as an
//! uninterrupted one. The final files (`scores.jsonl`, `scores.csv`, `summary.json`) are
//! written atomically from the journal; then the journal is removed.

pub mod report;
pub mod scores;
pub mod summary;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bundle::{self, Bundle};
use crate::data::dataset;
use crate::data::inputs::{resolve, Input};
use crate::data::split::SplitRecord;
use crate::engine::{Engine, EstimatorOptions, Quiet};
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::output::progress_bar;
use crate::runtime::RuntimeOptions;
use crate::score::{set_normalize, ImageScore, SetNorm};
use scores::ScoreRow;

pub use crate::data::split::SplitSet;

/// What `sslmem audit` does (the command line's flags, parsed).
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Model bundle folder (holds sslmem.json; its `split` says which example is in which set).
    pub bundle: PathBuf,
    /// Output folder: scores.jsonl, scores.csv, summary.json, figures, report.html.
    pub out: PathBuf,
    /// Dataset the split indexes (default: the one the bundle was trained on).
    pub dataset: Option<String>,
    /// Split sets to score (empty: every set the bundle has, canaries included).
    pub sets: Vec<SplitSet>,
    /// Every set the bundle has (the default).
    pub all: bool,
    /// Score only the first N examples of each set (in index order).
    pub limit: Option<usize>,
    pub est: EstimatorOptions,
    /// Images written to the journal at a time (a killed run loses at most one chunk).
    pub chunk: usize,
    /// Score these inputs (files, folders, datasets) as one set `inputs` instead of the split.
    pub inputs: Vec<String>,
    /// When the report says the files were written: seconds since 1970, UTC (the command
    /// line takes `SOURCE_DATE_EPOCH`, else the clock).
    pub date: i64,
}

/// What a journal was started with; a resume must match it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditParams {
    /// `sha256` of each encoder file, f then g.
    pub encoders: Vec<String>,
    pub dataset: Option<String>,
    /// The sets scored, in order; empty for an audit of inputs.
    pub sets: Vec<SplitSet>,
    pub inputs: Vec<String>,
    pub limit: Option<usize>,
    pub pairs: usize,
    pub seed: u64,
    pub mode: String,
    pub distance: String,
    pub normalize: String,
    pub items: usize,
}

/// One scored example, as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub set: SplitSet,
    pub index: usize,
    pub input: String,
    pub label: Option<u8>,
    pub score: Option<ImageScore>,
    /// Why the example could not be scored.
    pub error: Option<String>,
}

struct Item {
    set: SplitSet,
    index: usize,
    input: Input,
}

const JOURNAL_DIR: &str = ".audit";

/// An audit's examples in their fixed order, with what they were chosen from.
struct WorkList {
    items: Vec<Item>,
    /// The dataset spec the split indexes; `None` for an audit of inputs.
    dataset: Option<String>,
    /// The sets scored, in order; empty for an audit of inputs.
    sets: Vec<SplitSet>,
    /// Class names by label, where the dataset has them.
    classes: Vec<String>,
}

/// Runs (or resumes, or recognises as finished) an audit; `Ok(true)` when every example was
/// scored.
pub fn run(a: &AuditOptions, rt: &RuntimeOptions) -> Result<bool> {
    if a.chunk == 0 {
        return Err(Error::Param("--chunk must be at least 1".into()));
    }
    let engine = Engine::start(Bundle::load(&a.bundle, rt)?, a.est.queue(), Arc::new(Quiet))?;
    let bundle = engine.bundle();
    let WorkList {
        items,
        dataset,
        sets,
        classes,
    } = work_list(a, bundle)?;
    if items.is_empty() {
        return Err(Error::Param(
            "nothing to audit: the chosen sets are empty".into(),
        ));
    }
    let params = AuditParams {
        encoders: bundle
            .manifest
            .f
            .iter()
            .chain(&bundle.manifest.g)
            .map(|m| m.sha256.clone())
            .collect(),
        dataset,
        sets,
        inputs: a.inputs.clone(),
        limit: a.limit,
        pairs: a.est.score.pairs,
        seed: a.est.score.seed,
        mode: value_name(a.est.score.mode),
        distance: value_name(a.est.score.distance),
        normalize: value_name(a.est.score.normalize),
        items: items.len(),
    };
    let journal_dir = a.out.join(JOURNAL_DIR);
    let summary_path = a.out.join("summary.json");
    if summary_path.is_file() && !journal_dir.exists() {
        let text = fs::read_to_string(&summary_path).map_err(|e| Error::io(&summary_path, e))?;
        // Valid JSON of another shape (another version's summary) is another audit.
        let done = match serde_json::from_str::<summary::Summary>(&text) {
            Ok(done) => Some(done),
            Err(e) if e.is_data() => None,
            Err(e) => return Err(Error::Param(format!("{}: {e}", summary_path.display()))),
        };
        let Some(done) = done.filter(|d| d.params == params) else {
            return Err(Error::Param(format!(
                "{} holds a finished audit with other parameters; choose another --out",
                a.out.display()
            )));
        };
        tracing::info!("{} is already complete", a.out.display());
        return Ok(done.failed.is_empty());
    }
    fs::create_dir_all(&journal_dir).map_err(|e| Error::io(&journal_dir, e))?;
    let params_path = journal_dir.join("params.json");
    if params_path.is_file() {
        let old: AuditParams = serde_json::from_str(
            &fs::read_to_string(&params_path).map_err(|e| Error::io(&params_path, e))?,
        )
        .map_err(|e| Error::Param(format!("{}: {e}", params_path.display())))?;
        if old != params {
            return Err(Error::Param(format!(
                "{} holds an unfinished audit with other parameters (bundle, sets, limit, \
                 pairs, seed or options); rerun it with its own command, or choose another --out",
                a.out.display()
            )));
        }
    } else {
        write_atomic(
            &params_path,
            &serde_json::to_vec_pretty(&params).map_err(|e| Error::Runtime(e.to_string()))?,
        )?;
    }

    let journal = journal_dir.join("journal.jsonl");
    let mut records = read_journal(&journal)?;
    for (r, it) in records.iter().zip(&items) {
        if (r.set, r.index) != (it.set, it.index) {
            return Err(Error::Param(format!(
                "{}: the journal does not match this audit ({} #{} where {} #{} was expected); \
                 remove {} to start over",
                journal.display(),
                r.set,
                r.index,
                it.set,
                it.index,
                journal_dir.display()
            )));
        }
    }
    if records.len() > items.len() {
        return Err(Error::Param(format!(
            "{}: more records than examples; remove {} to start over",
            journal.display(),
            journal_dir.display()
        )));
    }
    if !records.is_empty() {
        tracing::info!(
            done = records.len(),
            total = items.len(),
            "resuming {}",
            a.out.display()
        );
    }
    score_remaining(a, &engine, &items, &journal, &mut records)?;

    let failed = records.iter().filter(|r| r.error.is_some()).count();
    finish(a, &engine, &params, &items, &records, &classes)?;
    fs::remove_dir_all(&journal_dir).map_err(|e| Error::io(&journal_dir, e))?;
    tracing::info!(
        scored = records.len() - failed,
        failed,
        "audit written to {}",
        a.out.display()
    );
    Ok(failed == 0)
}

/// A command that runs this audit again, as a shell would read it: the bundle, what was
/// scored and the estimator's parameters, without `--out` or the settings that change no
/// result.
pub fn command_line(bundle: &Path, p: &AuditParams) -> String {
    let mut w: Vec<String> = ["sslmem", "audit", "--bundle"].map(String::from).to_vec();
    w.push(bundle.display().to_string());
    if p.inputs.is_empty() {
        if let Some(d) = &p.dataset {
            w.extend(["--dataset".into(), d.clone()]);
        }
        let sets: Vec<&str> = p.sets.iter().map(|s| s.name()).collect();
        w.extend(["--sets".into(), sets.join(",")]);
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

/// The command-line spelling of a flag's value (`aug-vs-aug`, `l2`).
fn value_name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

impl AuditOptions {
    /// The sets asked for; every set the bundle has when none are named.
    fn selected_sets(&self, has_canaries: bool) -> Vec<SplitSet> {
        if !self.inputs.is_empty() {
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

/// The examples to score, in their fixed order, with what they were chosen from.
fn work_list(a: &AuditOptions, bundle: &Bundle) -> Result<WorkList> {
    let limit = a.limit.unwrap_or(usize::MAX);
    if !a.inputs.is_empty() {
        let items = resolve(&a.inputs)?
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
    let spec = a
        .dataset
        .clone()
        .or_else(|| m.training_dataset().map(str::to_string))
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
    let (train, test) = (Arc::new(tt.train), Arc::new(tt.test));
    let sets = a.selected_sets(split.canaries.is_some());
    let mut items = Vec::new();
    for &set in &sets {
        let (idx, data, name) = match set {
            SplitSet::Candidate => (&split.candidate, &train, &split.dataset),
            SplitSet::Shared => (&split.shared, &train, &split.dataset),
            SplitSet::Independent => (&split.independent, &train, &split.dataset),
            SplitSet::Extra => (&split.extra, &test, &split.extra_dataset),
            SplitSet::CanaryCandidate | SplitSet::CanaryIndependent | SplitSet::CanaryHeldout => {
                items.extend(canary_items(bundle, split, set, limit)?);
                continue;
            }
            SplitSet::Inputs => {
                return Err(Error::Param(
                    "`inputs` is not a set of the split; pass INPUTS to score images".into(),
                ))
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
        sets,
        classes: tt.classes,
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

/// Journal records so far; a torn last line (a crash mid-write) is cut off.
fn read_journal(path: &Path) -> Result<Vec<Record>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut records = Vec::new();
    let mut good_bytes = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => {
                records.push(r);
                good_bytes += n as u64;
            }
            Err(_) => break,
        }
    }
    let len = fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len != good_bytes {
        tracing::warn!(
            bytes = len - good_bytes,
            "{}: dropping an incomplete tail (the previous run stopped mid-write)",
            path.display()
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.set_len(good_bytes).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(records)
}

fn score_remaining(
    a: &AuditOptions,
    engine: &Engine,
    items: &[Item],
    journal: &Path,
    records: &mut Vec<Record>,
) -> Result<()> {
    let todo = &items[records.len()..];
    if todo.is_empty() {
        return Ok(());
    }
    let (channels, limits) = (engine.input().channels, a.est.limits());
    let pb = progress_bar(items.len(), "auditing");
    pb.set_position(records.len() as u64);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)
        .map_err(|e| Error::io(journal, e))?;
    for chunk in todo.chunks(a.chunk) {
        let loaded: Vec<_> = chunk
            .par_iter()
            .map(|it| it.input.load(channels, limits))
            .collect();
        let mut images = Vec::with_capacity(chunk.len());
        let mut errors = Vec::with_capacity(chunk.len());
        for (it, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(img) => {
                    images.push(img);
                    errors.push(None);
                }
                Err(e) => {
                    pb.inc(1);
                    pb.suspend(|| tracing::error!(input = %it.input.name, "skipped: {e}"));
                    errors.push(Some(e.to_string()));
                }
            }
        }
        let mut scores = engine
            .score(&images, &a.est.score, &|n| pb.inc(n as u64))?
            .into_iter();
        let mut text = String::new();
        for (it, error) in chunk.iter().zip(errors) {
            let score = if error.is_none() { scores.next() } else { None };
            let rec = Record {
                set: it.set,
                index: it.index,
                input: it.input.name.clone(),
                label: it.input.label(),
                score,
                error,
            };
            text.push_str(&serde_json::to_string(&rec).map_err(|e| Error::Runtime(e.to_string()))?);
            text.push('\n');
            records.push(rec);
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(journal, e))?;
    }
    pb.finish_and_clear();
    Ok(())
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
/// atomically) from the records.
fn finish(
    a: &AuditOptions,
    engine: &Engine,
    params: &AuditParams,
    items: &[Item],
    records: &[Record],
    classes: &[String],
) -> Result<()> {
    tracing::info!("typicality, statistics and figures");
    let bundle = engine.bundle();
    let typ = report::typicality(engine, items, records)?;
    // Per set: rank by score (1 = most memorized), set-level normalisations over the set.
    let sets = sets_of(records);
    let mut rows: Vec<ScoreRow> = Vec::with_capacity(records.len());
    for set in &sets {
        let scored: Vec<(&Record, &ImageScore, Option<f64>)> = records
            .iter()
            .zip(&typ)
            .filter(|(r, _)| r.set == *set)
            .filter_map(|(r, t)| r.score.as_ref().map(|s| (r, s, *t)))
            .collect();
        let plain: Vec<ImageScore> = scored.iter().map(|(_, s, _)| (*s).clone()).collect();
        let range = set_normalize(&plain, SetNorm::Range);
        let max = set_normalize(&plain, SetNorm::Max);
        let mut order: Vec<usize> = (0..scored.len()).collect();
        order.sort_by(|&x, &y| {
            scored[y]
                .1
                .score
                .total_cmp(&scored[x].1.score)
                .then(x.cmp(&y))
        });
        let mut rank = vec![0; scored.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r + 1;
        }
        for (i, (rec, s, typicality)) in scored.into_iter().enumerate() {
            let (lo, hi) = (s.ci95.map(|c| c[0]), s.ci95.map(|c| c[1]));
            rows.push(ScoreRow {
                set: rec.set,
                index: rec.index,
                input: rec.input.clone(),
                label: rec.label,
                align_f: s.align_f,
                align_g: s.align_g,
                score: s.score,
                score_ratio: s.score_ratio,
                stderr: s.stderr,
                ci95_low: lo,
                ci95_high: hi,
                significant: lo.is_some_and(|l| l > 0.0),
                rank: rank[i],
                score_range: range[i],
                score_max: max[i],
                typicality,
                pairs: s.pairs,
            });
        }
    }
    write_atomic(
        &a.out.join("scores.jsonl"),
        scores::to_jsonl(&rows)?.as_bytes(),
    )?;
    write_atomic(&a.out.join("scores.csv"), &scores::to_csv(&rows)?)?;
    let membership = summary::membership(records, params.seed);
    let summary = summary::summarize(bundle, params, records, &typ, &membership)?;
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::Runtime(e.to_string()))?;
    write_atomic(&a.out.join("summary.json"), (text + "\n").as_bytes())?;

    // Figures, as files and in the report.
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
    let grid_set = match sets.first() {
        Some(&first) if !sets.contains(&SplitSet::Candidate) => first,
        _ => SplitSet::Candidate,
    };
    let grids = report::class_grids(items, records, grid_set, bundle.manifest.input.channels);
    let figs = report::Figures {
        histogram: report::histogram_png(&by_set)?,
        typicality: report::typicality_png(&points)?,
        grid: report::grid_png(&grids, grid_set, classes)?,
        grids,
        grid_set,
        roc: if membership.is_empty() {
            None
        } else {
            Some(report::roc_png(&membership)?)
        },
    };
    let dir = a.out.join("figures");
    write_atomic(&dir.join("score-histogram.png"), &figs.histogram)?;
    write_atomic(&dir.join("score-vs-typicality.png"), &figs.typicality)?;
    write_atomic(&dir.join("memorized-grid.png"), &figs.grid)?;
    if let Some(roc) = &figs.roc {
        write_atomic(&dir.join("roc.png"), roc)?;
    }
    let run = report::RunRecord {
        date: a.date,
        command: command_line(&bundle.dir, params),
        manifest_sha256: sha256_file(&bundle.dir.join(bundle::MANIFEST))?,
        classes: classes.to_vec(),
    };
    let html = report::html(bundle, params, &summary, records, &figs, &run)?;
    write_atomic(&a.out.join("report.html"), html.as_bytes())
}
