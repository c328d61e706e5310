//! `sslmem audit` (a dataset audit, whole or one shard of it) and `sslmem audit-merge` (the
//! shards' folders into the files of the whole audit): their flags.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use sslmem::audit::merge::MergeOptions;
use sslmem::audit::shard::ShardSpec;
use sslmem::audit::{AuditOptions, SplitSet};
use sslmem::error::{Error, Result};

use super::score::EstimatorArgs;

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Model bundle folder (holds sslmem.json; its `split` says which example is in which set).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    /// Output folder: scores.jsonl, scores.csv, summary.json, figures/, report.html (with
    /// --shard: the shard's folder). Rerun the same command to resume.
    #[arg(long, env = "SSLMEM_AUDIT_OUT")]
    pub out: PathBuf,
    /// Dataset the split indexes (default: the one the bundle was trained on).
    #[arg(long, env = "SSLMEM_DATASET")]
    pub dataset: Option<String>,
    /// Split sets to score (default: every set the bundle has, canaries included).
    #[arg(
        long,
        env = "SSLMEM_AUDIT_SETS",
        value_enum,
        value_delimiter = ',',
        conflicts_with = "all"
    )]
    pub sets: Vec<SplitSet>,
    /// Every set the bundle has (the default).
    #[arg(long, env = "SSLMEM_AUDIT_ALL")]
    pub all: bool,
    /// Score only the first N examples of each set (in index order): quick audits.
    #[arg(long, env = "SSLMEM_AUDIT_LIMIT")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub est: EstimatorArgs,
    /// Images written to the journal at a time (a killed run loses at most one chunk).
    #[arg(long, env = "SSLMEM_AUDIT_CHUNK", default_value_t = 1024, hide = true)]
    pub chunk: usize,
    /// Score only shard I of N (0-based) of the work list: a contiguous slice, journaled to
    /// --out as a shard folder; `sslmem audit-merge` turns the N folders into the audit's files.
    #[arg(long, env = "SSLMEM_AUDIT_SHARD", value_name = "I/N")]
    pub shard: Option<ShardSpec>,
    /// Score these inputs (files, folders, datasets) as one set `inputs` instead of the split.
    pub inputs: Vec<String>,
}

/// `sslmem audit-merge`: the flags of merging an audit's shards.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard folders (the --out of each `sslmem audit --shard I/N`), in any order, or a
    /// folder whose subfolders are the shard folders.
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// Output folder: the files an unsharded audit writes (scores.jsonl, scores.csv,
    /// summary.json, figures/, report.html).
    #[arg(long, env = "SSLMEM_AUDIT_OUT")]
    pub out: PathBuf,
    /// Model bundle folder, when it is not where the shards found it (the summary and the
    /// report then name this path).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Views per inference batch (typicality runs g once over every example).
    #[arg(long, env = "SSLMEM_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
}

impl MergeArgs {
    pub fn options(&self) -> Result<MergeOptions> {
        Ok(MergeOptions {
            shards: self.shards.clone(),
            out: self.out.clone(),
            bundle: self.bundle.clone(),
            batch_size: self.batch_size,
            date: report_date()?,
        })
    }
}

/// The date the report states: `SOURCE_DATE_EPOCH` (seconds since 1970, the reproducible-builds
/// convention) when set, so that two runs can write the same bytes; else now.
fn report_date() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            Error::Param(format!(
                "SOURCE_DATE_EPOCH is '{v}'; it must be whole seconds since 1970-01-01 UTC"
            ))
        }),
        Err(_) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
    }
}

impl AuditArgs {
    pub fn options(&self) -> Result<AuditOptions> {
        if self.chunk == 0 {
            return Err(sslmem::error::Error::Param(
                "--chunk must be at least 1".into(),
            ));
        }
        Ok(AuditOptions {
            bundle: self.bundle.clone(),
            out: self.out.clone(),
            dataset: self.dataset.clone(),
            sets: self.sets.clone(),
            all: self.all,
            limit: self.limit,
            est: self.est.options()?,
            chunk: self.chunk,
            inputs: self.inputs.clone(),
            shard: self.shard,
            date: report_date()?,
        })
    }
}
