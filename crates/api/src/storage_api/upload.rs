//! `POST /object/{bucket}/{path}` (insert, or replace with `x-upsert: true`) and `PUT` (replace).
//!
//! storage-js sends a Blob/File as `multipart/form-data` (fields `cacheControl`, optional
//! `metadata`, the file under an empty name) and a Buffer or stream as the raw body with
//! `content-type`, `cache-control` and optional `x-metadata` (base64 JSON). Both are streamed
//! to a spool, never held in memory.
//!
//! Order of checks, so a refused upload writes nothing: the name, the bucket, the MIME type
//! and an announced length first; then RLS, by running the row's insert (or upsert) as the
//! caller and rolling it back; then the body, counted against the limit as it arrives; last
//! the real write: the row, the bytes renamed into place, the commit. A refusal made before
//! the body is read still reads (and drops) the body before answering, up to 8 MiB or 5 s,
//! so clients that write the whole body first see the refusal and not a broken connection.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use futures_util::StreamExt;
use pesachama_storage::{BucketId, ObjectName, Spool, Spooled, object_key};
use pesachama_store::storage::{Bucket, NewObject, Written, write_object};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::StorageErrorBody;
use super::{StorageCaller, StorageError, caller_tx, find_bucket, settings, target};
use crate::AppState;
use crate::gotrue::Caller;

/// What describes an upload besides its bytes.
#[derive(Debug)]
struct Described {
    mime: String,
    cache_control: String,
    user_metadata: Option<Value>,
}

#[utoipa::path(
    method(post, put), path = "/storage/v1/object/{bucket}/{path}", tag = "storage",
    description = "Uploads an object: the raw body, or multipart form data (a file part and optional cacheControl). POST creates; PUT, or `x-upsert: true`, replaces. The bucket's size limit and MIME types apply.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included; no .., absolute paths or NUL"), ("x-upsert" = Option<bool>, Header, description = "replace an existing object")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the bytes (any MIME type the bucket allows)"),
    responses((status = 200, description = "{Key, Id}"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller"), (status = 403, body = StorageErrorBody, description = "the bucket's policies refuse the write"), (status = 409, body = StorageErrorBody, description = "the object exists and upsert was not asked"), (status = 413, body = StorageErrorBody, description = "larger than the bucket allows"), (status = 415, body = StorageErrorBody, description = "a MIME type the bucket refuses")),
    security(("bearer" = []))
)]
pub(super) async fn upload(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, StorageError> {
    let upsert = method == Method::PUT || header_text(&headers, "x-upsert") == Some("true");
    receive(&state, &caller, &bucket, &path, upsert, &headers, body).await
}

/// An upload as `caller`, the bucket's limits and the caller's policies applied; the answer
/// `{Key, Id}`. Shared by the plain upload and the upload to a signed URL (as its signer).
pub(super) async fn receive(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    path: &str,
    upsert: bool,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<Value>, StorageError> {
    let settings = settings(state)?;
    let accepted = match accept(state, caller, bucket, path, upsert, headers).await {
        Ok(accepted) => accepted,
        Err(refusal) => {
            discard(body).await;
            return Err(refusal);
        }
    };
    let Accepted {
        bucket_id,
        name,
        bucket,
        limit,
        multipart,
    } = accepted;
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");

    let spool = settings
        .backend
        .spool(limit)
        .await
        .map_err(StorageError::internal)?;
    let (spooled, described) = if multipart {
        read_multipart(content_type, body, spool, &bucket).await?
    } else {
        let described = Described {
            mime: essence(content_type)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            cache_control: header_text(headers, header::CACHE_CONTROL.as_str())
                .unwrap_or("no-cache")
                .to_owned(),
            user_metadata: header_text(headers, "x-metadata")
                .map(decode_metadata)
                .transpose()?,
        };
        (read_raw(body, spool).await?, described)
    };

    let written = store(state, caller, &bucket_id, &name, upsert, spooled, described).await?;
    Ok(Json(json!({
        "Id": written.row.id,
        "Key": format!("{bucket_id}/{name}"),
    })))
}

/// What the checks made before reading the body settle.
struct Accepted {
    bucket_id: BucketId,
    name: ObjectName,
    bucket: Bucket,
    limit: u64,
    multipart: bool,
}

/// Every check that needs no byte of the body: the name, the bucket, the MIME type and an
/// announced length of a raw body, then RLS (and a duplicate) by a rolled-back write.
async fn accept(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    path: &str,
    upsert: bool,
    headers: &HeaderMap,
) -> Result<Accepted, StorageError> {
    let settings = settings(state)?;
    let (bucket_id, name) = target(bucket, path)?;
    let bucket = find_bucket(state, &bucket_id).await?;
    let limit = bucket
        .file_size_limit
        .and_then(|limit| u64::try_from(limit).ok())
        .map_or(settings.file_size_limit, |limit| {
            limit.min(settings.file_size_limit)
        });
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let multipart = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");

    if !multipart {
        let mime = essence(content_type).unwrap_or("application/octet-stream");
        check_mime(&bucket, mime)?;
        let announced = header_text(headers, header::CONTENT_LENGTH.as_str())
            .and_then(|length| length.parse::<u64>().ok());
        if announced.is_some_and(|length| length > limit) {
            return Err(StorageError::too_large(limit));
        }
    }
    check_write(state, caller, &bucket_id, &name, upsert).await?;
    Ok(Accepted {
        bucket_id,
        name,
        bucket,
        limit,
        multipart,
    })
}

/// The most of a refused upload's body read and dropped before the refusal is sent.
const DISCARD_BYTES: usize = 8 * 1024 * 1024;
/// ... and the longest that takes.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads what is left of a refused upload's body and drops it. Clients (fetch in Node and in
/// browsers, so supabase-js) write the whole body before reading the answer: a server that
/// answers and closes while the body still arrives makes them fail with a broken pipe
/// ("fetch failed") instead of showing the 403, 404, 409, 413 or 415, as Node's own HTTP
/// server avoids by draining. Past the bounds the connection is closed anyway.
async fn discard(body: Body) {
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut read = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            read = read.saturating_add(chunk.len());
            if read > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `type/subtype` without parameters, or `None` when absent.
fn essence(content_type: &str) -> Option<&str> {
    let essence = content_type.split(';').next()?.trim();
    (!essence.is_empty()).then_some(essence)
}

/// A MIME type is `type/subtype` of token characters (so it is also a safe header value), and
/// one the bucket allows (`image/*` style wildcards included); a bucket without a list takes any.
fn check_mime(bucket: &Bucket, mime: &str) -> Result<(), StorageError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let well_formed = mime
        .split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && token(sub));
    if !well_formed {
        return Err(StorageError::invalid_mime(mime));
    }
    let Some(allowed) = bucket.allowed_mime_types.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let mime = mime.to_ascii_lowercase();
    let accepted = allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_suffix("/*") {
            Some(kind) => mime.split('/').next() == Some(kind),
            None => pattern == mime,
        }
    });
    if accepted {
        Ok(())
    } else {
        Err(StorageError::invalid_mime(&mime))
    }
}

fn decode_metadata(raw: &str) -> Result<Value, StorageError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| StorageError::invalid_request("x-metadata is not base64"))?;
    parse_metadata(&bytes)
}

fn parse_metadata(bytes: &[u8]) -> Result<Value, StorageError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(StorageError::invalid_request(
            "metadata must be a JSON object",
        )),
    }
}

/// Runs the row's write as the caller and rolls it back: RLS refuses (403) or a duplicate
/// is found (409) before a byte of the body is read.
pub(super) async fn check_write(
    state: &AppState,
    caller: &Caller,
    bucket: &BucketId,
    name: &ObjectName,
    upsert: bool,
) -> Result<(), StorageError> {
    let mut tx = caller_tx(state, caller).await?;
    let probe = NewObject {
        id: Uuid::new_v4(),
        bucket_id: bucket.as_str(),
        name: name.as_str(),
        owner: caller.user_id(),
        version: Uuid::new_v4().to_string(),
        metadata: json!({}),
        user_metadata: None,
    };
    write_object(&mut tx, &probe, upsert).await?;
    tx.rollback().await?;
    Ok(())
}

async fn read_raw(body: Body, mut spool: Spool) -> Result<Spooled, StorageError> {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| StorageError::invalid_request(err.to_string()))?;
        spool.write(&chunk).await?;
    }
    spool.finish().await.map_err(StorageError::internal)
}

async fn read_multipart(
    content_type: &str,
    body: Body,
    mut spool: Spool,
    bucket: &Bucket,
) -> Result<(Spooled, Described), StorageError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|err| StorageError::invalid_request(format!("bad multipart body: {err}")))?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let bad =
        |err: multer::Error| StorageError::invalid_request(format!("bad multipart body: {err}"));
    let mut cache_control = None;
    let mut user_metadata = None;
    let mut mime = None;
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("cacheControl") => cache_control = Some(field.text().await.map_err(bad)?),
            Some("metadata") => {
                user_metadata = Some(parse_metadata(&field.bytes().await.map_err(bad)?)?)
            }
            _ if mime.is_none() && (field.file_name().is_some() || field.name() == Some("")) => {
                let content_type = field
                    .content_type()
                    .map(|mime| mime.essence_str().to_owned())
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                check_mime(bucket, &content_type)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    spool.write(&chunk).await?;
                }
                mime = Some(content_type);
            }
            _ => {}
        }
    }
    let Some(mime) = mime else {
        return Err(StorageError::invalid_request(
            "the multipart body has no file",
        ));
    };
    let cache_control = match cache_control {
        Some(seconds) if seconds.trim().parse::<u64>().is_ok() => {
            format!("max-age={}", seconds.trim())
        }
        Some(other) if !other.trim().is_empty() => other.trim().to_owned(),
        _ => "no-cache".to_owned(),
    };
    let spooled = spool.finish().await.map_err(StorageError::internal)?;
    Ok((
        spooled,
        Described {
            mime,
            cache_control,
            user_metadata,
        },
    ))
}

/// Writes the row as the caller, moves the bytes into place, commits; then removes the
/// replaced version's bytes. A failure before the commit leaves the old object untouched.
async fn store(
    state: &AppState,
    caller: &Caller,
    bucket: &BucketId,
    name: &ObjectName,
    upsert: bool,
    spooled: Spooled,
    described: Described,
) -> Result<Written, StorageError> {
    let settings = settings(state)?;
    if axum::http::HeaderValue::from_str(&described.cache_control).is_err() {
        return Err(StorageError::invalid_request(
            "cache-control is not a valid header value",
        ));
    }
    let version = Uuid::new_v4();
    let metadata = json!({
        "eTag": format!("\"{}\"", spooled.etag),
        "size": spooled.size,
        "mimetype": described.mime,
        "cacheControl": described.cache_control,
        "lastModified": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "contentLength": spooled.size,
        "httpStatusCode": 200,
    });
    let mut tx = caller_tx(state, caller).await?;
    let written = write_object(
        &mut tx,
        &NewObject {
            id: Uuid::new_v4(),
            bucket_id: bucket.as_str(),
            name: name.as_str(),
            owner: caller.user_id(),
            version: version.to_string(),
            metadata,
            user_metadata: described.user_metadata,
        },
        upsert,
    )
    .await?;
    let key = object_key(bucket, written.row.id, version);
    settings.backend.commit(spooled, &key).await?;
    if let Err(err) = tx.commit().await {
        settings.backend.delete_quietly(&key).await;
        return Err(err.into());
    }
    let replaced = written
        .previous_version
        .as_deref()
        .and_then(|previous| previous.parse::<Uuid>().ok())
        .filter(|previous| *previous != version);
    if let Some(previous) = replaced {
        settings
            .backend
            .delete_quietly(&object_key(bucket, written.row.id, previous))
            .await;
    }
    Ok(written)
}
