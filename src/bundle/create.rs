//! `sslmem bundle create`'s library part: a bundle from ONNX files exported elsewhere. The
//! manifest is read off the first model and the options; the models are copied in with their
//! external data (renamed, references rewritten) and hashed; the result is loaded, which
//! runs the encoder contract, before it is moved into place.

use std::fs;
use std::path::{Path, PathBuf};

use super::contract::FIXED_BATCH;
use super::load::Bundle;
use super::manifest::{
    read_manifest, write_manifest, InputSpec, Manifest, ModelFile, RepresentationSpec, FORMAT,
    MANIFEST,
};
use crate::augment::AugmentSpec;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::runtime::{ElementType, EncoderSession, Layout, Pooling, RuntimeOptions};

/// What `sslmem bundle create` needs to know beyond the model files.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub augment: Option<AugmentSpec>,
    /// Which output is the representation; needed when a model has several outputs and
    /// none is called `representation`.
    pub output: Option<String>,
    /// Input size for models whose height and width are dynamic.
    pub size: Option<(usize, usize)>,
    /// Channel count for models whose channel axis is dynamic (else: one per mean value).
    pub channels: Option<usize>,
    /// Input layout; detected from the input shape when that is unambiguous.
    pub layout: Option<Layout>,
    /// How a token output is pooled into one representation.
    pub pooling: Option<Pooling>,
    /// Outputs to record as the encoder's layers (none unless named).
    pub layers: Vec<String>,
    /// Accept an `f` and a `g` that are the same model (with a warning) instead of refusing:
    /// for a deliberate null control, whose scores are all exactly 0.
    pub allow_identical_encoders: bool,
}

/// The input layout: the one asked for, else read from which axis holds 1 or 3 channels,
/// else channels first when every axis is dynamic (PyTorch's and Hugging Face's exports).
fn input_layout(shape: &[Option<usize>], asked: Option<Layout>) -> Result<Layout> {
    if let Some(l) = asked {
        return Ok(l);
    }
    let ch = |d: Option<usize>| matches!(d, Some(1 | 3));
    match (ch(shape[1]), ch(shape[3])) {
        (true, false) => Ok(Layout::Nchw),
        (false, true) => Ok(Layout::Nhwc),
        _ if shape[1..].iter().all(Option::is_none) => Ok(Layout::Nchw),
        _ => Err(Error::Param(format!(
            "cannot tell the layout of input shape {shape:?}: say `--layout nchw` (channels \
             first, PyTorch) or `--layout nhwc` (channels last, TensorFlow/tf2onnx)"
        ))),
    }
}

/// Makes a bundle in `out` from ONNX files exported elsewhere: reads names, shapes, element
/// types and layout from the first model; copies every model in as `f0.onnx`, ...,
/// `g0.onnx`, ... with its external data files (renamed `f0.onnx.data`, ... and the model's
/// references rewritten), computes hashes, writes the manifest, then loads the result, which
/// runs real views through every encoder ([`Bundle::load`]). Everything is built in a
/// temporary folder beside `out` and renamed into place at the end: a failure leaves
/// nothing behind.
///
/// # Errors
/// [`Error::Param`] for options the models need and lack (size, channels, layout, output,
/// pooling); [`Error::Bundle`] or [`Error::Model`] when a model breaks the encoder contract;
/// [`Error::Io`] when files cannot be read or written.
pub fn create(
    out: &Path,
    f: &[PathBuf],
    g: &[PathBuf],
    opts: &CreateOptions,
    rt: &RuntimeOptions,
) -> Result<Manifest> {
    if f.is_empty() {
        return Err(Error::Param(
            "give at least one --f model (and --g models for SSLMem scores; without --g the \
             bundle is a one-model bundle)"
                .into(),
        ));
    }
    check_out(out)?;
    let (manifest, assumed_channels) = describe(&f[0], opts, rt)?;
    let channels = manifest.input.channels;
    let tmp = staging(out)?;
    let built = (|| -> Result<Manifest> {
        let copy = |side: &str, files: &[PathBuf]| -> Result<Vec<ModelFile>> {
            files
                .iter()
                .enumerate()
                .map(|(i, src)| copy_model(src, &tmp, &format!("{side}{i}")))
                .collect()
        };
        let manifest = Manifest {
            f: copy("f", f)?,
            g: copy("g", g)?,
            ..manifest
        };
        check_identical(&manifest, f, g, opts.allow_identical_encoders)?;
        write_manifest(&tmp, &manifest)?;
        Bundle::load_manifest(&tmp, read_manifest(&tmp)?, rt)?;
        Ok(manifest)
    })();
    let placed = built.and_then(|m| place(&tmp, out).map(|()| m));
    if placed.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    placed.map_err(|e| as_asked(e, &tmp, out, assumed_channels.then_some(channels)))
}

/// Refuses an `out` that is a file or a folder with something in it.
fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::bundle(
            out,
            "exists and is not a folder; choose a new folder",
        ));
    }
    let occupied = out.exists()
        && fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some();
    if occupied {
        return Err(Error::bundle(
            out,
            "already exists and is not empty; choose a new folder",
        ));
    }
    Ok(())
}

/// A new, empty temporary folder beside `out` (on the same file system, so that it can be
/// renamed into place).
fn staging(out: &Path) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = out
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{base}.partial-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    Ok(tmp)
}

/// Moves the built bundle `tmp` to `out`: a rename, or into an existing empty folder.
fn place(tmp: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        // An empty folder (perhaps a mount point, which cannot be replaced): move the files
        // in, the manifest last, so that a folder without it is never taken for a bundle.
        let mut names: Vec<_> = fs::read_dir(tmp)
            .map_err(|e| Error::io(tmp, e))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort_by_key(|n| n == MANIFEST);
        for n in names {
            let (from, to) = (tmp.join(&n), out.join(&n));
            if fs::rename(&from, &to).is_err() {
                copy_tree(&from, &to)?;
            }
        }
        let _ = fs::remove_dir_all(tmp);
    } else {
        fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(())
}

/// An error of building in `tmp` as the user should read it: naming `out`, not the
/// temporary folder, with a hint when the channel count was assumed (`assumed_channels`).
fn as_asked(e: Error, tmp: &Path, out: &Path, assumed_channels: Option<usize>) -> Error {
    let e = match e {
        Error::Bundle { path, reason } => Error::Bundle {
            path: path
                .strip_prefix(tmp)
                .map_or_else(|_| path.clone(), |rel| out.join(rel)),
            reason,
        },
        other => other,
    };
    // Errors about the options (Param) already say what to change; a model's own refusal
    // may come from the assumed channel count.
    match assumed_channels {
        Some(c) if !matches!(e, Error::Io { .. } | Error::Param(_)) => Error::Param(format!(
            "{e}\nhint: the model's channel axis is dynamic and {c} channel(s) were assumed \
             (from --channels or the number of --mean values); if it takes another count, \
             give --channels N (or N comma-separated --mean/--std values)"
        )),
        _ => e,
    }
}

/// Refuses (or, when `allow`, logs a warning for) each `f` and `g` that are the same model,
/// naming both as the user gave them (`f_src`, `g_src`) and saying why.
fn check_identical(m: &Manifest, f_src: &[PathBuf], g_src: &[PathBuf], allow: bool) -> Result<()> {
    let mut found = Vec::new();
    for (i, j) in m.identical_encoders() {
        let (a, b) = (&f_src[i], &g_src[j]);
        let same_file = matches!(
            (fs::canonicalize(a), fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        );
        let how = if same_file {
            "are the same file".to_string()
        } else if m.f[i].sha256.eq_ignore_ascii_case(&m.g[j].sha256) {
            format!("have the same contents (sha256 {})", m.f[i].sha256)
        } else {
            "have the same weights (identical external data files)".to_string()
        };
        found.push(format!("--f {} and --g {} {how}", a.display(), b.display()));
    }
    if found.is_empty() {
        return Ok(());
    }
    let why = "an f and a g that are the same model align every image's views identically, \
               so with one encoder per side every score would be exactly 0 (with more, that \
               model pulls every score towards 0) and the audit would read \"nothing \
               memorized\" whatever f memorized";
    if allow {
        tracing::warn!(
            "{}: {why}; accepted because of --allow-identical-encoders",
            found.join("; ")
        );
        return Ok(());
    }
    Err(Error::Param(format!(
        "{}: refused, because {why}. Give as --g an encoder trained without the audited data; \
         if identical encoders are intended (a null control), pass --allow-identical-encoders",
        found.join("; ")
    )))
}

/// The manifest (without model files) that fits the first model and the options, and whether
/// the channel count was assumed (the model's channel axis is dynamic).
fn describe(model: &Path, opts: &CreateOptions, rt: &RuntimeOptions) -> Result<(Manifest, bool)> {
    let probe = EncoderSession::load(model, rt)?;
    let name = model.display().to_string();
    let refuse = |reason: String| Error::Model {
        model: name.clone(),
        reason,
    };
    let shape = &probe.input.shape;
    if shape.len() != 4 {
        return Err(refuse(format!(
            "input shape {shape:?} is not an image batch ([batch, channels, height, width] or \
             [batch, height, width, channels])"
        )));
    }
    if shape[0] == Some(1) {
        return Err(refuse(FIXED_BATCH.into()));
    }
    let layout = input_layout(shape, opts.layout)?;
    let (c, h, w) = match layout {
        Layout::Nchw => (shape[1], shape[2], shape[3]),
        Layout::Nhwc => (shape[3], shape[1], shape[2]),
    };
    let channels = match (c, opts.channels) {
        (Some(c), Some(asked)) if c != asked => {
            return Err(Error::Param(format!(
                "--channels {asked}, but the model's input has {c} channels"
            )))
        }
        (Some(c), _) => c,
        (None, Some(asked)) => asked,
        (None, None) => opts.mean.len(),
    };
    check_normalization(opts, channels, c.is_some())?;
    // One mean/std value for several channels is the same value for each.
    let per_channel = |v: &[f32]| match v {
        [one] if channels > 1 => vec![*one; channels],
        _ => v.to_vec(),
    };
    let (height, width) = input_size(h, w, opts.size)?;
    let element = probe.input.element_type().unwrap_or_default();
    let bytes = opts.mean.iter().all(|m| m.abs() < 1e-6)
        && opts.std.iter().all(|s| (s * 255.0 - 1.0).abs() < 1e-4);
    if element == ElementType::Uint8 && !bytes {
        return Err(Error::Param(
            "the model takes uint8 pixels: give --mean 0 --std 0.00392156862745098 (1/255), so \
             that the values fed are the pixel bytes 0-255"
                .into(),
        ));
    }
    let output = representation_output(&probe, opts.output.as_deref())?;
    let manifest = Manifest {
        format: FORMAT.into(),
        name: opts.name.clone(),
        input: InputSpec {
            name: probe.input.name.clone(),
            channels,
            height,
            width,
            mean: per_channel(&opts.mean),
            std: per_channel(&opts.std),
            layout,
            element,
        },
        representation: RepresentationSpec {
            output,
            layers: opts.layers.clone(),
            pooling: opts.pooling,
        },
        augment: opts.augment.clone(),
        f: Vec::new(),
        g: Vec::new(),
        architecture: None,
        split: None,
        training: None,
        subsample: None,
    };
    Ok((manifest, c.is_none()))
}

/// The input's height and width: the ones asked for (`--height`, `--width`), else the model's.
fn input_size(
    h: Option<usize>,
    w: Option<usize>,
    asked: Option<(usize, usize)>,
) -> Result<(usize, usize)> {
    let (height, width) = match (h, w, asked) {
        (_, _, Some(s)) => s,
        (Some(h), Some(w), None) => (h, w),
        _ => {
            return Err(Error::Param(
                "the model's height/width are dynamic: give --height and --width".into(),
            ))
        }
    };
    if height == 0 || width == 0 {
        return Err(Error::Param(format!(
            "--height {height} --width {width}: the input size must be positive"
        )));
    }
    Ok((height, width))
}

/// The representation output: the one asked for (`--output`), else the model's only output,
/// else the one called `representation`.
fn representation_output(probe: &EncoderSession, asked: Option<&str>) -> Result<String> {
    if let Some(o) = asked {
        return Ok(o.to_string());
    }
    match probe.outputs.as_slice() {
        [one] => Ok(one.name.clone()),
        many => many
            .iter()
            .find(|o| o.name == crate::onnx::REPRESENTATION)
            .map(|o| o.name.clone())
            .ok_or_else(|| {
                let names: Vec<&str> = many.iter().map(|o| o.name.as_str()).collect();
                Error::Param(format!("the model has outputs {names:?}: say which is the representation with --output"))
            }),
    }
}

/// Checks `--mean` and `--std` against the model's `channels` (read from the model when
/// `from_model`, else from `--channels` or the number of `--mean` values), in terms of the
/// flags: the manifest they become is not the user's to fix.
fn check_normalization(opts: &CreateOptions, channels: usize, from_model: bool) -> Result<()> {
    let source = if from_model {
        format!("the model takes {channels} channel(s)")
    } else {
        format!("{channels} channel(s) were asked for (--channels, or the number of --mean values)")
    };
    if !matches!(channels, 1 | 3) {
        return Err(Error::Param(format!(
            "{source}; sslmem feeds images as 1 (grey) or 3 (RGB) channels"
        )));
    }
    for (flag, values) in [("--mean", &opts.mean), ("--std", &opts.std)] {
        let n = values.len();
        if n != 1 && n != channels {
            return Err(Error::Param(format!(
                "{flag} has {n} values but {source}: give 1 value (used for every channel) or \
                 {channels}, comma-separated"
            )));
        }
    }
    if opts.mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::Param("--mean values must be finite numbers".into()));
    }
    if opts.std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
        return Err(Error::Param(
            "--std values must be positive finite numbers (the model sees (x - mean) / std)".into(),
        ));
    }
    Ok(())
}

/// Copies a model into `dir` as `STEM.onnx`; a model whose weights live in external data
/// files gets them copied as `STEM.onnx.data` (`STEM.onnx.K.data` for several) and its
/// references rewritten to those names, so that every bundle file has its own name and hash.
fn copy_model(src: &Path, dir: &Path, stem: &str) -> Result<ModelFile> {
    use onnx_protobuf::Message;
    let bytes = fs::read(src).map_err(|e| Error::io(src, e))?;
    let file = format!("{stem}.onnx");
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| Error::bundle(src, format!("not an ONNX model: {e}")))?;
    let mut locations: Vec<String> = Vec::new();
    let tensors = model.graph.as_mut().map(|g| g.initializer.iter_mut());
    for t in tensors.into_iter().flatten() {
        for entry in t.external_data.iter_mut().filter(|e| e.key == "location") {
            let k = match locations.iter().position(|l| *l == entry.value) {
                Some(k) => k,
                None => {
                    locations.push(entry.value.clone());
                    locations.len() - 1
                }
            };
            entry.value = data_name(stem, k);
        }
    }
    // Initializers are where exporters put external weights; anywhere else is refused by name
    // rather than failing later with a confusing file-not-found.
    let elsewhere = model.graph.as_ref().is_some_and(|g| {
        g.sparse_initializer
            .iter()
            .any(|t| !t.values.external_data.is_empty() || !t.indices.external_data.is_empty())
            || g.node.iter().any(|n| {
                n.attribute.iter().any(|a| {
                    !a.t.external_data.is_empty()
                        || a.tensors.iter().any(|t| !t.external_data.is_empty())
                })
            })
    });
    if elsewhere {
        return Err(Error::bundle(
            src,
            "has external data outside the graph's initializers (in a Constant node or a sparse \
             tensor); save it with its weights inside the model (onnx.save(onnx.load(path), new_path)) \
             or as initializers",
        ));
    }
    let mut external_data = Vec::new();
    let bytes = if locations.is_empty() {
        bytes
    } else {
        let from = src.parent().unwrap_or(Path::new("."));
        for (k, loc) in locations.iter().enumerate() {
            let rel = Path::new(loc);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::bundle(
                    src,
                    format!(
                        "external data location '{loc}' must be a relative path beside the model"
                    ),
                ));
            }
            let data_src = from.join(rel);
            let name = data_name(stem, k);
            fs::copy(&data_src, dir.join(&name)).map_err(|e| Error::io(&data_src, e))?;
            external_data.push(ModelFile {
                sha256: sha256_file(&dir.join(&name))?,
                path: name,
                external_data: Vec::new(),
            });
        }
        model.write_to_bytes().map_err(|e| {
            Error::bundle(
                src,
                format!("cannot rewrite the external data references: {e}"),
            )
        })?
    };
    write_atomic(&dir.join(&file), &bytes)?;
    Ok(ModelFile {
        sha256: sha256_file(&dir.join(&file))?,
        path: file,
        external_data,
    })
}

/// Copies a file or a folder (across file systems, where a rename cannot).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        for e in fs::read_dir(from)
            .map_err(|e| Error::io(from, e))?
            .flatten()
        {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| Error::io(from, e))
    }
}

fn data_name(stem: &str, k: usize) -> String {
    if k == 0 {
        format!("{stem}.onnx.data")
    } else {
        format!("{stem}.onnx.{k}.data")
    }
}
