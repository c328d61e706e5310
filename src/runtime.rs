//! ONNX Runtime: finding the shared library, the process's one environment, and encoder
//! sessions that each live on their own OS thread and are fed batches over a channel
//! (`Session::run` needs `&mut self`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

use ndarray::{Array2, ArrayD};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const ORT_VERSION: &str = "1.31.1";

/// The execution provider a session really runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Cpu,
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        })
    }
}

/// Where the user asked inference to run: `auto` (CUDA when it works, else CPU),
/// `cpu`, or `cuda[:N]` (CUDA device N, or fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cpu,
    Cuda(i32),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(Device::Cuda)
                .ok_or_else(|| format!("'{s}' is not a device (auto, cpu, cuda, cuda:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How to build sessions.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Explicit path of `libonnxruntime.so` (`--ort-lib` / `ORT_DYLIB_PATH`).
    pub library: Option<PathBuf>,
    pub device: Device,
    /// Intra-op threads per session; 0 lets ONNX Runtime choose (and lets a bundle run its
    /// encoders side by side: [`crate::bundle::side_by_side_threads`]).
    pub threads: usize,
    /// Whether ONNX Runtime's idle threads spin-wait. Off by default: augmentation, decoding
    /// and HTTP share the cores with inference, and spinning threads starve them (measured in
    /// docs/benchmarks.md).
    pub spin: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            library: None,
            device: Device::Cpu,
            threads: 0,
            spin: false,
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The cache folder where `scripts/setup.sh` installs things.
pub fn sslmem_home() -> PathBuf {
    if let Some(h) = std::env::var_os("SSLMEM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("sslmem")
}

/// The library to load: the explicit path if given, else `ORT_DYLIB_PATH` (so programs
/// without an `--ort-lib` flag, like `sslmem-train`, honour it too), else the one
/// `scripts/setup.sh` installed.
pub fn library_path(opts: &RuntimeOptions) -> PathBuf {
    if let Some(p) = &opts.library {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let name = format!("libonnxruntime.so.{ORT_VERSION}");
    let cpu = sslmem_home()
        .join("onnxruntime")
        .join(ORT_VERSION)
        .join("cpu")
        .join(&name);
    let gpu = gpu_site().join("onnxruntime").join("capi").join(&name);
    match opts.device {
        Device::Cpu => cpu,
        Device::Cuda(_) => gpu,
        Device::Auto if CUDA_BUILT && gpu.is_file() => gpu,
        Device::Auto => cpu,
    }
}

/// Where `scripts/setup.sh --cuda` installs `onnxruntime-gpu` and its CUDA libraries.
pub fn gpu_site() -> PathBuf {
    sslmem_home()
        .join("onnxruntime")
        .join(ORT_VERSION)
        .join("gpu")
        .join("site")
}

static ENV: OnceLock<(Environment, PathBuf)> = OnceLock::new();

/// ONNX Runtime's PyPI builds start Microsoft's telemetry when the library loads: they write
/// a device id and an event queue under `~/.cache/Microsoft/DeveloperTools/.onnxruntime` and
/// try to upload events. A privacy audit tool must not do either, so both binaries call this
/// first thing (while the process has one thread), before any library is loaded. An explicit
/// `ORT_DISABLE_TELEMETRY` in the environment is left as the user set it.
pub fn disable_ort_telemetry() {
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
}

/// The process's single ONNX Runtime environment, created on first use.
pub fn environment(opts: &RuntimeOptions) -> Result<&'static Environment> {
    if let Some((env, _)) = ENV.get() {
        return Ok(env);
    }
    if matches!(opts.device, Device::Cuda(_)) && !CUDA_BUILT {
        return Err(Error::Runtime(format!(
            "device {} asked for, but this binary was built without the `cuda` feature; \
             rebuild with `cargo build --release --features cuda` (and run `scripts/setup.sh --cuda`)",
            opts.device
        )));
    }
    let path = library_path(opts);
    if path.is_dir() {
        return Err(Error::Runtime(format!(
            "{} is a folder; --ort-lib and ORT_DYLIB_PATH name the library file itself \
             (libonnxruntime.so.{ORT_VERSION} in that folder?)",
            path.display()
        )));
    }
    if !path.is_file() {
        let hint = if matches!(opts.device, Device::Cuda(_)) {
            " --cuda"
        } else {
            ""
        };
        return Err(Error::RuntimeMissing {
            path,
            version: ORT_VERSION,
            hint,
        });
    }
    #[cfg(feature = "cuda")]
    if !matches!(opts.device, Device::Cpu) {
        preload_cuda_libraries(&path);
    }
    let builder = ort::init_from(&path)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", path.display())))?;
    let env = builder.with_name("sslmem").build()?;
    // Another thread may have won the race; either environment works, keep the first.
    let _ = ENV.set((env, path));
    Ok(&ENV
        .get()
        .ok_or_else(|| Error::Runtime("environment vanished".into()))?
        .0)
}

/// The library the environment was loaded from, once it exists.
pub fn loaded_library() -> Option<&'static Path> {
    ENV.get().map(|(_, p)| p.as_path())
}

/// Shape of one model input or output; `None` for a dynamic dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<Option<usize>>,
    /// Element type in ONNX's lower-case spelling (`float32`, `float16`, `uint8`, `int64`, ...).
    pub element: String,
}

impl TensorInfo {
    /// The element type, when it is one an encoder's input may have.
    pub fn element_type(&self) -> Option<ElementType> {
        match self.element.as_str() {
            "float32" => Some(ElementType::Float32),
            "float16" => Some(ElementType::Float16),
            "uint8" => Some(ElementType::Uint8),
            _ => None,
        }
    }
}

/// Element types an encoder's input may have: float32 is fed as is, float16 is cast at the
/// boundary, uint8 gets the normalised values rounded to bytes (see docs/bundle.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    #[default]
    Float32,
    Float16,
    Uint8,
}

/// Memory layout of an image input: channels first (`[N, C, H, W]`, PyTorch's) or channels
/// last (`[N, H, W, C]`, TensorFlow's and tf2onnx's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

crate::choice!(Layout, "layout", {
    Nchw = "nchw" => "[batch, channels, height, width] (PyTorch's).",
    Nhwc = "nhwc" => "[batch, height, width, channels] (TensorFlow's).",
});

/// How a token output `[batch, tokens, dim]` (ViT, MAE) becomes one representation per image:
/// the first (CLS) token, the mean over tokens, or every token concatenated (`[batch,
/// tokens * dim]`, as the MAE authors' linear-probe code reads the encoder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Cls,
    Mean,
    Flatten,
}

crate::choice!(Pooling, "pooling", {
    Cls = "cls" => "The first token (a class token).",
    Mean = "mean" => "The mean over tokens.",
    Flatten = "flatten" => "All tokens, concatenated.",
});

/// How a session's input is fed and its outputs read, from the bundle's manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Boundary {
    pub layout: Layout,
    pub pooling: Option<Pooling>,
}

fn outlet_info(o: &ort::value::Outlet) -> TensorInfo {
    let shape = o
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect())
        .unwrap_or_default();
    let element = o
        .dtype()
        .tensor_type()
        .map_or_else(|| "not a tensor".to_string(), element_name);
    TensorInfo {
        name: o.name().to_string(),
        shape,
        element,
    }
}

fn element_name(t: ort::value::TensorElementType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Graph optimisations: every level ONNX Runtime has (`ORT_ENABLE_ALL`), which on top of
/// the NCHWc layout level adds the remaining fusions; 8% faster forward passes on the default
/// pair than `ORT_ENABLE_LAYOUT` in `scripts/bench-score.sh` (docs/benchmarks.md), with the
/// same scores to the tolerance of the exactness tests.
const OPTIMIZATION: GraphOptimizationLevel = GraphOptimizationLevel::All;

fn base_builder(
    env: &Environment,
    opts: &RuntimeOptions,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    // ONNX Runtime's memory pattern plans one allocation per distinct input shape and keeps
    // the plan; the service's forward passes take every batch size up to --max-batch-views,
    // so it is switched off (ONNX Runtime's own advice for varying shapes). Intermediate
    // tensors then come from the CPU arena, which reuses its blocks across sizes: resident
    // memory stays flat under mixed load (scripts/bench-memory.sh, and the service test
    // `resident_memory_stops_growing_after_the_first_round_of_shapes`) at no measurable cost
    // for fixed batches (docs/benchmarks.md).
    let mut b = Session::builder(env)?
        .with_optimization_level(OPTIMIZATION)?
        .with_memory_pattern(false)?;
    if opts.threads > 0 {
        b = b.with_intra_threads(opts.threads)?;
    }
    if !opts.spin {
        b = b.with_intra_op_spinning(false)?;
    }
    Ok(b)
}

/// Where a session's model comes from: its file, or bytes made from it (the
/// representation-only graph of [`representation_only`]).
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

impl Source<'_> {
    fn commit(self, b: &mut ort::session::builder::SessionBuilder) -> ort::Result<Session> {
        match self {
            Source::File(p) => b.commit_from_file(p),
            Source::Memory(bytes) => b.commit_from_memory(bytes),
        }
    }
}

/// Builds a session of the model at `path` (from `src`: that file or bytes made from it) on
/// the requested device; returns the provider really in use. Under `--device cuda[:N]` a
/// CUDA provider that cannot be registered is [`Error::CudaUnavailable`] (never a fall-back
/// to the CPU); other failures are the model's.
fn build_session(
    env: &Environment,
    path: &Path,
    src: Source<'_>,
    opts: &RuntimeOptions,
) -> Result<(Session, Provider)> {
    let model = |e: String| Error::Model {
        model: path.display().to_string(),
        reason: e,
    };
    match opts.device {
        Device::Cpu => cpu_session(env, src, opts)
            .map(|s| (s, Provider::Cpu))
            .map_err(|e| model(e.to_string())),
        Device::Auto => auto_session(env, src, opts).map_err(|e| model(e.to_string())),
        Device::Cuda(n) => {
            let builder = base_builder(env, opts).map_err(|e| model(e.to_string()))?;
            let mut builder = with_cuda(builder, n).map_err(|e| Error::CudaUnavailable {
                device: opts.device.to_string(),
                library: loaded_library().map_or_else(|| library_path(opts), Path::to_path_buf),
                reason: e.to_string(),
            })?;
            let session = src.commit(&mut builder).map_err(|e| model(e.to_string()))?;
            Ok((session, Provider::Cuda))
        }
    }
}

fn cpu_session(env: &Environment, src: Source<'_>, opts: &RuntimeOptions) -> ort::Result<Session> {
    src.commit(&mut base_builder(env, opts)?)
}

/// `--device auto`: CUDA when it starts, else the CPU, saying why in the log.
fn auto_session(
    env: &Environment,
    src: Source<'_>,
    opts: &RuntimeOptions,
) -> ort::Result<(Session, Provider)> {
    if CUDA_BUILT {
        match with_cuda(base_builder(env, opts)?, 0).and_then(|mut b| src.commit(&mut b)) {
            Ok(s) => return Ok((s, Provider::Cuda)),
            Err(e) => tracing::warn!("device auto: CUDA unavailable ({e}); falling back to CPU"),
        }
    } else {
        tracing::debug!("device auto: built without the `cuda` feature; using CPU");
    }
    Ok((cpu_session(env, src, opts)?, Provider::Cpu))
}

#[cfg(feature = "cuda")]
fn with_cuda(
    b: ort::session::builder::SessionBuilder,
    device: i32,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    // Without error_on_failure a failed registration silently falls back to the CPU.
    // TF32 off: ONNX Runtime turns it on by default, which rounds convolution and Gemm inputs
    // to 10 mantissa bits on Ampere and later GPUs; a score must not depend on the device it
    // was computed on (scripts/gpu-check.sh holds CUDA to the CPU within 1e-4).
    Ok(b.with_execution_providers([ort::ep::CUDA::default()
        .with_device_id(device)
        .with_tf32(false)
        .build()
        .error_on_failure()])?)
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _: ort::session::builder::SessionBuilder,
    _device: i32,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    Err(ort::Error::new(
        "this binary was built without the `cuda` feature; rebuild with `--features cuda`",
    ))
}

/// The `nvidia` folders whose `*/lib` hold the CUDA and cuDNN libraries of `onnxruntime-gpu`'s
/// `nvidia-*` wheels: the one beside the library in use when it sits in a pip site
/// (`SITE/onnxruntime/capi/libonnxruntime.so.*`, wherever that site was copied to), then the
/// one `scripts/setup.sh --cuda` installs.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn nvidia_dirs(library: &Path) -> Vec<PathBuf> {
    let beside = library
        .parent()
        .filter(|capi| capi.ends_with("onnxruntime/capi"))
        .and_then(|capi| capi.parent()?.parent())
        .map(|site| site.join("nvidia"));
    let mut dirs: Vec<PathBuf> = beside.into_iter().collect();
    let installed = gpu_site().join("nvidia");
    if !dirs.contains(&installed) {
        dirs.push(installed);
    }
    dirs
}

/// Loads the CUDA and cuDNN libraries that `onnxruntime-gpu`'s `nvidia-*` wheels ship, so that
/// the CUDA provider finds them by soname without LD_LIBRARY_PATH (as the Python package's
/// `preload_dlls` does).
#[cfg(feature = "cuda")]
fn preload_cuda_libraries(library: &Path) {
    let mut libs: Vec<PathBuf> = nvidia_dirs(library)
        .iter()
        .filter_map(|nvidia| std::fs::read_dir(nvidia).ok())
        .flat_map(|pkgs| pkgs.flatten())
        .filter_map(|p| std::fs::read_dir(p.path().join("lib")).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".so"))
        .collect();
    libs.sort();
    // Dependencies first: retry until no more libraries load.
    let mut pending = libs;
    loop {
        let before = pending.len();
        pending.retain(|lib| {
            // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
            // runtime libraries installed by setup.sh, loaded once and never unloaded.
            match unsafe {
                libloading::os::unix::Library::open(
                    Some(lib),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            } {
                Ok(l) => {
                    std::mem::forget(l);
                    false
                }
                Err(_) => true,
            }
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if !pending.is_empty() {
        tracing::debug!(
            count = pending.len(),
            "some CUDA libraries could not be preloaded"
        );
    }
}

type Reply = mpsc::SyncSender<Result<Vec<ArrayD<f32>>>>;

struct Job {
    input: Vec<f32>,
    shape: [usize; 4],
    outputs: Vec<String>,
    reply: Reply,
}

/// One encoder: an ONNX Runtime session owned by its own thread.
pub struct EncoderSession {
    pub path: PathBuf,
    pub input: TensorInfo,
    pub outputs: Vec<TensorInfo>,
    pub provider: Provider,
    pub boundary: Boundary,
    tx: mpsc::Sender<Job>,
}

impl EncoderSession {
    /// Loads the model and starts its thread; inputs are fed channels first and token
    /// outputs are refused (see [`EncoderSession::load_with`]).
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Self> {
        Self::load_with(path, opts, Boundary::default(), None)
    }

    /// Loads the model with the bundle's layout and pooling, and starts its thread. Inputs
    /// are always given as float32 `[N, C, H, W]`; the session transposes them to its layout
    /// and casts them to its input's element type.
    ///
    /// With `primary` (the output nearly every call asks for: the bundle's representation)
    /// and a model that has other outputs too (per-layer feature maps, a projection head),
    /// the session runs a representation-only graph ([`representation_only`]): ONNX Runtime
    /// then neither computes nor copies out the rest. A call for another output loads the
    /// whole model on first use and keeps it.
    ///
    /// # Errors
    /// [`Error::Model`] when the model cannot be loaded, has other than one input, or its
    /// input's element type is not float32, float16 or uint8.
    pub fn load_with(
        path: &Path,
        opts: &RuntimeOptions,
        boundary: Boundary,
        primary: Option<&str>,
    ) -> Result<Self> {
        let env = environment(opts)?;
        let model = path.display().to_string();
        let (session, provider) = build_session(env, path, Source::File(path), opts)?;
        let inputs: Vec<TensorInfo> = session.inputs().iter().map(outlet_info).collect();
        let outputs: Vec<TensorInfo> = session.outputs().iter().map(outlet_info).collect();
        let input = match inputs.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Error::Model {
                    model,
                    reason: format!(
                        "has {} inputs; an encoder takes exactly one image tensor",
                        inputs.len()
                    ),
                })
            }
        };
        let Some(element) = input.element_type() else {
            return Err(Error::Model {
                model,
                reason: format!(
                    "input '{}' is {}; an encoder takes float32, float16 or uint8 images",
                    input.name, input.element
                ),
            });
        };
        let primary = primary.filter(|p| outputs.len() > 1 && outputs.iter().any(|o| o.name == *p));
        let sessions = match primary.map(|p| specialise(env, path, opts, p, provider)) {
            Some(Some(fast)) => Sessions {
                main: fast,
                main_outputs: primary.iter().map(|p| p.to_string()).collect(),
                whole: None,
            },
            _ => Sessions {
                main: session,
                main_outputs: outputs.iter().map(|o| o.name.clone()).collect(),
                whole: None,
            },
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let feed = Feed {
            name: input.name.clone(),
            element,
            boundary,
            path: path.to_path_buf(),
            opts: opts.clone(),
        };
        thread::Builder::new()
            .name(format!(
                "encoder:{}",
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ))
            .spawn(move || serve(sessions, &feed, rx))
            .map_err(|e| Error::Runtime(format!("cannot start encoder thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            input,
            outputs,
            provider,
            boundary,
            tx,
        })
    }

    /// Runs a batch `[n, c, h, w]` (a flat row-major buffer) and returns the named outputs, in order.
    pub fn run_owned(
        &self,
        input: Vec<f32>,
        shape: [usize; 4],
        outputs: &[String],
    ) -> Result<Vec<ArrayD<f32>>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Job {
                input,
                shape,
                outputs: outputs.to_vec(),
                reply,
            })
            .map_err(|_| Error::Runtime(format!("encoder {} has stopped", self.path.display())))?;
        rx.recv().map_err(|_| {
            Error::Runtime(format!("encoder {} stopped mid-batch", self.path.display()))
        })?
    }

    /// One representation per row: a matrix output as is, a token output `[batch, tokens,
    /// dim]` pooled as the bundle says.
    ///
    /// # Errors
    /// [`Error::Model`] for an output of another rank, or a token output with no pooling.
    pub fn embed(&self, input: Vec<f32>, shape: [usize; 4], output: &str) -> Result<Array2<f32>> {
        let out = self.run_owned(input, shape, &[output.to_string()])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Runtime("no output returned".into()))?;
        let model = || self.path.display().to_string();
        match (first.ndim(), self.boundary.pooling) {
            (2, _) => first.into_dimensionality().map_err(|e| Error::Model {
                model: model(),
                reason: e.to_string(),
            }),
            (3, Some(p)) => {
                let t = first
                    .into_dimensionality::<ndarray::Ix3>()
                    .map_err(|e| Error::Model {
                        model: model(),
                        reason: e.to_string(),
                    })?;
                if t.dim().1 == 0 {
                    return Err(Error::Model {
                        model: model(),
                        reason: format!("output '{output}' has no tokens to pool"),
                    });
                }
                Ok(pool(&t, p))
            }
            (3, None) => Err(Error::Model {
                model: model(),
                reason: format!(
                    "output '{output}' has shape [batch, tokens, dim] {:?}: choose how tokens \
                     become one representation (`--pooling cls`, `mean` or `flatten`)",
                    first.shape()
                ),
            }),
            (d, _) => Err(Error::Model {
                model: model(),
                reason: format!(
                    "output '{output}' has {d} dimensions {:?}; a representation is [batch, dim] \
                     or, pooled, [batch, tokens, dim]",
                    first.shape()
                ),
            }),
        }
    }
}

/// Pools token outputs `[batch, tokens, dim]` into `[batch, dim]` (`[batch, tokens * dim]`
/// for [`Pooling::Flatten`]). `tokens` must be at least 1.
pub fn pool(t: &ndarray::Array3<f32>, how: Pooling) -> Array2<f32> {
    let (n, tokens, dim) = t.dim();
    match how {
        Pooling::Cls => t.index_axis(ndarray::Axis(1), 0).to_owned(),
        Pooling::Mean => t
            .mean_axis(ndarray::Axis(1))
            .unwrap_or_else(|| Array2::zeros((n, dim))),
        Pooling::Flatten => {
            let flat: Vec<f32> = t.iter().copied().collect();
            Array2::from_shape_vec((n, tokens * dim), flat)
                .unwrap_or_else(|_| Array2::zeros((n, tokens * dim)))
        }
    }
}

/// What the session's thread needs to feed its model (and to load the whole model when a
/// call asks for an output the representation-only graph lacks).
struct Feed {
    name: String,
    element: ElementType,
    boundary: Boundary,
    path: PathBuf,
    opts: RuntimeOptions,
}

/// The sessions of one encoder's thread.
struct Sessions {
    /// The representation-only graph, or the whole model when there is nothing to remove.
    main: Session,
    /// The outputs `main` has.
    main_outputs: Vec<String>,
    /// The whole model, loaded on the first call for an output `main` lacks.
    whole: Option<Session>,
}

impl Sessions {
    fn for_job(&mut self, feed: &Feed, job: &Job) -> Result<&mut Session> {
        if job.outputs.iter().all(|o| self.main_outputs.contains(o)) {
            return Ok(&mut self.main);
        }
        if self.whole.is_none() {
            let env = environment(&feed.opts)?;
            let (session, _) =
                build_session(env, &feed.path, Source::File(&feed.path), &feed.opts)?;
            tracing::debug!(model = %feed.path.display(), outputs = ?job.outputs, "loaded the whole model for outputs outside the representation");
            self.whole = Some(session);
        }
        self.whole
            .as_mut()
            .ok_or_else(|| Error::Runtime("the whole model is not loaded".into()))
    }
}

/// A session of the representation-only graph of `path` on the same provider, or `None`
/// (logged) when the model cannot be reduced (see [`representation_only`]) or the reduced
/// graph does not load: the caller then keeps the whole model, which gives the same results.
fn specialise(
    env: &Environment,
    path: &Path,
    opts: &RuntimeOptions,
    output: &str,
    provider: Provider,
) -> Option<Session> {
    let bytes = match representation_only(path, output) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(model = %path.display(), "keeping the whole model: {e}");
            return None;
        }
    };
    match build_session(env, path, Source::Memory(&bytes), opts) {
        Ok((s, p)) if p == provider => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(model = %path.display(), "keeping the whole model: {e}");
            None
        }
    }
}

/// The model at `path` reduced to the one graph output `output` and the nodes and
/// initializers it depends on, serialised; `None` when there is nothing to remove, or when
/// the model keeps weights in external data files (they are found relative to the model's
/// file, which bytes in memory do not have) or has control-flow subgraphs.
///
/// Nodes are kept by walking the graph backwards from `output` (ONNX requires nodes in
/// topological order), so the reduced graph computes `output` with exactly the same
/// operators and weights as the whole one.
///
/// # Errors
/// [`Error::Model`] when the file is not a readable ONNX model.
pub fn representation_only(path: &Path, output: &str) -> Result<Option<Vec<u8>>> {
    use onnx_protobuf::Message;
    let model_err = |reason: String| Error::Model {
        model: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| model_err(format!("not an ONNX model: {e}")))?;
    let Some(graph) = model.graph.as_mut() else {
        return Ok(None);
    };
    let external = graph
        .initializer
        .iter()
        .any(|t| !t.external_data.is_empty());
    let subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    if external
        || subgraphs
        || graph.output.len() < 2
        || !graph.output.iter().any(|o| o.name == output)
    {
        return Ok(None);
    }
    let mut needed: std::collections::HashSet<String> = [output.to_string()].into();
    let mut keep = vec![false; graph.node.len()];
    for (k, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[k] = true;
            needed.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
        }
    }
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(true));
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.output.retain(|o| o.name == output);
    graph.value_info.retain(|v| needed.contains(&v.name));
    model
        .write_to_bytes()
        .map(Some)
        .map_err(|e| model_err(format!("cannot write the reduced graph: {e}")))
}

fn serve(mut sessions: Sessions, feed: &Feed, rx: mpsc::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let result = sessions
            .for_job(feed, &job)
            .and_then(|session| run_one(session, feed, &job));
        // The caller may have gone away; nothing to do then.
        let _ = job.reply.send(result);
    }
}

/// `[n, c, h, w]` row-major to `[n, h, w, c]`.
fn to_channels_last(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    out[((b * h + y) * w + xx) * c + ch] = x[((b * c + ch) * h + y) * w + xx];
                }
            }
        }
    }
    out
}

fn run_one(session: &mut Session, feed: &Feed, job: &Job) -> Result<Vec<ArrayD<f32>>> {
    let [n, c, h, w] = job.shape;
    let (data, dims): (std::borrow::Cow<[f32]>, [usize; 4]) = match feed.boundary.layout {
        Layout::Nchw => (job.input.as_slice().into(), [n, c, h, w]),
        Layout::Nhwc => (to_channels_last(&job.input, job.shape).into(), [n, h, w, c]),
    };
    let shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    let out = match feed.element {
        ElementType::Float32 => {
            let t = TensorRef::from_array_view((shape, &*data))?;
            session.run(ort::inputs![feed.name.as_str() => t])?
        }
        ElementType::Float16 => {
            let v: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
            let t = TensorRef::from_array_view((shape, v.as_slice()))?;
            session.run(ort::inputs![feed.name.as_str() => t])?
        }
        ElementType::Uint8 => {
            let v: Vec<u8> = data
                .iter()
                .map(|&x| x.round().clamp(0.0, 255.0) as u8)
                .collect();
            let t = TensorRef::from_array_view((shape, v.as_slice()))?;
            session.run(ort::inputs![feed.name.as_str() => t])?
        }
    };
    job.outputs
        .iter()
        .map(|name| {
            let v = out
                .get(name)
                .ok_or_else(|| Error::Runtime(format!("model has no output '{name}'")))?;
            match v.dtype().tensor_type() {
                Some(ort::value::TensorElementType::Float32) => {
                    Ok(v.try_extract_array::<f32>()?.to_owned())
                }
                Some(ort::value::TensorElementType::Float16) => {
                    Ok(v.try_extract_array::<half::f16>()?.mapv(half::f16::to_f32))
                }
                other => Err(Error::Runtime(format!(
                    "output '{name}' is {}; a representation must be float32 or float16",
                    other.map_or_else(|| "not a tensor".into(), element_name)
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_moves_each_value_to_its_nhwc_place() {
        // [n=2, c=3, h=2, w=2], values numbered in NCHW order.
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let y = to_channels_last(&x, [2, 3, 2, 2]);
        for b in 0..2 {
            for c in 0..3 {
                for h in 0..2 {
                    for w in 0..2 {
                        let nchw = ((b * 3 + c) * 2 + h) * 2 + w;
                        let nhwc = ((b * 2 + h) * 2 + w) * 3 + c;
                        assert_eq!(y[nhwc], x[nchw]);
                    }
                }
            }
        }
    }

    #[test]
    fn cuda_libraries_are_looked_for_beside_a_copied_pip_site_first() {
        let lib = Path::new("/opt/gpu/site/onnxruntime/capi/libonnxruntime.so.1.31.1");
        let dirs = nvidia_dirs(lib);
        assert_eq!(dirs[0], Path::new("/opt/gpu/site/nvidia"));
        assert_eq!(dirs.last(), Some(&gpu_site().join("nvidia")));
        // A library outside a pip site: only the installed wheels' folder.
        assert_eq!(
            nvidia_dirs(Path::new("/usr/lib/libonnxruntime.so")),
            [gpu_site().join("nvidia")]
        );
        // The installed library itself: its folder once, not twice.
        let installed = gpu_site()
            .join("onnxruntime/capi")
            .join(format!("libonnxruntime.so.{ORT_VERSION}"));
        assert_eq!(nvidia_dirs(&installed), [gpu_site().join("nvidia")]);
    }

    #[test]
    fn pooling_reads_tokens_as_documented() {
        // 2 images, 3 tokens, 2 dims: token t of image b is [10b + t, -(10b + t)].
        let t = ndarray::Array3::from_shape_fn((2, 3, 2), |(b, tok, d)| {
            let v = (10 * b + tok) as f32;
            if d == 0 {
                v
            } else {
                -v
            }
        });
        assert_eq!(pool(&t, Pooling::Cls).row(1).to_vec(), [10.0, -10.0]);
        assert_eq!(pool(&t, Pooling::Mean).row(1).to_vec(), [11.0, -11.0]);
        let flat = pool(&t, Pooling::Flatten);
        assert_eq!(flat.dim(), (2, 6));
        assert_eq!(flat.row(0).to_vec(), [0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
    }
}
