//! `POST /transactions`: a manual (cash or bank) contribution recorded by the treasurer or the
//! chairperson, exactly once per `Idempotency-Key`.
//!
//! The rule (who may record, into which chama, for which member) and the money (a balanced
//! journal, the chama's balance and the member's total, the `transactions` row, the member's
//! notification, the audit rows and the idempotency record) are one database function in one
//! transaction: `public.record_manual_contribution`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pesachama_store::rls;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chamas::{cents, invalid, signed_in};
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
    signed_in(&caller)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            invalid(
                "Idempotency-Key",
                "the Idempotency-Key header is required (a unique string per contribution)",
            )
        })?
        .to_owned();
    let new: NewContribution = serde_json::from_slice(&body)
        .map_err(|err| ApiError::MalformedBody(format!("invalid body: {err}")))?;
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
    let canonical = serde_json::to_vec(&new).map_err(ApiError::internal)?;
    let request_hash = hex::encode(sha2::Sha256::digest(&canonical));

    let (role, claims) = caller.db_context();
    let mut tx = rls::begin_as(&state.pool, role, &claims).await?;
    let answer: Value = sqlx::query_scalar(
        "select public.record_manual_contribution($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.chama_id)
    .bind(new.member_id)
    .bind(amount)
    .bind(&new.payment_method)
    .bind(new.reference.as_deref().map(str::trim))
    .bind(new.description.as_deref().map(str::trim))
    .bind(&key)
    .bind(&request_hash)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;

    let replayed = answer["replayed"].as_bool().unwrap_or(false);
    let mut response = (StatusCode::CREATED, Json(answer["transaction"].clone())).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
