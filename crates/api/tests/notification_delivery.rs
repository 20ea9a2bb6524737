//! Notifications leaving the building: push through a local FCM (HTTP v1, service-account
//! OAuth), email through a local SMTP server, SMS for members without a device, and meeting
//! reminders from the sweeper. The fakes speak the real wire formats over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path};
use axum::http::{HeaderMap, StatusCode};
use pesachama_api::delivery::Worker;
use pesachama_api::email::Smtp;
use pesachama_api::push::{Fcm, ServiceAccount};
use pesachama_testkit::fake::FakeService;
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
const NAFULA_ID: &str = "5eed0000-0000-4000-8000-000000000007";
const PRIVATE_KEY: &str = include_str!("fixtures/fcm-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/fcm-test-key.pub.pem");
const ACCESS_TOKEN: &str = "ya29.fake-access-token";

#[derive(Debug, Default)]
struct FcmLog {
    token_exchanges: usize,
    refused_assertions: usize,
    /// (authorization header, body) of every send.
    sends: Vec<(String, Value)>,
    flaky_failures: usize,
}

/// A local FCM: Google's token endpoint (checks the RS256 assertion with the public key) and
/// `messages:send` (tokens starting `dead` are UNREGISTERED; `flaky` fails once with 503).
async fn fake_fcm() -> (FakeService, Arc<Mutex<FcmLog>>) {
    let log = Arc::new(Mutex::new(FcmLog::default()));
    let token_log = log.clone();
    let send_log = log.clone();
    let router = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(
                move |Form(form): Form<std::collections::HashMap<String, String>>| {
                    let log = token_log.clone();
                    async move {
                        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes())
                            .unwrap();
                        let mut validation =
                            jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                        validation.validate_aud = false;
                        let claims = jsonwebtoken::decode::<Value>(
                            form.get("assertion").map(String::as_str).unwrap_or_default(),
                            &key,
                            &validation,
                        )
                        .map(|data| data.claims);
                        let good = form.get("grant_type").map(String::as_str)
                            == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                            && claims.as_ref().is_ok_and(|c| {
                                c["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
                                    && c["iss"] == "pesachama@test-project.iam.gserviceaccount.com"
                                    && c["aud"].as_str().unwrap_or_default().ends_with("/token")
                            });
                        let mut log = log.lock().unwrap();
                        if !good {
                            log.refused_assertions += 1;
                            return (
                                StatusCode::BAD_REQUEST,
                                axum::Json(json!({ "error": "invalid_grant" })),
                            );
                        }
                        log.token_exchanges += 1;
                        (
                            StatusCode::OK,
                            axum::Json(json!({ "access_token": ACCESS_TOKEN, "expires_in": 3599,
                                               "token_type": "Bearer" })),
                        )
                    }
                },
            ),
        )
        .route(
            "/v1/projects/{project}/messages:send",
            axum::routing::post(
                move |Path(project): Path<String>, headers: HeaderMap, body: axum::Json<Value>| {
                    let log = send_log.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let token = body.0["message"]["token"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        let mut log = log.lock().unwrap();
                        log.sends.push((auth.clone(), body.0.clone()));
                        if auth != format!("Bearer {ACCESS_TOKEN}") || project != "test-project" {
                            return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                        }
                        if token.starts_with("dead") {
                            return (
                                StatusCode::NOT_FOUND,
                                axum::Json(json!({ "error": {
                                    "code": 404, "message": "Requested entity was not found.",
                                    "status": "NOT_FOUND",
                                    "details": [{
                                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                        "errorCode": "UNREGISTERED" }] } })),
                            );
                        }
                        if token.starts_with("flaky") && log.flaky_failures == 0 {
                            log.flaky_failures += 1;
                            return (
                                StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(json!({ "error": { "code": 503, "status": "UNAVAILABLE" } })),
                            );
                        }
                        let n = log.sends.len();
                        (
                            StatusCode::OK,
                            axum::Json(json!({ "name": format!("projects/test-project/messages/{n}") })),
                        )
                    }
                },
            ),
        );
    (FakeService::start(router).await, log)
}

fn fcm(fake: &FakeService) -> Fcm {
    let account = ServiceAccount::from_json(
        &json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key-1",
            "private_key": PRIVATE_KEY,
            "client_email": "pesachama@test-project.iam.gserviceaccount.com",
            "token_uri": fake.url("/token"),
        })
        .to_string(),
    )
    .unwrap();
    Fcm::new(fake.url(""), account).unwrap()
}

async fn demo() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    // What the seed itself queued is not what these tests are about.
    sqlx::query("delete from internal.outbox")
        .execute(&app.db.pool)
        .await
        .unwrap();
    app
}

async fn contribute_for(app: &TestApp, member: &str, key: &str) {
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let response = app
        .client
        .post(app.url("/transactions"))
        .bearer_auth(&treasurer)
        .header("Idempotency-Key", key)
        .json(&json!({ "chama_id": UMOJA, "member_id": member, "amount": 50000, "payment_method": "cash" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn outbox(db: &TestDb) -> Vec<(String, String, Value)> {
    sqlx::query_as("select topic, status, payload from internal.outbox order by id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// Makes every pending message due now (instead of waiting out the backoff).
async fn make_due(db: &TestDb) {
    sqlx::query("update internal.outbox set run_after = now(), locked_until = null where status = 'pending'")
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_notification_reaches_every_device_through_fcm_and_dead_tokens_are_forgotten() {
    let app = demo().await;
    for (token, platform) in [
        ("good-device-token-0001", "android"),
        ("dead-device-token-0002", "ios"),
        ("flaky-device-token-0003", "android"),
    ] {
        sqlx::query(
            "insert into public.device_tokens (user_id, token, platform) values ($1::uuid, $2, $3)",
        )
        .bind(CHEBET_ID)
        .bind(token)
        .bind(platform)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    contribute_for(&app, CHEBET_ID, "push-1").await;
    let queued = outbox(&app.db).await;
    assert_eq!(
        queued.iter().filter(|(topic, ..)| topic == "push").count(),
        3,
        "one push per device: {queued:?}"
    );
    assert!(
        !queued.iter().any(|(topic, ..)| topic == "sms"),
        "a member with devices is not sent an SMS"
    );

    let (fake, log) = fake_fcm().await;
    let mut worker = Worker::new(app.db.pool.clone());
    worker.push = Some(Arc::new(fcm(&fake)));
    assert_eq!(worker.run_once().await.unwrap(), 3);

    {
        let log = log.lock().unwrap();
        assert_eq!(log.refused_assertions, 0);
        assert_eq!(log.token_exchanges, 1, "the access token is cached");
        assert_eq!(log.sends.len(), 3);
        let good = log
            .sends
            .iter()
            .find(|(_, body)| body["message"]["token"] == "good-device-token-0001")
            .unwrap();
        assert_eq!(good.0, format!("Bearer {ACCESS_TOKEN}"));
        let message = &good.1["message"];
        assert_eq!(message["notification"]["title"], "Contribution received");
        assert!(
            message["notification"]["body"]
                .as_str()
                .unwrap()
                .contains("500.00")
        );
        assert_eq!(message["data"]["chama_id"], UMOJA);
        assert_eq!(message["data"]["type"], "transaction");
        assert!(
            message["data"]
                .as_object()
                .unwrap()
                .values()
                .all(Value::is_string),
            "FCM data values are strings: {message}"
        );
    }
    let tokens: Vec<String> = sqlx::query_scalar(
        "select token from public.device_tokens where user_id = $1::uuid order by token",
    )
    .bind(CHEBET_ID)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        tokens,
        ["flaky-device-token-0003", "good-device-token-0001"],
        "the dead token is forgotten"
    );
    let statuses: Vec<String> = outbox(&app.db)
        .await
        .into_iter()
        .map(|(_, status, _)| status)
        .collect();
    assert_eq!(statuses, ["done", "dead", "pending"], "{statuses:?}");

    // The flaky device is retried later and gets the message once.
    make_due(&app.db).await;
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(log.lock().unwrap().sends.len(), 4);
    let sent_via: Vec<String> = sqlx::query_scalar(
        "select unnest(sent_via) from public.notifications where user_id = $1::uuid and title = 'Contribution received' \
         order by created_at desc limit 1",
    )
    .bind(CHEBET_ID)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(sent_via, ["push"]);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_member_without_a_device_is_told_by_sms_through_the_mailbox() {
    let app = demo().await;
    contribute_for(&app, NAFULA_ID, "sms-1").await;
    let queued = outbox(&app.db).await;
    let sms: Vec<&Value> = queued
        .iter()
        .filter(|(topic, ..)| topic == "sms")
        .map(|(_, _, payload)| payload)
        .collect();
    assert_eq!(sms.len(), 1, "{queued:?}");
    assert_eq!(sms[0]["to"], "+254720345007");
    assert!(
        sms[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Contribution received: ")
    );

    let dir = tempfile::tempdir().unwrap();
    let mut worker = Worker::new(app.db.pool.clone());
    worker.mailbox = Some(pesachama_api::delivery::LocalMailbox {
        path: dir.path().join("mailbox.jsonl"),
    });
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let sent_via: Vec<String> =
        sqlx::query_scalar("select unnest(sent_via) from public.notifications where id = $1::uuid")
            .bind(sms[0]["notification_id"].as_str().unwrap())
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(sent_via, ["sms"]);
    app.db.assert_ledger_balanced().await;
}

/// Everything a local SMTP server was given, one entry per message.
type Mail = Arc<Mutex<Vec<(String, Vec<String>, String)>>>;

/// A local SMTP server (RFC 5321 without extensions): `refused@` recipients get a permanent
/// 550, `later@` recipients a transient 451.
async fn fake_smtp() -> (std::net::SocketAddr, Mail) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mail: Mail = Arc::default();
    let store = mail.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write
                    .write_all(b"220 fake.smtp ESMTP ready\r\n")
                    .await
                    .unwrap();
                let (mut from, mut to, mut data, mut in_data) =
                    (String::new(), Vec::new(), String::new(), false);
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            store.lock().unwrap().push((
                                std::mem::take(&mut from),
                                std::mem::take(&mut to),
                                std::mem::take(&mut data),
                            ));
                            write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 fake.smtp\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = line[10..].trim().to_owned();
                        b"250 2.1.0 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        let rcpt = line[8..].trim().to_owned();
                        if rcpt.contains("refused@") {
                            b"550 5.1.1 no such mailbox\r\n"
                        } else if rcpt.contains("later@") {
                            b"451 4.3.0 try again later\r\n"
                        } else {
                            to.push(rcpt);
                            b"250 2.1.5 ok\r\n"
                        }
                    } else if upper == "DATA" {
                        in_data = true;
                        b"354 end with <CRLF>.<CRLF>\r\n"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 ok\r\n"
                    } else {
                        b"502 5.5.2 not implemented\r\n"
                    };
                    write.write_all(answer).await.unwrap();
                }
            });
        }
    });
    (address, mail)
}

#[tokio::test]
async fn email_goes_through_smtp_and_a_refused_address_is_dead_at_once() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into internal.outbox (topic, payload) values
           ('email', '{\"to\": \"wanjiku@example.co.ke\", \"template\": \"recovery\", \"code\": \"482913\"}'),
           ('email', '{\"to\": \"refused@example.co.ke\", \"template\": \"otp\", \"code\": \"1\"}'),
           ('email', '{\"to\": \"later@example.co.ke\", \"template\": \"otp\", \"code\": \"2\"}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (address, mail) = fake_smtp().await;
    let mut worker = Worker::new(db.pool.clone());
    worker.email = Some(
        Smtp::new(
            &format!("smtp://{address}"),
            "PesaChama <no-reply@pesachama.test>",
        )
        .unwrap(),
    );
    assert_eq!(worker.run_once().await.unwrap(), 3);

    let mail = mail.lock().unwrap().clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    let (from, to, data) = &mail[0];
    assert_eq!(from, "<no-reply@pesachama.test>");
    assert_eq!(to, &["<wanjiku@example.co.ke>"]);
    assert!(
        data.contains("Subject: Reset your PesaChama password"),
        "{data}"
    );
    assert!(data.contains("Your code: 482913"), "{data}");
    let statuses: Vec<(String, i32)> =
        sqlx::query_as("select status, attempts from internal.outbox order by id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("done".to_owned(), 1),
            ("dead".to_owned(), 1),
            ("pending".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn members_are_reminded_of_a_meeting_once_a_day_ahead() {
    let app = demo().await;
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    for (title, hours) in [("Tomorrow morning", 20), ("Next week", 24 * 7)] {
        let at = chrono::Utc::now() + chrono::Duration::hours(hours);
        let (status, body) = app
            .call(
                Method::POST,
                &chair,
                &format!("/chamas/{UMOJA}/meetings"),
                Some(json!({ "title": title, "scheduled_for": at, "venue": "Church hall" })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let swept = pesachama_api::delivery::sweep_once(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(swept.reminders, 1);
    assert_eq!(
        pesachama_api::delivery::sweep_once(&app.db.pool)
            .await
            .unwrap()
            .reminders,
        0,
        "once per meeting"
    );
    let reminded: Vec<String> = sqlx::query_scalar(
        "select n.user_id::text from public.notifications n
          where n.title = 'Meeting reminder' and n.body like 'Tomorrow morning%' order by 1",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let members: Vec<String> = sqlx::query_scalar(
        "select user_id::text from public.chama_members where chama_id = $1::uuid and status = 'active' order by 1",
    )
    .bind(UMOJA)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(reminded, members, "every active member, the chair too");
}
