//! Model bundles: a folder with `sslmem.json` (the manifest) and the ONNX encoders.
//! `f` encoders were trained with the audited data, `g` encoders without it.
//! See `docs/bundle.md` for the format.
//!
//! - `manifest`: the manifest's serde types, its checks, reading and writing it;
//! - `load`: a loaded [`Bundle`] (hashes checked, one session per encoder);
//! - `contract`: the encoder contract checked at load time;
//! - `create`: `sslmem bundle create`, a bundle from ONNX files exported elsewhere;
//! - `random`: `sslmem bundle random`, a bundle of seeded untrained encoders;
//! - `split_pair`: `sslmem bundle split-pair`, the pair of two complementary encoders of a
//!   many-model bundle.
//!
//! Everything public is re-exported here: callers name `crate::bundle::X`.

mod contract;
mod create;
mod load;
mod manifest;
mod random;
mod split_pair;

pub use create::{create, CreateOptions};
pub use load::{side_by_side_threads, verify_file, Bundle};
pub use manifest::{
    read_manifest, write_manifest, Architecture, InputSpec, Manifest, ModelFile,
    RepresentationSpec, TrainingRecord, FORMAT, MANIFEST,
};
pub use random::write_random;
pub use split_pair::split_pair;
