//! Withdrawals approved by k of the officials.
//!
//! `POST /chamas/{id}/disbursements` (a member asks; `Idempotency-Key`), `GET
//! /chamas/{id}/disbursements`, `POST /disbursements/{id}/approve|reject` (officials, once
//! each, never their own), `POST /disbursements/{id}/cancel` (the requester, while pending),
//! `POST /disbursements/{id}/mark-paid` (the treasurer, for a payout made in cash). The rules
//! and the money live in the database functions of `20260101000800_disbursements_api.sql`;
//! these handlers parse, call them under the caller's role and claims, and answer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chamas::cents;
use super::transactions::{idempotency_key, request_hash};
use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDisbursement {
    /// Cents, a whole number.
    #[schema(value_type = i64)]
    pub amount: Value,
    /// What the money is for (3-500 characters); officials read it before deciding.
    pub reason: String,
    /// The member to be paid (default: the requester).
    pub recipient_member_id: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Paid {
    /// The receipt of the cash payout.
    pub reference: String,
}

/// Asks for a withdrawal. The chama's approval threshold now applies to this request.
#[utoipa::path(
    post, path = "/chamas/{id}/disbursements", tag = "money",
    request_body = NewDisbursement,
    params(("id" = Uuid, Path, description = "the chama"), ("Idempotency-Key" = String, Header, description = "unique per request")),
    responses(
        (status = 201, description = "the request, pending", body = Value),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, description = "bad input, or the chama has too few officials to approve it", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn request_disbursement(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let key = idempotency_key(&headers)?;
    let new: NewDisbursement = super::json_body(&body)?;
    let amount = cents("amount", &new.amount)?;
    if !(3..=500).contains(&new.reason.trim().chars().count()) {
        return Err(invalid("reason", "reason must be 3 to 500 characters"));
    }
    let hash = request_hash(&(chama_id, &new))?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value =
        sqlx::query_scalar("select public.request_disbursement($1, $2, $3, $4, $5, $6)")
            .bind(chama_id)
            .bind(amount)
            .bind(new.reason.trim())
            .bind(new.recipient_member_id)
            .bind(&key)
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut response = (StatusCode::CREATED, Json(answer["request"].clone())).into_response();
    if answer["replayed"].as_bool().unwrap_or(false) {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The chama's withdrawal requests, newest first, with each official's decision.
#[utoipa::path(
    get, path = "/chamas/{id}/disbursements", tag = "money",
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = [Value]), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_disbursements(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let visible: bool =
        sqlx::query_scalar("select exists (select from public.chamas where id = $1)")
            .bind(chama_id)
            .fetch_one(&mut *tx)
            .await?;
    if !visible {
        return Err(ApiError::NotFound);
    }
    // RLS shows the requests; the JSON shape is the same as every other answer's.
    let requests: Vec<Value> = sqlx::query_scalar(
        "select jsonb_build_object(
            'id', r.id, 'chama_id', r.chama_id, 'requested_by', r.requested_by,
            'recipient_member_id', r.recipient_user_id, 'recipient_phone', r.recipient_phone,
            'amount', r.amount, 'currency', r.currency, 'reason', r.reason, 'status', r.status,
            'required_approvals', r.required_approvals, 'approvals', r.approvals_count,
            'rejections', r.rejections_count, 'transaction_id', r.transaction_id,
            'result', r.result_desc, 'decided_at', r.decided_at, 'expires_at', r.expires_at,
            'created_at', r.created_at)
           from public.disbursement_requests r
          where r.chama_id = $1
          order by r.created_at desc
          limit 200",
    )
    .bind(chama_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(requests))
}

async fn decide(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    id: Uuid,
    decision: &str,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let Decision { comment } = super::optional_json_body(body)?;
    if comment.as_ref().is_some_and(|c| c.chars().count() > 500) {
        return Err(invalid("comment", "comment is at most 500 characters"));
    }
    let mut tx = super::caller_tx(state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.decide_disbursement($1, $2, $3)")
        .bind(id)
        .bind(decision)
        .bind(comment)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}

/// Approves (officials only, once, never their own request). The approval that reaches the
/// threshold reserves the money and queues the payout; if the money is not there, the request
/// fails and says so.
#[utoipa::path(
    post, path = "/disbursements/{id}/approve", tag = "money",
    request_body(content = Decision, description = "optional"),
    params(("id" = Uuid, Path, description = "the request")),
    responses(
        (status = 200, description = "the request after the decision", body = Value),
        (status = 403, description = "not an official, or one's own request", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "already decided by this official", body = crate::error::ErrorBody),
        (status = 422, description = "the request is no longer pending", body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&state, caller, id, "approve", &body).await
}

/// Rejects; the request is rejected once too few officials are left to approve it.
#[utoipa::path(
    post, path = "/disbursements/{id}/reject", tag = "money",
    request_body(content = Decision, description = "optional"),
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reject(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(&state, caller, id, "reject", &body).await
}

/// The requester cancels a request that is still pending.
#[utoipa::path(
    post, path = "/disbursements/{id}/cancel", tag = "money",
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.cancel_disbursement($1)")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}

/// The treasurer paid an approved withdrawal in cash: the reserved money leaves the chama and a
/// `disbursement` transaction records it.
#[utoipa::path(
    post, path = "/disbursements/{id}/mark-paid", tag = "money",
    request_body = Paid,
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mark_paid(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let paid: Paid = super::json_body(&body)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.mark_disbursement_paid($1, $2)")
        .bind(id)
        .bind(&paid.reference)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}
