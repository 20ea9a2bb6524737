//! Paybill payments (C2B) through the simulator: validation accepts the chamas' account
//! numbers and refuses others; confirmation credits the paying member once, or holds the
//! payment for review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;

use std::time::Duration;

use mpesa_common::Harness;
use serde_json::{Value, json};

const CHEBET_MSISDN: &str = "254115345009";

/// A customer pays the paybill through the simulator; answers the simulator's answer.
async fn pay_bill(h: &Harness, msisdn: &str, shillings: i64, account: &str) -> Value {
    let token = h.mpesa.client.access_token().await.unwrap();
    h.app
        .client
        .post(format!("{}/mpesa/c2b/v1/simulate", h.sim.base_url()))
        .bearer_auth(token)
        .json(&json!({ "ShortCode": h.sim.simulator.config().shortcode, "CommandID": "CustomerPayBillOnline",
                       "Amount": shillings, "Msisdn": msisdn, "BillRefNumber": account }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn registered() -> Harness {
    let h = Harness::start().await;
    h.mpesa
        .client
        .register_c2b_urls(
            &h.callback_url("c2b/validation"),
            &h.callback_url("c2b/confirmation"),
        )
        .await
        .unwrap();
    h
}

#[tokio::test]
async fn a_paybill_payment_to_a_chamas_account_credits_the_paying_member_once() {
    let h = registered().await;
    let before = h.balance().await;
    let answer = pay_bill(&h, CHEBET_MSISDN, 700, "umoja01").await;
    let trans_id = answer["TransID"].as_str().unwrap().to_owned();
    h.wait_sql(&format!(
        "select count(*) = 1 from public.transactions where mpesa_receipt = '{trans_id}'"
    ))
    .await;
    assert_eq!(h.balance().await, before + 70_000);
    let member: (String,) = sqlx::query_as("select u.email from public.transactions t join public.users u on u.id = t.user_id where t.mpesa_receipt = $1")
        .bind(&trans_id)
        .fetch_one(&h.app.db.pool)
        .await
        .unwrap();
    assert_eq!(member.0, mpesa_common::CHEBET);

    // Safaricom repeats the confirmation: acknowledged, not credited again.
    let payload: Value = sqlx::query_scalar(
        "select payload from internal.mpesa_callbacks where kind = 'c2b_confirmation'",
    )
    .fetch_one(&h.app.db.pool)
    .await
    .unwrap();
    assert_eq!(h.post_callback("c2b/confirmation", &payload).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.balance().await, before + 70_000);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn unknown_accounts_are_refused_at_validation_and_strangers_held_for_review() {
    let h = registered().await;
    let before = h.balance().await;
    let (status, verdict) = h
        .post_callback("c2b/validation", &json!({ "TransactionType": "Pay Bill", "TransID": "SIM0VALID1", "TransTime": "20261201133416",
            "TransAmount": "700.00", "BusinessShortCode": "174379", "BillRefNumber": "NOPE99", "MSISDN": CHEBET_MSISDN }))
        .await;
    assert_eq!(
        (status, verdict["ResultCode"].as_str()),
        (200, Some("C2B00012"))
    );
    let answer = pay_bill(&h, CHEBET_MSISDN, 700, "NOPE99").await;
    assert!(
        answer["ResponseDescription"]
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{answer}"
    );
    assert_eq!(
        h.count("select count(*) from internal.mpesa_callbacks where kind = 'c2b_confirmation'")
            .await,
        0
    );

    // Someone who is not a member pays Umoja's account: the money is held for review.
    pay_bill(&h, "254799999999", 700, "UMOJA01").await;
    h.wait_sql("select count(*) = 1 from internal.mpesa_callbacks where kind = 'c2b_confirmation' and status = 'review'").await;
    assert_eq!(h.balance().await, before);
    // Malformed: a 400, stored for review.
    let (status, _) = h
        .post_callback("c2b/confirmation", &json!({ "TransID": "bad" }))
        .await;
    assert_eq!(status, 400);
    h.app.db.assert_ledger_balanced().await;
}
