//! The callbacks the simulator posts, in Daraja's shapes.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::daraja::receipt;
use super::{B2cRecord, Scenario, Simulator, lock};

fn failure_desc(code: i64) -> &'static str {
    match code {
        1 => "The balance is insufficient for the transaction.",
        1001 => {
            "Unable to lock subscriber, a transaction is already in process for the current subscriber"
        }
        1019 => "Transaction has expired",
        1032 => "Request cancelled by user",
        1037 => "DS timeout user cannot be reached",
        2001 => "The initiator information is invalid.",
        _ => "The transaction failed.",
    }
}

async fn post(simulator: &Simulator, url: &str, body: &Value) -> Option<Value> {
    match simulator.inner.http.post(url).json(body).send().await {
        Ok(response) => {
            simulator
                .inner
                .counters
                .callbacks_delivered
                .fetch_add(1, Ordering::SeqCst);
            response.json().await.ok()
        }
        Err(err) => {
            tracing::warn!(error = %err.without_url(), "simulator: callback not delivered");
            None
        }
    }
}

/// Decides an STK push and delivers its callback(s).
pub(super) async fn stk(simulator: Simulator, checkout: String, url: String, scenario: Scenario) {
    let Some(record) = lock(&simulator.inner.stk).get(&checkout).cloned() else {
        return;
    };
    let (code, receipt) = match scenario {
        Scenario::Fail(code) => (code, None),
        _ => (0, Some(receipt())),
    };
    let desc = if code == 0 {
        "The service request is processed successfully."
    } else {
        failure_desc(code)
    };
    if let Some(r) = lock(&simulator.inner.stk).get_mut(&checkout) {
        r.outcome = Some((code, desc.to_owned(), receipt.clone()));
    }
    let mut callback = json!({
        "MerchantRequestID": record.merchant_request_id,
        "CheckoutRequestID": checkout,
        "ResultCode": code,
        "ResultDesc": desc,
    });
    if let Some(receipt) = receipt {
        let amount = if scenario == Scenario::WrongAmount {
            record.amount + 1
        } else {
            record.amount
        };
        let date: i64 = crate::time::timestamp(chrono::Utc::now())
            .parse()
            .unwrap_or_default();
        let phone: i64 = record.msisdn.parse().unwrap_or_default();
        callback["CallbackMetadata"] = json!({ "Item": [
            { "Name": "Amount", "Value": amount },
            { "Name": "MpesaReceiptNumber", "Value": receipt },
            { "Name": "Balance" },
            { "Name": "TransactionDate", "Value": date },
            { "Name": "PhoneNumber", "Value": phone },
        ]});
    }
    let body = json!({ "Body": { "stkCallback": callback } });
    let copies = match scenario {
        Scenario::Lost => 0,
        Scenario::Duplicate(n) => n,
        _ => 1,
    };
    // The copies go at once, from concurrent connections, as a storm of duplicates would.
    let handles: Vec<_> = (0..copies)
        .map(|_| {
            let (simulator, url, body) = (simulator.clone(), url.clone(), body.clone());
            tokio::spawn(async move { post(&simulator, &url, &body).await })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
}

fn b2c_result_body(record: &B2cRecord, code: i64, receipt: Option<&str>) -> Value {
    let mut result = json!({
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": if code == 0 { "The service request is processed successfully." } else { failure_desc(code) },
        "OriginatorConversationID": record.originator_conversation_id,
        "ConversationID": record.conversation_id,
        "TransactionID": receipt.unwrap_or("0000000000"),
        "ReferenceData": { "ReferenceItem": { "Key": "QueueTimeoutURL", "Value": "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit" } },
    });
    if let Some(receipt) = receipt {
        let completed = chrono::Utc::now()
            .with_timezone(&crate::time::nairobi())
            .format("%d.%m.%Y %H:%M:%S")
            .to_string();
        result["ResultParameters"] = json!({ "ResultParameter": [
            { "Key": "TransactionAmount", "Value": record.amount },
            { "Key": "TransactionReceipt", "Value": receipt },
            { "Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y" },
            { "Key": "B2CChargesPaidAccountAvailableFunds", "Value": -4510.00 },
            { "Key": "ReceiverPartyPublicName", "Value": format!("{} - Simulated Recipient", record.msisdn) },
            { "Key": "TransactionCompletedDateTime", "Value": completed },
            { "Key": "B2CUtilityAccountAvailableFunds", "Value": 10116.00 },
            { "Key": "B2CWorkingAccountAvailableFunds", "Value": 900000.00 },
        ]});
    }
    json!({ "Result": result })
}

/// Decides a B2C payment and delivers its result (or a queue timeout).
pub(super) async fn b2c(
    simulator: &Simulator,
    conversation: &str,
    result_url: &str,
    timeout_url: &str,
    scenario: Scenario,
) {
    let Some(record) = lock(&simulator.inner.b2c).get(conversation).cloned() else {
        return;
    };
    if scenario == Scenario::Timeout {
        let body = json!({ "Result": {
            "ResultType": 1, "ResultCode": 1,
            "ResultDesc": "The request timed out while waiting in the queue.",
            "OriginatorConversationID": record.originator_conversation_id,
            "ConversationID": record.conversation_id,
            "TransactionID": "0000000000" }});
        post(simulator, timeout_url, &body).await;
        return;
    }
    let (code, receipt) = match scenario {
        Scenario::Fail(code) => (code, None),
        _ => (0, Some(receipt())),
    };
    if let Some(r) = lock(&simulator.inner.b2c).get_mut(conversation) {
        r.outcome = Some((code, failure_desc(code).to_owned(), receipt.clone()));
    }
    let body = b2c_result_body(&record, code, receipt.as_deref());
    let copies = match scenario {
        Scenario::Lost => 0,
        Scenario::Duplicate(n) => n,
        _ => 1,
    };
    for _ in 0..copies {
        post(simulator, result_url, &body).await;
    }
}

/// A transaction status query, as the simulator answered it.
#[derive(Debug, Clone)]
pub(super) struct StatusQuery {
    pub originator_conversation_id: String,
    pub conversation_id: String,
    /// Echoed back in ReferenceData, as Daraja does.
    pub occasion: String,
}

/// The answer to a transaction status query, in Daraja's shape: the query's own ids at the
/// top, the payment's among the ResultParameters with its status, receipt and amount. A
/// payment that timed out in the queue is carried out now (it was only waiting); one never
/// made is "not found" (2032), linked to the payment by the query's id alone.
pub(super) async fn status(
    simulator: &Simulator,
    found: Option<B2cRecord>,
    query: &StatusQuery,
    result_url: &str,
) {
    let reference = json!({ "ReferenceItem": { "Key": "Occasion", "Value": query.occasion } });
    let Some(record) = found else {
        let body = json!({ "Result": {
            "ResultType": 0, "ResultCode": 2032, "ResultDesc": "The transaction was not found.",
            "OriginatorConversationID": query.originator_conversation_id,
            "ConversationID": query.conversation_id, "TransactionID": "",
            "ReferenceData": reference }});
        post(simulator, result_url, &body).await;
        return;
    };
    let outcome = match record.outcome.clone() {
        Some(outcome) => outcome,
        None => {
            let outcome = (0, String::new(), Some(receipt()));
            if let Some(r) = lock(&simulator.inner.b2c).get_mut(&record.conversation_id) {
                r.outcome = Some(outcome.clone());
            }
            outcome
        }
    };
    let (code, _, paid) = outcome;
    let now = crate::time::timestamp(chrono::Utc::now());
    let receipt = paid.unwrap_or_else(receipt);
    let body = json!({ "Result": {
        "ResultType": 0, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": query.originator_conversation_id,
        "ConversationID": query.conversation_id,
        "TransactionID": receipt,
        "ResultParameters": { "ResultParameter": [
            { "Key": "DebitPartyName", "Value": format!("{} - PesaChama Simulator", simulator.inner.config.shortcode) },
            { "Key": "CreditPartyName", "Value": format!("{} - Simulated Recipient", record.msisdn) },
            { "Key": "OriginatorConversationID", "Value": record.originator_conversation_id },
            { "Key": "InitiatedTime", "Value": now.parse::<i64>().unwrap_or_default() },
            { "Key": "CreditPartyCharges" },
            { "Key": "DebitAccountType", "Value": "Utility Account" },
            { "Key": "TransactionReason" },
            { "Key": "ReasonType", "Value": "Business Payment to Customer via API" },
            { "Key": "TransactionStatus", "Value": if code == 0 { "Completed" } else { "Failed" } },
            { "Key": "FinalisedTime", "Value": now.parse::<i64>().unwrap_or_default() },
            { "Key": "Amount", "Value": record.amount },
            { "Key": "ConversationID", "Value": record.conversation_id },
            { "Key": "ReceiptNo", "Value": receipt },
        ]},
        "ReferenceData": reference }});
    post(simulator, result_url, &body).await;
}

/// A paybill payment: validation, then confirmation unless validation refused it. Answers
/// whether it was accepted.
pub(super) async fn c2b(
    simulator: &Simulator,
    validation_url: &str,
    confirmation_url: &str,
    trans_id: &str,
    amount: i64,
    msisdn: &str,
    bill_ref: &str,
) -> bool {
    let trans_time = crate::time::timestamp(chrono::Utc::now());
    let body = json!({
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": trans_time,
        "TransAmount": format!("{amount}.00"),
        "BusinessShortCode": simulator.inner.config.shortcode,
        "BillRefNumber": bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": msisdn,
        "FirstName": "Simulated",
        "MiddleName": "",
        "LastName": "Customer",
    });
    let verdict = post(simulator, validation_url, &body).await;
    let accepted = verdict
        .as_ref()
        .and_then(|v| v.get("ResultCode"))
        .is_some_and(|c| c == &json!(0) || c == &json!("0"));
    if accepted {
        let mut confirmed = body;
        confirmed["OrgAccountBalance"] = json!("49197.00");
        post(simulator, confirmation_url, &confirmed).await;
    }
    accepted
}
