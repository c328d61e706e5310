//! The manifest `sslmem.json`: its serde types (the encoders' input, the representation, the
//! model files, the recorded architecture, split and training), the checks that need no
//! model, and reading and writing the file. See `docs/bundle.md` for the format.
//!
//! Fields this version does not know are kept where a record may grow (`training`, the
//! split, `architecture`), so that a manifest read and written back loses nothing.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;
use crate::data::split::SplitRecord;
use crate::data::subsample::SubsampleRecord;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::recipe::{MonitorSpec, Recorded, RunRecord, TrainConfig};
use crate::runtime::{ElementType, Layout, Pooling};

pub const FORMAT: &str = "sslmem-bundle/1";
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

/// `sslmem.json`: what the bundle's encoders take and give, which files they are, and what
/// is known of how they were made.
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
    /// The encoders trained with the audited images (at least one).
    pub f: Vec<ModelFile>,
    /// The encoders trained without them; empty (or absent) for a one-model bundle.
    #[serde(default)]
    pub g: Vec<ModelFile>,
    /// The encoders' architecture, where the bundle's maker recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Which example of the training data is in which set; written by `sslmem-train pair`,
    /// absent in bundles made with `sslmem bundle create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitRecord>,
    /// How the encoders were trained; written by `sslmem-train pair`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingRecord>,
    /// A many-model bundle's membership design (`sslmem-train subsample`): which pool
    /// examples each encoder of `f` trained on; `g` is then empty. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsample: Option<SubsampleRecord>,
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
    /// by `inspect`, logged by [`super::Bundle::load`]); empty when nothing is.
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

    /// Whether the bundle holds `f` only: it gives one-model scores (the alignment under `f`,
    /// calibrated on a reference population), not SSLMem (docs/science.md#one-model-scores).
    pub fn is_one_model(&self) -> bool {
        self.g.is_empty() && self.subsample.is_none()
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
        if self.f.is_empty() {
            return bad(
                "needs at least one encoder in `f` (and, for SSLMem scores, one in `g`; a \
                 bundle with `f` only gives one-model scores)"
                    .into(),
            );
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
        if let Some(s) = &self.subsample {
            if !self.g.is_empty() {
                return bad(format!(
                    "has a subsample record and {} encoder(s) in `g`; a many-model bundle \
                     lists all its encoders in `f` and none in `g`",
                    self.g.len()
                ));
            }
            s.validate(self.f.len()).map_err(|e| match e {
                Error::Param(m) => Error::bundle(&at, m),
                e => Error::bundle(&at, e.to_string()),
            })?;
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

/// Writes `DIR/sslmem.json` atomically, after validating it.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    m.validate(dir)?;
    let mut text = serde_json::to_string_pretty(m)
        .map_err(|e| Error::bundle(dir.join(MANIFEST), e.to_string()))?;
    text.push('\n');
    write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

/// The encoders' architecture as the manifest records it (`architecture`): sslmem's own
/// description ([`ArchSpec`], written by `sslmem-train pair` and `sslmem bundle random`), or
/// any other JSON, kept as read.
///
/// A description is read as an [`ArchSpec`] only when that loses nothing: written back, it
/// gives the JSON text it was read from (the same fields in the same order, none unknown,
/// none filled in by a default). Anything else (another kind of model, fields a newer
/// version added) is [`Architecture::Other`]; a manifest read and written back is unchanged
/// either way.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    /// sslmem's ResNet description ([`crate::arch`]).
    Spec(ArchSpec),
    /// A description this version does not read, as JSON.
    Other(serde_json::Value),
}

impl Architecture {
    /// The description as an [`ArchSpec`], when it is one.
    pub fn spec(&self) -> Option<&ArchSpec> {
        match self {
            Self::Spec(a) => Some(a),
            Self::Other(_) => None,
        }
    }

    /// `value` as an [`ArchSpec`] when writing that back gives the same JSON text, else as is.
    fn from_value(value: serde_json::Value) -> Self {
        let text = |v: &serde_json::Value| serde_json::to_string(v).ok();
        let lossless = ArchSpec::deserialize(&value).ok().filter(|a| {
            let back = spec_value(a).ok();
            back.is_some() && back.as_ref().and_then(text) == text(&value)
        });
        lossless.map_or(Self::Other(value), Self::Spec)
    }
}

impl From<&ArchSpec> for Architecture {
    fn from(a: &ArchSpec) -> Self {
        Self::Spec(a.clone())
    }
}

/// An [`ArchSpec`] as the manifest has always held it: through a JSON value, so that `bn_eps`
/// (an `f32`) is written as its `f64` value (`9.999999747378752e-06` for `1e-5`), not as
/// `f32`'s shortest form.
fn spec_value(a: &ArchSpec) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(a)
}

impl Serialize for Architecture {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Spec(a) => spec_value(a)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
            Self::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::from_value)
    }
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
            let arch = m.architecture.as_ref().and_then(Architecture::spec);
            assert!(arch.is_some(), "{}: architecture", dir.display());
            seen += 1;
        }
        assert!(seen > 0, "no bundle under {}", models.display());
    }

    // Over 100 lines: most of it is one whole manifest, as a file holds it, which the test
    // must write back byte for byte.
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

    #[test]
    fn a_subsample_record_must_fit_the_encoders() {
        let text = r#"{"format": "sslmem-bundle/1",
            "input": {"name": "input", "channels": 1, "height": 28, "width": 28,
                      "mean": [0.286], "std": [0.353]},
            "representation": {"output": "representation"},
            "f": [{"path": "f0.onnx", "sha256": "00"}, {"path": "f1.onnx", "sha256": "11"}]}"#;
        let mut m: Manifest = serde_json::from_str(text).expect("manifest");
        assert!(m.subsample.is_none(), "absent in other bundles");
        let dir = Path::new("b");
        let rec = SubsampleRecord::make("d", 10, 0, 2).expect("record");
        m.subsample = Some(rec.clone());
        m.validate(dir).expect("two encoders, two member sets");
        let back: Manifest =
            serde_json::from_str(&serde_json::to_string(&m).expect("json")).expect("read");
        assert_eq!(back.subsample.as_ref(), Some(&rec));

        let err = |m: &Manifest| m.validate(dir).expect_err("refused").to_string();
        let mut with_g = m.clone();
        with_g.g = vec![m.f[0].clone()];
        assert!(err(&with_g).contains("none in `g`"), "{}", err(&with_g));
        let mut fewer = m.clone();
        fewer.f.pop();
        assert!(err(&fewer).contains("one per encoder"), "{}", err(&fewer));
        let mut swapped = m.clone();
        if let Some(s) = swapped.subsample.as_mut() {
            s.members.swap(0, 1);
            s.size = 11;
        }
        assert!(err(&swapped).contains("members"), "{}", err(&swapped));
    }

    #[test]
    fn architectures_read_as_specs_only_when_nothing_is_lost() {
        let spec = ArchSpec::resnet_mini_28();
        let value = serde_json::to_value(&spec).expect("value");
        // As the trainer and `bundle random` write it: a spec, written back as it was.
        let a: Architecture = serde_json::from_value(value.clone()).expect("architecture");
        assert_eq!(a.spec(), Some(&spec));
        assert_eq!(serde_json::to_value(&a).expect("back"), value);
        // Unknown fields (at the top or inside), a field left to its default, another kind of
        // model: kept as read.
        let mut unknown = value.clone();
        unknown["future_field"] = serde_json::json!([1, -2.5]);
        let mut nested = value.clone();
        nested["stem"]["dilation"] = serde_json::json!(2);
        let mut defaulted = value.clone();
        if let Some(o) = defaulted.as_object_mut() {
            o.remove("bn_eps");
        }
        let vit = serde_json::json!({"kind": "vit", "patch": 16, "depth": 12});
        for v in [unknown, nested, defaulted, vit] {
            let a: Architecture = serde_json::from_value(v.clone()).expect("architecture");
            assert!(a.spec().is_none(), "{v}");
            assert_eq!(serde_json::to_string(&a).expect("back"), v.to_string());
        }
    }
}
