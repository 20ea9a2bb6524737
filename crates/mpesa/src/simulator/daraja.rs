//! The simulator's endpoints, with Daraja's checks and error shapes.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{B2cRecord, Scenario, Simulator, StkRecord, deliver, lock};
use crate::time::stk_password;

type Answer = Result<Json<Value>, Refusal>;

/// A refusal in Daraja's error shape.
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({
                "requestId": uuid::Uuid::new_v4().simple().to_string(),
                "errorCode": self.code,
                "errorMessage": self.message,
            })),
        )
            .into_response()
    }
}

pub(super) fn router(simulator: Simulator) -> axum::Router {
    axum::Router::new()
        .route("/oauth/v1/generate", get(token))
        .route("/mpesa/stkpush/v1/processrequest", post(stk_push))
        .route("/mpesa/stkpushquery/v1/query", post(stk_query))
        .route("/mpesa/c2b/v1/registerurl", post(register_urls))
        .route("/mpesa/c2b/v1/simulate", post(c2b_simulate))
        .route("/mpesa/b2c/v1/paymentrequest", post(b2c_payment))
        .route(
            "/mpesa/transactionstatus/v1/query",
            post(transaction_status),
        )
        .with_state(simulator)
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_owned(),
    }
}

fn invalid(field: &str) -> Refusal {
    error(
        StatusCode::BAD_REQUEST,
        "400.002.02",
        &format!("Bad Request - Invalid {field}"),
    )
}

fn random_digits(n: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A receipt as M-Pesa writes them: ten capital letters and digits.
pub(super) fn receipt() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let rest: String = (0..9)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("S{rest}")
}

/// A simulated outage (see `fail_next`) or a missing/unknown token.
fn gate(simulator: &Simulator, headers: &HeaderMap) -> Result<(), Refusal> {
    let outages = &simulator.inner.outages;
    if outages
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "503.001.01",
            "Service Unavailable",
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !lock(&simulator.inner.tokens).contains(token) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "404.001.04",
            "Invalid Access Token",
        ));
    }
    Ok(())
}

async fn token(
    State(simulator): State<Simulator>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    if query.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "400.008.02",
            "Invalid grant type passed",
        ));
    }
    let c = &simulator.inner.config;
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", c.consumer_key, c.consumer_secret));
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .unwrap_or_default();
    if given != expected {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "400.008.01",
            "Invalid Authentication passed",
        ));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    lock(&simulator.inner.tokens).insert(token.clone());
    simulator
        .inner
        .counters
        .tokens_issued
        .fetch_add(1, Ordering::SeqCst);
    Ok(Json(json!({ "access_token": token, "expires_in": "3599" })))
}

fn str_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, Refusal> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(key))
}

fn msisdn(body: &Value, key: &str) -> Result<String, Refusal> {
    let text = match body.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid(key)),
    };
    let ok = text.len() == 12
        && (text.starts_with("2547") || text.starts_with("2541"))
        && text.bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(text) } else { Err(invalid(key)) }
}

fn amount(body: &Value) -> Result<i64, Refusal> {
    match body.get("Amount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .filter(|a| *a >= 1 && *a <= 250_000)
    .ok_or_else(|| invalid("Amount"))
}

/// The STK password must be built from this body's own Timestamp.
fn check_password(simulator: &Simulator, body: &Value) -> Result<(), Refusal> {
    let c = &simulator.inner.config;
    if str_field(body, "BusinessShortCode")? != c.shortcode {
        return Err(invalid("BusinessShortCode"));
    }
    let ts = str_field(body, "Timestamp")?;
    if crate::time::parse_timestamp(ts).is_none() {
        return Err(invalid("Timestamp"));
    }
    if str_field(body, "Password")? != stk_password(&c.shortcode, &c.passkey, ts) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "400.002.05",
            "Invalid Request Payload",
        ));
    }
    Ok(())
}

fn url(body: &Value, key: &str) -> Result<String, Refusal> {
    let text = str_field(body, key)?;
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_owned())
    } else {
        Err(invalid(key))
    }
}

async fn stk_push(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    check_password(&simulator, &body)?;
    if str_field(&body, "TransactionType")? != "CustomerPayBillOnline" {
        return Err(invalid("TransactionType"));
    }
    let amount = amount(&body)?;
    let party_a = msisdn(&body, "PartyA")?;
    let phone = msisdn(&body, "PhoneNumber")?;
    if str_field(&body, "PartyB")? != simulator.inner.config.shortcode {
        return Err(invalid("PartyB"));
    }
    let callback_url = url(&body, "CallBackURL")?;
    if str_field(&body, "AccountReference")?.chars().count() > 12 {
        return Err(invalid("AccountReference"));
    }
    if str_field(&body, "TransactionDesc")?.chars().count() > 13 {
        return Err(invalid("TransactionDesc"));
    }
    let scenario = lock(&simulator.inner.scenarios).pick(&phone, amount);
    if scenario == Scenario::Refuse || party_a != phone {
        return Err(invalid("PhoneNumber"));
    }
    simulator
        .inner
        .counters
        .stk_pushes
        .fetch_add(1, Ordering::SeqCst);
    let merchant = format!("{}-{}-1", random_digits(5), random_digits(8));
    let checkout = format!(
        "ws_CO_{}{}",
        chrono::Utc::now()
            .with_timezone(&crate::time::nairobi())
            .format("%d%m%Y%H%M%S"),
        random_digits(10)
    );
    lock(&simulator.inner.stk).insert(
        checkout.clone(),
        StkRecord {
            merchant_request_id: merchant.clone(),
            msisdn: phone.clone(),
            amount,
            outcome: None,
        },
    );
    let lost = simulator
        .inner
        .lost_answers
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let delivery = deliver::stk(simulator.clone(), checkout.clone(), callback_url, scenario);
    if scenario == Scenario::CallbackFirst {
        delivery.await;
    } else {
        let simulator = simulator.clone();
        tokio::spawn(async move {
            tokio::time::sleep(simulator.inner.config.delay).await;
            delivery.await;
        });
    }
    if lost {
        // The prompt went out; the answer saying so did not.
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500.003.02",
            "Internal Server Error",
        ));
    }
    Ok(Json(json!({
        "MerchantRequestID": merchant,
        "CheckoutRequestID": checkout,
        "ResponseCode": "0",
        "ResponseDescription": "Success. Request accepted for processing",
        "CustomerMessage": "Success. Request accepted for processing",
    })))
}

async fn stk_query(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    check_password(&simulator, &body)?;
    simulator
        .inner
        .counters
        .stk_queries
        .fetch_add(1, Ordering::SeqCst);
    let checkout = str_field(&body, "CheckoutRequestID")?;
    let record = lock(&simulator.inner.stk).get(checkout).cloned();
    let Some(record) = record else {
        return Err(invalid("CheckoutRequestID"));
    };
    let Some((code, desc, _)) = record.outcome else {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500.001.1001",
            "The transaction is being processed",
        ));
    };
    Ok(Json(json!({
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": record.merchant_request_id,
        "CheckoutRequestID": checkout,
        "ResultCode": code.to_string(),
        "ResultDesc": desc,
    })))
}

async fn register_urls(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    if str_field(&body, "ShortCode")? != simulator.inner.config.shortcode {
        return Err(invalid("ShortCode"));
    }
    if !matches!(str_field(&body, "ResponseType")?, "Completed" | "Cancelled") {
        return Err(invalid("ResponseType"));
    }
    let validation = url(&body, "ValidationURL")?;
    let confirmation = url(&body, "ConfirmationURL")?;
    *lock(&simulator.inner.c2b_urls) = Some((validation, confirmation));
    Ok(Json(json!({
        "OriginatorCoversationID": uuid::Uuid::new_v4().to_string(),
        "ResponseCode": "0",
        "ResponseDescription": "Success",
    })))
}

/// A customer pays the paybill: validation first, then (if accepted) confirmation.
async fn c2b_simulate(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    let amount = amount(&body)?;
    let phone = msisdn(&body, "Msisdn")?;
    let bill_ref = str_field(&body, "BillRefNumber")?.to_owned();
    let urls = lock(&simulator.inner.c2b_urls).clone();
    let Some((validation, confirmation)) = urls else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "400.003.01",
            "No URLs registered for this ShortCode",
        ));
    };
    let trans_id = receipt();
    let accepted = deliver::c2b(
        &simulator,
        &validation,
        &confirmation,
        &trans_id,
        amount,
        &phone,
        &bill_ref,
    )
    .await;
    Ok(Json(json!({
        "OriginatorCoversationID": uuid::Uuid::new_v4().to_string(),
        "ResponseCode": "0",
        "ResponseDescription": if accepted { "Accept the service request successfully." } else { "The payment was rejected by validation." },
        "TransID": trans_id,
    })))
}

async fn b2c_payment(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    let c = &simulator.inner.config;
    if str_field(&body, "InitiatorName")? != c.initiator_name {
        return Err(invalid("InitiatorName"));
    }
    let credential = str_field(&body, "SecurityCredential")?;
    if simulator.inner.certificate.decrypt(credential).as_deref()
        != Some(c.initiator_password.as_str())
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "400.002.02",
            "Bad Request - Invalid SecurityCredential",
        ));
    }
    if str_field(&body, "CommandID")? != "BusinessPayment" {
        return Err(invalid("CommandID"));
    }
    if str_field(&body, "PartyA")? != c.shortcode {
        return Err(invalid("PartyA"));
    }
    let amount = amount(&body)?;
    let phone = msisdn(&body, "PartyB")?;
    let result_url = url(&body, "ResultURL")?;
    let timeout_url = url(&body, "QueueTimeOutURL")?;
    let scenario = lock(&simulator.inner.scenarios).pick(&phone, amount);
    if scenario == Scenario::Refuse {
        return Err(invalid("PartyB"));
    }
    simulator
        .inner
        .counters
        .b2c_payments
        .fetch_add(1, Ordering::SeqCst);
    let originator = body
        .get("OriginatorConversationID")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}-{}-1", random_digits(5), random_digits(8)));
    let conversation = format!(
        "AG_{}_{}",
        chrono::Utc::now().format("%Y%m%d"),
        random_digits(20)
    );
    lock(&simulator.inner.b2c).insert(
        conversation.clone(),
        B2cRecord {
            conversation_id: conversation.clone(),
            originator_conversation_id: originator.clone(),
            msisdn: phone,
            amount,
            outcome: None,
        },
    );
    let simulator2 = simulator.clone();
    let conversation2 = conversation.clone();
    tokio::spawn(async move {
        tokio::time::sleep(simulator2.inner.config.delay).await;
        deliver::b2c(
            &simulator2,
            &conversation2,
            &result_url,
            &timeout_url,
            scenario,
        )
        .await;
    });
    Ok(Json(json!({
        "ConversationID": conversation,
        "OriginatorConversationID": originator,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    })))
}

/// Looks a B2C payment up by OriginatorConversationID (or TransactionID) and delivers what
/// became of it to ResultURL; one never made is paid now if its scenario times out.
async fn transaction_status(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    gate(&simulator, &headers)?;
    if simulator
        .inner
        .certificate
        .decrypt(str_field(&body, "SecurityCredential")?)
        .as_deref()
        != Some(simulator.inner.config.initiator_password.as_str())
    {
        return Err(invalid("SecurityCredential"));
    }
    simulator
        .inner
        .counters
        .status_queries
        .fetch_add(1, Ordering::SeqCst);
    let originator = body
        .get("OriginatorConversationID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let transaction = body
        .get("TransactionID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let result_url = url(&body, "ResultURL")?;
    let found = lock(&simulator.inner.b2c)
        .values()
        .find(|r| {
            (!originator.is_empty() && r.originator_conversation_id == originator)
                || r.outcome.as_ref().and_then(|o| o.2.as_deref()) == Some(transaction.as_str())
        })
        .cloned();
    // The query gets ids of its own; its answer comes under them, as Daraja's does.
    let query = deliver::StatusQuery {
        originator_conversation_id: uuid::Uuid::new_v4().to_string(),
        conversation_id: format!("AG_{}", random_digits(20)),
        occasion: body
            .get("Occasion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let answer = json!({
        "ConversationID": query.conversation_id,
        "OriginatorConversationID": query.originator_conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    });
    let simulator2 = simulator.clone();
    tokio::spawn(async move {
        tokio::time::sleep(simulator2.inner.config.delay).await;
        deliver::status(&simulator2, found, &query, &result_url).await;
    });
    Ok(Json(answer))
}
