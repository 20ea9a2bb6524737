//! Downloads: `GET /object/authenticated/{bucket}/{path}` (and `GET /object/{bucket}/{path}`)
//! read the row as the caller, so RLS decides (an object one may not see is "not found", as
//! Supabase answers); `GET /object/public/{bucket}/{path}` serves public buckets to anyone.
//! `?download` (or `?download=name`) asks for an attachment.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pesachama_storage::{BucketId, ObjectName};
use pesachama_store::storage::{ObjectRow, find_object};
use serde::Deserialize;

use super::error::StorageErrorBody;
use super::{StorageCaller, StorageError, caller_tx, find_bucket, row_key, settings, target};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(super) struct DownloadQuery {
    /// Present: answer as an attachment, named by its value or else by the object.
    pub download: Option<String>,
}

#[utoipa::path(
    get, path = "/storage/v1/object/authenticated/{bucket}/{path}", tag = "storage",
    description = "The object's bytes, if the caller's SELECT policy on storage.objects admits it. `GET /storage/v1/object/{bucket}/{path}` is the same.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included"), ("download" = Option<String>, Query, description = "answer as an attachment, named by this or by the object")),
    responses((status = 200, description = "the bytes, with Content-Type, ETag, Last-Modified and Cache-Control"), (status = 304, description = "If-None-Match matched"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn authenticated(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    let mut tx = caller_tx(&state, &caller).await?;
    let row = find_object(&mut *tx, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    tx.rollback().await?;
    serve(&state, &bucket, &name, &row, query.download).await
}

/// `GET /object/{bucket}/{path}`: what `authenticated` answers, at the path older clients use.
#[utoipa::path(
    get, path = "/storage/v1/object/{bucket}/{path}", tag = "storage",
    description = "The same as `GET /storage/v1/object/authenticated/{bucket}/{path}`.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included"), ("download" = Option<String>, Query)),
    responses((status = 200, description = "the bytes"), (status = 400, body = StorageErrorBody), (status = 404, body = StorageErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn get_object(
    state: State<AppState>,
    caller: StorageCaller,
    path: Path<(String, String)>,
    query: Query<DownloadQuery>,
) -> Result<Response, StorageError> {
    authenticated(state, caller, path, query).await
}

#[utoipa::path(
    get, path = "/storage/v1/object/public/{bucket}/{path}", tag = "storage",
    description = "An object of a public bucket (avatars), without a token.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included"), ("download" = Option<String>, Query)),
    responses((status = 200, description = "the bytes"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller"))
)]
pub(super) async fn public(
    State(state): State<AppState>,
    Path((bucket, path)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    if !find_bucket(&state, &bucket).await?.public {
        return Err(StorageError::no_such_bucket());
    }
    let row = find_object(&state.pool, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    serve(&state, &bucket, &name, &row, query.download).await
}

/// Streams the row's bytes with the headers its metadata recorded at upload.
pub(super) async fn serve(
    state: &AppState,
    bucket: &BucketId,
    name: &ObjectName,
    row: &ObjectRow,
    download: Option<String>,
) -> Result<Response, StorageError> {
    let settings = settings(state)?;
    let key = row_key(bucket, row).ok_or_else(StorageError::no_such_key)?;
    let bytes = settings.backend.get(&key).await?;
    let meta = |field: &str| {
        row.metadata
            .as_ref()
            .and_then(|m| m.get(field))
            .and_then(|v| v.as_str())
            .and_then(|v| HeaderValue::from_str(v).ok())
    };
    let mut response = Response::new(Body::from_stream(bytes.body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        meta("mimetype").unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.length));
    headers.insert(
        header::CACHE_CONTROL,
        meta("cacheControl").unwrap_or(HeaderValue::from_static("no-cache")),
    );
    if let Some(etag) = meta("eTag") {
        headers.insert(header::ETAG, etag);
    }
    if let Some(modified) = row.updated_at.and_then(|at| {
        HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
    }) {
        headers.insert(header::LAST_MODIFIED, modified);
    }
    // What a bucket holds is limited by MIME type; never let a browser guess another.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(file_name) = download {
        let file_name = if file_name.is_empty() {
            name.file_name().to_owned()
        } else {
            file_name
        };
        let encoded = pesachama_storage::sigv4::uri_encode(&file_name, false);
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response.into_response())
}
