//! `settings`, `health` and `.well-known/jwks.json`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

pub async fn settings(State(state): State<AppState>) -> Json<Value> {
    let settings = &state.auth.settings;
    Json(json!({
        "external": {
            "email": true,
            "phone": true,
            "google": !settings.google_client_ids.is_empty(),
            "anonymous_users": false,
        },
        "disable_signup": settings.disable_signup,
        "mailer_autoconfirm": settings.autoconfirm,
        "phone_autoconfirm": settings.autoconfirm,
        "sms_provider": "africastalking",
        "saml_enabled": false,
    }))
}

pub async fn health() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "name": "GoTrue",
        "description": "PesaChama's GoTrue-compatible auth service",
    }))
}

/// Tokens are signed with the shared HS256 secret, which is never published: the key set is
/// empty, as GoTrue's is for a project on a legacy JWT secret.
pub async fn jwks() -> Json<Value> {
    Json(json!({ "keys": [] }))
}
