//! Contributions by STK push, end to end over real HTTP: the app, its M-Pesa worker and the
//! local Daraja simulator (which calls the app's callback URL back). Every test that moves
//! money ends with the ledger check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;

use std::time::Duration;

use mpesa_common::{CHEBET, CHEBET_PHONE, Harness, UMOJA, success_callback};
use pesachama_api::mpesa_worker::MpesaWorker;
use pesachama_mpesa::simulator::{Scenario, Simulator};
use reqwest::Method;
use serde_json::json;

/// Contributions credited from our STK requests (the demo data has M-Pesa history of its own).
const STK_CREDITS: &str = "select count(*) from public.transactions t
    where t.reference in (select checkout_request_id from public.payment_requests)";

#[tokio::test]
async fn an_stk_contribution_is_credited_once_with_its_receipt() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    let (status, answer, replayed) = h
        .contribute(&token, "stk-1", json!({ "amount": 50_000 }))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert!(!replayed);
    assert!(
        answer["message"].as_str().unwrap().contains("KES 500"),
        "{answer}"
    );
    let request = &answer["payment_request"];
    assert_eq!(
        (request["status"].as_str(), request["phone"].as_str()),
        (Some("queued"), Some(CHEBET_PHONE))
    );
    let id = request["id"].as_str().unwrap().to_owned();

    let done = h.wait_status(&id, "completed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let receipt = done["mpesa_receipt"].as_str().unwrap().to_owned();
    assert_eq!(h.balance().await, before + 50_000);
    let credited: (i64, String, String) = sqlx::query_as(
        "select t.amount, t.payment_method, t.phone::text from public.transactions t where t.mpesa_receipt = $1",
    )
    .bind(&receipt)
    .fetch_one(&h.app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        credited,
        (50_000, "mpesa".to_owned(), CHEBET_PHONE.to_owned())
    );
    assert_eq!(
        h.count(&format!("select count(*) from public.notifications where title = 'Contribution received' and data->>'payment_request_id' = '{id}'")).await,
        1
    );
    // The member sees it through the API (RLS), with the receipt.
    let (status, seen) = h
        .app
        .call(
            Method::GET,
            &token,
            &format!("/payment-requests/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, seen["mpesa_receipt"].as_str()),
        (200, Some(receipt.as_str()))
    );

    // A retry with the same key: the same answer, no second prompt.
    let (status, again, replayed) = h
        .contribute(&token, "stk-1", json!({ "amount": 50_000 }))
        .await;
    assert_eq!((status, replayed), (202, true));
    assert_eq!(again["payment_request"]["id"], id.as_str());
    // The same key with another amount is refused.
    let (status, _, _) = h
        .contribute(&token, "stk-1", json!({ "amount": 60_000 }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        h.count("select count(*) from public.payment_requests")
            .await,
        1
    );
    assert_eq!(Simulator::count(&h.sim.simulator.counters().stk_pushes), 1);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn bad_contribution_requests_are_refused_and_write_nothing() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let without_key = h
        .app
        .client
        .post(h.app.url(&format!("/chamas/{UMOJA}/contributions/mpesa")))
        .bearer_auth(&token)
        .json(&json!({ "amount": 50_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(without_key.status(), 422);
    for (body, status, field) in [
        (json!({ "amount": 12_345 }), 422, "amount"),
        (json!({ "amount": 0 }), 422, "amount"),
        (json!({ "amount": 2_600_000_000_i64 }), 422, "amount"),
        (json!({ "amount": "500" }), 422, "amount"),
        (json!({ "amount": 50_000, "phone": "12345" }), 422, "phone"),
        (json!({ "amount": 50_000, "tip": 1 }), 400, ""),
    ] {
        let (got, answer, _) = h.contribute(&token, "bad", body.clone()).await;
        assert_eq!(got, status, "{body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
        }
    }
    // Chebet is not in the Kisumu chama: it does not exist for her.
    let kisumu = "c4a3a000-0000-4000-8000-000000000002";
    let response = h
        .app
        .client
        .post(h.app.url(&format!("/chamas/{kisumu}/contributions/mpesa")))
        .bearer_auth(&token)
        .header("idempotency-key", "k")
        .json(&json!({ "amount": 50_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        h.count("select count(*) from public.payment_requests")
            .await,
        0
    );
    assert_eq!(
        h.count("select count(*) from internal.outbox where topic = 'mpesa.stk_push'")
            .await,
        0
    );
}

#[tokio::test]
async fn failed_payments_fail_the_request_with_a_reason_the_member_understands() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    // Built-in amounts of the simulator choose the result code.
    let cases = [
        (103_200, "You cancelled the M-Pesa prompt."),
        (103_700, "Your phone could not be reached"),
        (200_100, "The M-Pesa PIN entered was wrong."),
        (111_100, "Your M-Pesa balance was not enough"),
    ];
    let mut ids = Vec::new();
    for (i, (amount, _)) in cases.iter().enumerate() {
        let (status, answer, _) = h
            .contribute(&token, &format!("fail-{i}"), json!({ "amount": amount }))
            .await;
        assert_eq!(status, 202);
        ids.push(answer["payment_request"]["id"].as_str().unwrap().to_owned());
    }
    for (id, (_, reason)) in ids.iter().zip(cases) {
        let failed = h.wait_status(id, "failed").await;
        assert!(
            failed["failure_reason"]
                .as_str()
                .unwrap()
                .starts_with(reason),
            "{failed}"
        );
    }
    assert_eq!(h.balance().await, before);
    assert_eq!(
        h.count(
            "select count(*) from public.notifications where title = 'M-Pesa payment not completed'"
        )
        .await,
        4
    );
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_storm_of_duplicate_callbacks_credits_exactly_once() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    // The simulator itself delivers ten copies at once...
    h.sim.simulator.set_amount(700, Scenario::Duplicate(10));
    let (_, first, _) = h
        .contribute(&token, "storm-1", json!({ "amount": 70_000 }))
        .await;
    let first = first["payment_request"]["id"].as_str().unwrap().to_owned();
    h.wait_status(&first, "completed").await;

    // ...and ten clients post the same callback concurrently for a payment whose own callback
    // was lost.
    h.sim.simulator.set_amount(800, Scenario::Lost);
    let (_, second, _) = h
        .contribute(&token, "storm-2", json!({ "amount": 80_000 }))
        .await;
    let second = second["payment_request"]["id"].as_str().unwrap().to_owned();
    let sent = h.wait_status(&second, "sent").await;
    let body = success_callback(
        sent["checkout_request_id"].as_str().unwrap(),
        800,
        "SIM0STORM1",
        CHEBET_PHONE,
    );
    let url = h.callback_url("stk");
    let posts: Vec<_> = (0..10)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.unwrap(), 200);
    }
    h.wait_status(&second, "completed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.balance().await, before + 150_000);
    assert_eq!(h.count(STK_CREDITS).await, 2);
    assert_eq!(
        h.count("select count(*) from internal.mpesa_callbacks")
            .await,
        2,
        "one stored each"
    );
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn mismatched_amounts_phones_and_unknown_requests_are_held_for_review() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    // The simulator reports one shilling more than was asked.
    let (_, wrong, _) = h
        .contribute(&token, "wrong-amount", json!({ "amount": 333_300 }))
        .await;
    let wrong = wrong["payment_request"]["id"].as_str().unwrap().to_owned();
    h.wait_status(&wrong, "review").await;

    // Another phone paid for a request whose own callback was lost.
    h.sim.simulator.set_amount(900, Scenario::Lost);
    let (_, other, _) = h
        .contribute(&token, "other-phone", json!({ "amount": 90_000 }))
        .await;
    let other = other["payment_request"]["id"].as_str().unwrap().to_owned();
    let sent = h.wait_status(&other, "sent").await;
    let checkout = sent["checkout_request_id"].as_str().unwrap();
    let body = success_callback(checkout, 900, "SIM0PHONE1", "+254799999999");
    assert_eq!(h.post_callback("stk", &body).await.0, 200);
    h.wait_status(&other, "review").await;

    // A CheckoutRequestID nobody asked for.
    let body = success_callback("ws_CO_unknown", 900, "SIM0UNKNW1", CHEBET_PHONE);
    assert_eq!(h.post_callback("stk", &body).await.0, 200);
    h.wait_sql("select count(*) = 1 from internal.mpesa_callbacks where idempotency_key like 'ws_CO_unknown%' and status = 'review'").await;

    assert_eq!(h.balance().await, before);
    assert_eq!(h.count(STK_CREDITS).await, 0);
    assert_eq!(
        h.count("select count(*) from internal.mpesa_callbacks where status = 'review'")
            .await,
        3
    );
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_callback_that_arrives_before_the_push_is_answered_is_applied_once_it_can_be() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    h.sim.simulator.set_amount(1200, Scenario::CallbackFirst);
    let (_, answer, _) = h
        .contribute(&token, "early", json!({ "amount": 120_000 }))
        .await;
    let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
    h.wait_status(&id, "completed").await;
    assert_eq!(h.balance().await, before + 120_000);
    h.app.db.assert_ledger_balanced().await;
}

/// Daraja prompted the member but its answer was lost: the push is not sent again (a second
/// prompt could be paid too), the request fails telling the member what happens next, and
/// the payment the prompt brings, whose CheckoutRequestID nobody recorded, waits for review.
#[tokio::test]
async fn a_push_whose_answer_was_lost_is_never_sent_again_and_its_payment_waits_for_review() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    h.sim.simulator.lose_next_answers(1);
    let (status, answer, _) = h
        .contribute(&token, "lost-answer", json!({ "amount": 80_000 }))
        .await;
    assert_eq!(status, 202);
    let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
    let failed = h.wait_status(&id, "failed").await;
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("officials will check the payment"),
        "{failed}"
    );
    // The simulator's callback for the prompt it did send is held, not credited.
    h.wait_sql(
        "select count(*) = 1 from internal.mpesa_callbacks where kind = 'stk' and status = 'review'",
    )
    .await;
    assert_eq!(
        Simulator::count(&h.sim.simulator.counters().stk_pushes),
        1,
        "one prompt only"
    );
    assert_eq!(h.balance().await, before);
    h.app.db.assert_ledger_balanced().await;
}

/// A worker that died while calling Daraja left its mark: the next attempt does not push.
#[tokio::test]
async fn a_push_interrupted_mid_call_is_not_repeated_by_the_next_worker() {
    let h = Harness::start().await;
    h.stop_worker();
    let token = h.app.demo_token(CHEBET).await;
    let (_, answer, _) = h
        .contribute(&token, "interrupted", json!({ "amount": 50_000 }))
        .await;
    let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
    // What the dead worker had committed before its call.
    sqlx::query("select internal.stk_push_starting($1::uuid)")
        .bind(&id)
        .execute(&h.app.db.pool)
        .await
        .unwrap();
    let mut worker = MpesaWorker::new(h.app.db.pool.clone(), h.mpesa.clone());
    worker.idle = Duration::from_millis(50);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(worker.run(async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
    }));
    h.wait_status(&id, "failed").await;
    assert_eq!(Simulator::count(&h.sim.simulator.counters().stk_pushes), 0);
    let _ = stop.send(true);
    h.app.db.assert_ledger_balanced().await;
}
