//! The route table, [`api`]: the router and the OpenAPI document are both built from it, so
//! a route cannot be served undocumented. Also the handlers of the open routes (health,
//! readiness, metrics, the API document and its Swagger UI); the `/v1` ones are in [`super::v1`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs_page;
use super::error::{ApiError, ErrorBody, ErrorType};
use super::v1;
use super::AppState;

/// Every route, with its documentation (each handler's `#[utoipa::path]`).
pub struct Api {
    /// `/v1/*`: behind the API key, the body-size check, the concurrency limit and the timeout.
    pub guarded: OpenApiRouter<Arc<AppState>>,
    /// Open to all, unguarded.
    pub open: OpenApiRouter<Arc<AppState>>,
}

/// The route table. A new endpoint is one line here (and its file in `v1/`).
pub fn api() -> Api {
    Api {
        guarded: OpenApiRouter::new()
            .routes(routes!(v1::score::score))
            .routes(routes!(v1::align::align))
            .routes(routes!(v1::embed::embed))
            .routes(routes!(v1::bundle::bundle)),
        open: OpenApiRouter::new()
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .routes(routes!(metrics))
            .routes(routes!(openapi_json))
            .routes(routes!(docs))
            .routes(routes!(docs_slash))
            .routes(routes!(docs_js))
            .routes(routes!(docs_css)),
    }
}

/// Alive: the process answers and its inference engine is running.
#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "The process is up.", body = String, content_type = "text/plain"),
        (status = 503, description = "The inference engine has stopped: restart the process.", body = ErrorBody),
    ),
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.engine.alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        ApiError::unavailable(ErrorType::EngineStopped, "the inference engine has stopped")
            .into_response()
    }
}

/// Ready to score.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Accepting work.", body = String, content_type = "text/plain"),
        (status = 503, description = "Starting up or draining (see Retry-After).", body = ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable(ErrorType::NotReady, "starting up or draining").into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text exposition format.", body = String, content_type = "text/plain")),
)]
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

/// This document (OpenAPI 3.1), with the server's limits.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub async fn openapi_json(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}

/// Swagger UI over this document.
#[utoipa::path(
    get,
    path = "/docs",
    responses((status = 200, description = "The Swagger UI page.", body = String, content_type = "text/html")),
)]
pub async fn docs() -> Html<&'static str> {
    Html(docs_page::DOCS_HTML)
}

/// Swagger UI over this document, at the address people type and links end with a slash.
/// The page itself, not a redirect: its assets have absolute paths, so it works here too.
#[utoipa::path(
    get,
    path = "/docs/",
    responses((status = 200, description = "The Swagger UI page (as /docs).", body = String, content_type = "text/html")),
)]
pub async fn docs_slash() -> Html<&'static str> {
    Html(docs_page::DOCS_HTML)
}

/// Swagger UI's script (vendored).
#[utoipa::path(
    get,
    path = "/docs/swagger-ui-bundle.js",
    responses((status = 200, description = "JavaScript.", body = String, content_type = "application/javascript")),
)]
pub async fn docs_js() -> Response {
    (
        [(header::CONTENT_TYPE, "application/javascript")],
        docs_page::SWAGGER_JS,
    )
        .into_response()
}

/// Swagger UI's style sheet (vendored).
#[utoipa::path(
    get,
    path = "/docs/swagger-ui.css",
    responses((status = 200, description = "CSS.", body = String, content_type = "text/css")),
)]
pub async fn docs_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], docs_page::SWAGGER_CSS).into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::NotFound,
        "no such route; see /openapi.json",
    )
}

/// A route that does not take this method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::MethodNotAllowed,
        "method not allowed on this route; see /openapi.json",
    )
}
