//! Joining a chama: invitations by phone (`POST /chamas/{id}/invitations`, `GET /invitations`,
//! `POST /invitations/{id}/accept|decline`) and join codes (`POST /chamas/join`, then an
//! official's `POST /chamas/{id}/members/{user_id}/admit|refuse`). The rules live in the
//! database functions of `20260101001200_invitations.sql`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use pesachama_domain::Phone;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// Any Kenyan spelling (0712..., 254712..., +254712...).
    pub phone: String,
    /// `member` (default), `treasurer` or `secretary`.
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinCode {
    pub join_code: String,
}

/// Runs one of the membership functions under the caller's role and answers its JSON.
async fn call(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    sql: &str,
    bind: impl FnOnce(
        sqlx::query::QueryScalar<'_, sqlx::Postgres, Value, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<
        '_,
        sqlx::Postgres,
        Value,
        sqlx::postgres::PgArguments,
    >,
) -> Result<Value, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(state, &caller).await?;
    let answer = bind(sqlx::query_scalar(sql)).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(answer)
}

/// Invites a phone number (officials). The invitee gets an SMS, and an in-app notification when
/// they already have an account.
#[utoipa::path(
    post, path = "/chamas/{id}/invitations", tag = "chamas",
    request_body = Invitation,
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 201, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, description = "already a member, or already invited", body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn invite(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let invitation: Invitation = super::json_body(&body)?;
    let phone = Phone::parse(&invitation.phone).map_err(|err| invalid("phone", err.to_string()))?;
    let role = invitation.role.unwrap_or_else(|| "member".to_owned());
    if !matches!(role.as_str(), "member" | "treasurer" | "secretary") {
        return Err(invalid(
            "role",
            "role must be member, treasurer or secretary",
        ));
    }
    let answer = call(
        &state,
        caller,
        "select public.invite_member($1, $2, $3)",
        |q| q.bind(chama_id).bind(phone.as_e164().to_owned()).bind(role),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// The caller's pending invitations (matched by the phone number of their account).
#[utoipa::path(
    get, path = "/invitations", tag = "chamas",
    responses((status = 200, body = [Value])),
    security(("bearer" = []))
)]
pub async fn mine(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
) -> Result<Json<Value>, ApiError> {
    call(&state, caller, "select public.my_invitations()", |q| q)
        .await
        .map(Json)
}

async fn respond(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    id: Uuid,
    accept: bool,
) -> Result<Json<Value>, ApiError> {
    call(
        state,
        caller,
        "select public.respond_to_invitation($1, $2)",
        |q| q.bind(id).bind(accept),
    )
    .await
    .map(Json)
}

/// Accepts an invitation: the caller becomes an active member with the invited role.
#[utoipa::path(
    post, path = "/invitations/{id}/accept", tag = "chamas",
    params(("id" = Uuid, Path, description = "the invitation")),
    responses((status = 200, body = Value), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn accept(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    respond(&state, caller, id, true).await
}

/// Declines an invitation.
#[utoipa::path(
    post, path = "/invitations/{id}/decline", tag = "chamas",
    params(("id" = Uuid, Path, description = "the invitation")),
    responses((status = 200, body = Value), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn decline(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    respond(&state, caller, id, false).await
}

/// Asks to join a chama by its code; an official admits the request.
#[utoipa::path(
    post, path = "/chamas/join", tag = "chamas",
    request_body = JoinCode,
    responses((status = 200, body = Value), (status = 404, description = "no chama has that code", body = crate::error::ErrorBody), (status = 409, description = "already a member or asked", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn join(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: JoinCode = super::json_body(&body)?;
    let code = request.join_code.trim().to_uppercase();
    if !(6..=12).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "join_code",
            "a join code is 6 to 12 letters and digits",
        ));
    }
    call(&state, caller, "select public.join_chama($1)", |q| {
        q.bind(code)
    })
    .await
    .map(Json)
}

async fn admit_or_refuse(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    chama_id: Uuid,
    user_id: Uuid,
    admit: bool,
) -> Result<Json<Value>, ApiError> {
    call(
        state,
        caller,
        "select public.admit_member($1, $2, $3)",
        |q| q.bind(chama_id).bind(user_id).bind(admit),
    )
    .await
    .map(Json)
}

/// Admits a pending request to join (officials).
#[utoipa::path(
    post, path = "/chamas/{id}/members/{user_id}/admit", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "who asked")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn admit(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path((chama_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Value>, ApiError> {
    admit_or_refuse(&state, caller, chama_id, user_id, true).await
}

/// Turns away a pending request to join (officials).
#[utoipa::path(
    post, path = "/chamas/{id}/members/{user_id}/refuse", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "who asked")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn refuse(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path((chama_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Value>, ApiError> {
    admit_or_refuse(&state, caller, chama_id, user_id, false).await
}
