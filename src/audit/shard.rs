//! Shards of an audit and the folders they journal to.
//!
//! `--shard I/N` scores the `I`-th of `N` contiguous ranges of the audit's fixed work list
//! (sizes differing by at most one; see [`ShardSpec::range`]). Contiguous ranges keep a
//! shard's journal a prefix of its slice, so a killed shard resumes exactly as a whole audit
//! does, and the merge is a concatenation in shard order.
//!
//! A shard folder holds `shard.json` ([`ShardRecord`]: the audit's parameters, the bundle
//! path and the slice) and `journal.jsonl` (its [`Record`]s, appended a chunk at a time and
//! `fsync`ed). An unsharded audit is the one shard `0/1`, journaled in `OUT/.audit/` and
//! removed once the final files are written; `sslmem audit-merge` reads finished shard
//! folders without changing them.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AuditOptions, AuditParams, Item, Record};
use crate::engine::Engine;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::output::progress_bar;
use crate::pixels::SourceImage;
use crate::score::{ImageScore, SubsampleScore, ViewAlignment};

/// The `format` of `shard.json`.
pub const FORMAT: &str = "sslmem-audit-shard/1";
/// A shard folder's record of what it scores.
pub const RECORD_FILE: &str = "shard.json";
/// A shard folder's scored examples, one JSON line each, in work-list order.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// What an earlier sslmem wrote to `OUT/.audit/` instead of `shard.json` (the parameters
/// alone); an unfinished audit of that version still resumes.
const OLD_PARAMS_FILE: &str = "params.json";

/// Which slice of an audit's work list a process scores: shard `index` of `count`
/// (0-based), written `I/N` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardSpec {
    /// 0-based, below `count`.
    pub index: usize,
    /// How many shards the work list is cut into (at least 1).
    pub count: usize,
}

impl ShardSpec {
    /// The whole work list: what an unsharded audit scores.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// The positions of a work list of `len` examples that this shard scores:
    /// `[index * len / count, (index + 1) * len / count)`, so that the shards `0/N` to
    /// `N-1/N` cover it exactly once, in order, with sizes that differ by at most one.
    pub fn range(self, len: usize) -> Range<usize> {
        // u128: index * len cannot overflow.
        let at = |i: usize| (i as u128 * len as u128 / self.count.max(1) as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not a shard: write I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// `shard.json`: what a shard folder holds the records of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// [`FORMAT`].
    pub format: String,
    /// The bundle folder, as the shard was given it (the merge loads it from there unless
    /// told another path).
    pub bundle: PathBuf,
    /// The audit's parameters: every shard of one audit has the same.
    pub params: AuditParams,
    /// Which shard this is.
    pub shard: ShardSpec,
    /// The first work-list position it scores: `shard.range(params.items).start`.
    pub start: usize,
    /// One past the last: `shard.range(params.items).end`.
    pub end: usize,
}

impl ShardRecord {
    /// The record of shard `shard` of the audit `params`.
    pub fn new(bundle: &Path, params: &AuditParams, shard: ShardSpec) -> Self {
        let r = shard.range(params.items);
        Self {
            format: FORMAT.into(),
            bundle: bundle.to_path_buf(),
            params: params.clone(),
            shard,
            start: r.start,
            end: r.end,
        }
    }

    /// Examples in the slice.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the slice is empty (more shards than examples).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::output("JSON", e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Param(format!("{}: {e}", path.display())))
}

/// Opens the shard folder `dir` to score `items` (the slice `rec` names): records `rec` in a
/// new folder, or checks that an existing one holds the same audit and slice; returns the
/// records journaled so far (a torn last line cut off), checked against `items`. `out` is the
/// folder the user named (`dir` or the folder holding it), for messages.
pub(super) fn open(
    dir: &Path,
    out: &Path,
    rec: &ShardRecord,
    items: &[Item],
) -> Result<Vec<Record>> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(RECORD_FILE);
    let old_params = dir.join(OLD_PARAMS_FILE);
    if path.is_file() {
        let old: ShardRecord = read_json(&path)?;
        if old.params != rec.params {
            return Err(Error::Param(format!(
                "{} holds an unfinished audit with other parameters (bundle, sets, limit, \
                 pairs, seed or options); rerun it with its own command, or choose another --out",
                out.display()
            )));
        }
        if old.shard != rec.shard {
            return Err(Error::Param(format!(
                "{} holds shard {} of this audit, not shard {}: give each shard its own --out",
                out.display(),
                old.shard,
                rec.shard
            )));
        }
        if old != *rec {
            // The same audit, with the bundle given by another path: the merge loads it from
            // where the latest run found it.
            write_atomic(&path, &to_json(rec)?)?;
        }
    } else {
        if old_params.is_file() {
            let old: AuditParams = read_json(&old_params)?;
            if old != rec.params {
                return Err(Error::Param(format!(
                    "{} holds an unfinished audit with other parameters (bundle, sets, limit, \
                     pairs, seed or options); rerun it with its own command, or choose another \
                     --out",
                    out.display()
                )));
            }
        }
        write_atomic(&path, &to_json(rec)?)?;
        if old_params.is_file() {
            fs::remove_file(&old_params).map_err(|e| Error::io(&old_params, e))?;
        }
    }
    let journal = dir.join(JOURNAL_FILE);
    let records = read_journal(&journal, true)?;
    check_journal(&journal, dir, &records, items)?;
    Ok(records)
}

/// A finished or unfinished shard folder, read without changing anything: its record and
/// the complete lines of its journal.
pub(super) fn read(dir: &Path) -> Result<(ShardRecord, Vec<Record>)> {
    let path = dir.join(RECORD_FILE);
    if !path.is_file() {
        return Err(Error::Param(format!(
            "{} is not a shard folder (no {RECORD_FILE}): give the --out folders of \
             `sslmem audit --shard I/N`",
            dir.display()
        )));
    }
    let rec: ShardRecord = read_json(&path)?;
    if rec.format != FORMAT {
        return Err(Error::Param(format!(
            "{}: format '{}', this sslmem reads '{FORMAT}'",
            path.display(),
            rec.format
        )));
    }
    let records = read_journal(&dir.join(JOURNAL_FILE), false)?;
    Ok((rec, records))
}

/// Whether journaled `records` are those of `items`, in order, and no more.
fn check_journal(journal: &Path, dir: &Path, records: &[Record], items: &[Item]) -> Result<()> {
    for (r, it) in records.iter().zip(items) {
        if (r.set, r.index) != (it.set, it.index) {
            return Err(Error::Param(format!(
                "{}: the journal does not match this audit ({} #{} where {} #{} was expected); \
                 remove {} to start over",
                journal.display(),
                r.set,
                r.index,
                it.set,
                it.index,
                dir.display()
            )));
        }
    }
    if records.len() > items.len() {
        return Err(Error::Param(format!(
            "{}: more records than examples; remove {} to start over",
            journal.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Journal records so far. A torn last line (a crash mid-write) ends the records; with
/// `repair` it is also cut off the file, so that appending continues on a line boundary.
fn read_journal(path: &Path, repair: bool) -> Result<Vec<Record>> {
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
    if repair && len != good_bytes {
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

/// Scores the `items` not yet in `records`, appending each chunk to the journal of `dir`
/// (and to `records`) as it is done.
pub(super) fn score_remaining(
    a: &AuditOptions,
    engine: &Engine,
    dir: &Path,
    items: &[Item],
    records: &mut Vec<Record>,
) -> Result<()> {
    let todo = &items[records.len().min(items.len())..];
    if todo.is_empty() {
        return Ok(());
    }
    let journal = dir.join(JOURNAL_FILE);
    let (channels, limits) = (engine.input().channels, a.est.limits());
    let pb = progress_bar(items.len(), "auditing");
    pb.set_position(records.len() as u64);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .map_err(|e| Error::io(&journal, e))?;
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
        let loaded: Vec<&Item> = chunk
            .iter()
            .zip(&errors)
            .filter(|(_, e)| e.is_none())
            .map(|(it, _)| it)
            .collect();
        let progress = |n: usize| pb.inc(n as u64);
        let mut estimates = estimate(engine, &images, &loaded, a, &progress)?.into_iter();
        let mut text = String::new();
        for (it, error) in chunk.iter().zip(errors) {
            // Only the images that loaded were scored, in order.
            let (mut score, mut alignment, mut per_encoder) = (None, None, None);
            let error = match error {
                Some(e) => Some(e),
                None => match estimates.next() {
                    Some(Ok(Estimate::Pair(s))) => {
                        score = Some(s);
                        None
                    }
                    Some(Ok(Estimate::OneModel(x))) => {
                        alignment = Some(x);
                        None
                    }
                    Some(Ok(Estimate::ManyModel(Some(m)))) => {
                        score = Some(m.score);
                        per_encoder = Some(m.per_encoder);
                        None
                    }
                    Some(Ok(Estimate::ManyModel(None))) => {
                        Some("no estimate: every encoder trained on it, or none did".to_string())
                    }
                    Some(Err(e)) => {
                        pb.suspend(|| tracing::error!(input = %it.input.name, "not scored: {e}"));
                        Some(e.to_string())
                    }
                    None => Some("no score was returned".to_string()),
                },
            };
            let rec = Record {
                set: it.set,
                index: it.index,
                input: it.input.name.clone(),
                label: it.input.label(),
                score,
                alignment,
                per_encoder,
                error,
            };
            text.push_str(&serde_json::to_string(&rec).map_err(|e| Error::output("JSON", e))?);
            text.push('\n');
            records.push(rec);
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&journal, e))?;
    }
    pb.finish_and_clear();
    Ok(())
}

/// One image's estimate, by the kind of bundle.
enum Estimate {
    /// A pair's SSLMem score.
    Pair(ImageScore),
    /// A one-model bundle's alignment under `f`.
    OneModel(ViewAlignment),
    /// A many-model bundle's estimate (`None`: no encoder on one side).
    ManyModel(Option<SubsampleScore>),
}

/// The estimates of the loaded `images` of `items` (in order), as the bundle gives them.
fn estimate(
    engine: &Engine,
    images: &[SourceImage],
    items: &[&Item],
    a: &AuditOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<std::result::Result<Estimate, InputError>>> {
    let opts = &a.est.score;
    let bundle = engine.bundle();
    let out = if let Some(rec) = &bundle.manifest.subsample {
        let member = super::many_model::member_rows(rec, items);
        engine
            .subsample_each(images, &member, opts, progress)?
            .into_iter()
            .map(|r| r.map(Estimate::ManyModel))
            .collect()
    } else if bundle.g.is_empty() {
        engine
            .align_views_each(images, opts, progress)?
            .into_iter()
            .map(|r| r.map(Estimate::OneModel))
            .collect()
    } else {
        engine
            .score_each(images, opts, progress)?
            .into_iter()
            .map(|r| r.map(Estimate::Pair))
            .collect()
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shards_parse_as_i_of_n() {
        assert_eq!(
            "2/5".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 2, count: 5 })
        );
        assert_eq!(" 0 / 1 ".parse::<ShardSpec>(), Ok(ShardSpec::WHOLE));
        for bad in ["", "3", "3/3", "1/0", "-1/2", "a/b", "1/2/3"] {
            let e = bad.parse::<ShardSpec>().expect_err(bad);
            assert!(e.contains("I/N"), "{bad}: {e}");
        }
        assert_eq!(ShardSpec { index: 1, count: 3 }.to_string(), "1/3");
    }

    #[test]
    fn ranges_are_contiguous_and_balanced() {
        let r: Vec<Range<usize>> = (0..3)
            .map(|index| ShardSpec { index, count: 3 }.range(140))
            .collect();
        assert_eq!(r, [0..46, 46..93, 93..140]);
        assert_eq!(ShardSpec::WHOLE.range(7), 0..7);
        // More shards than examples: some are empty.
        assert_eq!(ShardSpec { index: 0, count: 4 }.range(2), 0..0);
    }

    proptest! {
        #[test]
        fn shards_cover_the_work_list_exactly_once(len in 0usize..5000, count in 1usize..64) {
            let mut next = 0;
            for index in 0..count {
                let r = ShardSpec { index, count }.range(len);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() == len / count || r.len() == len / count + 1);
                next = r.end;
            }
            prop_assert_eq!(next, len);
        }
    }
}
