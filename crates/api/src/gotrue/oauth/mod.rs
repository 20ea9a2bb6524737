//! The browser OAuth flow with Google, as supabase-js's `signInWithOAuth` drives it:
//!
//! 1. `GET /auth/v1/authorize?provider=google&redirect_to=…[&code_challenge=…&code_challenge_method=s256]`
//!    remembers the flow in `auth.flow_state` (its id is the OAuth `state`) and sends the
//!    browser to Google.
//! 2. Google sends it back to `GET /auth/v1/callback?code=…&state=…`: the flow is taken (a
//!    state is heard once), the code traded at Google's token endpoint, the ID token verified
//!    (issuer, audience, and a nonce bound to this flow), the account found or made as for
//!    `grant_type=id_token`. PKCE: the browser goes to `redirect_to?code=<auth code>`; implicit:
//!    to `redirect_to#access_token=…`.
//! 3. PKCE: `POST /auth/v1/token?grant_type=pkce {auth_code, code_verifier}` answers a session.
//!
//! These two GET routes are reached by browser navigation, which carries no `apikey` (Supabase's
//! gateway leaves them open too).

mod authorize;
mod callback;
mod exchange;
mod pkce;

pub use authorize::authorize;
pub use callback::callback;
pub(crate) use pkce::pkce_grant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use uuid::Uuid;

use super::AuthError;
use super::settings::AuthSettings;

const PROVIDER: &str = "google";

/// The nonce Google is asked to put in the ID token of the flow `state`: derived from the
/// state with the server's secret, so it needs no storage, and an ID token obtained in
/// another flow (another state) does not pass.
fn nonce_for(secret: &str, state: Uuid) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be taken.
        return Uuid::new_v4().to_string();
    };
    mac.update(b"pesachama google oauth nonce ");
    mac.update(state.as_hyphenated().to_string().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The web client's id and secret, when Google's browser flow is configured.
fn web_client(settings: &AuthSettings) -> Option<(&str, &str)> {
    let client_id = settings.google_client_ids.first()?;
    let secret = settings
        .google_oauth
        .client_secret
        .as_deref()
        .filter(|s| !s.is_empty())?;
    Some((client_id.as_str(), secret))
}

/// GoTrue's answer for a provider that is not configured.
fn provider_disabled() -> AuthError {
    AuthError::new(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "Unsupported provider: provider is not enabled",
    )
}

/// A redirect to `location` (a URL we built, so a valid header; should it not be, a 500).
fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (status, [(header::LOCATION, value)]).into_response(),
        Err(_) => {
            tracing::error!("an OAuth redirect address is not a valid header value");
            AuthError::internal().into_response()
        }
    }
}
