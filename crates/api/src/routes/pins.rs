//! `PUT /auth/pin` (set or change the PIN) and `POST /auth/pin/verify`.
//!
//! The PIN is what a feature-phone member types on USSD; the app sets it for them and may use
//! it to confirm sensitive actions. Changing a PIN needs the current one; three wrong PINs lock
//! it for 30 minutes (and the lock holds for USSD too: it is the same row).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use pesachama_domain::Pin;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::gotrue::{AuthError, Caller};
use crate::pins::{self, PinCheck};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    /// The new PIN: exactly 4 digits.
    pub pin: String,
    /// The PIN in use, required when one is set.
    pub current_pin: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPin {
    pub pin: String,
}

fn parse_pin(field: &str, value: &str) -> Result<Pin, ApiError> {
    Pin::parse(value).map_err(|err| ApiError::Validation {
        message: format!("{field}: {err}"),
        details: Some(json!({ "field": field })),
    })
}

fn answer(check: PinCheck) -> Result<(), ApiError> {
    match check {
        PinCheck::Correct => Ok(()),
        PinCheck::Wrong { remaining } => Err(ApiError::InvalidPin { remaining }),
        PinCheck::Locked { until } => Err(ApiError::PinLocked { until }),
        PinCheck::NotSet => Err(ApiError::PinNotSet),
    }
}

/// Sets the caller's PIN, or changes it (then `current_pin` is required and checked).
#[utoipa::path(
    put, path = "/auth/pin", tag = "auth",
    request_body = SetPin,
    responses(
        (status = 204, description = "PIN set"),
        (status = 401, description = "current_pin is wrong", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody),
        (status = 423, description = "locked after too many wrong PINs", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn set_pin(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let me = caller?
        .user_id()
        .ok_or_else(|| ApiError::Auth(AuthError::no_authorization()))?;
    let request: SetPin = super::json_body(&body)?;
    let new_pin = parse_pin("pin", &request.pin)?;
    let current = request
        .current_pin
        .as_deref()
        .map(|pin| parse_pin("current_pin", pin))
        .transpose()?;

    let mut tx = state.pool.begin().await?;
    let has_pin = pesachama_store::pins::lock(&mut tx, me).await?.is_some();
    if has_pin {
        let Some(current) = current else {
            return Err(ApiError::Validation {
                message: "current_pin is required to change a PIN".to_owned(),
                details: Some(json!({ "field": "current_pin" })),
            });
        };
        let check = pins::check(&mut tx, me, &current).await?;
        if check != PinCheck::Correct {
            tx.commit().await?; // the wrong try counts
            return answer(check).map(|()| StatusCode::NO_CONTENT);
        }
    }
    pins::set(&mut tx, me, &new_pin).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks the caller's PIN (before a sensitive action); wrong tries count towards the lock.
#[utoipa::path(
    post, path = "/auth/pin/verify", tag = "auth",
    request_body = VerifyPin,
    responses(
        (status = 204, description = "the PIN is right"),
        (status = 401, description = "wrong PIN", body = crate::error::ErrorBody),
        (status = 409, description = "no PIN set", body = crate::error::ErrorBody),
        (status = 423, description = "locked after too many wrong PINs", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn verify_pin(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let me = caller?
        .user_id()
        .ok_or_else(|| ApiError::Auth(AuthError::no_authorization()))?;
    let request: VerifyPin = super::json_body(&body)?;
    let pin = parse_pin("pin", &request.pin)?;
    let mut tx = state.pool.begin().await?;
    let check = pins::check(&mut tx, me, &pin).await?;
    tx.commit().await?;
    answer(check).map(|()| StatusCode::NO_CONTENT)
}
