//! `/storage/v1`: the subset of Supabase Storage's API that supabase-js and supabase_flutter
//! call through `storage.from(bucket)` (CONTRACTS §4).
//!
//! Authorization is the database's: every object operation runs its statement on
//! `storage.objects` in a transaction with the caller's role and claims, so the bucket
//! policies decide (the service role bypasses them). Bytes live in the configured
//! [`ObjectStore`]; a row is only ever committed after its bytes are safely in place.

mod buckets;
mod download;
pub mod error;
mod manage;
mod sign;
mod signed_upload;
mod upload;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use pesachama_storage::{BucketId, ObjectName, ObjectStore};
use pesachama_store::storage::Bucket;
use sqlx::{Postgres, Transaction};

use crate::AppState;
use crate::gotrue::Caller;
pub use error::StorageError;

/// Largest JSON body of the non-upload routes (lists, signing, deletes).
const JSON_LIMIT: usize = 1024 * 1024;

/// Where objects are kept and the server-wide size cap.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub backend: ObjectStore,
    /// No upload is larger than this, whatever its bucket allows (`STORAGE_FILE_SIZE_LIMIT`).
    pub file_size_limit: u64,
}

/// The default server-wide cap: the `recordings` bucket's 500 MiB.
pub const DEFAULT_FILE_SIZE_LIMIT: u64 = 500 * 1024 * 1024;

/// The `/storage/v1` routes. Uploads read their body as a stream and count it against the
/// bucket's limit themselves, so this router is merged outside the app-wide body-size guards.
pub fn router(state: AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/bucket", get(buckets::list))
        .route("/bucket/{id}", get(buckets::get_one))
        .route("/object/list/{bucket}", post(manage::list))
        .route("/object/move", post(manage::move_object))
        .route("/object/copy", post(manage::copy_object))
        .route("/object/sign/{bucket}", post(sign::sign_many))
        .route(
            "/object/sign/{bucket}/{*path}",
            post(sign::sign_one).get(sign::download_signed),
        )
        .route(
            "/object/upload/sign/{bucket}/{*path}",
            post(signed_upload::sign_upload).put(signed_upload::upload_signed),
        )
        .route("/object/public/{bucket}/{*path}", get(download::public))
        .route("/object/info/{bucket}/{*path}", get(download::info))
        .route(
            "/object/authenticated/{bucket}/{*path}",
            get(download::authenticated),
        )
        .route("/object/{bucket}", delete(manage::delete_many))
        .route(
            "/object/{bucket}/{*path}",
            post(upload::upload)
                .put(upload::upload)
                .get(download::get_object)
                .delete(manage::delete_one),
        )
        .fallback(|| async { StorageError::invalid_request("no such storage route") })
        .layer(DefaultBodyLimit::max(JSON_LIMIT));
    Router::new()
        .nest("/storage/v1", routes)
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::metrics::track,
        ))
}

/// The `/storage/v1` part of the OpenAPI document. Storage keeps its own router (uploads
/// stream past the app's body limits, and `{*path}` names have slashes), so its paths are
/// listed here and merged into the document; the test of the document checks every route.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        buckets::list, buckets::get_one, manage::list, manage::move_object, manage::copy_object,
        sign::sign_many, sign::sign_one, sign::download_signed, download::public,
        download::authenticated, download::get_object, manage::delete_many, manage::delete_one,
        upload::upload, signed_upload::sign_upload, signed_upload::upload_signed
    ),
    components(schemas(error::StorageErrorBody)),
    tags((name = "storage", description = "Supabase Storage: buckets avatars (public), documents and recordings (private, by chama)"))
)]
pub(crate) struct StorageDoc;

/// The caller, with token problems in Storage's error shape.
#[derive(Debug, Clone)]
pub(crate) struct StorageCaller(pub Caller);

impl FromRequestParts<AppState> for StorageCaller {
    type Rejection = StorageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|err| StorageError::invalid_jwt(err.message))
    }
}

fn settings(state: &AppState) -> Result<&StorageSettings, StorageError> {
    state
        .config
        .storage
        .as_ref()
        .ok_or_else(StorageError::not_configured)
}

/// The bucket id and object name of a route, checked.
fn target(bucket: &str, path: &str) -> Result<(BucketId, ObjectName), StorageError> {
    Ok((BucketId::parse(bucket)?, ObjectName::parse(path)?))
}

/// The bucket's settings, read past RLS; 404 when there is no such bucket.
async fn find_bucket(state: &AppState, id: &BucketId) -> Result<Bucket, StorageError> {
    pesachama_store::storage::bucket(&state.pool, id.as_str())
        .await?
        .ok_or_else(StorageError::no_such_bucket)
}

/// A transaction as the caller, as Supabase's storage server runs its queries.
async fn caller_tx<'a>(
    state: &'a AppState,
    caller: &Caller,
) -> Result<Transaction<'a, Postgres>, StorageError> {
    let (role, claims) = caller.db_context();
    Ok(pesachama_store::rls::begin_as(&state.pool, role, &claims).await?)
}

/// A JSON body, or a 400 naming what is wrong with it.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(body)
        .map_err(|err| StorageError::invalid_request(format!("invalid body: {err}")))
}

/// A name as a URL path, each segment percent-encoded (as `encodeURI` would leave it usable).
fn url_path(name: &str) -> String {
    pesachama_storage::sigv4::uri_encode(name, true)
}

/// The backend key of a row's current bytes, when it has a version written by this server.
fn row_key(bucket: &BucketId, row: &pesachama_store::storage::ObjectRow) -> Option<String> {
    let version = row.version.as_deref()?.parse().ok()?;
    Some(pesachama_storage::object_key(bucket, row.id, version))
}
