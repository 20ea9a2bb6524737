//! Shared by the storage tests: a test app with a storage folder, uploads as storage-js sends
//! them, and raw HTTP for paths an HTTP client would normalise.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use pesachama_api::storage_api::{DEFAULT_FILE_SIZE_LIMIT, StorageSettings};
use pesachama_storage::{FsStore, ObjectStore};
use pesachama_testkit::{TestApp, TestDb};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod fake_s3;

pub const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
pub const WANJIKU: &str = "wanjiku.kamau@example.co.ke"; // Umoja's chairperson
pub const CHEBET: &str = "chebet.langat@example.co.ke"; // an Umoja member
pub const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
pub const OTIENO: &str = "otieno.odhiambo@example.co.ke"; // not in Umoja
pub const OTIENO_ID: &str = "5eed0000-0000-4000-8000-000000000002";

/// A demo app whose objects live in a temporary folder (kept alive by the returned guard).
pub async fn demo_with(backend: ObjectStore) -> TestApp {
    let mut config = TestApp::config();
    config.storage = Some(StorageSettings {
        backend,
        file_size_limit: DEFAULT_FILE_SIZE_LIMIT,
    });
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

pub async fn demo() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backend = ObjectStore::Fs(Arc::new(FsStore::new(dir.path()).unwrap()));
    (demo_with(backend).await, dir)
}

pub fn storage_url(app: &TestApp, path: &str) -> String {
    app.url(&format!("/storage/v1{path}"))
}

/// Status and JSON (or `Null`) of a response.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A raw-body upload as storage-js sends a Buffer.
pub async fn upload(
    app: &TestApp,
    token: Option<&str>,
    bucket: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
    upsert: bool,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(storage_url(app, &format!("/object/{bucket}/{name}")))
        .header("content-type", mime)
        .header("cache-control", "max-age=3600")
        .header("x-upsert", if upsert { "true" } else { "false" })
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.unwrap()).await
}

/// A multipart upload as storage-js sends a Blob or File.
pub async fn upload_form(
    app: &TestApp,
    token: &str,
    bucket: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let boundary = "----pesachamaboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"cacheControl\"\r\n\r\n3600\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{\"meeting\":\"january\"}}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = app
        .client
        .post(storage_url(app, &format!("/object/{bucket}/{name}")))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// Status and bytes of a download.
pub async fn download(app: &TestApp, token: Option<&str>, path: &str) -> (u16, Vec<u8>) {
    let mut request = app.client.get(storage_url(app, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

pub async fn object_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from storage.objects")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Files under `dir`, the spool folder included.
pub fn files_under(dir: &std::path::Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            count += files_under(&path);
        } else {
            count += 1;
        }
    }
    count
}

/// One HTTP/1.1 request written by hand, so the path reaches the server exactly as given
/// (clients resolve `..` and `%2e%2e` before sending). Answers the status and the body.
pub async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.address,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
