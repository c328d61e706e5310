//! The process's one ONNX Runtime environment, loaded on first use from the library that
//! `library` finds (with the CUDA libraries preloaded when CUDA may be used), and the
//! telemetry switch both binaries set before any library is loaded.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use super::device::{Device, RuntimeOptions, CUDA_BUILT};
use super::library::{library_path, ORT_VERSION};
use crate::error::{Error, Result};

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
        super::cuda::preload_cuda_libraries(&path);
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
