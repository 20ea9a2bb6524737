//! Platform administration: only tokens whose app_metadata says admin get in; suspensions bite
//! and are audited under the administrator's name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const WANJIKU_ID: &str = "5eed0000-0000-4000-8000-000000000001";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";

async fn login(app: &TestApp, email: &str) -> reqwest::Response {
    app.auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "email": email, "password": "password123" }))
        .send()
        .await
        .unwrap()
}

async fn admin_app() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    sqlx::query("select internal.set_platform_admin($1::uuid, true, null)")
        .bind(WANJIKU_ID)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let admin = app.demo_token("wanjiku.kamau@example.co.ke").await;
    (app, admin)
}

#[tokio::test]
async fn only_an_app_metadata_admin_gets_in_and_user_metadata_does_not_count() {
    let (app, admin) = admin_app().await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let (status, _) = app.call(Method::GET, &chebet, "/admin/users", None).await;
    assert_eq!(status, 403);
    let anonymous = app
        .client
        .get(app.url("/admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Writing the role into user_metadata (which users control) changes nothing.
    let put = app
        .auth(Method::PUT, "/user")
        .bearer_auth(&chebet)
        .json(&json!({ "data": { "platform_role": "admin" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let (status, _) = app.call(Method::GET, &chebet, "/admin/chamas", None).await;
    assert_eq!(status, 403);

    let (status, users) = app
        .call(Method::GET, &admin, "/admin/users?q=WEKESA", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["first_name"], "Nafula");
    let (_, everyone) = app
        .call(Method::GET, &admin, "/admin/users?q=%25", None)
        .await;
    assert_eq!(everyone, json!([]), "a % is searched for, not a wildcard");
    let (_, chamas) = app
        .call(Method::GET, &admin, "/admin/chamas?q=umoja", None)
        .await;
    assert_eq!(chamas[0]["id"], UMOJA);
    let (status, _) = app
        .call(Method::GET, &admin, "/admin/chamas?limit=0", None)
        .await;
    assert_eq!(status, 422);
    let (status, trail) = app
        .call(
            Method::GET,
            &admin,
            &format!("/admin/audit?chama_id={UMOJA}&limit=3"),
            None,
        )
        .await;
    assert_eq!((status, trail.as_array().unwrap().len()), (200, 3));
}

#[tokio::test]
async fn a_suspended_user_is_signed_out_and_kept_out_until_reinstated() {
    let (app, admin) = admin_app().await;
    let chebet_session: Value = login(&app, "chebet.langat@example.co.ke")
        .await
        .json()
        .await
        .unwrap();

    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/users/{WANJIKU_ID}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, 422, "not oneself");
    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/users/{CHEBET_ID}/suspend"),
            Some(json!({ "reason": "reported fraud" })),
        )
        .await;
    assert_eq!(status, 200);
    let refused = login(&app, "chebet.langat@example.co.ke").await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "user_banned"
    );
    let refresh = app
        .auth(Method::POST, "/token?grant_type=refresh_token")
        .json(&json!({ "refresh_token": chebet_session["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert!(
        refresh.status().is_client_error(),
        "the session is gone: {}",
        refresh.status()
    );
    let audited: (String, Value) = sqlx::query_as(
        "select actor_id::text, metadata from public.audit_logs where action = 'admin.user_suspended'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(audited.0, WANJIKU_ID);
    assert_eq!(audited.1["reason"], "reported fraud");

    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/users/{CHEBET_ID}/reinstate"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        login(&app, "chebet.langat@example.co.ke").await.status(),
        200
    );
    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/users/{}/suspend", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_suspended_chama_moves_no_money_and_operators_see_what_needs_attention() {
    let (app, admin) = admin_app().await;
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let contribute = |key: &'static str| {
        app.client
            .post(app.url("/transactions"))
            .bearer_auth(treasurer.clone())
            .header("idempotency-key", key)
            .json(&json!({ "chama_id": UMOJA, "member_id": CHEBET_ID, "amount": 5000, "payment_method": "cash" }))
            .send()
    };
    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/chamas/{UMOJA}/suspend"),
            Some(json!({ "reason": "audit" })),
        )
        .await;
    assert_eq!(status, 200);
    let refused = contribute("while-suspended").await.unwrap();
    assert_eq!(refused.status(), 422);
    let (status, _) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/chamas/{UMOJA}/reinstate"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(contribute("after-reinstated").await.unwrap().status(), 201);
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from public.audit_logs where action like 'admin.chama_%' and actor_id = $1::uuid order by id",
    )
    .bind(WANJIKU_ID)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(actions, ["admin.chama_suspended", "admin.chama_active"]);

    sqlx::query("insert into internal.outbox (topic, payload, status, attempts, last_error) values ('sms', '{}', 'dead', 10, 'provider said no')")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, attention) = app
        .call(Method::GET, &admin, "/admin/attention", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        attention["failed_deliveries"][0]["last_error"],
        "provider said no"
    );
    assert!(attention["stuck_payment_requests"].is_array());
    assert!(attention["unpaid_withdrawals"].is_array());
}
