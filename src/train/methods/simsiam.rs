//! SimSiam (Chen & He 2021): a predictor on the projections, and each view's prediction
//! pulled toward the other view's projection with the stop-gradient.

use tch::Tensor;

use super::heads::Predictor;
use super::{project, MethodSpec, SslMethod};
use crate::error::Result;
use crate::train::loss;
use crate::train::model::Encoder;

/// No hyperparameters of its own: its predictor is a fixed two-layer MLP.
pub static METHOD: MethodSpec = MethodSpec {
    name: "simsiam",
    about: "a predictor and the stop-gradient, no negatives (Chen & He 2021, \"Exploring \
            Simple Siamese Representation Learning\")",
    params: &[],
    build: |_, online, arch| {
        Ok(Box::new(Simsiam {
            predictor: Predictor::new(online, arch)?,
        }))
    },
};

struct Simsiam {
    predictor: Predictor,
}

impl SslMethod for Simsiam {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        let (p1, p2) = (self.predictor.forward(&z1), self.predictor.forward(&z2));
        Ok(loss::simsiam(&p1, &p2, &z1, &z2))
    }
}
