//! Platform administration, for users whose `auth.users.raw_app_meta_data.platform_role` is
//! `"admin"` now (set by `pesachama admin grant` or the service role, never by the user): the
//! caller's claims carry the role the database has, not the one the token was signed with (see
//! `gotrue::live`). Everyone else gets 403. Each request runs as `service_role` with the administrator's claims, so every
//! change lands in the audit log under their name.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use pesachama_store::rls::{self, DbRole};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::invalid;
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

fn admin(caller: Result<Caller, AuthError>) -> Result<(Uuid, Value), ApiError> {
    match caller? {
        Caller::User { id, claims } if claims.is_platform_admin() => Ok((id, claims.to_json())),
        Caller::User { .. } => Err(ApiError::Forbidden(
            "platform administrators only".to_owned(),
        )),
        _ => Err(ApiError::Auth(AuthError::no_authorization())),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Search {
    /// Part of a name, email, phone (users) or chama name.
    pub q: Option<String>,
    /// At most 200 (default 50).
    pub limit: Option<i64>,
}

fn limit(value: Option<i64>, max: i64, default: i64) -> Result<i64, ApiError> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid("limit", format!("limit must be 1 to {max}")))
    }
}

/// Escapes LIKE's wildcards so a search for "50%" means that.
fn like(q: Option<&str>) -> String {
    let q = q.unwrap_or_default().trim().to_lowercase();
    format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// A read for an administrator. It runs as the server's own role: `auth.users` is readable by
/// neither request role (on Supabase it belongs to the auth service).
async fn rows(state: &AppState, sql: &str, binds: (String, i64)) -> Result<Vec<Value>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let rows = sqlx::query_scalar(sql)
        .bind(binds.0)
        .bind(binds.1)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Users, searched by name, email or phone.
#[utoipa::path(
    get, path = "/admin/users", tag = "admin", params(Search),
    responses((status = 200, body = [Value]), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn users(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Query(search): Query<Search>,
) -> Result<Json<Vec<Value>>, ApiError> {
    admin(caller)?;
    let limit = limit(search.limit, 200, 50)?;
    rows(
        &state,
        "select jsonb_build_object('id', a.id, 'email', a.email, 'phone', p.phone,
                'first_name', p.first_name, 'last_name', p.last_name,
                'suspended', a.banned_until is not null and a.banned_until > now(),
                'platform_admin', coalesce(a.raw_app_meta_data->>'platform_role', '') = 'admin',
                'last_sign_in_at', a.last_sign_in_at, 'created_at', a.created_at,
                'chamas', (select count(*) from public.chama_members m where m.user_id = a.id and m.status = 'active'))
           from auth.users a left join public.users p on p.id = a.id
          where a.deleted_at is null
            and (lower(coalesce(a.email, '')) like $1 or coalesce(p.phone, '') like $1
                 or lower(coalesce(p.first_name, '') || ' ' || coalesce(p.last_name, '')) like $1)
          order by a.created_at desc
          limit $2",
        (like(search.q.as_deref()), limit),
    )
    .await
    .map(Json)
}

/// Chamas, searched by name.
#[utoipa::path(
    get, path = "/admin/chamas", tag = "admin", params(Search),
    responses((status = 200, body = [Value]), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn chamas(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Query(search): Query<Search>,
) -> Result<Json<Vec<Value>>, ApiError> {
    admin(caller)?;
    let limit = limit(search.limit, 200, 50)?;
    rows(
        &state,
        "select jsonb_build_object('id', c.id, 'name', c.name, 'status', c.status, 'balance', c.balance,
                'chama_type', c.chama_type, 'created_at', c.created_at,
                'members', (select count(*) from public.chama_members m where m.chama_id = c.id and m.status = 'active'))
           from public.chamas c
          where c.deleted_at is null and lower(c.name) like $1
          order by c.created_at desc
          limit $2",
        (like(search.q.as_deref()), limit),
    )
    .await
    .map(Json)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

fn reason(body: &Bytes) -> Result<Option<String>, ApiError> {
    let Reason { reason } = super::optional_json_body(body)?;
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(invalid("reason", "reason is at most 500 characters"));
    }
    Ok(reason)
}

async fn set_user(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    id: Uuid,
    suspended: bool,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    let (me, claims) = admin(caller)?;
    if id == me && suspended {
        return Err(ApiError::Validation {
            message: "administrators do not suspend themselves".to_owned(),
            details: None,
        });
    }
    let reason = reason(body)?;
    let mut tx = rls::begin_as(&state.pool, DbRole::ServiceRole, &claims).await?;
    sqlx::query("select internal.set_user_suspended($1, $2, $3, $4)")
        .bind(id)
        .bind(suspended)
        .bind(reason)
        .bind(me)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.auth.sessions.forget_user(id);
    Ok(Json(json!({ "id": id, "suspended": suspended })))
}

/// Suspends a user: their sessions end and they cannot sign in.
#[utoipa::path(
    post, path = "/admin/users/{id}/suspend", tag = "admin",
    request_body(content = Reason, description = "optional"),
    params(("id" = Uuid, Path, description = "the user")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn suspend_user(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_user(&state, caller, id, true, &body).await
}

/// Reinstates a suspended user.
#[utoipa::path(
    post, path = "/admin/users/{id}/reinstate", tag = "admin",
    params(("id" = Uuid, Path, description = "the user")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reinstate_user(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_user(&state, caller, id, false, &body).await
}

async fn set_chama(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    id: Uuid,
    status: &str,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    let (me, claims) = admin(caller)?;
    let reason = reason(body)?;
    let mut tx = rls::begin_as(&state.pool, DbRole::ServiceRole, &claims).await?;
    let changed: Option<String> = sqlx::query_scalar(
        "update public.chamas set status = $2 where id = $1 and status in ('active', 'suspended') returning status",
    )
    .bind(id)
    .bind(status)
    .fetch_optional(&mut *tx)
    .await?;
    if changed.is_none() {
        return Err(ApiError::NotFound);
    }
    sqlx::query("select internal.audit_log($1, 'public.chamas', $2, $3, $4, $5)")
        .bind(format!("admin.chama_{status}"))
        .bind(id.to_string())
        .bind(id)
        .bind(json!({ "reason": reason }))
        .bind(me)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(json!({ "id": id, "status": status })))
}

/// Suspends a chama: no money moves in or out until it is reinstated.
#[utoipa::path(
    post, path = "/admin/chamas/{id}/suspend", tag = "admin",
    request_body(content = Reason, description = "optional"),
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn suspend_chama(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_chama(&state, caller, id, "suspended", &body).await
}

/// Reinstates a suspended chama.
#[utoipa::path(
    post, path = "/admin/chamas/{id}/reinstate", tag = "admin",
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn reinstate_chama(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    set_chama(&state, caller, id, "active", &body).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditFilter {
    pub chama_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    /// At most 500 (default 100).
    pub limit: Option<i64>,
}

/// Any audit trail, newest first.
#[utoipa::path(
    get, path = "/admin/audit", tag = "admin", params(AuditFilter),
    responses((status = 200, body = [Value]), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let (_, claims) = admin(caller)?;
    let limit = limit(filter.limit, 500, 100)?;
    let mut tx = rls::begin_as(&state.pool, DbRole::ServiceRole, &claims).await?;
    let rows = sqlx::query_scalar(
        "select jsonb_build_object('id', id, 'at', created_at, 'action', action, 'table', table_name,
                'record_id', record_id, 'chama_id', chama_id, 'actor_id', actor_id,
                'actor_role', actor_role, 'metadata', metadata)
           from public.audit_logs
          where ($1::uuid is null or chama_id = $1) and ($2::uuid is null or actor_id = $2)
          order by id desc limit $3",
    )
    .bind(filter.chama_id)
    .bind(filter.actor_id)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(rows))
}

/// What needs an operator: M-Pesa prompts with no answer after 10 minutes, approved
/// withdrawals not paid after an hour, and messages that could not be delivered.
#[utoipa::path(
    get, path = "/admin/attention", tag = "admin",
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn attention(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
) -> Result<Json<Value>, ApiError> {
    let (_, claims) = admin(caller)?;
    let mut tx = rls::begin_as(&state.pool, DbRole::ServiceRole, &claims).await?;
    let answer: Value = sqlx::query_scalar(
        "select jsonb_build_object(
           'stuck_payment_requests', coalesce((select jsonb_agg(jsonb_build_object(
               'id', p.id, 'chama_id', p.chama_id, 'amount', p.amount, 'status', p.status,
               'checkout_request_id', p.checkout_request_id, 'created_at', p.created_at) order by p.created_at)
             from public.payment_requests p
            where p.status in ('queued', 'sent', 'review') and p.created_at < now() - interval '10 minutes'), '[]'),
           'unpaid_withdrawals', coalesce((select jsonb_agg(jsonb_build_object(
               'id', d.id, 'chama_id', d.chama_id, 'amount', d.amount, 'status', d.status,
               'decided_at', d.decided_at) order by d.decided_at)
             from public.disbursement_requests d
            where d.status in ('approved', 'processing') and d.decided_at < now() - interval '1 hour'), '[]'),
           'failed_deliveries', coalesce((select jsonb_agg(jsonb_build_object(
               'id', o.id, 'topic', o.topic, 'attempts', o.attempts, 'last_error', o.last_error,
               'created_at', o.created_at) order by o.id desc)
             from (select * from internal.outbox where status = 'dead' order by id desc limit 200) o), '[]'))",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(answer))
}
