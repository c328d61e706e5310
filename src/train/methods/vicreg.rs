//! VICReg (Bardes, Ponce & LeCun 2022): invariance, variance and covariance terms on the
//! projections of two views, no extra heads.

use serde::Deserialize;
use tch::Tensor;

use super::{project, MethodSpec, Param, Range, SslMethod};
use crate::error::Result;
use crate::train::loss;
use crate::train::model::Encoder;

/// The paper's weights (25, 25, 1): Bardes, Ponce & LeCun 2022, section 4.1.
const SOURCE: &str = "Bardes, Ponce & LeCun 2022, section 4.1";

pub static METHOD: MethodSpec = MethodSpec {
    name: "vicreg",
    about: "invariance, variance and covariance terms on two views (Bardes, Ponce & LeCun \
            2022, \"VICReg: Variance-Invariance-Covariance Regularization\")",
    params: &[
        Param {
            field: "sim_weight",
            flag: "vicreg-sim-weight",
            default: 25.0,
            source: SOURCE,
            range: Range::AtLeast(0.0),
            help: "VICReg: weight of the invariance (similarity) term, the paper's λ",
        },
        Param {
            field: "var_weight",
            flag: "vicreg-var-weight",
            default: 25.0,
            source: SOURCE,
            range: Range::AtLeast(0.0),
            help: "VICReg: weight of the variance term, the paper's μ (0 lets the outputs \
                   collapse)",
        },
        Param {
            field: "cov_weight",
            flag: "vicreg-cov-weight",
            default: 1.0,
            source: SOURCE,
            range: Range::AtLeast(0.0),
            help: "VICReg: weight of the covariance term, the paper's ν",
        },
    ],
    build: |c, _, _| Ok(Box::new(Vicreg { config: c.typed()? })),
};

/// VICReg's hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VicregConfig {
    sim_weight: f64,
    var_weight: f64,
    cov_weight: f64,
}

struct Vicreg {
    config: VicregConfig,
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
