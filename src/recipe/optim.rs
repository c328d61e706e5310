//! The optimiser's settings (the trainer's `crate::train::optim` applies them).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The update rule: SGD with momentum, Adam, AdamW (Loshchilov & Hutter 2019) or LARS
/// (You et al. 2017), as PyTorch and solo-learn write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimKind {
    Sgd,
    Adam,
    Adamw,
    Lars,
}

crate::choice!(OptimKind, "optimiser", {
    Sgd = "sgd" => "SGD with momentum (Nesterov off), PyTorch's.",
    Adam = "adam" => "Adam (Kingma and Ba 2015), weight decay added to the gradient.",
    Adamw = "adamw" => "AdamW (Loshchilov and Hutter 2019), decoupled weight decay.",
    Lars = "lars" => "LARS (You et al. 2017): SGD with a layer-wise trust ratio.",
});

/// The optimiser of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimKind,
    /// Peak learning rate (after warm-up), already scaled by batch size / 256.
    pub lr: f64,
    /// L2 penalty (SGD, Adam, LARS) or decoupled decay (AdamW).
    pub weight_decay: f64,
    /// SGD and LARS momentum.
    pub momentum: f64,
    /// Adam and AdamW moment decay rates.
    pub betas: (f64, f64),
    /// Adam and AdamW denominator term.
    pub eps: f64,
    /// LARS trust coefficient (eta).
    pub trust: f64,
}

impl OptimConfig {
    /// Errors: [`Error::Param`] when a setting is out of its range.
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr > 0.0
            && self.lr.is_finite()
            && self.weight_decay >= 0.0
            && (0.0..1.0).contains(&self.momentum)
            && (0.0..1.0).contains(&self.betas.0)
            && (0.0..1.0).contains(&self.betas.1)
            && self.eps > 0.0
            && self.trust > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Param(format!("invalid optimiser settings {self:?}")))
        }
    }
}
