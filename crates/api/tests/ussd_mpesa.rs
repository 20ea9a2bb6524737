//! USSD and M-Pesa together: a member contributes from a feature phone, the M-Pesa worker sends
//! the STK push to the local Daraja simulator, its callback credits the chama once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;
mod ussd_common;

use mpesa_common::{CHEBET, CHEBET_PHONE, Harness};
use reqwest::Method;
use serde_json::json;
use ussd_common::Gateway;

#[tokio::test]
async fn a_ussd_contribution_is_paid_by_stk_push_and_credited_once() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let (status, body) = h
        .app
        .call(
            Method::PUT,
            &token,
            "/auth/pin",
            Some(json!({ "pin": "4321" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let before = h.balance().await;

    // Contribute → Umoja (second of Chebet's chamas) → the default amount → PIN.
    let answers = Gateway::of(&h.app)
        .dial(CHEBET_PHONE, &["2", "2", "1", "4321"])
        .await;
    assert!(
        answers[4].starts_with("END You will receive an M-Pesa prompt for KES 1,000"),
        "{answers:?}"
    );
    let id: String =
        sqlx::query_scalar("select id::text from public.payment_requests where channel = 'ussd'")
            .fetch_one(&h.app.db.pool)
            .await
            .unwrap();

    let done = h.wait_status(&id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(h.balance().await, before + 100_000);
    let receipt = done["mpesa_receipt"].as_str().unwrap();
    assert_eq!(
        h.count(&format!(
            "select count(*) from public.transactions where mpesa_receipt = '{receipt}' \
             and amount = 100000 and payment_method = 'mpesa'"
        ))
        .await,
        1
    );
    h.app.db.assert_ledger_balanced().await;
}
