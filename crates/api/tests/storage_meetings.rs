//! Meeting minutes and recordings linked to their storage objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_support;

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::json;
use storage_support::*;

const KISUMU: &str = "c4a3a000-0000-4000-8000-000000000002";

#[tokio::test]
async fn officials_link_minutes_and_recordings_members_find_them() {
    let (app, _dir) = demo().await;
    let wanjiku = app.demo_token(WANJIKU).await;
    let chebet = app.demo_token(CHEBET).await;
    let otieno = app.demo_token(OTIENO).await;
    let when = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let (status, meeting) = app
        .call(
            Method::POST,
            &wanjiku,
            &format!("/chamas/{UMOJA}/meetings"),
            Some(json!({"title": "January meeting", "scheduled_for": when})),
        )
        .await;
    assert_eq!(status, 201, "{meeting}");
    let files = format!("/meetings/{}/files", meeting["id"].as_str().unwrap());

    let minutes = format!("{UMOJA}/meetings/january.pdf");
    let recording = format!("{UMOJA}/meetings/january.mp4");
    upload(
        &app,
        Some(&wanjiku),
        "documents",
        &minutes,
        "application/pdf",
        b"%PDF".to_vec(),
        false,
    )
    .await;
    upload(
        &app,
        Some(&wanjiku),
        "recordings",
        &recording,
        "video/mp4",
        b"mp4".to_vec(),
        false,
    )
    .await;

    let (status, body) = app
        .call(
            Method::PUT,
            &chebet,
            &files,
            Some(json!({"minutes": minutes})),
        )
        .await;
    assert_eq!(status, 403, "a member may not link: {body}");
    let (status, body) = app
        .call(
            Method::PUT,
            &wanjiku,
            &files,
            Some(json!({"minutes": minutes, "recording": recording})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["minutes"]["name"], minutes);
    assert_eq!(body["minutes"]["bucket_id"], "documents");
    assert_eq!(body["recording"]["bucket_id"], "recordings");

    let (status, seen) = app.call(Method::GET, &chebet, &files, None).await;
    assert_eq!(status, 200);
    assert_eq!(seen, body);
    let (status, _) = app.call(Method::GET, &otieno, &files, None).await;
    assert_eq!(status, 404);

    // A recording is not minutes, and another chama's document is out of reach.
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &files,
            Some(json!({"minutes": recording})),
        )
        .await;
    assert_eq!(status, 422);
    let service = TestApp::api_key("service_role");
    let theirs = format!("{KISUMU}/minutes.pdf");
    let (status, body) = upload(
        &app,
        Some(&service),
        "documents",
        &theirs,
        "application/pdf",
        b"%PDF".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &files,
            Some(json!({"minutes": theirs})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &files,
            Some(json!({"minutes": "../x"})),
        )
        .await;
    assert_eq!(status, 422);
    // The database refuses a wrong link whoever writes it.
    let refused = sqlx::query(
        "update public.meetings set minutes_object_id = (select id from storage.objects where name = $1) where id = $2::uuid",
    )
    .bind(&theirs)
    .bind(meeting["id"].as_str().unwrap())
    .execute(&app.db.pool)
    .await
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("documents object in this chama"),
        "{refused}"
    );

    // Unlinking one leaves the other; deleting the object clears its link.
    let (_, body) = app
        .call(
            Method::PUT,
            &wanjiku,
            &files,
            Some(json!({"recording": null})),
        )
        .await;
    assert!(body["recording"].is_null());
    assert_eq!(body["minutes"]["name"], minutes);
    app.call(
        Method::DELETE,
        &wanjiku,
        &format!("/storage/v1/object/documents/{minutes}"),
        None,
    )
    .await;
    let (_, body) = app.call(Method::GET, &chebet, &files, None).await;
    assert!(body["minutes"].is_null());
}
