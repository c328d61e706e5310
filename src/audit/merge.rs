//! `sslmem audit-merge`: the final files of a sharded audit.
//!
//! The shard folders must be the `N` shards of one audit: the same parameters (encoder
//! hashes, dataset, sets, limit, estimator), each of `0/N` to `N-1/N` once, each journal
//! complete. Their records, concatenated in shard order, are the work list's records in its
//! order; the bundle is loaded again (the report's typicality and thumbnails need `g` and the
//! images) and the work list rebuilt to check them against. Then the unsharded audit's own
//! [`super::finish`] writes the files, so that they are byte for byte what an unsharded audit
//! of the same parameters writes (the report's date aside, which `SOURCE_DATE_EPOCH` fixes).
//! The shard folders are only read.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use super::shard::{self, ShardRecord, RECORD_FILE};
use super::{encoder_hashes, finish, finished, work_list, Record};
use crate::bundle::Bundle;
use crate::engine::{Engine, QueueOptions, Quiet};
use crate::error::{Error, Result};
use crate::runtime::RuntimeOptions;

/// What `sslmem audit-merge` does.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// Shard folders, or folders whose subfolders are shard folders; in any order.
    pub shards: Vec<PathBuf>,
    /// Output folder: the files of an unsharded audit.
    pub out: PathBuf,
    /// The bundle, when it is not where the shards recorded it (the summary and the report
    /// then name this path).
    pub bundle: Option<PathBuf>,
    /// Views per inference batch (typicality runs `g` over every example once).
    pub batch_size: usize,
    /// When the report says the files were written: seconds since 1970, UTC.
    pub date: i64,
    /// As [`super::AuditOptions::grid_classes`].
    pub grid_classes: Vec<u8>,
}

/// One shard folder, read.
struct Shard {
    dir: PathBuf,
    rec: ShardRecord,
    records: Vec<Record>,
}

/// The shard folders named by `paths`: each path that holds a `shard.json`, and the
/// immediate subfolders that do of each path that does not.
fn shard_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for p in paths {
        if p.join(RECORD_FILE).is_file() {
            dirs.push(p.clone());
            continue;
        }
        let entries = fs::read_dir(p).map_err(|e| Error::io(p, e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join(RECORD_FILE).is_file())
            .collect();
        if found.is_empty() {
            return Err(Error::Param(format!(
                "{} is not a shard folder and holds none (no {RECORD_FILE}): give the --out \
                 folders of `sslmem audit --shard I/N`, or the folder they are in",
                p.display()
            )));
        }
        found.sort();
        dirs.extend(found);
    }
    Ok(dirs)
}

/// Checks that `shards` are the complete shards of one audit, and sorts them by index.
fn check_shards(shards: &mut [Shard], bundle_given: bool) -> Result<()> {
    let Some(first) = shards.first() else {
        return Err(Error::Param("no shard folders to merge".into()));
    };
    let (p0, d0, b0) = (
        first.rec.params.clone(),
        first.dir.clone(),
        first.rec.bundle.clone(),
    );
    let count = first.rec.shard.count;
    for s in shards.iter() {
        if s.rec.params != p0 || s.rec.shard.count != count {
            return Err(Error::Param(format!(
                "{} and {} are shards of different audits (other parameters or shard counts: \
                 {} and {}); merge the shards of one audit",
                d0.display(),
                s.dir.display(),
                first.rec.shard,
                s.rec.shard
            )));
        }
        if s.rec.bundle != b0 && !bundle_given {
            return Err(Error::Param(format!(
                "{} and {} found the bundle at different paths ({} and {}); pass --bundle",
                d0.display(),
                s.dir.display(),
                b0.display(),
                s.rec.bundle.display()
            )));
        }
    }
    shards.sort_by_key(|s| s.rec.shard.index);
    for pair in shards.windows(2) {
        if pair[0].rec.shard == pair[1].rec.shard {
            return Err(Error::Param(format!(
                "shard {} is given twice ({} and {})",
                pair[0].rec.shard,
                pair[0].dir.display(),
                pair[1].dir.display()
            )));
        }
    }
    let have: Vec<usize> = shards.iter().map(|s| s.rec.shard.index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| !have.contains(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Param(format!(
            "shard{} {} of this audit {} missing: run `sslmem audit --shard I/{count}` with the \
             same parameters for each, then merge all {count}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "are" } else { "is" },
        )));
    }
    for s in shards.iter() {
        let r = s.rec.shard.range(s.rec.params.items);
        if (s.rec.start, s.rec.end) != (r.start, r.end) {
            return Err(Error::Param(format!(
                "{}: shard {} records the slice {}..{}, not {}..{} of {} examples",
                s.dir.join(RECORD_FILE).display(),
                s.rec.shard,
                s.rec.start,
                s.rec.end,
                r.start,
                r.end,
                s.rec.params.items
            )));
        }
        if s.records.len() != s.rec.len() {
            return Err(Error::Param(format!(
                "shard {} in {} is unfinished ({} of {} examples journaled): rerun its \
                 command to finish it",
                s.rec.shard,
                s.dir.display(),
                s.records.len(),
                s.rec.len()
            )));
        }
    }
    Ok(())
}

/// Merges the shards into `m.out`; `Ok(true)` when every example was scored. An `out` that
/// already holds this audit's files is left as it is.
pub fn merge(m: &MergeOptions, rt: &RuntimeOptions) -> Result<bool> {
    if m.batch_size == 0 {
        return Err(Error::Param("--batch-size must be at least 1".into()));
    }
    let mut shards = Vec::new();
    for dir in shard_dirs(&m.shards)? {
        let (rec, records) = shard::read(&dir)?;
        shards.push(Shard { dir, rec, records });
    }
    check_shards(&mut shards, m.bundle.is_some())?;
    if m.out.join(RECORD_FILE).exists() {
        return Err(Error::Param(format!(
            "{} is a shard folder; merge into another --out",
            m.out.display()
        )));
    }
    let first = &shards[0].rec;
    let params = first.params.clone();
    if let Some(all_scored) = finished(&m.out, &params)? {
        tracing::info!("{} is already complete", m.out.display());
        return Ok(all_scored);
    }
    let bundle_dir = m.bundle.clone().unwrap_or_else(|| first.bundle.clone());
    let queue = QueueOptions {
        max_batch_views: m.batch_size,
        ..Default::default()
    };
    let engine = Engine::start(Bundle::load(&bundle_dir, rt)?, queue, Arc::new(Quiet))?;
    let bundle = engine.bundle();
    if encoder_hashes(bundle) != params.encoders {
        return Err(Error::Param(format!(
            "the shards scored other encoders than those of {} (sha256 differ); pass the \
             bundle they were scored with (--bundle)",
            bundle_dir.display()
        )));
    }
    let mut work = work_list(
        bundle,
        params.dataset.as_deref(),
        &params.sets,
        &params.inputs,
        &params.sources,
        params.limit,
    )?;
    if let Some(r) = &params.reference {
        super::calibration::add_reference(&mut work, r, params.limit)?;
    }
    if work.items.len() != params.items || work.dataset != params.dataset {
        return Err(Error::Param(format!(
            "the work list of {} is not the shards' ({} examples of {}, the shards have {} of \
             {}); were the dataset or the inputs changed?",
            bundle_dir.display(),
            work.items.len(),
            work.dataset.as_deref().unwrap_or("inputs"),
            params.items,
            params.dataset.as_deref().unwrap_or("inputs")
        )));
    }
    for s in &shards {
        let items = &work.items[s.rec.start..s.rec.end];
        if let Some((r, it)) = s
            .records
            .iter()
            .zip(items)
            .find(|(r, it)| (r.set, r.index) != (it.set, it.index))
        {
            return Err(Error::Param(format!(
                "{}: shard {} journaled {} #{} where the work list has {} #{}; was the bundle's \
                 split or the dataset changed?",
                s.dir.display(),
                s.rec.shard,
                r.set,
                r.index,
                it.set,
                it.index
            )));
        }
    }
    let records: Vec<Record> = shards.into_iter().flat_map(|s| s.records).collect();
    let failed = records.iter().filter(|r| r.error.is_some()).count();
    finish(
        &m.out,
        &engine,
        &params,
        &work,
        &records,
        m.date,
        &m.grid_classes,
    )?;
    tracing::info!(
        scored = records.len() - failed,
        failed,
        "merged audit written to {}",
        m.out.display()
    );
    Ok(failed == 0)
}
