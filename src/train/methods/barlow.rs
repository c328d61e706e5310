//! Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views' standardised
//! projections pushed to the identity, no extra heads.

use serde::Deserialize;
use tch::Tensor;

use super::{project, MethodSpec, Param, Range, SslMethod};
use crate::error::Result;
use crate::train::loss;
use crate::train::model::Encoder;

pub static METHOD: MethodSpec = MethodSpec {
    name: "barlow",
    about: "Barlow Twins: cross-correlation of two views pushed to the identity (Zbontar et \
            al. 2021, \"Barlow Twins: Self-Supervised Learning via Redundancy Reduction\")",
    params: &[Param {
        field: "lambda",
        flag: "barlow-lambda",
        default: 0.005,
        source: "Zbontar et al. 2021, section 4",
        range: Range::AtLeast(0.0),
        help: "Barlow Twins: weight of the off-diagonal (redundancy reduction) term, the \
               paper's λ (0 lets the outputs collapse)",
    }],
    build: |c, _, _| Ok(Box::new(Barlow { config: c.typed()? })),
};

/// Barlow Twins' hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BarlowConfig {
    lambda: f64,
}

struct Barlow {
    config: BarlowConfig,
}

impl SslMethod for Barlow {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        Ok(loss::barlow_twins(&z1, &z2, self.config.lambda))
    }
}
