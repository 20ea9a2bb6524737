//! Pieces of the layer stack that `app()` composes: the request span (carrying the request id,
//! so every log line of a request has it), the response log line, the body-size guard, and
//! panic capture.

use std::any::Any;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Response, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower_http::request_id::RequestId;
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::ApiError;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One span per request, named by method and path, carrying the request id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %loggable_path(request.uri().path()),
        )
    }
}

/// One log line per answered request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(status, latency_ms, "answered");
        } else {
            tracing::info!(status, latency_ms, "answered");
        }
    }
}

/// Refuses a body announced larger than the limit before reading any of it. Bodies without a
/// length are held to the same limit by `DefaultBodyLimit` when an extractor reads them.
pub(crate) async fn reject_oversized(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if announced.is_some_and(|length| length > limit) {
        return ApiError::PayloadTooLarge { limit }.into_response();
    }
    next.run(request).await
}

/// A panic in a handler becomes a logged internal error and a generic 500 answer.
pub(crate) fn panic_to_error(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::Internal(message.to_owned().into()).into_response()
}

/// The request path without secrets: callback tokens become `***`.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match crate::routes::ussd::loggable_path(path) {
        Some(masked) => masked.into(),
        None => crate::routes::mpesa::loggable_path(path),
    }
}

/// The framework's own refusals (a path parameter that is not a uuid, a query that does not
/// parse) are plain text; clients read the API's JSON envelope, so they get it too, with the
/// status and the text kept. Every other answer passes untouched.
pub(crate) async fn json_refusals(response: axum::response::Response) -> axum::response::Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    if !(response.status().is_client_error() && plain) {
        return response;
    }
    let status = response.status();
    let text = match axum::body::to_bytes(response.into_body(), 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let body = serde_json::json!({
        "error": { "code": "bad_request", "message": text, "details": null }
    });
    (status, axum::Json(body)).into_response()
}
