//! Listing, deleting, moving and copying objects, each as the caller (RLS decides).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use pesachama_storage::{BucketId, ObjectName, object_key};
use pesachama_store::storage::{
    ListQuery, NewObject, ObjectRow, SortColumn, delete_objects, find_object, list_objects,
    rename_object, write_object,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::StorageErrorBody;
use super::{StorageCaller, StorageError, caller_tx, find_bucket, json, row_key, settings, target};
use crate::AppState;

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
struct ListRequest {
    prefix: String,
    limit: i64,
    offset: i64,
    sort_by: SortBy,
    search: String,
}

impl Default for ListRequest {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            limit: 100,
            offset: 0,
            sort_by: SortBy::default(),
            search: String::new(),
        }
    }
}

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(default)]
struct SortBy {
    column: String,
    order: String,
}

impl Default for SortBy {
    fn default() -> Self {
        Self {
            column: "name".into(),
            order: "asc".into(),
        }
    }
}

/// `POST /object/list/{bucket}`: one folder level, folders (name only) then files.
#[utoipa::path(
    post, path = "/storage/v1/object/list/{bucket}", tag = "storage",
    request_body(content = ListRequest, description = "one folder level: prefix, limit (100), offset, sortBy {column, order}, search"),
    params(("bucket" = String, Path)),
    responses((status = 200, description = "folders (name only) then files, with id, metadata and times"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let bucket = BucketId::parse(&bucket)?;
    let request: ListRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ListRequest::default()
    } else {
        json(&body)?
    };
    if !(1..=1000).contains(&request.limit) {
        return Err(StorageError::invalid_request(
            "limit must be between 1 and 1000",
        ));
    }
    if request.offset < 0 {
        return Err(StorageError::invalid_request("offset may not be negative"));
    }
    let sort = SortColumn::parse(&request.sort_by.column).ok_or_else(|| {
        StorageError::invalid_request(
            "sortBy.column must be name, created_at, updated_at or last_accessed_at",
        )
    })?;
    let descending = match request.sort_by.order.to_ascii_lowercase().as_str() {
        "asc" | "" => false,
        "desc" => true,
        _ => {
            return Err(StorageError::invalid_request(
                "sortBy.order must be asc or desc",
            ));
        }
    };
    let folder = request.prefix.trim_end_matches('/');
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        ObjectName::parse(folder)?;
        format!("{folder}/")
    };
    find_bucket(&state, &bucket).await?;
    let mut tx = caller_tx(&state, &caller).await?;
    let entries = list_objects(
        &mut *tx,
        &ListQuery {
            bucket_id: bucket.as_str(),
            prefix: &prefix,
            search: &request.search,
            limit: request.limit,
            offset: request.offset,
            sort,
            descending,
        },
    )
    .await?;
    tx.rollback().await?;
    let entries = entries
        .into_iter()
        .map(|entry| {
            json!({
                "name": entry.name,
                "id": entry.id,
                "updated_at": entry.updated_at,
                "created_at": entry.created_at,
                "last_accessed_at": entry.last_accessed_at,
                "metadata": entry.metadata,
            })
        })
        .collect();
    Ok(Json(Value::Array(entries)))
}

fn row_json(row: &ObjectRow) -> Value {
    json!({
        "id": row.id,
        "bucket_id": row.bucket_id,
        "name": row.name,
        "owner": row.owner,
        "version": row.version,
        "metadata": row.metadata,
        "user_metadata": row.user_metadata,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "last_accessed_at": row.last_accessed_at,
    })
}

/// Deletes the rows RLS lets the caller delete, commits, then removes their bytes (bytes
/// left behind by a crash here belong to no row and are never served).
async fn delete_names(
    state: &AppState,
    caller: &crate::gotrue::Caller,
    bucket: &BucketId,
    names: &[String],
) -> Result<Vec<ObjectRow>, StorageError> {
    let settings = settings(state)?;
    let mut tx = caller_tx(state, caller).await?;
    let deleted = delete_objects(&mut tx, bucket.as_str(), names).await?;
    tx.commit().await?;
    for row in &deleted {
        if let Some(key) = row_key(bucket, row) {
            settings.backend.delete_quietly(&key).await;
        }
    }
    Ok(deleted)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct DeleteRequest {
    prefixes: Vec<String>,
}

/// `DELETE /object/{bucket}` `{prefixes: [names]}`: answers the objects deleted (those the
/// caller may not delete are left, and left out).
#[utoipa::path(
    delete, path = "/storage/v1/object/{bucket}", tag = "storage",
    request_body(content = DeleteRequest, description = "up to 1000 names"),
    params(("bucket" = String, Path)),
    responses((status = 200, description = "the objects deleted; those the caller may not delete are left, and left out"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn delete_many(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let bucket = BucketId::parse(&bucket)?;
    let request: DeleteRequest = json(&body)?;
    if request.prefixes.is_empty() || request.prefixes.len() > 1000 {
        return Err(StorageError::invalid_request(
            "prefixes must list 1 to 1000 object names",
        ));
    }
    for name in &request.prefixes {
        ObjectName::parse(name)?;
    }
    let deleted = delete_names(&state, &caller, &bucket, &request.prefixes).await?;
    Ok(Json(Value::Array(deleted.iter().map(row_json).collect())))
}

/// `DELETE /object/{bucket}/{path}`.
#[utoipa::path(
    delete, path = "/storage/v1/object/{bucket}/{path}", tag = "storage",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included")),
    responses((status = 200, description = "{message: \"Successfully deleted\"}"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn delete_one(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
) -> Result<Json<Value>, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    let deleted = delete_names(&state, &caller, &bucket, &[name.as_str().to_owned()]).await?;
    if deleted.is_empty() {
        return Err(StorageError::no_such_key());
    }
    Ok(Json(json!({ "message": "Successfully deleted" })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct MoveRequest {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
}

/// `POST /object/move`: a rename within a bucket (UPDATE policy on the old name, its check on
/// the new one). The bytes stay where they are: keys do not depend on names.
#[utoipa::path(
    post, path = "/storage/v1/object/move", tag = "storage",
    request_body(content = MoveRequest, description = "a rename within a bucket"),
    responses((status = 200, description = "{message: \"Successfully moved\"}"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller"), (status = 409, body = StorageErrorBody, description = "the destination exists")),
    security(("bearer" = []))
)]
pub(super) async fn move_object(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let request: MoveRequest = json(&body)?;
    let (bucket, from) = target(&request.bucket_id, &request.source_key)?;
    let to = ObjectName::parse(&request.destination_key)?;
    if request
        .destination_bucket
        .as_deref()
        .is_some_and(|other| other != bucket.as_str())
    {
        return Err(StorageError::invalid_request(
            "moving between buckets is not supported; copy, then delete",
        ));
    }
    let mut tx = caller_tx(&state, &caller).await?;
    rename_object(&mut *tx, bucket.as_str(), from.as_str(), to.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    tx.commit().await?;
    Ok(Json(json!({ "message": "Successfully moved" })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CopyRequest {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
}

/// `POST /object/copy`: SELECT on the source, INSERT (or upsert with `x-upsert: true`) on the
/// destination, both as the caller; the destination bucket's limits apply.
#[utoipa::path(
    post, path = "/storage/v1/object/copy", tag = "storage",
    request_body(content = CopyRequest, description = "copies the bytes; x-upsert: true replaces the destination"),
    responses((status = 200, description = "{Key, Id} of the copy"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller"), (status = 409, body = StorageErrorBody, description = "the destination exists")),
    security(("bearer" = []))
)]
pub(super) async fn copy_object(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let settings = settings(&state)?;
    let request: CopyRequest = json(&body)?;
    let (bucket, from) = target(&request.bucket_id, &request.source_key)?;
    let to_bucket = BucketId::parse(
        request
            .destination_bucket
            .as_deref()
            .unwrap_or(bucket.as_str()),
    )?;
    let to = ObjectName::parse(&request.destination_key)?;
    let destination = find_bucket(&state, &to_bucket).await?;
    let upsert = headers.get("x-upsert").and_then(|v| v.to_str().ok()) == Some("true");

    let mut tx = caller_tx(&state, &caller).await?;
    let source = find_object(&mut *tx, bucket.as_str(), from.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    let source_key = row_key(&bucket, &source).ok_or_else(StorageError::no_such_key)?;
    let metadata = source.metadata.clone().unwrap_or_else(|| json!({}));
    let size = metadata.get("size").and_then(Value::as_u64).unwrap_or(0);
    let limit = destination
        .file_size_limit
        .and_then(|l| u64::try_from(l).ok())
        .map_or(settings.file_size_limit, |l| {
            l.min(settings.file_size_limit)
        });
    if size > limit {
        return Err(StorageError::too_large(limit));
    }
    if let (Some(allowed), Some(mime)) = (
        destination
            .allowed_mime_types
            .as_ref()
            .filter(|a| !a.is_empty()),
        metadata.get("mimetype").and_then(Value::as_str),
    ) {
        let ok = allowed
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(kind) => mime.split('/').next() == Some(kind),
                None => pattern.eq_ignore_ascii_case(mime),
            });
        if !ok {
            return Err(StorageError::invalid_mime(mime));
        }
    }
    let version = Uuid::new_v4();
    let written = write_object(
        &mut tx,
        &NewObject {
            id: Uuid::new_v4(),
            bucket_id: to_bucket.as_str(),
            name: to.as_str(),
            owner: caller.user_id(),
            version: version.to_string(),
            metadata,
            user_metadata: source.user_metadata.clone(),
        },
        upsert,
    )
    .await?;
    let key = object_key(&to_bucket, written.row.id, version);
    settings.backend.copy(&source_key, &key).await?;
    if let Err(err) = tx.commit().await {
        settings.backend.delete_quietly(&key).await;
        return Err(err.into());
    }
    if let Some(previous) = written
        .previous_version
        .as_deref()
        .and_then(|v| v.parse::<Uuid>().ok())
    {
        settings
            .backend
            .delete_quietly(&object_key(&to_bucket, written.row.id, previous))
            .await;
    }
    Ok(Json(json!({
        "Id": written.row.id,
        "Key": format!("{to_bucket}/{to}"),
    })))
}
