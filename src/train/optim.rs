//! Optimisers written out (tch has no LARS and cannot save optimiser state): SGD with
//! momentum, Adam, AdamW and LARS with PyTorch's update rules, their state kept as named
//! tensors for checkpoints; and the learning-rate schedule (linear warm-up, then cosine).

use std::collections::BTreeMap;

use tch::Tensor;

use crate::error::{Error, Result};

pub use crate::recipe::optim::{OptimConfig, OptimKind};

/// An optimiser over named parameters (leaf tensors with gradients).
pub struct Optimizer {
    pub config: OptimConfig,
    params: Vec<(String, Tensor)>,
    /// Per parameter: momentum buffer (SGD, LARS) or first and second moments (Adam, AdamW).
    state: BTreeMap<String, Vec<Tensor>>,
    /// Updates done so far.
    pub steps: i64,
}

impl Optimizer {
    pub fn new(config: OptimConfig, params: Vec<(String, Tensor)>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            params,
            state: BTreeMap::new(),
            steps: 0,
        })
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update at learning rate `lr` (the schedule's value for this step).
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config.clone();
        let t = self.steps as f64;
        let fail = |e: tch::TchError| Error::Train(format!("optimiser step: {e}"));
        tch::no_grad(|| -> Result<()> {
            for (name, p) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                // LARS, as usual, leaves biases and batch-norm parameters out of weight decay
                // and of the trust ratio.
                let vector = p.dim() <= 1;
                let st = self.state.entry(name.clone()).or_default();
                match c.kind {
                    OptimKind::Sgd => {
                        let g = &grad + &*p * c.weight_decay;
                        let buf = match st.first() {
                            Some(b) => b * c.momentum + &g,
                            None => g,
                        };
                        let _ = p.f_sub_(&(&buf * lr)).map_err(fail)?;
                        *st = vec![buf];
                    }
                    OptimKind::Adam | OptimKind::Adamw => {
                        let g = if c.kind == OptimKind::Adam {
                            &grad + &*p * c.weight_decay
                        } else {
                            grad.shallow_clone()
                        };
                        if c.kind == OptimKind::Adamw {
                            let _ = p.f_mul_scalar_(1.0 - lr * c.weight_decay).map_err(fail)?;
                        }
                        let (m, v) = match st.as_slice() {
                            [m, v] => (
                                m * c.betas.0 + &g * (1.0 - c.betas.0),
                                v * c.betas.1 + g.square() * (1.0 - c.betas.1),
                            ),
                            _ => (&g * (1.0 - c.betas.0), g.square() * (1.0 - c.betas.1)),
                        };
                        let mhat = &m / (1.0 - c.betas.0.powf(t));
                        let vhat = &v / (1.0 - c.betas.1.powf(t));
                        let _ = p
                            .f_sub_(&(mhat / (vhat.sqrt() + c.eps) * lr))
                            .map_err(fail)?;
                        *st = vec![m, v];
                    }
                    OptimKind::Lars => {
                        let g = if vector {
                            grad.shallow_clone()
                        } else {
                            &grad + &*p * c.weight_decay
                        };
                        let trust = if vector {
                            1.0
                        } else {
                            let (pn, gn) = (p.norm().double_value(&[]), g.norm().double_value(&[]));
                            if pn > 0.0 && gn > 0.0 {
                                c.trust * pn / gn
                            } else {
                                1.0
                            }
                        };
                        let upd = &g * (lr * trust);
                        let buf = match st.first() {
                            Some(b) => b * c.momentum + &upd,
                            None => upd,
                        };
                        let _ = p.f_sub_(&buf).map_err(fail)?;
                        *st = vec![buf];
                    }
                }
            }
            Ok(())
        })
    }

    /// The state as named tensors (`<param>#<k>`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.state
            .iter()
            .flat_map(|(n, v)| {
                v.iter()
                    .enumerate()
                    .map(move |(k, t)| (format!("{n}#{k}"), t.shallow_clone()))
            })
            .collect()
    }

    /// Restores state saved by [`Optimizer::state_tensors`].
    pub fn load_state(&mut self, named: Vec<(String, Tensor)>, steps: i64) -> Result<()> {
        let mut state: BTreeMap<String, Vec<(usize, Tensor)>> = BTreeMap::new();
        for (key, t) in named {
            let (n, k) = key
                .rsplit_once('#')
                .and_then(|(n, k)| k.parse::<usize>().ok().map(|k| (n.to_string(), k)))
                .ok_or_else(|| Error::Param(format!("bad optimiser state entry '{key}'")))?;
            if !self.params.iter().any(|(p, _)| *p == n) {
                return Err(Error::Param(format!(
                    "optimiser state for unknown parameter '{n}'"
                )));
            }
            state.entry(n).or_default().push((k, t));
        }
        self.state = state
            .into_iter()
            .map(|(n, mut v)| {
                v.sort_by_key(|(k, _)| *k);
                (n, v.into_iter().map(|(_, t)| t).collect())
            })
            .collect();
        self.steps = steps;
        Ok(())
    }
}

/// Linear warm-up over `warmup` steps to `base`, then cosine decay to 0 at `total`.
pub fn lr_at(step: usize, base: f64, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
            .to_device(Device::Cpu)
            .set_requires_grad(true)
    }

    fn cfg(kind: OptimKind) -> OptimConfig {
        OptimConfig {
            kind,
            lr: 0.1,
            weight_decay: 0.0,
            momentum: 0.9,
            betas: (0.9, 0.999),
            eps: 1e-8,
            trust: 0.001,
        }
    }

    /// Sets p.grad to `g` through a linear loss: d(sum(g * p))/dp = g.
    fn grad(opt: &mut Optimizer, p: &Tensor, g: &[f32]) {
        opt.zero_grad();
        (p * Tensor::from_slice(g)).sum(Kind::Float).backward();
    }

    fn values(p: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(p.detach().to_kind(Kind::Double)).expect("values")
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn sgd_momentum_and_weight_decay_by_hand() {
        let p = param(&[1.0, -2.0]);
        let mut o = Optimizer::new(
            OptimConfig {
                weight_decay: 0.5,
                ..cfg(OptimKind::Sgd)
            },
            vec![("w".into(), p.shallow_clone())],
        )
        .expect("opt");
        grad(&mut o, &p, &[1.0, 1.0]);
        o.step(0.1).expect("step");
        // g = 1 + 0.5 p = (1.5, 0); buf = g; p -= 0.1 buf -> (0.85, -2.0)
        assert!(close(&values(&p), &[0.85, -2.0]));
        grad(&mut o, &p, &[1.0, 1.0]);
        o.step(0.1).expect("step");
        // g = (1 + 0.425, 0) = (1.425, 0); buf = 0.9 * 1.5 + 1.425 = 2.775; p = 0.85 - 0.2775
        assert!(close(&values(&p), &[0.5725, -2.0]));
    }

    #[test]
    fn adam_first_step_moves_by_lr_and_adamw_decays() {
        let p = param(&[1.0, -1.0]);
        let mut o = Optimizer::new(cfg(OptimKind::Adam), vec![("w".into(), p.shallow_clone())])
            .expect("opt");
        grad(&mut o, &p, &[0.3, -5.0]);
        o.step(0.1).expect("step");
        // Bias-corrected first step: mhat/sqrt(vhat) = sign(g).
        assert!(close(&values(&p), &[0.9, -0.9]));
        let q = param(&[2.0]);
        let mut w = Optimizer::new(
            OptimConfig {
                weight_decay: 0.1,
                ..cfg(OptimKind::Adamw)
            },
            vec![("q".into(), q.shallow_clone())],
        )
        .expect("opt");
        grad(&mut w, &q, &[1.0]);
        w.step(0.1).expect("step");
        // p * (1 - 0.1 * 0.1) - 0.1 * 1 = 1.98 - 0.1
        assert!(close(&values(&q), &[1.88]));
    }

    #[test]
    fn lars_scales_by_the_trust_ratio_and_spares_vectors() {
        let p = Tensor::from_slice(&[3.0f32, 4.0])
            .reshape([1, 2])
            .set_requires_grad(true);
        let b = param(&[1.0]);
        let mut o = Optimizer::new(
            OptimConfig {
                trust: 0.01,
                ..cfg(OptimKind::Lars)
            },
            vec![
                ("w".into(), p.shallow_clone()),
                ("b".into(), b.shallow_clone()),
            ],
        )
        .expect("opt");
        o.zero_grad();
        ((&p * Tensor::from_slice(&[0.6f32, 0.8]).reshape([1, 2])).sum(Kind::Float)
            + (&b * 2.0).sum(Kind::Float))
        .backward();
        o.step(1.0).expect("step");
        // ||p|| = 5, ||g|| = 1: trust 0.01 * 5 = 0.05; p -= 1.0 * 0.05 * (0.6, 0.8)
        assert!(close(&values(&p.flatten(0, -1)), &[2.97, 3.96]));
        // A vector parameter: plain momentum SGD, b -= 1.0 * 2
        assert!(close(&values(&b), &[-1.0]));
    }

    #[test]
    fn state_round_trips_and_the_next_step_is_identical() {
        let run = |restore: bool| {
            let p = param(&[1.0, 2.0]);
            let mut o = Optimizer::new(cfg(OptimKind::Adam), vec![("w".into(), p.shallow_clone())])
                .expect("opt");
            grad(&mut o, &p, &[0.5, -0.5]);
            o.step(0.1).expect("step");
            if restore {
                let saved: Vec<(String, Tensor)> = o
                    .state_tensors()
                    .into_iter()
                    .map(|(n, t)| (n, t.copy()))
                    .collect();
                let mut fresh =
                    Optimizer::new(cfg(OptimKind::Adam), vec![("w".into(), p.shallow_clone())])
                        .expect("opt");
                fresh.load_state(saved, o.steps).expect("load");
                o = fresh;
            }
            grad(&mut o, &p, &[0.25, 1.0]);
            o.step(0.1).expect("step");
            values(&p)
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn warmup_then_cosine() {
        assert!((lr_at(0, 1.0, 10, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(60, 1.0, 10, 110) - 0.5).abs() < 1e-12);
        assert!(lr_at(110, 1.0, 10, 110).abs() < 1e-12);
        assert!((lr_at(0, 2.0, 0, 10) - 2.0).abs() < 1e-12);
    }
}
