//! sslmem: measures how much a self-supervised image encoder has memorized individual
//! training images (SSLMem, see `docs/science.md`): the alignment of an image's augmented views
//! under an encoder `g` trained without it, minus under an encoder `f` trained with it.
//!
//! Where things live:
//! - [`augment`]: the training augmentations, one small module each;
//! - [`pixels`]: decoding and resampling; [`data`]: datasets, splits, canaries, inputs;
//! - [`arch`] + [`onnx`]: the encoder description and the ONNX writer;
//! - [`bundle`]: model bundles (manifest + ONNX files, the contract check); [`runtime`]:
//!   ONNX Runtime sessions on their own threads;
//! - [`engine`]: the scoring engine, the only code that feeds encoders (views, the batching
//!   queue, typed score/align/embed calls);
//! - [`score`]: scoring options and the estimator on representations;
//! - [`audit`], [`stats`], [`membership`]: dataset audits, their statistics and reports;
//! - [`service`]: the HTTP scoring service (`sslmem serve`);
//! - [`train`] (feature `train`): the trainer on libtorch; [`recipe`]: its records (recipe,
//!   runs, monitor, log lines) as plain data, read without the feature;
//! - [`error`], [`output`], [`fsutil`], [`rng`], [`choice`]: typed errors, logging and progress
//!   bars, atomic files and hashes, the seeded generator, enums parsed by name.
//!
//! The command lines are in the binaries (`src/cli/`, `src/bin/sslmem-train/`).

pub mod arch;
pub mod audit;
pub mod augment;
pub mod bundle;
pub mod choice;
pub mod data;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod membership;
pub mod onnx;
pub mod output;
pub mod pixels;
pub mod recipe;
pub mod rng;
pub mod runtime;
pub mod score;
pub mod service;
pub mod stats;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, InputError, Result};

/// This build's version (Cargo's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this build was made from, abbreviated, or `unknown` (see `build.rs`).
pub const GIT_REVISION: &str = env!("SSLMEM_BUILD_GIT_REVISION");
