//! `sslmem bundle split-pair`: the SSLMem pair inside a many-model bundle. Encoders `2j` and
//! `2j + 1` of a many-model bundle (`sslmem-train subsample`) trained on complementary halves
//! of the pool, so they are an encoder pair in the sense of docs/science.md: `f` = encoder
//! `2j`, `g` = encoder `2j + 1`, candidate = `f`'s half, independent = `g`'s half, no shared
//! set, and the test examples the training recorded as the extra set (seen by neither).

use std::fs;
use std::path::Path;

use super::{read_manifest, verify_file, write_manifest, Manifest, ModelFile};
use crate::data::split::{IndexSet, SplitRecord, SplitSpec};
use crate::error::{Error, Result};
use crate::fsutil::sha256_file;

/// Writes into the new folder `out` the pair of split `split` of the many-model bundle `mm`:
/// its two encoders copied as `f0.onnx` and `g0.onnx`, and a manifest with their split
/// record. The extra set is `0..test_examples` of the dataset's test set: by default the test
/// examples the training recorded (`training.subset`).
///
/// # Errors
/// [`Error::Param`] when `mm` is not a many-model bundle or has no split `split`, or `out`
/// is not a new or empty folder; [`Error::Bundle`] when a file's hash differs;
/// [`Error::Io`] when files cannot be copied.
pub fn split_pair(
    mm: &Path,
    split: usize,
    test_examples: Option<usize>,
    out: &Path,
) -> Result<Manifest> {
    let m = read_manifest(mm)?;
    let test_examples = test_examples
        .or_else(|| m.training_subset().map(|s| s.1))
        .ok_or_else(|| {
            Error::Param(
                "the bundle records no test subset; give --test-examples (the test examples \
                 neither encoder saw)"
                    .into(),
            )
        })?;
    let rec = m.subsample.as_ref().ok_or_else(|| {
        Error::Param(format!(
            "{} is not a many-model bundle (its manifest has no subsample record)",
            mm.display()
        ))
    })?;
    let splits = rec.members.len() / 2;
    if split >= splits {
        return Err(Error::Param(format!(
            "--split {split}: the bundle has {splits} split(s) (0..{splits})"
        )));
    }
    let (fi, gi) = (2 * split, 2 * split + 1);
    if out.exists()
        && fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::Param(format!(
            "{} already exists and is not empty; choose a new folder",
            out.display()
        )));
    }
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let copy = |src: &ModelFile, name: &str| -> Result<ModelFile> {
        if !src.external_data.is_empty() {
            return Err(Error::Param(format!(
                "{} keeps its weights in external data files; split-pair copies single-file \
                 models only",
                src.path
            )));
        }
        let from = verify_file(mm, src)?;
        let to = out.join(name);
        fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        Ok(ModelFile {
            path: name.into(),
            sha256: sha256_file(&to)?,
            external_data: Vec::new(),
        })
    };
    let f = copy(&m.f[fi], "f0.onnx")?;
    let g = copy(&m.f[gi], "g0.onnx")?;
    let split_record = SplitRecord {
        dataset: format!("{}:train", rec.dataset),
        size: rec.size,
        spec: SplitSpec {
            seed: rec.seed,
            candidate: 0.5,
            independent: 0.5,
        },
        shared: IndexSet::default(),
        candidate: rec.members[fi].clone(),
        independent: rec.members[gi].clone(),
        extra_dataset: format!("{}:test", rec.dataset),
        extra: IndexSet::range(0, test_examples),
        canaries: None,
        data_sha256: rec.data_sha256.clone(),
        other: Default::default(),
    };
    let pair = Manifest {
        name: Some(format!(
            "{} (split {split}: f = encoder {fi}, g = encoder {gi})",
            m.name.as_deref().unwrap_or("many-model bundle")
        )),
        f: vec![f],
        g: vec![g],
        split: Some(split_record),
        subsample: None,
        ..m
    };
    write_manifest(out, &pair)?;
    Ok(pair)
}
