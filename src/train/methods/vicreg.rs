//! VICReg (Bardes, Ponce & LeCun 2022): invariance, variance and covariance terms on the
//! projections of two views, no extra heads.

use tch::Tensor;

use super::{project, SslMethod};
use crate::error::Result;
use crate::recipe::VicregConfig;
use crate::train::loss;
use crate::train::model::Encoder;

pub struct Vicreg {
    config: VicregConfig,
}

impl Vicreg {
    pub fn new(config: &VicregConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }
}

impl SslMethod for Vicreg {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        let c = &self.config;
        Ok(loss::vicreg(
            &z1,
            &z2,
            (c.sim_weight, c.var_weight, c.cov_weight),
        ))
    }
}
