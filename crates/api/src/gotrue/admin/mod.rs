//! `/auth/v1/admin/*`: Supabase Auth's admin API as supabase-js `auth.admin.*` calls it, for the
//! service role only.
//!
//! Who gets in is decided by the bearer token alone, as GoTrue's `requireAdminCredentials`
//! does: a token signed with the project's key (or the configured `sb_secret_...` key) whose
//! `role` is `service_role`. Everyone else is refused with GoTrue's answers: no token, 401
//! `no_authorization`; a token that does not verify (another key, expired), 403 `bad_jwt`; any
//! other role (the anon key, a user's token, a platform administrator's), 403 `not_admin`.
//! The apikey gate in front of every `/auth/v1` route still applies.

mod duration;
mod link;
mod params;
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use pesachama_auth::Role;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::AuthError;
use crate::AppState;

/// The admin routes, nested under `/auth/v1/admin`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{user_id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route("/generate_link", post(link::generate))
}

/// A caller holding the service role. Handlers take it to be reachable only by one.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRole;

impl FromRequestParts<AppState> for ServiceRole {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                AuthError::new(
                    StatusCode::UNAUTHORIZED,
                    "no_authorization",
                    "This endpoint requires a valid Bearer token",
                )
            })?;
        // A project's opaque secret key stands for the service role, as Supabase's gateway
        // turns it into a service-role token before GoTrue sees it.
        let secret_key = state
            .auth
            .settings
            .opaque_api_keys
            .iter()
            .filter(|key| key.starts_with("sb_secret_"))
            .any(|key| subtle::ConstantTimeEq::ct_eq(key.as_bytes(), token.as_bytes()).into());
        if secret_key {
            return Ok(Self);
        }
        let claims = state.auth.verifier.verify(token).map_err(|err| {
            AuthError::bad_jwt(format!(
                "invalid JWT: unable to parse or verify signature, {err}"
            ))
        })?;
        match claims.role {
            Role::ServiceRole => Ok(Self),
            Role::Anon | Role::Authenticated => Err(AuthError::new(
                StatusCode::FORBIDDEN,
                "not_admin",
                "User not allowed",
            )),
        }
    }
}

/// The `{user_id}` of a path, as GoTrue's `loadUser` reads it: not a UUID is a 404
/// `validation_failed`.
fn user_id(raw: &str) -> Result<Uuid, AuthError> {
    Uuid::parse_str(raw).map_err(|_| {
        AuthError::new(
            StatusCode::NOT_FOUND,
            "validation_failed",
            "user_id must be an UUID",
        )
    })
}

fn user_not_found() -> AuthError {
    AuthError::new(StatusCode::NOT_FOUND, "user_not_found", "User not found")
}

fn email_exists() -> AuthError {
    AuthError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "email_exists",
        "A user with this email address has already been registered",
    )
}

fn phone_exists() -> AuthError {
    AuthError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone_exists",
        "Phone number already registered by another user",
    )
}

/// An audit row for an admin action on `user_id`, by the service role (no actor): never a
/// secret in `metadata`.
async fn audit(
    conn: &mut PgConnection,
    action: &str,
    user_id: Uuid,
    mut metadata: Value,
) -> Result<(), AuthError> {
    if let Value::Object(map) = &mut metadata {
        map.insert("by".to_owned(), Value::from("service_role"));
    }
    sqlx::query("select internal.audit_log($1, 'auth.users', $2, null, $3, null)")
        .bind(action)
        .bind(user_id.to_string())
        .bind(metadata)
        .execute(conn)
        .await
        .map_err(pesachama_store::StoreError::from)?;
    Ok(())
}
