//! The one place where errors become HTTP answers.
//!
//! Every failure a client can see is a variant here with a fixed status and a stable `code`;
//! the body is always `{"error":{"code","message","details"}}`. Internal errors are logged once
//! (inside the request's span, so with its request id) and answered with a generic message:
//! their text never reaches a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pesachama_store::StoreError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON, or not the JSON the route expects.
    #[error("{0}")]
    MalformedBody(String),
    /// Well-formed input that breaks a rule; `details` names the fields.
    #[error("{message}")]
    Validation {
        message: String,
        details: Option<Value>,
    },
    #[error("not found")]
    NotFound,
    /// The caller may not do this (RLS or a role rule refused it).
    #[error("{0}")]
    Forbidden(String),
    /// The thing exists already, or the state changed under the caller.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Option<Value>,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The caller asked too often (a limit kept in the database); the message says when to
    /// try again.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The server cannot serve right now (database down, schema not migrated).
    #[error("{0}")]
    Unavailable(String),
    /// A feature this server was started without (M-Pesa, USSD): 503 with the feature's own
    /// code (`mpesa_not_configured`) and a message naming what is missing.
    #[error("{message}")]
    NotConfigured { code: &'static str, message: String },
    /// A wrong PIN; `remaining` tries are left before it locks.
    #[error("wrong PIN; {remaining} tries left before it locks")]
    InvalidPin { remaining: i32 },
    /// Too many wrong PINs: locked until then.
    #[error("the PIN is locked after too many wrong tries; try again after {until}")]
    PinLocked {
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error("no PIN is set for this account; set one first")]
    PinNotSet,
    /// An auth failure, with GoTrue's status and code.
    #[error("{}", .0.message)]
    Auth(crate::gotrue::AuthError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// 503 `mpesa_not_configured`: the server runs without Daraja (and without the simulator).
    pub fn mpesa_not_configured() -> Self {
        Self::NotConfigured {
            code: "mpesa_not_configured",
            message: "M-Pesa is not configured".to_owned(),
        }
    }
}

impl From<crate::gotrue::AuthError> for ApiError {
    fn from(err: crate::gotrue::AuthError) -> Self {
        if err.status.is_server_error() {
            Self::Internal(err.to_string().into())
        } else {
            Self::Auth(err)
        }
    }
}

/// The error body every route answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `validation_failed`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// What exactly is wrong, when there is more to say (field names, limits).
    pub details: Option<Value>,
}

impl ApiError {
    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) | Self::NotConfigured { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidPin { .. } => StatusCode::UNAUTHORIZED,
            Self::PinLocked { .. } => StatusCode::LOCKED,
            Self::PinNotSet => StatusCode::CONFLICT,
            Self::Auth(err) => err.status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedBody(_) => "malformed_body",
            Self::Validation { .. } => "validation_failed",
            Self::NotFound => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::Conflict { .. } => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unavailable(_) => "unavailable",
            Self::NotConfigured { code, .. } => code,
            Self::InvalidPin { .. } => "invalid_pin",
            Self::PinLocked { .. } => "pin_locked",
            Self::PinNotSet => "pin_not_set",
            Self::Auth(err) => err.code,
            Self::Internal(_) => "internal_error",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            Self::Validation { details, .. } | Self::Conflict { details, .. } => details.clone(),
            Self::PayloadTooLarge { limit } => Some(serde_json::json!({ "limit_bytes": limit })),
            Self::InvalidPin { remaining } => {
                Some(serde_json::json!({ "remaining_attempts": remaining }))
            }
            Self::PinLocked { until } => Some(serde_json::json!({ "locked_until": until })),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                details: self.details(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::Auth(err) = &self {
            err.add_retry_after(&mut response);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotMigrated | StoreError::UnknownMigration { .. } => {
                Self::Unavailable(err.to_string())
            }
            StoreError::Conflict { constraint } => Self::Conflict {
                message: format!("this would duplicate an existing record ({constraint})"),
                details: Some(serde_json::json!({ "constraint": constraint })),
            },
            StoreError::RuleViolated { constraint } => Self::Validation {
                message: format!("the request breaks a rule of the data ({constraint})"),
                details: Some(serde_json::json!({ "constraint": constraint })),
            },
            StoreError::Refused { message } => Self::Validation {
                message,
                details: None,
            },
            StoreError::NotFound { .. } => Self::NotFound,
            StoreError::InFlight { message } => Self::Conflict {
                message,
                details: None,
            },
            StoreError::Invalid { message } => Self::Validation {
                message,
                details: None,
            },
            StoreError::InvalidField { field, message } => Self::Validation {
                message,
                details: Some(serde_json::json!({ "field": field })),
            },
            StoreError::RateLimited { message } => Self::TooManyRequests(message),
            StoreError::PermissionDenied { message } => Self::Forbidden(message),
            other => Self::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}
