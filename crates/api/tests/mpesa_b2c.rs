//! Withdrawals paid by M-Pesa B2C through the simulator: paid once, failures returned to the
//! chama, queue timeouts settled by a status query, and no second payment after a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;

use std::time::Duration;

use mpesa_common::{CHEBET, Harness, UMOJA};
use pesachama_api::mpesa_worker::MpesaWorker;
use pesachama_mpesa::client::B2cPayment;
use pesachama_mpesa::simulator::{Scenario, Simulator};
use serde_json::{Value, json};

const AKINYI: &str = "akinyi.achieng@example.co.ke";
const WANJIKU: &str = "wanjiku.kamau@example.co.ke";
const CHEBET_MSISDN: &str = "254115345009";

/// Chebet asks for `amount` cents; two officials approve. Answers the request id.
async fn approved_withdrawal(h: &Harness, amount: i64) -> String {
    let chebet = h.app.demo_token(CHEBET).await;
    let response = h
        .app
        .client
        .post(h.app.url(&format!("/chamas/{UMOJA}/disbursements")))
        .bearer_auth(&chebet)
        .header("idempotency-key", format!("w-{amount}"))
        .json(&json!({ "amount": amount, "reason": "Hospital bill for my mother" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for official in [AKINYI, WANJIKU] {
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
    id
}

async fn request(h: &Harness, id: &str) -> (String, Option<String>, Option<String>) {
    sqlx::query_as("select status, mpesa_receipt, result_desc from public.disbursement_requests where id = $1::uuid")
        .bind(id)
        .fetch_one(&h.app.db.pool)
        .await
        .unwrap()
}

async fn wait_request(
    h: &Harness,
    id: &str,
    status: &str,
) -> (String, Option<String>, Option<String>) {
    for _ in 0..300 {
        let now = request(h, id).await;
        if now.0 == status {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "withdrawal {id} never became {status}: {:?}",
        request(h, id).await
    );
}

/// Runs a worker's rounds until the request has `status`.
async fn drive(h: &Harness, worker: &MpesaWorker, id: &str, status: &str) {
    for _ in 0..200 {
        worker.run_once().await.unwrap();
        if request(h, id).await.0 == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "withdrawal {id} never became {status}: {:?}",
        request(h, id).await
    );
}

#[tokio::test]
async fn an_approved_withdrawal_is_paid_by_b2c_once_with_its_receipt() {
    let h = Harness::start().await;
    let before = h.balance().await;
    let id = approved_withdrawal(&h, 250_000).await;
    let (_, receipt, _) = wait_request(&h, &id, "completed").await;
    let receipt = receipt.unwrap();
    assert_eq!(h.balance().await, before - 250_000);
    assert_eq!(
        h.count(&format!("select count(*) from public.transactions where type = 'disbursement' and reference = '{receipt}' and payment_method = 'mpesa'")).await,
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().b2c_payments),
        1
    );
    assert_eq!(
        h.count("select count(*) from internal.outbox where topic = 'payout' and status = 'done'")
            .await,
        1
    );
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_failed_payout_returns_the_money_to_the_chama() {
    let h = Harness::start().await;
    h.sim.simulator.set_phone(CHEBET_MSISDN, Scenario::Fail(1));
    let before = h.balance().await;
    let id = approved_withdrawal(&h, 250_000).await;
    let (_, receipt, why) = wait_request(&h, &id, "failed").await;
    assert_eq!(receipt, None);
    assert!(why.unwrap().contains("too little money"));
    assert_eq!(h.balance().await, before, "returned");
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_queue_timeout_is_not_a_failure_and_the_status_query_settles_it() {
    let h = Harness::start().await;
    h.sim.simulator.set_phone(CHEBET_MSISDN, Scenario::Timeout);
    let before = h.balance().await;
    let id = approved_withdrawal(&h, 250_000).await;
    h.wait_sql("select count(*) = 1 from internal.mpesa_callbacks where kind = 'b2c_timeout' and status = 'applied'").await;
    assert_eq!(
        request(&h, &id).await.0,
        "processing",
        "a timeout is not a failure"
    );
    // The status query waits 30 seconds after a timeout; let that time pass.
    sqlx::query("update internal.outbox set run_after = now() where topic = 'mpesa.b2c_status'")
        .execute(&h.app.db.pool)
        .await
        .unwrap();
    wait_request(&h, &id, "completed").await;
    assert_eq!(h.balance().await, before - 250_000);
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().b2c_payments),
        1
    );
    assert!(Simulator::count(&h.sim.simulator.counters().status_queries) >= 1);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payout_interrupted_before_daraja_had_it_is_paid_once_after_a_status_query() {
    let h = Harness::start().await;
    h.stop_worker();
    let before = h.balance().await;
    let id = approved_withdrawal(&h, 250_000).await;
    // The worker marked it and died before its call reached Daraja.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert!(
        pesachama_store::mpesa_b2c::starting(&h.app.db.pool, uuid)
            .await
            .unwrap()
            .is_some()
    );

    let worker = MpesaWorker::new(h.app.db.pool.clone(), h.mpesa.clone());
    drive(&h, &worker, &id, "completed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker.run_once().await.unwrap();
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().b2c_payments),
        1
    );
    assert_eq!(h.balance().await, before - 250_000);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payout_whose_answer_was_lost_in_a_crash_is_never_paid_again() {
    let h = Harness::start().await;
    h.stop_worker();
    h.sim.simulator.set_phone(CHEBET_MSISDN, Scenario::Lost);
    let before = h.balance().await;
    let id = approved_withdrawal(&h, 250_000).await;
    // The worker marked it, Daraja took the payment, and the worker died before the answer.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let originator = pesachama_store::mpesa_b2c::starting(&h.app.db.pool, uuid)
        .await
        .unwrap()
        .unwrap();
    let phone = pesachama_domain::Phone::parse(CHEBET_MSISDN).unwrap();
    let result_url = h.callback_url("b2c/result");
    let payment = B2cPayment {
        amount: 2500,
        phone: &phone,
        remarks: "w",
        occasion: "w",
        result_url: &result_url,
        timeout_url: &result_url,
    };
    h.mpesa
        .client
        .b2c_payment(&payment, &originator)
        .await
        .unwrap();

    let worker = MpesaWorker::new(h.app.db.pool.clone(), h.mpesa.clone());
    drive(&h, &worker, &id, "completed").await;
    for _ in 0..3 {
        worker.run_once().await.unwrap();
    }
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().b2c_payments),
        1,
        "paid once, by the first call"
    );
    assert_eq!(h.balance().await, before - 250_000);
    h.app.db.assert_ledger_balanced().await;
}
