//! Model bundles: a folder with `sslmem.json` (the manifest) and the ONNX encoders.
//! `f` encoders were trained with the audited data, `g` encoders without it.
//! See `docs/bundle.md` for the format.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::augment::AugmentSpec;
use crate::data::split::SplitRecord;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::runtime::{Encoder, RuntimeOptions};

pub const FORMAT: &str = "sslmem-bundle/1";
pub const MANIFEST: &str = "sslmem.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepresentationSpec {
    pub output: String,
    /// Per-layer outputs (`layer1`...), present when the encoders export them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub path: String,
    pub sha256: String,
}

/// A canary file is checked like a model file: relative path inside the bundle, SHA-256.
impl From<&crate::data::split::CanaryFile> for ModelFile {
    fn from(f: &crate::data::split::CanaryFile) -> Self {
        Self {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
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
    /// Training augmentations; absent means SimCLR's defaults (SPEC section 5).
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
/// The trainer's own records (`config`, `runs`, `monitor`) are kept as JSON here: their
/// types live in `crate::train`, which needs the `train` feature; the trainer converts them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingRecord {
    /// What the scored output is, in words (backbone or projector output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub representation: Option<String>,
    /// The trainer's recipe (`crate::train::trainer::TrainConfig`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The dataset the encoders were trained on, as given to `--dataset` (e.g.
    /// `fashion-mnist`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// `(train, test)` example counts the dataset was cut to (`--subset`, `--test-subset`);
    /// `None`: all of it.
    pub subset: Option<(usize, usize)>,
    /// One record per trained encoder (`crate::train::pair::RunRecord`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<serde_json::Value>,
    /// Test accuracy, in [0, 1], of a linear probe on raw pixels: the baseline the encoders'
    /// probes are compared with. `None` for unlabelled data.
    pub raw_pixel_linear_probe_accuracy: Option<f64>,
    /// The memorization monitor's settings (`crate::train::monitor::MonitorSpec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<serde_json::Value>,
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
    pub f: Vec<Encoder>,
    pub g: Vec<Encoder>,
}

impl Bundle {
    /// Loads and checks a bundle: files exist, hashes match, every encoder takes the
    /// manifest's input and has the same outputs with the same shapes.
    pub fn load(dir: &Path, opts: &RuntimeOptions) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        let load_side = |files: &[ModelFile]| -> Result<Vec<Encoder>> {
            files
                .iter()
                .map(|mf| {
                    let path = verify_file(dir, mf)?;
                    let enc = Encoder::load(&path, opts)?;
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
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            f,
            g,
        })
    }

    pub fn encoders(&self) -> impl Iterator<Item = &Encoder> {
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
fn check_interface(enc: &Encoder, m: &Manifest) -> Result<()> {
    let bad = |reason: String| Err(Error::bundle(&enc.path, reason));
    let i = &m.input;
    if enc.input.name != i.name {
        return bad(format!(
            "model input is '{}', the manifest says '{}'",
            enc.input.name, i.name
        ));
    }
    let want = [i.channels, i.height, i.width];
    let shape = &enc.input.shape;
    let fits = shape.len() == 4
        && shape[1..]
            .iter()
            .zip(want)
            .all(|(d, w)| d.is_none_or(|d| d == w));
    if !fits {
        return bad(format!(
            "model input shape {:?} does not take [batch, {}, {}, {}] images",
            shape, want[0], want[1], want[2]
        ));
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
    if rep != Some(2) {
        return bad(format!(
            "representation output '{}' must be a matrix [batch, dim]",
            m.representation.output
        ));
    }
    Ok(())
}

/// What `sslmem bundle create` needs to know beyond the model files.
#[derive(Clone, Debug)]
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
}

/// Makes a bundle in `out` from ONNX files exported elsewhere: copies them in as
/// `f0.onnx`, ..., `g0.onnx`, ..., reads names and shapes from the first model, computes
/// hashes, writes the manifest, then loads the result to check it.
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
    if out.join(MANIFEST).exists() {
        return Err(Error::bundle(
            out.join(MANIFEST),
            "already exists; choose an empty folder",
        ));
    }
    let probe = Encoder::load(&f[0], rt)?;
    let shape = &probe.input.shape;
    if shape.len() != 4 {
        return Err(Error::Model {
            model: f[0].display().to_string(),
            reason: format!("input shape {shape:?} is not [batch, channels, height, width]"),
        });
    }
    let channels = shape[1].ok_or_else(|| Error::Model {
        model: f[0].display().to_string(),
        reason: "the channel dimension is dynamic; export with a fixed channel count".into(),
    })?;
    let (height, width) = match (shape[2], shape[3], opts.size) {
        (_, _, Some(s)) => s,
        (Some(h), Some(w), None) => (h, w),
        _ => {
            return Err(Error::Param(
                "the model's height/width are dynamic: give --height and --width".into(),
            ))
        }
    };
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
    let layers: Vec<String> = probe
        .outputs
        .iter()
        .filter(|o| o.name.starts_with("layer"))
        .map(|o| o.name.clone())
        .collect();
    let input_name = probe.input.name.clone();
    drop(probe);
    fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let copy = |side: &str, files: &[PathBuf]| -> Result<Vec<ModelFile>> {
        files
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let name = format!("{side}{i}.onnx");
                let bytes = fs::read(src).map_err(|e| Error::io(src, e))?;
                write_atomic(&out.join(&name), &bytes)?;
                Ok(ModelFile {
                    sha256: sha256_file(&out.join(&name))?,
                    path: name,
                })
            })
            .collect()
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        name: opts.name.clone(),
        input: InputSpec {
            name: input_name,
            channels,
            height,
            width,
            mean: opts.mean.clone(),
            std: opts.std.clone(),
        },
        representation: RepresentationSpec { output, layers },
        augment: opts.augment.clone(),
        f: copy("f", f)?,
        g: copy("g", g)?,
        architecture: None,
        split: None,
        training: None,
    };
    write_manifest(out, &manifest)?;
    Bundle::load(out, rt)?;
    Ok(manifest)
}

/// Writes `DIR/sslmem.json` atomically, after validating it.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    m.validate(dir)?;
    let mut text = serde_json::to_string_pretty(m)
        .map_err(|e| Error::bundle(dir.join(MANIFEST), e.to_string()))?;
    text.push('\n');
    write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
