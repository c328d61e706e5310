//! BYOL (Grill et al. 2020): a predictor on the online projections, pulled toward the
//! projections of an EMA target network, which follows the online network after each step.

use serde::Deserialize;
use tch::{nn, Tensor};

use super::heads::{cosine_momentum, ema_update, Predictor};
use super::{project, two, MethodSpec, Param, Range, SslMethod};
use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::train::loss;
use crate::train::model::Encoder;

pub static METHOD: MethodSpec = MethodSpec {
    name: "byol",
    about: "a predictor pulled toward an EMA target network (Grill et al. 2020, \"Bootstrap \
            Your Own Latent\")",
    params: &[Param {
        field: "ema_base",
        flag: "ema-base",
        default: 0.996,
        source: "Grill et al. 2020, section 3.2",
        range: Range::Between(0.0, 1.0),
        help: "BYOL: the target network's EMA momentum at the start; it rises to 1 along a \
               cosine",
    }],
    build: |c, online, arch| Ok(Box::new(Byol::new(c.typed()?, online, arch)?)),
};

/// BYOL's hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByolConfig {
    ema_base: f64,
}

struct Byol {
    config: ByolConfig,
    predictor: Predictor,
    /// The target's variables (never receive gradients).
    target_vs: nn::VarStore,
    target: Encoder,
}

impl Byol {
    /// Adds the predictor to `online` and makes the target, a frozen copy of the online
    /// encoder.
    ///
    /// Errors: the architecture has no projector; the copy fails.
    fn new(config: ByolConfig, online: &nn::VarStore, arch: &ArchSpec) -> Result<Self> {
        let predictor = Predictor::new(online, arch)?;
        let mut target_vs = nn::VarStore::new(online.device());
        let target = Encoder::new(&(target_vs.root() / "encoder"), arch)?;
        target_vs
            .copy(online)
            .map_err(|e| Error::Train(format!("cannot initialise the BYOL target: {e}")))?;
        target_vs.freeze();
        Ok(Self {
            config,
            predictor,
            target_vs,
            target,
        })
    }

}

impl SslMethod for Byol {
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        let (z1, z2) = project(encoder, views)?;
        let (p1, p2) = (self.predictor.forward(&z1), self.predictor.forward(&z2));
        let (x1, x2) = two(views)?;
        let (t1, t2) = tch::no_grad(|| {
            (
                self.target.forward(x1, true).projection,
                self.target.forward(x2, true).projection,
            )
        });
        Ok(loss::byol(&p1, &p2, &t1, &t2))
    }

    /// target = tau · target + (1 - tau) · online, tau rising from `ema_base` to 1
    /// ([`cosine_momentum`]).
    fn after_step(&mut self, online: &nn::VarStore, step: usize, total: usize) {
        let tau = cosine_momentum(self.config.ema_base, step, total);
        ema_update(&self.target_vs, online, tau);
    }

    fn target(&self) -> Option<&nn::VarStore> {
        Some(&self.target_vs)
    }

    fn to_channels_last(&self) {
        self.target.to_channels_last();
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use crate::recipe::MethodConfig;
    use crate::train::ssl::SslModel;

    #[test]
    fn the_target_follows_the_online_network_slowly() {
        tch::manual_seed(1);
        let config = MethodConfig::new("byol").with("ema_base", 0.5);
        let mut m =
            SslModel::new(&super::super::tests::tiny(), &config, Device::Cpu).expect("model");
        let name = "encoder.stem.conv.weight";
        let online = m.vs.variables()[name].shallow_clone();
        tch::no_grad(|| {
            let _ = online.shallow_clone().fill_(1.0);
        });
        let before = m.target().expect("target").variables()[name].copy();
        m.after_step(0, 10); // tau = 0.5 at the start
        let after = &m.target().expect("target").variables()[name];
        let want = &before * 0.5 + 0.5;
        assert!((after - want).abs().max().double_value(&[]) < 1e-6);
    }
}
