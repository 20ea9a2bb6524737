//! Reconciliation through the simulator: a lost STK callback is settled by an STK query (and
//! the late callback only adds the receipt); a payout with no result is settled by a status
//! query.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;

use std::time::Duration;

use mpesa_common::{CHEBET, CHEBET_PHONE, Harness, UMOJA, success_callback};
use pesachama_api::mpesa_reconcile::reconcile_once;
use pesachama_mpesa::simulator::{Scenario, Simulator};
use serde_json::{Value, json};

#[tokio::test]
async fn a_lost_stk_callback_is_settled_by_query_and_the_late_callback_adds_the_receipt() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    let (_, answer, _) = h
        .contribute(&token, "lost", json!({ "amount": 404_000 }))
        .await; // KES 4040: lost
    let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
    let sent = h.wait_status(&id, "sent").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.payment_request(&id).await["status"],
        "sent",
        "no callback came"
    );

    let report = reconcile_once(&h.app.db.pool, &h.mpesa, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.stk_queried, 1);
    assert_eq!(
        report.changed,
        vec![(uuid::Uuid::parse_str(&id).unwrap(), "completed".to_owned())]
    );
    assert_eq!(h.balance().await, before + 404_000);
    // Nothing left to do the second time.
    let again = reconcile_once(&h.app.db.pool, &h.mpesa, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((again.stk_queried, again.changed.len()), (0, 0));

    let late = success_callback(
        sent["checkout_request_id"].as_str().unwrap(),
        4040,
        "SIM0LATE01",
        CHEBET_PHONE,
    );
    assert_eq!(h.post_callback("stk", &late).await.0, 200);
    h.wait_sql("select coalesce(mpesa_receipt = 'SIM0LATE01', false) from public.payment_requests")
        .await;
    assert_eq!(
        h.count("select count(*) from public.transactions where mpesa_receipt = 'SIM0LATE01'")
            .await,
        1
    );
    assert_eq!(h.balance().await, before + 404_000, "credited once");
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payout_without_a_result_is_settled_by_a_status_query() {
    let h = Harness::start().await;
    h.sim.simulator.set_phone("254115345009", Scenario::Lost);
    let before = h.balance().await;
    let chebet = h.app.demo_token(CHEBET).await;
    let created: Value = h
        .app
        .client
        .post(h.app.url(&format!("/chamas/{UMOJA}/disbursements")))
        .bearer_auth(&chebet)
        .header("idempotency-key", "lost-payout")
        .json(&json!({ "amount": 250_000, "reason": "Hospital bill for my mother" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    for official in [
        "akinyi.achieng@example.co.ke",
        "wanjiku.kamau@example.co.ke",
    ] {
        let token = h.app.demo_token(official).await;
        let response = h
            .app
            .client
            .post(h.app.url(&format!("/disbursements/{id}/approve")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    h.wait_sql(&format!(
        "select conversation_id is not null from public.disbursement_requests where id = '{id}'"
    ))
    .await;
    let report = reconcile_once(&h.app.db.pool, &h.mpesa, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.payouts_queried.len(), 1);
    h.wait_sql(&format!(
        "select status = 'completed' from public.disbursement_requests where id = '{id}'"
    ))
    .await;
    assert_eq!(h.balance().await, before - 250_000);
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().b2c_payments),
        1
    );
    h.app.db.assert_ledger_balanced().await;
}
