//! Strict parsers for what Daraja posts back. Nothing is trusted: every field used is checked
//! for presence and type, amounts become cents once, phones become E.164 once. Metadata items
//! are read by name (their order is not promised), with values as numbers or strings.

use chrono::{DateTime, Utc};
use pesachama_domain::{Currency, Money, Phone};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CallbackError(pub String);

fn bad(message: impl Into<String>) -> CallbackError {
    CallbackError(message.into())
}

/// An STK push's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkCallback {
    pub merchant_request_id: String,
    pub checkout_request_id: String,
    pub result_code: i64,
    pub result_desc: String,
    /// Present exactly when `result_code` is 0.
    pub paid: Option<StkPaid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkPaid {
    pub amount: Money,
    pub receipt: String,
    pub phone: Phone,
    pub paid_at: Option<DateTime<Utc>>,
}

fn text<'a>(object: &'a Value, key: &str) -> Result<&'a str, CallbackError> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty() && s.len() <= 100)
        .ok_or_else(|| bad(format!("{key} is missing or not a string")))
}

/// An integer given as a JSON number or a string of digits.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Shillings as a number (`1`, `1.0`, `5000.50`) or a string (`"5000.00"`), as cents.
pub fn shillings(value: &Value) -> Result<Money, CallbackError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(bad("the amount is not a number")),
    };
    Money::parse_major(&text, Currency::Kes).map_err(|err| bad(format!("amount: {err}")))
}

/// A phone as a JSON number (254712345678) or a string.
fn phone(value: &Value) -> Result<Phone, CallbackError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(bad("PhoneNumber is not a number")),
    };
    Phone::parse(&text).map_err(|err| bad(format!("PhoneNumber: {err}")))
}

/// Reads `{"Body":{"stkCallback":{...}}}`.
pub fn parse_stk(payload: &Value) -> Result<StkCallback, CallbackError> {
    let callback = payload
        .get("Body")
        .and_then(|b| b.get("stkCallback"))
        .filter(|c| c.is_object())
        .ok_or_else(|| bad("Body.stkCallback is missing"))?;
    let result_code = callback
        .get("ResultCode")
        .and_then(integer)
        .ok_or_else(|| bad("ResultCode is missing or not a number"))?;
    let mut parsed = StkCallback {
        merchant_request_id: text(callback, "MerchantRequestID")?.to_owned(),
        checkout_request_id: text(callback, "CheckoutRequestID")?.to_owned(),
        result_code,
        result_desc: callback
            .get("ResultDesc")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        paid: None,
    };
    if result_code != 0 {
        return Ok(parsed);
    }
    let items = callback
        .get("CallbackMetadata")
        .and_then(|m| m.get("Item"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("a successful result needs CallbackMetadata.Item"))?;
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i.get("Name").and_then(Value::as_str) == Some(name))
            .and_then(|i| i.get("Value"))
            .filter(|v| !v.is_null())
    };
    let amount = shillings(item("Amount").ok_or_else(|| bad("the Amount item is missing"))?)?;
    let receipt = item("MpesaReceiptNumber")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|r| {
            r.len() == 10
                && r.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .ok_or_else(|| bad("MpesaReceiptNumber is missing or not 10 letters and digits"))?
        .to_owned();
    let phone = phone(item("PhoneNumber").ok_or_else(|| bad("the PhoneNumber item is missing"))?)?;
    let paid_at = item("TransactionDate")
        .and_then(integer)
        .and_then(|n| crate::time::parse_timestamp(&n.to_string()));
    parsed.paid = Some(StkPaid {
        amount,
        receipt,
        phone,
        paid_at,
    });
    Ok(parsed)
}

/// A B2C (or transaction status) result: `{"Result":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2cResult {
    pub result_code: i64,
    pub result_desc: String,
    pub originator_conversation_id: String,
    pub conversation_id: String,
    pub transaction_id: Option<String>,
    /// From ResultParameters: TransactionReceipt and TransactionAmount, when paid.
    pub receipt: Option<String>,
    pub amount: Option<Money>,
}

/// The `ResultParameters.ResultParameter` items of a `Result` (a single item may come bare).
fn result_parameters(result: &Value) -> Vec<&Value> {
    result
        .get("ResultParameters")
        .and_then(|p| p.get("ResultParameter"))
        .map(|p| match p {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        })
        .unwrap_or_default()
}

/// The value of the parameter whose `Key` is `key`.
fn parameter<'a>(parameters: &[&'a Value], key: &str) -> Option<&'a Value> {
    parameters
        .iter()
        .find(|p| p.get("Key").and_then(Value::as_str) == Some(key))
        .and_then(|p| p.get("Value"))
}

/// The receipt a parameter names, or else the result's TransactionID, if it is one: ten
/// capital letters and digits.
fn receipt_of(result: &Value, named: Option<&str>) -> Option<String> {
    named
        .or_else(|| result.get("TransactionID").and_then(Value::as_str))
        .filter(|r| {
            r.len() == 10
                && r.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .map(str::to_owned)
}

/// The `Result` object of a B2C or status answer, and its ResultCode.
fn result_of(payload: &Value) -> Result<(&Value, i64), CallbackError> {
    let result = payload
        .get("Result")
        .filter(|r| r.is_object())
        .ok_or_else(|| bad("Result is missing"))?;
    let code = result
        .get("ResultCode")
        .and_then(integer)
        .ok_or_else(|| bad("ResultCode is missing or not a number"))?;
    Ok((result, code))
}

/// A string field of `object`, at most `limit` characters; empty when it is missing.
fn clipped(object: &Value, key: &str, limit: usize) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(limit)
        .collect()
}

/// An amount parameter in shillings, when present.
fn amount_parameter(parameters: &[&Value], key: &str) -> Result<Option<Money>, CallbackError> {
    parameter(parameters, key).map(shillings).transpose()
}

pub fn parse_b2c_result(payload: &Value) -> Result<B2cResult, CallbackError> {
    let (result, result_code) = result_of(payload)?;
    let parameters = result_parameters(result);
    let receipt = receipt_of(
        result,
        parameter(&parameters, "TransactionReceipt").and_then(Value::as_str),
    );
    if result_code == 0 && receipt.is_none() {
        return Err(bad("a successful B2C result needs a TransactionReceipt"));
    }
    Ok(B2cResult {
        result_code,
        result_desc: clipped(result, "ResultDesc", 500),
        originator_conversation_id: text(result, "OriginatorConversationID")?.to_owned(),
        // Empty in an answer about a transaction Daraja does not know.
        conversation_id: clipped(result, "ConversationID", 100),
        transaction_id: result
            .get("TransactionID")
            .and_then(Value::as_str)
            .map(str::to_owned),
        receipt,
        amount: amount_parameter(&parameters, "TransactionAmount")?,
    })
}

/// The ResultCode PesaChama gives a status answer whose TransactionStatus says the payment
/// failed (the query itself succeeded, so Daraja's ResultCode is 0).
pub const STATUS_FAILED: i64 = 9000;

/// A transaction status result (or its queue timeout), read as the result of the payment it is
/// about.
///
/// Daraja answers a `TransactionStatusQuery` under the query's own OriginatorConversationID and
/// ConversationID; the payment's are among the ResultParameters (`OriginatorConversationID`,
/// `ConversationID`), with `ReceiptNo`, `Amount` and `TransactionStatus`. So the payment's ids
/// come from the parameters when present; an answer without parameters (not found, timeout)
/// keeps the query's own ids, by which the database matches it to the query it answers.
/// `TransactionStatus` "Completed" is a success; "Failed", "Declined", "Cancelled",
/// "Reversed" and "Expired" are a failure ([`STATUS_FAILED`]); any other is refused (not final).
pub fn parse_status_result(payload: &Value) -> Result<B2cResult, CallbackError> {
    let (result, query_code) = result_of(payload)?;
    let query_id = text(result, "OriginatorConversationID")?;
    let parameters = result_parameters(result);
    let parameter_text = |key: &str| match parameter(&parameters, key)? {
        Value::Null => None,
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        other => Some(other.to_string()),
    };
    let receipt = receipt_of(result, parameter_text("ReceiptNo").as_deref());
    let desc = clipped(result, "ResultDesc", 500);
    let (result_code, result_desc) = match (query_code, parameter_text("TransactionStatus")) {
        (0, Some(status)) => match status.to_ascii_lowercase().as_str() {
            "completed" => (0, desc),
            "failed" | "declined" | "cancelled" | "canceled" | "reversed" | "expired" => (
                STATUS_FAILED,
                format!("the status query says the payment is {status}"),
            ),
            _ => {
                return Err(bad(format!(
                    "TransactionStatus {status} is not final: ask again later"
                )));
            }
        },
        (code, _) => (code, desc),
    };
    if result_code == 0 && receipt.is_none() {
        return Err(bad("a completed payment needs a ReceiptNo"));
    }
    let clip = |s: String| s.chars().take(100).collect::<String>();
    Ok(B2cResult {
        result_code,
        result_desc,
        originator_conversation_id: clip(
            parameter_text("OriginatorConversationID").unwrap_or_else(|| query_id.to_owned()),
        ),
        conversation_id: parameter_text("ConversationID")
            .map(clip)
            .unwrap_or_else(|| clipped(result, "ConversationID", 100)),
        transaction_id: result
            .get("TransactionID")
            .and_then(Value::as_str)
            .map(str::to_owned),
        receipt,
        amount: amount_parameter(&parameters, "Amount")?,
    })
}

/// A paybill payment (validation or confirmation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bPayment {
    pub trans_id: String,
    pub amount: Money,
    pub bill_ref: String,
    pub short_code: String,
    /// `None` when Safaricom sent a hashed MSISDN.
    pub phone: Option<Phone>,
    pub paid_at: Option<DateTime<Utc>>,
}

pub fn parse_c2b(payload: &Value) -> Result<C2bPayment, CallbackError> {
    if !payload.is_object() {
        return Err(bad("the body is not a JSON object"));
    }
    let trans_id = text(payload, "TransID")?;
    if !(trans_id.len() == 10
        && trans_id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    {
        return Err(bad("TransID is not 10 letters and digits"));
    }
    let amount = shillings(
        payload
            .get("TransAmount")
            .ok_or_else(|| bad("TransAmount is missing"))?,
    )?;
    let phone = payload.get("MSISDN").and_then(|v| phone(v).ok());
    Ok(C2bPayment {
        trans_id: trans_id.to_owned(),
        amount,
        bill_ref: payload
            .get("BillRefNumber")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_uppercase())
            .unwrap_or_default(),
        short_code: payload
            .get("BusinessShortCode")
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default(),
        phone,
        paid_at: payload
            .get("TransTime")
            .and_then(integer)
            .and_then(|n| crate::time::parse_timestamp(&n.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn success(items: Value) -> Value {
        json!({"Body": {"stkCallback": {
            "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {"Item": items}}}})
    }

    #[test]
    fn reads_the_documented_success_shape_by_item_name() {
        let parsed = parse_stk(&success(json!([
            {"Name": "PhoneNumber", "Value": 254768130105_i64},
            {"Name": "Amount", "Value": 1.00},
            {"Name": "MpesaReceiptNumber", "Value": "RLA0R69NXM"},
            {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": 20231210133416_i64}
        ])))
        .unwrap();
        let paid = parsed.paid.unwrap();
        assert_eq!(paid.amount.minor(), 100);
        assert_eq!(paid.receipt, "RLA0R69NXM");
        assert_eq!(paid.phone.as_e164(), "+254768130105");
        assert_eq!(
            crate::time::timestamp(paid.paid_at.unwrap()),
            "20231210133416"
        );
    }

    #[test]
    fn amounts_and_phones_may_be_strings() {
        let parsed = parse_stk(&success(json!([
            {"Name": "Amount", "Value": "1500.50"},
            {"Name": "MpesaReceiptNumber", "Value": "RLA0R69NXM"},
            {"Name": "PhoneNumber", "Value": "254712345678"}
        ])))
        .unwrap();
        assert_eq!(parsed.paid.unwrap().amount.minor(), 150_050);
    }

    #[test]
    fn failures_carry_no_metadata_and_successes_must() {
        let failed = parse_stk(&json!({"Body": {"stkCallback": {
            "MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": 1032,
            "ResultDesc": "Request cancelled by user"}}}))
        .unwrap();
        assert_eq!((failed.result_code, failed.paid), (1032, None));
        let err = parse_stk(&json!({"Body": {"stkCallback": {
            "MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": 0}}}))
        .unwrap_err();
        assert!(err.0.contains("CallbackMetadata"), "{err}");
    }

    #[test]
    fn refuses_what_is_not_a_callback() {
        for payload in [
            json!({}),
            json!({"Body": {}}),
            json!({"Body": {"stkCallback": {"CheckoutRequestID": "c", "ResultCode": 0}}}),
            json!({"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": "x"}}}),
        ] {
            assert!(parse_stk(&payload).is_err(), "{payload}");
        }
        let negative = success(json!([
            {"Name": "Amount", "Value": -5},
            {"Name": "MpesaReceiptNumber", "Value": "RLA0R69NXM"},
            {"Name": "PhoneNumber", "Value": 254712345678_i64}
        ]));
        assert!(parse_stk(&negative).is_err());
    }

    #[test]
    fn reads_a_b2c_result_and_a_c2b_payment() {
        let result = parse_b2c_result(&json!({"Result": {
            "ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": "o-1", "ConversationID": "AG_1", "TransactionID": "NLJ41HAY6Q",
            "ResultParameters": {"ResultParameter": [
                {"Key": "TransactionAmount", "Value": 10},
                {"Key": "TransactionReceipt", "Value": "NLJ41HAY6Q"}]}}}))
        .unwrap();
        assert_eq!(result.receipt.as_deref(), Some("NLJ41HAY6Q"));
        assert_eq!(result.amount.map(Money::minor), Some(1000));
        let c2b = parse_c2b(
            &json!({"TransactionType": "Pay Bill", "TransID": "RKTQDM7W6S",
            "TransTime": "20191122063845", "TransAmount": "5000.00", "BusinessShortCode": "600638",
            "BillRefNumber": "umoja", "MSISDN": "254708374149"}),
        )
        .unwrap();
        assert_eq!(
            (c2b.amount.minor(), c2b.bill_ref.as_str()),
            (500_000, "UMOJA")
        );
    }

    #[test]
    fn a_status_result_is_read_as_the_payment_it_is_about() {
        // The shape Daraja documents: the query's own ids at the top, the payment's inside.
        let answer = |status: &str| {
            json!({"Result": {
                "ResultType": 0, "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "OriginatorConversationID": "query-7", "ConversationID": "AG_query",
                "TransactionID": "NH61AB9NVB",
                "ResultParameters": {"ResultParameter": [
                    {"Key": "DebitPartyName", "Value": "600310 - Safaricom333"},
                    {"Key": "CreditPartyName", "Value": "254708374149 - John Doe"},
                    {"Key": "OriginatorConversationID", "Value": "pesachama-1"},
                    {"Key": "InitiatedTime", "Value": 20_190_806_094_205_i64},
                    {"Key": "CreditPartyCharges"},
                    {"Key": "TransactionStatus", "Value": status},
                    {"Key": "Amount", "Value": 150.5},
                    {"Key": "ConversationID", "Value": "AG_payment"},
                    {"Key": "ReceiptNo", "Value": "NH61AB9NVB"}]},
                "ReferenceData": {"ReferenceItem": {"Key": "Occasion", "Value": "pesachama-1"}}}})
        };
        let done = parse_status_result(&answer("Completed")).unwrap();
        assert_eq!(done.originator_conversation_id, "pesachama-1");
        assert_eq!(done.conversation_id, "AG_payment");
        assert_eq!(done.result_code, 0);
        assert_eq!(done.receipt.as_deref(), Some("NH61AB9NVB"));
        assert_eq!(done.amount.map(Money::minor), Some(15_050));
        let failed = parse_status_result(&answer("Failed")).unwrap();
        assert_eq!(failed.result_code, STATUS_FAILED);
        assert!(failed.result_desc.contains("Failed"));
        assert!(
            parse_status_result(&answer("Pending")).is_err(),
            "not final"
        );
        // Not found: no parameters, so only the query's id links it to the payment.
        let unknown = parse_status_result(&json!({"Result": {
            "ResultType": 0, "ResultCode": 2032, "ResultDesc": "The transaction was not found.",
            "OriginatorConversationID": "query-8", "ConversationID": "AG_q8", "TransactionID": ""}}))
        .unwrap();
        assert_eq!(unknown.originator_conversation_id, "query-8");
        assert_eq!(unknown.conversation_id, "AG_q8");
        assert_eq!(unknown.result_code, 2032);
        assert!(parse_status_result(&json!({"Result": {"ResultCode": 0}})).is_err());
    }
}
