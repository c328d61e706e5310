//! `sslmem audit`: the flags of a dataset audit.

use std::path::PathBuf;

use clap::Args;
use sslmem::audit::{AuditOptions, SplitSet};
use sslmem::error::Result;

use super::score::EstimatorArgs;

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Model bundle folder (holds sslmem.json; its `split` says which example is in which set).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    /// Output folder: scores.jsonl, scores.csv, summary.json. Rerun the same command to resume.
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
    /// Score these inputs (files, folders, datasets) as one set `inputs` instead of the split.
    pub inputs: Vec<String>,
}

impl AuditArgs {
    pub fn options(&self) -> Result<AuditOptions> {
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
        })
    }
}
