//! M-Pesa routes: a member starts a contribution by STK push; Daraja posts its callbacks.
//!
//! Callbacks are not signed by Safaricom, so they are defended in layers: the path holds a
//! secret token (compared in constant time; a wrong one is a 404 and nothing is stored), an
//! optional source-address allow-list (403, logged), and a strict parser. A callback is stored
//! raw in the inbox under its idempotency key before anything else, answered with 200, and then
//! applied; one that cannot be read is stored for review and answered with 400.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pesachama_domain::Phone;
use pesachama_mpesa::callback::parse_stk;
use pesachama_store::mpesa as store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chamas::cents;
use super::transactions::{idempotency_key, request_hash};
use super::{invalid, signed_in};
use crate::gate;
use crate::gotrue::{AuthError, Caller, ClientIp};
use crate::mpesa_worker::{Mpesa, apply_soon};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMpesaContribution {
    /// Cents, a whole number of shillings from KES 1 to KES 250,000 (M-Pesa takes no cents):
    /// KES 500 is 50000.
    #[schema(value_type = i64)]
    pub amount: Value,
    /// The phone that gets the prompt: only the member's own verified number, which is used
    /// when this is left out (any Kenyan spelling). Another number is refused (422).
    pub phone: Option<String>,
}

/// Starts a contribution by M-Pesa: the member's own verified phone gets a PIN prompt, and the
/// contribution is credited when M-Pesa confirms the payment. Send an `Idempotency-Key`: a
/// retry with the same key and body answers the first answer again and sends no second prompt.
/// At most 5 prompts per 10 minutes per member and per phone (429 beyond). The rules are
/// `public.start_mpesa_contribution`'s, which the Data API's `rpc` meets too.
#[utoipa::path(
    post, path = "/chamas/{id}/contributions/mpesa", tag = "money",
    request_body = NewMpesaContribution,
    params(
        ("id" = Uuid, Path, description = "the chama"),
        ("Idempotency-Key" = String, Header, description = "unique per contribution")
    ),
    responses(
        (status = 202, description = "the prompt is on its way; the payment request", body = Value),
        (status = 404, description = "no such chama among the caller's", body = crate::error::ErrorBody),
        (status = 409, description = "the same key is in flight", body = crate::error::ErrorBody),
        (status = 422, description = "`details.field` names the input: `amount`, or `phone` (not the member's verified number, or none verified)", body = crate::error::ErrorBody),
        (status = 429, description = "`too_many_requests`: too many prompts for this member or phone lately", body = crate::error::ErrorBody),
        (status = 503, description = "`mpesa_not_configured`: this server has no Daraja settings", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn contribute(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    // Without Daraja nobody would send the prompt: refuse before anything is written.
    if state.config.mpesa.is_none() {
        return Err(ApiError::mpesa_not_configured());
    }
    let key = idempotency_key(&headers)?;
    let new: NewMpesaContribution = super::json_body(&body)?;
    // Whole shillings and the ceiling are checked with the other rules of a prompt, in
    // `internal.start_stk_contribution`.
    let amount = cents("amount", &new.amount)?;
    let phone = match &new.phone {
        Some(text) => Some(Phone::parse(text).map_err(|err| invalid("phone", err.to_string()))?),
        None => None,
    };
    let hash = request_hash(&(chama_id, amount, phone.as_ref().map(Phone::as_e164)))?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value =
        sqlx::query_scalar("select public.start_mpesa_contribution($1, $2, $3, $4, $5)")
            .bind(chama_id)
            .bind(amount)
            .bind(phone.as_ref().map(Phone::as_e164))
            .bind(&key)
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let request = answer["payment_request"].clone();
    let shillings = request["amount"].as_i64().unwrap_or_default() / 100;
    let body = json!({
        "message": format!("Check your phone: an M-Pesa prompt for KES {shillings} is on its way. Enter your PIN to pay."),
        "payment_request": request,
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if answer["replayed"].as_bool().unwrap_or(false) {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A payment request of the caller's (or, for an official, of their chama's): its status, and
/// why it failed in words for the member.
#[utoipa::path(
    get, path = "/payment-requests/{id}", tag = "money",
    params(("id" = Uuid, Path, description = "the payment request")),
    responses(
        (status = 200, description = "the payment request", body = Value),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn get_payment_request(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let row: Option<Value> = sqlx::query_scalar(
        "select jsonb_build_object(
            'id', r.id, 'chama_id', r.chama_id, 'member_id', r.user_id, 'phone', r.phone,
            'amount', r.amount, 'currency', r.currency, 'status', r.status, 'channel', r.channel,
            'checkout_request_id', r.checkout_request_id, 'mpesa_receipt', r.mpesa_receipt,
            'failure_reason', r.failure_reason, 'transaction_id', r.transaction_id,
            'created_at', r.created_at, 'updated_at', r.updated_at)
           from public.payment_requests r where r.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(Json).ok_or(ApiError::NotFound)
}

/// A path fit for the logs: the secret token of a callback path is replaced by `***`.
pub(crate) fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/mpesa/callbacks/") {
        Some(rest) => {
            let kind = rest.split_once('/').map(|(_, kind)| kind).unwrap_or("");
            format!("/mpesa/callbacks/***/{kind}").into()
        }
        None => path.into(),
    }
}

/// The callback routes (not in the OpenAPI document: they are Daraja's, not the app's).
pub fn callbacks() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/mpesa/callbacks/{token}/stk", post(stk_callback))
        .route(
            "/mpesa/callbacks/{token}/c2b/validation",
            post(c2b_validation),
        )
        .route(
            "/mpesa/callbacks/{token}/c2b/confirmation",
            post(c2b_confirmation),
        )
        .route(
            "/mpesa/callbacks/{token}/b2c/result",
            post(|s, t, ip, b| b2c_callback(s, t, ip, b, "b2c_result")),
        )
        .route(
            "/mpesa/callbacks/{token}/b2c/timeout",
            post(|s, t, ip, b| b2c_callback(s, t, ip, b, "b2c_timeout")),
        )
        .route(
            "/mpesa/callbacks/{token}/status/result",
            post(|s, t, ip, b| b2c_callback(s, t, ip, b, "status_result")),
        )
        .route(
            "/mpesa/callbacks/{token}/status/timeout",
            post(|s, t, ip, b| b2c_callback(s, t, ip, b, "status_timeout")),
        )
}

/// Paybill validation: accept an account number naming an active chama, refuse any other
/// with C2B00012 (invalid account number) so the payer keeps their money.
async fn c2b_validation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ip: ClientIp,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &token, &ip)?;
    let kind = "c2b_validation";
    let (payload, parsed) = match read_callback(
        &state,
        kind,
        &body,
        &ip,
        pesachama_mpesa::callback::parse_c2b,
    )
    .await?
    {
        Ok(read) => read,
        Err(answer) => return Ok(answer),
    };
    let known = store::c2b_account_known(&state.pool, &parsed.bill_ref).await?;
    let (status, error) = if known {
        ("applied", None)
    } else {
        ("ignored", Some("unknown account number: refused"))
    };
    store::store_callback(
        &state.pool,
        kind,
        &parsed.trans_id,
        &payload,
        ip.text(),
        status,
        error,
    )
    .await?;
    if known {
        Ok(accepted())
    } else {
        Ok(Json(
            json!({ "ResultCode": "C2B00012", "ResultDesc": "Rejected: invalid account number" }),
        )
        .into_response())
    }
}

/// Paybill confirmation (the money is taken): stored under its TransID, then credited to the
/// member whose phone paid, in the chama the account number names, or held for review.
async fn c2b_confirmation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ip: ClientIp,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mpesa = admit(&state, &token, &ip)?;
    let kind = "c2b_confirmation";
    let (payload, parsed) = match read_callback(
        &state,
        kind,
        &body,
        &ip,
        pesachama_mpesa::callback::parse_c2b,
    )
    .await?
    {
        Ok(read) => read,
        Err(answer) => return Ok(answer),
    };
    let stored = store::store_callback(
        &state.pool,
        kind,
        &parsed.trans_id,
        &payload,
        ip.text(),
        "received",
        None,
    )
    .await?;
    if let Some(id) = stored {
        apply_soon(state.pool.clone(), mpesa, id);
    }
    Ok(accepted())
}

/// A B2C result or queue timeout (key: ConversationID), or a transaction status answer (key:
/// the body's digest, as one payout may be asked about more than once).
async fn b2c_callback(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ip: ClientIp,
    body: Bytes,
    kind: &'static str,
) -> Result<Response, ApiError> {
    let mpesa = admit(&state, &token, &ip)?;
    let parse = |payload: &Value| crate::mpesa_payouts::parse_result(kind, payload);
    let (payload, parsed) = match read_callback(&state, kind, &body, &ip, parse).await? {
        Ok(read) => read,
        Err(answer) => return Ok(answer),
    };
    let key = match kind {
        "b2c_result" | "b2c_timeout" if !parsed.conversation_id.is_empty() => {
            parsed.conversation_id
        }
        _ => hex::encode(sha2::Sha256::digest(&body)),
    };
    let stored = store::store_callback(
        &state.pool,
        kind,
        &key,
        &payload,
        ip.text(),
        "received",
        None,
    )
    .await?;
    if let Some(id) = stored {
        apply_soon(state.pool.clone(), mpesa, id);
    }
    Ok(accepted())
}

/// The token and the source address, checked before anything is read or stored. Without
/// M-Pesa (no Daraja, no simulator) every callback is a 503 and nothing is stored.
pub(crate) fn admit(state: &AppState, token: &str, ip: &ClientIp) -> Result<Arc<Mpesa>, ApiError> {
    let Some(mpesa) = state.config.mpesa.clone() else {
        return Err(ApiError::mpesa_not_configured());
    };
    if !gate::token_matches(token, &mpesa.callback_token) {
        return Err(ApiError::NotFound);
    }
    if !mpesa.allowed_sources.admits(ip) {
        tracing::warn!(source = ?ip.0, "M-Pesa callback from an address outside the allow-list refused");
        return Err(ApiError::Forbidden(
            "callbacks are accepted from Safaricom's addresses only".to_owned(),
        ));
    }
    Ok(mpesa)
}

/// Daraja's "received" answer.
pub(crate) fn accepted() -> Response {
    Json(json!({ "ResultCode": 0, "ResultDesc": "Accepted" })).into_response()
}

/// Stores a callback that cannot be read (for review) and answers 400 naming the problem.
/// The callback's JSON and what `parse` makes of it. A body that is not JSON, or not the shape
/// `parse` expects, is stored for review and answered 400: that answer is the `Err`.
async fn read_callback<T>(
    state: &AppState,
    kind: &str,
    body: &Bytes,
    ip: &ClientIp,
    parse: impl FnOnce(&Value) -> Result<T, pesachama_mpesa::callback::CallbackError>,
) -> Result<Result<(Value, T), Response>, ApiError> {
    let payload: Value = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(err) => {
            let problem = format!("not JSON: {err}");
            return refuse_malformed(state, kind, body, None, ip, problem)
                .await
                .map(Err);
        }
    };
    match parse(&payload) {
        Ok(parsed) => Ok(Ok((payload, parsed))),
        Err(err) => refuse_malformed(state, kind, body, Some(payload), ip, err.0)
            .await
            .map(Err),
    }
}

pub(crate) async fn refuse_malformed(
    state: &AppState,
    kind: &str,
    body: &Bytes,
    parsed: Option<Value>,
    ip: &ClientIp,
    problem: String,
) -> Result<Response, ApiError> {
    let key = format!("malformed:{}", hex::encode(sha2::Sha256::digest(body)));
    let payload = parsed.unwrap_or_else(
        || json!({ "raw": String::from_utf8_lossy(&body[..body.len().min(65_536)]) }),
    );
    store::store_callback(
        &state.pool,
        kind,
        &key,
        &payload,
        ip.text(),
        "review",
        Some(&problem),
    )
    .await?;
    tracing::warn!(kind, error = %problem, "malformed M-Pesa callback stored for review");
    Err(ApiError::MalformedBody(format!(
        "malformed callback: {problem}"
    )))
}

async fn stk_callback(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ip: ClientIp,
    body: Bytes,
) -> Result<Response, ApiError> {
    admit(&state, &token, &ip)?;
    let (payload, parsed) = match read_callback(&state, "stk", &body, &ip, parse_stk).await? {
        Ok(read) => read,
        Err(answer) => return Ok(answer),
    };
    // One CheckoutRequestID has one result; another result for it (a success after a
    // failure) is stored too, and the applier sends it to review.
    let key = format!("{}:{}", parsed.checkout_request_id, parsed.result_code);
    let checkout_request_id = parsed.checkout_request_id.clone();
    let applier = state
        .stk_applier()
        .ok_or_else(ApiError::mpesa_not_configured)?;
    if !applier.store(key, payload, ip.text(), parsed).await? {
        tracing::info!(%checkout_request_id, "repeated STK callback acknowledged");
    }
    Ok(accepted())
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn the_callback_token_never_reaches_the_logs() {
        assert_eq!(
            loggable_path("/mpesa/callbacks/s3cret/stk"),
            "/mpesa/callbacks/***/stk"
        );
        assert_eq!(
            loggable_path("/mpesa/callbacks/s3cret/b2c/result"),
            "/mpesa/callbacks/***/b2c/result"
        );
        assert_eq!(
            loggable_path("/mpesa/callbacks/s3cret"),
            "/mpesa/callbacks/***/"
        );
        assert_eq!(loggable_path("/chamas"), "/chamas");
    }
}
