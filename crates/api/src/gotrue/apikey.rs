//! Every `/auth/v1` call carries `apikey: <anon or service-role key>`, as Supabase's gateway
//! demands. The key is a JWT signed with the project's secret (role `anon` or `service_role`),
//! or one of the opaque keys configured (`sb_publishable_...`, `sb_secret_...`).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pesachama_auth::Role;

use super::AuthError;
use crate::AppState;

pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // An emailed link is opened by a browser, which has no key: Supabase's gateway leaves
    // `GET /auth/v1/verify` open for that reason. What it checks is the link's own token.
    if request.method() == axum::http::Method::GET && request.uri().path().ends_with("/verify") {
        return next.run(request).await;
    }
    let key = request
        .headers()
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_apikey(request.uri().query()));
    let Some(key) = key else {
        return AuthError::new(
            StatusCode::UNAUTHORIZED,
            "no_api_key",
            "No API key found in request",
        )
        .into_response();
    };
    let opaque = state
        .auth
        .settings
        .opaque_api_keys
        .iter()
        .any(|known| constant_time_eq(known.as_bytes(), key.as_bytes()));
    match state.auth.verifier.verify(&key) {
        Ok(claims) if matches!(claims.role, Role::Anon | Role::ServiceRole) => {
            next.run(request).await
        }
        _ if opaque => next.run(request).await,
        _ => AuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        )
        .into_response(),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_apikey(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("apikey="))
        .map(str::to_owned)
}
