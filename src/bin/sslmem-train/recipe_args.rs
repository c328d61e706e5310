//! The flags `pair` and `subsample` share (`#[command(flatten)]`): the dataset, the recipe
//! ([`TrainConfig`]: method, architecture, optimiser, augmentations, epochs, seed...), and how
//! a run is monitored, checkpointed and resumed. Each reads `SSLMEM_TRAIN_<FLAG>` too.

use clap::Args;

use sslmem::arch::ArchSpec;
use sslmem::augment::AugmentSpec;
use sslmem::error::{Error, Result};
use sslmem::train::monitor::MonitorSpec;
use sslmem::train::optim::{OptimConfig, OptimKind};
use sslmem::train::trainer::TrainConfig;

use crate::method_args::MethodArgs;

#[derive(Args, Debug)]
pub struct RecipeArgs {
    #[arg(long, env = "SSLMEM_TRAIN_DATASET", default_value = "fashion-mnist")]
    pub dataset: String,
    /// `--method` and every method's hyperparameters (from the library's registry).
    #[command(flatten)]
    pub method: MethodArgs,
    /// The encoder: resnet-mini-28x28x1, resnet-mini-32x32x3 (small ResNets), vit-tiny-28x28x1
    /// or vit-tiny-32x32x3 (Vision Transformers; docs/train.md#architectures).
    #[arg(long, env = "SSLMEM_TRAIN_ARCH", default_value = "resnet-mini-28x28x1")]
    pub arch: String,
    /// Stride of the architecture's stem convolution (2 quarters the compute of every later
    /// layer; the parameters are the same).
    #[arg(long, env = "SSLMEM_TRAIN_STEM_STRIDE")]
    pub stem_stride: Option<usize>,
    /// Batch norm after each hidden layer of the projector, and of the predictor of BYOL and
    /// SimSiam (as their papers: both collapse without it). Exported folded into the linear
    /// layers.
    #[arg(long, env = "SSLMEM_TRAIN_PROJECTOR_BN")]
    pub projector_bn: bool,
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
    /// Use only the first N training examples (quick runs).
    #[arg(long, env = "SSLMEM_TRAIN_SUBSET")]
    pub subset: Option<usize>,
    /// Use only the first N test examples.
    #[arg(long, env = "SSLMEM_TRAIN_TEST_SUBSET")]
    pub test_subset: Option<usize>,
    /// Continue a killed run from its checkpoints.
    #[arg(long, env = "SSLMEM_TRAIN_RESUME")]
    pub resume: bool,
    /// Measure seen-versus-unseen alignment every N epochs (0: never), logged to the
    /// training log and the progress line.
    #[arg(long, env = "SSLMEM_TRAIN_MONITOR_EVERY", default_value_t = 5)]
    pub monitor_every: usize,
    /// Images per monitored sample (seen and unseen each).
    #[arg(long, env = "SSLMEM_TRAIN_MONITOR_SAMPLE", default_value_t = 256)]
    pub monitor_sample: usize,
    /// The output a bundle scores: representation (a ResNet's backbone after global average
    /// pooling, a ViT's class token, as the papers), projection (the projector head, what the
    /// SSL loss sees) or, for a ViT, tokens (every token after the final norm, flattened: how
    /// the SSLMem authors' code scores an MAE encoder).
    #[arg(long, env = "SSLMEM_TRAIN_SCORE_OUTPUT", default_value = "representation", value_parser = ["representation", "projection", "tokens"])]
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

impl RecipeArgs {
    /// The recipe the flags give; its normalisation is empty unless `--mean`/`--std` gave
    /// one (the dataset's is filled in once it is loaded).
    ///
    /// Errors: an unknown architecture or augmentation preset, an invalid stem stride or crop
    /// scale, `--mean` and `--std` of different lengths, a method hyperparameter out of range.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut arch = ArchSpec::preset(&self.arch)?;
        let method = self.method.config()?;
        if method.name() == "mae" && self.score_output == sslmem::onnx::PROJECTION {
            return Err(Error::Param(
                "--score-output projection: MAE does not train the projector; score tokens or \
                 representation"
                    .into(),
            ));
        }
        if self.score_output == sslmem::onnx::TOKENS && arch.vit().is_none() {
            return Err(Error::Param(format!(
                "--score-output tokens: {} has no tokens (a ViT has)",
                arch.name
            )));
        }
        if let Some(s) = self.stem_stride {
            let name = arch.name.clone();
            let r = arch.resnet_mut().ok_or_else(|| {
                Error::Param(format!("--stem-stride: {name} has no stem (a ResNet has)"))
            })?;
            if s != r.stem.stride {
                r.stem.stride = s;
                arch.name = format!("{name}-stem-stride-{s}");
                arch.validate()?;
            }
        }
        if self.projector_bn {
            arch.projector_bn = true;
            arch.name = format!("{}-projector-bn", arch.name);
        }
        let mut augment = AugmentSpec::preset(&self.augment)?;
        if let Some(min) = self.crop_scale_min {
            for crop in augment.crops_mut() {
                crop.scale[0] = min;
            }
        }
        augment.validate()?;
        if self.mean.len() != self.std.len() {
            return Err(Error::Param(format!(
                "--mean has {} values and --std {}",
                self.mean.len(),
                self.std.len()
            )));
        }
        Ok(TrainConfig {
            arch,
            method,
            optim: OptimConfig {
                kind: self.optimizer,
                lr: self.lr * self.batch_size as f64 / 256.0,
                weight_decay: self.weight_decay,
                momentum: self.momentum,
                betas: (0.9, 0.999),
                eps: 1e-8,
                trust: 0.001,
            },
            augment,
            // Empty: the dataset's (see data::dataset::normalisation), filled in once loaded.
            mean: self.mean.clone(),
            std: self.std.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            warmup_epochs: self.warmup_epochs,
            seed: self.seed,
            channels_last: self.channels_last,
        })
    }

    /// The memorization monitor's settings.
    pub fn monitor(&self) -> MonitorSpec {
        MonitorSpec {
            every: self.monitor_every,
            sample: self.monitor_sample,
            ..MonitorSpec::default()
        }
    }

    /// `(train, test)` example counts to keep (`usize::MAX`: all of that part); `None`: all.
    pub fn subset(&self) -> Option<(usize, usize)> {
        self.subset
            .map(|n| (n, self.test_subset.unwrap_or(usize::MAX)))
            .or(self.test_subset.map(|m| (usize::MAX, m)))
    }

    /// `--checkpoint-seconds`, checked.
    ///
    /// Errors: negative or NaN.
    pub fn checkpoint_seconds(&self) -> Result<f64> {
        if self.checkpoint_seconds.is_nan() || self.checkpoint_seconds < 0.0 {
            return Err(Error::Param(
                "--checkpoint-seconds must be 0 or more".into(),
            ));
        }
        Ok(self.checkpoint_seconds)
    }
}
