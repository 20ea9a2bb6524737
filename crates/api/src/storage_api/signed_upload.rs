//! Signed upload URLs, as storage-api serves supabase-js `createSignedUploadUrl` and
//! `uploadToSignedUrl`: `POST /object/upload/sign/{bucket}/{path}` (`x-upsert: true` to allow a
//! replace) answers `{url, token}`, and `PUT /object/upload/sign/{bucket}/{path}?token=` uploads
//! with no Authorization of its own, as a multipart form or a raw body.
//!
//! The token is an HS256 JWT signed with the project's JWT secret, as storage-api's:
//! `{url: "<bucket>/<name>", owner, upsert, scope: "upload", iat, exp}`, two hours by default
//! (Supabase's hosted setting; `{expiresIn}` in the body asks for less). It has no `role`, so it
//! is never an access token, and the download route refuses it (as this route refuses a
//! download token).
//!
//! Who may write is decided twice, both times by the bucket's policies:
//! - at signing, the row's insert (or upsert) runs as the caller and is rolled back, as
//!   storage-api checks: a caller who may not write gets 403 and no URL, and an existing object
//!   without upsert gets 409;
//! - at upload, the write runs again as the signer (`owner`), with the user's role and claims as
//!   the database has them now. storage-api writes as its superuser here; running as the signer
//!   means a URL stops working when its signer leaves the chama, is banned or deleted.
//!
//! A URL signed by the service role (no `owner`) uploads as the service role; one signed with the
//! anon key, where a project's policies let anon write, uploads as anon. Size limits and MIME
//! types are the bucket's, as for any upload.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use chrono::Utc;
use pesachama_auth::{AccessClaims, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::StorageErrorBody;
use super::sign::{decode_signed, encode_signed};
use super::upload::{check_write, receive};
use super::{StorageCaller, StorageError, find_bucket, json, target, url_path};
use crate::AppState;
use crate::gotrue::Caller;

/// How long a signed upload URL works unless asked for less: Supabase's two hours.
const UPLOAD_URL_TTL_SECONDS: i64 = 2 * 3600;

/// The `scope` of an upload token.
const SCOPE_UPLOAD: &str = "upload";
/// The `signer` of a token the service role signed (our claim: storage-api writes as its
/// superuser whoever signed, so it needs none).
const SIGNER_SERVICE: &str = "service_role";

#[derive(Debug, Serialize, Deserialize)]
struct UploadClaims {
    url: String,
    /// The signing user's id; absent when an API key signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// Whether the upload may replace an object. Read as optional: an unscoped token (storage-api
    /// before scopes) is an upload token exactly when it has this claim.
    #[serde(default)]
    upsert: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignUploadRequest {
    /// Seconds, 1 to 7200; two hours when absent (supabase-js sends `{}`).
    #[serde(default)]
    expires_in: Option<i64>,
}

#[utoipa::path(
    post, path = "/storage/v1/object/upload/sign/{bucket}/{path}", tag = "storage",
    description = "A URL that uploads this one object without further authorization, for two hours (supabase-js `createSignedUploadUrl`). The caller must be allowed to write the object now: the bucket's policies are checked at signing and again, as the signer, at upload.",
    request_body(content = SignUploadRequest, description = "optional; supabase-js sends {}"),
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included"), ("x-upsert" = Option<bool>, Header, description = "the upload may replace an existing object")),
    responses((status = 200, description = "{url: /object/upload/sign/{bucket}/{path}?token=..., token}"), (status = 400, body = StorageErrorBody, description = "a bad name, body or token"), (status = 403, body = StorageErrorBody, description = "the bucket's policies refuse the caller this write"), (status = 404, body = StorageErrorBody, description = "no such bucket"), (status = 409, body = StorageErrorBody, description = "the object exists and upsert was not asked")),
    security(("bearer" = []))
)]
pub(super) async fn sign_upload(
    State(state): State<AppState>,
    StorageCaller(caller): StorageCaller,
    Path((bucket, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, StorageError> {
    let (bucket_id, name) = target(&bucket, &path)?;
    let request: SignUploadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SignUploadRequest::default()
    } else {
        json(&body)?
    };
    let expires_in = request.expires_in.unwrap_or(UPLOAD_URL_TTL_SECONDS);
    if !(1..=UPLOAD_URL_TTL_SECONDS).contains(&expires_in) {
        return Err(StorageError::invalid_request(format!(
            "expiresIn must be between 1 and {UPLOAD_URL_TTL_SECONDS} seconds"
        )));
    }
    let upsert = headers
        .get("x-upsert")
        .and_then(|value| value.to_str().ok())
        == Some("true");
    find_bucket(&state, &bucket_id).await?;
    check_write(&state, &caller, &bucket_id, &name, upsert).await?;

    let now = Utc::now().timestamp();
    let claims = UploadClaims {
        url: format!("{bucket_id}/{name}"),
        owner: caller.user_id().map(|id| id.to_string()),
        upsert: Some(upsert),
        scope: Some(SCOPE_UPLOAD.to_owned()),
        signer: matches!(caller, Caller::Service { .. }).then(|| SIGNER_SERVICE.to_owned()),
        iat: now,
        exp: now + expires_in,
    };
    let token = encode_signed(&state, &claims)?;
    let url = format!(
        "/object/upload/sign/{bucket_id}/{}?token={token}",
        url_path(name.as_str())
    );
    Ok(Json(json!({ "url": url, "token": token })))
}

#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    token: Option<String>,
}

#[utoipa::path(
    put, path = "/storage/v1/object/upload/sign/{bucket}/{path}", tag = "storage",
    description = "Uploads to a signed upload URL (supabase-js `uploadToSignedUrl`), a raw body or multipart form data, with no Authorization: the token decides, and the write runs as the user who signed it. Whether it may replace is the token's, not the request's.",
    params(("bucket" = String, Path), ("path" = String, Path, description = "the object's name, slashes included"), ("token" = String, Query, description = "the token of the signed upload URL")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the bytes (any MIME type the bucket allows)"),
    responses((status = 200, description = "{Key, Id}"), (status = 400, body = StorageErrorBody, description = "a bad name or body; a missing, expired, forged token, or one for another object or action"), (status = 403, body = StorageErrorBody, description = "the signer may no longer write this object"), (status = 409, body = StorageErrorBody, description = "the object exists and the token does not allow replacing it"), (status = 413, body = StorageErrorBody, description = "larger than the bucket allows"), (status = 415, body = StorageErrorBody, description = "a MIME type the bucket refuses"))
)]
pub(super) async fn upload_signed(
    State(state): State<AppState>,
    Path((bucket, path)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, StorageError> {
    let (bucket_id, name) = target(&bucket, &path)?;
    let token = query
        .token
        .ok_or_else(|| StorageError::invalid_request("the token query parameter is missing"))?;
    let claims: UploadClaims = decode_signed(&state, &token)?;
    let for_upload = match claims.scope.as_deref() {
        Some(scope) => scope == SCOPE_UPLOAD,
        None => claims.upsert.is_some(),
    };
    if !for_upload {
        return Err(StorageError::invalid_signature(
            "Token is not scoped for upload",
        ));
    }
    if claims.url != format!("{bucket_id}/{name}") {
        return Err(StorageError::invalid_signature(
            "the token was signed for another object",
        ));
    }
    let signer = signer(&state, &claims).await?;
    let upsert = claims.upsert.unwrap_or(false);
    receive(&state, &signer, &bucket, &path, upsert, &headers, body).await
}

/// The caller the upload runs as: the signing user as the database has them now (claims built
/// from `auth.users`, as an access token of theirs would carry), or the API key that signed.
async fn signer(state: &AppState, claims: &UploadClaims) -> Result<Caller, StorageError> {
    let now = Utc::now().timestamp();
    let Some(owner) = claims.owner.as_deref() else {
        return Ok(if claims.signer.as_deref() == Some(SIGNER_SERVICE) {
            Caller::Service {
                claims: api_key_claims(Role::ServiceRole, now, claims.exp),
            }
        } else {
            Caller::Anonymous
        });
    };
    let id: Uuid = owner
        .parse()
        .map_err(|_| StorageError::invalid_signature("the token's owner is not a user id"))?;
    let user = pesachama_store::auth::find_user_by_id(&state.pool, id)
        .await?
        .filter(|user| user.banned_until.is_none_or(|until| until <= Utc::now()))
        .ok_or_else(|| {
            StorageError::access_denied("the user who signed this URL may no longer upload")
        })?;
    let claims = AccessClaims {
        sub: Some(id),
        aud: Some(Value::String("authenticated".to_owned())),
        exp: claims.exp,
        iat: now,
        iss: Some(state.auth.issuer.issuer().to_owned()),
        email: Some(user.email.clone().unwrap_or_default()),
        phone: Some(user.phone.clone().unwrap_or_default()),
        role: Role::Authenticated,
        aal: None,
        amr: None,
        session_id: None,
        is_anonymous: user.is_anonymous,
        app_metadata: user.raw_app_meta_data.unwrap_or_else(|| json!({})),
        user_metadata: user.raw_user_meta_data.unwrap_or_else(|| json!({})),
    };
    Ok(Caller::User { id, claims })
}

fn api_key_claims(role: Role, now: i64, exp: i64) -> AccessClaims {
    AccessClaims {
        sub: None,
        aud: None,
        exp,
        iat: now,
        iss: None,
        email: None,
        phone: None,
        role,
        aal: None,
        amr: None,
        session_id: None,
        is_anonymous: false,
        app_metadata: json!({}),
        user_metadata: json!({}),
    }
}
