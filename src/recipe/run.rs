//! What each trained encoder left in the manifest: its [`RunRecord`] with its evaluation
//! ([`EvalReport`]) and how many directions its outputs use ([`OutputSpreads`], the
//! collapse check of `crate::train::collapse`).

use serde::{Deserialize, Serialize};

/// One trained and exported encoder (the manifest's `training.runs`, and each run's
/// `done.json` while `sslmem-train pair` works).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// `f` (trained with the candidates) or `g` (with the independent set).
    pub side: String,
    /// Which encoder of its side (0-based; `--models N` trains N a side).
    pub index: usize,
    /// The seed it trained from (the recipe's seed plus `index`).
    pub seed: u64,
    /// Distinct training examples (canary copies not counted).
    pub train_examples: usize,
    /// `None` when the dataset has no labels.
    pub eval: Option<EvalReport>,
    /// Largest difference between the libtorch encoder and its ONNX export, relative to
    /// the output's scale.
    pub parity_max_rel_err: f64,
    /// The ONNX file, relative to the bundle folder.
    pub file: String,
    /// Directions each output uses over the test images (absent in records written before
    /// the collapse check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<OutputSpreads>,
    /// The outputs that collapsed (`crate::train::collapse`); empty when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collapsed: Vec<String>,
}

/// Label-based evaluation of an encoder's representation on the test set: weighted kNN
/// accuracy and linear-probe accuracy, both in [0, 1] (`crate::train::eval`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub knn_accuracy: f64,
    pub linear_probe_accuracy: f64,
    /// Labelled examples the kNN bank and the probe were fitted on.
    pub train_examples: usize,
    /// Test examples they were scored on.
    pub test_examples: usize,
}

/// An output counts as collapsed when its effective rank is below this fraction of its
/// dimension. On the default bundle's recipe (64-dimensional projection, 150 epochs) BYOL,
/// SimSiam and Barlow Twins reached 1.3, 3.2 and 5.9 (collapsed), VICReg 11.4 and SimCLR
/// 37.7 (not).
pub const COLLAPSE_FRACTION: f64 = 0.1;

/// Epochs a run must have trained before its outputs are judged: after one epoch an encoder is
/// still near its random initialisation, whose outputs already use few directions (a SimCLR
/// run on 200 Fashion-MNIST images: projection effective rank 6.2 of 64 after epoch 1, 14.2
/// after epoch 2; Barlow Twins without its redundancy term: 1.2 after epoch 2).
pub const MIN_EPOCHS: usize = 2;

/// How many directions one output of an encoder uses, over a set of images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Effective rank of the l2-normalised outputs, in [1, `dims`].
    pub effective_rank: f64,
    /// The output's dimension.
    pub dims: usize,
}

impl Spread {
    /// Whether the output has collapsed: effective rank below [`COLLAPSE_FRACTION`] of its
    /// dimension (and below 2 for outputs of fewer than 20 dimensions).
    pub fn collapsed(&self) -> bool {
        self.effective_rank < (COLLAPSE_FRACTION * self.dims as f64).max(2.0)
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}/{}", self.effective_rank, self.dims)
    }
}

/// How many directions each output of an encoder uses over a set of images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpreads {
    pub representation: Option<Spread>,
    pub projection: Option<Spread>,
}

impl OutputSpreads {
    /// The outputs (`representation`, `projection`, in that order) that collapsed after
    /// `epochs` of training; none before [`MIN_EPOCHS`], when there is nothing to judge yet.
    pub fn collapsed(&self, epochs: usize) -> Vec<&'static str> {
        if epochs < MIN_EPOCHS {
            return Vec::new();
        }
        [
            ("representation", self.representation),
            ("projection", self.projection),
        ]
        .into_iter()
        .filter(|(_, s)| s.is_some_and(|s| s.collapsed()))
        .map(|(name, _)| name)
        .collect()
    }
}
