//! `GET /v1/bundle`: the manifest, the device asked for and the execution provider really in
//! use, the limits and the defaults.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::runtime::Provider;
use crate::service::AppState;

/// How many encoders each side has.
#[derive(Debug, Serialize, ToSchema)]
pub struct EncoderCounts {
    pub f: usize,
    pub g: usize,
}

/// The server's limits (its `--max-*` flags).
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsInfo {
    /// Most images (or align images) per request.
    pub max_images: usize,
    /// Most view pairs per image.
    pub max_pairs: usize,
    /// Largest image, in pixels (width * height).
    pub max_pixels: u64,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Concurrent `/v1` requests at most.
    pub max_concurrent: usize,
    /// Seconds a `/v1` request may take.
    pub request_timeout_seconds: f64,
}

/// The defaults of parameters a request leaves out.
#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultsInfo {
    pub pairs: usize,
    pub seed: u64,
}

/// The answer of `/v1/bundle`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BundleResponse {
    /// The bundle's folder name (its last path component, not where it lives on the server).
    pub bundle: String,
    /// SHA-256 of the bundle's `sslmem.json`, which lists every file's SHA-256: equal hashes,
    /// the same bundle, wherever it is mounted.
    pub sha256: Option<String>,
    /// The bundle's `sslmem.json` (see docs/bundle.md).
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The device asked for (`auto`, `cpu`, `cuda:N`).
    pub device: String,
    #[schema(value_type = super::ProviderSchema)]
    pub provider: Provider,
    pub encoders: EncoderCounts,
    pub limits: LimitsInfo,
    pub defaults: DefaultsInfo,
}

/// The manifest, the execution provider really in use, and the limits.
#[utoipa::path(
    get,
    path = "/v1/bundle",
    responses((status = 200, description = "The loaded bundle and the server's settings.", body = BundleResponse)),
)]
pub async fn bundle(State(state): State<Arc<AppState>>) -> Json<BundleResponse> {
    let b = state.bundle();
    Json(BundleResponse {
        bundle: b.folder_name(),
        sha256: b.manifest_sha256.clone(),
        // Through a JSON value, as before: its f32 fields print with f64 digits.
        manifest: serde_json::to_value(&b.manifest).unwrap_or(Value::Null),
        device: state.device.to_string(),
        provider: state.provider,
        encoders: EncoderCounts {
            f: b.f.len(),
            g: b.g.len(),
        },
        limits: LimitsInfo {
            max_images: state.limits.max_images,
            max_pairs: state.limits.max_pairs,
            max_pixels: state.limits.decode.max_pixels,
            max_body_bytes: state.limits.max_body_bytes,
            max_concurrent: state.limits.max_concurrent,
            request_timeout_seconds: state.limits.request_timeout.as_secs_f64(),
        },
        defaults: DefaultsInfo {
            pairs: state.defaults.pairs,
            seed: state.defaults.seed,
        },
    })
}
