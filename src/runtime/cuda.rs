//! ONNX Runtime's CUDA execution provider (behind the `cuda` feature): registering it on a
//! session builder, and preloading the CUDA and cuDNN libraries that `onnxruntime-gpu`'s
//! `nvidia-*` wheels ship. Without the feature, asking for CUDA is an error that says how to
//! rebuild.

use std::path::{Path, PathBuf};

use super::library::gpu_site;

#[cfg(feature = "cuda")]
pub(super) fn with_cuda(
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
pub(super) fn with_cuda(
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
pub(super) fn preload_cuda_libraries(library: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::library::ORT_VERSION;

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
}
