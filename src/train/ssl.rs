//! The networks of one training run: the online encoder (with its projector) in a
//! `VarStore`, and the self-supervised method ([`super::methods`]) with the heads and state it
//! adds. The trainer talks to the method only through [`SslModel`].

use tch::{nn, Device, Tensor};

use super::methods::{self, SslMethod, ViewKind};
use super::model::Encoder;
use crate::arch::ArchSpec;
use crate::error::{Error, Result};
use crate::recipe::MethodConfig;

/// The trained networks of one encoder run.
pub struct SslModel {
    /// Online encoder and method heads (what the optimiser updates).
    pub vs: nn::VarStore,
    pub encoder: Encoder,
    method: Box<dyn SslMethod>,
}

impl SslModel {
    /// The encoder of `arch` on `device` (parameters drawn from libtorch's generator, seed it
    /// first), then the method's heads.
    ///
    /// Errors: the architecture is invalid or has no projector; the method cannot be built.
    pub fn new(arch: &ArchSpec, config: &MethodConfig, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let encoder = Encoder::new(&(vs.root() / "encoder"), arch)?;
        if arch.projector.is_empty() {
            return Err(Error::Param("the architecture needs a projector".into()));
        }
        let method = methods::build(config, &vs, arch)?;
        Ok(Self {
            vs,
            encoder,
            method,
        })
    }

    /// Stores the encoders' convolution weights channels-last (see
    /// [`Encoder::to_channels_last`]).
    pub fn to_channels_last(&self) {
        self.encoder.to_channels_last();
        self.method.to_channels_last();
    }

    /// The views each image needs per step ([`SslMethod::views`]).
    pub fn views(&self) -> &[ViewKind] {
        self.method.views()
    }

    /// The area fraction of the method's local crops ([`SslMethod::local_crop_scale`]).
    pub fn local_crop_scale(&self) -> [f64; 2] {
        self.method.local_crop_scale()
    }

    /// The loss of a batch of views (training mode), see [`SslMethod::loss`].
    pub fn loss(&self, views: &[Tensor]) -> Result<Tensor> {
        self.method.loss(&self.encoder, views)
    }

    /// The method's update after optimiser step `step` of `total`.
    pub fn after_step(&mut self, step: usize, total: usize) {
        self.method.after_step(&self.vs, step, total);
    }

    /// The parameters the optimiser updates, by name, sorted.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.method.trainable(&self.vs)
    }

    /// The network the method keeps beside the online one, if any (checkpointed).
    pub fn target(&self) -> Option<&nn::VarStore> {
        self.method.target()
    }
}
