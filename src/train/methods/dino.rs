//! DINO (Caron et al. 2021): self-distillation with no labels. A student (the online encoder,
//! its projector and a weight-normalised last layer to `K` outputs) is trained to match, on
//! every view, the output distribution of an EMA teacher on the *other* global views. The
//! teacher's outputs are centred (a running mean of its outputs, momentum 0.9) and sharpened
//! (temperature 0.04 against the student's 0.1); together they keep it from collapsing. Each
//! image gives two global views and `local_crops` small local crops ([`ViewKind::Local`],
//! multi-crop); the teacher sees only the global ones. Works on the ResNet and the ViT (local
//! views change a ViT's patch grid: its position embeddings are interpolated).
//!
//! The DINO paper's augmentations are BYOL's (blur, solarize): train with `--augment byol`.
//! Scaled down for 2 cores: `K` is 1,024 by default (the paper's 65,536), the projector is the
//! architecture's (the paper's head is a 3-layer MLP to a 256-d bottleneck) and the teacher's
//! temperature stays at 0.04 (the paper warms it to 0.07 over 30 epochs on ImageNet).

use std::cell::RefCell;

use serde::Deserialize;
use tch::{nn, Kind, Tensor};

use super::heads::{cosine_momentum, ema_update};
use super::{MethodSpec, Param, Range, SslMethod, ViewKind};
use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::train::loss::{self, l2_normalize};
use crate::train::model::{fan_in_uniform, Encoder};

pub static METHOD: MethodSpec = MethodSpec {
    name: "dino",
    about: "an EMA teacher's centred, sharpened outputs on the global views as targets for the \
            student on every view, with local crops (Caron et al. 2021, \"Emerging Properties \
            in Self-Supervised Vision Transformers\")",
    params: &[
        Param {
            field: "out_dim",
            flag: "dino-out-dim",
            default: 1024.0,
            source: "scaled down for 2 cores (the paper's K: 65,536, section 3.1 and Table 9)",
            range: Range::Between(2.0, 65536.0),
            help: "DINO: outputs of the head's weight-normalised last layer (K)",
        },
        Param {
            field: "student_temp",
            flag: "dino-student-temp",
            default: 0.1,
            source: "Caron et al. 2021, section 3.1",
            range: Range::Above(0.0),
            help: "DINO: temperature of the student's softmax",
        },
        Param {
            field: "teacher_temp",
            flag: "dino-teacher-temp",
            default: 0.04,
            source: "Caron et al. 2021, section 3.1 and appendix (0.04, warmed to 0.07 on \
                     ImageNet)",
            range: Range::Above(0.0),
            help: "DINO: temperature of the teacher's softmax (sharpening), below the \
                   student's",
        },
        Param {
            field: "center_momentum",
            flag: "dino-center-momentum",
            default: 0.9,
            source: "Caron et al. 2021, section 3.1 (m = 0.9)",
            range: Range::Between(0.0, 1.0),
            help: "DINO: momentum of the running centre of the teacher's outputs",
        },
        Param {
            field: "ema_base",
            flag: "dino-teacher-momentum",
            default: 0.996,
            source: "Caron et al. 2021, section 3.1 (0.996, rising to 1 along a cosine)",
            range: Range::Between(0.0, 1.0),
            help: "DINO: the teacher's EMA momentum at the start; it rises to 1 along a cosine",
        },
        Param {
            field: "local_crops",
            flag: "local-crops",
            default: 8.0,
            source: "the DINO code's default (--local_crops_number 8; the paper's best: 10)",
            range: Range::Between(0.0, 16.0),
            help: "DINO: local crops per image, besides the two global views (a whole number)",
        },
        Param {
            field: "local_crop_scale_max",
            flag: "local-crop-scale-max",
            default: 0.4,
            source: "Caron et al. 2021, appendix (local crops: scale 0.05 to 0.4)",
            range: Range::Between(0.05, 1.0),
            help: "DINO: largest area fraction of a local crop (the smallest is 0.05)",
        },
    ],
    build: |c, online, arch| Ok(Box::new(Dino::new(c.typed()?, online, arch)?)),
};

/// DINO's hyperparameters ([`METHOD`]'s params).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DinoConfig {
    out_dim: f64,
    student_temp: f64,
    teacher_temp: f64,
    center_momentum: f64,
    ema_base: f64,
    local_crops: f64,
    local_crop_scale_max: f64,
}

/// The smallest area fraction of a local crop (DINO's).
const LOCAL_SCALE_MIN: f64 = 0.05;

struct Dino {
    config: DinoConfig,
    /// Two globals, then the local crops.
    views: Vec<ViewKind>,
    /// The student's last layer, `[K, d]` (the direction of each row; its norm is divided
    /// out: weight normalisation with the gain fixed at 1, as the paper's `norm_last_layer`).
    last: Tensor,
    /// The teacher's variables (no gradients): encoder, last layer and `center` `[1, K]`.
    teacher_vs: nn::VarStore,
    teacher: Encoder,
    teacher_last: Tensor,
    center: Tensor,
    /// The mean teacher output of the last loss, `[1, K]`, for the centre's update (one loss
    /// per optimiser step: with gradient accumulation the centre would see only the last
    /// micro-batch).
    batch_center: RefCell<Option<Tensor>>,
}

/// The head's last layer on projections `z` `[n, d]`: `normalize(z) · normalize_rows(w)ᵀ`,
/// `[n, K]`.
fn last_layer(z: &Tensor, w: &Tensor) -> Tensor {
    l2_normalize(z).matmul(&l2_normalize(w).transpose(0, 1))
}

impl Dino {
    /// Adds the last layer to `online` and makes the teacher, a frozen copy of the online
    /// encoder and last layer, with a zero centre.
    ///
    /// Errors: `local_crops` is not a whole number; the architecture has no projector; the
    /// copy fails.
    fn new(config: DinoConfig, online: &nn::VarStore, arch: &ArchSpec) -> Result<Self> {
        for (flag, v) in [
            ("local-crops", config.local_crops),
            ("dino-out-dim", config.out_dim),
        ] {
            if v.fract() != 0.0 {
                return Err(Error::Param(format!(
                    "dino: --{flag} is {v}; it must be a whole number"
                )));
            }
        }
        if config.teacher_temp >= config.student_temp {
            return Err(Error::Param(format!(
                "dino: --dino-teacher-temp ({}) must be below --dino-student-temp ({}): the \
                 teacher's outputs are sharpened",
                config.teacher_temp, config.student_temp
            )));
        }
        let d = *arch
            .projector
            .last()
            .ok_or_else(|| Error::Param("the architecture needs a projector".into()))?
            as i64;
        let k = config.out_dim as i64;
        let last = (online.root() / "dino_head").var("last_layer", &[k, d], fan_in_uniform(d));
        let mut teacher_vs = nn::VarStore::new(online.device());
        let teacher = Encoder::new(&(teacher_vs.root() / "encoder"), arch)?;
        let teacher_last =
            (teacher_vs.root() / "dino_head").var("last_layer", &[k, d], nn::Init::Const(0.0));
        teacher_vs
            .copy(online)
            .map_err(|e| Error::Train(format!("cannot initialise the DINO teacher: {e}")))?;
        let center = teacher_vs
            .root()
            .var("center", &[1, k], nn::Init::Const(0.0));
        teacher_vs.freeze();
        let mut views = vec![ViewKind::Global; 2];
        views.extend(std::iter::repeat_n(
            ViewKind::Local,
            config.local_crops as usize,
        ));
        Ok(Self {
            config,
            views,
            last,
            teacher_vs,
            teacher,
            teacher_last,
            center,
            batch_center: RefCell::new(None),
        })
    }

}

/// The outputs of `views` concatenated along the batch (one forward pass: same-size views
/// together, as DINO's multi-crop wrapper does), split back per view.
fn outputs(encoder: &Encoder, last: &Tensor, views: &[Tensor]) -> Vec<Tensor> {
    if views.is_empty() {
        return Vec::new();
    }
    let n = views[0].size()[0];
    let z = encoder.forward(&Tensor::cat(views, 0), true).projection;
    last_layer(&z, last).split(n, 0)
}

impl SslMethod for Dino {
    fn views(&self) -> &[ViewKind] {
        &self.views
    }

    fn local_crop_scale(&self) -> [f64; 2] {
        [LOCAL_SCALE_MIN, self.config.local_crop_scale_max]
    }

    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor> {
        if views.len() != self.views.len() {
            return Err(Error::Train(format!(
                "dino takes {} views per image (2 global, {} local), got {}",
                self.views.len(),
                self.views.len() - 2,
                views.len()
            )));
        }
        let (global, local) = views.split_at(2);
        let mut student = outputs(encoder, &self.last, global);
        student.extend(outputs(encoder, &self.last, local));
        let teacher = tch::no_grad(|| outputs(&self.teacher, &self.teacher_last, global));
        let mean = tch::no_grad(|| Tensor::cat(&teacher, 0).mean_dim(0, true, Kind::Float));
        *self.batch_center.borrow_mut() = Some(mean);
        Ok(loss::dino(
            &student,
            &teacher,
            &self.center,
            self.config.student_temp,
            self.config.teacher_temp,
        ))
    }

    /// teacher = m · teacher + (1 - m) · student (m from [`cosine_momentum`]); then the centre
    /// moves toward the last batch's mean teacher output: `c = λ c + (1 - λ) mean`.
    fn after_step(&mut self, online: &nn::VarStore, step: usize, total: usize) {
        let m = cosine_momentum(self.config.ema_base, step, total);
        ema_update(&self.teacher_vs, online, m);
        tch::no_grad(|| {
            if let Some(mean) = self.batch_center.borrow_mut().take() {
                let l = self.config.center_momentum;
                let moved = &self.center * l + mean * (1.0 - l);
                self.center.copy_(&moved);
            }
        });
    }

    fn target(&self) -> Option<&nn::VarStore> {
        Some(&self.teacher_vs)
    }

    fn to_channels_last(&self) {
        self.teacher.to_channels_last();
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use crate::recipe::MethodConfig;
    use crate::train::methods::ViewKind;
    use crate::train::ssl::SslModel;

    #[test]
    fn two_global_and_the_local_views_teacher_and_centre_follow() {
        tch::manual_seed(2);
        let config = MethodConfig::new("dino")
            .with("local_crops", 3.0)
            .with("out_dim", 16.0)
            .with("ema_base", 0.5)
            .with("center_momentum", 0.75);
        let arch = super::super::tests::tiny_vit();
        let mut m = SslModel::new(&arch, &config, Device::Cpu).expect("model");
        assert_eq!(
            m.views(),
            [
                ViewKind::Global,
                ViewKind::Global,
                ViewKind::Local,
                ViewKind::Local,
                ViewKind::Local
            ]
        );
        assert_eq!(super::super::local_size(&arch), (14, 14));
        let opts = (Kind::Float, Device::Cpu);
        let mut views: Vec<Tensor> = (0..2).map(|_| Tensor::randn([4, 1, 28, 28], opts)).collect();
        views.extend((0..3).map(|_| Tensor::randn([4, 1, 14, 14], opts)));
        let l = m.loss(&views).expect("loss");
        assert!(l.double_value(&[]).is_finite());
        l.backward();
        assert!(m
            .trainable()
            .iter()
            .any(|(n, t)| n == "dino_head.last_layer" && t.grad().defined()));
        let teacher = m.target().expect("teacher").variables();
        assert!(!teacher["center"].requires_grad());
        assert_eq!(teacher["center"].double_value(&[0, 0]), 0.0);
        // The teacher is still the student's copy, and a ViT has no batch norm: the batch's
        // mean teacher output is the student's on the global views.
        let want_mean = tch::no_grad(|| {
            let z = m.encoder.forward(&Tensor::cat(&views[..2], 0), true).projection;
            super::last_layer(&z, &m.vs.variables()["dino_head.last_layer"])
                .mean_dim(0, true, Kind::Float)
        });
        // Move the student away from the teacher, then one update at momentum 0.5.
        let name = "encoder.pos_embed";
        let online = m.vs.variables()[name].shallow_clone();
        let before = teacher[name].copy();
        tch::no_grad(|| {
            let _ = online.shallow_clone().fill_(1.0);
        });
        m.after_step(0, 10);
        let after = &m.target().expect("teacher").variables()[name];
        assert!((after - (&before * 0.5 + 0.5)).abs().max().double_value(&[]) < 1e-6);
        // The centre moved a quarter of the way (momentum 0.75) from 0 to that mean.
        let center = m.target().expect("teacher").variables()["center"].copy();
        assert!(want_mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!((&center - &want_mean * 0.25).abs().max().double_value(&[]) < 1e-6);
        // A second after_step without a loss leaves the centre where it is.
        m.after_step(1, 10);
        let again = &m.target().expect("teacher").variables()["center"];
        assert!((again - &center).abs().max().double_value(&[]) < 1e-7);
    }

    #[test]
    fn fractional_counts_and_a_teacher_no_sharper_than_the_student_are_refused() {
        let config = MethodConfig::new("dino").with("local_crops", 2.5);
        let arch = super::super::tests::tiny();
        assert!(SslModel::new(&arch, &config, Device::Cpu)
            .is_err_and(|e| e.to_string().contains("--local-crops is 2.5")));
        let config = MethodConfig::new("dino").with("teacher_temp", 0.2);
        assert!(SslModel::new(&arch, &config, Device::Cpu)
            .is_err_and(|e| e.to_string().contains("must be below --dino-student-temp")));
    }
}
