//! Model bundles: a folder with `sslmem.json` (the manifest) and the ONNX encoders.
//! `f` encoders were trained with the audited data, `g` encoders without it.
//! See `docs/bundle.md` for the format.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, write_atomic};
use crate::onnx::{self, ExportOptions};
use crate::runtime::{EncoderSession, RuntimeOptions};

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
    /// Training augmentations; absent means SimCLR's defaults
    /// (docs/science.md#training-augmentations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentSpec>,
    pub f: Vec<ModelFile>,
    pub g: Vec<ModelFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

impl Manifest {
    /// The `split` record written by `sslmem-train pair`, if any (`dir` names errors).
    pub fn split_record(&self, dir: &Path) -> Result<Option<crate::data::split::Split>> {
        self.split
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::bundle(dir.join(MANIFEST), format!("split: {e}")))
    }

    /// The `(train, test)` subset sizes the encoders were trained with (`training.subset`).
    pub fn training_subset(&self) -> Option<(usize, usize)> {
        let v = self.training.as_ref()?["subset"].as_array()?;
        Some((v.first()?.as_u64()? as usize, v.get(1)?.as_u64()? as usize))
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
    pub f: Vec<EncoderSession>,
    pub g: Vec<EncoderSession>,
}

impl Bundle {
    /// Loads and checks a bundle: files exist, hashes match, every encoder takes the
    /// manifest's input and has the same outputs with the same shapes.
    pub fn load(dir: &Path, opts: &RuntimeOptions) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        let load_side = |files: &[ModelFile]| -> Result<Vec<EncoderSession>> {
            files
                .iter()
                .map(|mf| {
                    let path = verify_file(dir, mf)?;
                    let enc = EncoderSession::load(&path, opts)?;
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
    let probe = EncoderSession::load(&f[0], rt)?;
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
        },
        representation: RepresentationSpec {
            output: onnx::REPRESENTATION.into(),
            layers: if layers {
                arch.layer_names()
            } else {
                Vec::new()
            },
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
