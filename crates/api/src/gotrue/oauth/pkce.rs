//! `POST /auth/v1/token?grant_type=pkce {auth_code, code_verifier}`: the app trades the auth
//! code the callback handed out, with the verifier only it holds, for a session. The code is
//! spent by the exchange (its flow is deleted in the same transaction, with the row locked so
//! two exchanges cannot both succeed); a wrong verifier leaves it for its rightful holder.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use chrono::Utc;
use pesachama_store::StoreError;
use pesachama_store::{auth, flow_state};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::gotrue::handlers::{audit, check_may_sign_in, ensure_profile, json_body};
use crate::gotrue::session::{self, TokenResponse};
use crate::gotrue::{AuthError, ClientIp};

#[derive(Debug, Deserialize)]
struct PkceGrant {
    auth_code: Option<String>,
    code_verifier: Option<String>,
}

pub(crate) async fn pkce_grant(
    state: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<TokenResponse, AuthError> {
    let body: PkceGrant = json_body(body)?;
    let (Some(auth_code), Some(verifier)) = (
        body.auth_code.filter(|c| !c.is_empty()),
        body.code_verifier.filter(|v| !v.is_empty()),
    ) else {
        return Err(AuthError::validation(
            "invalid request: both auth code and code verifier should be non-empty",
        ));
    };
    let not_found = || {
        AuthError::new(
            StatusCode::NOT_FOUND,
            "flow_state_not_found",
            "invalid flow state, no valid flow state found",
        )
    };

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let flow = flow_state::lock_by_auth_code(&mut tx, &auth_code)
        .await?
        .ok_or_else(not_found)?;
    let user_id = flow.user_id.ok_or_else(not_found)?;
    let ttl = state.auth.settings.google_oauth.flow_state_ttl_seconds;
    if (Utc::now() - flow.created_at).num_seconds() > ttl {
        // Spent either way: nothing can exchange it any more.
        flow_state::delete(&mut *tx, flow.id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        return Err(AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "flow_state_expired",
            "invalid flow state, flow state has expired",
        ));
    }
    if !verifier_matches(
        flow.code_challenge.as_deref(),
        flow.code_challenge_method.as_deref(),
        &verifier,
    ) {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_code_verifier",
            "code challenge does not match previously saved code verifier",
        ));
    }
    let user = auth::find_user_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(|| AuthError::new(StatusCode::NOT_FOUND, "user_not_found", "User not found"))?;
    check_may_sign_in(state, &user)?;
    ensure_profile(&mut tx, &user).await?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let mut tokens = session::start(
        &mut tx,
        &state.auth,
        &user,
        &flow.authentication_method,
        user_agent,
        ip.text().as_deref(),
    )
    .await?;
    flow_state::delete(&mut *tx, flow.id).await?;
    audit(
        &mut tx,
        "auth.login",
        Some(user.id),
        json!({ "method": flow.provider_type, "flow": "pkce" }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tokens.provider_token = Some(flow.provider_access_token).filter(|t| !t.is_empty());
    tokens.provider_refresh_token = Some(flow.provider_refresh_token).filter(|t| !t.is_empty());
    Ok(tokens)
}

/// RFC 7636 §4.6: `s256` is BASE64URL(SHA-256(verifier)), `plain` the verifier itself;
/// compared in constant time.
fn verifier_matches(challenge: Option<&str>, method: Option<&str>, verifier: &str) -> bool {
    let Some(challenge) = challenge else {
        return false;
    };
    let expected = match method {
        Some("s256") => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes())),
        Some("plain") => verifier.to_owned(),
        _ => return false,
    };
    bool::from(expected.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::verifier_matches;

    #[test]
    fn the_rfc_7636_example_verifies() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verifier_matches(Some(challenge), Some("s256"), verifier));
        assert!(!verifier_matches(Some(challenge), Some("s256"), challenge));
        assert!(verifier_matches(Some(verifier), Some("plain"), verifier));
        assert!(!verifier_matches(Some(challenge), Some("plain"), verifier));
        assert!(!verifier_matches(None, Some("s256"), verifier));
    }
}
