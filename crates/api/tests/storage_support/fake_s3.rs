//! A local stand-in for an S3-compatible store: path-style `PUT`, `GET`, `DELETE` and
//! server-side copy over real HTTP, refusing any request whose SigV4 signature does not match
//! (with S3's XML error documents).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pesachama_storage::sigv4;
use pesachama_testkit::fake::FakeService;

pub const ACCESS_KEY: &str = "PESACHAMATESTKEY";
pub const SECRET_KEY: &str = "fake-s3-secret-access-key";
pub const REGION: &str = "af-south-1";
pub const BUCKET: &str = "chama-objects";

#[derive(Debug, Clone, Default)]
pub struct Objects(pub Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl Objects {
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }
}

pub async fn start() -> (FakeService, Objects) {
    let objects = Objects::default();
    let router = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(objects.clone());
    (FakeService::start(router).await, objects)
}

fn error(status: StatusCode, code: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    );
    (status, [("content-type", "application/xml")], xml).into_response()
}

/// Recomputes the signature from the headers the request says it signed.
fn signature_ok(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    let Some((key, signed, signature)) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse_authorization)
    else {
        return false;
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if key != ACCESS_KEY || !signed.iter().any(|n| n == "host") {
        return false;
    }
    let pairs: Vec<(String, String)> = signed.iter().map(|n| (n.clone(), header(n))).collect();
    let amz_date = header("x-amz-date");
    let payload = header("x-amz-content-sha256");
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let credentials = sigv4::Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        region: REGION.into(),
        service: "s3".into(),
    };
    let (_, expected) = sigv4::sign(
        &credentials,
        &sigv4::Request {
            method: method.as_str(),
            uri: uri.path(),
            query: &query,
            headers: &pairs,
            payload_hash: &payload,
            amz_date: &amz_date,
        },
    );
    expected == signature
}

async fn handle(
    State(objects): State<Objects>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !signature_ok(&method, &uri, &headers) {
        return error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch");
    }
    let Some(key) = uri
        .path()
        .strip_prefix(&format!("/{BUCKET}/"))
        .map(str::to_owned)
    else {
        return error(StatusCode::NOT_FOUND, "NoSuchBucket");
    };
    let mut map = objects.0.lock().unwrap();
    match method {
        Method::PUT => {
            if let Some(source) = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
            {
                let source = source.strip_prefix(&format!("/{BUCKET}/")).unwrap_or("");
                let Some(bytes) = map.get(source).cloned() else {
                    return error(StatusCode::NOT_FOUND, "NoSuchKey");
                };
                map.insert(key, bytes);
                return (
                    StatusCode::OK,
                    "<CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>",
                )
                    .into_response();
            }
            if headers.get("content-length").is_none() {
                return error(StatusCode::LENGTH_REQUIRED, "MissingContentLength");
            }
            map.insert(key, body.to_vec());
            (StatusCode::OK, [("etag", "\"fake\"")]).into_response()
        }
        Method::GET => match map.get(&key) {
            Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
            None => error(StatusCode::NOT_FOUND, "NoSuchKey"),
        },
        Method::DELETE => {
            map.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}
