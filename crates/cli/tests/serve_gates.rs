//! `pesachama serve` outside `--demo` fails closed, as an attacker would find it: no M-Pesa
//! simulator paying prompts unless asked for, no simulator credentials anyone could know, no
//! `/ussd` believing whoever posts to it, and no start at all with an unsafe USSD combination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::pesachama;
use pesachama_testkit::{TEST_JWT_SECRET, TestApp, TestDb};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `serve` on `db` (not `--demo`), stopped when dropped.
struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: &TestDb, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let mut command = pesachama();
        command
            .args(["--database-url", &db.url, "serve", "--port"])
            .arg(port.to_string())
            .args(extra)
            .env("SUPABASE_JWT_SECRET", TEST_JWT_SECRET)
            .env("PESACHAMA_MAILBOX", dir.path().join("mailbox.jsonl"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(format!("{}/ready", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve did not get ready:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn sign_in(base: &str, email: &str) -> String {
    let session: Value = reqwest::Client::new()
        .post(format!("{base}/auth/v1/token?grant_type=password"))
        .header("apikey", TestApp::api_key("anon"))
        .json(&json!({ "email": email, "password": "password123" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["access_token"]
        .as_str()
        .expect("signed in")
        .to_owned()
}

#[tokio::test]
async fn serve_without_demo_or_simulator_runs_no_simulator_and_refuses_stk_with_503() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    let server = Server::start(&db, &[], &[]).await;
    let token = sign_in(&server.base, "chebet.langat@example.co.ke").await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/chamas/c4a3a000-0000-4000-8000-000000000001/contributions/mpesa",
            server.base
        ))
        .bearer_auth(&token)
        .header("Idempotency-Key", "fail-closed-1")
        .json(&json!({ "amount": 150_000 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}\n{}", server.log());
    assert_eq!(body["error"]["code"], "mpesa_not_configured");
    let requests: i64 = sqlx::query_scalar("select count(*) from public.payment_requests")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let jobs: i64 =
        sqlx::query_scalar("select count(*) from internal.outbox where topic like 'mpesa.%'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((requests, jobs), (0, 0));
    db.assert_ledger_balanced().await;
    let log = server.log();
    assert!(log.contains("M-Pesa is not configured"), "{log}");
    assert!(!log.contains("Daraja simulator"), "{log}");

    // Without USSD settings /ussd is not served: 503 naming them, and the log says why.
    for path in ["/ussd", "/ussd/some-guess"] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", server.base))
            .form(&[
                ("sessionId", "ATUid_1"),
                ("phoneNumber", "+254712345001"),
                ("text", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "ussd_not_configured", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("USSD_CALLBACK_TOKEN") && message.contains("USSD_ALLOWED_IPS"),
            "{message}"
        );
    }
    assert!(log.contains("USSD is off"), "{log}");
}

#[test]
fn serve_with_a_ussd_token_but_no_allow_list_refuses_to_start_naming_it() {
    let output = pesachama()
        .args(["serve", "--port"])
        .arg(free_port().to_string())
        .env(
            "USSD_CALLBACK_TOKEN",
            "a-long-enough-ussd-token-0123456789abcdef",
        )
        .env_remove("USSD_ALLOWED_IPS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("USSD_CALLBACK_TOKEN without USSD_ALLOWED_IPS"),
        "{err}"
    );
}

#[test]
fn serve_with_a_ussd_allow_list_but_no_token_refuses_to_start_naming_it() {
    let output = pesachama()
        .args(["serve", "--port"])
        .arg(free_port().to_string())
        .env("USSD_ALLOWED_IPS", "196.201.214.0/24")
        .env_remove("USSD_CALLBACK_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("USSD_ALLOWED_IPS without USSD_CALLBACK_TOKEN"),
        "{err}"
    );
}

/// The simulator's address, from the line `serve` logs when it starts one.
fn simulator_url(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line["simulator"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn the_simulators_old_fixed_credentials_get_no_token() {
    let db = TestDb::new().await;
    let server = Server::start(&db, &["--mpesa-simulator"], &[]).await;
    let log = server.log();
    let simulator = simulator_url(&log).unwrap_or_else(|| panic!("no simulator logged:\n{log}"));
    let client = reqwest::Client::new();
    // What any local process could do before: take a token with the well-known credentials...
    let refused = client
        .get(format!(
            "{simulator}/oauth/v1/generate?grant_type=client_credentials"
        ))
        .basic_auth("simulator-consumer-key", Some("simulator-consumer-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "{}", refused.text().await.unwrap());
    // ...and make the simulator pay a paybill to the server's confirmation URL.
    let paid = client
        .post(format!("{simulator}/mpesa/c2b/v1/simulate"))
        .json(
            &json!({ "ShortCode": "174379", "CommandID": "CustomerPayBillOnline",
                       "Amount": 5000, "Msisdn": "254115345009", "BillRefNumber": "umoja01" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 401);
    let callbacks: i64 = sqlx::query_scalar("select count(*) from internal.mpesa_callbacks")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(callbacks, 0);
    assert!(
        !log.contains("simulator-consumer"),
        "credentials logged:\n{log}"
    );
}

#[test]
fn serve_with_a_google_secret_but_no_client_id_refuses_to_start_naming_it() {
    let output = pesachama()
        .args(["serve", "--port"])
        .arg(free_port().to_string())
        .env("GOOGLE_CLIENT_SECRET", "GOCSPX-a-secret")
        .env_remove("GOOGLE_CLIENT_IDS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("GOOGLE_CLIENT_SECRET without GOOGLE_CLIENT_IDS"),
        "{err}"
    );
    assert!(
        !err.contains("GOCSPX-a-secret"),
        "the secret was printed: {err}"
    );
}

#[tokio::test]
async fn serve_sends_browsers_to_the_configured_google_and_never_logs_its_secret() {
    let db = TestDb::new().await;
    let secret = "GOCSPX-never-in-a-log-0123456789";
    let server = Server::start(
        &db,
        &[],
        &[
            (
                "GOOGLE_CLIENT_IDS",
                "web.apps.googleusercontent.com,android.apps.googleusercontent.com",
            ),
            ("GOOGLE_CLIENT_SECRET", secret),
            (
                "GOOGLE_AUTHORIZATION_URL",
                "https://accounts.example.test/auth",
            ),
            ("SITE_URL", "https://app.pesachama.example"),
            ("URI_ALLOW_LIST", "com.pesachama.app://login-callback"),
        ],
    )
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser
        .get(format!(
            "{}/auth/v1/authorize?provider=google&redirect_to=com.pesachama.app%3A%2F%2Flogin-callback",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{}", server.log());
    let to = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(to.host_str(), Some("accounts.example.test"));
    let query: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "web.apps.googleusercontent.com");
    assert_eq!(
        query["redirect_uri"],
        format!("{}/auth/v1/callback", server.base)
    );
    let referrer: String = sqlx::query_scalar("select referrer from auth.flow_state")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(referrer, "com.pesachama.app://login-callback");
    let log = server.log();
    assert!(log.contains("Google sign-in in the browser is on"), "{log}");
    assert!(!log.contains(secret), "the client secret was logged");
}
