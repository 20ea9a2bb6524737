//! The app's routes. Every handler parses its input, opens a transaction under the caller's
//! role and claims ([`caller_tx`]), and lets RLS and the database functions decide.

pub mod admin;
pub mod chamas;
pub mod disbursements;
pub mod health;
pub mod invitations;
pub mod meeting_files;
pub mod meetings;
pub mod membership;
pub mod mpesa;
pub mod notifications;
pub mod pins;
pub mod statements;
pub mod transactions;
pub mod users;
pub mod ussd;

use axum::body::Bytes;
use sqlx::{Postgres, Transaction};

use uuid::Uuid;

use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

/// The signed-in user's id, or GoTrue's 401 `no_authorization`.
pub(crate) fn signed_in(caller: &Caller) -> Result<Uuid, ApiError> {
    caller
        .user_id()
        .ok_or_else(|| ApiError::Auth(AuthError::no_authorization()))
}

/// A 422 naming the field that is wrong.
/// Refuses a name others will read if it holds a character that hides or reorders text
/// (`pesachama_domain::text`; the schema's `*_visible` constraints hold the same rule).
pub(crate) fn visible_name(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value.and_then(pesachama_domain::text::hidden_character) {
        Some(c) => Err(invalid(
            field,
            format!(
                "{field} holds U+{:04X}, a character that hides or reorders text",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation {
        message: message.into(),
        details: Some(serde_json::json!({ "field": field })),
    }
}

/// A transaction in which every query runs with the caller's role and claims, as PostgREST
/// runs them. A signed-in user whom this process has not seen yet gets their profile first
/// (users created by Supabase Auth have none until then; see `internal.ensure_profile`).
pub(crate) async fn caller_tx<'a>(
    state: &'a AppState,
    caller: &Caller,
) -> Result<Transaction<'a, Postgres>, ApiError> {
    if let Some(user_id) = caller.user_id()
        && !state.profiles.known(user_id)
    {
        pesachama_store::auth::ensure_profile(&state.pool, user_id).await?;
        state.profiles.remember(user_id);
    }
    let (role, claims) = caller.db_context();
    Ok(pesachama_store::rls::begin_as(&state.pool, role, &claims).await?)
}

/// The body as `T`, or a 400 saying what is wrong with it (a 422 naming the field for a NUL
/// character, which no text column can hold).
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if let Some(field) = crate::nul::field_with_nul(body) {
        return Err(ApiError::Validation {
            message: format!("{field} must not contain a NUL character"),
            details: Some(serde_json::json!({ "field": field })),
        });
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::MalformedBody(format!("invalid body: {err}")))
}

/// Like [`json_body`], for bodies that may be left out: an empty body is `T::default()`.
pub(crate) fn optional_json_body<T: serde::de::DeserializeOwned + Default>(
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json_body(body)
    }
}
