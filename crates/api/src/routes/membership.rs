//! Suspending and reinstating a member (officials), and closing a chama (the chairperson).
//! The rules live in `public.set_member_suspended` and `public.close_chama`; a refusal names
//! what blocks it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::signed_in;
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Why {
    /// Why (3 to 500 characters): recorded in the audit trail and sent to the people affected.
    pub reason: Option<String>,
}

async fn set_suspended(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    (chama_id, user_id): (Uuid, Uuid),
    suspend: bool,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let why: Why = super::optional_json_body(body)?;
    let mut tx = super::caller_tx(state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.set_member_suspended($1, $2, $3, $4)")
        .bind(chama_id)
        .bind(user_id)
        .bind(suspend)
        .bind(why.reason)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}

/// An official suspends a member: they can no longer contribute, request, approve or see the
/// chama until reinstated. Never the chairperson, never oneself.
#[utoipa::path(
    post, path = "/chamas/{id}/members/{user_id}/suspend", tag = "chamas",
    request_body = Why,
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "the member")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, description = "what blocks it", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(ids): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_suspended(&state, caller, ids, true, &body).await
}

/// An official reinstates a suspended member.
#[utoipa::path(
    post, path = "/chamas/{id}/members/{user_id}/reinstate", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "the member")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(ids): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_suspended(&state, caller, ids, false, &body).await
}

/// The chairperson closes the chama once no money is left in it or on its way; it keeps its
/// history and takes no more contributions.
#[utoipa::path(
    post, path = "/chamas/{id}/close", tag = "chamas",
    request_body = Why,
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, description = "what blocks closing", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn close(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let why: Why = super::optional_json_body(&body)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.close_chama($1, $2)")
        .bind(id)
        .bind(why.reason)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}
