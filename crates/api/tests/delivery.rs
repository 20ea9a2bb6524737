//! The outbox worker with the local mailbox: codes reach the file once, failures retry and
//! end dead, and two workers never deliver the same message twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_api::delivery::{LocalMailbox, Worker};
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

fn worker(db: &TestDb, path: std::path::PathBuf) -> Worker {
    let mut worker = Worker::new(db.pool.clone());
    worker.mailbox = Some(LocalMailbox { path });
    worker
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_recovery_code_reaches_the_local_mailbox_once() {
    let app = TestApp::spawn().await;
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": "wekesa@example.co.ke", "password": "tembo-na-twiga-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 200);
    let recover = app
        .auth(Method::POST, "/recover")
        .json(&json!({ "email": "wekesa@example.co.ke" }))
        .send()
        .await
        .unwrap();
    assert_eq!(recover.status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.jsonl");
    let worker = worker(&app.db, path.clone());
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(worker.run_once().await.unwrap(), 0, "delivered once");

    let delivered = lines(&path);
    assert_eq!(delivered.len(), 1);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the mailbox holds codes: its owner's only"
    );
    assert_eq!(delivered[0]["topic"], "email");
    assert_eq!(delivered[0]["message"]["to"], "wekesa@example.co.ke");
    let code = delivered[0]["message"]["code"].as_str().unwrap().to_owned();

    // The code in the mailbox is the one that works.
    let verified = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "recovery", "email": "wekesa@example.co.ke", "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let status: String = sqlx::query_scalar("select status from internal.outbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "done");
}

#[tokio::test]
async fn a_failing_delivery_backs_off_then_ends_dead() {
    let db = TestDb::new().await;
    sqlx::query("insert into internal.outbox (topic, payload, max_attempts) values ('sms', '{\"to\": \"+254712345678\", \"message\": \"hello\"}', 2)")
        .execute(&db.pool)
        .await
        .unwrap();
    // A folder where the file should be: every write fails.
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&db, dir.path().to_path_buf());

    assert_eq!(worker.run_once().await.unwrap(), 1);
    let (status, attempts, error, later): (String, i32, Option<String>, bool) = sqlx::query_as(
        "select status, attempts, last_error, run_after > now() from internal.outbox",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts, later), ("pending", 1, true));
    assert!(error.is_some());
    assert_eq!(worker.run_once().await.unwrap(), 0, "not due yet");

    sqlx::query("update internal.outbox set run_after = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let status: String = sqlx::query_scalar("select status from internal.outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "dead");
}

#[tokio::test]
async fn two_workers_never_deliver_the_same_message() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into internal.outbox (topic, payload)
         select 'sms', jsonb_build_object('to', '+254712345678', 'message', 'message ' || n)
           from generate_series(1, 300) n",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.jsonl");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let worker = worker(&db, path.clone());
        tasks.push(tokio::spawn(async move {
            let mut handled = 0;
            loop {
                let n = worker.run_once().await.unwrap();
                if n == 0 {
                    return handled;
                }
                handled += n;
            }
        }));
    }
    let mut handled = 0;
    for task in tasks {
        handled += task.await.unwrap();
    }
    assert_eq!(handled, 300);
    let delivered = lines(&path);
    let mut ids: Vec<i64> = delivered
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert_eq!(delivered.len(), 300);
}

#[tokio::test]
async fn the_sweep_expires_stale_requests_invitations_ussd_sessions_and_quiet_throttles_only() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    // The demo's pending request, made stale; a fresh invitation and a stale one.
    sqlx::query("update public.disbursement_requests set expires_at = now() - interval '1 minute', created_at = now() - interval '15 days'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into public.chama_invitations (chama_id, phone, expires_at, created_at)
         values ('c4a3a000-0000-4000-8000-000000000001', '+254799000222', now() + interval '1 day', now()),
                ('c4a3a000-0000-4000-8000-000000000001', '+254799000333', now() - interval '1 day', now() - interval '31 days')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into public.ussd_sessions (session_id, phone_number, created_at, last_activity_at, expires_at)
         values ('ATUid_fresh', '+254712345001', now(), now(), now() + interval '3 minutes'),
                ('ATUid_stale', '+254712345001', now() - interval '5 minutes', now() - interval '5 minutes',
                 now() - interval '2 minutes')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Throttle counters: quiet for a week (forgotten), recent, and old but still locked (kept).
    sqlx::raw_sql(
        "insert into internal.login_failures (bucket, failures, last_failure_at, locked_until) values
           ('old', 3, now() - interval '8 days', null),
           ('recent', 3, now() - interval '1 hour', null),
           ('locked', 30, now() - interval '8 days', now() + interval '1 hour');
         insert into internal.ussd_pin_tries (phone, source, failures, last_failed_at) values
           ('+254712345001', '10.0.0.1', 2, now() - interval '9 days'),
           ('+254712345001', '10.0.0.2', 2, now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let swept = pesachama_api::delivery::sweep_once(&db.pool).await.unwrap();
    let kept: Vec<String> =
        sqlx::query_scalar("select bucket from internal.login_failures order by bucket")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(kept, ["locked", "recent"]);
    let sources: Vec<String> =
        sqlx::query_scalar("select source from internal.ussd_pin_tries order by source")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(sources, ["10.0.0.2"]);
    assert_eq!(
        swept,
        pesachama_api::delivery::Swept {
            requests: 1,
            invitations: 1,
            reminders: 0,
            ussd_sessions: 1,
            throttles: 1,
        }
    );
    assert_eq!(
        pesachama_api::delivery::sweep_once(&db.pool).await.unwrap(),
        pesachama_api::delivery::Swept::default()
    );
    let statuses: Vec<String> =
        sqlx::query_scalar("select status from public.chama_invitations order by phone")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(statuses, ["pending", "expired"]);
    let request: String = sqlx::query_scalar("select status from public.disbursement_requests")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(request, "expired");
}

/// A local Africa's Talking: records what it is sent and answers as the real one does.
async fn fake_africas_talking() -> (
    pesachama_testkit::fake::FakeService,
    std::sync::Arc<std::sync::Mutex<Vec<(String, std::collections::HashMap<String, String>)>>>,
) {
    use axum::extract::Form;
    use axum::http::{HeaderMap, StatusCode};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = axum::Router::new().route(
        "/version1/messaging",
        axum::routing::post(
            move |headers: HeaderMap,
                  Form(form): Form<std::collections::HashMap<String, String>>| {
                let log = log.clone();
                async move {
                    let key = headers
                        .get("apiKey")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let to = form.get("to").cloned().unwrap_or_default();
                    log.lock().unwrap().push((key, form));
                    let (code, status) = match to.as_str() {
                        "+254799000500" => {
                            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({})));
                        }
                        "+254799000403" => (403, "InvalidPhoneNumber"),
                        _ => (101, "Success"),
                    };
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({ "SMSMessageData": {
                            "Message": "Sent to 1/1 Total Cost: KES 0.8000",
                            "Recipients": [{ "statusCode": code, "number": to, "status": status,
                                             "cost": "KES 0.8000", "messageId": "ATXid_test" }]
                        }})),
                    )
                }
            },
        ),
    );
    (
        pesachama_testkit::fake::FakeService::start(router).await,
        seen,
    )
}

#[tokio::test]
async fn sms_go_through_africas_talking_with_retries_and_dead_letters() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into internal.outbox (topic, payload) values
           ('sms', '{\"to\": \"+254712345678\", \"message\": \"Your PesaChama code is 123456\"}'),
           ('sms', '{\"to\": \"+254799000403\", \"message\": \"to a number that does not exist\"}'),
           ('sms', '{\"to\": \"+254799000500\", \"message\": \"while the provider is down\"}'),
           ('email', '{\"to\": \"a@example.co.ke\", \"code\": \"1\"}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (at, seen) = fake_africas_talking().await;
    let mut worker = Worker::new(db.pool.clone());
    worker.sms = Some(pesachama_api::sms::AfricasTalking::new(
        at.url(""),
        "pesachama",
        "at-test-key",
        Some("PESACHAMA".to_owned()),
    ));
    assert_eq!(
        worker.run_once().await.unwrap(),
        3,
        "SMS only: no channel takes email here"
    );

    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    let first = sent
        .iter()
        .find(|(_, f)| f["to"] == "+254712345678")
        .unwrap();
    assert_eq!(first.0, "at-test-key");
    assert_eq!(first.1["username"], "pesachama");
    assert_eq!(first.1["from"], "PESACHAMA");
    assert_eq!(first.1["message"], "Your PesaChama code is 123456");

    let states: Vec<(String, String, i32)> =
        sqlx::query_as("select payload->>'to', status, attempts from internal.outbox order by id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        states,
        [
            ("+254712345678".to_owned(), "done".to_owned(), 1),
            ("+254799000403".to_owned(), "dead".to_owned(), 1),
            ("+254799000500".to_owned(), "pending".to_owned(), 1),
            ("a@example.co.ke".to_owned(), "pending".to_owned(), 0),
        ]
    );
}
