//! The callback routes' defences (path token, source allow-list, strict parsing) and the
//! crash window between storing a callback and applying it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mpesa_common;

use std::time::Duration;

use mpesa_common::{CHEBET, CHEBET_PHONE, Harness, success_callback};
use pesachama_api::mpesa_worker::MpesaWorker;
use pesachama_mpesa::simulator::Scenario;
use serde_json::{Value, json};

const INBOX: &str = "select count(*) from internal.mpesa_callbacks";

#[tokio::test]
async fn a_wrong_path_token_is_a_404_and_nothing_is_stored() {
    let h = Harness::start().await;
    let body = success_callback("ws_CO_1", 500, "SIM0TOKEN1", CHEBET_PHONE);
    for token in [
        "",
        "wrong",
        &format!("{}x", mpesa_common::TOKEN),
        &mpesa_common::TOKEN[1..],
    ] {
        let response = h
            .app
            .client
            .post(h.app.url(&format!("/mpesa/callbacks/{token}/stk")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "token {token:?}");
    }
    assert_eq!(h.count(INBOX).await, 0);
}

#[tokio::test]
async fn callbacks_from_outside_the_allow_list_are_refused_and_inside_through_the_proxy_accepted() {
    let h = Harness::start_with(|mpesa, config| {
        mpesa.allowed_sources =
            pesachama_api::gate::AllowList::of(vec!["196.201.212.0/24".parse().unwrap()]);
        config.auth.trusted_proxy_header = Some("x-forwarded-for".to_owned());
    })
    .await;
    let body = success_callback("ws_CO_2", 500, "SIM0ALLOW1", CHEBET_PHONE);
    let direct = h
        .app
        .client
        .post(h.callback_url("stk"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 403, "loopback is not Safaricom");
    let spoofed = h
        .app
        .client
        .post(h.callback_url("stk"))
        .header("x-forwarded-for", "10.0.0.1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    assert_eq!(h.count(INBOX).await, 0);
    let proxied = h
        .app
        .client
        .post(h.callback_url("stk"))
        .header("x-forwarded-for", "196.201.212.74")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 200);
    assert_eq!(
        h.count("select count(*) from internal.mpesa_callbacks where source_ip = '196.201.212.74'")
            .await,
        1
    );
}

#[tokio::test]
async fn malformed_callbacks_are_400_stored_for_review_and_credit_nothing() {
    let h = Harness::start().await;
    let before = h.balance().await;
    let not_json = h
        .app
        .client
        .post(h.callback_url("stk"))
        .header("content-type", "application/json")
        .body("{\"Body\": {\"stkCallback\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let answer: Value = not_json.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "malformed_body");
    for (body, problem) in [
        (json!({ "Body": {} }), "Body.stkCallback"),
        (
            json!({ "Body": { "stkCallback": { "CheckoutRequestID": "ws_CO_3", "ResultCode": 0 } } }),
            "MerchantRequestID",
        ),
        (
            json!({ "Body": { "stkCallback": { "MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_3", "ResultCode": 0 } } }),
            "CallbackMetadata",
        ),
        (
            json!({ "Body": { "stkCallback": { "MerchantRequestID": "m", "CheckoutRequestID": "ws_CO_3", "ResultCode": 0,
            "CallbackMetadata": { "Item": [ { "Name": "Amount", "Value": 5 }, { "Name": "MpesaReceiptNumber", "Value": "bad" },
                                            { "Name": "PhoneNumber", "Value": 254115345009_i64 } ] } } } }),
            "MpesaReceiptNumber",
        ),
    ] {
        let (status, answer) = h.post_callback("stk", &body).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(problem),
            "{answer}"
        );
    }
    assert_eq!(
        h.count("select count(*) from internal.mpesa_callbacks where status = 'review'")
            .await,
        5
    );
    assert_eq!(h.balance().await, before);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_callback_stored_but_not_applied_before_a_crash_is_applied_once_after_restart() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    h.sim.simulator.set_amount(600, Scenario::Lost);
    let (_, answer, _) = h
        .contribute(&token, "crash", json!({ "amount": 60_000 }))
        .await;
    let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
    let sent = h.wait_status(&id, "sent").await;
    let checkout = sent["checkout_request_id"].as_str().unwrap().to_owned();

    // The server stores the callback and dies before applying it.
    h.stop_worker();
    let body = success_callback(&checkout, 600, "SIM0CRASH1", CHEBET_PHONE);
    let stored = pesachama_store::mpesa::store_callback(
        &h.app.db.pool,
        "stk",
        &format!("{checkout}:0"),
        &body,
        None,
        "received",
        None,
    )
    .await
    .unwrap();
    assert!(stored.is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.payment_request(&id).await["status"],
        "sent",
        "nothing applied it yet"
    );
    assert_eq!(h.balance().await, before);

    // Two servers come back at once; both re-scan the inbox.
    let workers = [
        MpesaWorker::new(h.app.db.pool.clone(), h.mpesa.clone()),
        MpesaWorker::new(h.app.db.pool.clone(), h.mpesa.clone()),
    ];
    let (a, b) = tokio::join!(workers[0].run_once(), workers[1].run_once());
    a.unwrap();
    b.unwrap();
    workers[0].run_once().await.unwrap();
    let done = h.payment_request(&id).await;
    assert_eq!(
        (done["status"].as_str(), done["mpesa_receipt"].as_str()),
        (Some("completed"), Some("SIM0CRASH1"))
    );
    assert_eq!(h.balance().await, before + 60_000);
    assert_eq!(
        h.count("select count(*) from public.transactions where mpesa_receipt = 'SIM0CRASH1'")
            .await,
        1
    );
    // The same callback posted again later is acknowledged and changes nothing.
    assert_eq!(h.post_callback("stk", &body).await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.balance().await, before + 60_000);
    h.app.db.assert_ledger_balanced().await;
}
