//! SimCLR (Chen et al. 2020): NT-Xent over the projections of two views, no extra heads.

use serde::Deserialize;
use tch::Tensor;

use super::{project, MethodSpec, Param, Range, SslMethod};
use crate::error::Result;
use crate::train::loss;
use crate::train::model::Encoder;

pub static METHOD: MethodSpec = MethodSpec {
    name: "simclr",
    about: "NT-Xent over two views (Chen et al. 2020, \"A Simple Framework for Contrastive \
            Learning of Visual Representations\")",
    params: &[Param {
        field: "temperature",
        flag: "temperature",
        default: 0.5,
        source: "SimCLR's CIFAR-10 setting, Chen et al. 2020, appendix B.9",
        range: Range::Above(0.0),
        help: "SimCLR: the NT-Xent temperature",
    }],
    build: |c, _, _| Ok(Box::new(Simclr { config: c.typed()? })),
};

/// SimCLR's hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimclrConfig {
    temperature: f64,
}

struct Simclr {
    config: SimclrConfig,
}

impl SslMethod for Simclr {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        Ok(loss::nt_xent(&z1, &z2, self.config.temperature))
    }
}
