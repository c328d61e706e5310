//! `sslmem serve`: the flags of the HTTP service.

use std::path::PathBuf;

use clap::Args;
use sslmem::error::{Error, Result};
use sslmem::service::ServeOptions;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Model bundle folder (holds sslmem.json).
    #[arg(
        long,
        env = "SSLMEM_BUNDLE",
        default_value = "models/fashion-mnist-canaries"
    )]
    pub bundle: PathBuf,
    #[arg(long, env = "SSLMEM_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (the log says which).
    #[arg(long, env = "SSLMEM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Most views in one forward pass, across requests.
    #[arg(long, env = "SSLMEM_MAX_BATCH_VIEWS", default_value_t = 256)]
    pub max_batch_views: usize,
    /// Longest a job waits for others to fill its batch, in milliseconds.
    #[arg(long, env = "SSLMEM_MAX_DELAY_MS", default_value_t = 2)]
    pub max_delay_ms: u64,
    /// Jobs waiting for inference at most; beyond it requests get 503.
    #[arg(long, env = "SSLMEM_QUEUE_SIZE", default_value_t = 1024)]
    pub queue_size: usize,
    /// Concurrent /v1 requests at most; beyond it requests get 429.
    #[arg(long, env = "SSLMEM_MAX_CONCURRENT", default_value_t = 64)]
    pub max_concurrent: usize,
    /// Seconds a /v1 request may take.
    #[arg(long, env = "SSLMEM_REQUEST_TIMEOUT", default_value_t = 60.0)]
    pub request_timeout: f64,
    /// Largest request body, in bytes.
    #[arg(long, env = "SSLMEM_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_body_bytes: usize,
    /// Largest image, in pixels (width * height).
    #[arg(long, env = "SSLMEM_MAX_PIXELS", default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// Most images (or align images) per request.
    #[arg(long, env = "SSLMEM_MAX_IMAGES", default_value_t = 64)]
    pub max_images: usize,
    /// Most view pairs per image.
    #[arg(long, env = "SSLMEM_MAX_PAIRS", default_value_t = 100)]
    pub max_pairs: usize,
    /// Default view pairs per image.
    #[arg(long, env = "SSLMEM_PAIRS", default_value_t = 10)]
    pub pairs: usize,
    /// Default augmentation seed.
    #[arg(long, env = "SSLMEM_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Require `Authorization: Bearer <key>` on /v1/* (health, metrics and docs stay open).
    #[arg(long, env = "SSLMEM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SSLMEM_DRAIN_TIMEOUT", default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Threads decoding and augmenting (0: one per core).
    #[arg(long, env = "SSLMEM_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// For a one-model bundle (f only): the reference population its results are calibrated
    /// on (images from the audited distribution that f did not see: files, folders,
    /// datasets with a range), scored at start-up with --pairs and --seed; /v1/score then
    /// adds `align_f_percentile` and `knn_gap` (docs/science.md#one-model-scores).
    #[arg(long, env = "SSLMEM_SERVE_REFERENCE", num_args = 1.., value_name = "INPUT")]
    pub reference: Vec<String>,
    /// Reference neighbours (in f's representation) of `knn_gap`.
    #[arg(long, env = "SSLMEM_SERVE_KNN", default_value_t = sslmem::score::calibrate::DEFAULT_KNN as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub knn: u64,
}

impl ServeArgs {
    /// The service's options, after the checks that name this command line's flags (the
    /// library checks the same things again in its own terms).
    pub fn options(&self) -> Result<ServeOptions> {
        let bad = |m: String| Err(Error::Param(m));
        if self.max_batch_views == 0
            || self.max_images == 0
            || self.max_pairs == 0
            || self.max_concurrent == 0
        {
            return bad(
                "--max-batch-views, --max-images, --max-pairs and --max-concurrent must be positive"
                    .into(),
            );
        }
        if self.pairs == 0 || self.pairs > self.max_pairs {
            return bad(format!("--pairs must lie in 1..={}", self.max_pairs));
        }
        if !(self.request_timeout > 0.0 && self.drain_timeout >= 0.0) {
            return bad(
                "--request-timeout must be positive and --drain-timeout not negative".into(),
            );
        }
        if self.api_key.as_deref() == Some("") {
            return bad("--api-key is empty".into());
        }
        Ok(ServeOptions {
            bundle: self.bundle.clone(),
            host: self.host.clone(),
            port: self.port,
            max_batch_views: self.max_batch_views,
            max_delay_ms: self.max_delay_ms,
            queue_size: self.queue_size,
            max_concurrent: self.max_concurrent,
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
            max_pixels: self.max_pixels,
            max_images: self.max_images,
            max_pairs: self.max_pairs,
            pairs: self.pairs,
            seed: self.seed,
            api_key: self.api_key.clone(),
            drain_timeout: self.drain_timeout,
            workers: self.workers,
            reference: self.reference.clone(),
            knn: usize::try_from(self.knn).unwrap_or(usize::MAX),
        })
    }
}
