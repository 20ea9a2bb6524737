//! Supabase Realtime at `/realtime/v1/websocket`: the Phoenix protocol as `@supabase/realtime-js`
//! and supabase_flutter speak it (vsn 1.0.0 and 2.0.0), with `postgres_changes` from the
//! database's own triggers (LISTEN/NOTIFY, so every server process delivers to its own clients)
//! and `broadcast` between the clients of a channel.
//!
//! A subscriber receives a row only when RLS lets its identity SELECT that row: the hub asks
//! the database, once per batch of changes, for every distinct identity that is interested.
//! The protocol codec ([`protocol`]), the filters ([`filter`]), the join checks ([`join`]) and
//! the message shapes ([`payload`]) are pure code with unit tests; [`hub`] and [`session`] do
//! the I/O. `docs/realtime.md` describes the whole.

pub mod filter;
pub mod hub;
pub mod identity;
pub mod join;
pub mod payload;
pub mod protocol;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pesachama_auth::Role;

pub use hub::{Hub, LiveCheck, RealtimeConfig};
use identity::Identity;
use protocol::Vsn;
use session::ConnectionAuth;

/// The realtime routes, for any outer state (the hub carries its own).
pub fn router<S: Clone + Send + Sync + 'static>(hub: Arc<Hub>) -> Router<S> {
    Router::new()
        .route("/realtime/v1/websocket", get(upgrade))
        .with_state(hub)
}

/// Checks the API key (and vsn) before upgrading, so a refused connection gets an HTTP answer
/// that says why rather than a socket that closes.
async fn upgrade(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let vsn = match Vsn::parse(query.get("vsn").map(String::as_str)) {
        Ok(vsn) => vsn,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, "unsupported_vsn", &reason),
    };
    let key = query.get("apikey").cloned().or_else(|| {
        headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let Some(key) = key else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no_api_key",
            "No API key found in request: connect with ?apikey=<anon key>",
        );
    };
    let Some(api_identity) = api_identity(&hub, &key) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    };
    let auth = ConnectionAuth {
        api_identity,
        access_token: query.get("access_token").cloned(),
    };
    let limit = hub.config.max_frame_bytes;
    ws.max_message_size(limit.saturating_mul(4))
        .max_frame_size(limit.saturating_mul(4))
        .on_upgrade(move |socket| session::run(hub, socket, vsn, auth))
}

/// The identity an API key stands for: a JWT key (anon or service_role) signed with the
/// project's secret, or a configured opaque key (`sb_secret_...` is the service role, any
/// other the anon role). User access tokens are not API keys.
fn api_identity(hub: &Hub, key: &str) -> Option<Identity> {
    let opaque = hub
        .config
        .opaque_api_keys
        .iter()
        .any(|known| constant_time_eq(known.as_bytes(), key.as_bytes()));
    if opaque {
        let mut identity = Identity::anonymous();
        if key.starts_with("sb_secret_") {
            identity.role = Role::ServiceRole;
            identity.claims = serde_json::json!({ "role": "service_role" });
        }
        return Some(identity);
    }
    let identity = Identity::verify(&hub.config.verifier, key).ok()?;
    matches!(identity.role, Role::Anon | Role::ServiceRole).then_some(identity)
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}
