//! Thin handlers: read the request, decode on the CPU worker pool, call the [`Engine`], and
//! write the command line's numbers as JSON.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::openapi;
use super::request::{read, Params, Upload};
use super::AppState;
use crate::engine::Preprocess;
use crate::pixels::{decode, DecodeLimits, SourceImage};
use crate::score::ScoreOptions;

/// Runs CPU work (decoding) on the rayon pool, off the async runtime's threads.
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await
        .map_err(|_| ApiError::internal("a worker stopped unexpectedly"))
}

fn check_count(state: &AppState, n: usize, what: &str) -> Result<(), ApiError> {
    let max = state.limits.max_images;
    if n == 0 {
        return Err(ApiError::invalid(format!("no {what} in the request")));
    }
    if n > max {
        return Err(ApiError::invalid(format!(
            "{n} {what} in one request; the limit is {max}"
        )));
    }
    Ok(())
}

/// Decodes every upload in parallel; the first bad image fails the request, naming it.
fn decode_all(
    uploads: &[Upload],
    channels: usize,
    limits: DecodeLimits,
) -> Result<Vec<SourceImage>, ApiError> {
    uploads
        .par_iter()
        .map(|u| {
            decode(&u.bytes, channels, limits)
                .map_err(|e| ApiError::invalid(format!("{}: {e}", u.name)))
        })
        .collect()
}

/// Decodes the uploads on the worker pool, to the model's channel count.
async fn decode_uploads(
    state: &Arc<AppState>,
    uploads: Vec<Upload>,
) -> Result<Vec<SourceImage>, ApiError> {
    let channels = state.bundle().manifest.input.channels;
    let limits = state.limits.decode;
    on_pool(move || decode_all(&uploads, channels, limits)).await?
}

fn score_options(state: &AppState, p: &Params) -> Result<ScoreOptions, ApiError> {
    let d = ScoreOptions::default();
    let pairs = p.pairs.unwrap_or(state.defaults.pairs);
    if pairs == 0 || pairs > state.limits.max_pairs {
        return Err(ApiError::invalid(format!(
            "pairs must lie in 1..={} (got {pairs})",
            state.limits.max_pairs
        )));
    }
    Ok(ScoreOptions {
        pairs,
        seed: p.seed.unwrap_or(state.defaults.seed),
        mode: p.mode.unwrap_or(d.mode),
        distance: p.distance.unwrap_or(d.distance),
        normalize: p.normalize.unwrap_or(d.normalize),
    })
}

pub async fn score(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (uploads, params) = read(req, state.limits.max_body_bytes, false).await?;
    if params.side.is_some() {
        return Err(ApiError::invalid("unknown parameter 'side' for /v1/score"));
    }
    check_count(&state, uploads.len(), "images")?;
    let opts = score_options(&state, &params)?;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    let images = decode_uploads(&state, uploads).await?;
    state.metrics.images.inc_by(names.len() as u64);
    let scores = state.engine.score_async(images, opts.clone()).await?;
    let results: Vec<Value> = names
        .iter()
        .zip(scores)
        .map(|(name, s)| {
            let mut m = Map::new();
            m.insert("input".into(), json!(name));
            if let Value::Object(fields) = json!(s) {
                m.extend(fields);
            }
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({
        "bundle": state.bundle().manifest.name,
        "provider": state.provider,
        "params": {"pairs": opts.pairs, "seed": opts.seed, "mode": opts.mode, "distance": opts.distance, "normalize": opts.normalize},
        "results": results,
    })))
}

pub async fn align(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (uploads, params) = read(req, state.limits.max_body_bytes, true).await?;
    if params.pairs.is_some()
        || params.seed.is_some()
        || params.mode.is_some()
        || params.side.is_some()
    {
        return Err(ApiError::invalid(
            "/v1/align takes only 'distance' and 'normalize'",
        ));
    }
    if uploads.len() % 2 != 0 {
        return Err(ApiError::invalid(format!(
            "align takes pairs of images; got {} images",
            uploads.len()
        )));
    }
    check_count(&state, uploads.len(), "images")?;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    let images = decode_uploads(&state, uploads).await?;
    let pairs: Vec<(SourceImage, SourceImage)> = images
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    state.metrics.images.inc_by(names.len() as u64);
    let d = ScoreOptions::default();
    let (norm, dist) = (
        params.normalize.unwrap_or(d.normalize),
        params.distance.unwrap_or(d.distance),
    );
    let alignments = state.engine.align_async(pairs, norm, dist).await?;
    let results: Vec<Value> = alignments
        .into_iter()
        .zip(names.chunks_exact(2))
        .map(|(r, n)| json!({"a": n[0], "b": n[1], "d_f": r.d_f, "d_g": r.d_g}))
        .collect();
    Ok(Json(
        json!({"bundle": state.bundle().manifest.name, "provider": state.provider, "distance": dist, "normalize": norm, "results": results}),
    ))
}

pub async fn embed(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (uploads, params) = read(req, state.limits.max_body_bytes, false).await?;
    if params.pairs.is_some()
        || params.seed.is_some()
        || params.mode.is_some()
        || params.distance.is_some()
        || params.normalize.is_some()
    {
        return Err(ApiError::invalid(
            "/v1/embed takes only 'side' (f, g or both)",
        ));
    }
    let side = params.side.as_deref().unwrap_or("both");
    let (want_f, want_g) = match side {
        "f" => (true, false),
        "g" => (false, true),
        "both" => (true, true),
        other => {
            return Err(ApiError::invalid(format!(
                "side: '{other}' is not one of f, g, both"
            )))
        }
    };
    check_count(&state, uploads.len(), "images")?;
    let names: Vec<String> = uploads.iter().map(|u| u.name.clone()).collect();
    let images = decode_uploads(&state, uploads).await?;
    state.metrics.images.inc_by(names.len() as u64);
    let reps = state.engine.embed_async(images, Preprocess::Resize).await?;
    let rows = |mats: &[ndarray::Array2<f32>], i: usize| -> Vec<Vec<f32>> {
        mats.iter().map(|m| m.row(i).to_vec()).collect()
    };
    let results: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut m = Map::new();
            m.insert("input".into(), json!(n));
            if want_f {
                m.insert("f".into(), json!(rows(&reps.f, i)));
            }
            if want_g {
                m.insert("g".into(), json!(rows(&reps.g, i)));
            }
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({
        "bundle": state.bundle().manifest.name,
        "provider": state.provider,
        "output": state.bundle().manifest.representation.output,
        "results": results,
    })))
}

pub async fn bundle(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "bundle": state.bundle().dir.display().to_string(),
        "manifest": state.bundle().manifest,
        "device": state.device.to_string(),
        "provider": state.provider,
        "encoders": {"f": state.bundle().f.len(), "g": state.bundle().g.len()},
        "limits": {
            "max_images": state.limits.max_images,
            "max_pairs": state.limits.max_pairs,
            "max_pixels": state.limits.decode.max_pixels,
            "max_body_bytes": state.limits.max_body_bytes,
            "max_concurrent": state.limits.max_concurrent,
            "request_timeout_seconds": state.limits.request_timeout.as_secs_f64(),
        },
        "defaults": {"pairs": state.defaults.pairs, "seed": state.defaults.seed},
    }))
}

/// Alive: the process answers and its inference engine is running.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.engine.alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        ApiError::unavailable("engine_stopped", "the inference engine has stopped").into_response()
    }
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable("not_ready", "starting up or draining").into_response()
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // Readiness can change without a request (the engine stopping): read it at scrape time.
    state
        .metrics
        .ready
        .set(if state.is_ready() { 1.0 } else { 0.0 });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn openapi_json() -> Json<Value> {
    Json(openapi::document())
}

pub async fn docs() -> Html<&'static str> {
    Html(openapi::DOCS_HTML)
}

pub async fn docs_js() -> Response {
    (
        [(header::CONTENT_TYPE, "application/javascript")],
        openapi::SWAGGER_JS,
    )
        .into_response()
}

pub async fn docs_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], openapi::SWAGGER_CSS).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route; see /openapi.json",
    )
}
