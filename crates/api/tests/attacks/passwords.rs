//! Password guessing (issue 29, item 6). Before: 150 tries per 5 minutes per account, counted
//! together with successful sign-ins, and once tripped the owner was locked out as well as the
//! guesser. Now wrong passwords alone count, per account and address (5) and per account (20),
//! with a doubling wait; the owner's known device and refreshes are never held back.
//!
//! The server trusts `X-Forwarded-For` here, so each request can come "from" any address.

use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

const CHEBET: &str = "chebet.langat@example.co.ke";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
const RIGHT: &str = "password123";
const ATTACKER: &str = "203.0.113.7";
const OWNER: &str = "198.51.100.4";
/// What Chebet's app generated once and sends with every sign-in.
const CHEBET_PHONE: &str = "3f6c1c2e-9a41-4a8e-b0f1-6f1d2c7e9a10";

async fn demo_app(adjust: impl FnOnce(&mut pesachama_api::ServerConfig)) -> TestApp {
    let mut config = TestApp::config();
    config.auth.trusted_proxy_header = Some("x-forwarded-for".to_owned());
    adjust(&mut config);
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

/// A password grant for Chebet from `ip`, with `device` as `X-Device-Id` when given.
async fn sign_in(app: &TestApp, ip: &str, password: &str, device: Option<&str>) -> Answer {
    let mut request = app
        .auth(Method::POST, "/token?grant_type=password")
        .header("x-forwarded-for", ip)
        .json(&json!({ "email": CHEBET, "password": password }));
    if let Some(device) = device {
        request = request.header("x-device-id", device);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

#[tokio::test]
async fn twenty_wrong_passwords_from_one_address_lock_out_neither_the_owner_nor_her_phone() {
    let app = demo_app(|_| {}).await;
    // Chebet signed in on her phone some day, from her carrier's shared address.
    let first = sign_in(&app, ATTACKER, RIGHT, Some(CHEBET_PHONE)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let refresh_token = first.body["refresh_token"].as_str().unwrap().to_owned();

    // Someone behind the same address guesses.
    let mut answers = Vec::new();
    for guess in 0..20 {
        answers.push(sign_in(&app, ATTACKER, &format!("guess-{guess}"), None).await);
    }
    assert!(
        answers[..5].iter().all(|a| a.status == 400),
        "five are heard"
    );
    for answer in &answers[5..] {
        assert_eq!(answer.status, 429, "then the guesser waits");
        assert_eq!(answer.body["code"], "over_request_rate_limit");
        assert!(answer.retry_after.is_some_and(|s| (1..=30).contains(&s)));
    }
    // The right password does not help the guesser while the wait lasts.
    assert_eq!(sign_in(&app, ATTACKER, RIGHT, None).await.status, 429);

    // Chebet, from another address, signs in; from the same address on her phone too.
    assert_eq!(sign_in(&app, OWNER, RIGHT, None).await.status, 200);
    let phone = sign_in(&app, ATTACKER, RIGHT, Some(CHEBET_PHONE)).await;
    assert_eq!(phone.status, 200, "{}", phone.body);
    // Her app refreshing its session from that address is never held back.
    let refreshed = app
        .auth(Method::POST, "/token?grant_type=refresh_token")
        .header("x-forwarded-for", ATTACKER)
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);

    // Every wrong password is in the audit log, with the count; throttled tries were not
    // checked, so not counted.
    let failures: Vec<Value> = sqlx::query_scalar(
        "select metadata from public.audit_logs where action = 'auth.login_failed'
          and actor_id = $1::uuid order by id",
    )
    .bind(CHEBET_ID)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(failures.len(), 5);
    assert_eq!(failures[4]["failures"], 5);
    assert_eq!(failures[4]["ip"], ATTACKER);
}

#[tokio::test]
async fn the_wait_after_failures_doubles_and_a_success_clears_it() {
    let app = demo_app(|config| config.auth.password_failures.backoff_seconds = 1).await;
    for guess in 0..5 {
        let answer = sign_in(&app, ATTACKER, &format!("guess-{guess}"), None).await;
        assert_eq!(answer.status, 400);
    }
    let waiting = sign_in(&app, ATTACKER, "guess-5", None).await;
    assert_eq!((waiting.status, waiting.retry_after), (429, Some(1)));

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(sign_in(&app, ATTACKER, "guess-6", None).await.status, 400);
    let waiting = sign_in(&app, ATTACKER, "guess-7", None).await;
    assert_eq!(
        (waiting.status, waiting.retry_after),
        (429, Some(2)),
        "doubled"
    );

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(sign_in(&app, ATTACKER, RIGHT, None).await.status, 200);
    assert_eq!(
        sign_in(&app, ATTACKER, "guess-8", None).await.status,
        400,
        "a success starts the count again"
    );
}

#[tokio::test]
async fn guessing_from_many_addresses_waits_too_but_not_the_owners_phone() {
    let app = demo_app(|_| {}).await;
    assert_eq!(
        sign_in(&app, OWNER, RIGHT, Some(CHEBET_PHONE)).await.status,
        200
    );
    // Four guesses from each of five addresses: no address reaches its own limit.
    for address in 1..=5 {
        for guess in 0..4 {
            let ip = format!("192.0.2.{address}");
            let answer = sign_in(&app, &ip, &format!("guess-{address}-{guess}"), None).await;
            assert_eq!(answer.status, 400);
        }
    }
    let next = sign_in(&app, "192.0.2.99", "guess-next", None).await;
    assert_eq!(
        next.status, 429,
        "twenty failures for the account: it waits"
    );
    assert_eq!(
        sign_in(&app, OWNER, RIGHT, Some(CHEBET_PHONE)).await.status,
        200
    );
}

#[tokio::test]
async fn successful_sign_ins_do_not_count_against_the_account() {
    // A low request limit per address, to show successes no longer fill a per-account bucket.
    let app = demo_app(|config| config.auth.rate_limits.token = 10).await;
    for address in 1..=15 {
        let answer = sign_in(&app, &format!("192.0.2.{address}"), RIGHT, None).await;
        assert_eq!(answer.status, 200, "sign-in {address}: {}", answer.body);
    }
    // The per-address limit still holds, higher and apart.
    let mut last = 0;
    for _ in 0..11 {
        last = sign_in(&app, OWNER, RIGHT, None).await.status;
    }
    assert_eq!(last, 429);
}
