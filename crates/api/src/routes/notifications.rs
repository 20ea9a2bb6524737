//! In-app notifications and the devices push goes to. Everything runs under the caller's role:
//! RLS limits both tables to the caller's own rows, so no query here names the user.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Notification {
    pub id: Uuid,
    pub chama_id: Option<Uuid>,
    /// `transaction`, `meeting`, `approval`, `membership` or `system`.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Page {
    /// At most 100 (default 50).
    pub limit: Option<i64>,
    /// Only unread ones.
    pub unread: Option<bool>,
    /// Older than this (the `created_at` of the last one seen), for the next page.
    pub before: Option<DateTime<Utc>>,
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get, path = "/notifications", tag = "notifications",
    params(Page),
    responses((status = 200, body = [Notification]), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Notification>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "limit must be 1 to 100"));
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    let rows = sqlx::query_as(
        "select id, chama_id, type, title, body, data, read_at, created_at
           from public.notifications
          where ($1::boolean is not true or read_at is null)
            and ($2::timestamptz is null or created_at < $2)
          order by created_at desc, id
          limit $3",
    )
    .bind(page.unread)
    .bind(page.before)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(rows))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(
    get, path = "/notifications/unread-count", tag = "notifications",
    responses((status = 200, body = Value)),
    security(("bearer" = []))
)]
pub async fn unread_count(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let count: i64 =
        sqlx::query_scalar("select count(*) from public.notifications where read_at is null")
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Json(json!({ "unread": count })))
}

/// Marks one notification read (404 for anyone else's).
#[utoipa::path(
    post, path = "/notifications/{id}/read", tag = "notifications",
    params(("id" = Uuid, Path, description = "the notification")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let seen: Option<Uuid> = sqlx::query_scalar(
        "update public.notifications set read_at = coalesce(read_at, now()) where id = $1 returning id",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    seen.map(|_| StatusCode::NO_CONTENT)
        .ok_or(ApiError::NotFound)
}

/// Marks every notification of the caller read.
#[utoipa::path(
    post, path = "/notifications/read-all", tag = "notifications",
    responses((status = 200, body = Value)),
    security(("bearer" = []))
)]
pub async fn mark_all_read(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let marked =
        sqlx::query("update public.notifications set read_at = now() where read_at is null")
            .execute(&mut *tx)
            .await?
            .rows_affected();
    tx.commit().await?;
    Ok(Json(json!({ "marked": marked })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The FCM registration token.
    pub token: String,
    /// `android`, `ios` or `web`.
    pub platform: String,
}

/// Registers (or refreshes) a device for push notifications.
#[utoipa::path(
    post, path = "/devices", tag = "notifications",
    request_body = Device,
    responses((status = 204, description = "registered; a token another account held moves to the caller"), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn register_device(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let device: Device = super::json_body(&body)?;
    if !(10..=4096).contains(&device.token.len()) || device.token.chars().any(char::is_whitespace) {
        return Err(invalid(
            "token",
            "token must be an FCM registration token (10-4096 characters, no spaces)",
        ));
    }
    if !matches!(device.platform.as_str(), "android" | "ios" | "web") {
        return Err(invalid("platform", "platform must be android, ios or web"));
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    sqlx::query("select public.register_device($1, $2)")
        .bind(&device.token)
        .bind(&device.platform)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets a device (on sign-out).
#[utoipa::path(
    delete, path = "/devices/{token}", tag = "notifications",
    params(("token" = String, Path, description = "the FCM registration token")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn forget_device(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let gone = sqlx::query("delete from public.device_tokens where token = $1")
        .bind(&token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if gone == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}
