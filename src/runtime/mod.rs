//! ONNX Runtime: the device asked for (`device`), finding the shared library (`library`)
//! and the process's one environment (`environment`), the CUDA provider (`cuda`), building sessions (`builder`) and the
//! representation-only graph (`reduce`), encoder sessions that each live on their own OS
//! thread (`session`), and the casts and transposes between sslmem's float32 images and a
//! model's own formats (`boundary`).
//!
//! Everything public is re-exported here: callers name `crate::runtime::X`.

mod boundary;
mod builder;
mod cuda;
mod device;
mod environment;
mod library;
mod reduce;
mod session;

pub use boundary::{pool, Boundary, ElementType, Layout, Pooling};
pub use device::{Device, Provider, RuntimeOptions, CUDA_BUILT};
pub use environment::{disable_ort_telemetry, environment, loaded_library};
pub use library::{gpu_site, library_path, sslmem_home, ORT_VERSION};
pub use reduce::representation_only;
pub use session::{EncoderSession, TensorInfo};
