//! Signed URLs: `POST /object/sign/{bucket}/{path}` `{expiresIn}` → `{signedURL}`, the batch
//! `POST /object/sign/{bucket}` `{expiresIn, paths}`, and `GET /object/sign/{bucket}/{path}?token=`.
//!
//! Signing needs SELECT on the row as the caller; the token is then the authority: an HS256
//! JWT `{url: "<bucket>/<name>", scope: "download", iat, exp}` signed with the project's JWT
//! secret, as Supabase signs it. It carries no role, so it is never accepted as an access token;
//! an access token (no `url`) is never accepted here, nor is an upload token (scope `upload`,
//! or, unscoped, an `upsert` claim), as storage-api refuses one token for the other action.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use pesachama_storage::{BucketId, ObjectName};
use pesachama_store::storage::{find_object, find_objects};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::StorageErrorBody;
use super::{StorageCaller, StorageError, caller_tx, json, target, url_path};
use crate::AppState;

/// Longest validity a signed URL may ask for: ten years.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// The `scope` of a download token.
const SCOPE_DOWNLOAD: &str = "download";

#[derive(Debug, Serialize, Deserialize)]
struct SignedClaims {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Only upload tokens have it; read so that an unscoped one is known and refused here.
    #[serde(default, skip_serializing)]
    upsert: Option<bool>,
    iat: i64,
    exp: i64,
}

/// The claims of a URL-signing token (ours or storage-api's), its signature and expiry checked.
pub(super) fn decode_signed<T: serde::de::DeserializeOwned>(
    state: &AppState,
    token: &str,
) -> Result<T, StorageError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<T>(
        token,
        &DecodingKey::from_secret(state.config.auth.jwt_secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|err| match err.kind() {
        ErrorKind::ExpiredSignature => StorageError::invalid_jwt("jwt expired"),
        ErrorKind::InvalidSignature => StorageError::invalid_jwt("invalid signature"),
        _ => StorageError::invalid_jwt("jwt malformed"),
    })
}

/// Signs `claims` with the project's JWT secret, as storage-api signs its URLs.
pub(super) fn encode_signed(
    state: &AppState,
    claims: &impl Serialize,
) -> Result<String, StorageError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(state.config.auth.jwt_secret.as_bytes()),
    )
    .map_err(StorageError::internal)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    expires_in: i64,
    #[serde(default)]
    paths: Vec<String>,
}

fn sign_request(body: &[u8]) -> Result<SignRequest, StorageError> {
    let request: SignRequest = json(body)?;
    if !(1..=MAX_EXPIRES_IN).contains(&request.expires_in) {
        return Err(StorageError::invalid_request(format!(
            "expiresIn must be between 1 and {MAX_EXPIRES_IN} seconds"
        )));
    }
    Ok(request)
}

fn signed_url(
    state: &AppState,
    bucket: &BucketId,
    name: &str,
    expires_in: i64,
) -> Result<String, StorageError> {
    let now = chrono::Utc::now().timestamp();
    let claims = SignedClaims {
        url: format!("{bucket}/{name}"),
        scope: Some(SCOPE_DOWNLOAD.to_owned()),
        upsert: None,
        iat: now,
        exp: now + expires_in,
    };
    let token = encode_signed(state, &claims)?;
    Ok(format!(
        "/object/sign/{bucket}/{}?token={token}",
        url_path(name)
    ))
}

#[utoipa::path(
    post, path = "/storage/v1/object/sign/{bucket}/{path}", tag = "storage",
    request_body(content = SignRequest, description = "expiresIn, seconds"),
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included")),
    responses((status = 200, description = "{signedURL}: a path with a token (a JWT naming the object, with its expiry)"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn sign_one(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    let request = sign_request(&body)?;
    let mut tx = caller_tx(&state, &caller).await?;
    find_object(&mut *tx, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    tx.rollback().await?;
    let url = signed_url(&state, &bucket, name.as_str(), request.expires_in)?;
    Ok(Json(json!({ "signedURL": url })))
}

#[utoipa::path(
    post, path = "/storage/v1/object/sign/{bucket}", tag = "storage",
    request_body(content = SignRequest, description = "expiresIn and up to 1000 paths"),
    params(("bucket" = String, Path)),
    responses((status = 200, description = "[{path, signedURL, error}] in the order asked"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller")),
    security(("bearer" = []))
)]
pub(super) async fn sign_many(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path(bucket): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let bucket = BucketId::parse(&bucket)?;
    let request = sign_request(&body)?;
    if request.paths.is_empty() || request.paths.len() > 1000 {
        return Err(StorageError::invalid_request(
            "paths must list 1 to 1000 object names",
        ));
    }
    let valid: Vec<String> = request
        .paths
        .iter()
        .filter(|path| ObjectName::parse(path).is_ok())
        .cloned()
        .collect();
    let mut tx = caller_tx(&state, &caller).await?;
    let visible = find_objects(&mut *tx, bucket.as_str(), &valid).await?;
    tx.rollback().await?;
    let mut answers = Vec::with_capacity(request.paths.len());
    for path in &request.paths {
        let entry = if visible.iter().any(|row| &row.name == path) {
            let url = signed_url(&state, &bucket, path, request.expires_in)?;
            json!({ "error": null, "path": path, "signedURL": url })
        } else {
            json!({
                "error": "Either the object does not exist or you do not have access to it",
                "path": path,
                "signedURL": null,
            })
        };
        answers.push(entry);
    }
    Ok(Json(Value::Array(answers)))
}

#[derive(Debug, Deserialize)]
pub(super) struct SignedQuery {
    token: Option<String>,
    download: Option<String>,
}

#[utoipa::path(
    get, path = "/storage/v1/object/sign/{bucket}/{path}", tag = "storage",
    description = "The object's bytes for whoever holds a signed URL's token, until it expires.",
    params(("bucket" = String, Path), ("path" = String, Path), ("token" = String, Query, description = "the signed URL's token"), ("download" = Option<String>, Query)),
    responses((status = 200, description = "the bytes"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 404, body = StorageErrorBody, description = "no such bucket or object, or not visible to the caller"))
)]
pub(super) async fn download_signed(
    State(state): State<AppState>,
    Path((bucket, path)): Path<(String, String)>,
    Query(query): Query<SignedQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, StorageError> {
    let (bucket, name) = target(&bucket, &path)?;
    let token = query
        .token
        .ok_or_else(|| StorageError::invalid_request("the token query parameter is missing"))?;
    let claims: SignedClaims = decode_signed(&state, &token)?;
    let for_download = match claims.scope.as_deref() {
        Some(scope) => scope == SCOPE_DOWNLOAD,
        None => claims.upsert.is_none(),
    };
    if !for_download {
        return Err(StorageError::invalid_signature(
            "Token is not scoped for download",
        ));
    }
    if claims.url != format!("{bucket}/{name}") {
        return Err(StorageError::invalid_jwt(
            "the token was signed for another object",
        ));
    }
    let row = find_object(&state.pool, bucket.as_str(), name.as_str())
        .await?
        .ok_or_else(StorageError::no_such_key)?;
    super::download::serve(
        &state,
        &bucket,
        &name,
        &row,
        query.download,
        headers.get(axum::http::header::RANGE),
    )
    .await
}
