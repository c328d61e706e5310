//! Build script: with the `train` feature, link libtorch so that CUDA really loads.
//!
//! tch's own build script links only what the linker thinks is needed; with PyTorch from
//! pip that drops `libtorch_cuda.so` and CUDA is then reported unavailable (tch-rs issues
//! 907 and 980). Here every binary and test of this crate gets `--no-as-needed -ltorch`
//! (and `-ltorch_cuda` where it exists) plus an rpath to libtorch, so nothing has to be on
//! LD_LIBRARY_PATH at run time.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=SSLMEM_HOME");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    let Some(libtorch) = libtorch_dir() else {
        println!(
            "cargo:warning=feature `train`: LIBTORCH is not set; run `scripts/setup.sh --train` and export the LIBTORCH it prints"
        );
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // libstdc++ too: a test binary that uses nothing of the library still gets -ltorch,
    // whose C++ symbols then need it (rust-lld refuses undefined shared-library symbols).
    let mut libs = vec!["-ltorch_cpu", "-ltorch", "-lstdc++"];
    if lib.join("libtorch_cuda.so").is_file() {
        libs.insert(0, "-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for l in libs {
        println!("cargo:rustc-link-arg={l}");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}

/// `LIBTORCH`, or the path `scripts/setup.sh --train` recorded in the cache.
fn libtorch_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LIBTORCH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("SSLMEM_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sslmem"))
        })?;
    let recorded = std::fs::read_to_string(home.join("torch").join("LIBTORCH")).ok()?;
    Some(PathBuf::from(recorded.trim()))
}
