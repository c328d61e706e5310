//! The `sslmem` command line: one file per subcommand (its clap types and the call into the
//! library), global runtime flags here. Every flag can also be set from an environment
//! variable (shown in `--help`). Exit codes: 0 success, 1 some inputs failed, 2 the command
//! could not run.

mod align;
mod audit;
mod bundle;
mod choice_arg;
mod compare;
mod health;
mod inspect;
mod score;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use choice_arg::choice;
use clap::{Args, Parser, Subcommand};
use sslmem::output::{init_logging, LogFormat};
use sslmem::runtime::{Device, RuntimeOptions};

#[derive(Parser, Debug)]
#[command(
    name = "sslmem",
    version,
    about = "Measure how much a self-supervised encoder memorized each image (SSLMem)"
)]
pub struct Cli {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Path of libonnxruntime.so (default: the one `scripts/setup.sh` installed).
    #[arg(long, global = true, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Where inference runs: auto (CUDA if it works, else CPU), cpu, cuda or cuda:N.
    #[arg(long, global = true, env = "SSLMEM_DEVICE", default_value = "auto")]
    pub device: Device,
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(
        long,
        global = true,
        env = "SSLMEM_LOG_FORMAT",
        value_parser = choice::<LogFormat>(),
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Intra-op threads per encoder session. 0: when the bundle has no more encoders than the
    /// machine has cores, the encoders run side by side with an equal share of the cores
    /// each; otherwise one after the other with ONNX Runtime's choice.
    #[arg(long, global = true, env = "SSLMEM_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Whether ONNX Runtime's idle threads spin-wait (`true` may help when inference has the
    /// cores to itself; decoding and augmentation share them, hence `false`).
    #[arg(long, global = true, env = "SSLMEM_SPIN", action = clap::ArgAction::Set, default_value_t = false)]
    pub spin: bool,
}

impl RuntimeArgs {
    fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            library: self.ort_lib.clone(),
            device: self.device,
            threads: self.threads,
            spin: self.spin,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score images: SSLMem per image with its standard error and 95% interval.
    Score(score::ScoreArgs),
    /// Distances of given image pairs under f and g, with no augmentation.
    Align(align::AlignArgs),
    /// Show a bundle's manifest, its encoders' inputs and outputs, and the runtime in use.
    Inspect(inspect::InspectArgs),
    /// Make model bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Serve scores over HTTP (REST API, Prometheus metrics, OpenAPI).
    Serve(Box<serve::ServeArgs>),
    /// Audit a dataset: score every example of the bundle's split sets (resumable), with
    /// statistics and the expected-sign checks (scores.jsonl, scores.csv, summary.json,
    /// report.html); or, with --shard I/N, one slice of it for audit-merge.
    Audit(Box<audit::AuditArgs>),
    /// Merge the folders of `sslmem audit --shard I/N` (all N shards of one audit) into the
    /// files the unsharded audit writes, byte for byte.
    AuditMerge(audit::MergeArgs),
    /// Do two audits find the same images memorized? Spearman's correlation of their scores
    /// on the images both scored, and the overlap of their top fractions against chance.
    Compare(compare::CompareArgs),
    /// Probe a running service: exits 0 when GET PATH answers 200 (container health checks;
    /// needs no curl in the image).
    Health(health::HealthArgs),
}

/// Runs the command and maps its result to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.runtime.log_format);
    let rt = cli.runtime.options();
    let result = match cli.command {
        Command::Score(a) => score::run(&a, &rt),
        Command::Align(a) => align::run(&a, &rt).map(|()| true),
        Command::Inspect(a) => inspect::run(&a, &rt).map(|()| true),
        Command::Bundle(c) => bundle::run(&c, &rt).map(|()| true),
        Command::Serve(a) => a
            .options()
            .and_then(|o| sslmem::service::run(&o, &rt))
            .map(|()| true),
        Command::Health(a) => health::run(&a),
        Command::Compare(a) => compare::run(&a).map(|()| true),
        Command::Audit(a) => a.options().and_then(|o| {
            let all_scored = sslmem::audit::run(&o, &rt)?;
            // A shard's folder holds a journal, not an audit: the merge prints the summary.
            if o.shard.is_none() {
                audit::print_summary(&o.out)?;
            }
            Ok(all_scored)
        }),
        Command::AuditMerge(a) => a.options().and_then(|o| {
            let all_scored = sslmem::audit::merge::merge(&o, &rt)?;
            audit::print_summary(&o.out)?;
            Ok(all_scored)
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
