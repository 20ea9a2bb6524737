//! Payouts by B2C: the outbox topics `payout` (an approved withdrawal to pay) and
//! `mpesa.b2c_status` (what became of one), and the applier of their callbacks.
//!
//! Never twice: the request is marked `processing` with our OriginatorConversationID and
//! committed before Daraja is called. If the worker dies during the call, or Daraja cannot be
//! reached, the next attempt finds it `processing` and asks for its status instead of paying;
//! only Daraja saying it never had the payment puts it back to be paid.

use pesachama_mpesa::DarajaError;
use pesachama_mpesa::callback::{B2cResult, CallbackError, parse_b2c_result, parse_status_result};
use pesachama_mpesa::client::B2cPayment;
use pesachama_store::mpesa::{self as inbox, StoredCallback};
use pesachama_store::mpesa_b2c::{self as store, B2cOutcome};
use pesachama_store::outbox::OutboxMessage;
use pesachama_store::{PgPool, StoreError};
use uuid::Uuid;

use crate::mpesa_worker::Mpesa;

/// Written by an approved withdrawal (`20260101000800_disbursements_api.sql`).
pub const PAYOUT_TOPIC: &str = "payout";
pub const STATUS_TOPIC: &str = "mpesa.b2c_status";

/// Handled: `Ok(Ok(()))`; to retry later: `Ok(Err(why))`.
pub type Handled = Result<Result<(), String>, StoreError>;

fn request_id(message: &OutboxMessage) -> Option<Uuid> {
    message
        .payload
        .get("disbursement_request_id")
        .and_then(|v| v.as_str())
        .and_then(|v| Uuid::parse_str(v).ok())
}

/// Pays an approved withdrawal, once.
pub async fn pay(pool: &PgPool, mpesa: &Mpesa, message: &OutboxMessage) -> Handled {
    let Some(id) = request_id(message) else {
        return Ok(Err("the payload has no disbursement_request_id".into()));
    };
    let Some(payout) = store::payout(pool, id).await? else {
        return Ok(Ok(()));
    };
    match payout.status.as_str() {
        "approved" => {}
        "processing" => {
            // Started before (a worker died, or Daraja was unreachable): ask, never pay again.
            if payout.conversation_id.is_none() {
                store::enqueue_status(pool, id, 0.0, "payout started without an answer").await?;
            }
            return Ok(Ok(()));
        }
        _ => return Ok(Ok(())), // settled (by M-Pesa, or in cash by the treasurer)
    }
    let phone = match pesachama_domain::Phone::parse(&payout.recipient_phone) {
        Ok(phone) => phone,
        Err(err) => {
            store::refused(
                pool,
                id,
                &format!("the recipient's phone cannot receive M-Pesa: {err}"),
            )
            .await?;
            return Ok(Ok(()));
        }
    };
    let Some(originator) = store::starting(pool, id).await? else {
        return Ok(Ok(())); // another worker got there first
    };
    let result_url = mpesa.callback_url("b2c/result");
    let timeout_url = mpesa.callback_url("b2c/timeout");
    let remarks = format!("Chama withdrawal: {}", payout.reason);
    let payment = B2cPayment {
        amount: payout.amount / 100,
        phone: &phone,
        remarks: &remarks,
        occasion: "Chama withdrawal",
        result_url: &result_url,
        timeout_url: &timeout_url,
    };
    match mpesa.client.b2c_payment(&payment, &originator).await {
        Ok(accepted) => {
            store::accepted(pool, id, &accepted.conversation_id).await?;
            tracing::info!(disbursement_request_id = %id, conversation_id = %accepted.conversation_id, "B2C payout sent");
        }
        Err(err @ DarajaError::Rejected { .. }) => {
            tracing::warn!(disbursement_request_id = %id, error = %err, "B2C payout refused; the money goes back to the chama");
            store::refused(pool, id, &format!("M-Pesa refused the payout: {err}")).await?;
        }
        Err(err) => {
            // Daraja may or may not have it: find out before anything else is paid.
            tracing::warn!(disbursement_request_id = %id, error = %err, "B2C payout not confirmed; its status will be queried");
            store::enqueue_status(pool, id, 60.0, "Daraja did not answer the payout").await?;
        }
    }
    Ok(Ok(()))
}

/// Asks Daraja what became of a payout; the answer comes to the status callbacks.
pub async fn query_status(pool: &PgPool, mpesa: &Mpesa, message: &OutboxMessage) -> Handled {
    let Some(id) = request_id(message) else {
        return Ok(Err("the payload has no disbursement_request_id".into()));
    };
    let Some(payout) = store::payout(pool, id).await? else {
        return Ok(Ok(()));
    };
    let (true, Some(originator)) = (
        payout.status == "processing",
        payout.originator_conversation_id,
    ) else {
        return Ok(Ok(())); // settled meanwhile
    };
    let result_url = mpesa.callback_url("status/result");
    let timeout_url = mpesa.callback_url("status/timeout");
    match mpesa
        .client
        .transaction_status("", &originator, &result_url, &timeout_url)
        .await
    {
        Ok(query_id) => {
            store::status_query_sent(pool, id, &query_id).await?;
            Ok(Ok(()))
        }
        Err(err) => Ok(Err(err.to_string())),
    }
}

/// Reads a payout callback of inbox kind `kind` (`b2c_result`, `b2c_timeout`, `status_result`,
/// `status_timeout`) as the result of the payment it is about.
pub(crate) fn parse_result(
    kind: &str,
    payload: &serde_json::Value,
) -> Result<B2cResult, CallbackError> {
    match kind {
        "status_result" | "status_timeout" => parse_status_result(payload),
        _ => parse_b2c_result(payload),
    }
}

/// Applies a stored B2C result, queue timeout or status result.
pub async fn apply(
    pool: &PgPool,
    _mpesa: &Mpesa,
    callback: &StoredCallback,
) -> Result<String, StoreError> {
    let parsed = match parse_result(&callback.kind, &callback.payload) {
        Ok(parsed) => parsed,
        Err(err) => {
            inbox::hold_callback(pool, callback.id, &err.0).await?;
            return Ok("review".to_owned());
        }
    };
    let Ok(result_code) = i32::try_from(parsed.result_code) else {
        inbox::hold_callback(pool, callback.id, "ResultCode out of range").await?;
        return Ok("review".to_owned());
    };
    let outcome = B2cOutcome {
        originator_conversation_id: &parsed.originator_conversation_id,
        conversation_id: &parsed.conversation_id,
        result_code,
        result_desc: &parsed.result_desc,
        receipt: parsed.receipt.as_deref(),
        amount: parsed.amount.map(|a| a.minor()),
    };
    let status = store::apply(pool, callback.id, &outcome).await?;
    tracing::info!(callback_id = callback.id, kind = %callback.kind, conversation_id = %parsed.conversation_id, result_code, status, "B2C callback");
    Ok(status)
}
