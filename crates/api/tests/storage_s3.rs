//! `/storage/v1` with objects in an S3-compatible store: a local fake speaking S3's wire
//! format over HTTP and checking every request's SigV4 signature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_support;

use std::sync::Arc;

use pesachama_storage::{ObjectStore, S3Config, S3Store};
use pesachama_testkit::TestApp;
use serde_json::json;
use storage_support::fake_s3::{self, ACCESS_KEY, BUCKET, REGION, SECRET_KEY};
use storage_support::*;

fn s3_backend(endpoint: String, secret: &str, spool: &std::path::Path) -> ObjectStore {
    ObjectStore::S3(Arc::new(
        S3Store::new(S3Config {
            endpoint,
            bucket: BUCKET.into(),
            region: REGION.into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: secret.into(),
            temp_dir: spool.to_owned(),
        })
        .unwrap(),
    ))
}

#[tokio::test]
async fn objects_round_trip_through_an_s3_store() {
    let (fake, objects) = fake_s3::start().await;
    let spool = tempfile::tempdir().unwrap();
    let app = demo_with(s3_backend(fake.url(""), SECRET_KEY, spool.path())).await;
    let chebet = app.demo_token(CHEBET).await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let avatar = format!("{CHEBET_ID}/me.png");

    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &avatar,
        "image/png",
        b"one".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let keys = objects.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("avatars/"), "{keys:?}");
    assert_eq!(objects.get(&keys[0]).unwrap(), b"one");
    let public = format!("/object/public/avatars/{avatar}");
    assert_eq!(download(&app, None, &public).await, (200, b"one".to_vec()));

    // Replacing writes a new version and removes the old one from the store.
    let (status, _) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &avatar,
        "image/png",
        b"two".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(objects.keys().len(), 1);
    assert_ne!(objects.keys(), keys);
    assert_eq!(download(&app, None, &public).await, (200, b"two".to_vec()));

    // A document, copied server-side, then both deleted.
    let doc = format!("{UMOJA}/a.pdf");
    upload_form(
        &app,
        &wanjiku,
        "documents",
        &doc,
        "application/pdf",
        b"%PDF s3".to_vec(),
    )
    .await;
    let copy = json!({"bucketId": "documents", "sourceKey": doc, "destinationKey": format!("{UMOJA}/b.pdf")});
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &wanjiku,
            "/storage/v1/object/copy",
            Some(copy),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(objects.keys().len(), 3);
    let (status, signed) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            &format!("/storage/v1/object/sign/documents/{UMOJA}/b.pdf"),
            Some(json!({"expiresIn": 60})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        download(&app, None, signed["signedURL"].as_str().unwrap()).await,
        (200, b"%PDF s3".to_vec())
    );
    let (status, body) = app
        .call(
            reqwest::Method::DELETE,
            &wanjiku,
            "/storage/v1/object/documents",
            Some(json!({"prefixes": [doc, format!("{UMOJA}/b.pdf")]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert_eq!(objects.keys().len(), 1);
    assert_eq!(
        files_under(spool.path()),
        0,
        "no spooled upload is left behind"
    );
}

#[tokio::test]
async fn a_store_refusing_the_signature_fails_the_upload_and_no_row_is_written() {
    let (fake, objects) = fake_s3::start().await;
    let spool = tempfile::tempdir().unwrap();
    let app = demo_with(s3_backend(fake.url(""), "the-wrong-secret", spool.path())).await;
    let chebet = app.demo_token(CHEBET).await;
    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &format!("{CHEBET_ID}/me.png"),
        "image/png",
        b"one".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "Internal");
    assert_eq!(object_rows(&app).await, 0);
    assert!(objects.keys().is_empty());
    assert_eq!(files_under(spool.path()), 0);
    // The server is still healthy.
    let anon = TestApp::api_key("anon");
    let (status, _) = app
        .call(reqwest::Method::GET, &anon, "/storage/v1/bucket", None)
        .await;
    assert_eq!(status, 200);
}
