//! The app, its M-Pesa worker and a Daraja simulator, wired as `serve` wires them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use pesachama_api::mpesa_worker::{Mpesa, MpesaWorker};
use pesachama_api::{AppState, ServerConfig};
use pesachama_mpesa::DarajaClient;
use pesachama_mpesa::simulator::{RunningSimulator, Simulator, SimulatorConfig};
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio::sync::watch;

pub const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
/// A plain member of Umoja.
pub const CHEBET: &str = "chebet.langat@example.co.ke";
pub const CHEBET_PHONE: &str = "+254115345009";
pub const TOKEN: &str = "test-callback-token-0123456789abcdef";

pub struct Harness {
    pub app: TestApp,
    pub sim: RunningSimulator,
    pub mpesa: Arc<Mpesa>,
    stop: watch::Sender<bool>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_, _| {}).await
    }

    /// With the M-Pesa settings and the server configuration adjusted first.
    pub async fn start_with(adjust: impl FnOnce(&mut Mpesa, &mut ServerConfig)) -> Self {
        let sim = Simulator::new(SimulatorConfig {
            delay: Duration::from_millis(50),
            ..SimulatorConfig::default()
        })
        .unwrap()
        .start()
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = DarajaClient::new(sim.client_config()).unwrap();
        let mut mpesa = Mpesa::new(client, &format!("http://{address}"), TOKEN);
        mpesa.rescan_after = Duration::from_millis(200);
        mpesa.unknown_grace = Duration::from_secs(1);
        let mut config = TestApp::config();
        adjust(&mut mpesa, &mut config);
        let mpesa = Arc::new(mpesa);
        config.mpesa = Some(mpesa.clone());
        let db = TestDb::new().await;
        pesachama_store::seed_demo(&db.pool).await.unwrap();
        let pool = db.pool.clone();
        let app = TestApp::spawn_listener(listener, db, AppState::new(pool.clone(), config)).await;
        let (stop, stopped) = watch::channel(false);
        let mut worker = MpesaWorker::new(pool, mpesa.clone());
        worker.idle = Duration::from_millis(50);
        let mut stopped2 = stopped.clone();
        tokio::spawn(worker.run(async move {
            let _ = stopped2.wait_for(|s| *s).await;
        }));
        drop(stopped);
        Self {
            app,
            sim,
            mpesa,
            stop,
        }
    }

    /// Stops the worker (as a server that died would).
    pub fn stop_worker(&self) {
        let _ = self.stop.send(true);
    }

    pub fn callback_url(&self, kind: &str) -> String {
        self.mpesa.callback_url(kind)
    }

    pub async fn post_callback(&self, kind: &str, body: &Value) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(self.callback_url(kind))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts an STK contribution to Umoja: the status, the answer, and whether it was a replay.
    pub async fn contribute(&self, token: &str, key: &str, body: Value) -> (u16, Value, bool) {
        let response = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/chamas/{UMOJA}/contributions/mpesa")),
            )
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            replayed,
        )
    }

    pub async fn balance(&self) -> i64 {
        sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
            .bind(UMOJA)
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap()
    }

    pub async fn payment_request(&self, id: &str) -> Value {
        sqlx::query_scalar("select internal.payment_request_json($1::uuid)")
            .bind(id)
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap()
    }

    /// Waits (up to 15 s) until the payment request has `status`; answers it.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.payment_request(id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("payment request {id} never became {status}: {last}");
    }

    /// Waits (up to 15 s) until a boolean query answers true.
    pub async fn wait_sql(&self, sql: &str) {
        for _ in 0..300 {
            let done: bool = sqlx::query_scalar(sql)
                .fetch_one(&self.app.db.pool)
                .await
                .unwrap();
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never true: {sql}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A successful STK callback as Daraja sends it.
pub fn success_callback(checkout: &str, shillings: i64, receipt: &str, phone: &str) -> Value {
    let msisdn: i64 = phone.trim_start_matches('+').parse().unwrap();
    json!({ "Body": { "stkCallback": {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": { "Item": [
            { "Name": "Amount", "Value": shillings },
            { "Name": "MpesaReceiptNumber", "Value": receipt },
            { "Name": "Balance" },
            { "Name": "TransactionDate", "Value": 20261201133416_i64 },
            { "Name": "PhoneNumber", "Value": msisdn }
        ]}
    }}})
}
