//! Meeting minutes and recordings linked to their storage objects: `GET` and `PUT
//! /meetings/{id}/files`. The files themselves go through `/storage/v1` (minutes in
//! `documents`, recordings in `recordings`, under the chama's folder); this records which
//! object is the meeting's, so members can find and sign it.
//!
//! Officials link (the meetings UPDATE policy), only objects they can see, and the database
//! (`internal.check_meeting_objects`) refuses an object of another bucket or chama.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use pesachama_storage::ObjectName;
use pesachama_store::storage::{
    Link, MeetingObjects, find_object, link_meeting_objects, meeting_objects,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

/// One linked object: download it with `/storage/v1/object/{bucket_id}/{name}` or sign it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedObject {
    pub id: Uuid,
    pub bucket_id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingFiles {
    pub meeting_id: Uuid,
    pub minutes: Option<LinkedObject>,
    pub recording: Option<LinkedObject>,
}

impl From<MeetingObjects> for MeetingFiles {
    fn from(row: MeetingObjects) -> Self {
        let linked = |id: Option<Uuid>, name: Option<String>, bucket: &str| {
            Some(LinkedObject {
                id: id?,
                bucket_id: bucket.to_owned(),
                name: name?,
            })
        };
        Self {
            meeting_id: row.meeting_id,
            minutes: linked(row.minutes_id, row.minutes_name, "documents"),
            recording: linked(row.recording_id, row.recording_name, "recordings"),
        }
    }
}

/// Left out: unchanged; `null`: unlinked; a name: linked to that object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingFilesChange {
    /// A `documents` object name (`<chama id>/...`), or null to unlink.
    #[serde(default, deserialize_with = "present")]
    pub minutes: Option<Option<String>>,
    /// A `recordings` object name (`<chama id>/...`), or null to unlink.
    #[serde(default, deserialize_with = "present")]
    pub recording: Option<Option<String>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The meeting's linked minutes and recording (members).
#[utoipa::path(
    get, path = "/meetings/{id}/files", tag = "meetings",
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, body = MeetingFiles), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn files(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<MeetingFiles>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let row = meeting_objects(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Links (or unlinks) the meeting's minutes and recording objects (officials).
#[utoipa::path(
    put, path = "/meetings/{id}/files", tag = "meetings",
    request_body = MeetingFilesChange,
    params(("id" = Uuid, Path, description = "the meeting")),
    responses((status = 200, body = MeetingFiles), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn link(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Json<MeetingFiles>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let change: MeetingFilesChange = super::json_body(&body)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    meeting_objects(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut resolve = async |field: &str, bucket: &str, value: Option<Option<String>>| {
        let name = match value {
            None => return Ok(Link::Keep),
            Some(None) => return Ok(Link::Clear),
            Some(Some(name)) => name,
        };
        let name = ObjectName::parse(&name).map_err(|err| invalid(field, err.to_string()))?;
        let object = find_object(&mut *tx, bucket, name.as_str()).await?;
        object.map(|o| Link::To(o.id)).ok_or_else(|| {
            invalid(
                field,
                format!("there is no {bucket} object {name} that you can read"),
            )
        })
    };
    let minutes = resolve("minutes", "documents", change.minutes).await?;
    let recording = resolve("recording", "recordings", change.recording).await?;
    if !link_meeting_objects(&mut *tx, id, minutes, recording).await? {
        return Err(ApiError::Forbidden(
            "only officials link a meeting's files".to_owned(),
        ));
    }
    let row = meeting_objects(&mut *tx, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(Json(row.into()))
}
