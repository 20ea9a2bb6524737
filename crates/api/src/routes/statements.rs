//! Statements (JSON or CSV, over a date range) and the chama's audit trail.
//!
//! `GET /chamas/{id}/statement` is the caller's own; `GET /chamas/{id}/members/{user_id}/statement`
//! another member's (officials); `GET /chamas/{id}/cash-statement` the chama's money in and out
//! (officials); `GET /chamas/{id}/audit` the chama's audit trail (officials, through RLS).
//! Statements come from the ledger, so a member's closing balance is their contributed total
//! and the chama's is its balance.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
pub struct Range {
    /// From this instant (inclusive); default: the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Until this instant (exclusive); default: now.
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

enum Format {
    Json,
    Csv,
}

fn format(range: &Range) -> Result<Format, ApiError> {
    match range.format.as_deref().unwrap_or("json") {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        _ => Err(invalid("format", "format must be json or csv")),
    }
}

/// KES with two decimals, from cents.
fn kes(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// One CSV field, quoted when it must be.
fn field(text: &str) -> String {
    // A leading = + - @ would be a formula in a spreadsheet.
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv(statement: &Value, filename: &str) -> Response {
    let mut out = String::from("date,kind,description,reference,amount_kes,balance_kes\n");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let _ = writeln!(
        out,
        ",opening,Opening balance,,,{}",
        kes(statement["opening_balance"].as_i64().unwrap_or(0))
    );
    for entry in statement["entries"].as_array().into_iter().flatten() {
        let reference = entry["mpesa_receipt"]
            .as_str()
            .or(entry["reference"].as_str())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            field(&text(&entry["at"])),
            field(&text(&entry["kind"])),
            field(&text(&entry["description"])),
            field(reference),
            kes(entry["amount"].as_i64().unwrap_or(0)),
            kes(entry["balance"].as_i64().unwrap_or(0)),
        );
    }
    let _ = writeln!(
        out,
        ",closing,Closing balance,,,{}",
        kes(statement["closing_balance"].as_i64().unwrap_or(0))
    );
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn statement(
    state: &AppState,
    caller: Result<Caller, AuthError>,
    chama_id: Uuid,
    member: Option<Uuid>,
    range: &Range,
) -> Result<Response, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let format = format(range)?;
    let from = range.from.unwrap_or(DateTime::UNIX_EPOCH);
    let to = range.to.unwrap_or_else(Utc::now);
    let mut tx = super::caller_tx(state, &caller).await?;
    let statement: Value = match member {
        Some(member) => {
            sqlx::query_scalar("select public.member_statement($1, $2, $3, $4)")
                .bind(chama_id)
                .bind(member)
                .bind(from)
                .bind(to)
                .fetch_one(&mut *tx)
                .await?
        }
        None => {
            sqlx::query_scalar("select public.chama_statement($1, $2, $3)")
                .bind(chama_id)
                .bind(from)
                .bind(to)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    tx.commit().await?;
    Ok(match format {
        Format::Json => Json(statement).into_response(),
        Format::Csv => {
            let name = match member {
                Some(member) => format!("statement-{chama_id}-{member}.csv"),
                None => format!("cash-statement-{chama_id}.csv"),
            };
            csv(&statement, &name)
        }
    })
}

/// The caller's own statement in the chama.
#[utoipa::path(
    get, path = "/chamas/{id}/statement", tag = "money",
    params(("id" = Uuid, Path, description = "the chama"), Range),
    responses((status = 200, description = "JSON (cents) or CSV (KES)", body = Value), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn my_statement(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    Query(range): Query<Range>,
) -> Result<Response, ApiError> {
    let me = caller
        .as_ref()
        .ok()
        .and_then(Caller::user_id)
        .ok_or_else(|| ApiError::Auth(AuthError::no_authorization()))?;
    statement(&state, caller, chama_id, Some(me), &range).await
}

/// A member's statement (officials, or the member).
#[utoipa::path(
    get, path = "/chamas/{id}/members/{user_id}/statement", tag = "money",
    params(("id" = Uuid, Path, description = "the chama"), ("user_id" = Uuid, Path, description = "the member"), Range),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn member_statement(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path((chama_id, user_id)): Path<(Uuid, Uuid)>,
    Query(range): Query<Range>,
) -> Result<Response, ApiError> {
    statement(&state, caller, chama_id, Some(user_id), &range).await
}

/// The chama's money in and out, from its cash account (officials).
#[utoipa::path(
    get, path = "/chamas/{id}/cash-statement", tag = "money",
    params(("id" = Uuid, Path, description = "the chama"), Range),
    responses((status = 200, body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cash_statement(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    Query(range): Query<Range>,
) -> Result<Response, ApiError> {
    statement(&state, caller, chama_id, None, &range).await
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditPage {
    /// At most 500 (default 100).
    pub limit: Option<i64>,
    /// Entries older than this id, for the next page.
    pub before_id: Option<i64>,
}

/// The chama's audit trail, newest first (officials; RLS hides it from everyone else).
#[utoipa::path(
    get, path = "/chamas/{id}/audit", tag = "chamas",
    params(("id" = Uuid, Path, description = "the chama"), AuditPage),
    responses((status = 200, body = [Value]), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn audit_trail(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    Query(page): Query<AuditPage>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(invalid("limit", "limit must be 1 to 500"));
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    let (member, official): (bool, bool) =
        sqlx::query_as("select public.is_chama_member($1), public.is_chama_official($1)")
            .bind(chama_id)
            .fetch_one(&mut *tx)
            .await?;
    if !member {
        return Err(ApiError::NotFound);
    }
    if !official {
        return Err(ApiError::Forbidden(
            "only officials read the audit trail".to_owned(),
        ));
    }
    let entries = sqlx::query_scalar(
        "select jsonb_build_object('id', id, 'at', created_at, 'action', action, 'table', table_name,
                'record_id', record_id, 'actor_id', actor_id, 'actor_role', actor_role,
                'old', old_row, 'new', new_row, 'metadata', metadata, 'hash', hash)
           from public.audit_logs
          where chama_id = $1 and ($2::bigint is null or id < $2)
          order by id desc
          limit $3",
    )
    .bind(chama_id)
    .bind(page.before_id)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(entries))
}
