//! The trainer (feature `train`): self-supervised training of `f` and `g` on libtorch
//! through `tch`, from the same [`crate::arch::ArchSpec`] the ONNX writer uses. Its records
//! (recipe, runs, log lines) are plain data in [`crate::recipe`].
//!
//! - [`methods`]: the SSL methods, one file each, and their registry; [`ssl`]: the online
//!   encoder with its method; [`loss`]: the methods' losses; [`model`]: the encoder;
//! - [`trainer`]: one encoder's run, from [`batches`] (the views), [`optim`], [`monitor`]
//!   and [`checkpoint`];
//! - [`job`]: one encoder trained, exported, checked, evaluated and recorded, resumably, as
//!   [`pair`], [`subsample`] and [`removal`] do it; [`eval`] and [`collapse`]: what is
//!   measured; [`manifest`]: what a trainer's bundle records of how it was made.
//! - [`pair`]: `f` and `g` on the practical split; [`subsample`]: `M` encoders on random
//!   halves of a pool (the many-model estimator's bundle); [`removal`]: the removal
//!   experiment.

pub mod batches;
pub mod checkpoint;
pub mod collapse;
pub mod eval;
pub mod job;
pub mod loss;
pub mod malloc;
pub mod manifest;
pub mod methods;
pub mod model;
pub mod monitor;
pub mod optim;
pub mod pair;
pub mod profile;
pub mod removal;
pub mod ssl;
pub mod subsample;
pub mod trainer;
