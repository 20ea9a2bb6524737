//! `POST /auth/v1/token?grant_type=password|refresh_token|id_token|pkce` and `POST /auth/login`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use pesachama_store::StoreError;
use pesachama_store::auth::{self, AuthUser};
use serde::Deserialize;
use serde_json::json;

use super::{Identifier, audit, blocking, ensure_profile, json_body};
use crate::gotrue::session::{self, TokenResponse};
use crate::gotrue::{AuthError, ClientIp, ratelimit, throttle};
use crate::{ApiError, AppState};

pub async fn token(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenResponse>, AuthError> {
    let grant = query.get("grant_type").map(String::as_str);
    // Refreshes count apart from password attempts: guessing from a shared (CGNAT) address
    // never stops the devices behind it from keeping their sessions.
    let bucket = if grant == Some("refresh_token") {
        "refresh"
    } else {
        "token"
    };
    per_address_limit(&state, ip, bucket).await?;
    match grant {
        Some("password") => {
            let body: PasswordGrant = json_body(&body)?;
            password_grant(&state, ip, &headers, &body).await.map(Json)
        }
        Some("refresh_token") => refresh_grant(&state, &body).await.map(Json),
        Some("id_token") => id_token_grant(&state, ip, &headers, &body).await.map(Json),
        Some("pkce") => crate::gotrue::oauth::pkce_grant(&state, ip, &headers, &body)
            .await
            .map(Json),
        Some(other) => Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("unsupported_grant_type: {other}"),
        )),
        None => Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type is required",
        )),
    }
}

#[derive(Debug, Deserialize)]
struct PasswordGrant {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
}

/// `POST /auth/login`: the password grant with the API's own error format.
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenResponse>, ApiError> {
    let body: PasswordGrant = json_body(&body)?;
    per_address_limit(&state, ip, "token").await?;
    Ok(Json(password_grant(&state, ip, &headers, &body).await?))
}

/// Token requests per client address (`rate_limits.token` per window), in `bucket`.
async fn per_address_limit(state: &AppState, ip: ClientIp, bucket: &str) -> Result<(), AuthError> {
    let limits = state.auth.settings.rate_limits;
    if let Some(ip) = ip.text() {
        ratelimit::hit(
            &state.pool,
            &format!("{bucket}:ip:{ip}"),
            limits.token,
            limits.window_seconds,
        )
        .await?;
    }
    Ok(())
}

async fn password_grant(
    state: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    body: &PasswordGrant,
) -> Result<TokenResponse, AuthError> {
    let identifier = Identifier::from_fields(body.email.as_deref(), body.phone.as_deref())?;
    let password = body.password.clone().unwrap_or_default();
    let buckets = throttle::Buckets::new(&identifier.key(), ip.text().as_deref());
    let device = throttle::device_hash(headers);

    let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
    let user = identifier.find(&mut conn).await?;
    // While the account waits after failures, only a device that signed in to it before is
    // heard (see `gotrue::throttle`); anyone else is told to wait, the password unchecked.
    if let Some(until) = throttle::waiting_until(&state.pool, &buckets).await? {
        let known = match (&user, &device) {
            (Some(user), Some(device)) => {
                throttle::is_known_device(&state.pool, user.id, device).await?
            }
            _ => false,
        };
        if !known {
            tracing::warn!(identifier = %identifier.masked(), "password attempt while waiting after failures");
            return Err(throttle::refusal(until));
        }
    }
    let hash = user
        .as_ref()
        .and_then(|u| u.encrypted_password.clone())
        .unwrap_or_else(|| pesachama_auth::hashing::decoy_hash().to_owned());
    // Unknown users are checked against a decoy hash: the answer takes as long either way.
    let matches =
        blocking(move || pesachama_auth::hashing::verify_password(&password, &hash)).await?;
    let Some(user) = user.filter(|_| matches) else {
        let actor = identifier.find(&mut conn).await?.map(|u| u.id);
        let failures = throttle::record_failure(
            &state.pool,
            &buckets,
            &state.auth.settings.password_failures,
        )
        .await?;
        audit(
            &mut conn,
            "auth.login_failed",
            actor,
            json!({ "identifier": identifier.masked(), "ip": ip.text(), "failures": failures }),
        )
        .await?;
        return Err(AuthError::invalid_credentials());
    };
    drop(conn);
    check_may_sign_in(state, &user)?;
    // Signing in by phone needs that phone confirmed, not just the email (as GoTrue checks).
    if let Identifier::Phone(_) = identifier
        && !state.auth.settings.autoconfirm
        && user.phone_confirmed_at.is_none()
    {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "phone_not_confirmed",
            "Phone not confirmed",
        ));
    }

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    ensure_profile(&mut tx, &user).await?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let tokens = session::start(
        &mut tx,
        &state.auth,
        &user,
        "password",
        user_agent,
        ip.text().as_deref(),
    )
    .await?;
    throttle::record_success(&mut tx, &buckets).await?;
    if let Some(device) = &device {
        throttle::remember_device(&mut tx, user.id, device).await?;
    }
    audit(
        &mut tx,
        "auth.login",
        Some(user.id),
        json!({ "method": "password", "ip": ip.text() }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(tokens)
}

pub(crate) fn check_may_sign_in(state: &AppState, user: &AuthUser) -> Result<(), AuthError> {
    if user.banned_until.is_some_and(|until| until > Utc::now()) {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "user_banned",
            "User is banned",
        ));
    }
    if !state.auth.settings.autoconfirm && user.confirmed_at.is_none() {
        let code = if user.email.is_some() {
            "email_not_confirmed"
        } else {
            "phone_not_confirmed"
        };
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            code,
            "Email not confirmed",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct RefreshGrant {
    refresh_token: Option<String>,
}

/// Rotation: each refresh revokes the presented token and issues its child in the same
/// session. The parent of the current token may be presented again for a short while (a client
/// that lost the answer) and gets the current child; any other reuse of a revoked token means
/// it leaked, and the whole session is revoked.
async fn refresh_grant(state: &AppState, body: &Bytes) -> Result<TokenResponse, AuthError> {
    let body: RefreshGrant = json_body(body)?;
    let presented = body
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AuthError::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "refresh_token required",
            )
        })?;
    let not_found = || {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        )
    };

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let row = auth::lock_refresh_token(&mut tx, &presented)
        .await?
        .ok_or_else(not_found)?;
    let session_id = row.session_id.ok_or_else(not_found)?;
    if !auth::session_exists(&mut tx, session_id).await? {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "session_not_found",
            "Session not found",
        ));
    }
    let user_id = row.user_id.parse().map_err(|_| not_found())?;
    // A ban (the admin API's `ban_duration`) keeps the sessions, as GoTrue's does, but mints
    // no new token from them.
    let banned: Option<bool> = sqlx::query_scalar(
        "select coalesce(banned_until > now(), false) from auth.users where id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    if banned == Some(true) {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "user_banned",
            "Invalid Refresh Token: User Banned",
        ));
    }
    let method: String =
        sqlx::query_scalar("select coalesce(tag, 'password') from auth.sessions where id = $1")
            .bind(session_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;

    if row.revoked {
        let reuse = state.auth.settings.refresh_reuse_interval_seconds;
        let recent = row
            .updated_at
            .is_some_and(|at| (Utc::now() - at).num_seconds() <= reuse);
        if recent && let Some(child) = auth::active_child(&mut tx, &row.token).await? {
            let tokens = session::respond(
                &mut tx,
                &state.auth,
                user_id,
                session_id,
                &method,
                child.token,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(tokens);
        }
        auth::delete_session(&mut tx, session_id).await?;
        audit(
            &mut tx,
            "auth.refresh_token_reused",
            Some(user_id),
            json!({ "session_id": session_id }),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::warn!(%user_id, %session_id, "a revoked refresh token was reused: session revoked");
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "refresh_token_already_used",
            "Invalid Refresh Token: Already Used",
        ));
    }

    auth::revoke_refresh_token(&mut tx, row.id).await?;
    let child = pesachama_auth::random_token(18);
    auth::insert_refresh_token(&mut tx, user_id, session_id, &child, Some(&row.token)).await?;
    auth::touch_session(&mut tx, session_id).await?;
    let tokens =
        session::respond(&mut tx, &state.auth, user_id, session_id, &method, child).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(tokens)
}

#[derive(Debug, Deserialize)]
struct IdTokenGrant {
    provider: Option<String>,
    id_token: Option<String>,
    nonce: Option<String>,
}

/// Google sign-in: verify the ID token, then find the user by their Google identity, or link
/// it to the user with the same verified email, or create one.
async fn id_token_grant(
    state: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<TokenResponse, AuthError> {
    let body: IdTokenGrant = json_body(body)?;
    if body.provider.as_deref() != Some("google") {
        return Err(AuthError::validation("provider must be \"google\""));
    }
    let id_token = body
        .id_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError::validation("id_token required"))?;
    let settings = &state.auth.settings;
    let google = state
        .auth
        .google
        .verify(
            &id_token,
            &settings.google_client_ids,
            body.nonce.as_deref(),
        )
        .await
        .map_err(|err| {
            AuthError::new(
                StatusCode::BAD_REQUEST,
                "bad_oauth_callback",
                format!("Bad ID token: {err}"),
            )
        })?;

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let user = super::google_account::find_or_create(&mut tx, settings, &google).await?;
    check_may_sign_in(state, &user)?;
    ensure_profile(&mut tx, &user).await?;
    let tokens = super::sign_in(
        &mut tx,
        state,
        &user,
        "oauth",
        (headers, &ip),
        json!({ "method": "google" }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(tokens)
}
