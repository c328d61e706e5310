//! The trainer (feature `train`): self-supervised training of `f` and `g` on libtorch
//! through `tch`, from the same [`crate::arch::ArchSpec`] the ONNX writer uses.

pub mod loss;
pub mod model;
pub mod optim;
