//! Chamas: `POST /chamas` (the creator becomes chairperson), `GET /chamas` (mine),
//! `GET /chamas/{id}`.
//!
//! Every query runs under the caller's role and claims: RLS decides what is visible, and a chama
//! the caller may not see is a 404, never a 403, so ids cannot be probed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

/// Largest single amount the API accepts, in cents: KES 10,000,000.
pub const MAX_AMOUNT_CENTS: i64 = 1_000_000_000;

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Chama {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `savings`, `merry_go_round`, `investment` or `table_banking`.
    pub chama_type: String,
    /// Cents.
    pub contribution_amount: i64,
    /// `weekly`, `biweekly` or `monthly`.
    pub contribution_frequency: String,
    pub currency: String,
    /// Cents; always equal to the chama's cash account in the ledger.
    pub balance: i64,
    /// How many officials must approve a withdrawal.
    pub required_approvals: i32,
    pub join_code: String,
    pub status: String,
    /// The caller's role in the chama, when they are a member.
    pub my_role: Option<String>,
    /// What the caller has contributed (cents), when they are a member.
    pub my_contributed_total: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CHAMA_COLUMNS: &str = "c.id, c.name, c.description, c.chama_type, c.contribution_amount,
    c.contribution_frequency, c.currency, c.balance, c.required_approvals, c.join_code, c.status,
    m.role as my_role, m.contributed_total as my_contributed_total, c.created_at, c.updated_at";

const MY_MEMBERSHIP: &str = "left join public.chama_members m
    on m.chama_id = c.id and m.user_id = (select auth.uid()) and m.status = 'active'";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChama {
    pub name: String,
    pub description: Option<String>,
    /// `savings` (default), `merry_go_round`, `investment` or `table_banking`.
    pub chama_type: Option<String>,
    /// Cents, a whole number (KES 1,000.00 is 100000).
    #[schema(value_type = i64)]
    pub contribution_amount: Value,
    /// `weekly`, `biweekly` or `monthly` (default).
    pub contribution_frequency: Option<String>,
    /// Officials who must approve a withdrawal; at most the number of officials (at creation,
    /// the chairperson alone: 1, the default).
    pub required_approvals: Option<i32>,
}

/// A positive whole number of cents no larger than [`MAX_AMOUNT_CENTS`].
pub(crate) fn cents(field: &str, value: &Value) -> Result<i64, ApiError> {
    match value.as_i64() {
        Some(amount) if (1..=MAX_AMOUNT_CENTS).contains(&amount) => Ok(amount),
        _ => Err(invalid(
            field,
            format!(
                "{field} must be a whole number of cents from 1 to {MAX_AMOUNT_CENTS} (KES 1,500.00 is 150000)"
            ),
        )),
    }
}

fn one_of(
    field: &str,
    value: Option<&str>,
    allowed: &[&str],
    default: &str,
) -> Result<String, ApiError> {
    let value = value.unwrap_or(default);
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            field,
            format!("{field} must be one of {}", allowed.join(", ")),
        ))
    }
}

/// Creates a chama; the caller becomes its chairperson.
#[utoipa::path(
    post, path = "/chamas", tag = "chamas",
    request_body = NewChama,
    responses((status = 201, body = Chama), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create_chama(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<(StatusCode, Json<Chama>), ApiError> {
    let caller = caller?;
    let me = signed_in(&caller)?;
    let new: NewChama = super::json_body(&body)?;
    let name = new.name.trim();
    if !(2..=150).contains(&name.chars().count()) {
        return Err(invalid("name", "name must be 2 to 150 characters"));
    }
    super::visible_name("name", Some(name))?;
    let chama_type = one_of(
        "chama_type",
        new.chama_type.as_deref(),
        &["savings", "merry_go_round", "investment", "table_banking"],
        "savings",
    )?;
    let frequency = one_of(
        "contribution_frequency",
        new.contribution_frequency.as_deref(),
        &["weekly", "biweekly", "monthly"],
        "monthly",
    )?;
    let amount = cents("contribution_amount", &new.contribution_amount)?;
    let approvals = new.required_approvals.unwrap_or(1);
    if approvals != 1 {
        return Err(invalid(
            "required_approvals",
            "a new chama has one official (its chairperson): required_approvals must be 1 until treasurer and secretary are named",
        ));
    }

    let mut tx = super::caller_tx(&state, &caller).await?;
    let id: Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, description, chama_type, contribution_amount,
                                    contribution_frequency, required_approvals, created_by)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id",
    )
    .bind(name)
    .bind(new.description.as_deref().map(str::trim))
    .bind(&chama_type)
    .bind(amount)
    .bind(&frequency)
    .bind(approvals)
    .bind(me)
    .fetch_one(&mut *tx)
    .await?;
    let chama = fetch(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(chama)))
}

async fn fetch(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Option<Chama>, ApiError> {
    let sql =
        format!("select {CHAMA_COLUMNS} from public.chamas c {MY_MEMBERSHIP} where c.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// The chamas the caller is an active member of.
#[utoipa::path(
    get, path = "/chamas", tag = "chamas",
    responses((status = 200, body = [Chama]), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_chamas(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
) -> Result<Json<Vec<Chama>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let sql = format!(
        "select {CHAMA_COLUMNS} from public.chamas c
           join public.chama_members m
             on m.chama_id = c.id and m.user_id = (select auth.uid()) and m.status = 'active'
          order by c.name"
    );
    let chamas = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(Json(chamas))
}

/// One chama the caller may see (404 otherwise).
#[utoipa::path(
    get, path = "/chamas/{id}", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama's id")),
    responses((status = 200, body = Chama), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_chama(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Chama>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let chama = fetch(&mut tx, id).await?;
    tx.commit().await?;
    chama.map(Json).ok_or(ApiError::NotFound)
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// `chairperson`, `treasurer`, `secretary` or `member`.
    pub role: String,
    /// `active`, `invited`, `pending`, `suspended`.
    pub status: String,
    /// Cents contributed, net of reversals (equal to the member's equity in the ledger).
    pub contributed_total: i64,
    pub joined_at: Option<DateTime<Utc>>,
}

/// The chama's members with their totals (members only; 404 otherwise).
#[utoipa::path(
    get, path = "/chamas/{id}/members", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = [Member]), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<Member>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    if fetch(&mut tx, id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let members = sqlx::query_as(
        "select m.user_id, u.first_name, u.last_name, u.phone::text as phone, m.role, m.status,
                m.contributed_total, m.joined_at
           from public.chama_members m
           left join public.users u on u.id = m.user_id
          where m.chama_id = $1 and m.status not in ('left', 'declined')
          order by case m.role when 'chairperson' then 0 when 'treasurer' then 1
                               when 'secretary' then 2 else 3 end,
                   u.first_name, m.user_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(members))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChamaSettings {
    pub name: Option<String>,
    pub description: Option<String>,
    pub chama_type: Option<String>,
    /// Cents.
    #[schema(value_type = Option<i64>)]
    pub contribution_amount: Option<Value>,
    pub contribution_frequency: Option<String>,
    /// At least 1, at most the number of active officials.
    pub required_approvals: Option<i32>,
}

/// Changes the chama's settings (officials only).
#[utoipa::path(
    patch, path = "/chamas/{id}", tag = "chamas",
    request_body = ChamaSettings,
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = Chama), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_chama(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Chama>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let settings: ChamaSettings = super::json_body(&body)?;
    let name = settings.name.as_deref().map(str::trim);
    if name.is_some_and(|n| !(2..=150).contains(&n.chars().count())) {
        return Err(invalid("name", "name must be 2 to 150 characters"));
    }
    super::visible_name("name", name)?;
    let chama_type = settings
        .chama_type
        .as_deref()
        .map(|t| {
            one_of(
                "chama_type",
                Some(t),
                &["savings", "merry_go_round", "investment", "table_banking"],
                "",
            )
        })
        .transpose()?;
    let frequency = settings
        .contribution_frequency
        .as_deref()
        .map(|f| {
            one_of(
                "contribution_frequency",
                Some(f),
                &["weekly", "biweekly", "monthly"],
                "",
            )
        })
        .transpose()?;
    let amount = settings
        .contribution_amount
        .as_ref()
        .map(|a| cents("contribution_amount", a))
        .transpose()?;
    if settings.required_approvals.is_some_and(|k| k < 1) {
        return Err(invalid(
            "required_approvals",
            "required_approvals must be at least 1",
        ));
    }

    let mut tx = super::caller_tx(&state, &caller).await?;
    let Some(current) = fetch(&mut tx, id).await? else {
        return Err(ApiError::NotFound);
    };
    if !matches!(
        current.my_role.as_deref(),
        Some("chairperson" | "treasurer" | "secretary")
    ) {
        return Err(ApiError::Forbidden(
            "only officials change the chama's settings".to_owned(),
        ));
    }
    sqlx::query(
        "update public.chamas set
            name = coalesce($2, name), description = coalesce($3, description),
            chama_type = coalesce($4, chama_type), contribution_amount = coalesce($5, contribution_amount),
            contribution_frequency = coalesce($6, contribution_frequency),
            required_approvals = coalesce($7, required_approvals)
          where id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(settings.description.as_deref().map(str::trim))
    .bind(chama_type)
    .bind(amount)
    .bind(frequency)
    .bind(settings.required_approvals)
    .execute(&mut *tx)
    .await
    .map_err(|err| match ApiError::from(err) {
        ApiError::Validation { message, .. } if message.contains("required_approvals") => {
            invalid("required_approvals", message)
        }
        other => other,
    })?;
    let chama = fetch(&mut tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(chama))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `chairperson` (hands the chair over), `treasurer`, `secretary` or `member`.
    pub role: String,
}

/// The chairperson names a member's role; naming a new chairperson hands the chair over.
#[utoipa::path(
    put, path = "/chamas/{id}/members/{user_id}/role", tag = "chamas",
    request_body = RoleChange,
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "the member")),
    responses((status = 200, description = "the chama's officials after the change", body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let change: RoleChange = super::json_body(&body)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let officials: Value = sqlx::query_scalar("select public.change_member_role($1, $2, $3)")
        .bind(id)
        .bind(user_id)
        .bind(&change.role)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(officials))
}

/// The caller leaves the chama, unless something blocks it (the answer says what).
#[utoipa::path(
    post, path = "/chamas/{id}/leave", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = Value), (status = 404, body = crate::error::ErrorBody), (status = 422, description = "what blocks leaving", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn leave(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let answer: Value = sqlx::query_scalar("select public.leave_chama($1)")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(answer))
}
