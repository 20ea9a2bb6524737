//! Joining a chama: invitations by phone (also to numbers with no account yet) and join codes
//! admitted by an official.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";

async fn demo() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn token(app: &TestApp, grant: &str, body: Value) -> (String, String) {
    let response = app
        .auth(Method::POST, grant)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{body}");
    let body: Value = response.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn an_invited_number_signs_up_later_sees_the_invitation_and_joins() {
    let app = demo().await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    let outsider = app.demo_token("otieno.odhiambo@example.co.ke").await;
    let invite = format!("/chamas/{UMOJA}/invitations");

    let (status, _) = app
        .call(
            Method::POST,
            &member,
            &invite,
            Some(json!({ "phone": "0799000111" })),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .call(
            Method::POST,
            &outsider,
            &invite,
            Some(json!({ "phone": "0799000111" })),
        )
        .await;
    assert_eq!(status, 404);
    for (body, field) in [
        (json!({ "phone": "0201234567" }), "phone"),
        (json!({ "phone": "12345" }), "phone"),
        (
            json!({ "phone": "0799000111", "role": "chairperson" }),
            "role",
        ),
    ] {
        let (status, error) = app
            .call(Method::POST, &secretary, &invite, Some(body))
            .await;
        assert_eq!(
            (status, error["error"]["details"]["field"].as_str()),
            (422, Some(field))
        );
    }
    let (status, invitation) = app
        .call(
            Method::POST,
            &secretary,
            &invite,
            Some(json!({ "phone": "0799 000 111" })),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["phone"], "+254799000111");
    let (status, _) = app
        .call(
            Method::POST,
            &secretary,
            &invite,
            Some(json!({ "phone": "+254799000111" })),
        )
        .await;
    assert_eq!(status, 409, "one pending invitation per number");
    let sms: i64 = sqlx::query_scalar("select count(*) from internal.outbox where topic = 'sms' and payload->>'to' = '+254799000111'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(sms, 1);

    // The number signs up; the invitation is waiting for it.
    let (newcomer, _) = token(
        &app,
        "/signup",
        json!({ "phone": "0799000111", "password": "tembo-na-twiga-42" }),
    )
    .await;
    let (status, pending) = app.call(Method::GET, &newcomer, "/invitations", None).await;
    assert_eq!(status, 200);
    assert_eq!(pending[0]["chama_name"], "Umoja Women Group");
    let id = pending[0]["id"].as_str().unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            &outsider,
            &format!("/invitations/{id}/accept"),
            None,
        )
        .await;
    assert_eq!(status, 404, "not Otieno's invitation");
    let (status, accepted) = app
        .call(
            Method::POST,
            &newcomer,
            &format!("/invitations/{id}/accept"),
            None,
        )
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("accepted"))
    );
    let (_, mine) = app.call(Method::GET, &newcomer, "/chamas", None).await;
    assert_eq!(mine[0]["id"], UMOJA);
    assert_eq!(mine[0]["my_role"], "member");
    let (status, _) = app
        .call(
            Method::POST,
            &newcomer,
            &format!("/invitations/{id}/accept"),
            None,
        )
        .await;
    assert_eq!(status, 422, "answered already");
    let (status, _) = app
        .call(
            Method::POST,
            &secretary,
            &invite,
            Some(json!({ "phone": "0799000111" })),
        )
        .await;
    assert_eq!(status, 409, "already a member");
}

#[tokio::test]
async fn an_existing_user_is_told_in_the_app_and_may_decline() {
    let app = demo().await;
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let otieno = app.demo_token("otieno.odhiambo@example.co.ke").await;
    let (status, invitation) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/chamas/{UMOJA}/invitations"),
            Some(json!({ "phone": "0722345002", "role": "treasurer" })),
        )
        .await;
    assert_eq!(status, 201);
    let told: i64 = sqlx::query_scalar("select count(*) from public.notifications where user_id = '5eed0000-0000-4000-8000-000000000002' and title = 'Invitation to join a chama'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(told, 1);
    let id = invitation["id"].as_str().unwrap();
    let (status, declined) = app
        .call(
            Method::POST,
            &otieno,
            &format!("/invitations/{id}/decline"),
            None,
        )
        .await;
    assert_eq!(
        (status, declined["status"].as_str()),
        (200, Some("declined"))
    );
    let (status, _) = app
        .call(Method::GET, &otieno, &format!("/chamas/{UMOJA}"), None)
        .await;
    assert_eq!(status, 404, "declining joins nothing");
}

#[tokio::test]
async fn a_join_code_makes_a_request_that_an_official_admits_or_refuses() {
    let app = demo().await;
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let member = app.demo_token("chebet.langat@example.co.ke").await;
    let (asker, asker_id) = token(
        &app,
        "/signup",
        json!({ "email": "asker@example.co.ke", "password": "tembo-na-twiga-42" }),
    )
    .await;
    let (other, other_id) = token(
        &app,
        "/signup",
        json!({ "email": "other@example.co.ke", "password": "tembo-na-twiga-42" }),
    )
    .await;

    let (status, _) = app
        .call(
            Method::POST,
            &asker,
            "/chamas/join",
            Some(json!({ "join_code": "NOSUCH99" })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(
            Method::POST,
            &asker,
            "/chamas/join",
            Some(json!({ "join_code": "x" })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, asked) = app
        .call(
            Method::POST,
            &asker,
            "/chamas/join",
            Some(json!({ "join_code": " umoja2024 " })),
        )
        .await;
    assert_eq!((status, asked["status"].as_str()), (200, Some("pending")));
    let (status, _) = app
        .call(
            Method::POST,
            &asker,
            "/chamas/join",
            Some(json!({ "join_code": "UMOJA2024" })),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = app
        .call(
            Method::GET,
            &asker,
            &format!("/chamas/{UMOJA}/members"),
            None,
        )
        .await;
    assert_eq!(status, 404, "a request is not membership");

    let admit = format!("/chamas/{UMOJA}/members/{asker_id}/admit");
    let (status, _) = app.call(Method::POST, &member, &admit, None).await;
    assert_eq!(status, 403);
    let (status, admitted) = app.call(Method::POST, &treasurer, &admit, None).await;
    assert_eq!((status, admitted["status"].as_str()), (200, Some("active")));
    let (status, _) = app
        .call(
            Method::GET,
            &asker,
            &format!("/chamas/{UMOJA}/members"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.call(Method::POST, &treasurer, &admit, None).await;
    assert_eq!(status, 404, "nothing pending any more");

    let (_, _) = app
        .call(
            Method::POST,
            &other,
            "/chamas/join",
            Some(json!({ "join_code": "UMOJA2024" })),
        )
        .await;
    let (status, refused) = app
        .call(
            Method::POST,
            &treasurer,
            &format!("/chamas/{UMOJA}/members/{other_id}/refuse"),
            None,
        )
        .await;
    assert_eq!(
        (status, refused["status"].as_str()),
        (200, Some("declined"))
    );
    let (status, _) = app
        .call(Method::GET, &other, &format!("/chamas/{UMOJA}"), None)
        .await;
    assert_eq!(status, 404);
}
