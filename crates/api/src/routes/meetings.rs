//! Meetings: schedule, list, edit (minutes, status), cancel, take the register, and Agora RTC
//! tokens for the video ones. Members read; officials write (RLS decides both); a video token
//! goes only to members, as publisher for officials and subscriber for everyone else.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pesachama_auth::agora::{self, RtcRole, RtcTokenRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

/// How long a meeting token lasts.
const TOKEN_SECONDS: u32 = 3 * 3600;

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Meeting {
    pub id: Uuid,
    pub chama_id: Uuid,
    pub title: String,
    pub agenda: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub duration_minutes: i32,
    pub venue: Option<String>,
    /// `physical`, `virtual` or `hybrid`.
    pub meeting_type: String,
    /// The Agora channel of a virtual or hybrid meeting.
    pub agora_channel: Option<String>,
    pub minutes: Option<String>,
    /// `scheduled`, `in_progress`, `held` or `cancelled`.
    pub status: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, chama_id, title, agenda, scheduled_for, duration_minutes, venue,
    meeting_type, agora_channel, minutes, status, created_by, created_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMeeting {
    pub title: String,
    pub agenda: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    /// 1 to 1440 (default 60).
    pub duration_minutes: Option<i32>,
    pub venue: Option<String>,
    /// `physical` (default), `virtual` or `hybrid`.
    pub meeting_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingChange {
    pub title: Option<String>,
    pub agenda: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i32>,
    pub venue: Option<String>,
    pub meeting_type: Option<String>,
    /// The minutes, as text.
    pub minutes: Option<String>,
    /// `scheduled`, `in_progress` or `held` (cancel with `/cancel`).
    pub status: Option<String>,
}

fn check_title(title: &str) -> Result<(), ApiError> {
    if (2..=200).contains(&title.trim().chars().count()) {
        Ok(())
    } else {
        Err(invalid("title", "title must be 2 to 200 characters"))
    }
}

fn check_type(kind: Option<&str>) -> Result<(), ApiError> {
    match kind {
        None | Some("physical" | "virtual" | "hybrid") => Ok(()),
        Some(_) => Err(invalid(
            "meeting_type",
            "meeting_type must be physical, virtual or hybrid",
        )),
    }
}

fn check_duration(minutes: Option<i32>) -> Result<(), ApiError> {
    match minutes {
        Some(m) if !(1..=1440).contains(&m) => Err(invalid(
            "duration_minutes",
            "duration_minutes must be 1 to 1440",
        )),
        _ => Ok(()),
    }
}

/// The caller's role in the meeting's chama, or 404 when they cannot see the meeting.
async fn visible(
    conn: &mut sqlx::PgConnection,
    meeting: Uuid,
) -> Result<(Meeting, Option<String>), ApiError> {
    let sql = format!("select {COLUMNS} from public.meetings where id = $1");
    let found: Option<Meeting> = sqlx::query_as(&sql)
        .bind(meeting)
        .fetch_optional(&mut *conn)
        .await?;
    let found = found.ok_or(ApiError::NotFound)?;
    let role: Option<String> = sqlx::query_scalar(
        "select role from public.chama_members where chama_id = $1 and user_id = (select auth.uid()) and status = 'active'",
    )
    .bind(found.chama_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok((found, role))
}

fn is_official(role: Option<&str>) -> bool {
    matches!(role, Some("chairperson" | "treasurer" | "secretary"))
}

/// Schedules a meeting (officials); every member is notified.
#[utoipa::path(
    post, path = "/chamas/{id}/meetings", tag = "meetings",
    request_body = NewMeeting,
    params(("id" = Uuid, Path, description = "the chama")),
    responses((status = 201, body = Meeting), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn schedule(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    body: Bytes,
) -> Result<(StatusCode, Json<Meeting>), ApiError> {
    let caller = caller?;
    let me = signed_in(&caller)?;
    let new: NewMeeting = super::json_body(&body)?;
    check_title(&new.title)?;
    check_type(new.meeting_type.as_deref())?;
    check_duration(new.duration_minutes)?;
    if new.scheduled_for < Utc::now() {
        return Err(invalid(
            "scheduled_for",
            "scheduled_for must be in the future",
        ));
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    let my_role: Option<String> = sqlx::query_scalar(
        "select role from public.chama_members where chama_id = $1 and user_id = $2 and status = 'active'",
    )
    .bind(chama_id)
    .bind(me)
    .fetch_optional(&mut *tx)
    .await?;
    if my_role.is_none() {
        return Err(ApiError::NotFound);
    }
    if !is_official(my_role.as_deref()) {
        return Err(ApiError::Forbidden(
            "only officials schedule meetings".to_owned(),
        ));
    }
    let sql = format!(
        "insert into public.meetings (chama_id, title, agenda, scheduled_for, duration_minutes, venue, meeting_type, created_by)
         values ($1, $2, $3, $4, coalesce($5, 60), $6, coalesce($7, 'physical'), $8)
         returning {COLUMNS}"
    );
    let meeting: Meeting = sqlx::query_as(&sql)
        .bind(chama_id)
        .bind(new.title.trim())
        .bind(new.agenda.as_deref().map(str::trim))
        .bind(new.scheduled_for)
        .bind(new.duration_minutes)
        .bind(new.venue.as_deref().map(str::trim))
        .bind(new.meeting_type.as_deref())
        .bind(me)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(meeting)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Which {
    /// `upcoming` (default: not cancelled, not over), `past` or `all`.
    pub scope: Option<String>,
}

/// The chama's meetings: upcoming soonest first, past latest first.
#[utoipa::path(
    get, path = "/chamas/{id}/meetings", tag = "meetings",
    params(("id" = Uuid, Path, description = "the chama"), Which),
    responses((status = 200, body = [Meeting]), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(chama_id): Path<Uuid>,
    Query(which): Query<Which>,
) -> Result<Json<Vec<Meeting>>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let filter = match which.scope.as_deref().unwrap_or("upcoming") {
        "upcoming" => {
            "status in ('scheduled', 'in_progress') and scheduled_for + make_interval(mins => duration_minutes) >= now() order by scheduled_for"
        }
        "past" => {
            "(status in ('held', 'cancelled') or scheduled_for + make_interval(mins => duration_minutes) < now()) order by scheduled_for desc"
        }
        "all" => "true order by scheduled_for desc",
        _ => return Err(invalid("scope", "scope must be upcoming, past or all")),
    };
    let mut tx = super::caller_tx(&state, &caller).await?;
    let visible: bool = sqlx::query_scalar("select public.is_chama_member($1)")
        .bind(chama_id)
        .fetch_one(&mut *tx)
        .await?;
    if !visible {
        return Err(ApiError::NotFound);
    }
    let sql =
        format!("select {COLUMNS} from public.meetings where chama_id = $1 and {filter} limit 200");
    let meetings = sqlx::query_as(&sql)
        .bind(chama_id)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(meetings))
}

/// Edits a meeting: details, minutes, status (officials).
#[utoipa::path(
    patch, path = "/meetings/{id}", tag = "meetings",
    request_body = MeetingChange,
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, body = Meeting), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Meeting>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let change: MeetingChange = super::json_body(&body)?;
    if let Some(title) = &change.title {
        check_title(title)?;
    }
    check_type(change.meeting_type.as_deref())?;
    check_duration(change.duration_minutes)?;
    if let Some(status) = &change.status
        && !matches!(status.as_str(), "scheduled" | "in_progress" | "held")
    {
        return Err(invalid(
            "status",
            "status must be scheduled, in_progress or held (cancel with /cancel)",
        ));
    }
    if change
        .minutes
        .as_ref()
        .is_some_and(|m| m.chars().count() > 100_000)
    {
        return Err(invalid("minutes", "minutes are at most 100,000 characters"));
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    let (current, my_role) = visible(&mut tx, id).await?;
    if !is_official(my_role.as_deref()) {
        return Err(ApiError::Forbidden(
            "only officials edit meetings".to_owned(),
        ));
    }
    if current.status == "cancelled" {
        return Err(ApiError::Validation {
            message: "this meeting was cancelled".to_owned(),
            details: None,
        });
    }
    let sql = format!(
        "update public.meetings set
            title = coalesce($2, title), agenda = coalesce($3, agenda),
            scheduled_for = coalesce($4, scheduled_for), duration_minutes = coalesce($5, duration_minutes),
            venue = coalesce($6, venue), meeting_type = coalesce($7, meeting_type),
            minutes = coalesce($8, minutes), status = coalesce($9, status)
          where id = $1
          returning {COLUMNS}"
    );
    let meeting: Meeting = sqlx::query_as(&sql)
        .bind(id)
        .bind(change.title.as_deref().map(str::trim))
        .bind(change.agenda.as_deref())
        .bind(change.scheduled_for)
        .bind(change.duration_minutes)
        .bind(change.venue.as_deref())
        .bind(change.meeting_type.as_deref())
        .bind(change.minutes.as_deref())
        .bind(change.status.as_deref())
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(meeting))
}

/// Cancels a meeting (officials); members are told.
#[utoipa::path(
    post, path = "/meetings/{id}/cancel", tag = "meetings",
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, body = Meeting), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Meeting>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let (current, my_role) = visible(&mut tx, id).await?;
    if !is_official(my_role.as_deref()) {
        return Err(ApiError::Forbidden(
            "only officials cancel meetings".to_owned(),
        ));
    }
    if current.status != "scheduled" {
        return Err(ApiError::Validation {
            message: format!("a meeting that is {} cannot be cancelled", current.status),
            details: None,
        });
    }
    let sql = format!(
        "update public.meetings set status = 'cancelled' where id = $1 returning {COLUMNS}"
    );
    let meeting: Meeting = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(Json(meeting))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceEntry {
    pub user_id: Uuid,
    /// `present`, `late`, `apologies` or `absent`.
    pub status: String,
}

/// Records the register (officials): one entry per member, replacing what was recorded.
#[utoipa::path(
    put, path = "/meetings/{id}/attendance", tag = "meetings",
    request_body = [AttendanceEntry],
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, description = "the register", body = Value), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn attendance(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = caller?;
    let me = signed_in(&caller)?;
    let entries: Vec<AttendanceEntry> = super::json_body(&body)?;
    if entries.is_empty() || entries.len() > 1000 {
        return Err(invalid("attendance", "send 1 to 1000 entries"));
    }
    for entry in &entries {
        if !matches!(
            entry.status.as_str(),
            "present" | "late" | "apologies" | "absent"
        ) {
            return Err(invalid(
                "status",
                "status must be present, late, apologies or absent",
            ));
        }
    }
    let mut tx = super::caller_tx(&state, &caller).await?;
    let (meeting, my_role) = visible(&mut tx, id).await?;
    if !is_official(my_role.as_deref()) {
        return Err(ApiError::Forbidden(
            "only officials take the register".to_owned(),
        ));
    }
    for entry in &entries {
        let member: bool = sqlx::query_scalar(
            "select exists (select from public.chama_members where chama_id = $1 and user_id = $2 and status in ('active', 'suspended'))",
        )
        .bind(meeting.chama_id)
        .bind(entry.user_id)
        .fetch_one(&mut *tx)
        .await?;
        if !member {
            return Err(ApiError::Validation {
                message: format!("{} is not a member of this chama", entry.user_id),
                details: Some(json!({ "field": "user_id", "user_id": entry.user_id })),
            });
        }
        sqlx::query(
            "insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, checked_in_at, recorded_by)
             values ($1, $2, $3, $4, case when $4 in ('present', 'late') then now() end, $5)
             on conflict (meeting_id, user_id) do update
               set status = excluded.status, checked_in_at = excluded.checked_in_at, recorded_by = excluded.recorded_by",
        )
        .bind(id)
        .bind(meeting.chama_id)
        .bind(entry.user_id)
        .bind(&entry.status)
        .bind(me)
        .execute(&mut *tx)
        .await?;
    }
    let register: Value = sqlx::query_scalar(
        "select coalesce(jsonb_agg(jsonb_build_object('user_id', user_id, 'status', status, 'checked_in_at', checked_in_at) order by user_id), '[]')
           from public.meeting_attendance where meeting_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(register))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoToken {
    pub app_id: String,
    pub channel: String,
    /// The Agora uid the token is for (derived from the user id).
    pub uid: u32,
    /// `publisher` (officials) or `subscriber`.
    pub role: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A stable, non-zero Agora uid for a user: the four 32-bit words of the id folded together,
/// so ids that share a prefix (or a suffix) still get different uids.
fn agora_uid(user: Uuid) -> u32 {
    let uid = user
        .as_bytes()
        .chunks_exact(4)
        .map(|word| u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
        .fold(0, |acc, word| acc ^ word);
    if uid == 0 { 1 } else { uid }
}

/// An Agora RTC token for a virtual or hybrid meeting: members only; officials publish.
#[utoipa::path(
    post, path = "/meetings/{id}/token", tag = "meetings",
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, body = VideoToken), (status = 404, body = crate::error::ErrorBody), (status = 422, description = "not a video meeting, or cancelled", body = crate::error::ErrorBody), (status = 503, description = "Agora is not configured", body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn video_token(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<VideoToken>, ApiError> {
    let caller = caller?;
    let me = signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let (meeting, my_role) = visible(&mut tx, id).await?;
    tx.commit().await?;
    let Some(my_role) = my_role else {
        return Err(ApiError::NotFound);
    };
    let Some(channel) = meeting
        .agora_channel
        .filter(|_| meeting.meeting_type != "physical")
    else {
        return Err(ApiError::Validation {
            message: "this meeting has no video".to_owned(),
            details: None,
        });
    };
    if meeting.status == "cancelled" || meeting.status == "held" {
        return Err(ApiError::Validation {
            message: format!("this meeting is {}", meeting.status),
            details: None,
        });
    }
    let agora_config = state.config.agora.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "video meetings are not configured (AGORA_APP_ID, AGORA_APP_CERTIFICATE)".to_owned(),
        )
    })?;
    let rtc_role = if is_official(Some(&my_role)) {
        RtcRole::Publisher
    } else {
        RtcRole::Subscriber
    };
    let now = Utc::now();
    let uid = agora_uid(me);
    let token = agora::rtc_token(&RtcTokenRequest {
        app_id: &agora_config.app_id,
        app_certificate: &agora_config.app_certificate,
        channel: &channel,
        uid,
        role: rtc_role,
        expire_seconds: TOKEN_SECONDS,
        privilege_seconds: TOKEN_SECONDS,
        issued_at: u32::try_from(now.timestamp()).unwrap_or(u32::MAX),
        salt: agora::random_salt(),
    })
    .map_err(ApiError::internal)?;
    Ok(Json(VideoToken {
        app_id: agora_config.app_id.clone(),
        channel,
        uid,
        role: rtc_role.as_str().to_owned(),
        token,
        expires_at: now + chrono::Duration::seconds(i64::from(TOKEN_SECONDS)),
    }))
}
