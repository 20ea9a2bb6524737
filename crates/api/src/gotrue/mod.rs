//! `/auth/v1`: the subset of Supabase Auth (GoTrue) that supabase-js and supabase_flutter use,
//! with GoTrue's request and answer shapes, status codes and error codes, so the official
//! clients work against PesaChama unchanged.

mod admin;
mod apikey;
mod caller;
mod client_ip;
pub mod error;
mod google;
mod handlers;
pub mod live;
mod oauth;
mod ratelimit;
mod redirect;
mod session;
mod settings;
mod throttle;
mod user;

use axum::Router;
use axum::routing::{get, post};
use pesachama_auth::{Jwks, TokenIssuer, TokenVerifier};

pub use caller::Caller;
pub use client_ip::ClientIp;
pub use error::AuthError;
pub(crate) use handlers::blocking;
pub use redirect::RedirectRules;
pub use settings::{AuthSettings, GoogleOAuth, PasswordLimits, RateLimits};
pub use user::UserJson;

use crate::AppState;

/// What the auth routes share: the signer, the verifier, the settings.
#[derive(Debug)]
pub struct AuthRuntime {
    pub settings: AuthSettings,
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    /// Whether a token's session and user are still live, cached for a few seconds.
    pub sessions: live::SessionCheck,
    google: google::GoogleKeys,
}

impl AuthRuntime {
    pub fn new(settings: AuthSettings, extra_jwks: Jwks) -> Self {
        let issuer = TokenIssuer::hs256(settings.jwt_secret.as_bytes(), settings.issuer());
        let verifier = TokenVerifier::new(
            Some(settings.jwt_secret.as_bytes()),
            extra_jwks,
            Some(settings.issuer()),
        );
        let google = google::GoogleKeys::new(settings.google_jwks_url.clone());
        let sessions = live::SessionCheck::new(settings.session_check_ttl);
        Self {
            settings,
            issuer,
            verifier,
            sessions,
            google,
        }
    }
}

async fn method_not_allowed() -> AuthError {
    AuthError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed on this endpoint",
    )
}

/// The `/auth/v1` router (GoTrue) and the founding plan's `/auth/register` and `/auth/login`.
pub fn router(state: AppState) -> Router<AppState> {
    let gotrue = Router::new()
        .route("/signup", post(handlers::signup))
        .route("/token", post(handlers::token))
        .route("/user", get(handlers::get_user).put(handlers::put_user))
        .route("/logout", post(handlers::logout))
        .route("/reauthenticate", get(handlers::reauthenticate))
        .route("/recover", post(handlers::recover))
        .route("/verify", get(handlers::verify_link).post(handlers::verify))
        .route("/otp", post(handlers::otp))
        .route("/settings", get(handlers::settings))
        .route("/health", get(handlers::health))
        .route("/.well-known/jwks.json", get(handlers::jwks))
        .nest("/admin", admin::router())
        // Routes we do not serve answer in GoTrue's envelope, which the clients parse.
        .fallback(|| async {
            AuthError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "This endpoint is not served here",
            )
        })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state, apikey::require))
        // Reached by browser navigation (to and back from Google), which sends no API key.
        .merge(
            Router::new()
                .route("/authorize", get(oauth::authorize))
                .route("/callback", get(oauth::callback))
                .method_not_allowed_fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(error::shape));
    Router::new()
        .nest("/auth/v1", gotrue)
        .route("/auth/register", post(handlers::register))
        .route("/auth/login", post(handlers::login))
}
