//! The one place where errors become HTTP responses: a status code and a JSON body
//! [`ErrorBody`] `{"error": "...", "error_type": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::EngineError;
use crate::error::Error;

/// What kind of error a response reports (`error_type`); clients branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 400: a malformed JSON or multipart body.
    BadRequest,
    /// 401: `--api-key` is set and `Authorization: Bearer <key>` is missing or wrong.
    Unauthorized,
    /// 404: no such route.
    NotFound,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 413: the body is over `--max-body-bytes`.
    PayloadTooLarge,
    /// 415: neither multipart nor JSON.
    UnsupportedMediaType,
    /// 422: a bad image or parameter, or too few or too many images.
    InvalidInput,
    /// 429: more than `--max-concurrent` requests in flight.
    Overloaded,
    /// 503: the inference queue is full.
    QueueFull,
    /// 503: the request took longer than `--request-timeout`.
    Timeout,
    /// 503: the service is shutting down.
    Draining,
    /// 503: starting up or draining (`/readyz`).
    NotReady,
    /// 503: the inference engine stopped.
    EngineStopped,
    /// 500: a bug or an environment failure; the log says more.
    Internal,
}

/// Why one image of a `/v1/score` request with `on_error=report` has no score
/// (`results[i].error_type`); clients branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageErrorType {
    /// Not an image sslmem can decode: an unknown format, a broken file, or a pixel format it
    /// does not read (the message says what to convert to).
    Undecodable,
    /// Zero width or height.
    Empty,
    /// More pixels than the server's --max-pixels.
    TooLarge,
    /// An encoder returned NaN or infinity for this image: the model, not the image, is
    /// broken for such inputs.
    NotFinite,
}

impl ImageErrorType {
    /// The kind of an image's failure.
    pub fn of(e: &crate::error::InputError) -> Self {
        use crate::error::InputError as E;
        match e {
            E::Io(_) | E::Decode(_) | E::Shape(_) => Self::Undecodable,
            E::Empty => Self::Empty,
            E::TooLarge { .. } => Self::TooLarge,
            E::NotFinite { .. } => Self::NotFinite,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What kind of error, for programs.
    pub error_type: ErrorType,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: ErrorType,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, type and message.
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: a body that cannot be parsed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::BadRequest, message)
    }

    /// 422: a bad image or parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidInput,
            message,
        )
    }

    /// 413: a body over the size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::PayloadTooLarge,
            message,
        )
    }

    /// 415: a content type that is neither multipart nor JSON.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorType::UnsupportedMediaType,
            message,
        )
    }

    /// 401: a missing or wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Unauthorized,
            "missing or wrong API key (Authorization: Bearer <key>)",
        )
    }

    /// 429 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::Overloaded,
                message,
            )
        }
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, error_type, message)
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            message,
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Param(m) => ApiError::invalid(m),
            e @ Error::Input { .. } => ApiError::invalid(e.to_string()),
            Error::Engine(EngineError::QueueFull) => {
                ApiError::unavailable(ErrorType::QueueFull, EngineError::QueueFull.to_string())
            }
            Error::Engine(e @ EngineError::Stopped(_)) => {
                tracing::error!("{e}");
                ApiError::unavailable(ErrorType::EngineStopped, e.to_string())
            }
            e => {
                tracing::error!("internal error: {e}");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.message,
            error_type: self.error_type,
        });
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_error_has_a_type() {
        use crate::error::InputError as E;
        let of = |e: E| serde_json::to_value(ImageErrorType::of(&e)).expect("json");
        assert_eq!(of(E::Decode("x".into())), "undecodable");
        assert_eq!(of(E::Io("x".into())), "undecodable");
        assert_eq!(of(E::Shape("x".into())), "undecodable");
        assert_eq!(of(E::Empty), "empty");
        let big = E::TooLarge {
            width: 9,
            height: 9,
            max_pixels: 1,
        };
        assert_eq!(of(big), "too_large");
        assert_eq!(
            of(E::NotFinite {
                encoder: "f0".into()
            }),
            "not_finite"
        );
    }

    #[test]
    fn error_types_are_snake_case_strings() {
        let b = ErrorBody {
            error: "x".into(),
            error_type: ErrorType::UnsupportedMediaType,
        };
        assert_eq!(
            serde_json::to_string(&b).expect("json"),
            r#"{"error":"x","error_type":"unsupported_media_type"}"#
        );
    }
}
