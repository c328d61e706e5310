//! Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views' standardised
//! projections pushed to the identity, no extra heads.

use tch::Tensor;

use super::{project, SslMethod};
use crate::error::Result;
use crate::recipe::BarlowConfig;
use crate::train::loss;
use crate::train::model::Encoder;

pub struct Barlow {
    config: BarlowConfig,
}

impl Barlow {
    pub fn new(config: &BarlowConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }
}

impl SslMethod for Barlow {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        Ok(loss::barlow_twins(&z1, &z2, self.config.lambda))
    }
}
