//! `sslmem bundle create|random`: make model bundles.

use std::path::PathBuf;

use super::choice_arg::choice;
use clap::{Args, Subcommand};
use sslmem::arch::ArchSpec;
use sslmem::augment::AugmentSpec;
use sslmem::bundle::{self, CreateOptions};
use sslmem::error::{Error, Result};
use sslmem::runtime::{Layout, Pooling, RuntimeOptions};

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Make a bundle from ONNX encoders exported elsewhere (e.g. PyTorch).
    Create(CreateArgs),
    /// Write a bundle of seeded random encoders (for demos and tests; scores are noise).
    Random(RandomArgs),
    /// The SSLMem pair inside a many-model bundle (sslmem-train subsample): encoders 2J and
    /// 2J+1 trained on complementary halves of the pool, as f and g with that split.
    SplitPair(SplitPairArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Folder to create.
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_OUT")]
    pub out: PathBuf,
    /// Encoder trained WITH the audited data; repeat for several.
    #[arg(long = "f", env = "SSLMEM_BUNDLE_CREATE_F", required = true)]
    pub f: Vec<PathBuf>,
    /// Encoder trained WITHOUT the audited data; repeat for several. Leave it out for a
    /// one-model bundle (`f` only): it has no SSLMem score, and `sslmem audit --reference`
    /// gives its one-model scores (docs/science.md#one-model-scores).
    #[arg(long = "g", env = "SSLMEM_BUNDLE_CREATE_G")]
    pub g: Vec<PathBuf>,
    /// Per-channel mean of the input normalisation, comma-separated (0.485,0.456,0.406); one
    /// value serves every channel.
    #[arg(
        long,
        env = "SSLMEM_BUNDLE_CREATE_MEAN",
        value_delimiter = ',',
        required = true
    )]
    pub mean: Vec<f32>,
    /// Per-channel std of the input normalisation, comma-separated; one value serves every
    /// channel.
    #[arg(
        long,
        env = "SSLMEM_BUNDLE_CREATE_STD",
        value_delimiter = ',',
        required = true
    )]
    pub std: Vec<f32>,
    /// Training augmentations: a preset (simclr, authors, byol, none).
    #[arg(
        long,
        env = "SSLMEM_BUNDLE_CREATE_AUGMENT",
        default_value = "simclr",
        conflicts_with = "augment_json"
    )]
    pub augment: String,
    /// Training augmentations as a JSON file: a list of transforms, or the older object
    /// (docs/bundle.md#augment).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_AUGMENT_JSON")]
    pub augment_json: Option<PathBuf>,
    /// The output that is the representation (needed if the model has several).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_OUTPUT")]
    pub output: Option<String>,
    /// Input channels, for models whose channel axis is dynamic (default: one per --mean value).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_CHANNELS")]
    pub channels: Option<usize>,
    /// Input layout: nchw (channels first, PyTorch) or nhwc (channels last, TensorFlow);
    /// detected from the input shape when unambiguous.
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_LAYOUT", value_parser = choice::<Layout>())]
    pub layout: Option<Layout>,
    /// How a token output [batch, tokens, dim] becomes one representation: cls (first
    /// token), mean (over tokens) or flatten (every token, as the MAE authors' probe reads it).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_POOLING", value_parser = choice::<Pooling>())]
    pub pooling: Option<Pooling>,
    /// Outputs to record as the encoder's per-layer outputs (none unless named).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_LAYERS", value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Input height, for models with a dynamic size.
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_HEIGHT", requires = "width")]
    pub height: Option<usize>,
    /// Input width, for models with a dynamic size.
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_WIDTH", requires = "height")]
    pub width: Option<usize>,
    /// A name for the bundle (free text, shown by inspect, the service and reports).
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_NAME")]
    pub name: Option<String>,
    /// Accept an --f and a --g that are the same model (the same file, or the same SHA-256),
    /// with a warning. Without it they are refused: every score would be exactly 0, which
    /// reads as "nothing memorized". For deliberate null controls.
    #[arg(long, env = "SSLMEM_BUNDLE_CREATE_ALLOW_IDENTICAL_ENCODERS")]
    pub allow_identical_encoders: bool,
}

#[derive(Args, Debug)]
pub struct RandomArgs {
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_OUT")]
    pub out: PathBuf,
    /// The encoders' architecture: resnet-mini-28x28x1, resnet-mini-32x32x3, vit-tiny-28x28x1
    /// or vit-tiny-32x32x3.
    #[arg(
        long,
        env = "SSLMEM_BUNDLE_RANDOM_ARCH",
        default_value = "resnet-mini-28x28x1"
    )]
    pub arch: String,
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Encoders on each side.
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_MODELS", default_value_t = 1)]
    pub models: usize,
    /// Export per-layer outputs (layer1...).
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_LAYERS")]
    pub layers: bool,
    /// Make every g identical to its f (every score is then exactly 0).
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_SAME")]
    pub same: bool,
    /// Training augmentations recorded in the bundle: a preset (simclr, authors, byol, none).
    #[arg(long, env = "SSLMEM_BUNDLE_RANDOM_AUGMENT", default_value = "simclr")]
    pub augment: String,
}

/// `sslmem bundle split-pair`.
#[derive(Args, Debug)]
pub struct SplitPairArgs {
    /// The many-model bundle (written by `sslmem-train subsample`).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    /// Which split (0..M/2): f = encoder 2J, g = encoder 2J+1.
    #[arg(long, env = "SSLMEM_BUNDLE_SPLIT", default_value_t = 0)]
    pub split: usize,
    /// Test examples neither encoder saw (the extra set: the first N of the test set);
    /// default: the test subset the training recorded.
    #[arg(long, env = "SSLMEM_BUNDLE_TEST_EXAMPLES")]
    pub test_examples: Option<usize>,
    /// New folder for the pair bundle.
    #[arg(long, env = "SSLMEM_BUNDLE_SPLIT_PAIR_OUT")]
    pub out: PathBuf,
}

pub fn run(c: &BundleCommand, rt: &RuntimeOptions) -> Result<()> {
    match c {
        BundleCommand::Create(a) => create(a, rt),
        BundleCommand::Random(a) => random(a),
        BundleCommand::SplitPair(a) => {
            let m = bundle::split_pair(&a.bundle, a.split, a.test_examples, &a.out)?;
            tracing::info!(
                "wrote the pair of split {} of {} to {} ({})",
                a.split,
                a.bundle.display(),
                a.out.display(),
                m.name.unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn create(a: &CreateArgs, rt: &RuntimeOptions) -> Result<()> {
    let augment = match &a.augment_json {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Param(format!("{}: {e}", p.display())))?
        }
        None => AugmentSpec::preset(&a.augment)?,
    };
    let opts = CreateOptions {
        name: a.name.clone(),
        mean: a.mean.clone(),
        std: a.std.clone(),
        augment: Some(augment),
        output: a.output.clone(),
        size: a.height.zip(a.width),
        channels: a.channels,
        layout: a.layout,
        pooling: a.pooling,
        layers: a.layers.clone(),
        allow_identical_encoders: a.allow_identical_encoders,
    };
    let m = bundle::create(&a.out, &a.f, &a.g, &opts, rt)?;
    tracing::info!(
        f = m.f.len(),
        g = m.g.len(),
        "wrote bundle {}",
        a.out.display()
    );
    Ok(())
}

fn random(a: &RandomArgs) -> Result<()> {
    let arch = ArchSpec::preset(&a.arch)?;
    let augment = AugmentSpec::preset(&a.augment)?;
    if a.models == 0 {
        return Err(Error::Param("--models must be at least 1".into()));
    }
    bundle::write_random(&a.out, &arch, a.seed, a.models, a.layers, a.same, augment)?;
    tracing::info!(
        "wrote random bundle {} ({} encoder(s) per side)",
        a.out.display(),
        a.models
    );
    Ok(())
}
