//! Building ONNX Runtime sessions: the builder's settings (graph optimisations, memory
//! pattern, threads, spinning), the device (CPU, CUDA, or CUDA with a fall-back to the CPU
//! under `auto`), and the representation-only session a model with other outputs gets.

use std::path::Path;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::cuda::with_cuda;
use super::device::{Device, Provider, RuntimeOptions, CUDA_BUILT};
use super::environment::loaded_library;
use super::library::library_path;
use super::reduce::representation_only;
use crate::error::{Error, Result};

/// Graph optimisations: every level ONNX Runtime has (`ORT_ENABLE_ALL`), which on top of
/// the NCHWc layout level adds the remaining fusions; 8% faster forward passes on the default
/// pair than `ORT_ENABLE_LAYOUT` in `scripts/bench-score.sh` (docs/benchmarks.md), with the
/// same scores to the tolerance of the exactness tests.
const OPTIMIZATION: GraphOptimizationLevel = GraphOptimizationLevel::All;

fn base_builder(env: &Environment, opts: &RuntimeOptions) -> ort::Result<SessionBuilder> {
    // ONNX Runtime's memory pattern plans one allocation per distinct input shape and keeps
    // the plan; the service's forward passes take every batch size up to --max-batch-views,
    // so it is switched off (ONNX Runtime's own advice for varying shapes). Intermediate
    // tensors then come from the CPU arena, which reuses its blocks across sizes: resident
    // memory stays flat under mixed load (scripts/bench-memory.sh, and the service test
    // `resident_memory_stops_growing_after_the_first_round_of_shapes`) at no measurable cost
    // for fixed batches (docs/benchmarks.md).
    let mut b = Session::builder(env)?
        .with_optimization_level(OPTIMIZATION)?
        .with_memory_pattern(false)?;
    if opts.threads > 0 {
        b = b.with_intra_threads(opts.threads)?;
    }
    if !opts.spin {
        b = b.with_intra_op_spinning(false)?;
    }
    Ok(b)
}

/// Where a session's model comes from: its file, or bytes made from it (the
/// representation-only graph of [`representation_only`]).
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

impl Source<'_> {
    fn commit(self, b: &mut SessionBuilder) -> ort::Result<Session> {
        match self {
            Source::File(p) => b.commit_from_file(p),
            Source::Memory(bytes) => b.commit_from_memory(bytes),
        }
    }
}

/// Builds a session of the model at `path` (from `src`: that file or bytes made from it) on
/// the requested device; returns the provider really in use. Under `--device cuda[:N]` a
/// CUDA provider that cannot be registered is [`Error::CudaUnavailable`] (never a fall-back
/// to the CPU); other failures are the model's.
pub(super) fn build_session(
    env: &Environment,
    path: &Path,
    src: Source<'_>,
    opts: &RuntimeOptions,
) -> Result<(Session, Provider)> {
    let model = |e: String| Error::Model {
        model: path.display().to_string(),
        reason: e,
    };
    match opts.device {
        Device::Cpu => cpu_session(env, src, opts)
            .map(|s| (s, Provider::Cpu))
            .map_err(|e| model(e.to_string())),
        Device::Auto => auto_session(env, src, opts).map_err(|e| model(e.to_string())),
        Device::Cuda(n) => {
            let builder = base_builder(env, opts).map_err(|e| model(e.to_string()))?;
            let mut builder = with_cuda(builder, n).map_err(|e| Error::CudaUnavailable {
                device: opts.device.to_string(),
                library: loaded_library().map_or_else(|| library_path(opts), Path::to_path_buf),
                reason: e.to_string(),
            })?;
            let session = src.commit(&mut builder).map_err(|e| model(e.to_string()))?;
            Ok((session, Provider::Cuda))
        }
    }
}

fn cpu_session(env: &Environment, src: Source<'_>, opts: &RuntimeOptions) -> ort::Result<Session> {
    src.commit(&mut base_builder(env, opts)?)
}

/// `--device auto`: CUDA when it starts, else the CPU, saying why in the log.
fn auto_session(
    env: &Environment,
    src: Source<'_>,
    opts: &RuntimeOptions,
) -> ort::Result<(Session, Provider)> {
    if CUDA_BUILT {
        match with_cuda(base_builder(env, opts)?, 0).and_then(|mut b| src.commit(&mut b)) {
            Ok(s) => return Ok((s, Provider::Cuda)),
            Err(e) => tracing::warn!("device auto: CUDA unavailable ({e}); falling back to CPU"),
        }
    } else {
        tracing::debug!("device auto: built without the `cuda` feature; using CPU");
    }
    Ok((cpu_session(env, src, opts)?, Provider::Cpu))
}

/// A session of the representation-only graph of `path` on the same provider, or `None`
/// (logged) when the model cannot be reduced (see [`representation_only`]) or the reduced
/// graph does not load: the caller then keeps the whole model, which gives the same results.
pub(super) fn specialise(
    env: &Environment,
    path: &Path,
    opts: &RuntimeOptions,
    output: &str,
    provider: Provider,
) -> Option<Session> {
    let bytes = match representation_only(path, output) {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(model = %path.display(), "keeping the whole model: {e}");
            return None;
        }
    };
    match build_session(env, path, Source::Memory(&bytes), opts) {
        Ok((s, p)) if p == provider => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(model = %path.display(), "keeping the whole model: {e}");
            None
        }
    }
}
