//! A server without Daraja settings (and without the simulator, which only `--demo` or
//! `--mpesa-simulator` starts) fails closed: every M-Pesa route answers 503
//! `mpesa_not_configured`, and nothing is stored, queued or credited, whoever asks.

use crate::ussd_common::Gateway;
use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const CHEBET: &str = "chebet.langat@example.co.ke";
const CHEBET_PHONE: &str = "+254115345009";

/// The app as `serve` builds it without any MPESA_* setting and without --demo.
async fn unconfigured() -> TestApp {
    let config = TestApp::config();
    assert!(config.mpesa.is_none());
    let app = TestApp::spawn_with(pesachama_testkit::TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// What an M-Pesa request could have left behind: payment requests, STK and payout jobs,
/// stored callbacks, M-Pesa transactions.
async fn footprint(app: &TestApp) -> [i64; 4] {
    [
        count(app, "select count(*) from public.payment_requests").await,
        count(
            app,
            "select count(*) from internal.outbox where topic like 'mpesa.%'",
        )
        .await,
        count(app, "select count(*) from internal.mpesa_callbacks").await,
        count(
            app,
            "select count(*) from public.transactions where payment_method = 'mpesa'",
        )
        .await,
    ]
}

fn assert_not_configured(status: u16, body: &Value) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "mpesa_not_configured", "{body}");
    assert_eq!(
        body["error"]["message"], "M-Pesa is not configured",
        "{body}"
    );
}

#[tokio::test]
async fn an_stk_contribution_answers_503_and_writes_nothing() {
    let app = unconfigured().await;
    let before = footprint(&app).await;
    let token = app.demo_token(CHEBET).await;
    let response = app
        .client
        .post(app.url(&format!("/chamas/{UMOJA}/contributions/mpesa")))
        .bearer_auth(&token)
        .header("idempotency-key", "no-daraja-1")
        .json(&json!({ "amount": 150_000 }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_not_configured(status, &body);
    assert_eq!(footprint(&app).await, before);
    assert_eq!(
        count(&app, "select count(*) from public.payment_requests").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from internal.outbox where topic = 'mpesa.stk_push'"
        )
        .await,
        0
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn paybill_and_payout_callbacks_answer_503_and_store_nothing() {
    let app = unconfigured().await;
    let before = footprint(&app).await;
    let balance = || async {
        count(
            &app,
            &format!("select balance from public.chamas where id = '{UMOJA}'"),
        )
        .await
    };
    let chama_before = balance().await;
    let c2b = json!({
        "TransactionType": "Pay Bill", "TransID": "FORGED0001", "TransTime": "20261201133416",
        "TransAmount": "5000.00", "BusinessShortCode": "174379", "BillRefNumber": "umoja01",
        "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
        "MSISDN": "254115345009", "FirstName": "Chebet", "MiddleName": "", "LastName": "Langat"
    });
    // Whatever token an attacker guesses, including the old fixed-simulator habit of none.
    for path in [
        "/mpesa/callbacks/anything/c2b/validation",
        "/mpesa/callbacks/anything/c2b/confirmation",
        "/mpesa/callbacks/anything/stk",
        "/mpesa/callbacks/anything/b2c/result",
    ] {
        let response = app
            .client
            .post(app.url(path))
            .json(&c2b)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_not_configured(status, &body);
    }
    assert_eq!(footprint(&app).await, before);
    assert_eq!(balance().await, chama_before);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_ussd_contribution_ends_politely_and_queues_nothing() {
    let app = unconfigured().await;
    let token = app.demo_token(CHEBET).await;
    let (status, body) = app
        .call(
            Method::PUT,
            &token,
            "/auth/pin",
            Some(json!({ "pin": "4321" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let before = footprint(&app).await;

    // Contribute → Umoja → the usual amount → PIN.
    let answers = Gateway::of(&app)
        .dial(CHEBET_PHONE, &["2", "2", "1", "4321"])
        .await;
    let last = answers.last().unwrap();
    assert!(
        last.starts_with("END M-Pesa payments are not available right now."),
        "{answers:?}"
    );
    assert_eq!(footprint(&app).await, before);
    app.db.assert_ledger_balanced().await;
}
