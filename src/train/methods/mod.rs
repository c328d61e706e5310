//! The self-supervised methods, one file each behind [`SslMethod`] (as solo-learn's
//! `solo/methods/`), and [`METHODS`], the registry of their [`MethodSpec`]s: each method's
//! name, its hyperparameters ([`Param`]: record field, `sslmem-train` flag, default with its
//! source, range) and its constructor. The trainer's loop, the monitor and the checkpoints know
//! no method by name: they ask the method for its views, its loss, what runs after a step, its
//! trainable parameters and the networks it keeps beside the online one; `sslmem-train` makes
//! its method flags from the registry.
//!
//! A new method is one file here (its `METHOD: MethodSpec`, its typed hyperparameters and
//! `impl SslMethod`) and its name in the `registry!` below, which declares its module and adds
//! it to [`METHODS`].

mod heads;

use std::fmt;

use tch::{nn, Tensor};

use super::model::Encoder;
use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::recipe::MethodConfig;

/// The kind of one view a method takes of each image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// A view at the architecture's input size from the run's training augmentations (what
    /// SimCLR, BYOL, SimSiam, VICReg and Barlow Twins take two of).
    Global,
    /// A small local crop (multi-crop, Caron et al. 2020 and 2021): the run's augmentations
    /// with every crop's scale set to [`SslMethod::local_crop_scale`] and the output at
    /// [`local_size`] of the architecture's, so that a ViT sees fewer patches.
    Local,
}

/// The side of a local view for `arch`: half the input's, rounded down to a whole number of
/// patches for a ViT (14 of 28 with patch 7, 16 of 32 with patch 4; DINO's is 96 of 224),
/// `(height, width)` in pixels.
pub fn local_size(arch: &ArchSpec) -> (usize, usize) {
    let step = arch.vit().map_or(1, |v| v.patch);
    let half = |side: usize| ((side / 2) / step * step).max(step);
    (half(arch.height), half(arch.width))
}

/// Two global views, the joint-embedding methods' pair.
pub const TWO_GLOBAL: &[ViewKind] = &[ViewKind::Global, ViewKind::Global];

/// A self-supervised method: the heads it adds to the encoder (the projector is the
/// encoder's own, [`ArchSpec::projector`]), the loss of a batch of views, and its state.
pub trait SslMethod {
    /// The views each image needs per step, in the order [`Self::loss`] takes them.
    fn views(&self) -> &[ViewKind] {
        TWO_GLOBAL
    }

    /// The `[min, max]` area fraction of a [`ViewKind::Local`] crop (DINO's 0.05 to 0.4);
    /// only read when [`Self::views`] has local views.
    fn local_crop_scale(&self) -> [f64; 2] {
        [0.05, 0.4]
    }

    /// The loss of one batch (training mode): `views[k]` is view `k` of every image of the
    /// batch, `[batch, channels, height, width]`, normalised (height and width those of its
    /// [`ViewKind`]).
    ///
    /// Errors: [`Error::Train`] when the views are not the ones [`Self::views`] asks for.
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor>;

    /// What runs after each optimiser step (`step` of `total`, 0-based), given the online
    /// network (BYOL's EMA update of its target). Nothing by default.
    fn after_step(&mut self, online: &nn::VarStore, step: usize, total: usize) {
        let _ = (online, step, total);
    }

    /// The parameters the optimiser updates, by name, sorted: by default every online
    /// variable that requires a gradient (encoder, projector and the method's heads).
    fn trainable(&self, online: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = online
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// A network kept beside the online one and not trained by the optimiser (BYOL's EMA
    /// target): checkpointed under `target/`. None by default.
    fn target(&self) -> Option<&nn::VarStore> {
        None
    }

    /// Stores the method's own convolution weights channels-last, as the encoder's
    /// ([`Encoder::to_channels_last`]). Nothing by default.
    fn to_channels_last(&self) {}
}

/// Declares each method's module (its file) and lists its [`MethodSpec`] in [`METHODS`].
macro_rules! registry {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// The registry: every method, the default (what `--method` defaults to) first.
        pub static METHODS: &[&MethodSpec] = &[$(&$module::METHOD),*];
    };
}

// The default method first.
registry!(simclr, simsiam, byol, vicreg, barlow, mae, dino);

/// One method of the registry.
pub struct MethodSpec {
    /// As `--method` and the records (`training.config.method.method`) spell it.
    pub name: &'static str,
    /// One line: what it does, and its paper.
    pub about: &'static str,
    /// Its hyperparameters, in the order the record lists them.
    pub params: &'static [Param],
    /// Builds the method from a complete, checked config ([`MethodSpec::complete`]), adding
    /// its heads to `online` (which holds the encoder of `arch`).
    pub build: fn(&MethodConfig, &nn::VarStore, &ArchSpec) -> Result<Box<dyn SslMethod>>,
}

/// One hyperparameter of a method: a number, recorded as a field of the method's record and
/// set by a flag of `sslmem-train` (and its environment variable, `SSLMEM_TRAIN_` then the flag
/// upper-cased with `_` for `-`).
pub struct Param {
    /// The record's field, as the method's typed hyperparameters name it.
    pub field: &'static str,
    /// The flag, without its leading `--`; unique across all methods.
    pub flag: &'static str,
    /// The literature's value.
    pub default: f64,
    /// Where [`Param::default`] comes from (paper, section).
    pub source: &'static str,
    pub range: Range,
    /// What it is, for the flag's help.
    pub help: &'static str,
}

/// The values a hyperparameter may take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// Finite and above the bound.
    Above(f64),
    /// Finite and at least the bound.
    AtLeast(f64),
    /// Between both bounds, inclusive.
    Between(f64, f64),
}

impl Range {
    pub fn contains(self, v: f64) -> bool {
        match self {
            Self::Above(lo) => v.is_finite() && v > lo,
            Self::AtLeast(lo) => v.is_finite() && v >= lo,
            Self::Between(lo, hi) => (lo..=hi).contains(&v),
        }
    }
}

/// As the error messages and the help say it: "above 0", "0 or more", "between 0 and 1".
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Above(lo) => write!(f, "above {lo}"),
            Self::AtLeast(lo) => write!(f, "{lo} or more"),
            Self::Between(lo, hi) => write!(f, "between {lo} and {hi}"),
        }
    }
}

impl Param {
    /// Checks `v` against the range.
    ///
    /// Errors: [`Error::Param`] naming the flag, e.g. `--temperature is -1; it must be above 0`.
    pub fn check(&self, v: f64) -> Result<()> {
        if self.range.contains(v) {
            Ok(())
        } else {
            Err(Error::Param(format!(
                "--{} is {v}; it must be {}",
                self.flag, self.range
            )))
        }
    }
}

impl MethodSpec {
    /// This method with `value(param)` for each hyperparameter, in declaration order.
    ///
    /// Errors: the first error of `value`; [`Error::Param`] naming the flag of the first value
    /// out of range.
    pub fn config(&self, mut value: impl FnMut(&Param) -> Result<f64>) -> Result<MethodConfig> {
        self.params
            .iter()
            .try_fold(MethodConfig::new(self.name), |c, p| {
                let v = value(p)?;
                p.check(v)?;
                Ok(c.with(p.field, v))
            })
    }

    /// This method with the literature's hyperparameters.
    pub fn default_config(&self) -> MethodConfig {
        self.params
            .iter()
            .fold(MethodConfig::new(self.name), |c, p| {
                c.with(p.field, p.default)
            })
    }

    /// A recorded config of this method made complete: each hyperparameter from the record
    /// (its default when left out) and checked, in declaration order; fields this version
    /// does not know are left out.
    ///
    /// Errors: [`Error::Param`] when the config names another method, or a value is not a
    /// number or is out of range (naming the flag).
    pub fn complete(&self, config: &MethodConfig) -> Result<MethodConfig> {
        if config.name() != self.name {
            return Err(Error::Param(format!(
                "a {} config is not a {} config",
                config.name(),
                self.name
            )));
        }
        let recorded = config.params();
        self.config(|p| match recorded.get(p.field) {
            None => Ok(p.default),
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::Param(format!(
                    "method {}: `{}` (--{}) is {v}, not a number",
                    self.name, p.field, p.flag
                ))
            }),
        })
    }
}

/// The method named `name`.
///
/// Errors: [`Error::Param`] listing the known names.
pub fn spec(name: &str) -> Result<&'static MethodSpec> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            Error::Param(format!(
                "unknown method '{name}'; known: {}",
                names().join(", ")
            ))
        })
}

/// The methods' names, the default first.
pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

/// The method with the default name and hyperparameters (SimCLR).
pub fn default_config() -> MethodConfig {
    METHODS[0].default_config()
}

/// Builds the method `config` names, its hyperparameters made complete and checked
/// ([`MethodSpec::complete`]), adding its heads to `online` (which already holds the encoder
/// of `arch`).
///
/// Errors: the method is unknown; a hyperparameter is out of range; the architecture has no
/// projector; libtorch fails to create a head.
pub fn build(
    config: &MethodConfig,
    online: &nn::VarStore,
    arch: &ArchSpec,
) -> Result<Box<dyn SslMethod>> {
    let spec = spec(config.name())?;
    (spec.build)(&spec.complete(config)?, online, arch)
}

/// The two views of a two-view method.
///
/// Errors: [`Error::Train`] for any other number of views.
fn two(views: &[Tensor]) -> Result<(&Tensor, &Tensor)> {
    match views {
        [a, b] => Ok((a, b)),
        _ => Err(Error::Train(format!(
            "the method takes 2 views of each image, not {}",
            views.len()
        ))),
    }
}

/// The projections `[batch, d]` of both views, the first view's first (training mode, so
/// batch-norm statistics update in that order).
fn project(encoder: &Encoder, views: &[Tensor]) -> Result<(Tensor, Tensor)> {
    let (x1, x2) = two(views)?;
    Ok((
        encoder.forward(x1, true).projection,
        encoder.forward(x2, true).projection,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tch::{Device, Kind};

    use super::*;
    use crate::train::ssl::SslModel;

    pub(super) fn tiny() -> ArchSpec {
        let mut a = ArchSpec::resnet_mini_28();
        let r = a.resnet_mut().expect("resnet");
        r.stem.channels = 4;
        r.blocks = vec![crate::arch::BlockSpec {
            channels: 8,
            stride: 2,
        }];
        a.projector = vec![8, 6];
        a
    }

    /// A one-block ViT of width 32 (MAE needs a ViT).
    pub(super) fn tiny_vit() -> ArchSpec {
        let mut a = crate::arch::vit::vit_tiny_28();
        if let crate::arch::Backbone::Vit { vit } = &mut a.backbone {
            (vit.width, vit.depth, vit.heads, vit.mlp_width) = (32, 1, 2, 64);
        }
        a.projector = vec![8, 6];
        a
    }

    #[test]
    fn every_method_gives_a_finite_loss_and_gradients() {
        let arch_for = |name: &str, bn: bool| {
            let mut a = if name == "mae" { tiny_vit() } else { tiny() };
            a.projector_bn = bn;
            a
        };
        for (spec, arch) in METHODS
            .iter()
            .flat_map(|s| [(s, arch_for(s.name, false)), (s, arch_for(s.name, true))])
        {
            let name = spec.name;
            tch::manual_seed(0);
            let mut m = SslModel::new(&arch, &spec.default_config(), Device::Cpu).expect("model");
            let (lh, lw) = local_size(&arch);
            let views: Vec<Tensor> = m
                .views()
                .iter()
                .map(|kind| {
                    let (h, w) = match kind {
                        ViewKind::Global => (28, 28),
                        ViewKind::Local => (lh as i64, lw as i64),
                    };
                    Tensor::randn([6, 1, h, w], (Kind::Float, Device::Cpu))
                })
                .collect();
            let l = m.loss(&views).expect("loss");
            assert!(l.double_value(&[]).is_finite(), "{name}");
            l.backward();
            let named = m.trainable();
            assert!(
                named
                    .iter()
                    .any(|(n, t)| n.starts_with("encoder.") && t.grad().defined()),
                "{name}"
            );
            if matches!(name, "simsiam" | "byol") {
                assert!(named.iter().any(|(n, _)| n.starts_with("predictor.")));
                assert_eq!(
                    named.iter().any(|(n, _)| n == "predictor.bn_weight"),
                    arch.projector_bn,
                    "{name}"
                );
            }
            assert_eq!(
                named.iter().any(|(n, _)| n == "encoder.projector.1.weight"),
                arch.projector_bn,
                "{name}"
            );
            let fewer = &views[..views.len() - 1];
            assert!(
                m.loss(fewer).is_err(),
                "{name}: {} views are too few",
                fewer.len()
            );
            m.after_step(1, 10);
        }
    }

    #[test]
    fn the_registry_names_each_method_flag_and_field_once_with_defaults_in_range() {
        let names: BTreeSet<_> = names().into_iter().collect();
        assert_eq!(names.len(), METHODS.len());
        let mut flags = BTreeSet::new();
        for spec in METHODS {
            assert!(!spec.about.is_empty(), "{}", spec.name);
            let mut fields = BTreeSet::new();
            for p in spec.params {
                assert!(flags.insert(p.flag), "--{} is declared twice", p.flag);
                assert!(fields.insert(p.field), "{}: {} twice", spec.name, p.field);
                assert!(p.range.contains(p.default), "--{}", p.flag);
                assert!(!p.help.is_empty() && !p.source.is_empty(), "--{}", p.flag);
                assert!(
                    !(p.flag.starts_with('-') || p.flag.contains(['_', ' '])),
                    "--{}",
                    p.flag
                );
            }
            assert_eq!(
                spec.complete(&MethodConfig::new(spec.name)).ok(),
                Some(spec.default_config())
            );
        }
    }

    #[test]
    fn the_defaults_are_recorded_as_before_the_registry() {
        let recorded: Vec<String> = METHODS
            .iter()
            .map(|m| serde_json::to_string(&m.default_config()).expect("json"))
            .collect();
        assert_eq!(
            recorded,
            [
                r#"{"method":"simclr","temperature":0.5}"#,
                r#"{"method":"simsiam"}"#,
                r#"{"method":"byol","ema_base":0.996}"#,
                r#"{"method":"vicreg","sim_weight":25.0,"var_weight":25.0,"cov_weight":1.0}"#,
                r#"{"method":"barlow","lambda":0.005}"#,
                r#"{"method":"mae","mask_ratio":0.75,"decoder_width":64.0,"decoder_depth":2.0}"#,
                concat!(
                    r#"{"method":"dino","out_dim":1024.0,"student_temp":0.1,"teacher_temp":0.04,"#,
                    r#""center_momentum":0.9,"ema_base":0.996,"local_crops":8.0,"#,
                    r#""local_crop_scale_max":0.4}"#
                ),
            ]
        );
        assert_eq!(default_config(), METHODS[0].default_config());
    }

    #[test]
    fn a_record_is_completed_checked_and_refused_naming_the_flag() {
        let vicreg = spec("vicreg").expect("vicreg");
        let partial = MethodConfig::new("vicreg")
            .with("var_weight", 5.0)
            .with("extra", 1);
        assert_eq!(
            serde_json::to_string(&vicreg.complete(&partial).expect("complete")).expect("json"),
            r#"{"method":"vicreg","sim_weight":25.0,"var_weight":5.0,"cov_weight":1.0}"#
        );
        let err = |c: MethodConfig| match spec(c.name()).and_then(|s| s.complete(&c)) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        assert!(err(MethodConfig::new("simclr").with("temperature", -1.0))
            .contains("--temperature is -1; it must be above 0"));
        assert!(err(MethodConfig::new("byol").with("ema_base", 1.5))
            .contains("--ema-base is 1.5; it must be between 0 and 1"));
        assert!(err(MethodConfig::new("barlow").with("lambda", -0.1))
            .contains("--barlow-lambda is -0.1; it must be 0 or more"));
        assert!(
            err(MethodConfig::new("simclr").with("temperature", "warm")).contains("--temperature")
        );
        assert!(err(MethodConfig::new("swav")).contains(
            "unknown method 'swav'; known: simclr, simsiam, byol, vicreg, barlow, mae, dino"
        ));
        assert!(vicreg.complete(&MethodConfig::new("simclr")).is_err());
        assert!(spec("barlow")
            .and_then(|s| s.config(|_| Ok(f64::NAN)))
            .is_err_and(|e| e.to_string().contains("--barlow-lambda is NaN")));
    }
}
