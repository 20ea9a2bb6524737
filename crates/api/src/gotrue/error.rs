//! GoTrue's error answers.
//!
//! supabase-js sends `X-Supabase-Api-Version: 2024-01-01` and then expects
//! `{code: "<error code>", message}` with the same header echoed; older clients get
//! `{code: <status>, error_code, msg}`. Handlers return [`AuthError`]; its response carries the
//! parts in an extension, and [`shape`] (a middleware on the `/auth/v1` router) writes the body
//! in the shape the request asked for. Clients branch on the code string, and treat any 5xx as
//! a network failure to retry, so a client's mistake is never a 5xx.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
pub const API_VERSION: &str = "2024-01-01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before trying again, sent as `Retry-After` (throttled sign-ins).
    pub retry_after: Option<u64>,
    /// Why a new password is refused, sent as GoTrue's `weak_password: {reasons: [...]}`:
    /// supabase-js builds its `AuthWeakPasswordError.reasons` from it.
    pub weak_password_reason: Option<&'static str>,
}

impl AuthError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            weak_password_reason: None,
        }
    }

    /// GoTrue's 422 `weak_password`, with its reason: `length` for too short, `pwned` for a
    /// password on the lists every guesser starts with (GoTrue's reason for a leaked one).
    pub fn weak_password(weak: &pesachama_domain::secret::WeakPassword) -> Self {
        let reason = match weak {
            pesachama_domain::secret::WeakPassword::TooShort(_) => "length",
            pesachama_domain::secret::WeakPassword::TooCommon => "pwned",
        };
        Self {
            weak_password_reason: Some(reason),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "weak_password",
                weak.to_string(),
            )
        }
    }

    /// The error body in either shape, plus `weak_password` as GoTrue adds it to both.
    fn body(&self, new_shape: bool) -> serde_json::Value {
        let mut body = if new_shape {
            json!({ "code": self.code, "message": self.message })
        } else {
            json!({ "code": self.status.as_u16(), "error_code": self.code, "msg": self.message })
        };
        if let Some(reason) = self.weak_password_reason {
            body["weak_password"] = json!({ "reasons": [reason] });
        }
        body
    }

    /// GoTrue's 429 `over_request_rate_limit`.
    pub fn over_rate_limit() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "over_request_rate_limit",
            "Request rate limit reached",
        )
    }

    /// This error, answered with `Retry-After: <seconds>`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds `Retry-After` to `response` when this error has one.
    pub fn add_retry_after(&self, response: &mut Response) {
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_credentials",
            "Invalid login credentials",
        )
    }

    pub fn bad_jwt(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "bad_jwt", message)
    }

    pub fn no_authorization() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "no_authorization",
            "This endpoint requires a Bearer token",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            "Unexpected failure",
        )
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body(true))).into_response();
        self.add_retry_after(&mut response);
        response.extensions_mut().insert(self);
        response
    }
}

impl From<pesachama_store::StoreError> for AuthError {
    fn from(err: pesachama_store::StoreError) -> Self {
        tracing::error!(error = %err, "auth: store error");
        Self::internal()
    }
}

/// Middleware: answers errors in the shape the client's API version asks for.
pub async fn shape(request: Request, next: Next) -> Response {
    let new_shape = request
        .headers()
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= API_VERSION);
    let mut response = next.run(request).await;
    if new_shape {
        response
            .headers_mut()
            .insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        return response;
    }
    match response.extensions().get::<AuthError>().cloned() {
        Some(error) => {
            let mut response = (error.status, Json(error.body(false))).into_response();
            error.add_retry_after(&mut response);
            response
        }
        None => response,
    }
}
