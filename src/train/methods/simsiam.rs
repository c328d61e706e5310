//! SimSiam (Chen & He 2021): a predictor on the projections, and each view's prediction
//! pulled toward the other view's projection with the stop-gradient.

use tch::{nn, Tensor};

use super::heads::Predictor;
use super::{project, SslMethod};
use crate::arch::ArchSpec;
use crate::error::Result;
use crate::recipe::SimsiamConfig;
use crate::train::loss;
use crate::train::model::Encoder;

pub struct Simsiam {
    predictor: Predictor,
}

impl Simsiam {
    /// Adds the predictor to `online`.
    ///
    /// Errors: the architecture has no projector.
    pub fn new(_config: &SimsiamConfig, online: &nn::VarStore, arch: &ArchSpec) -> Result<Self> {
        Ok(Self {
            predictor: Predictor::new(online, arch)?,
        })
    }
}

impl SslMethod for Simsiam {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        let (p1, p2) = (self.predictor.forward(&z1), self.predictor.forward(&z2));
        Ok(loss::simsiam(&p1, &p2, &z1, &z2))
    }
}
