//! What the command line accepts as INPUT: image files, folders (searched recursively for
//! images), named datasets (`fashion-mnist:train`, `fashion-mnist:test`, `mnist`) and IDX
//! image files, the last two with an optional `[start:end]` range, and input lists
//! (`@FILE`: one INPUT of any of these kinds per line).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{idx, to_channels, ImageArray};
use crate::error::{Error, InputError, Result};
use crate::pixels::{decode, DecodeLimits, SourceImage};

const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "pgm", "ppm", "pnm", "pbm",
];

/// One input to score.
#[derive(Clone, Debug)]
pub struct Input {
    /// How the input is named in results: a path, or `dataset#index`.
    pub name: String,
    source: Source,
}

#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Example(Arc<ImageArray>, usize),
}

impl Input {
    pub fn file(path: PathBuf) -> Self {
        Self {
            name: path.display().to_string(),
            source: Source::File(path),
        }
    }

    /// Example `index` of an in-memory dataset, named `name` in results.
    pub fn example(name: String, data: Arc<ImageArray>, index: usize) -> Self {
        Self {
            name,
            source: Source::Example(data, index),
        }
    }

    /// Reads and decodes the input, converted to `channels`.
    pub fn load(&self, channels: usize, limits: DecodeLimits) -> Result<SourceImage, InputError> {
        match &self.source {
            Source::File(p) => {
                let meta = fs::metadata(p).map_err(|e| InputError::Io(e.to_string()))?;
                // A compressed file can hardly be larger than its raw pixels; refuse absurd ones early.
                let max_bytes = limits.max_pixels.saturating_mul(8).saturating_add(1 << 20);
                if meta.len() > max_bytes {
                    return Err(InputError::Io(format!(
                        "file is {} bytes, more than the pixel limit allows",
                        meta.len()
                    )));
                }
                let bytes = fs::read(p).map_err(|e| InputError::Io(e.to_string()))?;
                decode(&bytes, channels, limits)
            }
            Source::Example(arr, i) => to_channels(arr.get(*i)?, channels),
        }
    }

    /// What makes two inputs the same image source: a file's canonical path (so `a/./b.png`
    /// and a link to it are one file), a dataset example's name.
    pub fn source_key(&self) -> String {
        match &self.source {
            Source::File(p) => fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            Source::Example(..) => self.name.clone(),
        }
    }

    /// The label, for dataset examples that have one.
    pub fn label(&self) -> Option<u8> {
        match &self.source {
            Source::Example(arr, i) => arr.label(*i),
            Source::File(_) => None,
        }
    }
}

/// Splits `name[start:end]` into the name and the range (either end may be omitted).
/// A `[start:end]` suffix; either end may be missing.
type Range = (Option<usize>, Option<usize>);

fn split_range(spec: &str) -> Result<(&str, Option<Range>)> {
    let Some(open) = spec.rfind('[').filter(|_| spec.ends_with(']')) else {
        return Ok((spec, None));
    };
    let inner = &spec[open + 1..spec.len() - 1];
    let parse = |s: &str| -> Result<Option<usize>> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| Error::Param(format!("'{spec}': '{s}' is not an index")))
        }
    };
    let range = match inner.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let i = parse(inner)?.ok_or_else(|| Error::Param(format!("'{spec}': empty index")))?;
            (Some(i), Some(i + 1))
        }
    };
    Ok((&spec[..open], Some(range)))
}

/// Resolves INPUT arguments into a flat, ordered list. Datasets are loaded once each.
///
/// `@FILE` is an input list: each line of `FILE` is one INPUT (a relative path is taken
/// from `FILE`'s folder; blank lines and lines starting with `#` are skipped); a list may
/// not name another list.
///
/// Errors: an argument that is no file, folder, dataset or list; a range outside a dataset;
/// an unreadable or nested list.
pub fn resolve(args: &[String]) -> Result<Vec<Input>> {
    let mut cache: HashMap<String, Arc<ImageArray>> = HashMap::new();
    let mut out = Vec::new();
    for arg in &expand_lists(args)? {
        // An existing file or folder is taken as it is, brackets and all (`shots[draft]/`).
        let (base, range) = if Path::new(arg).exists() {
            (arg.as_str(), None)
        } else {
            split_range(arg)?
        };
        let path = Path::new(base);
        let dataset = match named_dataset(base) {
            Some(key) => Some(key.to_string()),
            None if path.is_file() && looks_like_idx(path) => Some(base.to_string()),
            None => None,
        };
        if let Some(key) = dataset {
            let arr = match cache.get(&key) {
                Some(a) => a.clone(),
                None => {
                    let a = Arc::new(load_dataset(&key)?);
                    cache.insert(key.clone(), a.clone());
                    a
                }
            };
            let n = arr.len();
            let (start, end) = range.map_or((0, n), |(a, b)| (a.unwrap_or(0), b.unwrap_or(n)));
            if start > end || end > n {
                return Err(Error::Param(format!(
                    "'{arg}': range {start}..{end} is outside 0..{n}"
                )));
            }
            out.extend((start..end).map(|i| Input {
                name: format!("{key}#{i}"),
                source: Source::Example(arr.clone(), i),
            }));
            continue;
        }
        if range.is_some() && !Path::new(arg).exists() {
            return Err(Error::Param(format!(
                "'{arg}': ranges apply to datasets and IDX files only"
            )));
        }
        let path = Path::new(arg);
        if path.is_dir() {
            out.extend(image_files(path)?.into_iter().map(Input::file));
        } else if path.exists() {
            out.push(Input::file(path.to_path_buf()));
        } else {
            return Err(Error::Param(format!(
                "input '{arg}' is not a file, a folder, or a dataset ({})",
                super::named::input_names()
            )));
        }
    }
    Ok(out)
}

/// `args` with each `@FILE` replaced by the inputs its lines name, in order.
fn expand_lists(args: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let Some(list) = arg.strip_prefix('@') else {
            out.push(arg.clone());
            continue;
        };
        let path = Path::new(list);
        let text = fs::read_to_string(path).map_err(|e| {
            Error::Param(format!(
                "input list '{arg}' cannot be read ({e}); `@FILE` names a text file with one \
                 input per line"
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('@') {
                return Err(Error::Param(format!(
                    "input list '{arg}', line {}: '{line}' names another list; lists do not \
                     nest",
                    n + 1
                )));
            }
            // Datasets keep their names; a relative path is relative to the list.
            let (name, _) = split_range(line)?;
            if named_dataset(name).is_some() || Path::new(line).is_absolute() {
                out.push(line.to_string());
            } else {
                out.push(base.join(line).display().to_string());
            }
        }
    }
    Ok(out)
}

/// The key [`load_dataset`] takes for a dataset input name (`mnist:digits` is `mnist`), from
/// the registry of named datasets ([`super::named`]); `None` for anything else.
fn named_dataset(name: &str) -> Option<&'static str> {
    super::named::by_input(name).map(|(_, key)| key)
}

fn looks_like_idx(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.contains("-idx3-ubyte") || name.ends_with(".idx")
}

/// Loads a dataset by name (see [`resolve`]).
pub fn load_dataset(key: &str) -> Result<ImageArray> {
    match super::named::by_input(key) {
        Some((d, key)) => d.load_input(key),
        None => idx::load(key, Path::new(key), None),
    }
}

/// The image files under `dir`, recursively, sorted by path: the order in which folders are
/// scored and in which folder datasets number their examples. Hidden entries (names starting
/// with `.`) are skipped, files and folders alike, below `dir` (`dir` itself may be hidden).
///
/// # Errors
/// [`Error::Io`] when a folder cannot be listed.
///
/// A folder reached twice (a symbolic link back to a parent, or two links to one folder) is
/// walked once: its images are not counted again.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(dir, &mut files, &mut std::collections::HashSet::new())?;
    files.sort();
    Ok(files)
}

fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    let real = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !visited.insert(real) {
        tracing::debug!(
            "{} was already searched (a link to it): skipped",
            dir.display()
        );
        return Ok(());
    }
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        // Hidden entries are not the user's images: thumbnail caches (.thumbs/), macOS
        // resource forks (._a.png, which fail to decode), version control folders.
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out, visited)?;
        } else if p
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(split_range("a").expect("ok"), ("a", None));
        assert_eq!(
            split_range("fashion-mnist:test[2:5]").expect("ok"),
            ("fashion-mnist:test", Some((Some(2), Some(5))))
        );
        assert_eq!(
            split_range("x[:5]").expect("ok"),
            ("x", Some((None, Some(5))))
        );
        assert_eq!(
            split_range("x[7]").expect("ok"),
            ("x", Some((Some(7), Some(8))))
        );
        assert!(split_range("x[a:b]").is_err());
    }

    #[test]
    fn folders_are_walked_in_order_and_unknown_inputs_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        for p in ["b.png", "a.PNG", "sub/c.jpg", "notes.txt"] {
            fs::write(dir.path().join(p), b"x").expect("write");
        }
        let got = resolve(&[dir.path().display().to_string()]).expect("resolve");
        let names: Vec<String> = got
            .iter()
            .map(|i| i.name.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["a.PNG", "b.png", "c.jpg"]);
        assert!(resolve(&["/no/such/thing".into()]).is_err());
        // Hidden files and folders are skipped inside a folder, but taken when named.
        fs::create_dir_all(dir.path().join("sub/.thumbs")).expect("mkdir");
        for p in [".hidden.png", "._b.png", "sub/.thumbs/t.png", "sub/.d.png"] {
            fs::write(dir.path().join(p), b"x").expect("write");
        }
        let names = |args: &[String]| -> Vec<String> {
            resolve(args)
                .expect("resolve")
                .iter()
                .map(|i| i.name.rsplit('/').next().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(
            names(&[dir.path().display().to_string()]),
            ["a.PNG", "b.png", "c.jpg"]
        );
        let thumbs = dir.path().join("sub/.thumbs");
        assert_eq!(names(&[thumbs.display().to_string()]), ["t.png"]);
        // A link back to a parent folder is not followed round again.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/back")).expect("link");
            assert_eq!(
                names(&[dir.path().display().to_string()]),
                ["a.PNG", "b.png", "c.jpg"]
            );
            fs::remove_file(dir.path().join("sub/back")).expect("unlink");
        }
        let hidden = dir.path().join(".hidden.png");
        assert_eq!(names(&[hidden.display().to_string()]), [".hidden.png"]);

        // An input list: relative paths from the list's folder, comments and blanks skipped,
        // absolute paths as they are; the order is the list's.
        let list = dir.path().join("sub/list.txt");
        let abs = dir.path().join("b.png");
        fs::write(
            &list,
            format!("# members\n\nc.jpg\n  {}  \n../a.PNG\n", abs.display()),
        )
        .expect("write");
        let got = resolve(&[format!("@{}", list.display())]).expect("list");
        let names: Vec<String> = got
            .iter()
            .map(|i| i.name.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["c.jpg", "b.png", "a.PNG"]);
        // A folder whose name has brackets is a folder, not a range.
        let bracketed = dir.path().join("shots[draft]");
        fs::create_dir_all(&bracketed).expect("mkdir");
        fs::write(bracketed.join("s.png"), b"x").expect("write");
        assert_eq!(
            resolve(&[bracketed.display().to_string()])
                .expect("folder")
                .len(),
            1
        );
        fs::write(&list, "@other.txt\n").expect("write");
        let e = resolve(&[format!("@{}", list.display())]).expect_err("nested");
        assert!(e.to_string().contains("do not nest"), "{e}");
        let e = resolve(&["@/no/such/list".into()]).expect_err("missing list");
        assert!(e.to_string().contains("one input per line"), "{e}");
        // A file that is not an image is resolved, then fails alone when loaded.
        let bad = Input::file(dir.path().join("b.png"));
        assert!(bad.load(1, DecodeLimits::default()).is_err());
    }
}
