//! Heads the methods add on top of the encoder's projector, and the EMA target networks
//! (BYOL's target, DINO's teacher) that follow the online one.

use tch::{nn, Tensor};

use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::train::model::fan_in_uniform;

/// A two-layer MLP predictor (SimSiam, BYOL): Linear, ReLU, Linear, `[n, d] -> [n, d]`, or
/// Linear, BN, ReLU, Linear when the architecture's projector has batch norm
/// ([`ArchSpec::projector_bn`]; Chen & He 2021, section 3; Grill et al. 2020, section 3.3).
/// PyTorch's default initialisation. The predictor runs only in training, so its batch norm
/// always uses the batch's statistics and keeps no running ones.
pub struct Predictor {
    w1: Tensor,
    b1: Tensor,
    /// Batch norm's weight and bias after the first layer (with `projector_bn`).
    bn: Option<(Tensor, Tensor)>,
    w2: Tensor,
    b2: Tensor,
    eps: f64,
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
            bn: arch.projector_bn.then(|| {
                (
                    p.var("bn_weight", &[hidden], nn::Init::Const(1.0)),
                    p.var("bn_bias", &[hidden], nn::Init::Const(0.0)),
                )
            }),
            w2: p.var("w2", &[d, hidden], u(hidden)),
            b2: p.var("b2", &[d], u(hidden)),
            eps: f64::from(arch.bn_eps),
        })
    }

    /// `[n, d] -> [n, d]`.
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let mut h = z.linear(&self.w1, Some(&self.b1));
        if let Some((w, b)) = &self.bn {
            h = Tensor::batch_norm(
                &h,
                Some(w),
                Some(b),
                None::<&Tensor>,
                None::<&Tensor>,
                true,
                0.1,
                self.eps,
                false,
            );
        }
        h.relu().linear(&self.w2, Some(&self.b2))
    }
}

/// The EMA momentum at `step` of `total`: `1 - (1 - base) (cos(π step/total) + 1) / 2`,
/// rising from `base` to 1 along a cosine (Grill et al. 2020, section 3.2; Caron et al. 2021,
/// section 3.1).
pub fn cosine_momentum(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

/// `target = m · target + (1 - m) · online` for every target variable that the online network
/// has under the same name (others, such as DINO's centre, are left alone). No gradients.
pub fn ema_update(target: &nn::VarStore, online: &nn::VarStore, m: f64) {
    let online = online.variables();
    tch::no_grad(|| {
        for (name, mut t) in target.variables() {
            if let Some(o) = online.get(&name) {
                t.copy_(&(&t * m + o * (1.0 - m)));
            }
        }
    });
}
