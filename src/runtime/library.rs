//! Finding ONNX Runtime's shared library: an explicit path, `ORT_DYLIB_PATH`, or what
//! `scripts/setup.sh` installed under [`sslmem_home`] (the CPU build, or the GPU build in a
//! pip site with its CUDA libraries).

use std::path::PathBuf;

use super::device::{Device, RuntimeOptions, CUDA_BUILT};

pub const ORT_VERSION: &str = "1.31.1";

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
