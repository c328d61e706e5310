//! `sslmem serve`: the scoring service. A request goes: middlewares (request id and metrics,
//! then for `/v1/*`: draining check, API key, body size, concurrency limit, timeout) -> the
//! route table in [`routes`] -> a handler in [`v1`] (parse into the endpoint's parameter type,
//! decode on the CPU worker pool) -> the [`Engine`] (views, the queue that batches across
//! requests, encoder threads, the estimator) -> the endpoint's response type as JSON.

pub mod bodies;
pub mod docs_page;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod reference;
pub mod request;
pub mod routes;
pub mod v1;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::Instrument;

use self::error::{ApiError, ErrorType};
use self::metrics::Metrics;
use crate::bundle::Bundle;
use crate::engine::{Engine, QueueOptions};
use crate::error::{Error, Result};
use crate::pixels::DecodeLimits;
use crate::runtime::{Device, Provider, RuntimeOptions};
use crate::score::ScoreOptions;

/// How `sslmem serve` runs (the command line's flags, parsed).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Model bundle folder (holds sslmem.json).
    pub bundle: PathBuf,
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one (the log says which).
    pub port: u16,
    /// Most views in one forward pass, across requests.
    pub max_batch_views: usize,
    /// Longest a job waits for others to fill its batch, in milliseconds.
    pub max_delay_ms: u64,
    /// Jobs waiting for inference at most; beyond it requests get 503.
    pub queue_size: usize,
    /// Concurrent /v1 requests at most; beyond it requests get 429.
    pub max_concurrent: usize,
    /// Seconds a /v1 request may take.
    pub request_timeout: f64,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest image, in pixels (width * height).
    pub max_pixels: u64,
    /// Most images (or align images) per request.
    pub max_images: usize,
    /// Most view pairs per image.
    pub max_pairs: usize,
    /// Default view pairs per image.
    pub pairs: usize,
    /// Default augmentation seed.
    pub seed: u64,
    /// Require `Authorization: Bearer <key>` on /v1/* (health, metrics and docs stay open).
    pub api_key: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    pub drain_timeout: f64,
    /// Threads decoding and augmenting (0: one per core).
    pub workers: usize,
    /// The reference population of a one-model bundle's calibrated scores (inputs: files,
    /// folders, datasets); empty: none.
    pub reference: Vec<String>,
    /// Reference neighbours of `knn_gap`.
    pub knn: usize,
}

/// What one request may ask for (the `--max-*` flags and the timeout).
pub struct Limits {
    pub max_images: usize,
    pub max_pairs: usize,
    pub max_body_bytes: usize,
    pub max_concurrent: usize,
    pub request_timeout: Duration,
    pub decode: DecodeLimits,
}

#[cfg(test)]
impl Limits {
    /// Small limits for unit tests.
    pub(crate) fn for_tests() -> Self {
        Self {
            max_images: 4,
            max_pairs: 3,
            max_body_bytes: 1 << 20,
            max_concurrent: 2,
            request_timeout: Duration::from_secs(5),
            decode: DecodeLimits {
                max_pixels: 1 << 20,
            },
        }
    }
}

/// Values of the parameters a request leaves out.
pub struct Defaults {
    pub pairs: usize,
    pub seed: u64,
}

/// What every handler shares: the engine, the metrics and the configuration.
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub defaults: Defaults,
    /// The device asked for.
    pub device: Device,
    /// The execution provider really in use.
    pub provider: Provider,
    /// The OpenAPI document, with this server's limits, as served.
    pub openapi: Bytes,
    /// A one-model bundle's reference population (`--reference`), scored at start-up.
    pub reference: Option<reference::ServiceReference>,
    api_key: Option<[u8; 32]>,
    permits: Arc<Semaphore>,
    ready: AtomicBool,
    draining: AtomicBool,
    next_id: AtomicU64,
}

impl AppState {
    /// Ready: listening, not draining, and the engine's batching thread alive.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && self.engine.alive()
    }

    /// The loaded bundle.
    pub fn bundle(&self) -> &Bundle {
        self.engine.bundle()
    }
}

/// Compares a presented key with the configured one in constant time (over SHA-256
/// digests, so neither content nor length leaks through timing).
fn key_matches(expected: &[u8; 32], presented: &str) -> bool {
    let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Reads and discards up to `cap` bytes of the request body (for at most a few seconds)
/// before an early error response: a client still sending its body then receives the
/// answer instead of a reset connection.
async fn reject(req: Request, err: ApiError, cap: usize) -> Response {
    drain_body(req.into_body(), cap).await;
    let mut resp = err.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Reads and discards up to `cap` bytes of a body, for at most a few seconds.
pub(crate) async fn drain_body(mut body: axum::body::Body, cap: usize) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

async fn guard_v1(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let cap = state.limits.max_body_bytes.saturating_mul(2);
    if !state.engine.alive() {
        let err = ApiError::unavailable(
            ErrorType::EngineStopped,
            "the inference engine has stopped; the service is exiting",
        );
        return reject(req, err, cap).await;
    }
    if state.draining.load(Ordering::SeqCst) {
        return reject(
            req,
            ApiError::unavailable(ErrorType::Draining, "the service is shutting down"),
            cap,
        )
        .await;
    }
    if let Some(expected) = &state.api_key {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|k| key_matches(expected, k)) {
            return reject(req, ApiError::unauthorized(), cap).await;
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > state.limits.max_body_bytes) {
        let msg = format!(
            "request body is {n} bytes, over the limit of {} bytes",
            state.limits.max_body_bytes
        );
        return reject(req, ApiError::too_large(msg), cap).await;
    }
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        let msg = format!(
            "more than {} concurrent requests; retry shortly",
            state.limits.max_concurrent
        );
        return reject(req, ApiError::overloaded(msg), cap).await;
    };
    match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        // Dropping the handler drops its reply channel: the engine skips its work.
        Err(_) => ApiError::unavailable(
            ErrorType::Timeout,
            format!(
                "the request took longer than {:.1} s",
                state.limits.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Request id, tracing span, and the HTTP metrics.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", state.next_id.fetch_add(1, Ordering::Relaxed)));
    let span = tracing::info_span!("request", id = %id, method = %req.method(), route = %route);
    let m = &state.metrics;
    m.in_flight.inc();
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let secs = start.elapsed().as_secs_f64();
    m.in_flight.dec();
    m.request_duration
        .with_label_values(&[&route])
        .observe(secs);
    let status = resp.status();
    m.requests
        .with_label_values(&[&route, status.as_str()])
        .inc();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            ms = secs * 1e3,
            "request finished"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The service's router: the route table of [`routes::api`], the `/v1` routes behind
/// [`guard_v1`], JSON errors for unknown routes and methods, and [`observe`] around all.
pub fn router(state: Arc<AppState>) -> Router {
    let api = routes::api();
    let (guarded, _) = api.guarded.split_for_parts();
    let (open, _) = api.open.split_for_parts();
    Router::new()
        .merge(guarded.route_layer(middleware::from_fn_with_state(state.clone(), guard_v1)))
        .merge(open)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

fn bad_arg(m: String) -> Error {
    Error::Param(m)
}

/// Checks the options that have no type to say they must be positive.
fn validate(args: &ServeOptions) -> Result<()> {
    if args.max_batch_views == 0
        || args.max_images == 0
        || args.max_pairs == 0
        || args.max_concurrent == 0
    {
        return Err(bad_arg(
            "max_batch_views, max_images, max_pairs and max_concurrent must be positive".into(),
        ));
    }
    if args.pairs == 0 || args.pairs > args.max_pairs {
        return Err(bad_arg(format!(
            "the default pairs must lie in 1..=max_pairs ({})",
            args.max_pairs
        )));
    }
    if !(args.request_timeout > 0.0 && args.drain_timeout >= 0.0) {
        return Err(bad_arg(
            "request_timeout must be positive and drain_timeout not negative".into(),
        ));
    }
    if args.api_key.as_deref() == Some("") {
        return Err(bad_arg("the API key is empty".into()));
    }
    Ok(())
}

/// The state every handler shares: the warmed-up engine, the limits and defaults of `args`,
/// and the OpenAPI document they imply.
fn app_state(
    args: &ServeOptions,
    rt: &RuntimeOptions,
    engine: Engine,
    metrics: Arc<Metrics>,
    provider: Provider,
    reference: Option<reference::ServiceReference>,
) -> Result<AppState> {
    Ok(AppState {
        reference,
        engine,
        metrics,
        limits: Limits {
            max_images: args.max_images,
            max_pairs: args.max_pairs,
            max_body_bytes: args.max_body_bytes,
            max_concurrent: args.max_concurrent,
            request_timeout: Duration::from_secs_f64(args.request_timeout),
            decode: DecodeLimits {
                max_pixels: args.max_pixels,
            },
        },
        defaults: Defaults {
            pairs: args.pairs,
            seed: args.seed,
        },
        device: rt.device,
        provider,
        openapi: Bytes::from(
            openapi::document(&openapi::DocConfig {
                max_images: args.max_images,
                max_pairs: args.max_pairs,
                api_key: args.api_key.is_some(),
            })
            .to_string(),
        ),
        api_key: args
            .api_key
            .as_ref()
            .map(|k| Sha256::digest(k.as_bytes()).into()),
        permits: Arc::new(Semaphore::new(args.max_concurrent)),
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
    })
}

/// Loads and warms up the bundle, then serves until SIGTERM or Ctrl-C, then drains.
pub fn run(args: &ServeOptions, rt: &RuntimeOptions) -> Result<()> {
    validate(args)?;
    if args.workers > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.workers)
            .thread_name(|i| format!("worker-{i}"))
            .build_global()
            .map_err(|e| bad_arg(format!("cannot set up {} workers: {e}", args.workers)))?;
    }
    let started = Instant::now();
    let bundle = Bundle::load(&args.bundle, rt)?;
    let metrics = Arc::new(Metrics::new().map_err(|e| Error::Service(format!("metrics: {e}")))?);
    let engine = Engine::start(
        bundle,
        QueueOptions {
            max_batch_views: args.max_batch_views,
            max_delay: Duration::from_millis(args.max_delay_ms),
            capacity: args.queue_size,
        },
        metrics.clone(),
    )?;
    let provider = engine.provider();
    if rt.device == Device::Auto && provider == Provider::Cpu {
        let why = if crate::runtime::CUDA_BUILT {
            "CUDA unavailable, see above"
        } else {
            "built without the `cuda` feature"
        };
        tracing::info!("device auto: running on the CPU ({why})");
    }
    let name = engine
        .bundle()
        .manifest
        .name
        .clone()
        .unwrap_or_else(|| engine.bundle().folder_name());
    metrics
        .info
        .with_label_values(&[&name, &provider.to_string(), env!("CARGO_PKG_VERSION")])
        .set(1.0);
    // Warm-up: a full request's worth of real augmented views through every encoder, before
    // the listener opens.
    engine.warm_up(
        &engine.bundle().manifest.input.probe_image()?,
        &ScoreOptions {
            pairs: args.pairs,
            seed: args.seed,
            ..ScoreOptions::default()
        },
    )?;
    let defaults = ScoreOptions {
        pairs: args.pairs,
        seed: args.seed,
        ..ScoreOptions::default()
    };
    let reference = if args.reference.is_empty() {
        None
    } else if !engine.bundle().g.is_empty() {
        return Err(bad_arg(
            "--reference calibrates one-model bundles (f only); this bundle has g encoders, \
             so /v1/score gives SSLMem scores"
                .into(),
        ));
    } else {
        Some(reference::ServiceReference::build(
            &engine,
            &args.reference,
            &defaults,
            args.knn,
            DecodeLimits {
                max_pixels: args.max_pixels,
            },
        )?)
    };
    let state = Arc::new(app_state(args, rt, engine, metrics, provider, reference)?);
    tracing::info!(
        bundle = %args.bundle.display(),
        provider = %provider,
        device = %rt.device,
        f = state.bundle().f.len(),
        g = state.bundle().g.len(),
        "encoders loaded and warmed up in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|e| Error::Service(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args, state))
}

async fn serve(args: &ServeOptions, state: Arc<AppState>) -> Result<()> {
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::Service(format!("cannot listen on {addr}: {e}")))?;
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::Service(e.to_string()))?;
    state.ready.store(true, Ordering::SeqCst);
    state.metrics.ready.set(1.0);
    tracing::info!("listening on http://{local}");
    let drain = Duration::from_secs_f64(args.drain_timeout);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let engine_died = Arc::new(AtomicBool::new(false));
    let died = engine_died.clone();
    tokio::spawn(async move {
        let dead = tokio::select! {
            () = shutdown_signal() => false,
            () = engine_stopped(&st) => true,
        };
        st.draining.store(true, Ordering::SeqCst);
        st.metrics.ready.set(0.0);
        let deadline = Instant::now() + drain;
        if dead {
            died.store(true, Ordering::SeqCst);
            tracing::error!(
                "the inference engine has stopped: answering 503 for {:.0} s (--drain-timeout), \
                 then exiting with status 2 so that the service is restarted",
                drain.as_secs_f64()
            );
            // Probes and scrapes see the failure before the process goes (SIGTERM ends it early).
            tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => {},
                () = shutdown_signal() => {},
            }
        } else {
            tracing::info!(
                "shutting down: draining in-flight requests (up to {:.0} s)",
                drain.as_secs_f64()
            );
        }
        // Keep the listener open while requests finish, so probes see 503 on /readyz.
        while st.permits.available_permits() < st.limits.max_concurrent && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(());
    });
    let app = router(state.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stop_rx.await;
    });
    server
        .await
        .map_err(|e| Error::Service(format!("server error: {e}")))?;
    if engine_died.load(Ordering::SeqCst) {
        return Err(Error::Service(
            "stopped because the inference engine stopped (see the errors above)".into(),
        ));
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves when the engine's batching thread has stopped.
async fn engine_stopped(state: &AppState) {
    while state.engine.alive() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_compare_by_digest() {
        let k: [u8; 32] = Sha256::digest(b"secret").into();
        assert!(key_matches(&k, "secret"));
        assert!(!key_matches(&k, "secreT"));
        assert!(!key_matches(&k, ""));
    }
}
