//! A callback's own date (STK `TransactionDate`, paybill `TransTime`) used to be the ledger date,
//! unchecked: one dated 2099 was booked in 2099. A contribution is booked when we received its
//! callback; M-Pesa's date is kept in the transaction's metadata, flagged when it is more than a
//! day from the prompt (or, for paybill, from the receipt).

use std::time::Duration;

use crate::mpesa_common::{CHEBET, CHEBET_PHONE, Harness};
use serde_json::{Value, json};

/// An STK success for `checkout` as Daraja sends it, dated `date` (YYYYMMDDHHmmss, Nairobi).
fn stk_success(checkout: &str, shillings: i64, receipt: &str, date: i64) -> Value {
    let msisdn: i64 = CHEBET_PHONE.trim_start_matches('+').parse().unwrap();
    json!({ "Body": { "stkCallback": {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": { "Item": [
            { "Name": "Amount", "Value": shillings },
            { "Name": "MpesaReceiptNumber", "Value": receipt },
            { "Name": "Balance" },
            { "Name": "TransactionDate", "Value": date },
            { "Name": "PhoneNumber", "Value": msisdn }
        ]}
    }}})
}

/// The booked transaction of `receipt`: whether it is dated now (within the last minute, by
/// the database's clock), whether its metadata keeps M-Pesa's date `mpesa_date` (a timestamp
/// with its offset), and the metadata.
async fn booked(h: &Harness, receipt: &str, mpesa_date: &str) -> (bool, bool, Value) {
    h.wait_sql(&format!(
        "select count(*) = 1 from public.transactions where mpesa_receipt = '{receipt}'"
    ))
    .await;
    sqlx::query_as(
        "select created_at > now() - interval '1 minute' and created_at <= now(),
                coalesce((metadata ->> 'mpesa_transaction_date')::timestamptz = $2::timestamptz, false),
                metadata
           from public.transactions where mpesa_receipt = $1",
    )
    .bind(receipt)
    .bind(mpesa_date)
    .fetch_one(&h.app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_stk_callback_dated_2099_or_2001_is_booked_at_receipt_with_its_date_kept() {
    let h = Harness::start().await;
    let token = h.app.demo_token(CHEBET).await;
    let before = h.balance().await;
    for (key, date, receipt, nairobi) in [
        (
            "future",
            20991231235959_i64,
            "RKX2099001",
            "2099-12-31 23:59:59+03",
        ),
        (
            "past",
            20010101000000_i64,
            "RKX2001001",
            "2001-01-01 00:00:00+03",
        ),
    ] {
        // KES 4,040: the simulator prompts and never calls back; the attacker's callback does.
        let (status, answer, _) = h
            .contribute(&token, key, json!({ "amount": 404_000 }))
            .await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["payment_request"]["id"].as_str().unwrap().to_owned();
        let sent = h.wait_status(&id, "sent").await;
        let checkout = sent["checkout_request_id"].as_str().unwrap();
        let (status, _) = h
            .post_callback("stk", &stk_success(checkout, 4040, receipt, date))
            .await;
        assert_eq!(status, 200);
        h.wait_status(&id, "completed").await;
        let (now, kept, metadata) = booked(&h, receipt, nairobi).await;
        assert!(now, "{key}: booked at M-Pesa's date, not at receipt");
        assert!(kept, "{key}: M-Pesa's date is lost: {metadata}");
        assert_eq!(metadata["mpesa_date_off"], true, "{metadata}");
    }
    assert_eq!(h.balance().await, before + 2 * 404_000);
    h.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_paybill_confirmation_dated_2099_is_booked_at_receipt_with_its_date_kept() {
    let h = Harness::start().await;
    let before = h.balance().await;
    let confirmation = json!({
        "TransactionType": "Pay Bill", "TransID": "RKX2099002", "TransTime": "20991231235959",
        "TransAmount": "700.00", "BusinessShortCode": "174379", "BillRefNumber": "umoja01",
        "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
        "MSISDN": CHEBET_PHONE.trim_start_matches('+'), "FirstName": "Chebet", "MiddleName": "",
        "LastName": "Langat"
    });
    let (status, _) = h.post_callback("c2b/confirmation", &confirmation).await;
    assert_eq!(status, 200);
    let (now, kept, metadata) = booked(&h, "RKX2099002", "2099-12-31 23:59:59+03").await;
    assert!(now, "booked at M-Pesa's date, not at receipt");
    assert!(kept, "M-Pesa's date is lost: {metadata}");
    assert_eq!(metadata["mpesa_date_off"], true, "{metadata}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.balance().await, before + 70_000);
    h.app.db.assert_ledger_balanced().await;
}
