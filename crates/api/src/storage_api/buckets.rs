//! `GET /bucket` and `GET /bucket/{id}`, read as the caller (buckets are readable here; on a
//! Supabase project its own bucket policies apply).

use axum::Json;
use axum::extract::{Path, State};
use pesachama_store::storage::Bucket;
use serde_json::{Value, json};

use super::error::StorageErrorBody;
use super::{StorageCaller, StorageError, caller_tx};
use crate::AppState;

fn bucket_json(bucket: &Bucket) -> Value {
    json!({
        "id": bucket.id,
        "name": bucket.name,
        "owner": bucket.owner.map(|o| o.to_string()).unwrap_or_default(),
        "public": bucket.public,
        "file_size_limit": bucket.file_size_limit,
        "allowed_mime_types": bucket.allowed_mime_types,
        "created_at": bucket.created_at,
        "updated_at": bucket.updated_at,
    })
}

#[utoipa::path(
    get, path = "/storage/v1/bucket", tag = "storage",
    responses((status = 200, description = "the buckets the caller may see: id, name, public, file_size_limit, allowed_mime_types"), (status = 400, body = StorageErrorBody)),
    security(("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
) -> Result<Json<Value>, StorageError> {
    let mut tx = caller_tx(&state, &caller).await?;
    let buckets = pesachama_store::storage::buckets(&mut *tx).await?;
    tx.rollback().await?;
    Ok(Json(Value::Array(
        buckets.iter().map(bucket_json).collect(),
    )))
}

#[utoipa::path(
    get, path = "/storage/v1/bucket/{id}", tag = "storage",
    params(("id" = String, Path, description = "avatars, documents or recordings")),
    responses((status = 200, description = "the bucket"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, StorageError> {
    let mut tx = caller_tx(&state, &caller).await?;
    let bucket = pesachama_store::storage::bucket(&mut *tx, &id)
        .await?
        .ok_or_else(StorageError::no_such_bucket)?;
    tx.rollback().await?;
    Ok(Json(bucket_json(&bucket)))
}
