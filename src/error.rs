//! Typed errors of the library. Each says what went wrong and, where there is one,
//! what to do next; front ends (CLI, HTTP) map them to exit codes or status codes.

use std::path::PathBuf;

/// Why one input image could not be used. The rest of a batch is still scored.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("image has zero width or height")]
    Empty,
    #[error("image is {width}x{height} pixels, more than the limit of {max_pixels} (raise --max-pixels to accept it)")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("bad image shape: {0}")]
    Shape(String),
    /// The model, not the image, failed: its representation of this image is NaN or infinite.
    #[error("encoder {encoder} returned a non-finite representation (NaN or infinity) for this image; the model or its export is broken for such inputs")]
    NotFinite { encoder: String },
}

/// Why the engine could not run a job.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bounded queue is full (a service answers 503 and asks the client to retry).
    #[error("the inference queue is full; retry shortly")]
    QueueFull,
    /// The batching thread is gone; nothing more can run.
    #[error("the inference engine has stopped: {0}")]
    Stopped(String),
    /// A forward pass failed; every job in it fails with the same message.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Errors of the library as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error(
        "ONNX Runtime {version} was not found at {path}: run `scripts/setup.sh{hint}` \
         (or point ORT_DYLIB_PATH at libonnxruntime.so)"
    )]
    RuntimeMissing {
        path: PathBuf,
        version: &'static str,
        hint: &'static str,
    },
    /// `--device cuda[:N]` was asked for and ONNX Runtime's CUDA execution provider did not
    /// start: a CPU-only library, the CUDA or cuDNN libraries missing, or no GPU. Never a
    /// silent fall-back to the CPU.
    #[error(
        "device {device}: ONNX Runtime's CUDA execution provider did not start with {library} \
         ({reason}); point --ort-lib (or ORT_DYLIB_PATH) at the onnxruntime-gpu build that \
         `scripts/setup.sh --cuda` installs, check that `nvidia-smi` sees a GPU, or use --device cpu"
    )]
    CudaUnavailable {
        device: String,
        library: PathBuf,
        reason: String,
    },
    /// ONNX Runtime failed (loading the library, building or running a session).
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The scoring engine could not run a job.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The HTTP service could not start or stopped (listening, the async runtime).
    #[error("service: {0}")]
    Service(String),
    /// libtorch failed during training, evaluation or export (the trainer).
    #[error("training: {0}")]
    Train(String),
    /// An output (JSON, CSV, a figure, a report) could not be made.
    #[error("cannot write {what}: {reason}")]
    Output { what: String, reason: String },
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },
    #[error("invalid parameter: {0}")]
    Param(String),
    #[error("dataset {name}: {reason}")]
    Dataset { name: String, reason: String },
    #[error("{input}: {source}")]
    Input {
        input: String,
        #[source]
        source: InputError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn bundle(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Bundle {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn output(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Output {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Self::Runtime(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
