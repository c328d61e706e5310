//! The `sslmem` command line: `score`, `align`, `inspect` and `bundle create|random`.
//! Every flag can also be set from an environment variable (shown in `--help`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;
use crate::bundle::{
    self, Bundle, CreateOptions, InputSpec, Manifest, ModelFile, RepresentationSpec,
};
use crate::data::inputs::{resolve, Input};
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::onnx::{self, ExportOptions};
use crate::pixels::DecodeLimits;
use crate::runtime::{self, Device, RuntimeOptions};
use crate::score::{
    align_pairs, set_normalize, Distance, ImageScore, RepNorm, ScoreOptions, Scorer, SetNorm,
    ViewMode,
};

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
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Intra-op threads per encoder session (0: ONNX Runtime's choice).
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
    Score(ScoreArgs),
    /// Distances of given image pairs under f and g, with no augmentation.
    Align(AlignArgs),
    /// Show a bundle's manifest, its encoders' inputs and outputs, and the runtime in use.
    Inspect(InspectArgs),
    /// Make model bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Serve scores over HTTP (REST API, Prometheus metrics, OpenAPI).
    Serve(crate::service::ServeArgs),
    /// Audit a dataset: score every example of the bundle's split sets (resumable), with
    /// statistics and the expected-sign checks (scores.jsonl, scores.csv, summary.json).
    Audit(Box<crate::audit::AuditArgs>),
    /// Probe a running service: exits 0 when GET PATH answers 200 (container health checks;
    /// needs no curl in the image).
    Health(HealthArgs),
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Host to probe (the service's --host 0.0.0.0 is probed on 127.0.0.1).
    #[arg(long, env = "SSLMEM_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "SSLMEM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// /healthz (alive) or /readyz (ready for traffic).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// How each image is scored: shared by `score` and `audit`.
#[derive(Args, Debug, Clone)]
pub struct EstimatorArgs {
    /// View pairs per image (K).
    #[arg(long, env = "SSLMEM_PAIRS", default_value_t = 10)]
    pub pairs: usize,
    /// Seed of the augmentations; views depend only on (seed, image, view index).
    #[arg(long, env = "SSLMEM_SEED", default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "SSLMEM_MODE", value_enum, default_value = "aug-vs-aug")]
    pub mode: ViewMode,
    #[arg(long, env = "SSLMEM_DISTANCE", value_enum, default_value = "l2")]
    pub distance: Distance,
    /// Representation normalisation before the distance.
    #[arg(long, env = "SSLMEM_NORMALIZE", value_enum, default_value = "l2")]
    pub normalize: RepNorm,
    /// Views per inference batch.
    #[arg(long, env = "SSLMEM_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Largest image accepted, in pixels (width * height).
    #[arg(long, env = "SSLMEM_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
}

impl EstimatorArgs {
    pub fn options(&self) -> ScoreOptions {
        ScoreOptions {
            pairs: self.pairs,
            seed: self.seed,
            mode: self.mode,
            distance: self.distance,
            normalize: self.normalize,
            batch_size: self.batch_size,
        }
    }

    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_pixels: self.max_pixels,
        }
    }
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Model bundle folder (holds sslmem.json).
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub est: EstimatorArgs,
    /// Add set-level normalised scores (`score_range`, `score_max`); repeatable.
    #[arg(long, env = "SSLMEM_SET_NORMALIZE", value_enum, value_delimiter = ',')]
    pub set_normalize: Vec<SetNorm>,
    #[arg(long, env = "SSLMEM_FORMAT", value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Output file (written atomically); standard output if absent.
    #[arg(long, env = "SSLMEM_OUT")]
    pub out: Option<PathBuf>,
    /// Image files, folders, datasets (fashion-mnist:train, fashion-mnist:test, mnist) or IDX
    /// files; datasets take a range: `fashion-mnist:test[0:500]`.
    #[arg(required = true)]
    pub inputs: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
    #[arg(long, env = "SSLMEM_DISTANCE", value_enum, default_value = "l2")]
    pub distance: Distance,
    #[arg(long, env = "SSLMEM_NORMALIZE", value_enum, default_value = "l2")]
    pub normalize: RepNorm,
    /// Pairs of images at the model's input size: A1 B1 [A2 B2 ...].
    #[arg(required = true, num_args = 2..)]
    pub images: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(long, env = "SSLMEM_BUNDLE")]
    pub bundle: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Make a bundle from ONNX encoders exported elsewhere (e.g. PyTorch).
    Create(CreateArgs),
    /// Write a bundle of seeded random encoders (for demos and tests; scores are noise).
    Random(RandomArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Folder to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Encoder trained WITH the audited data; repeat for several.
    #[arg(long = "f", required = true)]
    pub f: Vec<PathBuf>,
    /// Encoder trained WITHOUT the audited data; repeat for several.
    #[arg(long = "g", required = true)]
    pub g: Vec<PathBuf>,
    /// Per-channel mean of the input normalisation.
    #[arg(long, value_delimiter = ',', required = true)]
    pub mean: Vec<f32>,
    /// Per-channel std of the input normalisation.
    #[arg(long, value_delimiter = ',', required = true)]
    pub std: Vec<f32>,
    /// Training augmentations: a preset (simclr, authors, none).
    #[arg(long, default_value = "simclr", conflicts_with = "augment_json")]
    pub augment: String,
    /// Training augmentations as a JSON file (see docs/bundle.md).
    #[arg(long)]
    pub augment_json: Option<PathBuf>,
    /// The output that is the representation (needed if the model has several).
    #[arg(long)]
    pub output: Option<String>,
    /// Input height, for models with a dynamic size.
    #[arg(long, requires = "width")]
    pub height: Option<usize>,
    #[arg(long, requires = "height")]
    pub width: Option<usize>,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct RandomArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "resnet-mini-28x28x1")]
    pub arch: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Encoders on each side.
    #[arg(long, default_value_t = 1)]
    pub models: usize,
    /// Export per-layer outputs (layer1...).
    #[arg(long)]
    pub layers: bool,
    /// Make every g identical to its f (every score is then exactly 0).
    #[arg(long)]
    pub same: bool,
    #[arg(long, default_value = "simclr")]
    pub augment: String,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a terminal.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// Runs the command and maps errors to exit codes: 0 success, 1 some inputs failed,
/// 2 the command could not run.
pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.runtime.log_format);
    let rt = cli.runtime.options();
    let result = match cli.command {
        Command::Score(a) => score(&a, &rt),
        Command::Align(a) => align(&a, &rt).map(|()| true),
        Command::Inspect(a) => inspect(&a, &rt).map(|()| true),
        Command::Bundle(BundleCommand::Create(a)) => create(&a, &rt).map(|()| true),
        Command::Bundle(BundleCommand::Random(a)) => random(&a).map(|()| true),
        Command::Serve(a) => crate::service::run(&a, &rt).map(|()| true),
        Command::Health(a) => health(&a),
        Command::Audit(a) => crate::audit::run(&a, &rt),
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

/// `GET path` over plain HTTP/1.1; `Ok(true)` on status 200.
fn health(a: &HealthArgs) -> Result<bool> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(Error::Param(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    let host = match a.host.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    };
    let addr = (host, a.port)
        .to_socket_addrs()
        .map_err(|e| Error::Param(format!("{host}:{}: {e}", a.port)))?
        .next()
        .ok_or_else(|| Error::Param(format!("{host}: no address")))?;
    let fail = |e: std::io::Error| Error::Runtime(format!("{addr}{}: {e}", a.path));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        a.path
    )
    .map_err(fail)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]).map_err(fail)? {
            0 => break,
            k => n += k,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("none");
    if status == "200" {
        Ok(true)
    } else {
        eprintln!("{addr}{}: status {status}", a.path);
        Ok(false)
    }
}

pub(crate) fn progress_bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Inputs decoded per round: bounds memory on huge datasets while keeping batches full.
const LOAD_CHUNK: usize = 2048;

/// Returns Ok(true) when every input was scored.
fn score(a: &ScoreArgs, rt: &RuntimeOptions) -> Result<bool> {
    let inputs = resolve(&a.inputs)?;
    let bundle = Bundle::load(&a.bundle, rt)?;
    let scorer = Scorer::new(&bundle, a.est.options())?;
    let limits = a.est.limits();
    let channels = bundle.manifest.input.channels;
    tracing::info!(
        inputs = inputs.len(),
        pairs = a.est.pairs,
        mode = ?a.est.mode,
        f = bundle.f.len(),
        g = bundle.g.len(),
        "scoring with {}",
        a.bundle.display()
    );
    let pb = progress_bar(inputs.len(), "scoring");
    let mut scored: Vec<(&Input, ImageScore)> = Vec::with_capacity(inputs.len());
    let mut failed = 0usize;
    for chunk in inputs.chunks(LOAD_CHUNK) {
        let loaded: Vec<_> = chunk.par_iter().map(|i| i.load(channels, limits)).collect();
        let mut ok_inputs = Vec::with_capacity(chunk.len());
        let mut images = Vec::with_capacity(chunk.len());
        for (input, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(img) => {
                    ok_inputs.push(input);
                    images.push(img);
                }
                Err(e) => {
                    failed += 1;
                    pb.suspend(|| tracing::error!(input = %input.name, "skipped: {e}"));
                    pb.inc(1);
                }
            }
        }
        let scores = scorer.score(&images, &|n| pb.inc(n as u64))?;
        scored.extend(ok_inputs.into_iter().zip(scores));
    }
    pb.finish_and_clear();

    let all: Vec<ImageScore> = scored.iter().map(|(_, s)| s.clone()).collect();
    let extra: Vec<(SetNorm, Vec<Option<f64>>)> = a
        .set_normalize
        .iter()
        .map(|&k| (k, set_normalize(&all, k)))
        .collect();
    let text = match a.format {
        Format::Jsonl => to_jsonl(&scored, &extra),
        Format::Csv => to_csv(&scored, &extra),
    };
    match &a.out {
        Some(p) => write_atomic(p, text.as_bytes())?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("<stdout>", e))?,
    }
    tracing::info!(scored = scored.len(), failed, "done");
    if failed > 0 {
        tracing::error!(
            "{failed} of {} inputs could not be scored (see above)",
            inputs.len()
        );
    }
    Ok(failed == 0)
}

fn set_norm_field(k: SetNorm) -> &'static str {
    match k {
        SetNorm::Range => "score_range",
        SetNorm::Max => "score_max",
    }
}

fn to_jsonl(scored: &[(&Input, ImageScore)], extra: &[(SetNorm, Vec<Option<f64>>)]) -> String {
    let mut out = String::new();
    for (i, (input, s)) in scored.iter().enumerate() {
        let mut m = Map::new();
        m.insert("input".into(), json!(input.name));
        if let Some(l) = input.label() {
            m.insert("label".into(), json!(l));
        }
        m.insert("align_f".into(), json!(s.align_f));
        m.insert("align_g".into(), json!(s.align_g));
        m.insert("score".into(), json!(s.score));
        m.insert("score_ratio".into(), json!(s.score_ratio));
        for (k, v) in extra {
            m.insert(set_norm_field(*k).into(), json!(v[i]));
        }
        m.insert("stderr".into(), json!(s.stderr));
        m.insert("ci95".into(), json!(s.ci95));
        m.insert("pairs".into(), json!(s.pairs));
        out.push_str(&Value::Object(m).to_string());
        out.push('\n');
    }
    out
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn to_csv(scored: &[(&Input, ImageScore)], extra: &[(SetNorm, Vec<Option<f64>>)]) -> String {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::from("input,label,align_f,align_g,score,score_ratio");
    for (k, _) in extra {
        out.push(',');
        out.push_str(set_norm_field(*k));
    }
    out.push_str(",stderr,ci95_low,ci95_high,pairs\n");
    for (i, (input, s)) in scored.iter().enumerate() {
        let mut row = vec![
            csv_field(&input.name),
            input.label().map(|l| l.to_string()).unwrap_or_default(),
            s.align_f.to_string(),
            s.align_g.to_string(),
            s.score.to_string(),
            s.score_ratio.to_string(),
        ];
        row.extend(extra.iter().map(|(_, v)| opt(v[i])));
        row.push(opt(s.stderr));
        row.push(opt(s.ci95.map(|c| c[0])));
        row.push(opt(s.ci95.map(|c| c[1])));
        row.push(s.pairs.to_string());
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn align(a: &AlignArgs, rt: &RuntimeOptions) -> Result<()> {
    if !a.images.len().is_multiple_of(2) {
        return Err(Error::Param(format!(
            "align takes pairs of images; got {} paths",
            a.images.len()
        )));
    }
    let bundle = Bundle::load(&a.bundle, rt)?;
    let c = bundle.manifest.input.channels;
    let load = |p: &PathBuf| {
        Input::file(p.clone())
            .load(c, DecodeLimits::default())
            .map_err(|e| Error::Input {
                input: p.display().to_string(),
                source: e,
            })
    };
    let pairs = a
        .images
        .chunks_exact(2)
        .map(|p| Ok((load(&p[0])?, load(&p[1])?)))
        .collect::<Result<Vec<_>>>()?;
    let res = align_pairs(&bundle, &pairs, a.normalize, a.distance)?;
    let mut stdout = std::io::stdout().lock();
    for (p, r) in a.images.chunks_exact(2).zip(res) {
        let line = json!({"a": p[0].display().to_string(), "b": p[1].display().to_string(), "d_f": r.d_f, "d_g": r.d_g});
        writeln!(stdout, "{line}").map_err(|e| Error::io("<stdout>", e))?;
    }
    Ok(())
}

fn inspect(a: &InspectArgs, rt: &RuntimeOptions) -> Result<()> {
    let bundle = Bundle::load(&a.bundle, rt)?;
    let encoders: Vec<Value> = bundle
        .f
        .iter()
        .map(|e| ("f", e))
        .chain(bundle.g.iter().map(|e| ("g", e)))
        .map(|(side, e)| {
            json!({"side": side, "path": e.path.display().to_string(), "input": e.input, "outputs": e.outputs, "provider": e.provider})
        })
        .collect();
    let report = json!({
        "bundle": bundle.dir.display().to_string(),
        "manifest": bundle.manifest,
        "augment_in_use": bundle.manifest.augment(),
        "encoders": encoders,
        "runtime": {
            "onnxruntime": runtime::ORT_VERSION,
            "library": runtime::loaded_library().map(|p| p.display().to_string()),
            "device": rt.device.to_string(),
            "provider": bundle.f[0].provider,
            "threads": rt.threads,
        },
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Param(e.to_string()))?;
    println!("{text}");
    Ok(())
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

/// Normalisation constants of the datasets the presets are made for.
fn default_normalization(channels: usize) -> (Vec<f32>, Vec<f32>) {
    if channels == 1 {
        (vec![0.2860], vec![0.3530]) // Fashion-MNIST
    } else {
        (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]) // CIFAR-10
    }
}

/// Writes a bundle of random encoders built from an architecture description.
pub fn write_random_bundle(
    out: &Path,
    arch: &ArchSpec,
    seed: u64,
    models: usize,
    layers: bool,
    same: bool,
    augment: AugmentSpec,
) -> Result<Manifest> {
    if models == 0 {
        return Err(Error::Param("--models must be at least 1".into()));
    }
    let opts = ExportOptions {
        layer_outputs: layers,
    };
    let side = |name: &str, base: u64| -> Result<Vec<ModelFile>> {
        (0..models)
            .map(|i| {
                let file = format!("{name}{i}.onnx");
                let path = out.join(&file);
                onnx::write(
                    &path,
                    arch,
                    &arch.random_weights(base.wrapping_add(i as u64)),
                    opts,
                )?;
                Ok(ModelFile {
                    sha256: sha256_file(&path)?,
                    path: file,
                })
            })
            .collect()
    };
    let f = side("f", seed)?;
    let g = if same {
        f.clone()
    } else {
        side("g", seed.wrapping_add(1_000_003))?
    };
    let (mean, std) = default_normalization(arch.in_channels);
    let manifest = Manifest {
        format: bundle::FORMAT.into(),
        name: Some(format!(
            "random {} (seed {seed}); not trained, scores are noise",
            arch.name
        )),
        input: InputSpec {
            name: onnx::INPUT.into(),
            channels: arch.in_channels,
            height: arch.height,
            width: arch.width,
            mean,
            std,
        },
        representation: RepresentationSpec {
            output: onnx::REPRESENTATION.into(),
            layers: if layers {
                arch.layer_names()
            } else {
                Vec::new()
            },
        },
        augment: Some(augment),
        f,
        g,
        architecture: serde_json::to_value(arch).ok(),
        split: None,
        training: None,
    };
    bundle::write_manifest(out, &manifest)?;
    Ok(manifest)
}

fn random(a: &RandomArgs) -> Result<()> {
    let arch = ArchSpec::preset(&a.arch)?;
    let augment = AugmentSpec::preset(&a.augment)?;
    write_random_bundle(&a.out, &arch, a.seed, a.models, a.layers, a.same, augment)?;
    tracing::info!(
        "wrote random bundle {} ({} encoders per side)",
        a.out.display(),
        a.models
    );
    Ok(())
}
