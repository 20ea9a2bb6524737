//! `/storage/v1` over HTTP as the demo's users: who may write and read which bucket (RLS on
//! `storage.objects`), upserts, size and MIME refusals that write nothing, traversal, signed
//! URLs, listing, deleting, moving and copying.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_support;

use pesachama_testkit::TestApp;
use serde_json::json;
use storage_support::*;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n pretend this is an avatar";

#[tokio::test]
async fn avatars_are_written_only_in_ones_own_folder_and_read_by_anyone() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;

    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &format!("{CHEBET_ID}/me.png"),
        "image/png",
        PNG.to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], format!("avatars/{CHEBET_ID}/me.png"));
    assert!(body["Id"].as_str().is_some());

    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &format!("{OTIENO_ID}/me.png"),
        "image/png",
        PNG.to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["statusCode"], "403");
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(object_rows(&app).await, 1);

    // Anonymous, no token at all: the public URL.
    let response = app
        .client
        .get(storage_url(
            &app,
            &format!("/object/public/avatars/{CHEBET_ID}/me.png"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["cache-control"], "max-age=3600");
    assert!(
        response.headers()["etag"]
            .to_str()
            .unwrap()
            .starts_with('"')
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), PNG);

    // Documents is not public: no public URL for it.
    let (status, _) = download(
        &app,
        None,
        &format!("/object/public/documents/{UMOJA}/x.pdf"),
    )
    .await;
    assert_eq!(status, 404);
    // One file stored, no spool left behind.
    assert_eq!(files_under(dir.path()), 1);
}

#[tokio::test]
async fn chama_documents_are_written_by_officials_and_read_by_members_only() {
    let (app, _dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let otieno = app.demo_token(OTIENO).await;
    let name = format!("{UMOJA}/minutes-2026-01.pdf");
    let pdf = b"%PDF-1.7 minutes of January".to_vec();

    let (status, body) = upload_form(
        &app,
        &wanjiku,
        "documents",
        &name,
        "application/pdf",
        pdf.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = upload_form(
        &app,
        &chebet,
        "documents",
        &format!("{UMOJA}/mine.pdf"),
        "application/pdf",
        pdf.clone(),
    )
    .await;
    assert_eq!(status, 403, "a member may not write chama documents");

    let path = format!("/object/authenticated/documents/{name}");
    assert_eq!(
        download(&app, Some(&chebet), &path).await,
        (200, pdf.clone())
    );
    assert_eq!(
        download(&app, Some(&wanjiku), &format!("/object/documents/{name}")).await,
        (200, pdf.clone())
    );

    // Outsiders get "not found", never a hint that the object exists.
    let (status, body) = download(&app, Some(&otieno), &path).await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": "Object not found"})
    );
    assert_eq!(download(&app, None, &path).await.0, 404);
    let anon = TestApp::api_key("anon");
    assert_eq!(download(&app, Some(&anon), &path).await.0, 404);
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &otieno,
            "/storage/v1/object/list/documents",
            Some(json!({"prefix": UMOJA})),
        )
        .await;
    assert_eq!((status, body), (200, json!([])));
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &otieno,
            &format!("/storage/v1/object/sign/documents/{name}"),
            Some(json!({"expiresIn": 60})),
        )
        .await;
    assert_eq!(status, 404);

    // The multipart fields reached the row.
    let (mimetype, cache, meeting): (String, String, String) = sqlx::query_as(
        "select metadata->>'mimetype', metadata->>'cacheControl', user_metadata->>'meeting'
           from storage.objects where name = $1",
    )
    .bind(&name)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (mimetype.as_str(), cache.as_str(), meeting.as_str()),
        ("application/pdf", "max-age=3600", "january")
    );

    // The service role bypasses RLS.
    let service = TestApp::api_key("service_role");
    let (status, body) = upload(
        &app,
        Some(&service),
        "recordings",
        &format!("{UMOJA}/call.mp4"),
        "video/mp4",
        b"mp4".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn upsert_replaces_the_bytes_and_a_second_insert_is_a_conflict() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{CHEBET_ID}/me.png");

    let (_, first) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &name,
        "image/png",
        b"first".to_vec(),
        false,
    )
    .await;
    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &name,
        "image/png",
        b"second".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "Duplicate");
    let public = format!("/object/public/avatars/{name}");
    assert_eq!(download(&app, None, &public).await.1, b"first");

    let (status, second) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &name,
        "image/png",
        b"second".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(second["Id"], first["Id"], "an upsert keeps the object's id");
    assert_eq!(download(&app, None, &public).await.1, b"second");

    // PUT is an update.
    let response = app
        .client
        .put(storage_url(&app, &format!("/object/avatars/{name}")))
        .bearer_auth(&chebet)
        .header("content-type", "image/webp")
        .body("third")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .get(storage_url(&app, &public))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "image/webp");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"third");
    // The replaced versions' bytes are gone.
    assert_eq!(files_under(dir.path()), 1);
    assert_eq!(object_rows(&app).await, 1);
}

#[tokio::test]
async fn oversized_and_refused_types_write_nothing() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{CHEBET_ID}/big.png");
    let three_mib = vec![7u8; 3 * 1024 * 1024];

    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &name,
        "image/png",
        three_mib.clone(),
        false,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["statusCode"], "413");
    assert_eq!(body["error"], "Payload too large");

    // Without a length announced, the stream is cut at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..48).map(|_| Ok(vec![1u8; 64 * 1024])).collect();
    let response = app
        .client
        .post(storage_url(&app, &format!("/object/avatars/{name}")))
        .bearer_auth(&chebet)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // In a form too.
    let (status, _) = upload_form(&app, &chebet, "avatars", &name, "image/png", three_mib).await;
    assert_eq!(status, 413);

    let (status, body) = upload(
        &app,
        Some(&chebet),
        "avatars",
        &name,
        "image/gif",
        b"GIF89a".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"], "invalid_mime_type");
    assert_eq!(body["message"], "mime type image/gif is not supported");
    let (status, _) = upload_form(
        &app,
        &chebet,
        "avatars",
        &name,
        "text/html",
        b"<script>".to_vec(),
    )
    .await;
    assert_eq!(status, 415);

    assert_eq!(object_rows(&app).await, 0);
    assert_eq!(files_under(dir.path()), 0);
}

#[tokio::test]
async fn paths_that_point_elsewhere_are_refused() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;
    for path in [
        format!("/storage/v1/object/avatars/{CHEBET_ID}/../{CHEBET_ID}/x.png"),
        format!("/storage/v1/object/avatars/{CHEBET_ID}/%2e%2e/x.png"),
        "/storage/v1/object/avatars/..".to_owned(),
        format!("/storage/v1/object/avatars//{CHEBET_ID}/x.png"),
        format!("/storage/v1/object/avatars/{CHEBET_ID}//x.png"),
        format!("/storage/v1/object/avatars/{CHEBET_ID}/x%00.png"),
        format!("/storage/v1/object/avatars/{CHEBET_ID}%5C..%5Cx.png"),
        format!("/storage/v1/object/avatars/{CHEBET_ID}/./x.png"),
    ] {
        let (status, body) = raw(&app, "POST", &path, &chebet, PNG).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("InvalidKey"), "{path}: {body}");
        let (status, _) = raw(
            &app,
            "GET",
            &path.replace("/object/", "/object/authenticated/"),
            &chebet,
            b"",
        )
        .await;
        assert_eq!(status, 400, "{path}");
    }
    let (status, _) = raw(
        &app,
        "POST",
        "/storage/v1/object/..%2f..%2fetc/passwd",
        &chebet,
        PNG,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(object_rows(&app).await, 0);
    assert_eq!(files_under(dir.path()), 0);
}

#[tokio::test]
async fn signed_urls_work_until_they_expire_and_tampering_fails() {
    let (app, _dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{UMOJA}/constitution.pdf");
    let pdf = b"%PDF constitution".to_vec();
    upload_form(
        &app,
        &wanjiku,
        "documents",
        &name,
        "application/pdf",
        pdf.clone(),
    )
    .await;
    upload_form(
        &app,
        &wanjiku,
        "documents",
        &format!("{UMOJA}/other.pdf"),
        "application/pdf",
        b"%PDF other".to_vec(),
    )
    .await;

    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            &format!("/storage/v1/object/sign/documents/{name}"),
            Some(json!({"expiresIn": 60})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let signed = body["signedURL"].as_str().unwrap().to_owned();
    assert!(signed.starts_with(&format!("/object/sign/documents/{name}?token=")));
    // Anyone holding the link may read, with no token of their own.
    assert_eq!(download(&app, None, &signed).await, (200, pdf.clone()));
    let response = app
        .client
        .get(storage_url(&app, &format!("{signed}&download=rules.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename*=UTF-8''rules.pdf"
    );

    // A changed signature, a token moved to another object, no token: refused.
    let token = signed.split("token=").nth(1).unwrap();
    let mut forged = token.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = download(
        &app,
        None,
        &format!("/object/sign/documents/{name}?token={forged}"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("InvalidJWT"));
    let (status, _) = download(
        &app,
        None,
        &format!("/object/sign/documents/{UMOJA}/other.pdf?token={token}"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        download(&app, None, &format!("/object/sign/documents/{name}"))
            .await
            .0,
        400
    );
    // An access token is not a signed-URL token.
    assert_eq!(
        download(
            &app,
            None,
            &format!("/object/sign/documents/{name}?token={chebet}")
        )
        .await
        .0,
        400
    );

    let (_, body) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            &format!("/storage/v1/object/sign/documents/{name}"),
            Some(json!({"expiresIn": 1})),
        )
        .await;
    let short = body["signedURL"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = download(&app, None, &short).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("jwt expired"));

    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            &format!("/storage/v1/object/sign/documents/{name}"),
            Some(json!({"expiresIn": 0})),
        )
        .await;
    assert_eq!(status, 400);

    // The batch: one signed, one not there.
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            "/storage/v1/object/sign/documents",
            Some(json!({"expiresIn": 60, "paths": [name, format!("{UMOJA}/missing.pdf")]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body[0]["error"].is_null());
    assert!(body[1]["signedURL"].is_null());
    let batch = body[0]["signedURL"].as_str().unwrap();
    assert_eq!(download(&app, None, batch).await, (200, pdf));
}

#[tokio::test]
async fn listing_shows_one_folder_level_the_caller_may_see() {
    let (app, _dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    for name in [
        "a.pdf",
        "reports/b.pdf",
        "reports/c.pdf",
        "reports/2025/d.pdf",
    ] {
        let (status, _) = upload(
            &app,
            Some(&wanjiku),
            "documents",
            &format!("{UMOJA}/{name}"),
            "application/pdf",
            b"%PDF".to_vec(),
            false,
        )
        .await;
        assert_eq!(status, 200);
    }
    let list = |body: serde_json::Value| {
        let chebet = chebet.clone();
        let app = &app;
        async move {
            app.call(
                reqwest::Method::POST,
                &chebet,
                "/storage/v1/object/list/documents",
                Some(body),
            )
            .await
        }
    };
    let (status, body) = list(json!({"prefix": UMOJA})).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["reports", "a.pdf"]);
    assert!(body[0]["id"].is_null(), "a folder has no id");
    assert_eq!(body[1]["metadata"]["mimetype"], "application/pdf");

    let (_, body) =
        list(json!({"prefix": format!("{UMOJA}/reports/"), "limit": 1, "offset": 1})).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["name"], "b.pdf");
    let (_, body) = list(json!({"prefix": format!("{UMOJA}/reports"), "search": "C", "sortBy": {"column": "name", "order": "desc"}})).await;
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["name"], "c.pdf");
    let (status, _) =
        list(json!({"prefix": UMOJA, "sortBy": {"column": "size; drop table x"}})).await;
    assert_eq!(status, 400);
    let (status, _) = list(json!({"prefix": format!("{UMOJA}/../x")})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn deleting_removes_what_the_caller_may_delete_and_its_bytes() {
    let (app, dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let a = format!("{UMOJA}/a.pdf");
    let b = format!("{UMOJA}/b.pdf");
    for name in [&a, &b] {
        upload(
            &app,
            Some(&wanjiku),
            "documents",
            name,
            "application/pdf",
            b"%PDF".to_vec(),
            false,
        )
        .await;
    }
    assert_eq!(files_under(dir.path()), 2);

    let (status, body) = app
        .call(
            reqwest::Method::DELETE,
            &chebet,
            "/storage/v1/object/documents",
            Some(json!({"prefixes": [a]})),
        )
        .await;
    assert_eq!((status, body), (200, json!([])), "a member may not delete");
    let (status, body) = app
        .call(
            reqwest::Method::DELETE,
            &wanjiku,
            "/storage/v1/object/documents",
            Some(json!({"prefixes": [a, format!("{UMOJA}/never.pdf")]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_eq!(body[0]["name"], a);
    assert_eq!(files_under(dir.path()), 1);

    let (status, body) = app
        .call(
            reqwest::Method::DELETE,
            &wanjiku,
            &format!("/storage/v1/object/documents/{b}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "Successfully deleted"}))
    );
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &wanjiku,
            &format!("/storage/v1/object/documents/{b}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(object_rows(&app).await, 0);
    assert_eq!(files_under(dir.path()), 0);
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &wanjiku,
            "/storage/v1/object/documents",
            Some(json!({"prefixes": ["../x"]})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn moving_and_copying_follow_the_policies() {
    let (app, dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let a = format!("{UMOJA}/a.pdf");
    upload(
        &app,
        Some(&wanjiku),
        "documents",
        &a,
        "application/pdf",
        b"%PDF a".to_vec(),
        false,
    )
    .await;

    let body = json!({"bucketId": "documents", "sourceKey": a, "destinationKey": format!("{UMOJA}/b.pdf")});
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            "/storage/v1/object/move",
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        status, 404,
        "a member cannot update, so sees nothing to move"
    );
    let (status, moved) = app
        .call(
            reqwest::Method::POST,
            &wanjiku,
            "/storage/v1/object/move",
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        download(
            &app,
            Some(&chebet),
            &format!("/object/documents/{UMOJA}/b.pdf")
        )
        .await,
        (200, b"%PDF a".to_vec())
    );
    assert_eq!(
        download(&app, Some(&chebet), &format!("/object/documents/{a}"))
            .await
            .0,
        404
    );
    // Moving out of the chama's folder is refused by the policy's check on the new name.
    let away = json!({"bucketId": "documents", "sourceKey": format!("{UMOJA}/b.pdf"), "destinationKey": "c4a3a000-0000-4000-8000-000000000002/b.pdf"});
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &wanjiku,
            "/storage/v1/object/move",
            Some(away),
        )
        .await;
    assert_eq!(status, 403);

    let copy = json!({"bucketId": "documents", "sourceKey": format!("{UMOJA}/b.pdf"), "destinationKey": format!("{UMOJA}/c.pdf")});
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            "/storage/v1/object/copy",
            Some(copy.clone()),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = app
        .call(
            reqwest::Method::POST,
            &wanjiku,
            "/storage/v1/object/copy",
            Some(copy),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], format!("documents/{UMOJA}/c.pdf"));
    assert_eq!(
        download(
            &app,
            Some(&chebet),
            &format!("/object/documents/{UMOJA}/c.pdf")
        )
        .await,
        (200, b"%PDF a".to_vec())
    );
    assert_eq!(files_under(dir.path()), 2);
}

#[tokio::test]
async fn buckets_are_described() {
    let (app, _dir) = demo().await;
    let anon = TestApp::api_key("anon");
    let service = TestApp::api_key("service_role");
    // As on a Supabase project: storage.buckets is under RLS with no policy for the API roles,
    // so only the service role sees the buckets (issue 27: private ones were shown to anyone).
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    for token in [&anon, &member] {
        let (status, body) = app
            .call(reqwest::Method::GET, token, "/storage/v1/bucket", None)
            .await;
        assert_eq!((status, body), (200, serde_json::json!([])));
        let (status, _) = app
            .call(
                reqwest::Method::GET,
                token,
                "/storage/v1/bucket/recordings",
                None,
            )
            .await;
        assert_eq!(status, 404);
    }
    let (status, body) = app
        .call(reqwest::Method::GET, &service, "/storage/v1/bucket", None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["avatars", "documents", "recordings"]);
    let (_, body) = app
        .call(
            reqwest::Method::GET,
            &service,
            "/storage/v1/bucket/avatars",
            None,
        )
        .await;
    assert_eq!(body["public"], true);
    assert_eq!(body["file_size_limit"], 2 * 1024 * 1024);
    let (status, body) = app
        .call(reqwest::Method::GET, &anon, "/storage/v1/bucket/nope", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "Bucket not found");
    let (status, body) = upload(
        &app,
        Some(&anon),
        "nope",
        "x.png",
        "image/png",
        PNG.to_vec(),
        false,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NoSuchBucket")));
    let (status, body) = app
        .call(
            reqwest::Method::GET,
            "not-a-jwt",
            "/storage/v1/bucket",
            None,
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("InvalidJWT")));
}

#[tokio::test]
async fn without_a_configured_store_storage_answers_503() {
    let app = TestApp::spawn().await;
    let anon = TestApp::api_key("anon");
    let (status, body) = upload(
        &app,
        Some(&anon),
        "avatars",
        "x/y.png",
        "image/png",
        PNG.to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test]
async fn concurrent_upserts_leave_one_object_and_no_stray_bytes() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{CHEBET_ID}/me.png");
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("version {i}").into_bytes())
        .collect();
    let uploads = bodies.iter().map(|body| {
        upload(
            &app,
            Some(&chebet),
            "avatars",
            &name,
            "image/png",
            body.clone(),
            true,
        )
    });
    for (status, body) in futures_util::future::join_all(uploads).await {
        assert_eq!(status, 200, "{body}");
    }
    let (status, stored) = download(&app, None, &format!("/object/public/avatars/{name}")).await;
    assert_eq!(status, 200);
    assert!(bodies.contains(&stored));
    assert_eq!(object_rows(&app).await, 1);
    assert_eq!(
        files_under(dir.path()),
        1,
        "every replaced version's bytes are removed"
    );
}

/// What supabase-js's `info()` and `exists()` ask, and a player seeking in a recording: the
/// object described without its bytes (to whoever may read it), and parts of it by `Range`.
#[tokio::test]
async fn objects_are_described_and_read_in_ranges_by_whoever_may_read_them() {
    let (app, _dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let otieno = app.demo_token(OTIENO).await;
    let name = format!("{UMOJA}/meeting-2026-01.mp3");
    let audio: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let (status, body) = upload_form(
        &app,
        &wanjiku,
        "recordings",
        &name,
        "audio/mpeg",
        audio.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    for path in [
        format!("/object/info/recordings/{name}"),
        format!("/object/info/authenticated/recordings/{name}"),
    ] {
        let info = app
            .client
            .get(storage_url(&app, &path))
            .bearer_auth(&chebet)
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200, "{path}");
        let info: serde_json::Value = info.json().await.unwrap();
        assert_eq!(info["name"], name);
        assert_eq!(info["bucket_id"], "recordings");
        assert_eq!(info["size"], 300_000);
        assert_eq!(info["content_type"], "audio/mpeg");
    }
    let exists = |token: String| {
        let url = storage_url(&app, &format!("/object/info/recordings/{name}"));
        let client = app.client.clone();
        async move {
            client
                .head(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(exists(chebet.clone()).await, 200);
    assert_eq!(exists(otieno.clone()).await, 404, "outsiders learn nothing");

    let ranged = |range: &'static str| {
        let url = storage_url(&app, &format!("/object/authenticated/recordings/{name}"));
        let request = app
            .client
            .get(url)
            .bearer_auth(&chebet)
            .header("range", range);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_range = response
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned());
            (
                status,
                content_range,
                response.bytes().await.unwrap().to_vec(),
            )
        }
    };
    let (status, content_range, bytes) = ranged("bytes=1000-1999").await;
    assert_eq!(status, 206);
    assert_eq!(content_range.as_deref(), Some("bytes 1000-1999/300000"));
    assert_eq!(bytes, audio[1000..2000]);
    let (status, content_range, bytes) = ranged("bytes=299990-").await;
    assert_eq!((status, bytes.as_slice()), (206, &audio[299_990..]));
    assert_eq!(content_range.as_deref(), Some("bytes 299990-299999/300000"));
    let (status, _, bytes) = ranged("bytes=-10").await;
    assert_eq!((status, bytes.as_slice()), (206, &audio[299_990..]));
    let (status, content_range, _) = ranged("bytes=300000-").await;
    assert_eq!(status, 416);
    assert_eq!(content_range.as_deref(), Some("bytes */300000"));
    let (status, _, bytes) = ranged("bytes=0-1,5-6").await;
    assert_eq!(
        (status, bytes.len()),
        (200, audio.len()),
        "several ranges: the whole object"
    );
    let outsider = app
        .client
        .get(storage_url(
            &app,
            &format!("/object/authenticated/recordings/{name}"),
        ))
        .bearer_auth(&otieno)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(outsider.status(), 404);
}

/// Signs an upload URL as `token` (`None`: no Authorization), as supabase-js
/// `createSignedUploadUrl` does: `POST` with `{}` and `x-upsert: true` when asked.
async fn sign_upload(
    app: &TestApp,
    token: Option<&str>,
    bucket: &str,
    name: &str,
    upsert: bool,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = app
        .client
        .post(storage_url(
            app,
            &format!("/object/upload/sign/{bucket}/{name}"),
        ))
        .json(&body);
    if upsert {
        request = request.header("x-upsert", "true");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.unwrap()).await
}

/// Uploads a raw body to a signed upload URL (relative to `/storage/v1`), with no
/// Authorization, as supabase-js `uploadToSignedUrl` sends a Buffer.
async fn put_signed(
    app: &TestApp,
    url: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, serde_json::Value) {
    let response = app
        .client
        .put(storage_url(app, url))
        .header("content-type", mime)
        .header("cache-control", "max-age=3600")
        .header("x-upsert", "true") // supabase-js sends it; the token decides
        .body(bytes)
        .send()
        .await
        .unwrap();
    answer(response).await
}

/// The same as a multipart form, as supabase-js sends a Blob or File.
async fn put_signed_form(
    app: &TestApp,
    url: &str,
    mime: &str,
    bytes: &[u8],
) -> (u16, serde_json::Value) {
    let boundary = "----pesachamasignedupload";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"cacheControl\"\r\n\r\n60\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\nContent-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = app
        .client
        .put(storage_url(app, url))
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

async fn user_id(app: &TestApp, email: &str) -> uuid::Uuid {
    sqlx::query_scalar("select id from auth.users where email = $1")
        .bind(email)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_upload_url_uploads_once_as_its_signer_with_no_token_of_its_own() {
    let (app, dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{UMOJA}/agenda 2026-02.pdf");
    let pdf = b"%PDF agenda of February".to_vec();

    let (status, body) =
        sign_upload(&app, Some(&wanjiku), "documents", &name, false, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_owned();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("/object/upload/sign/documents/{UMOJA}/agenda%202026-02.pdf?token={token}")
    );
    // Signing wrote nothing.
    assert_eq!(object_rows(&app).await, 0);

    let (status, body) = put_signed(&app, &url, "application/pdf", pdf.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], format!("documents/{name}"));
    // The row is the signer's, and members read it as any other document.
    let owner: Option<uuid::Uuid> =
        sqlx::query_scalar("select owner from storage.objects where name = $1")
            .bind(&name)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(owner, Some(user_id(&app, WANJIKU).await));
    assert_eq!(
        download(
            &app,
            Some(&chebet),
            &format!("/object/authenticated/documents/{name}")
        )
        .await,
        (200, pdf.clone())
    );

    // Without upsert the URL is spent: the object exists.
    let (status, body) = put_signed(&app, &url, "application/pdf", b"%PDF again".to_vec()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "The resource already exists");
    // Nor can the existing object be signed for again without upsert.
    let (status, _) = sign_upload(&app, Some(&wanjiku), "documents", &name, false, json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(
        download(
            &app,
            Some(&chebet),
            &format!("/object/authenticated/documents/{name}")
        )
        .await,
        (200, pdf)
    );

    // With upsert, the URL replaces it, as a form too; the old bytes go.
    let (status, body) =
        sign_upload(&app, Some(&wanjiku), "documents", &name, true, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let upsert_url = body["url"].as_str().unwrap().to_owned();
    let (status, body) = put_signed_form(&app, &upsert_url, "application/pdf", b"%PDF v2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_signed_form(&app, &upsert_url, "application/pdf", b"%PDF v3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(
            &app,
            Some(&chebet),
            &format!("/object/authenticated/documents/{name}")
        )
        .await,
        (200, b"%PDF v3".to_vec())
    );
    let cache: String =
        sqlx::query_scalar("select metadata->>'cacheControl' from storage.objects where name = $1")
            .bind(&name)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(cache, "max-age=60");
    assert_eq!(object_rows(&app).await, 1);
    assert_eq!(files_under(dir.path()), 1);

    // The service role may sign for anywhere; its uploads have no owner.
    let service = TestApp::api_key("service_role");
    let (status, body) = sign_upload(
        &app,
        Some(&service),
        "recordings",
        &format!("{UMOJA}/call.mp4"),
        false,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_signed(
        &app,
        body["url"].as_str().unwrap(),
        "video/mp4",
        b"mp4".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn only_who_may_write_gets_a_signed_upload_url_and_it_dies_with_their_right() {
    let (app, dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let otieno = app.demo_token(OTIENO).await;
    let name = format!("{UMOJA}/budget.pdf");

    // A member who is no official, an outsider, anonymous callers: no URL.
    for (who, token) in [
        ("a member", Some(chebet.clone())),
        ("an outsider", Some(otieno.clone())),
        ("the anon key", Some(TestApp::api_key("anon"))),
        ("no token", None),
    ] {
        let (status, body) =
            sign_upload(&app, token.as_deref(), "documents", &name, false, json!({})).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["error"], "Unauthorized", "{who}");
    }
    // Not even into a public bucket, outside one's own folder.
    let (status, _) = sign_upload(
        &app,
        None,
        "avatars",
        &format!("{CHEBET_ID}/me.png"),
        false,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = sign_upload(
        &app,
        Some(&otieno),
        "avatars",
        &format!("{CHEBET_ID}/me.png"),
        false,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = sign_upload(
        &app,
        Some(&wanjiku),
        "nosuchbucket",
        "x.pdf",
        false,
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = sign_upload(
        &app,
        Some(&wanjiku),
        "documents",
        &name,
        false,
        json!({"expiresIn": 7201}),
    )
    .await;
    assert_eq!(status, 400);

    // The chairperson signs; then she is no longer an official. The URL writes as her, so the
    // policies refuse it now, and nothing is written.
    let (status, body) =
        sign_upload(&app, Some(&wanjiku), "documents", &name, false, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_owned();
    sqlx::query("update public.chama_members set role = 'member' where chama_id = $1::uuid and user_id = $2")
        .bind(UMOJA)
        .bind(user_id(&app, WANJIKU).await)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, body) = put_signed(&app, &url, "application/pdf", b"%PDF".to_vec()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(object_rows(&app).await, 0);

    // A banned signer's URLs stop too.
    let (status, body) = sign_upload(
        &app,
        Some(&chebet),
        "avatars",
        &format!("{CHEBET_ID}/me.png"),
        false,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let avatar_url = body["url"].as_str().unwrap().to_owned();
    sqlx::query("update auth.users set banned_until = now() + interval '1 day' where email = $1")
        .bind(CHEBET)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, body) = put_signed(&app, &avatar_url, "image/png", PNG.to_vec()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(object_rows(&app).await, 0);
    assert_eq!(files_under(dir.path()), 0);
}

#[tokio::test]
async fn a_signed_upload_token_works_only_for_its_object_until_it_expires() {
    let (app, dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{UMOJA}/minutes.pdf");
    let (_, body) = sign_upload(&app, Some(&wanjiku), "documents", &name, false, json!({})).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let pdf = b"%PDF".to_vec();

    // Another object, another bucket: refused.
    for path in [
        format!("/object/upload/sign/documents/{UMOJA}/other.pdf?token={token}"),
        format!("/object/upload/sign/recordings/{name}?token={token}"),
    ] {
        let (status, body) = put_signed(&app, &path, "application/pdf", pdf.clone()).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "InvalidSignature");
    }
    // No token, a tampered one, an access token, one signed with another key.
    let target = format!("/object/upload/sign/documents/{name}");
    let (status, _) = put_signed(&app, &target, "application/pdf", pdf.clone()).await;
    assert_eq!(status, 400);
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let now = chrono::Utc::now().timestamp();
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"url": format!("documents/{name}"), "owner": user_id(&app, WANJIKU).await,
                "upsert": true, "scope": "upload", "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-projects-secret-of-32-characters!"),
    )
    .unwrap();
    for bad in [tampered.as_str(), wanjiku.as_str(), foreign.as_str()] {
        let (status, body) = put_signed(
            &app,
            &format!("{target}?token={bad}"),
            "application/pdf",
            pdf.clone(),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "InvalidJWT");
    }
    // A signed download URL is not an upload URL, nor the other way round.
    upload_form(
        &app,
        &wanjiku,
        "documents",
        &format!("{UMOJA}/rules.pdf"),
        "application/pdf",
        pdf.clone(),
    )
    .await;
    let (_, body) = app
        .call(
            reqwest::Method::POST,
            &chebet,
            &format!("/storage/v1/object/sign/documents/{UMOJA}/rules.pdf"),
            Some(json!({"expiresIn": 600})),
        )
        .await;
    let download_token = body["signedURL"]
        .as_str()
        .unwrap()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();
    let (status, body) = put_signed(
        &app,
        &format!("/object/upload/sign/documents/{UMOJA}/rules.pdf?token={download_token}"),
        "application/pdf",
        b"%PDF overwritten".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "InvalidSignature");
    let (_, body) = sign_upload(
        &app,
        Some(&wanjiku),
        "documents",
        &format!("{UMOJA}/rules.pdf"),
        true,
        json!({}),
    )
    .await;
    let upload_token = body["token"].as_str().unwrap();
    let (status, _) = download(
        &app,
        None,
        &format!("/object/sign/documents/{UMOJA}/rules.pdf?token={upload_token}"),
    )
    .await;
    assert_eq!(status, 400);

    // Expired.
    let (status, body) = sign_upload(
        &app,
        Some(&wanjiku),
        "documents",
        &name,
        false,
        json!({"expiresIn": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let short = body["url"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = put_signed(&app, &short, "application/pdf", pdf.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "jwt expired");

    // Only rules.pdf, from the form upload, was ever written.
    assert_eq!(object_rows(&app).await, 1);
    assert_eq!(files_under(dir.path()), 1);
}

#[tokio::test]
async fn a_signed_upload_meets_the_bucket_s_size_and_type_limits() {
    let (app, dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await;
    let name = format!("{CHEBET_ID}/me.png");
    let (status, body) = sign_upload(&app, Some(&chebet), "avatars", &name, true, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_owned();

    let (status, body) = put_signed(&app, &url, "image/png", vec![0u8; 2 * 1024 * 1024 + 1]).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = put_signed(&app, &url, "text/html", b"<script>".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = put_signed_form(&app, &url, "text/html", b"<script>").await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(object_rows(&app).await, 0);
    assert_eq!(files_under(dir.path()), 0);

    let (status, body) = put_signed(&app, &url, "image/png", PNG.to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&app, None, &format!("/object/public/avatars/{name}")).await,
        (200, PNG.to_vec())
    );
}

/// A refused upload is answered once its body has arrived, on a connection that stays open:
/// fetch (Node's and browsers', so supabase-js) writes the whole body before reading, and got
/// a broken pipe ("fetch failed") instead of the 403 when the server answered and closed while
/// the body was still coming (found by tests/supabase-js, a third of multipart refusals).
#[tokio::test]
async fn a_refused_upload_is_answered_after_its_body_on_a_connection_kept_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (app, _dir) = demo().await;
    let chebet = app.demo_token(CHEBET).await; // a member of Umoja, not an official
    let body = format!(
        "--XYZ\r\nContent-Disposition: form-data; name=\"cacheControl\"\r\n\r\n3600\r\n\
         --XYZ\r\nContent-Disposition: form-data; name=\"\"; filename=\"blob\"\r\n\
         Content-Type: text/plain\r\n\r\n{}\r\n--XYZ--\r\n",
        "not an official ".repeat(64)
    );
    let head = format!(
        "POST /storage/v1/object/documents/{UMOJA}/refused.txt HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {chebet}\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(first).await.unwrap();
    // the refusal is decided before the body is read; the rest arrives later, as over a phone
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    socket.write_all(rest).await.unwrap();
    // then a second request on the same connection
    socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_both = async {
        loop {
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&received)
                .matches("HTTP/1.1 ")
                .count()
                == 2
            {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_both)
        .await
        .unwrap();
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 403 "), "{received}");
    assert!(received.contains("row-level security"), "{received}");
    assert_eq!(
        received.matches("HTTP/1.1 ").count(),
        2,
        "the connection stayed open for the next request: {received}"
    );
    assert_eq!(object_rows(&app).await, 0);
}
