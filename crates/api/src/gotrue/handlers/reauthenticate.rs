//! `GET /auth/v1/reauthenticate` (supabase-js `auth.reauthenticate()`) and the nonce that
//! `PUT /auth/v1/user` then asks for, as GoTrue does.
//!
//! The nonce is a six-digit code sent to the account's own email (or, with none, its phone).
//! It is kept as GoTrue keeps it: `reauthentication_token` = SHA-224 of the address as stored in
//! `auth.users` and the code, `reauthentication_sent_at` = when. A new one may be asked for once
//! a minute (GoTrue's `SMTP_MAX_FREQUENCY` / `SMS_MAX_FREQUENCY` defaults); it is valid for
//! `otp_ttl_seconds` and works once.
//!
//! When the project requires it (`update_password_require_reauthentication`, GoTrue's
//! `GOTRUE_SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION`, off by default there and here), a
//! password change from a session older than 24 hours must carry the nonce: a stolen session
//! then cannot lock the owner out by changing the password. A wrong nonce is counted against
//! the `verify` rate limit per account and per address, so the million codes cannot be tried.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use pesachama_domain::{Email, Phone};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, AuthUser};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::codes::{self, Template};
use super::user::require_live_session;
use super::{Identifier, audit};
use crate::AppState;
use crate::gotrue::caller::SignedIn;
use crate::gotrue::{AuthError, ClientIp, ratelimit};

/// A new nonce may be sent once this long after the last (GoTrue's one minute).
const RESEND_AFTER_SECONDS: i64 = 60;
/// A session younger than this changes the password without a nonce, as GoTrue's does.
const RECENT_SESSION_HOURS: i64 = 24;

const INVALID_NONCE: &str = "Nonce has expired or is invalid";

/// Sends a nonce to the account's own address; answers `{}`.
pub async fn reauthenticate(
    State(state): State<AppState>,
    caller: SignedIn,
) -> Result<Json<Value>, AuthError> {
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    require_live_session(&mut tx, &caller).await?;
    let user = find_user(&mut tx, &caller).await?;
    let email = user.email.as_deref().filter(|e| !e.is_empty());
    let phone = user.phone.as_deref().filter(|p| !p.is_empty());
    let (to, address, limit_code) = match (email, phone) {
        (Some(email), _) => {
            if user.email_confirmed_at.is_none() {
                return Err(AuthError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "email_not_confirmed",
                    "Please verify your email first.",
                ));
            }
            let to = Email::parse(email).map(Identifier::Email).map_err(|_| {
                AuthError::validation("The account's email address cannot receive a code")
            })?;
            (to, email, "over_email_send_rate_limit")
        }
        (None, Some(phone)) => {
            if user.phone_confirmed_at.is_none() {
                return Err(AuthError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "phone_not_confirmed",
                    "Please verify your phone first.",
                ));
            }
            let to = Phone::parse(phone).map(Identifier::Phone).map_err(|_| {
                AuthError::validation("The account's phone number cannot receive a code")
            })?;
            (to, phone, "over_sms_send_rate_limit")
        }
        (None, None) => {
            return Err(AuthError::validation(
                "Reauthentication requires the user to have an email or a phone number",
            ));
        }
    };
    let (_, sent_at) = auth::lock_reauthentication(&mut tx, user.id).await?;
    if let Some(sent_at) = sent_at {
        let left = (sent_at + Duration::seconds(RESEND_AFTER_SECONDS) - Utc::now()).num_seconds();
        if left > 0 {
            return Err(AuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                limit_code,
                format!("For security purposes, you can only request this after {left} seconds."),
            )
            .retry_after(left.unsigned_abs()));
        }
    }
    let code = codes::new_code();
    auth::store_reauthentication(&mut tx, user.id, &codes::token_hash(address, &code)).await?;
    codes::send(&mut tx, &to, Template::Reauthentication, &code, user.id).await?;
    audit(
        &mut tx,
        "auth.reauthentication_requested",
        Some(user.id),
        json!({ "to": to.masked() }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(json!({})))
}

/// For a password change: when the project requires it and the session is not recent, the
/// nonce must be given and right; it is then spent, in the caller's transaction.
pub(super) async fn check_for_password_change(
    tx: &mut PgConnection,
    state: &AppState,
    ip: &ClientIp,
    caller: &SignedIn,
    nonce: Option<&str>,
) -> Result<(), AuthError> {
    if !state.auth.settings.update_password_require_reauthentication {
        return Ok(());
    }
    let started = match caller.claims.session_id {
        Some(session) => auth::session_created_at(tx, session).await?,
        None => None,
    };
    if started.is_some_and(|at| at > Utc::now() - Duration::hours(RECENT_SESSION_HOURS)) {
        return Ok(());
    }
    let Some(nonce) = nonce.filter(|n| !n.is_empty()) else {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "reauthentication_needed",
            "Password update requires reauthentication",
        ));
    };
    let limits = state.auth.settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "reauthentication",
        ip.text().as_deref(),
        Some(&caller.id.to_string()),
        limits.verify,
        limits.window_seconds,
    )
    .await?;
    let not_valid = || {
        AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reauthentication_not_valid",
            INVALID_NONCE,
        )
    };
    let (stored, sent_at) = auth::lock_reauthentication(tx, caller.id).await?;
    let Some(sent_at) = sent_at.filter(|_| !stored.is_empty()) else {
        return Err(not_valid());
    };
    let user = find_user(tx, caller).await?;
    // GoTrue salts with the email when the account has one, else with the phone.
    let address = user
        .email
        .as_deref()
        .filter(|e| !e.is_empty())
        .or(user.phone.as_deref().filter(|p| !p.is_empty()))
        .ok_or_else(not_valid)?;
    let fresh = Utc::now() - sent_at <= Duration::seconds(state.auth.settings.otp_ttl_seconds);
    if !(fresh && codes::matches(Some(&stored), address, nonce)) {
        return Err(not_valid());
    }
    auth::spend_reauthentication(tx, caller.id).await?;
    Ok(())
}

async fn find_user(conn: &mut PgConnection, caller: &SignedIn) -> Result<AuthUser, AuthError> {
    auth::find_user_by_id(&mut *conn, caller.id)
        .await?
        .ok_or_else(|| {
            AuthError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                "User from sub claim in JWT does not exist",
            )
        })
}
