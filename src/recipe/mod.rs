//! The trainer's records as plain data (no libtorch, so no `train` feature): the recipe of a
//! run ([`TrainConfig`] with its [`MethodConfig`] and [`OptimConfig`]), what each trained
//! encoder left ([`RunRecord`]), the memorization monitor's settings and measurements
//! ([`MonitorSpec`], [`MonitorReport`]) and the lines of a training log ([`EpochLine`],
//! [`EvalLine`]). The manifest's `training` record holds them typed
//! ([`crate::bundle::TrainingRecord`]); the trainer (`crate::train`) fills them in.

pub mod log;
pub mod method;
pub mod monitor;
pub mod optim;
pub mod run;

use serde::{Deserialize, Serialize};

use crate::arch::ArchSpec;
use crate::augment::AugmentSpec;

pub use log::{EpochLine, EvalLine};
pub use method::MethodConfig;
pub use monitor::{Gap, MonitorReport, MonitorSpec};
pub use optim::{OptimConfig, OptimKind};
pub use run::{EvalReport, OutputSpreads, RunRecord, Spread};

/// Everything that defines a run (recorded in the bundle's `training.config`, and in each
/// checkpoint, which resumes only under the same recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: ArchSpec,
    pub method: MethodConfig,
    pub optim: OptimConfig,
    pub augment: AugmentSpec,
    /// Per-channel normalisation of `[0, 1]` pixels (empty until the dataset's are filled in).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub epochs: usize,
    pub batch_size: usize,
    pub warmup_epochs: f64,
    pub seed: u64,
    /// Convolution weights, and so activations and gradients, stored channels-last (NHWC):
    /// about 1.25x faster on CPU than NCHW, with other rounding (so other weights from the
    /// same seed). Records made before it existed trained NCHW.
    #[serde(default)]
    pub channels_last: bool,
}

/// One of the trainer's records in a manifest, typed when it reads as this version's `T`.
/// A record read from a manifest is written back exactly as it was read (also when this
/// version reads it differently, such as a method record of before the methods were typed,
/// or cannot read it at all), so a manifest read and written back is unchanged and a bundle
/// whose training record this version cannot read still scores. A record made here
/// ([`From<T>`]) is written from its type.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded<T> {
    /// Made by this version.
    Typed(T),
    /// Read from a manifest: the JSON as it was, and what it reads as (`None`: it does not
    /// read as `T`).
    Read {
        json: serde_json::Value,
        typed: Option<T>,
    },
}

impl<T: serde::de::DeserializeOwned + Clone> Recorded<T> {
    /// The typed record; for one that does not read as `T`, the reason (serde's message,
    /// naming the field).
    pub fn typed(&self) -> Result<T, serde_json::Error> {
        match self {
            Self::Typed(t) | Self::Read { typed: Some(t), .. } => Ok(t.clone()),
            Self::Read { json, typed: None } => serde_json::from_value(json.clone()),
        }
    }

    /// The typed record, if it reads as one.
    pub fn as_typed(&self) -> Option<&T> {
        match self {
            Self::Typed(t) | Self::Read { typed: Some(t), .. } => Some(t),
            Self::Read { typed: None, .. } => None,
        }
    }
}

impl<T> From<T> for Recorded<T> {
    fn from(t: T) -> Self {
        Self::Typed(t)
    }
}

impl<T: Serialize> Serialize for Recorded<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Typed(t) => t.serialize(s),
            Self::Read { json, .. } => json.serialize(s),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Recorded<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = serde_json::Value::deserialize(d)?;
        let typed = serde_json::from_value(json.clone()).ok();
        Ok(Self::Read { json, typed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_read_is_written_back_as_read_and_one_made_here_from_its_type() {
        let old = r#"{"every":5,"sample":256,"pairs":4,"later":true}"#;
        let r: Recorded<MonitorSpec> = serde_json::from_str(old).expect("read");
        assert_eq!(r.as_typed().map(|m| m.every), Some(5));
        assert_eq!(serde_json::to_string(&r).expect("json"), old);
        let odd: Recorded<MonitorSpec> =
            serde_json::from_str(r#"{"every":"often"}"#).expect("read");
        assert!(odd.as_typed().is_none());
        assert!(odd
            .typed()
            .is_err_and(|e| e.to_string().contains("every") || e.to_string().contains("string")));
        assert_eq!(
            serde_json::to_string(&odd).expect("json"),
            r#"{"every":"often"}"#
        );
        let made = Recorded::from(MonitorSpec::default());
        assert_eq!(
            serde_json::to_string(&made).expect("json"),
            r#"{"every":0,"sample":256,"pairs":4}"#
        );
    }

    #[test]
    fn the_committed_bundles_recipe_reads_typed() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/fashion-mnist-canaries/sslmem.json"
        );
        let text = std::fs::read_to_string(path).expect("manifest");
        let m: serde_json::Value = serde_json::from_str(&text).expect("json");
        let config: TrainConfig =
            serde_json::from_value(m["training"]["config"].clone()).expect("recipe");
        assert_eq!(
            config.method,
            MethodConfig::new("simclr").with("temperature", 0.2)
        );
        let runs: Vec<RunRecord> =
            serde_json::from_value(m["training"]["runs"].clone()).expect("runs");
        assert_eq!(runs.len(), 2);
    }
}
