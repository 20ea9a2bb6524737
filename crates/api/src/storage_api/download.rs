//! Downloads: `GET /object/authenticated/{bucket}/{path}` (and `GET /object/{bucket}/{path}`)
//! read the row as the caller, so RLS decides (an object one may not see is "not found", as
//! Supabase answers); `GET /object/public/{bucket}/{path}` serves public buckets to anyone.
//! `?download` (or `?download=name`) asks for an attachment; a `Range: bytes=...` header asks for
//! part of the object (206), as media players seeking in a recording do.
//! `GET`/`HEAD /object/info/{bucket}/{path}` describe an object without its bytes (supabase-js
//! `info()` and `exists()`), under the same rules as a download.

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
    headers: axum::http::HeaderMap,
) -> Result<Response, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    let mut tx = caller_tx(&state, &caller).await?;
    let row = find_object(&mut *tx, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    tx.rollback().await?;
    serve(
        &state,
        &bucket,
        &name,
        &row,
        query.download,
        headers.get(header::RANGE),
    )
    .await
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
    headers: axum::http::HeaderMap,
) -> Result<Response, StorageError> {
    authenticated(state, caller, path, query, headers).await
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
    headers: axum::http::HeaderMap,
) -> Result<Response, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    if !find_bucket(&state, &bucket).await?.public {
        return Err(StorageError::no_such_bucket());
    }
    let row = find_object(&state.pool, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    serve(
        &state,
        &bucket,
        &name,
        &row,
        query.download,
        headers.get(header::RANGE),
    )
    .await
}

#[utoipa::path(
    get, path = "/storage/v1/object/info/{bucket}/{path}", tag = "storage",
    description = "What storage-api's info endpoint answers about an object (size, type, etag, times, its user metadata), if the caller may read it; `HEAD` for whether it exists. `/object/info/authenticated/...` and `/object/info/public/...` are the same.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included")),
    responses((status = 200, description = "the object's description"), (status = 400, body = StorageErrorBody), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn info(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
) -> Result<Response, StorageError> {
    // `/object/info/authenticated/{bucket}/...` and `/object/info/public/{bucket}/...` are the
    // same question: the first segment after `info` is then not a bucket.
    let (bucket, path) = match bucket.as_str() {
        "authenticated" | "public" => path
            .split_once('/')
            .map(|(b, p)| (b.to_owned(), p.to_owned()))
            .ok_or_else(StorageError::no_such_key)?,
        _ => (bucket, path),
    };
    let (bucket, name) = target(&bucket, &path)?;
    let row = if find_bucket(&state, &bucket).await?.public {
        find_object(&state.pool, bucket.as_str(), name.as_str()).await?
    } else {
        let mut tx = caller_tx(&state, &caller).await?;
        let row = find_object(&mut *tx, bucket.as_str(), name.as_str()).await?;
        tx.rollback().await?;
        row
    };
    let row = row.ok_or_else(StorageError::no_such_key)?;
    let meta = |field: &str| row.metadata.as_ref().and_then(|m| m.get(field)).cloned();
    Ok(axum::Json(serde_json::json!({
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "bucket_id": row.bucket_id,
        "size": meta("size"),
        "content_type": meta("mimetype"),
        "cache_control": meta("cacheControl"),
        "etag": meta("eTag"),
        "metadata": row.user_metadata,
        "last_modified": row.updated_at,
        "created_at": row.created_at,
    }))
    .into_response())
}

/// One byte range asked for with `Range: bytes=first-last`, `bytes=first-` or `bytes=-suffix`,
/// within an object of `length` bytes: `Some(Ok((first, last)))`, inclusive; `Some(Err(()))`
/// when it cannot be satisfied (416); `None` when the header is absent or is not one range we
/// serve (several ranges, another unit), which is answered whole, as RFC 9110 allows.
fn byte_range(header: Option<&HeaderValue>, length: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 || length == 0 {
            return Some(Err(()));
        }
        (length.saturating_sub(suffix), length - 1)
    } else {
        let first: u64 = first.parse().ok()?;
        let last = if last.is_empty() {
            length.saturating_sub(1)
        } else {
            last.parse::<u64>().ok()?.min(length.saturating_sub(1))
        };
        if first >= length || last < first {
            return Some(Err(()));
        }
        (first, last)
    };
    Some(Ok(range))
}

/// Streams the row's bytes with the headers its metadata recorded at upload.
pub(super) async fn serve(
    state: &AppState,
    bucket: &BucketId,
    name: &ObjectName,
    row: &ObjectRow,
    download: Option<String>,
    range: Option<&HeaderValue>,
) -> Result<Response, StorageError> {
    let settings = settings(state)?;
    let key = row_key(bucket, row).ok_or_else(StorageError::no_such_key)?;
    let bytes = settings.backend.get(&key).await?;
    let range = match byte_range(range, bytes.length) {
        Some(Err(())) => {
            let mut refused = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", bytes.length)) {
                refused.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(refused);
        }
        Some(Ok(range)) => Some(range),
        None => None,
    };
    let meta = |field: &str| {
        row.metadata
            .as_ref()
            .and_then(|m| m.get(field))
            .and_then(|v| v.as_str())
            .and_then(|v| HeaderValue::from_str(v).ok())
    };
    let (status, length, body) = match range {
        // The bytes before the range are read and dropped: the stores hand out streams from the
        // start. Seeking is correct; reading up to it is the cost, the object's size at most.
        Some((first, last)) => (
            StatusCode::PARTIAL_CONTENT,
            last - first + 1,
            Body::from_stream(slice(bytes.body, first, last - first + 1)),
        ),
        None => (StatusCode::OK, bytes.length, Body::from_stream(bytes.body)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        meta("mimetype").unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((first, last)) = range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{}", bytes.length))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
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

/// The `take` bytes of `body` that start `skip` bytes in.
fn slice(
    body: pesachama_storage::ByteStream,
    skip: u64,
    take: u64,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    use futures_util::StreamExt as _;
    futures_util::stream::unfold(
        (body, skip, take),
        |(mut body, mut skip, mut take)| async move {
            while take > 0 {
                let chunk = match body.next().await? {
                    Ok(chunk) => chunk,
                    Err(err) => return Some((Err(err), (body, 0, 0))),
                };
                let len = chunk.len() as u64;
                if skip >= len {
                    skip -= len;
                    continue;
                }
                let start = skip as usize;
                let end = (skip + take).min(len) as usize;
                take -= (end - start) as u64;
                skip = 0;
                return Some((Ok(chunk.slice(start..end)), (body, skip, take)));
            }
            None
        },
    )
}
