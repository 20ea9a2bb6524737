//! PesaChama's HTTP server.
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a listener the caller
//! bound, until the caller's shutdown future completes. Tests bind port 0 and run many apps at
//! once; the binary binds the configured port.

pub mod batching;
pub mod contribution_batches;
pub mod delivery;
pub mod email;
pub mod error;
pub mod gate;
pub mod gotrue;
pub mod keys;
pub mod metrics;
mod middleware;
pub mod mpesa_payouts;
pub mod mpesa_reconcile;
pub mod mpesa_worker;
mod nul;
pub mod openapi;
pub mod pins;
pub mod push;
pub mod routes;
pub mod sms;
pub mod stk_batches;
pub mod storage_api;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use metrics::Metrics;

/// Settings the server needs at run time.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (Supabase caps at 1 MB; so do we by default).
    pub body_limit: usize,
    pub auth: gotrue::AuthSettings,
    /// Agora credentials for video meetings; without them meeting tokens are refused (503).
    pub agora: Option<AgoraConfig>,
    /// Where `/storage/v1` keeps objects; without it the storage routes answer 503.
    pub storage: Option<storage_api::StorageSettings>,
    /// M-Pesa (Daraja client and callback settings); without it the M-Pesa routes and
    /// callbacks answer 503 `mpesa_not_configured` and write nothing.
    pub mpesa: Option<Arc<mpesa_worker::Mpesa>>,
    /// Who may post to the USSD callback; `None`: `/ussd` answers 503 `ussd_not_configured`.
    pub ussd: Option<routes::ussd::UssdGate>,
    /// How many connections record batches of manual contributions at once (see
    /// [`contribution_batches`]); 0 records each request in a transaction of its own.
    pub contribution_writers: usize,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
}

/// Who may read `/metrics`: it tells anyone who reads it how busy each route is and how the
/// pool is doing, so outside the demo it is behind a bearer token, or not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone (`serve --demo` without a token).
    Public,
    /// Requests with `Authorization: Bearer <token>` (`METRICS_TOKEN`).
    Token(String),
    /// Not served (404).
    Off,
}

/// `AGORA_APP_ID` and `AGORA_APP_CERTIFICATE`, 32 hexadecimal characters each.
#[derive(Debug, Clone)]
pub struct AgoraConfig {
    pub app_id: String,
    pub app_certificate: String,
}

impl ServerConfig {
    /// Defaults with the given JWT secret.
    pub fn with_secret(jwt_secret: impl Into<String>) -> Self {
        Self {
            body_limit: 1024 * 1024,
            auth: gotrue::AuthSettings::new(jwt_secret),
            agora: None,
            storage: None,
            mpesa: None,
            ussd: None,
            contribution_writers: 2,
            metrics: MetricsAccess::Off,
        }
    }
}

/// The users whose profile row is known to exist, so a request pays for the check once per
/// user and process. Bounded: past the limit it starts again (a profile is never removed while
/// its user lives, so forgetting only costs a query).
#[derive(Debug, Default)]
struct KnownProfiles(std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>);

impl KnownProfiles {
    const LIMIT: usize = 100_000;

    fn known(&self, user: uuid::Uuid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&user)
    }

    fn remember(&self, user: uuid::Uuid) {
        let mut known = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= Self::LIMIT {
            known.clear();
        }
        known.insert(user);
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<gotrue::AuthRuntime>,
    /// Users whose profile this process has made sure of.
    profiles: Arc<KnownProfiles>,
    openapi: Arc<String>,
    /// Started on the first contribution (it needs the runtime, which `new` may not have).
    contributions: Arc<std::sync::OnceLock<contribution_batches::ContributionWriter>>,
    /// Started on the first STK callback, when M-Pesa is configured.
    stk_applier: Arc<std::sync::OnceLock<stk_batches::StkApplier>>,
}

impl AppState {
    pub fn new(pool: PgPool, config: ServerConfig) -> Self {
        Self::with_jwks(pool, config, pesachama_auth::Jwks::default())
    }

    /// With public keys (a Supabase project's JWKS) that also verify access tokens.
    pub fn with_jwks(pool: PgPool, config: ServerConfig, jwks: pesachama_auth::Jwks) -> Self {
        let auth = gotrue::AuthRuntime::new(config.auth.clone(), jwks);
        Self {
            pool,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            auth: Arc::new(auth),
            profiles: Arc::default(),
            openapi: Arc::new(String::new()),
            contributions: Arc::default(),
            stk_applier: Arc::default(),
        }
    }

    /// The writer that records manual contributions in batches.
    pub fn contributions(&self) -> &contribution_batches::ContributionWriter {
        self.contributions.get_or_init(|| {
            contribution_batches::ContributionWriter::start(
                self.pool.clone(),
                self.config.contribution_writers,
            )
        })
    }

    /// The applier of stored STK callbacks; `None` without M-Pesa.
    pub fn stk_applier(&self) -> Option<&stk_batches::StkApplier> {
        let mpesa = self.config.mpesa.as_ref()?;
        Some(
            self.stk_applier.get_or_init(|| {
                stk_batches::StkApplier::start(self.pool.clone(), Arc::clone(mpesa))
            }),
        )
    }
}

/// The whole application router with its middleware.
pub fn app(mut state: AppState) -> Router {
    let (api, mut document) = openapi::routes().split_for_parts();
    document.merge(<storage_api::StorageDoc as utoipa::OpenApi>::openapi());
    state.openapi = Arc::new(
        document
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_owned()),
    );
    let limit = state.config.body_limit;

    Router::new()
        .merge(api)
        .merge(gotrue::router(state.clone()))
        .merge(pesachama_realtime::router(pesachama_realtime::Hub::new(
            pesachama_realtime::RealtimeConfig::new(
                state.pool.clone(),
                state.auth.verifier.clone(),
            )
            .with_opaque_keys(state.auth.settings.opaque_api_keys.clone())
            .with_live_check(realtime_live_check(&state)),
        )))
        .merge(routes::mpesa::callbacks())
        .route("/metrics", axum::routing::get(metrics_text))
        .route("/openapi.json", axum::routing::get(openapi_json))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::map_response(middleware::json_refusals))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            middleware::reject_oversized,
        ))
        // Storage streams uploads up to each bucket's own limit: outside the body-size guards.
        .merge(storage_api::router(state.clone()))
        .layer(CatchPanicLayer::custom(middleware::panic_to_error))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::RequestSpan)
                .on_response(middleware::LogResponse),
        )
        .layer(PropagateRequestIdLayer::new(middleware::REQUEST_ID))
        .layer(SetRequestIdLayer::new(
            middleware::REQUEST_ID,
            MakeRequestUuid,
        ))
        .with_state(state)
}

async fn metrics_text(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    match &state.config.metrics {
        MetricsAccess::Public => {}
        MetricsAccess::Off => return Err(ApiError::NotFound),
        MetricsAccess::Token(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !metrics::same_secret(presented, token) {
                return Err(ApiError::Auth(gotrue::AuthError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "no_authorization",
                    "/metrics needs the metrics token (Authorization: Bearer ...)",
                )));
            }
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.pool),
    ))
}

async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // The peer address feeds the per-client rate limits (ClientIp).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // No Nagle delay: a realtime frame or a small answer goes out at once, not after the
    // client's delayed ACK (~40 ms for the first realtime frame after a join).
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY could not be set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The realtime hub asks, at each join and token refresh, what every authenticated request
/// asks: whether the token's session still exists and its user is neither banned nor deleted.
fn realtime_live_check(state: &AppState) -> pesachama_realtime::LiveCheck {
    let auth = state.auth.clone();
    let pool = state.pool.clone();
    pesachama_realtime::LiveCheck::new(move |user, session| {
        let auth = auth.clone();
        let pool = pool.clone();
        Box::pin(async move {
            let liveness = auth
                .sessions
                .check(&pool, user, session)
                .await
                .map_err(|_| "the session could not be checked; try again".to_owned())?;
            match liveness.refusal() {
                None => Ok(()),
                Some(refusal) => Err(refusal.message),
            }
        })
    })
}
