//! The `/auth/v1` handlers and the founding plan's `/auth/register` and `/auth/login`.

pub(super) mod codes;
pub(crate) mod google_account;
pub(super) mod link;
mod meta;
mod otp;
mod reauthenticate;
mod signup;
mod token;
mod user;

pub use link::verify_link;
pub use meta::{health, jwks, settings};
pub use otp::{otp, recover, verify};
pub use reauthenticate::reauthenticate;
pub use signup::{register, signup};
pub(crate) use token::check_may_sign_in;
pub use token::{login, token};
pub use user::{get_user, logout, put_user};

use axum::body::Bytes;
use axum::http::StatusCode;
use pesachama_domain::{Email, Phone};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::AuthError;

/// Parses a JSON body, answering GoTrue's `bad_json` when it is not.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, AuthError> {
    if let Some(field) = crate::nul::field_with_nul(body) {
        return Err(AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field} must not contain a NUL character"),
        ));
    }
    serde_json::from_slice(body).map_err(|err| {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("Could not parse request body as JSON: {err}"),
        )
    })
}

/// How a user names themselves: an email or a Kenyan mobile number.
#[derive(Debug, Clone)]
pub(crate) enum Identifier {
    Email(Email),
    Phone(Phone),
}

impl Identifier {
    pub(crate) fn from_fields(email: Option<&str>, phone: Option<&str>) -> Result<Self, AuthError> {
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        let phone = phone.map(str::trim).filter(|p| !p.is_empty());
        match (email, phone) {
            (Some(email), None) => Email::parse(email)
                .map(Self::Email)
                .map_err(|_| AuthError::validation("Unable to validate email address: invalid format")),
            (None, Some(phone)) => Phone::parse(phone).map(Self::Phone).map_err(|_| {
                AuthError::validation("Invalid phone number format: expected a Kenyan mobile number (07XXXXXXXX or +2547XXXXXXXX)")
            }),
            (Some(_), Some(_)) => Err(AuthError::validation("Only an email address or phone number should be provided")),
            (None, None) => Err(AuthError::validation("An email address or phone number is required")),
        }
    }

    /// For rate-limit buckets and audit rows.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Email(email) => email.as_str().to_owned(),
            Self::Phone(phone) => phone.as_e164().to_owned(),
        }
    }

    /// For logs and audit rows: never a full phone number.
    pub(crate) fn masked(&self) -> String {
        match self {
            Self::Email(email) => email.as_str().to_owned(),
            Self::Phone(phone) => phone.masked(),
        }
    }

    pub(crate) async fn find(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Option<pesachama_store::auth::AuthUser>, AuthError> {
        Ok(match self {
            Self::Email(email) => {
                pesachama_store::auth::find_user_by_email(conn, email.as_str()).await?
            }
            Self::Phone(phone) => {
                pesachama_store::auth::find_user_by_phone(conn, phone.msisdn()).await?
            }
        })
    }
}

/// Signs `user` in: a session started by `method` from the request's user agent and address,
/// and its `auth.login` audit row, `{"method": method}` with `details` merged over it.
pub(crate) async fn sign_in(
    tx: &mut PgConnection,
    state: &crate::AppState,
    user: &pesachama_store::auth::AuthUser,
    method: &str,
    (headers, ip): (&axum::http::HeaderMap, &super::ClientIp),
    details: Value,
) -> Result<super::session::TokenResponse, AuthError> {
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let tokens = super::session::start(
        tx,
        &state.auth,
        user,
        method,
        user_agent,
        ip.text().as_deref(),
    )
    .await?;
    let mut metadata = serde_json::json!({ "method": method });
    if let (Value::Object(fields), Value::Object(extra)) = (&mut metadata, details) {
        fields.extend(extra);
    }
    audit(tx, "auth.login", Some(user.id), metadata).await?;
    Ok(tokens)
}

/// Writes an audit row for an auth event; never a secret in `metadata`.
pub(crate) async fn audit(
    conn: &mut PgConnection,
    action: &str,
    user_id: Option<Uuid>,
    metadata: Value,
) -> Result<(), AuthError> {
    sqlx::query("select internal.audit_log($1, 'auth.users', $2, null, $3, $4)")
        .bind(action)
        .bind(user_id.map(|id| id.to_string()))
        .bind(metadata)
        .bind(user_id)
        .execute(conn)
        .await
        .map_err(pesachama_store::StoreError::from)?;
    Ok(())
}

/// Runs a bcrypt or argon2 computation on the blocking pool, off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        tracing::error!(error = %err, "password hashing task failed");
        AuthError::internal()
    })
}

/// Makes sure the user has a profile row (`public.users`): users created straight in
/// `auth.users` (the founding plan's SQL, a Supabase dashboard, Supabase Auth) have none until
/// then. `internal.ensure_profile` decides what goes in it (confirmed contacts only, names from
/// the user's metadata), the same for every way in.
pub(crate) async fn ensure_profile(
    conn: &mut PgConnection,
    user: &pesachama_store::auth::AuthUser,
) -> Result<(), AuthError> {
    pesachama_store::auth::ensure_profile(conn, user.id).await?;
    Ok(())
}
