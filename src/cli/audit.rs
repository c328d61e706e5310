//! `sslmem audit` (a dataset audit, whole or one shard of it) and `sslmem audit-merge` (the
//! shards' folders into the files of the whole audit): their flags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::choice_arg::choice;
use clap::Args;
use sslmem::audit::merge::MergeOptions;
use sslmem::audit::shard::ShardSpec;
use sslmem::audit::{AuditOptions, ReferenceSpec, SplitSet};
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
        value_parser = choice::<SplitSet>(),
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
    /// Images `f` was trained on and `g` was not (the `candidate` set): files, folders,
    /// datasets with a range (`fashion-mnist:train[0:500]`) or `@FILE` lists, one or more.
    /// Instead of the bundle's split; with --non-members, the checks and the membership ROC.
    #[arg(
        long,
        env = "SSLMEM_AUDIT_MEMBERS",
        num_args = 1..,
        value_name = "INPUT",
        conflicts_with_all = ["sets", "all", "dataset", "inputs"]
    )]
    pub members: Vec<String>,
    /// Images neither encoder saw, from the same distribution as the members (the `extra`
    /// set): the reference that says whether the members' scores mean anything.
    #[arg(long, env = "SSLMEM_AUDIT_NON_MEMBERS", num_args = 1.., value_name = "INPUT", requires = "members")]
    pub non_members: Vec<String>,
    /// Images both encoders were trained on (the `shared` set), if you have them.
    #[arg(long, env = "SSLMEM_AUDIT_SHARED", num_args = 1.., value_name = "INPUT", requires = "members")]
    pub shared: Vec<String>,
    /// Images only `g` was trained on (the `independent` set), if you have them.
    #[arg(long, env = "SSLMEM_AUDIT_INDEPENDENT", num_args = 1.., value_name = "INPUT", requires = "members")]
    pub independent: Vec<String>,
    /// The reference population of one-model scores (docs/science.md#one-model-scores):
    /// images from the audited images' distribution that `f` did not see, as one audited set
    /// (`set:extra`, `set:non-members`) or inputs (`fashion-mnist:test[5000:7000]`, folders,
    /// files), scored as the set `reference`. Each image then gets `align_f_percentile` and
    /// `knn_gap`, and the report compares them with SSLMem. Needed to calibrate a bundle
    /// that holds `f` only.
    #[arg(long, env = "SSLMEM_AUDIT_REFERENCE", num_args = 1.., value_name = "SET|INPUT", value_delimiter = None)]
    pub reference: Vec<String>,
    /// Classes (labels, e.g. `3,6`) the grid of most and least memorized examples shows,
    /// a row each in this order (default: every class).
    #[arg(
        long,
        env = "SSLMEM_AUDIT_GRID_CLASSES",
        value_delimiter = ',',
        value_name = "LABEL"
    )]
    pub grid_classes: Vec<u8>,
    /// Reference neighbours (in `f`'s representation) of `knn_gap`.
    #[arg(long, env = "SSLMEM_AUDIT_KNN", default_value_t = sslmem::score::calibrate::DEFAULT_KNN as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub knn: u64,
    /// Score these inputs (files, folders, datasets, `@FILE` lists) as one set `inputs`
    /// instead of the split. Without members and non-members nothing tells whether a score
    /// means memorization: prefer --members and --non-members.
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
    /// As `sslmem audit --grid-classes`.
    #[arg(
        long,
        env = "SSLMEM_AUDIT_GRID_CLASSES",
        value_delimiter = ',',
        value_name = "LABEL"
    )]
    pub grid_classes: Vec<u8>,
}

impl MergeArgs {
    pub fn options(&self) -> Result<MergeOptions> {
        Ok(MergeOptions {
            shards: self.shards.clone(),
            out: self.out.clone(),
            bundle: self.bundle.clone(),
            batch_size: self.batch_size,
            date: report_date()?,
            grid_classes: self.grid_classes.clone(),
        })
    }
}

/// Prints the summary of the finished audit in `out` to stdout (logs go to stderr).
pub fn print_summary(out: &std::path::Path) -> Result<()> {
    use std::io::Write as _;
    let text = sslmem::audit::text::read(out)?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`sslmem audit ... | head`) is not a failed audit.
    let _ = stdout
        .write_all(b"\n")
        .and_then(|()| stdout.write_all(text.as_bytes()));
    Ok(())
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
    /// The sets named by --members, --non-members, --shared and --independent.
    fn sources(&self) -> BTreeMap<SplitSet, Vec<String>> {
        [
            (SplitSet::Candidate, &self.members),
            (SplitSet::Shared, &self.shared),
            (SplitSet::Independent, &self.independent),
            (SplitSet::Extra, &self.non_members),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(set, v)| (set, v.clone()))
        .collect()
    }

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
            sources: self.sources(),
            reference: if self.reference.is_empty() {
                None
            } else {
                Some(ReferenceSpec::parse(&self.reference)?)
            },
            knn: usize::try_from(self.knn).unwrap_or(usize::MAX),
            shard: self.shard,
            date: report_date()?,
            grid_classes: self.grid_classes.clone(),
        })
    }
}
