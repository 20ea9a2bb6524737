//! `GET /auth/v1/callback`: Google sends the browser back here with `code` and `state`.
//!
//! Every answer is a redirect, as GoTrue's: a state that is missing, forged, used or expired
//! sends the browser to the site URL with the error in the query (303); once the flow is
//! known, success and failure both go to the flow's `redirect_to`, failures with `error`,
//! `error_code` and `error_description` in the query and the fragment (302).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use pesachama_store::StoreError;
use pesachama_store::flow_state::{self, FlowState};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::exchange::{self, Exchange, ExchangeError};
use super::{PROVIDER, nonce_for, provider_disabled, redirect, web_client};
use crate::AppState;
use crate::gotrue::handlers::{audit, check_may_sign_in, ensure_profile, google_account};
use crate::gotrue::{AuthError, ClientIp};

/// Why the flow did not end in a sign-in.
#[derive(Debug)]
enum Failure {
    Auth(AuthError),
    /// Google's own error (`error=access_denied` when the user said no).
    Provider {
        error: String,
        description: String,
    },
}

impl From<AuthError> for Failure {
    fn from(err: AuthError) -> Self {
        Self::Auth(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Self::Auth(err.into())
    }
}

impl Failure {
    /// `(error, error_code, error_description)` as GoTrue puts them in the redirect.
    fn parts(&self) -> (String, Option<&'static str>, String) {
        match self {
            Self::Provider { error, description } => (error.clone(), None, description.clone()),
            Self::Auth(err) => {
                let error = match (err.code, err.status) {
                    (
                        "signup_disabled"
                        | "user_banned"
                        | "provider_email_needs_verification"
                        | "email_not_confirmed"
                        | "phone_not_confirmed",
                        _,
                    ) => "access_denied",
                    (_, StatusCode::BAD_REQUEST) => "invalid_request",
                    (_, StatusCode::UNAUTHORIZED) => "unauthorized_client",
                    (_, StatusCode::FORBIDDEN) => "access_denied",
                    (_, StatusCode::SERVICE_UNAVAILABLE) => "temporarily_unavailable",
                    _ => "server_error",
                };
                (error.to_owned(), Some(err.code), err.message.clone())
            }
        }
    }
}

pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    ip: ClientIp,
    headers: HeaderMap,
) -> Response {
    let site = &state.auth.settings.redirects.site_url;
    let flow = match take_flow(&state, query.get("state")).await {
        Ok(flow) => flow,
        Err(failure) => {
            tracing::info!(?failure, "OAuth callback with an unusable state");
            return redirect_with_error(site, &failure, StatusCode::SEE_OTHER, false);
        }
    };
    let back_to = flow.referrer.clone().unwrap_or_else(|| site.clone());
    match finish(&state, &flow, &query, ip, &headers, &back_to).await {
        Ok(location) => redirect(StatusCode::FOUND, &location),
        Err(failure) => {
            tracing::info!(?failure, flow = %flow.id, "OAuth sign-in failed");
            redirect_with_error(&back_to, &failure, StatusCode::FOUND, true)
        }
    }
}

/// The flow the state names, taken so it is heard once.
async fn take_flow(state: &AppState, raw: Option<&String>) -> Result<FlowState, Failure> {
    let raw = raw.filter(|s| !s.is_empty()).ok_or_else(|| {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_callback",
            "OAuth state parameter missing",
        )
    })?;
    let invalid = || {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_state",
            "OAuth state parameter is invalid",
        )
    };
    let id = Uuid::parse_str(raw).map_err(|_| invalid())?;
    let Some(flow) = flow_state::take(&state.pool, id, PROVIDER).await? else {
        if flow_state::is_used(&state.pool, id).await? {
            return Err(AuthError::new(
                StatusCode::BAD_REQUEST,
                "flow_state_already_used",
                "State has already been used",
            )
            .into());
        }
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_state",
            "OAuth state not found or expired",
        )
        .into());
    };
    let ttl = state.auth.settings.google_oauth.flow_state_ttl_seconds;
    if (Utc::now() - flow.created_at).num_seconds() > ttl {
        return Err(AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_state",
            "OAuth state has expired",
        )
        .into());
    }
    Ok(flow)
}

/// Google's answer → the user → where the browser goes next.
async fn finish(
    state: &AppState,
    flow: &FlowState,
    query: &HashMap<String, String>,
    ip: ClientIp,
    headers: &HeaderMap,
    back_to: &str,
) -> Result<String, Failure> {
    if let Some(error) = query.get("error").filter(|e| !e.is_empty()) {
        return Err(Failure::Provider {
            error: oauth_error_name(error),
            description: query
                .get("error_description")
                .map(|d| d.chars().take(500).collect())
                .unwrap_or_default(),
        });
    }
    let code = query.get("code").filter(|c| !c.is_empty()).ok_or_else(|| {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_callback",
            "OAuth callback with missing authorization code",
        )
    })?;
    let settings = &state.auth.settings;
    let (client_id, client_secret) = web_client(settings).ok_or_else(provider_disabled)?;
    let redirect_uri = settings.google_redirect_uri();
    let tokens = exchange::exchange(
        state.auth.google.http(),
        &Exchange {
            token_url: &settings.google_oauth.token_url,
            client_id,
            client_secret,
            redirect_uri: &redirect_uri,
            code,
        },
    )
    .await
    .map_err(|err| match err {
        ExchangeError::Refused(_) => AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_callback",
            format!("Unable to exchange external code: {err}"),
        ),
        ExchangeError::Unavailable(_) => {
            tracing::warn!(error = %err, "Google's token endpoint failed");
            AuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unexpected_failure",
                "Unable to exchange external code",
            )
        }
    })?;
    let id_token = tokens.id_token.as_deref().ok_or_else(|| {
        AuthError::new(
            StatusCode::BAD_REQUEST,
            "bad_oauth_callback",
            "Google answered without an ID token",
        )
    })?;
    // Only the web client's audience, and the nonce of this flow.
    let nonce = nonce_for(&settings.jwt_secret, flow.id);
    let google = state
        .auth
        .google
        .verify(id_token, &[client_id.to_owned()], Some(&nonce))
        .await
        .map_err(|err| {
            AuthError::new(
                StatusCode::BAD_REQUEST,
                "bad_oauth_callback",
                format!("Bad ID token: {err}"),
            )
        })?;

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let user = google_account::find_or_create(&mut tx, settings, &google).await?;
    check_may_sign_in(state, &user)?;
    ensure_profile(&mut tx, &user).await?;
    let mut target = Url::parse(back_to).map_err(|_| AuthError::internal())?;
    if flow.code_challenge.is_some() {
        let auth_code = flow.auth_code.as_deref().ok_or_else(AuthError::internal)?;
        flow_state::issue_auth_code(
            &mut tx,
            flow,
            user.id,
            &tokens.access_token,
            tokens.refresh_token.as_deref().unwrap_or_default(),
        )
        .await?;
        audit(
            &mut tx,
            "auth.oauth_code_issued",
            Some(user.id),
            json!({ "provider": PROVIDER, "flow": flow.id }),
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        set_query(&mut target, &[("code", auth_code)]);
        return Ok(target.to_string());
    }

    let session = crate::gotrue::handlers::sign_in(
        &mut tx,
        state,
        &user,
        "oauth",
        (headers, &ip),
        json!({ "method": "google", "flow": "implicit" }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    // GoTrue's fragment: its keys in order, `sb` marking a Supabase Auth redirect.
    let mut fragment = url::form_urlencoded::Serializer::new(String::new());
    fragment
        .append_pair("access_token", &session.access_token)
        .append_pair("expires_at", &session.expires_at.to_string())
        .append_pair("expires_in", &session.expires_in.to_string());
    if let Some(refresh) = tokens.refresh_token.as_deref().filter(|t| !t.is_empty()) {
        fragment.append_pair("provider_refresh_token", refresh);
    }
    fragment
        .append_pair("provider_token", &tokens.access_token)
        .append_pair("refresh_token", &session.refresh_token)
        .append_pair("sb", "")
        .append_pair("token_type", session.token_type);
    target.set_fragment(Some(&fragment.finish()));
    Ok(target.to_string())
}

/// Sets each `(key, value)` in the URL's query, replacing what was there under that key.
fn set_query(target: &mut Url, pairs: &[(&str, &str)]) {
    let kept: Vec<(String, String)> = target
        .query_pairs()
        .filter(|(key, _)| !pairs.iter().any(|(k, _)| k == key))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut query = target.query_pairs_mut();
    query.clear();
    for (key, value) in &kept {
        query.append_pair(key, value);
    }
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
}

/// The browser goes to `to` with the error in the query (and, once the flow is known, in the
/// fragment too, as GoTrue does and supabase-js reads it).
fn redirect_with_error(
    to: &str,
    failure: &Failure,
    status: StatusCode,
    fragment: bool,
) -> Response {
    let (error, code, description) = failure.parts();
    let Ok(mut target) = Url::parse(to) else {
        return redirect(status, to);
    };
    let mut pairs = vec![("error", error.as_str())];
    if let Some(code) = code {
        pairs.push(("error_code", code));
    }
    pairs.push(("error_description", description.as_str()));
    set_query(&mut target, &pairs);
    if fragment {
        let mut hash = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            hash.append_pair(key, value);
        }
        hash.append_pair("sb", "");
        target.set_fragment(Some(&hash.finish()));
    }
    redirect(status, target.as_str())
}

/// Google's `error` passed on only when it is an OAuth error name (`access_denied`...).
fn oauth_error_name(error: &str) -> String {
    if error.len() <= 64 && error.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
        error.to_owned()
    } else {
        "server_error".to_owned()
    }
}
