//! The memorization monitor's settings and measurements (`crate::train::monitor` measures):
//! how tightly an encoder aligns views of the images it trains on against images it never
//! sees, during training.

use serde::{Deserialize, Serialize};

use super::run::{OutputSpreads, Spread};

/// How often and how much to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// Measure after every this many epochs (and after the last); 0 switches it off.
    pub every: usize,
    /// Images per sample (seen and unseen each).
    pub sample: usize,
    /// View pairs per image (K).
    pub pairs: usize,
}

impl Default for MonitorSpec {
    fn default() -> Self {
        Self {
            every: 0,
            sample: 256,
            pairs: 4,
        }
    }
}

/// Seen-versus-unseen alignment of one output.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub align_seen: f64,
    pub align_unseen: f64,
    /// P(an unseen image aligns looser than a seen one); 0.5 is no gap.
    pub auc: f64,
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub representation: Gap,
    pub projection: Gap,
    /// Candidate-side canaries against held-out canaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canaries_representation: Option<Gap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canaries_projection: Option<Gap>,
    /// Directions the representation uses over the un-augmented seen and unseen images
    /// (absent in logs written before the collapse check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representation_spread: Option<Spread>,
    /// The same for the projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_spread: Option<Spread>,
}

impl MonitorReport {
    /// The outputs that collapsed after `epochs` of training ([`OutputSpreads::collapsed`]).
    pub fn collapsed(&self, epochs: usize) -> Vec<&'static str> {
        OutputSpreads {
            representation: self.representation_spread,
            projection: self.projection_spread,
        }
        .collapsed(epochs)
    }
}
