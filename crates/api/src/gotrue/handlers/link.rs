//! Codes presented by their hash: the `token` of an emailed link (`GET /auth/v1/verify?token=
//! &type=&redirect_to=`, what `generate_link`'s `action_link` opens) and supabase-js's
//! `verifyOtp({ token_hash, type })` (`POST /auth/v1/verify`). The hash is what the database
//! keeps ([`super::codes`]), so it is looked up rather than recomputed; it is spent once and
//! expires as the code does.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, CodePurpose, Contact};
use serde_json::json;

use super::audit;
use crate::AppState;
use crate::gotrue::session::TokenResponse;
use crate::gotrue::{AuthError, AuthSettings, ClientIp, ratelimit};

/// Where a link may send the browser: a place on this site, else the site itself (GoTrue's
/// redirect allow-list, with the site as its only entry).
pub(crate) fn redirect_target(settings: &AuthSettings, requested: &str) -> String {
    let site = settings.site_url.trim_end_matches('/');
    if requested == site || requested.starts_with(&format!("{site}/")) {
        requested.to_owned()
    } else {
        site.to_owned()
    }
}

fn invalid_link() -> AuthError {
    AuthError::new(
        StatusCode::FORBIDDEN,
        "otp_expired",
        "Email link is invalid or has expired",
    )
}

/// Wrong link hashes allowed per window, from everyone together. A link's hash is SHA-224 of
/// the address and six digits: a guesser who knows the address and spreads guesses over many
/// client addresses would otherwise get a million tries an hour. After this many failures in a
/// window, links wait for the next one (codes with their address still work).
const LINK_FAILURES_PER_WINDOW: i32 = 100;
const LINK_FAILURES_BUCKET: &str = "verify_link:failures";

/// Spends the code whose hash is `token_hash` for `kind` and opens a session.
pub(crate) async fn verify_hash(
    state: &AppState,
    ip: &ClientIp,
    headers: &HeaderMap,
    kind: &str,
    token_hash: &str,
) -> Result<TokenResponse, AuthError> {
    let window = state.auth.settings.rate_limits.window_seconds;
    if ratelimit::seen(&state.pool, LINK_FAILURES_BUCKET, window).await? >= LINK_FAILURES_PER_WINDOW
    {
        return Err(AuthError::over_rate_limit());
    }
    let result = spend_hash(state, ip, headers, kind, token_hash).await;
    if result.as_ref().is_err_and(|err| err.code == "otp_expired") {
        // Counted, never refused here: the check above decides.
        let _ = ratelimit::hit(&state.pool, LINK_FAILURES_BUCKET, i32::MAX, window).await;
    }
    result
}

async fn spend_hash(
    state: &AppState,
    ip: &ClientIp,
    headers: &HeaderMap,
    kind: &str,
    token_hash: &str,
) -> Result<TokenResponse, AuthError> {
    let limits = state.auth.settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "verify",
        ip.text().as_deref(),
        None,
        limits.verify,
        limits.window_seconds,
    )
    .await?;
    let purpose = match kind {
        "recovery" | "magiclink" => Some(CodePurpose::Recovery),
        "signup" | "invite" | "email" => Some(CodePurpose::Confirmation),
        "email_change" => None,
        other => {
            return Err(AuthError::validation(format!(
                "Verify requires a verification type, got {other:?}"
            )));
        }
    };
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let (user_id, sent_at, new_email) = match purpose {
        Some(purpose) => {
            let (id, sent) = auth::lock_code_by_hash(&mut tx, purpose, token_hash)
                .await?
                .ok_or_else(invalid_link)?;
            (id, sent, None)
        }
        None => {
            let (id, new, sent) = auth::lock_email_change_by_hash(&mut tx, token_hash)
                .await?
                .ok_or_else(invalid_link)?;
            (id, sent, Some(new))
        }
    };
    let fresh = sent_at.is_some_and(|at: DateTime<Utc>| {
        (Utc::now() - at).num_seconds() <= state.auth.settings.otp_ttl_seconds
    });
    if !fresh {
        return Err(invalid_link());
    }
    match (purpose, new_email) {
        (Some(purpose), _) => {
            let confirm = (purpose == CodePurpose::Confirmation).then_some(Contact::Email);
            auth::spend_code(&mut tx, user_id, purpose, confirm).await?;
        }
        (None, Some(new_email)) => {
            if auth::contact_taken(&mut *tx, user_id, Contact::Email, &new_email).await? {
                return Err(super::otp::taken(Contact::Email));
            }
            auth::apply_contact_change(&mut tx, user_id, Contact::Email).await?;
            audit(&mut tx, "auth.email_changed", Some(user_id), json!({})).await?;
        }
        (None, None) => return Err(invalid_link()),
    }
    auth::forget_link_token(&mut tx, token_hash).await?;
    pesachama_store::auth_admin::sync_profile_contacts(&mut tx, user_id).await?;
    let user = auth::find_user_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(invalid_link)?;
    let method = if kind == "recovery" {
        "recovery"
    } else {
        "otp"
    };
    let tokens = super::sign_in(
        &mut tx,
        state,
        &user,
        method,
        (headers, ip),
        json!({ "via": "link" }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(tokens)
}

/// `GET /auth/v1/verify?token=&type=&redirect_to=`: the link opened in a browser. As GoTrue's
/// implicit flow, it answers 303 to `redirect_to` with the session in the fragment, or with
/// `error`, `error_code` and `error_description` there when the link is spent or expired.
pub async fn verify_link(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let get = |key: &str| query.get(key).map(String::as_str).unwrap_or_default();
    let target = redirect_target(&state.auth.settings, get("redirect_to"));
    let kind = get("type");
    let fragment = match verify_hash(&state, &ip, &headers, kind, get("token")).await {
        Ok(tokens) => form(&[
            ("access_token", tokens.access_token.as_str()),
            ("expires_at", &tokens.expires_at.to_string()),
            ("expires_in", &tokens.expires_in.to_string()),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("token_type", "bearer"),
            ("type", kind),
        ]),
        Err(err) if err.status.is_client_error() => form(&[
            ("error", "access_denied"),
            ("error_code", err.code),
            ("error_description", err.message.as_str()),
        ]),
        Err(err) => return err.into_response(),
    };
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{target}#{fragment}"))],
    )
        .into_response()
}

/// `key=value&...`, form-encoded (a space is `+`), as GoTrue writes the fragment.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                b' ' => "+".to_owned(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}
