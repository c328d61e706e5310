//! Loading a bundle: reading its manifest, checking every file's hash, starting one session
//! per encoder (side by side on their own cores where that is faster), and checking the
//! encoders against the manifest and each other ([`super::contract`]).

use std::path::{Path, PathBuf};

use super::contract::{check_interface, check_running};
use super::manifest::{read_manifest, Manifest, ModelFile, MANIFEST};
use crate::error::{Error, Result};
use crate::fsutil::sha256_file;
use crate::runtime::{Boundary, EncoderSession, RuntimeOptions};

/// A bundle whose files are verified and whose encoders are loaded.
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of the bundle's `sslmem.json` as loaded, which lists every file's SHA-256: one
    /// hash for the whole bundle; `None` for a lone model file wrapped without a manifest.
    pub manifest_sha256: Option<String>,
    pub f: Vec<EncoderSession>,
    pub g: Vec<EncoderSession>,
    /// Whether a forward pass runs every encoder at once, each session on its share of the
    /// cores ([`side_by_side_threads`]), rather than one after the other on all of them.
    pub side_by_side: bool,
}

/// Intra-op threads per session when a bundle's `encoders` run side by side on `cores`
/// cores, or `None` to run them one after the other: side by side when the thread count is
/// left to sslmem (`threads` 0) and every encoder gets at least one core of its own. One
/// single-threaded session per core does no cross-thread synchronisation inside an
/// operator; on the default pair on two cores this was 3-5% faster than two-thread sessions
/// in turn, with the same scores (docs/benchmarks.md).
pub fn side_by_side_threads(threads: usize, encoders: usize, cores: usize) -> Option<usize> {
    (threads == 0 && encoders >= 2 && encoders <= cores).then(|| cores / encoders)
}

impl Bundle {
    /// The bundle folder's own name, not its path: what the service shows of it (a path on
    /// the server's disk or in a container's mount tells a client nothing it can use).
    pub fn folder_name(&self) -> String {
        self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Loads and checks a bundle: files exist, hashes match, every encoder takes the
    /// manifest's input and has the same outputs with the same shapes. What is suspicious
    /// without being invalid ([`Manifest::warnings`]) is logged as a warning.
    pub fn load(dir: &Path, opts: &RuntimeOptions) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        for w in manifest.warnings() {
            tracing::warn!("bundle {}: {w}", dir.display());
        }
        Self::load_manifest(dir, manifest, opts)
    }

    /// [`Self::load`] of an already read manifest, without its warnings (`create` has said
    /// them in terms of the user's files).
    pub(super) fn load_manifest(
        dir: &Path,
        manifest: Manifest,
        opts: &RuntimeOptions,
    ) -> Result<Self> {
        let manifest_sha256 = Some(sha256_file(&dir.join(MANIFEST))?);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let side_by_side =
            side_by_side_threads(opts.threads, manifest.f.len() + manifest.g.len(), cores);
        let opts = &RuntimeOptions {
            threads: side_by_side.unwrap_or(opts.threads),
            ..opts.clone()
        };
        let boundary = Boundary {
            layout: manifest.input.layout,
            pooling: manifest.representation.pooling,
        };
        let load_side = |files: &[ModelFile]| -> Result<Vec<EncoderSession>> {
            files
                .iter()
                .map(|mf| {
                    let path = verify_file(dir, mf)?;
                    for data in &mf.external_data {
                        verify_file(dir, data)?;
                    }
                    let enc = EncoderSession::load_with(
                        &path,
                        opts,
                        boundary,
                        Some(&manifest.representation.output),
                    )?;
                    check_interface(&enc, &manifest)?;
                    Ok(enc)
                })
                .collect()
        };
        let f = load_side(&manifest.f)?;
        let g = load_side(&manifest.g)?;
        let reference = &f[0];
        for e in f.iter().chain(&g).skip(1) {
            if e.input != reference.input || e.outputs != reference.outputs {
                return Err(Error::bundle(
                    &e.path,
                    format!(
                        "inputs/outputs {:?} -> {:?} differ from {}'s {:?} -> {:?}; all encoders of a bundle must match",
                        e.input,
                        e.outputs,
                        reference.path.display(),
                        reference.input,
                        reference.outputs
                    ),
                ));
            }
        }
        let bundle = Self {
            dir: dir.to_path_buf(),
            manifest,
            manifest_sha256,
            f,
            g,
            side_by_side: side_by_side.is_some(),
        };
        bundle.check_contract()?;
        Ok(bundle)
    }

    /// The encoder contract, checked by running it: two real augmented views (of a smooth
    /// gradient image at the model's size) through every encoder must give two finite
    /// representations of the same width.
    ///
    /// # Errors
    /// [`Error::Bundle`] naming the encoder, the cause and the fix.
    pub fn check_contract(&self) -> Result<()> {
        check_running(&self.dir, &self.manifest, self.encoders())
    }

    /// Every encoder, the `f` side first.
    pub fn encoders(&self) -> impl Iterator<Item = &EncoderSession> {
        self.f.iter().chain(&self.g)
    }
}

/// Resolves a manifest entry and checks its hash.
pub fn verify_file(dir: &Path, mf: &ModelFile) -> Result<PathBuf> {
    let rel = Path::new(&mf.path);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::bundle(
            dir.join(MANIFEST),
            format!(
                "model path '{}' must be relative and inside the bundle",
                mf.path
            ),
        ));
    }
    let path = dir.join(rel);
    if !path.is_file() {
        return Err(Error::bundle(&path, "listed in the manifest but missing"));
    }
    let actual = sha256_file(&path)?;
    if !actual.eq_ignore_ascii_case(&mf.sha256) {
        return Err(Error::bundle(
            &path,
            format!(
                "sha256 is {actual}, the manifest says {}; the file was changed or replaced",
                mf.sha256
            ),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_run_side_by_side_only_when_each_gets_a_core() {
        assert_eq!(side_by_side_threads(0, 2, 2), Some(1));
        assert_eq!(side_by_side_threads(0, 2, 8), Some(4));
        assert_eq!(side_by_side_threads(0, 3, 8), Some(2));
        // More encoders than cores, one encoder, or a thread count the user chose: in turn.
        assert_eq!(side_by_side_threads(0, 4, 2), None);
        assert_eq!(side_by_side_threads(0, 1, 2), None);
        assert_eq!(side_by_side_threads(2, 2, 2), None);
    }
}
