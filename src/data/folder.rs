//! Folders of image files as datasets. Files are found recursively and ordered by path (the
//! same order `sslmem score DIR` uses, so example `i` is the same image everywhere). When
//! every image sits in a first-level subfolder, the subfolders are the classes
//! (torchvision's `ImageFolder` convention): label `k` is the `k`-th class name in sorted
//! order. Images directly in the folder make an unlabelled dataset. Hidden files and
//! folders (names starting with `.`, such as `.thumbs/`) are skipped: they are neither
//! examples nor classes.

use std::fs;
use std::path::{Path, PathBuf};

use super::{inputs, ImageArray};
use crate::error::{Error, Result};
use crate::pixels::{decode, DecodeLimits};

/// A folder dataset's arrays and its class names (empty when unlabelled).
#[derive(Debug)]
pub struct FolderDataset {
    pub images: ImageArray,
    pub classes: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Loads every image under `dir`. `shape` is `[channels, height, width]`: images are
/// converted to `channels` and must be `height x width`; without it the first image decides
/// (grey stays one channel, anything else becomes three).
pub fn load(name: &str, dir: &Path, shape: Option<[usize; 3]>) -> Result<FolderDataset> {
    let bad = |reason: String| Error::Dataset {
        name: name.into(),
        reason,
    };
    let files = inputs::image_files(dir)?;
    if files.is_empty() {
        return Err(bad(format!("{} holds no image files", dir.display())));
    }
    let class_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(dir).ok()?;
        let mut parts = rel.components();
        let first = parts.next()?;
        parts.next()?; // at least one more component: the file sits in a subfolder
        Some(first.as_os_str().to_string_lossy().into_owned())
    };
    let per_file: Vec<Option<String>> = files.iter().map(|p| class_of(p)).collect();
    let labelled = per_file.iter().filter(|c| c.is_some()).count();
    let classes: Vec<String> = if labelled == 0 {
        Vec::new()
    } else if labelled == files.len() {
        let mut c: Vec<String> = per_file.iter().flatten().cloned().collect();
        c.sort();
        c.dedup();
        c
    } else {
        let loose = files
            .iter()
            .zip(&per_file)
            .find(|(_, c)| c.is_none())
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_default();
        return Err(bad(format!(
            "{} mixes images in class subfolders with images at its top level (e.g. {loose}); \
             put every image in a class folder, or none",
            dir.display()
        )));
    };
    if classes.len() > 256 {
        return Err(bad(format!(
            "{} classes; at most 256 are supported",
            classes.len()
        )));
    }
    let read = |p: &Path, channels: usize| {
        let bytes = fs::read(p).map_err(|e| Error::io(p, e))?;
        decode(&bytes, channels, DecodeLimits::default())
            .map_err(|e| bad(format!("{}: {e}", p.display())))
    };
    let [channels, height, width] = match shape {
        Some(s) => s,
        None => {
            let bytes = fs::read(&files[0]).map_err(|e| Error::io(&files[0], e))?;
            let grey = image::load_from_memory(&bytes)
                .map(|i| i.color().channel_count() <= 2)
                .map_err(|e| bad(format!("{}: {e}", files[0].display())))?;
            let c = if grey { 1 } else { 3 };
            let first = read(&files[0], c)?;
            [c, first.height, first.width]
        }
    };
    let mut pixels = Vec::with_capacity(files.len() * channels * height * width);
    let mut labels = Vec::with_capacity(if classes.is_empty() { 0 } else { files.len() });
    for (p, class) in files.iter().zip(&per_file) {
        let img = read(p, channels)?;
        if (img.height, img.width) != (height, width) {
            return Err(bad(format!(
                "{} is {}x{} (width x height); every image must be {width}x{height} \
                 (resize the folder first)",
                p.display(),
                img.width,
                img.height
            )));
        }
        pixels.extend_from_slice(&img.data);
        if let Some(c) = class {
            let k = classes.binary_search(c).unwrap_or_default();
            labels.push(k as u8);
        }
    }
    Ok(FolderDataset {
        images: ImageArray {
            name: name.into(),
            channels,
            height,
            width,
            pixels,
            labels: (!classes.is_empty()).then_some(labels),
        },
        classes,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32, v: u8) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        image::GrayImage::from_pixel(w, h, image::Luma([v]))
            .save(path)
            .expect("save");
    }

    #[test]
    fn class_folders_give_sorted_labels_in_path_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        png(&dir.path().join("shirt/b.png"), 4, 3, 10);
        png(&dir.path().join("shirt/a.png"), 4, 3, 20);
        png(&dir.path().join("boot/x.png"), 4, 3, 30);
        // A thumbnail cache of another size: neither a class nor an example.
        png(&dir.path().join(".thumbs/x.png"), 2, 2, 40);
        png(&dir.path().join("boot/.x.png"), 2, 2, 40);
        let d = load("t", dir.path(), None).expect("load");
        assert_eq!(d.classes, ["boot", "shirt"]);
        assert_eq!(
            (d.images.channels, d.images.height, d.images.width),
            (1, 3, 4)
        );
        assert_eq!(d.images.labels, Some(vec![0, 1, 1]));
        // boot/x, shirt/a, shirt/b
        assert_eq!(d.images.pixels[0], 30);
        assert_eq!(d.images.pixels[12], 20);
        assert_eq!(d.images.pixels[24], 10);
        let rgb = load("t", dir.path(), Some([3, 3, 4])).expect("load rgb");
        assert_eq!(rgb.images.pixels.len(), 3 * 3 * 12);
    }

    #[test]
    fn flat_folders_are_unlabelled_and_bad_folders_fail_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        png(&dir.path().join("a.png"), 2, 2, 1);
        png(&dir.path().join("b.png"), 2, 2, 2);
        let d = load("t", dir.path(), None).expect("load");
        assert!(d.classes.is_empty());
        assert_eq!(d.images.labels, None);
        assert_eq!(d.images.len(), 2);

        png(&dir.path().join("c.png"), 3, 2, 1);
        let e = load("t", dir.path(), None).expect_err("size").to_string();
        assert!(e.contains("c.png") && e.contains("2x2"), "{e}");

        let mixed = tempfile::tempdir().expect("tempdir");
        png(&mixed.path().join("a.png"), 2, 2, 1);
        png(&mixed.path().join("cls/b.png"), 2, 2, 1);
        let e = load("t", mixed.path(), None)
            .expect_err("mixed")
            .to_string();
        assert!(e.contains("mixes"), "{e}");

        let empty = tempfile::tempdir().expect("tempdir");
        assert!(load("t", empty.path(), None).is_err());
        fs::write(empty.path().join("broken.png"), b"not a png").expect("write");
        let e = load("t", empty.path(), None)
            .expect_err("corrupt")
            .to_string();
        assert!(e.contains("broken.png"), "{e}");
    }
}
