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
pub use method::{
    BarlowConfig, ByolConfig, MethodConfig, SimclrConfig, SimsiamConfig, VicregConfig,
};
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

/// One of the trainer's records in a manifest: typed when it reads as this version's `T`,
/// otherwise kept as the JSON it was (a record from another version, or a hand-written
/// part), so that a manifest read and written back loses nothing and a bundle whose training
/// record this version cannot read still scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recorded<T> {
    Typed(T),
    Other(serde_json::Value),
}

impl<T: serde::de::DeserializeOwned + Clone> Recorded<T> {
    /// The typed record; for one kept as JSON, the reason it does not read as `T`
    /// (serde's message, naming the field).
    pub fn typed(&self) -> Result<T, serde_json::Error> {
        match self {
            Self::Typed(t) => Ok(t.clone()),
            Self::Other(v) => serde_json::from_value(v.clone()),
        }
    }

    /// The typed record, if it is one.
    pub fn as_typed(&self) -> Option<&T> {
        match self {
            Self::Typed(t) => Some(t),
            Self::Other(_) => None,
        }
    }
}

impl<T> From<T> for Recorded<T> {
    fn from(t: T) -> Self {
        Self::Typed(t)
    }
}
