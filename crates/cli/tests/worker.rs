//! `pesachama worker`: the outbox delivered by a process of its own, stopped cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::pesachama;
use pesachama_testkit::TestDb;

#[tokio::test]
async fn a_worker_process_delivers_the_outbox_and_stops_on_sigterm() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into internal.outbox (topic, payload) values
           ('email', '{\"to\": \"otieno@example.co.ke\", \"template\": \"otp\", \"code\": \"918273\"}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mailbox = dir.path().join("mailbox.jsonl");
    let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
    let mut child = pesachama()
        .args(["--database-url", &db.url, "worker", "--mailbox"])
        .arg(&mailbox)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    // The message is written to the mailbox first and marked done after: wait for both.
    let started = Instant::now();
    let (delivered, status) = loop {
        let text = std::fs::read_to_string(&mailbox).unwrap_or_default();
        let status: String = sqlx::query_scalar("select status from internal.outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if (text.contains("918273") && status == "done")
            || started.elapsed() > Duration::from_secs(30)
        {
            break (text, status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the worker did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
    assert!(delivered.contains("otieno@example.co.ke"), "{log}");
    assert_eq!(status, "done", "{log}");
    assert!(exit.success(), "{exit:?}: {log}");
}
