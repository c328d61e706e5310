//! SimCLR (Chen et al. 2020): NT-Xent over the projections of two views, no extra heads.

use tch::Tensor;

use super::{project, SslMethod};
use crate::error::Result;
use crate::recipe::SimclrConfig;
use crate::train::loss;
use crate::train::model::Encoder;

pub struct Simclr {
    config: SimclrConfig,
}

impl Simclr {
    pub fn new(config: &SimclrConfig) -> Self {
        Self {
            config: config.clone(),
        }
    }
}

impl SslMethod for Simclr {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        Ok(loss::nt_xent(&z1, &z2, self.config.temperature))
    }
}
