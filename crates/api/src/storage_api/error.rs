//! Storage errors in Supabase Storage's shape: `{statusCode, code, error, message}`.
//!
//! `statusCode` is the status as text and `code`/`error` the machine-readable name, as
//! storage-js reads them. Unlike Supabase's server, which answers HTTP 400 for every client
//! error and puts the real status only in the body, the HTTP status here is the real one too;
//! storage-js treats both the same (any non-2xx is a `StorageApiError`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pesachama_storage::{BackendError, PathError, SpoolError};
use pesachama_store::StoreError;

#[derive(Debug)]
pub struct StorageError {
    pub status: StatusCode,
    pub code: &'static str,
    pub error: &'static str,
    pub message: String,
}

impl StorageError {
    fn new(
        status: StatusCode,
        code: &'static str,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            error,
            message: message.into(),
        }
    }

    pub fn no_such_bucket() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "Bucket not found",
            "Bucket not found",
        )
    }

    pub fn no_such_key() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "not_found",
            "Object not found",
        )
    }

    pub fn invalid_key(err: PathError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidKey",
            "InvalidKey",
            format!("Invalid key: {err}"),
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "InvalidRequest",
            message,
        )
    }

    pub fn invalid_jwt(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidJWT", "InvalidJWT", message)
    }

    /// A URL-signing token that is not for this object or this action (storage-api's
    /// `InvalidSignature`).
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidSignature",
            "InvalidSignature",
            message,
        )
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Unauthorized",
            message,
        )
    }

    pub fn duplicate() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Duplicate",
            "Duplicate",
            "The resource already exists",
        )
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EntityTooLarge",
            "Payload too large",
            format!("The object exceeded the maximum allowed size of {limit} bytes"),
        )
    }

    pub fn invalid_mime(mime: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidMimeType",
            "invalid_mime_type",
            format!("mime type {mime} is not supported"),
        )
    }

    pub fn not_configured() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "FeatureNotEnabled",
            "FeatureNotEnabled",
            "storage is not configured on this server",
        )
    }

    /// Logged once here (inside the request span); the client sees a generic message.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "storage internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal",
            "Internal server error",
        )
    }
}

impl From<StoreError> for StorageError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::PermissionDenied { message } => Self::access_denied(message),
            StoreError::Conflict { .. } => Self::duplicate(),
            other => Self::internal(other),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}

impl From<BackendError> for StorageError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::NotFound => Self::no_such_key(),
            other => Self::internal(other),
        }
    }
}

impl From<SpoolError> for StorageError {
    fn from(err: SpoolError) -> Self {
        match err {
            SpoolError::TooLarge { limit } => Self::too_large(limit),
            SpoolError::Io(err) => Self::internal(err),
        }
    }
}

impl From<PathError> for StorageError {
    fn from(err: PathError) -> Self {
        Self::invalid_key(err)
    }
}

/// The body of every storage error, as storage-js reads it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageErrorBody {
    /// The HTTP status, as text (`"404"`).
    #[schema(example = "404")]
    pub status_code: String,
    /// The machine-readable name (`NoSuchKey`, `InvalidKey`, `EntityTooLarge`, ...).
    #[schema(example = "NoSuchKey")]
    pub code: &'static str,
    #[schema(example = "not_found")]
    pub error: &'static str,
    /// What is wrong, for a person.
    #[schema(example = "Object not found")]
    pub message: String,
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let body = StorageErrorBody {
            status_code: self.status.as_u16().to_string(),
            code: self.code,
            error: self.error,
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}
