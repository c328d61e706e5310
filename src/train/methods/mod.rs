//! The self-supervised methods, one file each behind [`SslMethod`] (as solo-learn's
//! `solo/methods/`), and [`build`], the registry from a recorded [`MethodConfig`] to its
//! method. The trainer's loop, the monitor and the checkpoints know no method by name: they
//! ask the method for its views, its loss, what runs after a step, its trainable parameters
//! and the networks it keeps beside the online one.
//!
//! A new method is one file here implementing [`SslMethod`], one line in [`build`], and its
//! typed hyperparameters in [`crate::recipe::method`] (the manifest reads them without the
//! `train` feature) with their `sslmem-train` flags.

mod barlow;
mod byol;
mod heads;
mod simclr;
mod simsiam;
mod vicreg;

use tch::{nn, Tensor};

use super::model::Encoder;
use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::recipe::MethodConfig;

/// The kind of one view a method takes of each image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// A view at the architecture's input size from the run's training augmentations (what
    /// SimCLR, BYOL, SimSiam, VICReg and Barlow Twins take two of). Multi-crop methods
    /// (SwAV, DINO) would add small local crops as another kind.
    Global,
}

/// Two global views, the joint-embedding methods' pair.
pub const TWO_GLOBAL: &[ViewKind] = &[ViewKind::Global, ViewKind::Global];

/// A self-supervised method: the heads it adds to the encoder (the projector is the
/// encoder's own, [`ArchSpec::projector`]), the loss of a batch of views, and its state.
pub trait SslMethod {
    /// The views each image needs per step, in the order [`Self::loss`] takes them.
    fn views(&self) -> &'static [ViewKind] {
        TWO_GLOBAL
    }

    /// The loss of one batch (training mode): `views[k]` is view `k` of every image of the
    /// batch, `[batch, channels, height, width]`, normalised.
    ///
    /// Errors: [`Error::Train`] when the views are not the ones [`Self::views`] asks for.
    fn loss(&self, encoder: &Encoder, views: &[Tensor]) -> Result<Tensor>;

    /// What runs after each optimiser step (`step` of `total`, 0-based), given the online
    /// network (BYOL's EMA update of its target). Nothing by default.
    fn after_step(&mut self, online: &nn::VarStore, step: usize, total: usize) {
        let _ = (online, step, total);
    }

    /// The parameters the optimiser updates, by name, sorted: by default every online
    /// variable that requires a gradient (encoder, projector and the method's heads).
    fn trainable(&self, online: &nn::VarStore) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = online
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// A network kept beside the online one and not trained by the optimiser (BYOL's EMA
    /// target): checkpointed under `target/`. None by default.
    fn target(&self) -> Option<&nn::VarStore> {
        None
    }

    /// Stores the method's own convolution weights channels-last, as the encoder's
    /// ([`Encoder::to_channels_last`]). Nothing by default.
    fn to_channels_last(&self) {}
}

/// The registry: builds the method `config` names, adding its heads to `online` (which
/// already holds the encoder of `arch`).
///
/// Errors: the architecture has no projector; libtorch fails to create a head.
pub fn build(
    config: &MethodConfig,
    online: &nn::VarStore,
    arch: &ArchSpec,
) -> Result<Box<dyn SslMethod>> {
    Ok(match config {
        MethodConfig::Simclr(c) => Box::new(simclr::Simclr::new(c)),
        MethodConfig::Simsiam(c) => Box::new(simsiam::Simsiam::new(c, online, arch)?),
        MethodConfig::Byol(c) => Box::new(byol::Byol::new(c, online, arch)?),
        MethodConfig::Vicreg(c) => Box::new(vicreg::Vicreg::new(c)),
        MethodConfig::Barlow(c) => Box::new(barlow::Barlow::new(c)),
    })
}

/// The two views of a two-view method.
///
/// Errors: [`Error::Train`] for any other number of views.
fn two(views: &[Tensor]) -> Result<(&Tensor, &Tensor)> {
    match views {
        [a, b] => Ok((a, b)),
        _ => Err(Error::Train(format!(
            "the method takes 2 views of each image, not {}",
            views.len()
        ))),
    }
}

/// The projections `[batch, d]` of both views, the first view's first (training mode, so
/// batch-norm statistics update in that order).
fn project(encoder: &Encoder, views: &[Tensor]) -> Result<(Tensor, Tensor)> {
    let (x1, x2) = two(views)?;
    Ok((
        encoder.forward(x1, true).projection,
        encoder.forward(x2, true).projection,
    ))
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::recipe::method::{FlatMethodConfig, METHOD_NAMES};
    use crate::train::ssl::SslModel;

    pub(super) fn tiny() -> ArchSpec {
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
        for &name in METHOD_NAMES {
            tch::manual_seed(0);
            let config = FlatMethodConfig {
                method: name.into(),
                ..Default::default()
            }
            .typed()
            .expect("method");
            let mut m = SslModel::new(&tiny(), &config, Device::Cpu).expect("model");
            let views: Vec<Tensor> = m
                .views()
                .iter()
                .map(|_| Tensor::randn([6, 1, 28, 28], (Kind::Float, Device::Cpu)))
                .collect();
            let l = m.loss(&views).expect("loss");
            assert!(l.double_value(&[]).is_finite(), "{name}");
            l.backward();
            let named = m.trainable();
            assert!(
                named
                    .iter()
                    .any(|(n, t)| n.starts_with("encoder.") && t.grad().defined()),
                "{name}"
            );
            if matches!(name, "simsiam" | "byol") {
                assert!(named.iter().any(|(n, _)| n.starts_with("predictor.")));
            }
            assert!(m.loss(&views[..1]).is_err(), "{name}: one view is too few");
            m.after_step(1, 10);
        }
    }
}
