//! `/ussd` attacked as anyone who can reach it would: Africa's Talking signs nothing, so the
//! path token and the gateway's addresses are all that stand between a stranger and "I am
//! +2547..., show me my balance". Each test sends what the attacker would send, over HTTP.

use crate::ussd_common::form;
use pesachama_api::ServerConfig;
use pesachama_api::gate::AllowList;
use pesachama_testkit::{TEST_USSD_TOKEN, TestApp, TestDb};
use serde_json::Value;

// Wanjiku chairs Umoja in the demo data.
const WANJIKU: &str = "+254712345001";
const FORM: &str = "application/x-www-form-urlencoded";

async fn app_with(config: ServerConfig) -> TestApp {
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

/// Posts the first hop of a session for Wanjiku's number to `path`; the status and the body.
async fn dial(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", FORM)
        .body(form("ATUid_attack", WANJIKU, ""));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from public.ussd_sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn without_the_path_token_ussd_is_refused() {
    let app = app_with(TestApp::config()).await;
    let (status, body) = dial(&app, "/ussd", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(code(&body), "not_found");
    assert_eq!(sessions(&app).await, 0);
}

#[tokio::test]
async fn a_wrong_path_token_is_refused() {
    let app = app_with(TestApp::config()).await;
    let prefix = &TEST_USSD_TOKEN[..TEST_USSD_TOKEN.len() - 1];
    let longer = format!("{TEST_USSD_TOKEN}0");
    for token in ["guess", prefix, longer.as_str(), "%20"] {
        let (status, body) = dial(&app, &format!("/ussd/{token}"), &[]).await;
        assert_eq!(status, 404, "token {token:?}: {body}");
    }
    assert_eq!(sessions(&app).await, 0);
    // The right one is served (a control: the refusals above are not an accident).
    let (status, body) = dial(&app, &format!("/ussd/{TEST_USSD_TOKEN}"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("CON Welcome Wanjiku"), "{body}");
}

#[tokio::test]
async fn the_right_token_from_outside_the_gateways_addresses_is_refused() {
    let mut config = TestApp::config();
    let gate = config.ussd.as_mut().unwrap();
    gate.allowed_sources = AllowList::parse("USSD_ALLOWED_IPS", &["196.201.214.0/24"]).unwrap();
    config.auth.trusted_proxy_header = Some("x-forwarded-for".to_owned());
    let app = app_with(config).await;
    let path = format!("/ussd/{TEST_USSD_TOKEN}");

    // The token leaked; the attacker posts from their own address (loopback here).
    let (status, body) = dial(&app, &path, &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "forbidden");
    // Claiming a gateway address in the header is no better: the proxy appends the real one,
    // and only the last entry is believed.
    let (status, _) = dial(
        &app,
        &path,
        &[("x-forwarded-for", "196.201.214.10, 203.0.113.9")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(sessions(&app).await, 0);

    // The gateway, as the trusted proxy reports it, is served.
    let (status, body) = dial(&app, &path, &[("x-forwarded-for", "196.201.214.10")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("CON "), "{body}");
}

#[tokio::test]
async fn the_forwarding_header_is_not_believed_without_a_trusted_proxy() {
    let mut config = TestApp::config();
    config.ussd.as_mut().unwrap().allowed_sources =
        AllowList::parse("USSD_ALLOWED_IPS", &["196.201.214.0/24"]).unwrap();
    let app = app_with(config).await;
    let (status, _) = dial(
        &app,
        &format!("/ussd/{TEST_USSD_TOKEN}"),
        &[("x-forwarded-for", "196.201.214.10")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(sessions(&app).await, 0);
}

#[tokio::test]
async fn a_server_without_ussd_settings_answers_503_naming_them() {
    let mut config = TestApp::config();
    config.ussd = None;
    let app = app_with(config).await;
    for path in ["/ussd".to_owned(), format!("/ussd/{TEST_USSD_TOKEN}")] {
        let (status, body) = dial(&app, &path, &[]).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(code(&body), "ussd_not_configured");
        assert!(
            body.contains("USSD_CALLBACK_TOKEN") && body.contains("USSD_ALLOWED_IPS"),
            "{body}"
        );
    }
    assert_eq!(sessions(&app).await, 0);
}

/// Sets `email`'s PIN in the app.
async fn set_pin(app: &TestApp, email: &str, pin: &str) {
    let token = app.demo_token(email).await;
    let (status, body) = app
        .call(
            reqwest::Method::PUT,
            &token,
            "/auth/pin",
            Some(serde_json::json!({ "pin": pin })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn balances_and_the_next_meeting_are_not_shown_before_the_pin() {
    let app = app_with(TestApp::config()).await;
    set_pin(&app, "wanjiku.kamau@example.co.ke", "1234").await;
    let gw = crate::ussd_common::Gateway::of(&app);
    // Someone holding (or claiming) Wanjiku's number, who does not know her PIN.
    let balances = gw.dial(WANJIKU, &["1", "2", "9999"]).await;
    let meeting = gw.dial(WANJIKU, &["6", "2", "9999"]).await;
    for screen in balances.iter().chain(&meeting) {
        assert!(
            !screen.contains("KES"),
            "money shown without the PIN: {screen}"
        );
        assert!(
            !screen.contains("Monthly meeting") && !screen.contains("Hall"),
            "the meeting shown without the PIN: {screen}"
        );
    }
    assert_eq!(
        balances[2],
        "CON Chama balance: Umoja Women Group\nEnter PIN to confirm:\n0 Back"
    );
    assert!(balances[3].starts_with("CON Wrong PIN."), "{}", balances[3]);
    // With her PIN, she sees them.
    let balances = gw.dial(WANJIKU, &["1", "2", "1234"]).await;
    assert!(
        balances[3].starts_with("CON Umoja Women Group\nChama balance: KES "),
        "{}",
        balances[3]
    );
}

#[tokio::test]
async fn a_ussd_registration_does_not_make_the_number_verified() {
    let app = app_with(TestApp::config()).await;
    let gw = crate::ussd_common::Gateway::of(&app);
    // Whoever can post for a number registers it, with a PIN of their choosing...
    let phone = "+254799000555";
    let answers = gw
        .dial(phone, &["1", "Mallory Mwizi", "2468", "2468"])
        .await;
    assert!(
        answers[4].starts_with("CON You are registered."),
        "{answers:?}"
    );
    // ...but the app does not take the number as proven: no confirmation, no verified phone.
    let (phone_confirmed, confirmed, verified): (bool, bool, Option<bool>) = sqlx::query_as(
        "select u.phone_confirmed_at is not null, u.confirmed_at is not null,
                (i.identity_data ->> 'phone_verified')::boolean
           from auth.users u join auth.identities i on i.user_id = u.id
          where u.phone = '254799000555'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (phone_confirmed, confirmed, verified),
        (false, false, Some(false))
    );
    // The member still uses USSD with the PIN chosen.
    let again = gw.dial(phone, &["1"]).await;
    assert!(again[0].starts_with("CON Welcome Mallory"), "{again:?}");
}

/// The first hop and each input of a session on Chebet's number, sent as the trusted proxy
/// reports `source`; the answers.
async fn dial_from(app: &TestApp, source: &str, session: &str, inputs: &[&str]) -> Vec<String> {
    let path = format!("/ussd/{TEST_USSD_TOKEN}");
    let mut answers = Vec::new();
    let mut text = String::new();
    for (i, input) in std::iter::once(&"").chain(inputs).enumerate() {
        if i > 1 {
            text.push('*');
        }
        text.push_str(input);
        let response = app
            .client
            .post(app.url(&path))
            .header("content-type", FORM)
            .header("x-forwarded-for", source)
            .body(form(session, CHEBET_PHONE, &text))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        answers.push(response.text().await.unwrap());
    }
    answers
}

const CHEBET_PHONE: &str = "+254115345009";

#[tokio::test]
async fn three_wrong_pins_from_an_attacker_lock_out_neither_the_member_nor_the_app() {
    let mut config = TestApp::config();
    config.auth.trusted_proxy_header = Some("x-forwarded-for".to_owned());
    config.ussd.as_mut().unwrap().allowed_sources =
        AllowList::parse("USSD_ALLOWED_IPS", &["196.201.214.0/24", "203.0.113.0/24"]).unwrap();
    let app = app_with(config).await;
    set_pin(&app, "chebet.langat@example.co.ke", "1234").await;
    let attacker = "203.0.113.7";
    let member = "196.201.214.10";

    // The attacker claims Chebet's number and guesses her PIN three times (statement menu).
    let guesses = dial_from(
        &app,
        attacker,
        "ATUid_a1",
        &["3", "2", "1111", "2222", "3333"],
    )
    .await;
    assert_eq!(guesses[5], "END Too many wrong PINs. Try again in 1 min.");
    // The attacker now waits, even with the right PIN: it is not even compared.
    let again = dial_from(&app, attacker, "ATUid_a2", &["3", "2", "1234"]).await;
    assert_eq!(again[3], "END Too many wrong PINs. Try again in 1 min.");

    // Chebet, from another source, is not locked out...
    let mine = dial_from(&app, member, "ATUid_m1", &["3", "2", "1234"]).await;
    assert!(
        mine[3].starts_with("CON Umoja Women Group\nYour savings: KES "),
        "{mine:?}"
    );
    // ...nor in the app: the app's lockout never saw the USSD guesses.
    let token = app.demo_token("chebet.langat@example.co.ke").await;
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &token,
            "/auth/pin/verify",
            Some(serde_json::json!({ "pin": "1234" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (attempts, locked): (i32, bool) = sqlx::query_as(
        "select failed_attempts, locked_until is not null from internal.user_pins p
           join auth.users u on u.id = p.user_id where u.phone = '254115345009'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((attempts, locked), (0, false));

    // The guesses were counted per number and source, and audited.
    let (failures, audited): (i32, i64) = sqlx::query_as(
        "select (select failures from internal.ussd_pin_tries where source = $1),
                (select count(*) from public.audit_logs where action = 'auth.ussd_pin_failed')",
    )
    .bind(attacker)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((failures, audited), (3, 3));

    // When the wait is over, each further wrong guess doubles it.
    sqlx::query("update internal.ussd_pin_tries set blocked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let later = dial_from(&app, attacker, "ATUid_a3", &["3", "2", "4444"]).await;
    assert_eq!(later[3], "END Too many wrong PINs. Try again in 1 min.");
    let wait: f64 = sqlx::query_scalar(
        "select extract(epoch from blocked_until - now())::float8 from internal.ussd_pin_tries where source = $1",
    )
    .bind(attacker)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(
        (50.0..=60.0).contains(&wait),
        "the second wait is 60 s: {wait}"
    );
}
