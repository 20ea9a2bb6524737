//! Meetings over HTTP as the demo's users: scheduling (members told), the register, minutes,
//! cancelling, and Agora tokens that verify against the app certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;

use base64::Engine as _;
use pesachama_api::AgoraConfig;
use pesachama_auth::agora::{RtcRole, RtcTokenRequest, rtc_token_content};
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::json;

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
const OTIENO_ID: &str = "5eed0000-0000-4000-8000-000000000002";
const APP_ID: &str = "970CA35de60c44645bbae8a215061b33";
const CERTIFICATE: &str = "5CFd2fd1755d40ecb72977518be15d3b";

async fn demo(agora: bool) -> TestApp {
    let mut config = TestApp::config();
    if agora {
        config.agora = Some(AgoraConfig {
            app_id: APP_ID.to_owned(),
            app_certificate: CERTIFICATE.to_owned(),
        });
    }
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn officials_schedule_members_are_told_and_the_register_and_minutes_are_kept() {
    let app = demo(false).await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    let outsider = app.demo_token("otieno.odhiambo@example.co.ke").await;
    let path = format!("/chamas/{UMOJA}/meetings");
    let body = json!({ "title": "Harambee planning", "agenda": "Venue, budget", "scheduled_for": in_days(7), "meeting_type": "virtual" });

    let (status, _) = app
        .call(Method::POST, &member, &path, Some(body.clone()))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .call(Method::POST, &outsider, &path, Some(body.clone()))
        .await;
    assert_eq!(status, 404);
    for (bad, field) in [
        (
            json!({ "title": "x", "scheduled_for": in_days(1) }),
            "title",
        ),
        (
            json!({ "title": "Past", "scheduled_for": in_days(-1) }),
            "scheduled_for",
        ),
        (
            json!({ "title": "Odd", "scheduled_for": in_days(1), "meeting_type": "telepathy" }),
            "meeting_type",
        ),
        (
            json!({ "title": "Long", "scheduled_for": in_days(1), "duration_minutes": 5000 }),
            "duration_minutes",
        ),
    ] {
        let (status, error) = app.call(Method::POST, &secretary, &path, Some(bad)).await;
        assert_eq!(
            (status, error["error"]["details"]["field"].as_str()),
            (422, Some(field))
        );
    }

    let (status, meeting) = app.call(Method::POST, &secretary, &path, Some(body)).await;
    assert_eq!(status, 201, "{meeting}");
    let id = meeting["id"].as_str().unwrap().to_owned();
    assert!(
        meeting["agora_channel"]
            .as_str()
            .unwrap()
            .starts_with("chama-")
    );
    let told = count(&app, &format!("select count(*) from public.notifications where title = 'Meeting scheduled' and data->>'meeting_id' = '{id}'")).await;
    let members = count(&app, &format!("select count(*) from public.chama_members where chama_id = '{UMOJA}' and status = 'active'")).await;
    assert_eq!(
        told,
        members - 1,
        "everyone but the secretary who scheduled it"
    );

    let (status, upcoming) = app.call(Method::GET, &member, &path, None).await;
    assert_eq!(status, 200);
    assert!(
        upcoming
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == meeting["id"])
    );
    let (status, _) = app
        .call(Method::GET, &member, &format!("{path}?scope=someday"), None)
        .await;
    assert_eq!(status, 422);
    let (status, _) = app.call(Method::GET, &outsider, &path, None).await;
    assert_eq!(status, 404);

    // The register: members only, officials only.
    let register = format!("/meetings/{id}/attendance");
    let (status, _) = app
        .call(
            Method::PUT,
            &member,
            &register,
            Some(json!([{ "user_id": CHEBET_ID, "status": "present" }])),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .call(
            Method::PUT,
            &secretary,
            &register,
            Some(json!([{ "user_id": OTIENO_ID, "status": "present" }])),
        )
        .await;
    assert_eq!(status, 422, "not a member of Umoja");
    let (status, _) = app
        .call(
            Method::PUT,
            &secretary,
            &register,
            Some(json!([{ "user_id": CHEBET_ID, "status": "asleep" }])),
        )
        .await;
    assert_eq!(status, 422);
    let (status, taken) = app
        .call(
            Method::PUT,
            &secretary,
            &register,
            Some(json!([{ "user_id": CHEBET_ID, "status": "late" }])),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(taken[0]["status"], "late");

    let (status, _) = app
        .call(
            Method::PATCH,
            &member,
            &format!("/meetings/{id}"),
            Some(json!({ "minutes": "forged" })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, held) = app
        .call(
            Method::PATCH,
            &secretary,
            &format!("/meetings/{id}"),
            Some(json!({ "minutes": "Agreed on Nyayo stadium.", "status": "held" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (held["minutes"].as_str(), held["status"].as_str()),
        (Some("Agreed on Nyayo stadium."), Some("held"))
    );
    let (status, _) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/meetings/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 422, "a held meeting is not cancelled");
}

#[tokio::test]
async fn cancelling_tells_the_members_and_ends_the_video() {
    let app = demo(true).await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    let (_, meeting) = app.call(Method::POST, &secretary, &format!("/chamas/{UMOJA}/meetings"), Some(json!({ "title": "Online check-in", "scheduled_for": in_days(2), "meeting_type": "hybrid", "venue": "Gikomba" }))).await;
    let id = meeting["id"].as_str().unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            &member,
            &format!("/meetings/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, cancelled) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/meetings/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    let told = count(&app, &format!("select count(*) from public.notifications where title = 'Meeting cancelled' and data->>'meeting_id' = '{id}'")).await;
    assert!(told > 0);
    let (status, _) = app
        .call(
            Method::POST,
            &member,
            &format!("/meetings/{id}/token"),
            None,
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/meetings/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 422);
}

/// Parses a token's content and checks its signature by signing the same fields again.
fn verify(token: &str, channel: &str, uid: u32) -> RtcRole {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(token.strip_prefix("007").unwrap())
        .unwrap();
    let mut content = Vec::new();
    flate2::read::ZlibDecoder::new(&compressed[..])
        .read_to_end(&mut content)
        .unwrap();
    let u16_at = |i: usize| u16::from_le_bytes([content[i], content[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([content[i], content[i + 1], content[i + 2], content[i + 3]]);
    let after_signature = 2 + u16_at(0);
    let after_app_id = after_signature + 2 + u16_at(after_signature);
    let issued_at = u32_at(after_app_id);
    let expire = u32_at(after_app_id + 4);
    let salt = u32_at(after_app_id + 8);
    let privileges = u16_at(after_app_id + 12 + 2 + 2);
    let role = if privileges == 4 {
        RtcRole::Publisher
    } else {
        RtcRole::Subscriber
    };
    let expected = rtc_token_content(&RtcTokenRequest {
        app_id: APP_ID,
        app_certificate: CERTIFICATE,
        channel,
        uid,
        role,
        expire_seconds: expire,
        privilege_seconds: expire,
        issued_at,
        salt,
    })
    .unwrap();
    assert_eq!(
        content, expected,
        "signed with the app certificate, for this channel and uid"
    );
    role
}

#[tokio::test]
async fn video_tokens_go_to_members_only_publishers_being_officials() {
    let app = demo(true).await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    let outsider = app.demo_token("otieno.odhiambo@example.co.ke").await;
    let (_, video) = app.call(Method::POST,
        &secretary,
        &format!("/chamas/{UMOJA}/meetings"),
        Some(
            json!({ "title": "Video AGM", "scheduled_for": in_days(3), "meeting_type": "virtual" }),
        ),
    )
    .await;
    let (_, physical) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/chamas/{UMOJA}/meetings"),
            Some(json!({ "title": "Hall AGM", "scheduled_for": in_days(4) })),
        )
        .await;
    let video_id = video["id"].as_str().unwrap();

    let (status, official_token) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/meetings/{video_id}/token"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{official_token}");
    assert_eq!(official_token["role"], "publisher");
    assert_eq!(official_token["channel"], video["agora_channel"]);
    let role = verify(
        official_token["token"].as_str().unwrap(),
        video["agora_channel"].as_str().unwrap(),
        u32::try_from(official_token["uid"].as_u64().unwrap()).unwrap(),
    );
    assert_eq!(role, RtcRole::Publisher);

    let (status, member_token) = app
        .call(
            Method::POST,
            &member,
            &format!("/meetings/{video_id}/token"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member_token["role"], "subscriber");
    let role = verify(
        member_token["token"].as_str().unwrap(),
        video["agora_channel"].as_str().unwrap(),
        u32::try_from(member_token["uid"].as_u64().unwrap()).unwrap(),
    );
    assert_eq!(role, RtcRole::Subscriber);
    assert_ne!(member_token["uid"], official_token["uid"]);

    let (status, _) = app
        .call(
            Method::POST,
            &outsider,
            &format!("/meetings/{video_id}/token"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(
            Method::POST,
            &member,
            &format!("/meetings/{}/token", physical["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 422, "no video in a hall meeting");
}

#[tokio::test]
async fn without_agora_credentials_video_tokens_are_unavailable_not_broken() {
    let app = demo(false).await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let (_, video) = app.call(Method::POST,
        &secretary,
        &format!("/chamas/{UMOJA}/meetings"),
        Some(
            json!({ "title": "Video AGM", "scheduled_for": in_days(3), "meeting_type": "virtual" }),
        ),
    )
    .await;
    let (status, error) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/meetings/{}/token", video["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 503);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AGORA_APP_ID")
    );
}
