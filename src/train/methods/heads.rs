//! Heads the methods add on top of the encoder's projector.

use tch::{nn, Tensor};

use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::train::model::fan_in_uniform;

/// A two-layer MLP predictor (SimSiam, BYOL): Linear, ReLU, Linear, `[n, d] -> [n, d]`,
/// PyTorch's default initialisation.
pub struct Predictor {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl Predictor {
    /// A predictor under `online/predictor` for the projection of `arch`, its hidden layer
    /// as wide as the projection (at least 16).
    ///
    /// Errors: the architecture has no projector.
    pub fn new(online: &nn::VarStore, arch: &ArchSpec) -> Result<Self> {
        let d = *arch
            .projector
            .last()
            .ok_or_else(|| Error::Param("the architecture needs a projector".into()))?
            as i64;
        let hidden = d.max(16);
        let p = online.root() / "predictor";
        let u = fan_in_uniform;
        Ok(Self {
            w1: p.var("w1", &[hidden, d], u(d)),
            b1: p.var("b1", &[hidden], u(d)),
            w2: p.var("w2", &[d, hidden], u(hidden)),
            b2: p.var("b2", &[d], u(hidden)),
        })
    }

    pub fn forward(&self, z: &Tensor) -> Tensor {
        z.linear(&self.w1, Some(&self.b1))
            .relu()
            .linear(&self.w2, Some(&self.b2))
    }
}
