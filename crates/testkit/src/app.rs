use std::net::SocketAddr;

use pesachama_api::{AppState, ServerConfig};
use tokio::sync::oneshot;

use crate::TestDb;

/// The whole HTTP app on a fresh database, listening on a port of its own.
#[derive(Debug)]
pub struct TestApp {
    pub db: TestDb,
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

/// The USSD callback token of test apps: the gateway posts to `/ussd/{TEST_USSD_TOKEN}`.
pub const TEST_USSD_TOKEN: &str = "test-ussd-token-0123456789abcdef0123";

/// The JWT secret test apps sign and verify with.
pub const TEST_JWT_SECRET: &str = "pesachama-test-secret-with-at-least-32-characters";

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestDb::new().await, Self::config()).await
    }

    /// The configuration `spawn` uses, to adjust before `spawn_with`: sign-ups confirmed at once
    /// and `/metrics` open, as with `serve --demo` (tests of confirmation and of the metrics
    /// token turn them off); the USSD callback closed as in production
    /// (`POST /ussd/{TEST_USSD_TOKEN}` from loopback only); M-Pesa off.
    pub fn config() -> ServerConfig {
        let mut config = ServerConfig::with_secret(TEST_JWT_SECRET);
        config.auth.autoconfirm = true;
        config.metrics = pesachama_api::MetricsAccess::Public;
        config.ussd = Some(pesachama_api::routes::ussd::UssdGate {
            callback_token: Some(TEST_USSD_TOKEN.to_owned()),
            allowed_sources: pesachama_api::gate::AllowList::parse(
                "USSD_ALLOWED_IPS",
                &["127.0.0.1/32", "::1/128"],
            )
            .expect("loopback ranges"),
            open: false,
        });
        config
    }

    /// `config` with M-Pesa configured explicitly, as `serve --mpesa-simulator` would have it,
    /// but with no worker and no simulator behind it: STK pushes are queued (routes and USSD
    /// accept contributions) and never sent. Tests that need them paid run the simulator
    /// (`crates/api/tests/mpesa_common`).
    pub fn with_queued_mpesa(mut config: ServerConfig) -> ServerConfig {
        let daraja = pesachama_mpesa::DarajaConfig::new(
            "http://127.0.0.1:9",
            "unused-key",
            "unused-secret",
            "174379",
            "unused-passkey",
        );
        let client = pesachama_mpesa::DarajaClient::new(daraja).expect("a Daraja client");
        config.mpesa = Some(std::sync::Arc::new(
            pesachama_api::mpesa_worker::Mpesa::new(
                client,
                "http://127.0.0.1:9",
                "unused-callback-token-0123456789abcdef",
            ),
        ));
        config
    }

    pub async fn spawn_with(db: TestDb, config: ServerConfig) -> Self {
        let state = AppState::new(db.pool.clone(), config);
        Self::spawn_state(db, state).await
    }

    /// With a state built by the test (public keys from a fake JWKS, for instance).
    pub async fn spawn_state(db: TestDb, state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        Self::spawn_listener(listener, db, state).await
    }

    /// On a listener the test bound first (to know the app's address before building its
    /// state, e.g. the callback URLs a fake service is given).
    pub async fn spawn_listener(
        listener: tokio::net::TcpListener,
        db: TestDb,
        state: AppState,
    ) -> Self {
        let address = listener.local_addr().expect("local address");
        let app = pesachama_api::app(state);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(pesachama_api::serve(listener, app, async {
            let _ = rx.await;
        }));
        Self {
            db,
            address,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("send the request")
    }

    /// A request with a bearer token and an optional JSON body; the status and the JSON answer
    /// (`null` when the answer is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the answer");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Signs in with a password (`{"email"|"phone", "password"}`) and answers the token
    /// response; panics unless it succeeds.
    pub async fn sign_in(&self, credentials: serde_json::Value) -> serde_json::Value {
        let response = self
            .auth(reqwest::Method::POST, "/token?grant_type=password")
            .json(&credentials)
            .send()
            .await
            .expect("send the sign-in");
        assert_eq!(response.status(), 200, "sign-in with {credentials} failed");
        response.json().await.expect("a token response")
    }

    /// The access token of a demo user (`--demo` data: every password is `password123`).
    pub async fn demo_token(&self, email: &str) -> String {
        let session = self
            .sign_in(serde_json::json!({ "email": email, "password": "password123" }))
            .await;
        session["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    /// An API key (`anon` or `service_role`) signed with the test secret, as `pesachama keys` makes.
    pub fn api_key(role: &str) -> String {
        pesachama_api::keys::api_key(TEST_JWT_SECRET.as_bytes(), "local", role, 1_767_225_600)
            .expect("sign an API key")
    }

    /// A request to `/auth/v1/...` with the anon key and the API version header, as supabase-js
    /// sends it.
    pub fn auth(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/auth/v1{path}")))
            .header("apikey", Self::api_key("anon"))
            .header("x-supabase-api-version", "2024-01-01")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
