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
use serde::Serialize;

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
    /// Intra-op threads per session; 0 lets ONNX Runtime choose.
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
        preload_cuda_libraries();
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
}

fn outlet_info(o: &ort::value::Outlet) -> TensorInfo {
    let shape = o
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().map(|&d| usize::try_from(d).ok()).collect())
        .unwrap_or_default();
    TensorInfo {
        name: o.name().to_string(),
        shape,
    }
}

fn base_builder(
    env: &Environment,
    opts: &RuntimeOptions,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    let mut b = Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3)?;
    if opts.threads > 0 {
        b = b.with_intra_threads(opts.threads)?;
    }
    if !opts.spin {
        b = b.with_intra_op_spinning(false)?;
    }
    Ok(b)
}

/// Builds a session on the requested device; returns the provider really in use.
fn build_session(
    env: &Environment,
    path: &Path,
    opts: &RuntimeOptions,
) -> ort::Result<(Session, Provider)> {
    match opts.device {
        Device::Cpu => Ok((
            base_builder(env, opts)?.commit_from_file(path)?,
            Provider::Cpu,
        )),
        Device::Cuda(n) => Ok((
            with_cuda(base_builder(env, opts)?, n)?.commit_from_file(path)?,
            Provider::Cuda,
        )),
        Device::Auto => {
            if CUDA_BUILT {
                match with_cuda(base_builder(env, opts)?, 0)
                    .and_then(|mut b| b.commit_from_file(path))
                {
                    Ok(s) => return Ok((s, Provider::Cuda)),
                    Err(e) => {
                        tracing::warn!("device auto: CUDA unavailable ({e}); falling back to CPU")
                    }
                }
            } else {
                tracing::debug!("device auto: built without the `cuda` feature; using CPU");
            }
            Ok((
                base_builder(env, opts)?.commit_from_file(path)?,
                Provider::Cpu,
            ))
        }
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    b: ort::session::builder::SessionBuilder,
    device: i32,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    // Without error_on_failure a failed registration silently falls back to the CPU.
    Ok(b.with_execution_providers([ort::ep::CUDA::default()
        .with_device_id(device)
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

/// Loads the CUDA and cuDNN libraries that `onnxruntime-gpu`'s `nvidia-*` wheels ship, so that
/// the CUDA provider finds them by soname without LD_LIBRARY_PATH (as the Python package's
/// `preload_dlls` does).
#[cfg(feature = "cuda")]
fn preload_cuda_libraries() {
    let nvidia = gpu_site().join("nvidia");
    let Ok(pkgs) = std::fs::read_dir(&nvidia) else {
        return;
    };
    let mut libs: Vec<PathBuf> = pkgs
        .flatten()
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
    tx: mpsc::Sender<Job>,
}

impl EncoderSession {
    /// Loads the model and starts its thread.
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Self> {
        let env = environment(opts)?;
        let model = path.display().to_string();
        let (session, provider) = build_session(env, path, opts).map_err(|e| Error::Model {
            model: model.clone(),
            reason: e.to_string(),
        })?;
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
        let (tx, rx) = mpsc::channel::<Job>();
        let input_name = input.name.clone();
        thread::Builder::new()
            .name(format!(
                "encoder:{}",
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ))
            .spawn(move || serve(session, &input_name, rx))
            .map_err(|e| Error::Runtime(format!("cannot start encoder thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            input,
            outputs,
            provider,
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

    /// Convenience: one rank-2 output (e.g. the representation).
    pub fn embed(&self, input: Vec<f32>, shape: [usize; 4], output: &str) -> Result<Array2<f32>> {
        let out = self.run_owned(input, shape, &[output.to_string()])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Runtime("no output returned".into()))?;
        first.into_dimensionality().map_err(|_| Error::Model {
            model: self.path.display().to_string(),
            reason: format!("output '{output}' is not a matrix [batch, dim]"),
        })
    }
}

fn serve(mut session: Session, input_name: &str, rx: mpsc::Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let result = run_one(&mut session, input_name, &job);
        // The caller may have gone away; nothing to do then.
        let _ = job.reply.send(result);
    }
}

fn run_one(session: &mut Session, input_name: &str, job: &Job) -> Result<Vec<ArrayD<f32>>> {
    let tensor =
        TensorRef::from_array_view((job.shape.map(|d| d as i64).to_vec(), job.input.as_slice()))?;
    let out = session.run(ort::inputs![input_name => tensor])?;
    job.outputs
        .iter()
        .map(|name| {
            let v = out
                .get(name)
                .ok_or_else(|| Error::Runtime(format!("model has no output '{name}'")))?;
            Ok(v.try_extract_array::<f32>()?.to_owned())
        })
        .collect()
}
