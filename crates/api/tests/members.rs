//! Members, settings, roles, leaving, notifications and devices over HTTP as the demo's users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const WANJIKU_ID: &str = "5eed0000-0000-4000-8000-000000000001";
const AKINYI_ID: &str = "5eed0000-0000-4000-8000-000000000003";
const MWANAISHA_ID: &str = "5eed0000-0000-4000-8000-000000000005";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";

async fn demo() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn outsider(app: &TestApp, email: &str) -> (String, String) {
    let body: Value = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": email, "password": "tembo-na-twiga-42" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn members_see_the_roll_with_totals_and_officials_change_settings_within_reach() {
    let app = demo().await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let akinyi = app.demo_token("akinyi.achieng@example.co.ke").await;
    let (stranger, _) = outsider(&app, "stranger@example.co.ke").await;

    let (status, roll) = app
        .call(
            Method::GET,
            &chebet,
            &format!("/chamas/{UMOJA}/members"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let roll = roll.as_array().unwrap();
    assert_eq!(roll.len(), 5);
    assert_eq!(roll[0]["role"], "chairperson");
    let ledger_total: i64 = sqlx::query_scalar(
        "select -balance from internal.ledger_accounts where chama_id = $1::uuid and user_id = $2::uuid",
    )
    .bind(UMOJA)
    .bind(CHEBET_ID)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let chebet_row = roll.iter().find(|m| m["user_id"] == CHEBET_ID).unwrap();
    assert_eq!(chebet_row["contributed_total"], ledger_total);
    let (status, _) = app
        .call(
            Method::GET,
            &stranger,
            &format!("/chamas/{UMOJA}/members"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let path = format!("/chamas/{UMOJA}");
    let (status, _) = app
        .call(
            Method::PATCH,
            &chebet,
            &path,
            Some(json!({ "contribution_amount": 150000 })),
        )
        .await;
    assert_eq!(status, 403, "members do not change settings");
    let (status, _) = app
        .call(
            Method::PATCH,
            &stranger,
            &path,
            Some(json!({ "contribution_amount": 150000 })),
        )
        .await;
    assert_eq!(status, 404);
    let (status, chama) = app
        .call(
            Method::PATCH,
            &akinyi,
            &path,
            Some(json!({ "contribution_amount": 150000 })),
        )
        .await;
    assert_eq!(status, 200, "{chama}");
    assert_eq!(chama["contribution_amount"].as_i64(), Some(150000));
    // The approval threshold is the chairperson's alone (maker-checker).
    let (status, error) = app
        .call(
            Method::PATCH,
            &akinyi,
            &path,
            Some(json!({ "required_approvals": 3 })),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    let wanjiku = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let (status, chama) = app
        .call(
            Method::PATCH,
            &wanjiku,
            &path,
            Some(json!({ "required_approvals": 3 })),
        )
        .await;
    assert_eq!(status, 200, "{chama}");
    assert_eq!(chama["required_approvals"].as_i64(), Some(3));
    // Lowering it again is refused while the chama holds its members' money.
    let (status, error) = app
        .call(
            Method::PATCH,
            &wanjiku,
            &path,
            Some(json!({ "required_approvals": 2 })),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["details"]["field"], "required_approvals");
    let (status, error) = app
        .call(
            Method::PATCH,
            &wanjiku,
            &path,
            Some(json!({ "required_approvals": 4 })),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["details"]["field"], "required_approvals");
    for (body, field) in [
        (json!({ "name": "x" }), "name"),
        (json!({ "contribution_amount": -1 }), "contribution_amount"),
        (
            json!({ "contribution_frequency": "hourly" }),
            "contribution_frequency",
        ),
        (json!({ "required_approvals": 0 }), "required_approvals"),
    ] {
        let (status, error) = app.call(Method::PATCH, &akinyi, &path, Some(body)).await;
        assert_eq!(
            (status, error["error"]["details"]["field"].as_str()),
            (422, Some(field))
        );
    }
    let balance_untouched: i64 =
        sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
            .bind(UMOJA)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(balance_untouched > 0);
}

#[tokio::test]
async fn the_chairperson_names_roles_and_hands_over_the_chair_keeping_exactly_one() {
    let app = demo().await;
    let wanjiku = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let akinyi = app.demo_token("akinyi.achieng@example.co.ke").await;
    let role_path = |user: &str| format!("/chamas/{UMOJA}/members/{user}/role");

    let (status, _) = app
        .call(
            Method::PUT,
            &akinyi,
            &role_path(CHEBET_ID),
            Some(json!({ "role": "secretary" })),
        )
        .await;
    assert_eq!(status, 403, "only the chairperson");
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(CHEBET_ID),
            Some(json!({ "role": "boss" })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(WANJIKU_ID),
            Some(json!({ "role": "member" })),
        )
        .await;
    assert_eq!(status, 422, "the chair is handed over, not dropped");

    // With 2 approvals required and 3 officials, demoting two would leave the threshold out of reach.
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(MWANAISHA_ID),
            Some(json!({ "role": "member" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, error) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(AKINYI_ID),
            Some(json!({ "role": "member" })),
        )
        .await;
    assert_eq!(status, 422, "{error}");

    let (status, officials) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(CHEBET_ID),
            Some(json!({ "role": "chairperson" })),
        )
        .await;
    assert_eq!(status, 200, "{officials}");
    let chairs: i64 = sqlx::query_scalar(
        "select count(*) from public.chama_members where chama_id = $1::uuid and role = 'chairperson'",
    )
    .bind(UMOJA)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(chairs, 1);
    let new_chair: String = sqlx::query_scalar(
        "select user_id::text from public.chama_members where chama_id = $1::uuid and role = 'chairperson'",
    )
    .bind(UMOJA)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(new_chair, CHEBET_ID);
    // Wanjiku is now a plain member and can no longer name roles.
    let (status, _) = app
        .call(
            Method::PUT,
            &wanjiku,
            &role_path(MWANAISHA_ID),
            Some(json!({ "role": "secretary" })),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn leaving_is_refused_with_the_reason_until_nothing_is_owed() {
    let app = demo().await;
    let wanjiku = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let leave = format!("/chamas/{UMOJA}/leave");

    let (status, error) = app.call(Method::POST, &wanjiku, &leave, None).await;
    assert_eq!(status, 422);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chairperson"),
        "{error}"
    );
    let (status, error) = app.call(Method::POST, &chebet, &leave, None).await;
    assert_eq!(status, 422);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("share of KES"),
        "{error}"
    );

    // A member who joined and owes nothing either way may go.
    let (newcomer, newcomer_id) = outsider(&app, "newcomer@example.co.ke").await;
    sqlx::query("insert into public.chama_members (chama_id, user_id, role, status, joined_at) values ($1::uuid, $2::uuid, 'member', 'active', now())")
        .bind(UMOJA)
        .bind(&newcomer_id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, left) = app.call(Method::POST, &newcomer, &leave, None).await;
    assert_eq!((status, left["status"].as_str()), (200, Some("left")));
    let (status, _) = app
        .call(Method::GET, &newcomer, &format!("/chamas/{UMOJA}"), None)
        .await;
    assert_eq!(status, 404, "gone means gone");
}

#[tokio::test]
async fn notifications_are_the_callers_own_and_devices_follow_the_last_sign_in() {
    let app = demo().await;
    let wanjiku = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;

    let (status, mine) = app
        .call(Method::GET, &wanjiku, "/notifications", None)
        .await;
    assert_eq!(status, 200);
    let mine = mine.as_array().unwrap().clone();
    let hers: i64 =
        sqlx::query_scalar("select count(*) from public.notifications where user_id = $1::uuid")
            .bind(WANJIKU_ID)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(hers >= 2, "the demo's approval request and meeting");
    assert_eq!(mine.len() as i64, hers, "all hers, nobody else's");
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    let unread_count = || async {
        app.call(Method::GET, &wanjiku, "/notifications/unread-count", None)
            .await
            .1["unread"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(unread_count().await, hers);

    let (status, _) = app
        .call(
            Method::POST,
            &chebet,
            &format!("/notifications/{id}/read"),
            None,
        )
        .await;
    assert_eq!(status, 404, "not hers");
    let (status, _) = app
        .call(
            Method::POST,
            &wanjiku,
            &format!("/notifications/{id}/read"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(unread_count().await, hers - 1);
    let (_, unread) = app
        .call(Method::GET, &wanjiku, "/notifications?unread=true", None)
        .await;
    assert_eq!(unread.as_array().unwrap().len() as i64, hers - 1);
    let (status, _) = app
        .call(Method::GET, &wanjiku, "/notifications?limit=1000", None)
        .await;
    assert_eq!(status, 422);
    let (status, marked) = app
        .call(Method::POST, &wanjiku, "/notifications/read-all", None)
        .await;
    assert_eq!((status, marked["marked"].as_i64()), (200, Some(hers - 1)));
    assert_eq!(unread_count().await, 0);
    let chebet_unread: i64 = sqlx::query_scalar(
        "select count(*) from public.notifications where user_id = $1::uuid and read_at is null",
    )
    .bind(CHEBET_ID)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(chebet_unread > 0, "Wanjiku's read-all left Chebet's alone");

    let token = "fcm-token-of-a-shared-phone-0123456789";
    let register = |who: &str| {
        let request = app
            .client
            .post(app.url("/devices"))
            .bearer_auth(who.to_owned())
            .json(&json!({ "token": token, "platform": "android" }));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(register(&wanjiku).await, 204);
    assert_eq!(register(&wanjiku).await, 204, "again is fine");
    assert_eq!(register(&chebet).await, 204, "the phone changed hands");
    let owner: String =
        sqlx::query_scalar("select user_id::text from public.device_tokens where token = $1")
            .bind(token)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(owner, CHEBET_ID);
    let (status, _) = app
        .call(
            Method::POST,
            &chebet,
            "/devices",
            Some(json!({ "token": "short", "platform": "android" })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(
            Method::POST,
            &chebet,
            "/devices",
            Some(json!({ "token": token, "platform": "nokia" })),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(Method::DELETE, &wanjiku, &format!("/devices/{token}"), None)
        .await;
    assert_eq!(status, 404, "no longer hers");
    let (status, _) = app
        .call(Method::DELETE, &chebet, &format!("/devices/{token}"), None)
        .await;
    assert_eq!(status, 204);
}

/// The profile's phone identifies its owner (payouts, invitations, SMS): it is the verified
/// phone of the sign-in, changed through `PUT /auth/v1/user`, never set with the profile.
#[tokio::test]
async fn a_profile_phone_is_not_set_with_the_profile() {
    let app = demo().await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let (status, error) = app
        .call(
            Method::PATCH,
            &chebet,
            "/users/me",
            Some(json!({ "first_name": "Chebet", "phone": "0799000111" })),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["details"]["field"], "phone");
    let (status, profile) = app
        .call(
            Method::PATCH,
            &chebet,
            "/users/me",
            Some(json!({ "first_name": "Chebby", "language": "sw" })),
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        (profile["first_name"].as_str(), profile["language"].as_str()),
        (Some("Chebby"), Some("sw"))
    );
    let phone: String =
        sqlx::query_scalar("select phone::text from public.users where id = $1::uuid")
            .bind(CHEBET_ID)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_ne!(phone, "+254799000111");
}

/// A member's ID number is theirs to set through the API as through the Data API (whose grant
/// is listed in `data_api_attacks.rs`), in the schema's format; anything else is a 422 naming
/// it, and nothing is written.
#[tokio::test]
async fn a_member_sets_their_id_number_in_the_schemas_format() {
    let app = demo().await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let stored = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select id_number from public.users where id = $1::uuid",
        )
        .bind(CHEBET_ID)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let before = stored().await;
    for bad in ["12", "1234-5678", "ab 12345", &"9".repeat(21)] {
        let (status, error) = app
            .call(
                Method::PATCH,
                &chebet,
                "/users/me",
                Some(json!({ "id_number": bad })),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {error}");
        assert_eq!(error["error"]["details"]["field"], "id_number");
    }
    assert_eq!(stored().await, before);
    let (status, _) = app
        .call(
            Method::PATCH,
            &chebet,
            "/users/me",
            Some(json!({ "id_number": " a1234567 " })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored().await.as_deref(), Some("A1234567"));
}
