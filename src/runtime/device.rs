//! Where inference runs: the device the user asked for (`auto`, `cpu`, `cuda[:N]`), the
//! provider a session really got, and the options sessions are built with.

use std::path::PathBuf;

use serde::Serialize;

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
