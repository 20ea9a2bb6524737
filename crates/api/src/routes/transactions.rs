//! `POST /transactions`: a manual (cash or bank) contribution recorded by the treasurer or the
//! chairperson, exactly once per `Idempotency-Key`.
//!
//! The rule (who may record, into which chama, for which member) and the money (a balanced
//! journal, the chama's balance and the member's total, the `transactions` row, the member's
//! notification, the audit rows and the idempotency record) are in the database, written in
//! one transaction with the other contributions that arrived at the same time
//! ([`crate::contribution_batches`], `internal.record_manual_contributions`). A client of the
//! Data API records one with `public.record_manual_contribution`, under the same rules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chamas::cents;
use super::{invalid, signed_in};
use crate::contribution_batches::ContributionRequest;
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContribution {
    pub chama_id: Uuid,
    /// The member who contributed.
    pub member_id: Uuid,
    /// Cents, a whole number.
    #[schema(value_type = i64)]
    pub amount: Value,
    /// `cash` or `bank`.
    pub payment_method: String,
    /// A receipt or bank reference.
    pub reference: Option<String>,
    pub description: Option<String>,
}

/// Records a contribution. Send an `Idempotency-Key` header (any unique string, 1-255
/// characters): a retry with the same key and body answers the first answer again (with
/// `Idempotent-Replayed: true`) and records nothing; the same key with another body is a 422;
/// while the first is still being processed, a 409.
#[utoipa::path(
    post, path = "/transactions", tag = "money",
    request_body = NewContribution,
    params(("Idempotency-Key" = String, Header, description = "unique per contribution")),
    responses(
        (status = 201, description = "recorded (or replayed)", body = Value),
        (status = 403, description = "not the treasurer or chairperson", body = crate::error::ErrorBody),
        (status = 404, description = "no such chama visible to the caller", body = crate::error::ErrorBody),
        (status = 409, description = "the same key is in flight", body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn record_contribution(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller?;
    let actor = signed_in(&caller)?;
    let key = idempotency_key(&headers)?;
    let new: NewContribution = super::json_body(&body)?;
    let amount = cents("amount", &new.amount)?;
    if !matches!(new.payment_method.as_str(), "cash" | "bank") {
        return Err(invalid(
            "payment_method",
            "payment_method must be \"cash\" or \"bank\" (M-Pesa contributions arrive through M-Pesa)",
        ));
    }
    for (field, value, limit) in [
        ("reference", &new.reference, 100),
        ("description", &new.description, 500),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > limit) {
            return Err(invalid(
                field,
                format!("{field} is at most {limit} characters"),
            ));
        }
    }
    // The request, canonically: the same key with another body must be recognised.
    let request_hash = request_hash(&new)?;

    let request = ContributionRequest {
        actor,
        chama_id: new.chama_id,
        member_id: new.member_id,
        amount,
        method: new.payment_method.clone(),
        reference: new.reference.as_deref().map(str::trim).map(str::to_owned),
        description: new.description.as_deref().map(str::trim).map(str::to_owned),
        idempotency_key: key,
        request_hash,
    };
    let answer = if state.config.contribution_writers == 0 {
        record_alone(&state, &caller, &request).await?
    } else {
        state.contributions().record(request).await?
    };
    Ok(created(&answer))
}

/// With no batch writers configured: one request, one transaction, through the function Data
/// API clients call, under the caller's own role and claims.
async fn record_alone(
    state: &AppState,
    caller: &Caller,
    request: &ContributionRequest,
) -> Result<Value, ApiError> {
    let mut tx = super::caller_tx(state, caller).await?;
    let answer: Value = sqlx::query_scalar(
        "select public.record_manual_contribution($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(request.chama_id)
    .bind(request.member_id)
    .bind(request.amount)
    .bind(&request.method)
    .bind(&request.reference)
    .bind(&request.description)
    .bind(&request.idempotency_key)
    .bind(&request.request_hash)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(answer)
}

/// The `Idempotency-Key` header every money-moving call requires.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            invalid(
                "Idempotency-Key",
                "the Idempotency-Key header is required (a unique string per request)",
            )
        })
}

pub(crate) fn request_hash(request: &impl Serialize) -> Result<String, ApiError> {
    let canonical = serde_json::to_vec(request).map_err(ApiError::internal)?;
    Ok(hex::encode(sha2::Sha256::digest(&canonical)))
}

/// 201 with the transaction; a replay says so in `Idempotent-Replayed: true`.
fn created(answer: &Value) -> Response {
    let mut response = (StatusCode::CREATED, Json(answer["transaction"].clone())).into_response();
    if answer["replayed"].as_bool().unwrap_or(false) {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reversal {
    /// Why the entry was wrong (3-500 characters); the member sees it.
    pub reason: String,
}

/// Reverses a wrong contribution: an opposite journal, a `reversal` transaction carrying the
/// reason, the original marked `reversed`. Officials only; idempotent like `POST /transactions`.
#[utoipa::path(
    post, path = "/transactions/{id}/reverse", tag = "money",
    request_body = Reversal,
    params(
        ("id" = Uuid, Path, description = "the transaction to reverse"),
        ("Idempotency-Key" = String, Header, description = "unique per reversal")
    ),
    responses(
        (status = 201, description = "the reversal (or its replay)", body = Value),
        (status = 403, description = "not an official", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "already reversed, not a contribution, or no reason", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn reverse_transaction(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let key = idempotency_key(&headers)?;
    let reversal: Reversal = super::json_body(&body)?;
    let hash = request_hash(&(id, &reversal))?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.reverse_transaction($1, $2, $3, $4)")
        .bind(id)
        .bind(&reversal.reason)
        .bind(&key)
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(created(&answer))
}
