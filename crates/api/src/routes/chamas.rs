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
use pesachama_store::rls;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

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

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation {
        message: message.into(),
        details: Some(json!({ "field": field })),
    }
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

pub(crate) fn signed_in(caller: &Caller) -> Result<Uuid, ApiError> {
    caller
        .user_id()
        .ok_or_else(|| ApiError::Auth(AuthError::no_authorization()))
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
    let new: NewChama = serde_json::from_slice(&body)
        .map_err(|err| ApiError::MalformedBody(format!("invalid body: {err}")))?;
    let name = new.name.trim();
    if !(2..=150).contains(&name.chars().count()) {
        return Err(invalid("name", "name must be 2 to 150 characters"));
    }
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

    let (role, claims) = caller.db_context();
    let mut tx = rls::begin_as(&state.pool, role, &claims).await?;
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
    let (role, claims) = caller.db_context();
    let mut tx = rls::begin_as(&state.pool, role, &claims).await?;
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
    let (role, claims) = caller.db_context();
    let mut tx = rls::begin_as(&state.pool, role, &claims).await?;
    let chama = fetch(&mut tx, id).await?;
    tx.commit().await?;
    chama.map(Json).ok_or(ApiError::NotFound)
}
