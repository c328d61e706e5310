//! The self-supervised methods: which heads a model has and how two views' outputs become
//! a loss. SimCLR and VICReg / Barlow Twins use the projector alone; SimSiam adds a
//! predictor; BYOL adds a predictor and an EMA target network.

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::loss;
use super::model::Encoder;
use crate::arch::ArchSpec;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Simclr,
    Simsiam,
    Byol,
    Vicreg,
    Barlow,
}

/// Each method's hyperparameters, with the literature's defaults ([`Default`]: the values
/// `sslmem-train`'s flags default to). Recorded in the manifest's training config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodConfig {
    pub method: Method,
    /// SimCLR's NT-Xent temperature (0.5: SimCLR's CIFAR-10 setting, Chen et al. 2020,
    /// appendix B.9).
    pub temperature: f64,
    /// BYOL: EMA momentum at the start; it follows a cosine schedule up to 1 (0.996: Grill
    /// et al. 2020, section 3.2).
    pub ema_base: f64,
    /// VICReg (invariance, variance, covariance) weights (25, 25, 1: Bardes et al. 2022,
    /// section 4.1).
    pub vicreg: (f64, f64, f64),
    /// Barlow Twins off-diagonal weight (0.005: Zbontar et al. 2021, section 4).
    pub barlow_lambda: f64,
}

impl Default for MethodConfig {
    fn default() -> Self {
        Self {
            method: Method::Simclr,
            temperature: 0.5,
            ema_base: 0.996,
            vicreg: (25.0, 25.0, 1.0),
            barlow_lambda: 0.005,
        }
    }
}

impl MethodConfig {
    /// Checks each hyperparameter's range, naming the `sslmem-train` flag that sets it.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, v: f64, what: &str| {
            Err(Error::Param(format!("--{flag} is {v}; it must be {what}")))
        };
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("temperature", self.temperature, "above 0");
        }
        if !(0.0..=1.0).contains(&self.ema_base) {
            return bad("ema-base", self.ema_base, "between 0 and 1");
        }
        let (sim, var, cov) = self.vicreg;
        for (flag, v) in [
            ("vicreg-sim-weight", sim),
            ("vicreg-var-weight", var),
            ("vicreg-cov-weight", cov),
            ("barlow-lambda", self.barlow_lambda),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(flag, v, "0 or more");
            }
        }
        Ok(())
    }
}

/// A two-layer MLP predictor (SimSiam, BYOL): Linear, ReLU, Linear.
struct Predictor {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl Predictor {
    fn new(p: &nn::Path, d: i64, hidden: i64) -> Self {
        let u = super::model::fan_in_uniform;
        Self {
            w1: p.var("w1", &[hidden, d], u(d)),
            b1: p.var("b1", &[hidden], u(d)),
            w2: p.var("w2", &[d, hidden], u(hidden)),
            b2: p.var("b2", &[d], u(hidden)),
        }
    }

    fn forward(&self, z: &Tensor) -> Tensor {
        z.linear(&self.w1, Some(&self.b1))
            .relu()
            .linear(&self.w2, Some(&self.b2))
    }
}

/// The trained networks of one encoder run.
pub struct SslModel {
    pub config: MethodConfig,
    /// Online encoder and predictor parameters (what the optimiser updates).
    pub vs: nn::VarStore,
    pub encoder: Encoder,
    predictor: Option<Predictor>,
    /// BYOL's EMA target (never receives gradients).
    pub target_vs: Option<nn::VarStore>,
    target: Option<Encoder>,
}

impl SslModel {
    pub fn new(arch: &ArchSpec, config: MethodConfig, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let encoder = Encoder::new(&(vs.root() / "encoder"), arch)?;
        let d = *arch
            .projector
            .last()
            .ok_or_else(|| Error::Param("the architecture needs a projector".into()))?
            as i64;
        let predictor = matches!(config.method, Method::Simsiam | Method::Byol)
            .then(|| Predictor::new(&(vs.root() / "predictor"), d, d.max(16)));
        let (target_vs, target) = if config.method == Method::Byol {
            let mut tvs = nn::VarStore::new(device);
            let t = Encoder::new(&(tvs.root() / "encoder"), arch)?;
            tvs.copy(&vs)
                .map_err(|e| Error::Train(format!("cannot initialise the BYOL target: {e}")))?;
            tvs.freeze();
            (Some(tvs), Some(t))
        } else {
            (None, None)
        };
        Ok(Self {
            config,
            vs,
            encoder,
            predictor,
            target_vs,
            target,
        })
    }

    /// Stores the encoders' convolution weights channels-last (see
    /// [`Encoder::to_channels_last`]).
    pub fn to_channels_last(&self) {
        self.encoder.to_channels_last();
        if let Some(t) = &self.target {
            t.to_channels_last();
        }
    }

    /// The loss of a batch of view pairs `x1`, `x2` (training mode).
    pub fn loss(&self, x1: &Tensor, x2: &Tensor) -> Tensor {
        let c = &self.config;
        let z1 = self.encoder.forward(x1, true).projection;
        let z2 = self.encoder.forward(x2, true).projection;
        match c.method {
            Method::Simclr => loss::nt_xent(&z1, &z2, c.temperature),
            Method::Vicreg => loss::vicreg(&z1, &z2, c.vicreg),
            Method::Barlow => loss::barlow_twins(&z1, &z2, c.barlow_lambda),
            Method::Simsiam | Method::Byol => {
                let Some(pred) = &self.predictor else {
                    return Tensor::zeros([], (Kind::Float, x1.device()));
                };
                let (p1, p2) = (pred.forward(&z1), pred.forward(&z2));
                match &self.target {
                    Some(t) => {
                        let (t1, t2) = tch::no_grad(|| {
                            (
                                t.forward(x1, true).projection,
                                t.forward(x2, true).projection,
                            )
                        });
                        loss::byol(&p1, &p2, &t1, &t2)
                    }
                    None => loss::simsiam(&p1, &p2, &z1, &z2),
                }
            }
        }
    }

    /// BYOL's target update after each step: target = tau * target + (1 - tau) * online, with
    /// tau rising from `ema_base` to 1 along a cosine over training.
    pub fn after_step(&mut self, step: usize, total: usize) {
        let Some(tvs) = &self.target_vs else { return };
        let progress = step as f64 / total.max(1) as f64;
        let tau = 1.0
            - (1.0 - self.config.ema_base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0;
        let online = self.vs.variables();
        tch::no_grad(|| {
            for (name, mut t) in tvs.variables() {
                if let Some(o) = online.get(&name) {
                    t.copy_(&(&t * tau + o * (1.0 - tau)));
                }
            }
        });
    }

    /// The parameters the optimiser updates, by name.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.trainable_variables_with_names();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// `VarStore::trainable_variables` with their names, sorted (the store's map is unordered).
trait NamedTrainable {
    fn trainable_variables_with_names(&self) -> Vec<(String, Tensor)>;
}

impl NamedTrainable for nn::VarStore {
    fn trainable_variables_with_names(&self) -> Vec<(String, Tensor)> {
        self.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ArchSpec {
        let mut a = ArchSpec::resnet_mini_28();
        a.stem.channels = 4;
        a.blocks = vec![crate::arch::BlockSpec {
            channels: 8,
            stride: 2,
        }];
        a.projector = vec![8, 6];
        a
    }

    #[test]
    fn every_method_gives_a_finite_loss_and_gradients() {
        for method in [
            Method::Simclr,
            Method::Simsiam,
            Method::Byol,
            Method::Vicreg,
            Method::Barlow,
        ] {
            tch::manual_seed(0);
            let mut m = SslModel::new(
                &tiny(),
                MethodConfig {
                    method,
                    ..Default::default()
                },
                Device::Cpu,
            )
            .expect("model");
            let x1 = Tensor::randn([6, 1, 28, 28], (Kind::Float, Device::Cpu));
            let x2 = Tensor::randn([6, 1, 28, 28], (Kind::Float, Device::Cpu));
            let l = m.loss(&x1, &x2);
            assert!(l.double_value(&[]).is_finite(), "{method:?}");
            l.backward();
            let named = m.trainable();
            assert!(
                named
                    .iter()
                    .any(|(n, t)| n.starts_with("encoder.") && t.grad().defined()),
                "{method:?}"
            );
            if matches!(method, Method::Simsiam | Method::Byol) {
                assert!(named.iter().any(|(n, _)| n.starts_with("predictor.")));
            }
            m.after_step(1, 10);
        }
    }

    #[test]
    fn byol_target_follows_the_online_network_slowly() {
        tch::manual_seed(1);
        let mut m = SslModel::new(
            &tiny(),
            MethodConfig {
                method: Method::Byol,
                ema_base: 0.5,
                ..Default::default()
            },
            Device::Cpu,
        )
        .expect("model");
        let name = "encoder.stem.conv.weight";
        let online = m.vs.variables()[name].shallow_clone();
        tch::no_grad(|| {
            let _ = online.shallow_clone().fill_(1.0);
        });
        let before = m.target_vs.as_ref().expect("target").variables()[name].copy();
        m.after_step(0, 10); // tau = 0.5 at the start
        let after = &m.target_vs.as_ref().expect("target").variables()[name];
        let want = &before * 0.5 + 0.5;
        assert!((after - want).abs().max().double_value(&[]) < 1e-6);
    }
}
