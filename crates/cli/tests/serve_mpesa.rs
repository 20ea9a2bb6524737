//! `pesachama serve` wires M-Pesa end to end without any `MPESA_*` setting: its in-process
//! Daraja simulator prompts, its worker sends the push, the simulator's callback reaches the
//! server's callback route, and the contribution is credited once, with its receipt.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
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

#[tokio::test]
async fn an_stk_contribution_is_credited_through_the_servers_own_simulator_and_worker() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = pesachama()
        .args(["--database-url", &db.url, "serve", "--demo", "--port"])
        .arg(port.to_string())
        .env("SUPABASE_JWT_SECRET", TEST_JWT_SECRET)
        .env("PESACHAMA_MAILBOX", dir.path().join("mailbox.jsonl"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not get ready:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A demo member signs in and asks for a prompt of KES 1,500 in her chama.
    let session: Value = client
        .post(format!("{base}/auth/v1/token?grant_type=password"))
        .header("apikey", TestApp::api_key("anon"))
        .json(&json!({"email": "chebet.langat@example.co.ke", "password": "password123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"]
        .as_str()
        .expect("signed in")
        .to_owned();
    let chamas: Value = client
        .get(format!("{base}/chamas"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chama = chamas[0]["id"].as_str().expect("a chama").to_owned();
    let before: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
        .bind(&chama)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let started = client
        .post(format!("{base}/chamas/{chama}/contributions/mpesa"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "serve-wiring-1")
        .json(&json!({"amount": 150_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202, "{}", log());
    let request: Value = started.json().await.unwrap();
    let id = request["payment_request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The simulator answers after 2 s; the callback is applied at once.
    let waiting = Instant::now();
    let paid = loop {
        let now: Value = client
            .get(format!("{base}/payment-requests/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if now["status"] == "completed" {
            break now;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "not credited: {now}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let receipt = paid["mpesa_receipt"].as_str().expect("a receipt");
    assert_eq!(receipt.len(), 10);
    let credited: i64 = sqlx::query_scalar(
        "select count(*) from public.transactions where mpesa_receipt = $1 and amount = 150000",
    )
    .bind(receipt)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(credited, 1, "credited once");
    let after: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
        .bind(&chama)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(after - before, 150_000);
    db.assert_ledger_balanced().await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    while server.try_wait().unwrap().is_none() {
        if stopping.elapsed() > Duration::from_secs(30) {
            let _ = server.kill();
            panic!("serve did not stop on SIGTERM:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
