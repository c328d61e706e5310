//! Build script: the git revision the binaries report, and, with the `train` feature, libtorch
//! linked so that CUDA really loads.
//!
//! The revision (`SSLMEM_BUILD_GIT_REVISION`, read with `env!`) is the commit checked out in
//! this crate's own repository when it was built, from `SSLMEM_GIT_REVISION` when that is set
//! (a Docker build, whose context has no `.git`, passes it as a build argument), else
//! `unknown`. It names the commit, not uncommitted changes on top of it.
//!
//! tch's own build script links only what the linker thinks is needed; with PyTorch from
//! pip that drops `libtorch_cuda.so` and CUDA is then reported unavailable (tch-rs issues
//! 907 and 980). Here every binary and test of this crate gets `--no-as-needed -ltorch`
//! (and `-ltorch_cuda` where it exists) plus an rpath to libtorch, so nothing has to be on
//! LD_LIBRARY_PATH at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    git_revision();
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

/// Exports `SSLMEM_BUILD_GIT_REVISION` and asks for a rerun when the checked-out commit moves.
fn git_revision() {
    println!("cargo:rerun-if-env-changed=SSLMEM_GIT_REVISION");
    let given = std::env::var("SSLMEM_GIT_REVISION")
        .ok()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let rev = given.or_else(|| {
        let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
        // Only this crate's own repository: a copy inside another one (a vendored source, a
        // Docker build context) must not report that repository's commit.
        let top = git(&dir, &["rev-parse", "--show-toplevel"])?;
        if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
            return None;
        }
        let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
        if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(branch);
        }
        for name in watch {
            if let Some(p) = git(&dir, &["rev-parse", "--git-path", &name]) {
                let p = dir.join(p);
                // A path that does not exist would make cargo rerun this script every build.
                if p.exists() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
        }
        git(&dir, &["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=SSLMEM_BUILD_GIT_REVISION={}",
        rev.as_deref().unwrap_or("unknown")
    );
}

/// A git command's trimmed output in `dir`; `None` without git or on failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}
