//! Supabase Auth's admin API (`/auth/v1/admin/*`) as supabase-js `auth.admin.*` calls it: only
//! the service role gets in; what it does to users bites at once (bans, deletions, passwords);
//! nobody who is in a chama is deleted out from under it; links it generates verify once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::{TEST_JWT_SECRET, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const WANJIKU: &str = "wanjiku.kamau@example.co.ke";
const WANJIKU_ID: &str = "5eed0000-0000-4000-8000-000000000001";
const CHEBET: &str = "chebet.langat@example.co.ke";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";

fn service_key() -> String {
    TestApp::api_key("service_role")
}

/// A call to `/auth/v1/admin{path}` as supabase-js's admin client makes it: the service key as
/// apikey and, unless `bearer` says otherwise, as the bearer token.
async fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let service = service_key();
    let mut request = app
        .client
        .request(method, app.url(&format!("/auth/v1/admin{path}")))
        .header("apikey", &service)
        .header("x-supabase-api-version", "2024-01-01")
        .bearer_auth(bearer.unwrap_or(&service));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, body, _) = admin_call(app, method, path, None, body).await;
    (status, body)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn password_login(app: &TestApp, credentials: Value) -> (u16, Value) {
    let response = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&credentials)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `GET /auth/v1/user` with `token`: the status and the error code or user.
async fn whoami(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .auth(Method::GET, "/user")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The status and error code of an app route called with `token`.
async fn reach(app: &TestApp, token: &str) -> (u16, Value) {
    let (status, body) = app.call(Method::GET, token, "/chamas", None).await;
    let code = match &body["error"]["code"] {
        Value::Null => body["code"].clone(),
        code => code.clone(),
    };
    (status, code)
}

async fn demo_app() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

fn sign(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, user) = admin(app, Method::POST, "/users", Some(body.clone())).await;
    assert_eq!(status, 200, "create {body}: {user}");
    user
}

#[tokio::test]
async fn only_the_service_role_gets_in_and_refusals_write_nothing() {
    let app = demo_app().await;
    sqlx::query("select internal.set_platform_admin($1::uuid, true, null)")
        .bind(WANJIKU_ID)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let platform_admin = app.demo_token(WANJIKU).await;
    let member = app.demo_token(CHEBET).await;
    let now = chrono::Utc::now().timestamp();
    let other_key = sign(
        "another-projects-secret-with-at-least-32-characters",
        json!({ "iss": "supabase", "ref": "local", "role": "service_role", "iat": now, "exp": now + 3600 }),
    );
    let expired = sign(
        TEST_JWT_SECRET,
        json!({ "iss": "supabase", "ref": "local", "role": "service_role", "iat": now - 7200, "exp": now - 3600 }),
    );
    let anon = TestApp::api_key("anon");
    let attackers: [(&str, &str, u16, &str); 6] = [
        ("the anon key", &anon, 403, "not_admin"),
        ("a member's token", &member, 403, "not_admin"),
        (
            "a platform administrator's token",
            &platform_admin,
            403,
            "not_admin",
        ),
        (
            "service_role signed with another key",
            &other_key,
            403,
            "bad_jwt",
        ),
        ("an expired service key", &expired, 403, "bad_jwt"),
        ("garbage", "not-a-jwt", 403, "bad_jwt"),
    ];
    let users_before = count(&app, "select count(*) from auth.users").await;
    let audit_before = count(&app, "select count(*) from public.audit_logs").await;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users".to_owned(), None),
        (Method::GET, format!("/users/{CHEBET_ID}"), None),
        (
            Method::POST,
            "/users".to_owned(),
            Some(
                json!({ "email": "intruder@example.com", "password": "Str0ng-pass!", "email_confirm": true }),
            ),
        ),
        (
            Method::PUT,
            format!("/users/{CHEBET_ID}"),
            Some(
                json!({ "app_metadata": { "platform_role": "admin" }, "password": "Str0ng-pass!" }),
            ),
        ),
        (Method::DELETE, format!("/users/{CHEBET_ID}"), None),
        (
            Method::POST,
            "/generate_link".to_owned(),
            Some(json!({ "type": "magiclink", "email": CHEBET })),
        ),
    ];
    for (method, path, body) in &routes {
        for (who, token, status, code) in &attackers {
            let (got, answer, _) =
                admin_call(&app, method.clone(), path, Some(token), body.clone()).await;
            assert_eq!(
                (got, answer["code"].as_str().unwrap_or_default()),
                (*status, *code),
                "{method} {path} with {who}: {answer}"
            );
        }
        // No bearer token at all (the anon key as apikey only, as a browser would send it).
        let mut request = app
            .client
            .request(method.clone(), app.url(&format!("/auth/v1/admin{path}")))
            .header("apikey", &anon)
            .header("x-supabase-api-version", "2024-01-01");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "no_authorization");
    }
    assert_eq!(
        count(&app, "select count(*) from auth.users").await,
        users_before
    );
    assert_eq!(
        count(&app, "select count(*) from public.audit_logs").await,
        audit_before,
        "a refused call leaves no trace but the refusal"
    );
    // Chebet's password and rights are as they were.
    let (status, _) =
        password_login(&app, json!({ "email": CHEBET, "password": "password123" })).await;
    assert_eq!(status, 200);
    let rights: Option<String> = sqlx::query_scalar(
        "select raw_app_meta_data->>'platform_role' from auth.users where id = $1::uuid",
    )
    .bind(CHEBET_ID)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(rights, None);

    // The service key gets in; the old error shape is kept for clients without the header.
    let (status, _) = admin(&app, Method::GET, "/users", None).await;
    assert_eq!(status, 200);
    let old_shape = app
        .client
        .get(app.url("/auth/v1/admin/users"))
        .header("apikey", &anon)
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(old_shape.status(), 403);
    let body: Value = old_shape.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "code": 403, "error_code": "not_admin", "msg": "User not allowed" })
    );
}

#[tokio::test]
async fn an_opaque_secret_key_is_the_service_role_and_a_publishable_one_is_not() {
    let mut config = TestApp::config();
    config.auth.opaque_api_keys = vec![
        "sb_publishable_admin_test".to_owned(),
        "sb_secret_admin_test".to_owned(),
    ];
    let app = TestApp::spawn_with(pesachama_testkit::TestDb::new().await, config).await;
    let (status, _, _) = admin_call(
        &app,
        Method::GET,
        "/users",
        Some("sb_secret_admin_test"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = admin_call(
        &app,
        Method::GET,
        "/users",
        Some("sb_publishable_admin_test"),
        None,
    )
    .await;
    assert_eq!((status, &body["code"]), (403, &json!("bad_jwt")));
}

#[tokio::test]
async fn users_are_listed_in_pages_with_gotrues_headers_in_the_shape_of_get_user() {
    let app = TestApp::spawn().await;
    for n in 1..=3 {
        create(
            &app,
            json!({ "email": format!("user{n}@example.com"), "password": "Str0ng-pass!", "email_confirm": true }),
        )
        .await;
    }
    let (status, page1, headers) =
        admin_call(&app, Method::GET, "/users?page=1&per_page=2", None, None).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["aud"], "authenticated");
    assert_eq!(page1["users"].as_array().unwrap().len(), 2);
    assert_eq!(headers["x-total-count"], "3");
    assert_eq!(
        headers["link"],
        "</auth/v1/admin/users?page=2&per_page=2>; rel=\"next\", </auth/v1/admin/users?page=2&per_page=2>; rel=\"last\""
    );
    // Newest first.
    assert_eq!(page1["users"][0]["email"], "user3@example.com");
    let (_, page2, headers) =
        admin_call(&app, Method::GET, "/users?page=2&per_page=2", None, None).await;
    assert_eq!(page2["users"].as_array().unwrap().len(), 1);
    assert_eq!(page2["users"][0]["email"], "user1@example.com");
    assert_eq!(
        headers["link"],
        "</auth/v1/admin/users?page=2&per_page=2>; rel=\"last\""
    );
    let (_, all, _) = admin_call(&app, Method::GET, "/users", None, None).await;
    assert_eq!(all["users"].as_array().unwrap().len(), 3);

    // Each user is exactly what GET /auth/v1/user shows them.
    let session = app
        .sign_in(json!({ "email": "user1@example.com", "password": "Str0ng-pass!" }))
        .await;
    let (_, own) = whoami(&app, session["access_token"].as_str().unwrap()).await;
    let id = own["id"].as_str().unwrap();
    let (status, by_id) = admin(&app, Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(by_id, own);
    let (_, all, _) = admin_call(&app, Method::GET, "/users", None, None).await;
    assert_eq!(all["users"][2], own);

    for bad in ["/users?page=x", "/users?per_page=-1"] {
        let (status, body, _) = admin_call(&app, Method::GET, bad, None, None).await;
        assert_eq!(
            (status, body["code"].as_str().unwrap()),
            (400, "validation_failed"),
            "{bad}: {body}"
        );
        assert!(body["message"].as_str().unwrap().contains("Pagination"));
    }
}

#[tokio::test]
async fn a_user_is_found_by_id_and_bad_ids_get_gotrues_answers() {
    let app = demo_app().await;
    let (status, user) = admin(&app, Method::GET, &format!("/users/{CHEBET_ID}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(user["email"], CHEBET);
    assert_eq!(user["identities"].as_array().map(Vec::len), Some(1));
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({}));
        let (status, answer) = admin(&app, method.clone(), "/users/not-a-uuid", body.clone()).await;
        assert_eq!(
            (status, &answer),
            (
                404,
                &json!({ "code": "validation_failed", "message": "user_id must be an UUID" })
            ),
            "{method}"
        );
        let (status, answer) = admin(
            &app,
            method.clone(),
            "/users/00000000-0000-4000-8000-00000000dead",
            body,
        )
        .await;
        assert_eq!(
            (status, &answer),
            (
                404,
                &json!({ "code": "user_not_found", "message": "User not found" })
            ),
            "{method}"
        );
    }
}

#[tokio::test]
async fn created_users_are_rows_gotrue_reads_and_bad_input_writes_nothing() {
    let app = demo_app().await;
    let user = create(
        &app,
        json!({
            "email": "Amina@Example.com",
            "password": "Str0ng-pass!",
            "email_confirm": true,
            "user_metadata": { "first_name": "Amina", "last_name": "Odera" },
            "app_metadata": { "plan": "gold" },
        }),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["email"], "amina@example.com");
    assert!(user["email_confirmed_at"].is_string());
    assert_eq!(user["phone"], "");
    assert_eq!(user["user_metadata"]["first_name"], "Amina");
    assert_eq!(
        user["app_metadata"],
        json!({ "provider": "email", "providers": ["email"], "plan": "gold" })
    );
    assert_eq!(user["identities"][0]["provider"], "email");
    assert_eq!(
        user["identities"][0]["identity_data"]["email"],
        "amina@example.com"
    );
    // She signs in at once, and has a profile with her confirmed email and her name.
    let (status, _) = password_login(
        &app,
        json!({ "email": "amina@example.com", "password": "Str0ng-pass!" }),
    )
    .await;
    assert_eq!(status, 200);
    let profile: (Option<String>, Option<String>) =
        sqlx::query_as("select email, first_name from public.users where id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        profile,
        (
            Some("amina@example.com".to_owned()),
            Some("Amina".to_owned())
        )
    );
    // A custom id, no password (a random one), an unconfirmed phone.
    let user = create(
        &app,
        json!({ "id": "7e570000-0000-4000-8000-000000000001", "phone": "0712999001" }),
    )
    .await;
    assert_eq!(user["id"], "7e570000-0000-4000-8000-000000000001");
    assert_eq!(user["phone"], "254712999001");
    assert!(user["phone_confirmed_at"].is_null());
    assert_eq!(user["app_metadata"]["provider"], "phone");
    app.db.assert_gotrue_can_read().await;
    assert_eq!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.user_created'"
        )
        .await,
        2
    );

    let users_before = count(&app, "select count(*) from auth.users").await;
    let bad: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "email": CHEBET, "password": "Str0ng-pass!" }),
            422,
            "email_exists",
        ),
        (
            json!({ "email": "CHEBET.langat@example.co.ke" }),
            422,
            "email_exists",
        ),
        (json!({ "phone": "+254712999001" }), 422, "phone_exists"),
        (json!({ "phone": "0115345009" }), 422, "phone_exists"),
        (
            json!({ "password": "Str0ng-pass!" }),
            400,
            "validation_failed",
        ),
        (json!({ "email": "not an email" }), 400, "validation_failed"),
        (json!({ "phone": "12345" }), 400, "validation_failed"),
        (
            json!({ "email": "x@example.com", "password": "short" }),
            422,
            "weak_password",
        ),
        (
            json!({ "email": "x@example.com", "password": "Str0ng-pass!", "password_hash": "$2a$10$abc" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "password_hash": "plaintext" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "ban_duration": "forever" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "role": "service_role" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "aud": "other" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "id": "nope" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "id": "00000000-0000-0000-0000-000000000000" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "id": WANJIKU_ID }),
            422,
            "user_already_exists",
        ),
        (
            json!({ "email": "x@example.com", "user_metadata": [1] }),
            400,
            "validation_failed",
        ),
        (
            json!({ "email": "x@example.com", "email_confirm": "yes" }),
            400,
            "bad_json",
        ),
    ];
    for (body, status, code) in bad {
        let (got, answer) = admin(&app, Method::POST, "/users", Some(body.clone())).await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap_or_default()),
            (status, code),
            "{body}: {answer}"
        );
    }
    let raw = app
        .client
        .post(app.url("/auth/v1/admin/users"))
        .header("apikey", service_key())
        .bearer_auth(service_key())
        .header("x-supabase-api-version", "2024-01-01")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(
        count(&app, "select count(*) from auth.users").await,
        users_before
    );
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn a_phone_the_service_role_confirms_matches_invitations_and_an_unconfirmed_one_does_not() {
    let app = demo_app().await;
    let owner = |phone: &'static str| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<uuid::Uuid>>(
                "select internal.user_with_confirmed_phone($1)",
            )
            .bind(phone)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let user = create(
        &app,
        json!({ "email": "baraka@example.com", "phone": "0712999002" }),
    )
    .await;
    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        owner("+254712999002").await,
        None,
        "an unconfirmed phone is nobody's"
    );

    let (status, user) = admin(
        &app,
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({ "phone_confirm": true })),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert!(user["phone_confirmed_at"].is_string());
    assert_eq!(owner("+254712999002").await, Some(id));
    let profile_phone: Option<String> =
        sqlx::query_scalar("select phone from public.users where id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(profile_phone.as_deref(), Some("+254712999002"));

    // A new number without phone_confirm is unconfirmed, whatever the old one was: the old
    // number is free and the new one matches no invitation.
    let (status, user) = admin(
        &app,
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({ "phone": "+254712999003" })),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert!(user["phone_confirmed_at"].is_null());
    assert_eq!(owner("+254712999002").await, None);
    assert_eq!(owner("+254712999003").await, None);
    let profile_phone: Option<String> =
        sqlx::query_scalar("select phone from public.users where id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(profile_phone, None);
    let identity: Value = sqlx::query_scalar(
        "select identity_data from auth.identities where user_id = $1 and provider = 'phone'",
    )
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(identity["phone"], "254712999003");
    assert_eq!(identity["phone_verified"], false);

    // Another member's confirmed number cannot be given to this account.
    let (status, body) = admin(
        &app,
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({ "phone": "0115345009", "phone_confirm": true })),
    )
    .await;
    assert_eq!((status, &body["code"]), (422, &json!("phone_exists")));
    let (status, body) = admin(
        &app,
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({ "email": CHEBET })),
    )
    .await;
    assert_eq!((status, &body["code"]), (422, &json!("email_exists")));
    assert_eq!(
        owner("+254115345009").await,
        Some(CHEBET_ID.parse().unwrap())
    );
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn updates_merge_metadata_change_the_password_and_end_the_old_sessions() {
    let app = demo_app().await;
    let session = app
        .sign_in(json!({ "email": CHEBET, "password": "password123" }))
        .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(reach(&app, &token).await.0, 200);
    sqlx::query(
        "update auth.users set raw_user_meta_data = raw_user_meta_data || '{\"nickname\": \"Che\", \"town\": \"Kericho\"}' where id = $1::uuid",
    )
    .bind(CHEBET_ID)
    .execute(&app.db.pool)
    .await
    .unwrap();

    let (status, user) = admin(
        &app,
        Method::PUT,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({
            "password": "N3w-password!",
            "user_metadata": { "nickname": null, "town": "Bomet" },
            "app_metadata": { "tier": 2 },
        })),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["user_metadata"]["town"], "Bomet");
    assert!(
        user["user_metadata"].get("nickname").is_none(),
        "null removes a key"
    );
    assert_eq!(user["app_metadata"]["tier"], 2);
    assert_eq!(user["app_metadata"]["provider"], "email", "other keys stay");

    // The old password and the old session are gone; the new password works.
    assert_eq!(reach(&app, &token).await, (403, json!("session_not_found")));
    let (status, _) =
        password_login(&app, json!({ "email": CHEBET, "password": "password123" })).await;
    assert_eq!(status, 400);
    let (status, _) = password_login(
        &app,
        json!({ "email": CHEBET, "password": "N3w-password!" }),
    )
    .await;
    assert_eq!(status, 200);

    // The role cannot be raised, and a bad ban duration changes nothing.
    for body in [
        json!({ "role": "service_role" }),
        json!({ "ban_duration": "3 days" }),
        json!({ "user_metadata": "x" }),
    ] {
        let (status, answer) = admin(
            &app,
            Method::PUT,
            &format!("/users/{CHEBET_ID}"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, &answer["code"]),
            (400, &json!("validation_failed")),
            "{body}"
        );
    }
    let banned: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select banned_until from auth.users where id = $1::uuid")
            .bind(CHEBET_ID)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(banned, None);
    let audits = count(
        &app,
        "select count(*) from public.audit_logs where action = 'admin.user_updated' and record_id = '5eed0000-0000-4000-8000-000000000009'",
    )
    .await;
    assert_eq!(audits, 1);
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn a_ban_refuses_the_users_live_token_within_the_cache_window_and_none_lifts_it() {
    // The default session check: answers cached 5 s.
    let app = demo_app().await;
    let session = app
        .sign_in(json!({ "email": CHEBET, "password": "password123" }))
        .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(reach(&app, &token).await.0, 200, "cached as live");

    let (status, user) = admin(
        &app,
        Method::PUT,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({ "ban_duration": "24h" })),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    let until: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select banned_until from auth.users where id = $1::uuid")
            .bind(CHEBET_ID)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "{hours} minutes");

    // Within the 5 s the cached answer would have lasted: refused everywhere.
    assert_eq!(reach(&app, &token).await, (403, json!("user_banned")));
    assert_eq!(whoami(&app, &token).await.0, 403);
    let (status, body) =
        password_login(&app, json!({ "email": CHEBET, "password": "password123" })).await;
    assert_eq!((status, &body["code"]), (400, &json!("user_banned")));
    let response = app
        .auth(Method::POST, "/token?grant_type=refresh_token")
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "no new token for a banned user");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "user_banned");

    let (status, _) = admin(
        &app,
        Method::PUT,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({ "ban_duration": "none" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) =
        password_login(&app, json!({ "email": CHEBET, "password": "password123" })).await;
    assert_eq!(status, 200);
    assert_eq!(
        reach(&app, &token).await.0,
        200,
        "the ban kept the session, as GoTrue's"
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.user_updated'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn granting_platform_admin_through_app_metadata_is_audited_and_revoking_bites_at_once() {
    let app = demo_app().await;
    let token = app.demo_token(CHEBET).await;
    let (status, _) = app.call(Method::GET, &token, "/admin/users", None).await;
    assert_eq!(status, 403);
    let (status, _) = admin(
        &app,
        Method::PUT,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({ "app_metadata": { "platform_role": "admin" } })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = app.call(Method::GET, &token, "/admin/users", None).await;
    assert_eq!(
        status, 200,
        "the service role's grant is read from the database"
    );
    let (status, _) = admin(
        &app,
        Method::PUT,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({ "app_metadata": { "platform_role": null } })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = app.call(Method::GET, &token, "/admin/users", None).await;
    assert_eq!(status, 403);
    assert_eq!(
        count(&app, "select count(*) from public.audit_logs where action in ('admin.granted', 'admin.revoked') and record_id = '5eed0000-0000-4000-8000-000000000009'").await,
        2
    );
    // Even a platform administrator's token is not the service role.
    let (status, body, _) = admin_call(&app, Method::GET, "/users", Some(&token), None).await;
    assert_eq!((status, &body["code"]), (403, &json!("not_admin")));
}

#[tokio::test]
async fn members_and_officials_are_not_deleted_and_the_ledger_still_balances() {
    let app = demo_app().await;
    let balance_before: i64 =
        sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
            .bind(UMOJA)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    for (id, who) in [
        (CHEBET_ID, "a member with a share"),
        (WANJIKU_ID, "a chairperson"),
    ] {
        for body in [None, Some(json!({ "should_soft_delete": true }))] {
            let (status, answer) =
                admin(&app, Method::DELETE, &format!("/users/{id}"), body.clone()).await;
            assert_eq!(status, 409, "{who} {body:?}: {answer}");
            assert_eq!(answer["code"], "conflict");
            let message = answer["message"].as_str().unwrap();
            assert!(message.contains("still in"), "{message}");
            assert!(message.contains("must leave"), "{message}");
        }
    }
    let (_, answer) = admin(&app, Method::DELETE, &format!("/users/{WANJIKU_ID}"), None).await;
    assert!(
        answer["message"].as_str().unwrap().contains("official"),
        "{answer}"
    );
    let (_, answer) = admin(&app, Method::DELETE, &format!("/users/{CHEBET_ID}"), None).await;
    assert!(
        answer["message"].as_str().unwrap().contains("share of KES"),
        "{answer}"
    );

    // Nothing changed: both still sign in, the money is where it was.
    for email in [CHEBET, WANJIKU] {
        let (status, _) =
            password_login(&app, json!({ "email": email, "password": "password123" })).await;
        assert_eq!(status, 200, "{email}");
    }
    let balance_after: i64 =
        sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
            .bind(UMOJA)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(balance_after, balance_before);
    assert_eq!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.user_deleted'"
        )
        .await,
        0
    );
    let (status, body) = admin(
        &app,
        Method::DELETE,
        &format!("/users/{CHEBET_ID}"),
        Some(json!({ "should_soft_delete": "yes" })),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!("bad_json")));
    app.db.assert_ledger_balanced().await;
}

/// A user who was in Umoja and left: their membership row and the chama's records name them.
async fn former_member(app: &TestApp) -> (String, String) {
    let user = create(
        app,
        json!({ "email": "former@example.com", "phone": "0712999004", "password": "Str0ng-pass!",
                "email_confirm": true, "phone_confirm": true }),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "insert into public.chama_members (chama_id, user_id, role, status, joined_at, left_at)
         values ($1::uuid, $2::uuid, 'member', 'left', now() - interval '30 days', now())",
    )
    .bind(UMOJA)
    .bind(&id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let session = app
        .sign_in(json!({ "email": "former@example.com", "password": "Str0ng-pass!" }))
        .await;
    (id, session["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_former_member_is_soft_deleted_keeping_the_chamas_history_and_freeing_the_address() {
    let app = demo_app().await;
    let (id, token) = former_member(&app).await;
    assert_eq!(reach(&app, &token).await.0, 200);

    // A hard delete would take the chama's record of them: refused, naming it.
    let (status, body) = admin(&app, Method::DELETE, &format!("/users/{id}"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("chama_members_user_id_fkey")
            && body["message"]
                .as_str()
                .unwrap()
                .contains("should_soft_delete"),
        "{body}"
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.user_deleted'"
        )
        .await,
        0,
        "the refused delete left no audit row"
    );

    let (status, body) = admin(
        &app,
        Method::DELETE,
        &format!("/users/{id}"),
        Some(json!({ "should_soft_delete": true })),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({})));
    // Their token, their password and their identities are dead.
    assert_eq!(reach(&app, &token).await, (403, json!("user_not_found")));
    let (status, _) = password_login(
        &app,
        json!({ "email": "former@example.com", "password": "Str0ng-pass!" }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = admin(&app, Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!((status, &body["code"]), (404, &json!("user_not_found")));
    // The chama's history still names them.
    let kept = count(
        &app,
        &format!("select count(*) from public.chama_members where user_id = '{id}'"),
    )
    .await;
    assert_eq!(kept, 1);
    let row: (Option<String>, Option<String>, bool) = sqlx::query_as(
        "select email, encrypted_password, deleted_at is not null from auth.users where id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_ne!(row.0.as_deref(), Some("former@example.com"));
    assert_eq!((row.1, row.2), (None, true));
    assert_eq!(
        count(
            &app,
            &format!("select count(*) from auth.sessions where user_id = '{id}'")
        )
        .await,
        0
    );
    // Their email and phone are free for someone else.
    let again = create(
        &app,
        json!({ "email": "former@example.com", "phone": "0712999004", "phone_confirm": true }),
    )
    .await;
    assert_ne!(again["id"], json!(id));
    assert_eq!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.user_deleted'"
        )
        .await,
        1
    );
    app.db.assert_gotrue_can_read().await;
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_user_without_history_is_hard_deleted_and_cannot_sign_in() {
    let app = demo_app().await;
    let user = create(
        &app,
        json!({ "email": "brief@example.com", "password": "Str0ng-pass!", "email_confirm": true }),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let session = app
        .sign_in(json!({ "email": "brief@example.com", "password": "Str0ng-pass!" }))
        .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(reach(&app, &token).await.0, 200, "cached as live");

    let response = app
        .client
        .delete(app.url(&format!("/auth/v1/admin/users/{id}")))
        .header("apikey", service_key())
        .bearer_auth(service_key())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    assert_eq!(reach(&app, &token).await, (403, json!("user_not_found")));
    let (status, body) = password_login(
        &app,
        json!({ "email": "brief@example.com", "password": "Str0ng-pass!" }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_credentials"))
    );
    for table in ["auth.users", "auth.identities", "public.users"] {
        let column = if table == "auth.identities" {
            "user_id"
        } else {
            "id"
        };
        assert_eq!(
            count(
                &app,
                &format!("select count(*) from {table} where {column} = '{id}'")
            )
            .await,
            0,
            "{table}"
        );
    }
    let (status, body) = admin(&app, Method::DELETE, &format!("/users/{id}"), None).await;
    assert_eq!((status, &body["code"]), (404, &json!("user_not_found")));
    assert_eq!(
        count(&app, &format!("select count(*) from public.audit_logs where action = 'admin.user_deleted' and record_id = '{id}'")).await,
        1
    );
    app.db.assert_gotrue_can_read().await;
    app.db.assert_ledger_balanced().await;
}

async fn generate(app: &TestApp, body: Value) -> (u16, Value) {
    admin(app, Method::POST, "/generate_link", Some(body)).await
}

async fn verify(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .auth(Method::POST, "/verify")
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn sha224_hex(app: &TestApp, text: &str) -> String {
    sqlx::query_scalar("select encode(sha224(convert_to($1, 'UTF8')), 'hex')")
        .bind(text)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn generated_links_carry_gotrues_properties_and_their_codes_verify_once() {
    let app = demo_app().await;
    let outbox_before = count(&app, "select count(*) from internal.outbox").await;

    // signup: a new, unconfirmed user whose code confirms them.
    let (status, link) = generate(
        &app,
        json!({ "type": "signup", "email": "Neema@example.com", "password": "Str0ng-pass!",
                "data": { "first_name": "Neema" }, "redirect_to": "http://127.0.0.1:3000/welcome" }),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["verification_type"], "signup");
    assert_eq!(link["email"], "neema@example.com");
    assert!(link["email_confirmed_at"].is_null());
    assert_eq!(link["redirect_to"], "http://127.0.0.1:3000/welcome");
    let otp = link["email_otp"].as_str().unwrap().to_owned();
    assert_eq!(otp.len(), 6);
    assert_eq!(
        link["hashed_token"],
        json!(sha224_hex(&app, &format!("neema@example.com{otp}")).await)
    );
    let action = url::Url::parse(link["action_link"].as_str().unwrap()).unwrap();
    assert_eq!(action.path(), "/auth/v1/verify");
    let query: std::collections::HashMap<_, _> = action.query_pairs().into_owned().collect();
    assert_eq!(query["token"], link["hashed_token"].as_str().unwrap());
    assert_eq!(query["type"], "signup");
    assert_eq!(query["redirect_to"], "http://127.0.0.1:3000/welcome");
    let body = json!({ "type": "signup", "email": "neema@example.com", "token": otp });
    let (status, session) = verify(&app, body.clone()).await;
    assert_eq!(status, 200, "{session}");
    assert!(session["user"]["email_confirmed_at"].is_string());
    let (status, again) = verify(&app, body).await;
    assert_eq!(
        (status, &again["code"]),
        (403, &json!("otp_expired")),
        "once only"
    );
    let (status, _) = password_login(
        &app,
        json!({ "email": "neema@example.com", "password": "Str0ng-pass!" }),
    )
    .await;
    assert_eq!(status, 200);

    // invite: a user with no password who confirms by the code.
    let (status, link) = generate(
        &app,
        json!({ "type": "invite", "email": "juma@example.com" }),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(
        link["redirect_to"], "http://127.0.0.1:3000",
        "the site by default"
    );
    let code = link["email_otp"].clone();
    let (status, _) = verify(
        &app,
        json!({ "type": "invite", "email": "juma@example.com", "token": code }),
    )
    .await;
    assert_eq!(status, 200);

    // magiclink for an existing user: a sign-in code, once.
    let (status, link) = generate(&app, json!({ "type": "magiclink", "email": CHEBET })).await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["id"], CHEBET_ID);
    let body = json!({ "type": "magiclink", "email": CHEBET, "token": link["email_otp"] });
    assert_eq!(verify(&app, body.clone()).await.0, 200);
    assert_eq!(verify(&app, body).await.0, 403);

    // magiclink for nobody signs them up.
    let (status, link) = generate(
        &app,
        json!({ "type": "magiclink", "email": "newcomer@example.com" }),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["verification_type"], "signup");
    assert_eq!(
        verify(
            &app,
            json!({ "type": "signup", "email": "newcomer@example.com", "token": link["email_otp"] })
        )
        .await
        .0,
        200
    );

    // recovery, then the password is changed with the session it gives.
    let (status, link) = generate(&app, json!({ "type": "recovery", "email": CHEBET })).await;
    assert_eq!(status, 200);
    let (status, session) = verify(
        &app,
        json!({ "type": "recovery", "email": CHEBET, "token": link["email_otp"] }),
    )
    .await;
    assert_eq!(status, 200, "{session}");

    // email_change_new: the code sent to the new address makes it the account's.
    let (status, link) = generate(
        &app,
        json!({ "type": "email_change_new", "email": CHEBET, "new_email": "chebet@example.org" }),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(link["new_email"], "chebet@example.org");
    let (status, session) = verify(
        &app,
        json!({ "type": "email_change", "email": "chebet@example.org", "token": link["email_otp"] }),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["email"], "chebet@example.org");

    // What GoTrue refuses.
    let refusals: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "type": "recovery", "email": "nobody@example.com" }),
            404,
            "user_not_found",
        ),
        (
            json!({ "type": "email_change_new", "email": "nobody@example.com", "new_email": "a@example.com" }),
            404,
            "user_not_found",
        ),
        (
            json!({ "type": "signup", "email": WANJIKU, "password": "Str0ng-pass!" }),
            422,
            "email_exists",
        ),
        (
            json!({ "type": "invite", "email": WANJIKU }),
            422,
            "email_exists",
        ),
        (
            json!({ "type": "signup", "email": "nopass@example.com" }),
            422,
            "validation_failed",
        ),
        (
            json!({ "type": "signup", "email": "weak@example.com", "password": "short" }),
            422,
            "weak_password",
        ),
        (
            json!({ "type": "email_change_new", "email": WANJIKU, "new_email": "chebet@example.org" }),
            422,
            "email_exists",
        ),
        (
            json!({ "type": "email_change_current", "email": WANJIKU, "new_email": "w@example.org" }),
            400,
            "validation_failed",
        ),
        (
            json!({ "type": "teleport", "email": WANJIKU }),
            400,
            "validation_failed",
        ),
        (json!({ "type": "magiclink" }), 400, "validation_failed"),
        (
            json!({ "type": "magiclink", "email": "not-an-email" }),
            400,
            "validation_failed",
        ),
    ];
    let users_before = count(&app, "select count(*) from auth.users").await;
    for (body, status, code) in refusals {
        let (got, answer) = generate(&app, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap_or_default()),
            (status, code),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        count(&app, "select count(*) from auth.users").await,
        users_before
    );
    // Nothing was sent: the service role delivers the links itself.
    assert_eq!(
        count(&app, "select count(*) from internal.outbox").await,
        outbox_before
    );
    assert!(
        count(
            &app,
            "select count(*) from public.audit_logs where action = 'admin.link_generated'"
        )
        .await
            >= 6
    );
    app.db.assert_gotrue_can_read().await;
}

/// The fragment of a redirect's `Location`, as pairs.
fn fragment(location: &str) -> std::collections::HashMap<String, String> {
    let (_, fragment) = location.split_once('#').expect("a fragment");
    url::form_urlencoded::parse(fragment.as_bytes())
        .into_owned()
        .collect()
}

/// Opens an action link as a browser does: no apikey, no redirect followed.
async fn open_link(app: &TestApp, action_link: &str) -> (u16, String) {
    let link = url::Url::parse(action_link).unwrap();
    let here = app.url(&format!("{}?{}", link.path(), link.query().unwrap()));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(here).send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

#[tokio::test]
async fn an_action_link_opened_in_a_browser_signs_in_once_and_a_token_hash_verifies_once() {
    let app = demo_app().await;
    let (status, link) = generate(
        &app,
        json!({ "type": "magiclink", "email": CHEBET, "redirect_to": "http://127.0.0.1:3000/home" }),
    )
    .await;
    assert_eq!(status, 200, "{link}");
    let action = link["action_link"].as_str().unwrap();
    let (status, location) = open_link(&app, action).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("http://127.0.0.1:3000/home#"),
        "{location}"
    );
    let session = fragment(&location);
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["type"], "magiclink");
    let (status, user) = whoami(&app, &session["access_token"]).await;
    assert_eq!((status, &user["id"]), (200, &json!(CHEBET_ID)));
    // Spent: the second opening lands on the error, in the fragment.
    let (status, location) = open_link(&app, action).await;
    assert_eq!(status, 303);
    let error = fragment(&location);
    assert_eq!(error["error"], "access_denied");
    assert_eq!(error["error_code"], "otp_expired");
    assert!(!location.contains("access_token"));

    // A redirect to another site falls back to the site.
    let (_, link) = generate(
        &app,
        json!({ "type": "recovery", "email": CHEBET, "redirect_to": "https://evil.example/steal" }),
    )
    .await;
    assert_eq!(link["redirect_to"], "http://127.0.0.1:3000");
    let (status, location) = open_link(&app, link["action_link"].as_str().unwrap()).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("http://127.0.0.1:3000#access_token="),
        "{location}"
    );

    // An expired link does not sign in.
    let (_, link) = generate(&app, json!({ "type": "magiclink", "email": CHEBET })).await;
    sqlx::query(
        "update auth.users set recovery_sent_at = now() - interval '2 hours' where id = $1::uuid",
    )
    .bind(CHEBET_ID)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let (_, location) = open_link(&app, link["action_link"].as_str().unwrap()).await;
    assert_eq!(fragment(&location)["error_code"], "otp_expired");

    // The email-change link carries the hash of the code with the new address.
    let (_, link) = generate(
        &app,
        json!({ "type": "email_change_new", "email": CHEBET, "new_email": "chebet@example.org" }),
    )
    .await;
    let action = url::Url::parse(link["action_link"].as_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = action.query_pairs().into_owned().collect();
    assert_eq!(query["type"], "email_change");
    let otp = link["email_otp"].as_str().unwrap();
    assert_eq!(
        query["token"],
        sha224_hex(&app, &format!("chebet@example.org{otp}")).await
    );
    let (status, location) = open_link(&app, action.as_str()).await;
    assert_eq!(status, 303);
    let session = fragment(&location);
    let (_, user) = whoami(&app, &session["access_token"]).await;
    assert_eq!(user["email"], "chebet@example.org");

    // supabase-js's verifyOtp({ token_hash, type }).
    let (_, link) = generate(
        &app,
        json!({ "type": "signup", "email": "hash@example.com", "password": "Str0ng-pass!" }),
    )
    .await;
    let body = json!({ "type": "signup", "token_hash": link["hashed_token"] });
    let (status, session) = verify(&app, body.clone()).await;
    assert_eq!(status, 200, "{session}");
    assert!(session["user"]["email_confirmed_at"].is_string());
    let (status, again) = verify(&app, body).await;
    assert_eq!((status, &again["code"]), (403, &json!("otp_expired")));
    let (status, wrong) = verify(
        &app,
        json!({ "type": "recovery", "token_hash": "0".repeat(56) }),
    )
    .await;
    assert_eq!((status, &wrong["code"]), (403, &json!("otp_expired")));
    let profile: Option<String> =
        sqlx::query_scalar("select email from public.users where id = $1::uuid")
            .bind(link["id"].as_str().unwrap())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(profile.as_deref(), Some("hash@example.com"));
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn a_code_sent_to_the_user_cannot_be_spent_by_its_hash_alone() {
    // An attacker who knows the victim's email has a recovery code sent to them, then tries
    // hashes of (email, guess), from as many addresses as they like: here, the right guess.
    let app = demo_app().await;
    let response = app
        .auth(Method::POST, "/recover")
        .json(&json!({ "email": CHEBET }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let code: String = sqlx::query_scalar(
        "select payload->>'code' from internal.outbox where topic = 'email' order by id desc limit 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let hash = sha224_hex(&app, &format!("{CHEBET}{code}")).await;
    let (status, body) = verify(&app, json!({ "type": "recovery", "token_hash": hash })).await;
    assert_eq!((status, &body["code"]), (403, &json!("otp_expired")));
    let (status, location) = open_link(
        &app,
        &format!("http://127.0.0.1:3000/auth/v1/verify?token={hash}&type=recovery"),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(fragment(&location)["error_code"], "otp_expired");
    assert_eq!(
        count(&app, "select count(*) from auth.sessions where user_id = '5eed0000-0000-4000-8000-000000000009'").await,
        0
    );
    // The owner, with the code and their address, is not affected.
    let (status, _) = verify(
        &app,
        json!({ "type": "recovery", "email": CHEBET, "token": code }),
    )
    .await;
    assert_eq!(status, 200);

    // A link's code spent with the address leaves the link dead too.
    let (_, link) = generate(&app, json!({ "type": "magiclink", "email": CHEBET })).await;
    let (status, _) = verify(
        &app,
        json!({ "type": "magiclink", "email": CHEBET, "token": link["email_otp"] }),
    )
    .await;
    assert_eq!(status, 200);
    let (_, location) = open_link(&app, link["action_link"].as_str().unwrap()).await;
    assert_eq!(fragment(&location)["error_code"], "otp_expired");
}

#[tokio::test]
async fn wrong_link_hashes_from_everyone_together_are_capped() {
    // A day-long window, so the test never straddles two.
    let mut config = TestApp::config();
    config.auth.rate_limits.window_seconds = 86_400;
    let app = TestApp::spawn_with(pesachama_testkit::TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let (_, link) = generate(&app, json!({ "type": "magiclink", "email": CHEBET })).await;
    // Guesses from many addresses: each address stays under its own limit, the total does not.
    for n in 0..100 {
        let guess = format!("{n:056x}");
        let (status, _) = verify(&app, json!({ "type": "magiclink", "token_hash": guess })).await;
        assert_eq!(status, 403);
        // A fresh client address for every guess, as a botnet has.
        sqlx::query("delete from internal.rate_limits where bucket like 'verify:ip:%'")
            .execute(&app.db.pool)
            .await
            .unwrap();
    }
    // Now even the right hash waits for the next window...
    let body = json!({ "type": "magiclink", "token_hash": link["hashed_token"] });
    let (status, answer) = verify(&app, body.clone()).await;
    assert_eq!(
        (status, &answer["code"]),
        (429, &json!("over_request_rate_limit"))
    );
    let (_, location) = open_link(&app, link["action_link"].as_str().unwrap()).await;
    assert_eq!(fragment(&location)["error_code"], "over_request_rate_limit");
    // ...while the owner with the code and the address signs in.
    let (status, _) = verify(
        &app,
        json!({ "type": "magiclink", "email": CHEBET, "token": link["email_otp"] }),
    )
    .await;
    assert_eq!(status, 200);
}
