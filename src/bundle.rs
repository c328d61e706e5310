//! Model bundles: a folder with `sslmem.json` (the manifest) and the ONNX encoders.
//! `f` encoders were trained with the audited data, `g` encoders without it.
//! See `docs/bundle.md` for the format.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;
use crate::data::split::SplitRecord;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::onnx::{self, ExportOptions};
use crate::recipe::{MonitorSpec, Recorded, RunRecord, TrainConfig};
use crate::runtime::{Boundary, ElementType, EncoderSession, Layout, Pooling, RuntimeOptions};

pub const FORMAT: &str = "sslmem-bundle/1";

/// The refusal of a model whose batch axis is fixed at 1, with the fix for both of
/// PyTorch's exporters (docs/bundle.md#bundles-from-elsewhere).
const FIXED_BATCH: &str = "the batch axis is fixed at 1: export with a dynamic batch axis \
    (PyTorch: torch.onnx.export(..., dynamo=True, dynamic_shapes=({0: \
    torch.export.Dim('batch')},)), or dynamic_axes={'input': {0: 'batch'}} with dynamo=False; \
    see docs/bundle.md)";
pub const MANIFEST: &str = "sslmem.json";

/// The encoders' image input: its name, size, normalisation, and how it is fed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Per-channel normalisation `(x - mean) / std` of pixels in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// `nchw` (absent) or `nhwc`: the session transposes at the boundary.
    #[serde(default, skip_serializing_if = "is_default")]
    pub layout: Layout,
    /// `float32` (absent), `float16` (cast at the boundary) or `uint8` (the normalised values,
    /// rounded; with mean 0 and std 1/255 they are the pixel bytes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub element: ElementType,
}

impl InputSpec {
    /// A smooth gradient at the input's size: real pixels for the load-time contract check and
    /// the service's warm-up, independent of any dataset.
    pub fn probe_image(&self) -> Result<crate::pixels::SourceImage> {
        let plane = (self.height * self.width).max(1);
        let pixels = (0..self.channels * self.height * self.width)
            .map(|k| ((k % plane) * 255 / plane) as u8)
            .collect();
        crate::pixels::SourceImage::new(self.channels, self.height, self.width, pixels)
            .map_err(|e| Error::Param(format!("the bundle's input size: {e}")))
    }
}

/// Which output is the representation, and how it is read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepresentationSpec {
    pub output: String,
    /// Per-layer outputs (`layer1`...), present when the encoders export them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// How a token output `[batch, tokens, dim]` is pooled; absent for a matrix output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
}

/// A file of the bundle: its path relative to the bundle folder and its SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub path: String,
    pub sha256: String,
    /// The model's external data files (weights stored beside the graph), checked the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_data: Vec<ModelFile>,
}

/// Whether two manifest entries are the same model (see [`Manifest::identical_encoders`]).
fn same_model(a: &ModelFile, b: &ModelFile) -> bool {
    let data = |m: &ModelFile| -> Vec<String> {
        m.external_data
            .iter()
            .map(|d| d.sha256.to_ascii_lowercase())
            .collect()
    };
    let (da, db) = (data(a), data(b));
    da == db && (a.sha256.eq_ignore_ascii_case(&b.sha256) || !da.is_empty())
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A canary file is checked like a model file: relative path inside the bundle, SHA-256.
impl From<&crate::data::split::CanaryFile> for ModelFile {
    fn from(f: &crate::data::split::CanaryFile) -> Self {
        Self {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
            external_data: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub input: InputSpec,
    pub representation: RepresentationSpec,
    /// Training augmentations; absent means SimCLR's defaults
    /// (docs/science.md#training-augmentations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
    pub f: Vec<ModelFile>,
    pub g: Vec<ModelFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<serde_json::Value>,
    /// Which example of the training data is in which set; written by `sslmem-train pair`,
    /// absent in bundles made with `sslmem bundle create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitRecord>,
    /// How the encoders were trained; written by `sslmem-train pair`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRecord>,
}

/// The manifest's `training` record: how `sslmem-train pair` made the encoders, and how
/// `sslmem-train eval` last re-evaluated them.
///
/// Every field may be missing (bundles made by older versions lack `monitor` or
/// `eval_command`, for instance); fields this version does not know are kept in `other`, so
/// a manifest read and written back loses nothing. `subset` and
/// `raw_pixel_linear_probe_accuracy` are written as `null` when unset, as the trainer always
/// has; the other optional fields are left out.
///
/// The trainer's own records (`config`, `runs`, `monitor`) are typed ([`crate::recipe`]);
/// one this version cannot read is kept as the JSON it was ([`Recorded::Other`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingRecord {
    /// What the scored output is, in words (backbone or projector output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub representation: Option<String>,
    /// The trainer's recipe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Recorded<TrainConfig>>,
    /// The dataset the encoders were trained on, as given to `--dataset` (e.g.
    /// `fashion-mnist`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// `(train, test)` example counts the dataset was cut to (`--subset`, `--test-subset`);
    /// `None`: all of it.
    pub subset: Option<(usize, usize)>,
    /// One record per trained encoder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Recorded<Vec<RunRecord>>>,
    /// Test accuracy, in [0, 1], of a linear probe on raw pixels: the baseline the encoders'
    /// probes are compared with. `None` for unlabelled data.
    pub raw_pixel_linear_probe_accuracy: Option<f64>,
    /// The memorization monitor's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Recorded<MonitorSpec>>,
    /// The device trained on, as the trainer prints it (e.g. `Cpu`, `Cuda(0)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The training command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The version of sslmem that trained the encoders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslmem_version: Option<String>,
    /// The command line of the last `sslmem-train eval`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_command: Option<String>,
    /// Fields this version does not know, written back as they were read (after the known
    /// ones).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// The `(train, test)` subset sizes the encoders were trained with (`training.subset`);
    /// `None` when the whole dataset was used or nothing is recorded.
    pub fn training_subset(&self) -> Option<(usize, usize)> {
        self.training.as_ref()?.subset
    }

    /// The dataset the encoders were trained on (`training.dataset`), if recorded.
    pub fn training_dataset(&self) -> Option<&str> {
        self.training.as_ref()?.dataset.as_deref()
    }

    /// Pairs `(i, j)` where `f[i]` and `g[j]` are the same model by their hashes: the same
    /// SHA-256 and the same external data, or (for models with external data, whose graph
    /// files differ once their data references are renamed) the same external data files.
    /// Such a pair makes the g side's alignment equal the f side's: the score of every image
    /// is exactly 0, which reads as "nothing memorized".
    pub fn identical_encoders(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, a) in self.f.iter().enumerate() {
            for (j, b) in self.g.iter().enumerate() {
                if same_model(a, b) {
                    out.push((i, j));
                }
            }
        }
        out
    }

    /// What is suspicious about the bundle without being invalid, one sentence each (shown
    /// by `inspect`, logged by [`Bundle::load`]); empty when nothing is.
    pub fn warnings(&self) -> Vec<String> {
        self.identical_encoders()
            .into_iter()
            .map(|(i, j)| {
                format!(
                    "f encoder {} and g encoder {} are the same model (sha256 {}): it \
                     pulls every score towards 0 (with one encoder per side, every score is \
                     exactly 0); g must be trained without the audited data",
                    self.f[i].path, self.g[j].path, self.f[i].sha256
                )
            })
            .collect()
    }

    /// The augmentation spec to score with.
    pub fn augment(&self) -> AugmentSpec {
        self.augment.clone().unwrap_or_default()
    }

    /// Checks what can be checked without opening the models.
    pub fn validate(&self, dir: &Path) -> Result<()> {
        let at = dir.join(MANIFEST);
        let bad = |m: String| Err(Error::bundle(&at, m));
        if self.format != FORMAT {
            return bad(format!("format is '{}', expected '{FORMAT}'", self.format));
        }
        let i = &self.input;
        if !matches!(i.channels, 1 | 3) || i.height == 0 || i.width == 0 {
            return bad(format!(
                "input is {}x{}x{}; need 1 or 3 channels and a positive size",
                i.channels, i.height, i.width
            ));
        }
        if i.mean.len() != i.channels || i.std.len() != i.channels {
            return bad(format!(
                "input.mean and input.std need {} values each",
                i.channels
            ));
        }
        if i.std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return bad("input.std values must be positive".into());
        }
        if self.f.is_empty() || self.g.is_empty() {
            return bad("needs at least one encoder in each of `f` and `g`".into());
        }
        // uint8 inputs get the normalised values rounded to bytes: they must span 0..=255.
        let bytes = |m: f32, s: f32| m.abs() < 1e-6 && (s * 255.0 - 1.0).abs() < 1e-4;
        if i.element == ElementType::Uint8 && !i.mean.iter().zip(&i.std).all(|(m, s)| bytes(*m, *s))
        {
            return bad(
                "the model takes uint8 pixels: give mean 0 and std 0.00392156862745098 (1/255) \
                 for every channel, so that the values fed are the pixel bytes 0-255"
                    .into(),
            );
        }
        if let Some(a) = &self.augment {
            a.validate()
                .map_err(|e| Error::bundle(&at, e.to_string()))?;
        }
        Ok(())
    }
}

/// Reads and parses `DIR/sslmem.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| {
        Error::bundle(
            &path,
            format!(
                "cannot read the manifest ({e}); is {} a model bundle?",
                dir.display()
            ),
        )
    })?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| Error::bundle(&path, format!("invalid manifest: {e}")))?;
    m.validate(dir)?;
    Ok(m)
}

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
    fn load_manifest(dir: &Path, manifest: Manifest, opts: &RuntimeOptions) -> Result<Self> {
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
        let i = &self.manifest.input;
        let image = i
            .probe_image()
            .map_err(|e| Error::bundle(self.dir.join(MANIFEST), e.to_string()))?;
        let augmenter = crate::augment::Augmenter::new(self.manifest.augment(), i.height, i.width)?;
        let norm = crate::augment::Normalize::new(i.mean.clone(), i.std.clone(), i.channels)?;
        let len = i.channels * i.height * i.width;
        let mut views = vec![0f32; 2 * len];
        let planes = image.to_planes();
        for (v, dst) in views.chunks_exact_mut(len).enumerate() {
            norm.write(&augmenter.view(&planes, 0, image.identity(), v as u64), dst);
        }
        let output = &self.manifest.representation.output;
        let mut width = None;
        for enc in self.encoders() {
            let bad = |reason: String| Error::bundle(&enc.path, reason);
            let reps = enc
                .embed(views.clone(), [2, i.channels, i.height, i.width], output)
                .map_err(|e| bad(format!("cannot run a batch of 2 views: {e}")))?;
            if reps.nrows() != 2 {
                return Err(bad(format!(
                    "returned {} row(s) for 2 views: the graph does not keep the batch axis \
                     (a Reshape or Flatten with a fixed batch size?); export with a dynamic batch \
                     axis and reshape with -1 or the input's batch size",
                    reps.nrows()
                )));
            }
            if reps.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "output '{output}' is not finite (NaN or infinity) for real views; the \
                     model or its export is broken (a float16 overflow?)"
                )));
            }
            match width {
                None => width = Some(reps.ncols()),
                Some(w) if w != reps.ncols() => {
                    return Err(bad(format!(
                        "representations are {} wide, the first encoder's {w}; all encoders of a \
                         bundle must match",
                        reps.ncols()
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

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

/// Checks that an encoder takes the manifest's input and produces its representation.
fn check_interface(enc: &EncoderSession, m: &Manifest) -> Result<()> {
    let bad = |reason: String| Err(Error::bundle(&enc.path, reason));
    let i = &m.input;
    if enc.input.name != i.name {
        return bad(format!(
            "model input is '{}', the manifest says '{}'",
            enc.input.name, i.name
        ));
    }
    if enc.input.element_type() != Some(i.element) {
        return bad(format!(
            "model input is {}, the manifest says {:?}",
            enc.input.element, i.element
        ));
    }
    let want = match i.layout {
        Layout::Nchw => [i.channels, i.height, i.width],
        Layout::Nhwc => [i.height, i.width, i.channels],
    };
    let shape = &enc.input.shape;
    let fits = shape.len() == 4
        && shape[1..]
            .iter()
            .zip(want)
            .all(|(d, w)| d.is_none_or(|d| d == w));
    if !fits {
        return bad(format!(
            "model input shape {:?} does not take {:?} images of {}x{}x{} ({} layout)",
            shape,
            i.layout,
            i.channels,
            i.height,
            i.width,
            match i.layout {
                Layout::Nchw => "[batch, channels, height, width]",
                Layout::Nhwc => "[batch, height, width, channels]",
            }
        ));
    }
    if shape[0] == Some(1) {
        return bad(FIXED_BATCH.into());
    }
    let names: Vec<&str> = enc.outputs.iter().map(|o| o.name.as_str()).collect();
    for out in std::iter::once(&m.representation.output).chain(&m.representation.layers) {
        if !names.contains(&out.as_str()) {
            return bad(format!("model has no output '{out}' (it has {names:?})"));
        }
    }
    let rep = enc
        .outputs
        .iter()
        .find(|o| o.name == m.representation.output)
        .map(|o| o.shape.len());
    match (rep, m.representation.pooling) {
        (Some(2), _) | (Some(3), Some(_)) => Ok(()),
        (Some(3), None) => bad(format!(
            "representation output '{}' is a token output [batch, tokens, dim]: choose how \
             tokens become one representation (`--pooling cls`, `mean` or `flatten`)",
            m.representation.output
        )),
        _ => bad(format!(
            "representation output '{}' must be a matrix [batch, dim] (or tokens [batch, \
             tokens, dim] with a pooling)",
            m.representation.output
        )),
    }
}

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
    if f.is_empty() || g.is_empty() {
        return Err(Error::Param(
            "give at least one --f and one --g model".into(),
        ));
    }
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
    let (manifest, assumed_channels) = describe(&f[0], opts, rt)?;
    let channels = manifest.input.channels;
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
    let placed = built.and_then(|m| {
        if out.exists() {
            // An empty folder (perhaps a mount point, which cannot be replaced): move the files
            // in, the manifest last, so that a folder without it is never taken for a bundle.
            let mut names: Vec<_> = fs::read_dir(&tmp)
                .map_err(|e| Error::io(&tmp, e))?
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
            let _ = fs::remove_dir_all(&tmp);
        } else {
            fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        }
        Ok(m)
    });
    if placed.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    placed.map_err(|e| {
        // Errors name the folder the user asked for, not the temporary one.
        let e = match e {
            Error::Bundle { path, reason } => Error::Bundle {
                path: path
                    .strip_prefix(&tmp)
                    .map_or_else(|_| path.clone(), |rel| out.join(rel)),
                reason,
            },
            other => other,
        };
        // Errors about the options (Param) already say what to change; a model's own refusal
        // may come from the assumed channel count.
        if assumed_channels && !matches!(e, Error::Io { .. } | Error::Param(_)) {
            let c = channels;
            Error::Param(format!(
                "{e}\nhint: the model's channel axis is dynamic and {c} channel(s) were assumed \
                 (from --channels or the number of --mean values); if it takes another count, \
                 give --channels N (or N comma-separated --mean/--std values)"
            ))
        } else {
            e
        }
    })
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
    let (height, width) = match (h, w, opts.size) {
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
    let output = match &opts.output {
        Some(o) => o.clone(),
        None => match probe.outputs.as_slice() {
            [one] => one.name.clone(),
            many => many
                .iter()
                .find(|o| o.name == crate::onnx::REPRESENTATION)
                .map(|o| o.name.clone())
                .ok_or_else(|| {
                    let names: Vec<&str> = many.iter().map(|o| o.name.as_str()).collect();
                    Error::Param(format!("the model has outputs {names:?}: say which is the representation with --output"))
                })?,
        },
    };
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
    };
    Ok((manifest, c.is_none()))
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

/// Writes `DIR/sslmem.json` atomically, after validating it.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    m.validate(dir)?;
    let mut text = serde_json::to_string_pretty(m)
        .map_err(|e| Error::bundle(dir.join(MANIFEST), e.to_string()))?;
    text.push('\n');
    write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

/// Normalisation constants of the datasets the presets are made for.
fn default_normalization(channels: usize) -> (Vec<f32>, Vec<f32>) {
    if channels == 1 {
        (vec![0.2860], vec![0.3530]) // Fashion-MNIST
    } else {
        (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]) // CIFAR-10
    }
}

/// Writes a bundle of seeded random encoders built from an architecture description
/// (`sslmem bundle random`): `models` per side, `g{k}` identical to `f{k}` when `same`
/// (every score is then exactly 0), per-layer outputs when `layers`.
pub fn write_random(
    out: &Path,
    arch: &ArchSpec,
    seed: u64,
    models: usize,
    layers: bool,
    same: bool,
    augment: AugmentSpec,
) -> Result<Manifest> {
    if models == 0 {
        return Err(Error::Param(
            "a random bundle needs at least one encoder per side".into(),
        ));
    }
    let opts = ExportOptions {
        layer_outputs: layers,
    };
    let side = |name: &str, base: u64| -> Result<Vec<ModelFile>> {
        (0..models)
            .map(|i| {
                let file = format!("{name}{i}.onnx");
                let path = out.join(&file);
                onnx::write(
                    &path,
                    arch,
                    &arch.random_weights(base.wrapping_add(i as u64)),
                    opts,
                )?;
                Ok(ModelFile {
                    sha256: sha256_file(&path)?,
                    path: file,
                    external_data: Vec::new(),
                })
            })
            .collect()
    };
    let f = side("f", seed)?;
    let g = if same {
        f.clone()
    } else {
        side("g", seed.wrapping_add(1_000_003))?
    };
    let (mean, std) = default_normalization(arch.in_channels);
    let manifest = Manifest {
        format: FORMAT.into(),
        name: Some(format!(
            "random {} (seed {seed}); not trained, scores are noise",
            arch.name
        )),
        input: InputSpec {
            name: onnx::INPUT.into(),
            channels: arch.in_channels,
            height: arch.height,
            width: arch.width,
            mean,
            std,
            ..Default::default()
        },
        representation: RepresentationSpec {
            output: onnx::REPRESENTATION.into(),
            layers: if layers {
                arch.layer_names()
            } else {
                Vec::new()
            },
            pooling: None,
        },
        augment: Some(augment),
        f,
        g,
        architecture: serde_json::to_value(arch).ok(),
        split: None,
        training: None,
    };
    write_manifest(out, &manifest)?;
    Ok(manifest)
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

    /// Writes `m` with [`write_manifest`] and returns the file's text.
    fn written(m: &Manifest) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        write_manifest(dir.path(), m).expect("write");
        fs::read_to_string(dir.path().join(MANIFEST)).expect("read")
    }

    #[test]
    fn committed_bundles_load_and_write_back_unchanged() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut seen = 0;
        for entry in fs::read_dir(&models).expect("models/") {
            let dir = entry.expect("entry").path();
            if !dir.join(MANIFEST).is_file() {
                continue;
            }
            let text = fs::read_to_string(dir.join(MANIFEST)).expect("read");
            let m = read_manifest(&dir).expect("manifest");
            assert_eq!(written(&m), text, "{}", dir.display());
            let split = m.split.as_ref().expect("split record");
            split.validate().expect("valid split");
            assert!(m.training_dataset().is_some(), "{}", dir.display());
            seen += 1;
        }
        assert!(seen > 0, "no bundle under {}", models.display());
    }

    #[test]
    fn older_and_unknown_records_write_back_unchanged() {
        // As older versions wrote them: no `monitor`, no canaries (nor `min_distance`), an
        // `eval_command`, `subset` null; plus fields this version does not know.
        let text = r#"{
  "format": "sslmem-bundle/1",
  "input": {
    "name": "input",
    "channels": 1,
    "height": 28,
    "width": 28,
    "mean": [
      0.286
    ],
    "std": [
      0.353
    ]
  },
  "representation": {
    "output": "representation"
  },
  "f": [
    {
      "path": "f0.onnx",
      "sha256": "00"
    }
  ],
  "g": [
    {
      "path": "g0.onnx",
      "sha256": "11"
    }
  ],
  "split": {
    "dataset": "d:train",
    "size": 4,
    "spec": {
      "seed": 3,
      "candidate": 0.25,
      "independent": 0.25
    },
    "shared": [
      [
        0,
        2
      ]
    ],
    "candidate": [
      [
        2,
        3
      ]
    ],
    "independent": [
      [
        3,
        4
      ]
    ],
    "extra_dataset": "d:test",
    "extra": [],
    "canaries": {
      "spec": {
        "kind": "noise",
        "count": 1,
        "seed": 0,
        "repeats": 1
      },
      "files": [],
      "candidate": [],
      "independent": [],
      "heldout": []
    },
    "future_split_field": {
      "a": 1.5
    }
  },
  "training": {
    "config": {
      "epochs": 10,
      "lr": 0.30000000000000004
    },
    "dataset": "d",
    "subset": null,
    "runs": [],
    "raw_pixel_linear_probe_accuracy": 0.833,
    "device": "Cpu",
    "command": "sslmem-train pair",
    "sslmem_version": "0.1.0",
    "eval_command": "sslmem-train eval",
    "future_training_field": [
      1,
      -2,
      3.25
    ]
  }
}
"#;
        let m: Manifest = serde_json::from_str(text).expect("manifest");
        assert_eq!(written(&m), text);
        let split = m.split.as_ref().expect("split");
        assert_eq!(split.candidate.len(), 1);
        let canaries = split.canaries.as_ref().expect("canaries");
        assert_eq!(canaries.spec.min_distance, None);
        assert_eq!(canaries.spec.min_distance(), 0.0);
        assert_eq!(m.training_dataset(), Some("d"));
        assert_eq!(m.training_subset(), None);
        let t = m.training.as_ref().expect("training");
        assert_eq!(t.eval_command.as_deref(), Some("sslmem-train eval"));
        assert!(t.monitor.is_none());
        assert!(t.other.contains_key("future_training_field"));
        assert!(split.other.contains_key("future_split_field"));
    }
}
