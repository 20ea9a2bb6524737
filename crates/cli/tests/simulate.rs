//! `pesachama simulate ussd`: lines typed on standard input walk the menus of a real server,
//! running elsewhere (`--url`) or in the same process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::{pesachama, stderr, stdout};
use pesachama_testkit::{TEST_JWT_SECRET, TestApp, TestDb};

/// Runs the binary with `input` as what the user types, off the async workers.
async fn simulate(args: Vec<String>, input: &'static str) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = pesachama()
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pesachama");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait for pesachama")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_session_against_a_running_server() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    // Balances are shown after the PIN: Wanjiku sets hers in the app first.
    let token = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            &token,
            "/auth/pin",
            Some(serde_json::json!({ "pin": "1234" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let args = [
        "simulate",
        "ussd",
        "--phone",
        "0712345001",
        "--url",
        &app.url(""),
        "--token",
        pesachama_testkit::TEST_USSD_TOKEN,
    ]
    .map(String::from)
    .to_vec();
    let output = simulate(args, "1\n2\n1234\n0\n0\n0\n").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.starts_with("Welcome Wanjiku\n1. My chamas"), "{out}");
    assert!(
        out.contains("> Choose a chama:\n1. Eldoret Merry-Go-.\n2. Umoja Women Group"),
        "{out}"
    );
    assert!(
        out.contains("> Chama balance: Umoja Women Group\nEnter PIN to confirm:"),
        "{out}"
    );
    assert!(
        out.contains("> Umoja Women Group\nChama balance: KES "),
        "{out}"
    );
    assert!(
        out.ends_with("> Thank you for using PesaChama.\n[session ended]\n"),
        "{out}"
    );
    // One session, six hops after the first, each with the whole text so far.
    let hops: i32 = sqlx::query_scalar("select hops from public.ussd_sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(hops, 7);
}

#[tokio::test]
async fn a_session_in_process_registers_a_new_number() {
    let db = TestDb::new().await;
    let args = [
        "--database-url",
        &db.url,
        "--jwt-secret",
        TEST_JWT_SECRET,
        "simulate",
        "ussd",
        "--phone",
        "+254799000333",
    ]
    .map(String::from)
    .to_vec();
    let output = simulate(args, "1\nAchieng Auma\n1357\n1357\n").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("> You are registered.\n1. My chamas"), "{out}");
    assert!(
        out.ends_with("[input closed; the session times out at the telco]\n"),
        "{out}"
    );
    let name: String =
        sqlx::query_scalar("select first_name from public.users where phone = '+254799000333'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(name, "Achieng");
}
