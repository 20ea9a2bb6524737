//! Statements agree with the ledger to the cent, in JSON and CSV, and the audit trail is the
//! officials'.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const NAFULA_ID: &str = "5eed0000-0000-4000-8000-000000000007";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";

async fn demo() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_members_statement_closes_at_their_contributed_total_and_reversals_show() {
    let app = demo().await;
    let nafula = app
        .sign_in(json!({ "phone": "0720345007", "password": "password123" }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let treasurer = app
        .sign_in(json!({ "email": "akinyi.achieng@example.co.ke", "password": "password123" }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // One more contribution, then reversed: both appear, and the total is back where it was.
    let recorded: Value = app
        .client
        .post(app.url("/transactions"))
        .bearer_auth(&treasurer)
        .header("idempotency-key", "st-1")
        .json(&json!({ "chama_id": UMOJA, "member_id": NAFULA_ID, "amount": 12_345, "payment_method": "cash", "reference": "R,\"1\"" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reversed = app
        .client
        .post(app.url(&format!(
            "/transactions/{}/reverse",
            recorded["id"].as_str().unwrap()
        )))
        .bearer_auth(&treasurer)
        .header("idempotency-key", "st-2")
        .json(&json!({ "reason": "Entered twice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reversed.status(), 201);

    let statement: Value = get(&app, &nafula, &format!("/chamas/{UMOJA}/statement"))
        .await
        .json()
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar(
        "select contributed_total from public.chama_members where chama_id = $1::uuid and user_id = $2::uuid",
    )
    .bind(UMOJA)
    .bind(NAFULA_ID)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(statement["opening_balance"], 0);
    assert_eq!(statement["closing_balance"], total);
    let entries = statement["entries"].as_array().unwrap();
    let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, total);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.ends_with(&["contribution", "reversal"]), "{kinds:?}");
    assert_eq!(entries.last().unwrap()["amount"], -12_345);

    // A range: opening + entries = closing.
    let from = entries[1]["at"].as_str().unwrap();
    let ranged: Value = app
        .client
        .get(app.url(&format!("/chamas/{UMOJA}/statement")))
        .query(&[("from", from)])
        .bearer_auth(&nafula)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ranged_sum: i64 = ranged["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(
        ranged["opening_balance"].as_i64().unwrap() + ranged_sum,
        ranged["closing_balance"].as_i64().unwrap()
    );
    assert_eq!(ranged["opening_balance"], entries[0]["amount"]);

    // CSV, with the awkward reference quoted.
    let csv = get(
        &app,
        &nafula,
        &format!("/chamas/{UMOJA}/statement?format=csv"),
    )
    .await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "date,kind,description,reference,amount_kes,balance_kes"
    );
    assert!(text.contains("\"R,\"\"1\"\"\",123.45,"), "{text}");
    assert!(text.contains(",-123.45,"), "{text}");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("{}.{:02}", total / 100, total % 100))
    );

    for bad in [
        "?format=pdf",
        "?from=yesterday",
        "?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let response = get(&app, &nafula, &format!("/chamas/{UMOJA}/statement{bad}")).await;
        assert!(
            response.status() == 400 || response.status() == 422,
            "{bad}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn officials_read_any_members_statement_the_cash_statement_and_the_audit_trail() {
    let app = demo().await;
    let nafula = app
        .sign_in(json!({ "phone": "0720345007", "password": "password123" }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let treasurer = app
        .sign_in(json!({ "email": "akinyi.achieng@example.co.ke", "password": "password123" }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let outsider = app
        .sign_in(json!({ "email": "otieno.odhiambo@example.co.ke", "password": "password123" }))
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        get(
            &app,
            &nafula,
            &format!("/chamas/{UMOJA}/members/{CHEBET_ID}/statement")
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        get(
            &app,
            &treasurer,
            &format!("/chamas/{UMOJA}/members/{CHEBET_ID}/statement")
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(&app, &outsider, &format!("/chamas/{UMOJA}/statement"))
            .await
            .status(),
        404
    );

    assert_eq!(
        get(&app, &nafula, &format!("/chamas/{UMOJA}/cash-statement"))
            .await
            .status(),
        403
    );
    let cash: Value = get(&app, &treasurer, &format!("/chamas/{UMOJA}/cash-statement"))
        .await
        .json()
        .await
        .unwrap();
    let balance: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
        .bind(UMOJA)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(cash["closing_balance"], balance);

    assert_eq!(
        get(&app, &nafula, &format!("/chamas/{UMOJA}/audit"))
            .await
            .status(),
        403
    );
    assert_eq!(
        get(&app, &outsider, &format!("/chamas/{UMOJA}/audit"))
            .await
            .status(),
        404
    );
    let trail: Value = get(&app, &treasurer, &format!("/chamas/{UMOJA}/audit?limit=5"))
        .await
        .json()
        .await
        .unwrap();
    let trail = trail.as_array().unwrap();
    assert_eq!(trail.len(), 5);
    assert!(
        trail
            .windows(2)
            .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()),
        "newest first"
    );
    let next: Value = get(
        &app,
        &treasurer,
        &format!("/chamas/{UMOJA}/audit?limit=5&before_id={}", trail[4]["id"]),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(next[0]["id"].as_i64() < trail[4]["id"].as_i64());
}
