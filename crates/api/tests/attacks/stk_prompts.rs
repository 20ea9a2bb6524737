//! STK prompt bombing: a member asks for M-Pesa PIN prompts to a phone that is not theirs (a
//! payment from it would be credited to them), or for more prompts than anyone needs. Prompts go
//! only to the member's own verified number (USSD: the phone that dialled), at most 5 per
//! 10 minutes per member and per phone, and the rule lives in the SQL function the app, the
//! Data API's `rpc` and USSD all meet. Nothing refused is queued.

use crate::ussd_common::Gateway;
use pesachama_store::rls::{DbRole, begin_as};
use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const CHEBET: &str = "chebet.langat@example.co.ke";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
const CHEBET_PHONE: &str = "+254115345009";
/// Umoja's chairperson: a member's phone that is not Chebet's.
const CHAIR_ID: &str = "5eed0000-0000-4000-8000-000000000001";
const CHAIR_PHONE: &str = "+254712345001";
/// A number nobody in the demo data has.
const STRANGER_PHONE: &str = "+254799000111";

/// The app with M-Pesa configured (prompts are queued, never sent), on the demo data.
async fn app() -> TestApp {
    let config = TestApp::with_queued_mpesa(TestApp::config());
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

/// Prompts queued: payment requests and their STK jobs.
async fn queued(app: &TestApp) -> (i64, i64) {
    (
        count(app, "select count(*) from public.payment_requests").await,
        count(
            app,
            "select count(*) from internal.outbox where topic = 'mpesa.stk_push'",
        )
        .await,
    )
}

async fn contribute(app: &TestApp, token: &str, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/chamas/{UMOJA}/contributions/mpesa")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Chebet's access token claims, as PostgREST would set them.
fn chebet_claims() -> Value {
    json!({
        "sub": CHEBET_ID, "role": "authenticated", "aud": "authenticated",
        "phone": CHEBET_PHONE.trim_start_matches('+'), "aal": "aal1",
        "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
    })
}

/// `rpc/start_mpesa_contribution` as Chebet through the Data API: the SQLSTATE of a refusal.
async fn rpc_as_chebet(
    app: &TestApp,
    amount: i64,
    phone: Option<&str>,
    key: &str,
) -> Option<String> {
    let mut tx = begin_as(&app.db.pool, DbRole::Authenticated, &chebet_claims())
        .await
        .unwrap();
    let result = sqlx::query("select public.start_mpesa_contribution($1::uuid, $2, $3, $4, $5)")
        .bind(UMOJA)
        .bind(amount)
        .bind(phone)
        .bind(key)
        .bind(format!("hash-{key}"))
        .execute(&mut *tx)
        .await;
    match result {
        Ok(_) => {
            tx.commit().await.unwrap();
            None
        }
        Err(err) => Some(
            err.as_database_error()
                .and_then(|db| db.code())
                .map(|code| code.into_owned())
                .unwrap_or_else(|| err.to_string()),
        ),
    }
}

#[tokio::test]
async fn a_member_cannot_send_a_prompt_to_a_strangers_or_another_members_phone() {
    let app = app().await;
    let token = app.demo_token(CHEBET).await;
    for (key, phone) in [
        ("stranger", STRANGER_PHONE),
        ("chair", CHAIR_PHONE),
        ("local", "0799000111"),
    ] {
        let (status, body) = contribute(
            &app,
            &token,
            key,
            json!({ "amount": 50_000, "phone": phone }),
        )
        .await;
        assert_eq!(status, 422, "{phone}: {body}");
        assert_eq!(body["error"]["details"]["field"], "phone", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("your own verified number"),
            "{body}"
        );
    }
    assert_eq!(queued(&app).await, (0, 0));

    // Her own number, in any spelling or left out, still gets its prompt.
    let (status, body) = contribute(
        &app,
        &token,
        "own",
        json!({ "amount": 50_000, "phone": "0115345009" }),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["payment_request"]["phone"], CHEBET_PHONE);
    let (status, body) = contribute(&app, &token, "default", json!({ "amount": 50_000 })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["payment_request"]["phone"], CHEBET_PHONE);
    assert_eq!(queued(&app).await, (2, 2));
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_member_without_a_verified_phone_is_told_to_verify_one() {
    let app = app().await;
    let token = app.demo_token(CHEBET).await;
    // The profile still has the number; only a confirmed number counts.
    sqlx::query("update auth.users set phone_confirmed_at = null where id = $1::uuid")
        .bind(CHEBET_ID)
        .execute(&app.db.pool)
        .await
        .unwrap();
    for (key, body) in [
        ("unverified-1", json!({ "amount": 50_000 })),
        (
            "unverified-2",
            json!({ "amount": 50_000, "phone": CHEBET_PHONE }),
        ),
    ] {
        let (status, answer) = contribute(&app, &token, key, body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["details"]["field"], "phone", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("verify your phone number"),
            "{answer}"
        );
    }
    assert_eq!(queued(&app).await, (0, 0));
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_data_api_rpc_prompts_no_other_phone_and_keeps_the_amount_rules() {
    let app = app().await;
    // Straight to PostgREST's rpc, past the API's own checks.
    assert_eq!(
        rpc_as_chebet(&app, 50_000, Some(STRANGER_PHONE), "rpc-stranger")
            .await
            .as_deref(),
        Some("PX422")
    );
    assert_eq!(
        rpc_as_chebet(&app, 50_000, Some(CHAIR_PHONE), "rpc-chair")
            .await
            .as_deref(),
        Some("PX422")
    );
    // The ceiling the app had and the rpc did not: KES 250,000.
    assert_eq!(
        rpc_as_chebet(&app, 30_000_000, None, "rpc-huge")
            .await
            .as_deref(),
        Some("PX422")
    );
    assert_eq!(
        rpc_as_chebet(&app, 50_050, None, "rpc-cents")
            .await
            .as_deref(),
        Some("PX422")
    );
    assert_eq!(queued(&app).await, (0, 0));
    // Her own verified phone works through the rpc too.
    assert_eq!(rpc_as_chebet(&app, 50_000, None, "rpc-own").await, None);
    assert_eq!(
        rpc_as_chebet(&app, 50_000, Some(CHEBET_PHONE), "rpc-own-2").await,
        None
    );
    assert_eq!(queued(&app).await, (2, 2));
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_sixth_prompt_in_ten_minutes_is_refused_with_429_on_every_channel() {
    let app = app().await;
    let token = app.demo_token(CHEBET).await;
    for i in 0..5 {
        let (status, body) = contribute(
            &app,
            &token,
            &format!("bomb-{i}"),
            json!({ "amount": 10_000 }),
        )
        .await;
        assert_eq!(status, 202, "prompt {i}: {body}");
    }
    let (status, body) = contribute(&app, &token, "bomb-5", json!({ "amount": 10_000 })).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 5 in 10 minutes"),
        "{body}"
    );
    assert_eq!(queued(&app).await, (5, 5));

    // A retry of an earlier request is its stored answer, not a new prompt: still fine.
    let (status, _) = contribute(&app, &token, "bomb-0", json!({ "amount": 10_000 })).await;
    assert_eq!(status, 202);
    // The Data API meets the same limit...
    assert_eq!(
        rpc_as_chebet(&app, 10_000, None, "rpc-bomb")
            .await
            .as_deref(),
        Some("PX429")
    );
    // ...and so does USSD, from the same phone.
    let (status, body) = app
        .call(
            Method::PUT,
            &token,
            "/auth/pin",
            Some(json!({ "pin": "4321" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let answers = Gateway::of(&app)
        .dial(CHEBET_PHONE, &["2", "2", "1", "4321"])
        .await;
    assert!(
        answers
            .last()
            .unwrap()
            .starts_with("END Too many M-Pesa prompts"),
        "{answers:?}"
    );
    assert_eq!(queued(&app).await, (5, 5));

    // Ten minutes later there is room again.
    sqlx::query(
        "update public.payment_requests set created_at = created_at - interval '10 minutes'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let (status, body) = contribute(&app, &token, "later", json!({ "amount": 10_000 })).await;
    assert_eq!(status, 202, "{body}");
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_phone_that_had_five_prompts_gets_no_sixth_whoever_asks() {
    let app = app().await;
    // Five prompts to Chebet's phone in the last minutes, asked for by someone else (as the
    // old rules allowed).
    sqlx::query(
        "insert into public.payment_requests (chama_id, user_id, phone, amount, status)
         select $1::uuid, $2::uuid, $3, 10000, 'failed' from generate_series(1, 5)",
    )
    .bind(UMOJA)
    .bind(CHAIR_ID)
    .bind(CHEBET_PHONE)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let token = app.demo_token(CHEBET).await;
    let (status, body) = contribute(&app, &token, "sixth", json!({ "amount": 10_000 })).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(queued(&app).await, (5, 0));
    app.db.assert_ledger_balanced().await;
}
