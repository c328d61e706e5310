//! The trainer (feature `train`): self-supervised training of `f` and `g` on libtorch
//! through `tch`, from the same [`crate::arch::ArchSpec`] the ONNX writer uses.

pub mod collapse;
pub mod eval;
pub mod loss;
pub mod malloc;
pub mod method;
pub mod model;
pub mod monitor;
pub mod optim;
pub mod pair;
pub mod profile;
pub mod removal;
pub mod trainer;
