//! `/auth/v1` over real HTTP on a real database, with the request and answer shapes
//! supabase-js uses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::{TEST_JWT_SECRET, TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "tembo-na-twiga-42";

async fn signup(app: &TestApp, body: Value) -> reqwest::Response {
    app.auth(Method::POST, "/signup")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn password_login(app: &TestApp, body: Value) -> reqwest::Response {
    app.auth(Method::POST, "/token?grant_type=password")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.auth(Method::POST, "/token?grant_type=refresh_token")
        .json(&json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

fn claims(access_token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["authenticated"]);
    jsonwebtoken::decode::<Value>(
        access_token,
        &jsonwebtoken::DecodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims
}

#[tokio::test]
async fn signup_with_email_answers_a_session_and_creates_the_profile() {
    let app = TestApp::spawn().await;
    let response = signup(
        &app,
        json!({ "email": "Wanjiku@Example.co.ke", "password": PASSWORD, "data": { "first_name": "Wanjiku", "last_name": "Kamau" } }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-supabase-api-version"], "2024-01-01");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 20);
    let user = &body["user"];
    assert_eq!(user["email"], "wanjiku@example.co.ke");
    assert_eq!(user["aud"], "authenticated");
    assert_eq!(user["user_metadata"]["first_name"], "Wanjiku");
    assert_eq!(user["identities"][0]["provider"], "email");
    assert!(
        user["email_confirmed_at"].is_string(),
        "autoconfirm is on by default"
    );

    let id: uuid::Uuid = user["id"].as_str().unwrap().parse().unwrap();
    let (first, email): (String, String) =
        sqlx::query_as("select first_name, email from public.users where id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (first.as_str(), email.as_str()),
        ("Wanjiku", "wanjiku@example.co.ke")
    );
    let audited = count(
        &app.db,
        "select count(*) from public.audit_logs where action = 'auth.signup'",
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn access_tokens_carry_exactly_supabases_claims() {
    let app = TestApp::spawn().await;
    let body: Value = signup(&app, json!({ "phone": "0712345678", "password": PASSWORD }))
        .await
        .json()
        .await
        .unwrap();
    let claims = claims(body["access_token"].as_str().unwrap());
    for key in [
        "sub",
        "aud",
        "exp",
        "iat",
        "iss",
        "email",
        "phone",
        "role",
        "aal",
        "amr",
        "session_id",
        "is_anonymous",
        "app_metadata",
        "user_metadata",
    ] {
        assert!(claims.get(key).is_some(), "claim {key} missing: {claims}");
    }
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(
        claims["phone"], "254712345678",
        "GoTrue's phone form, without the plus"
    );
    assert_eq!(claims["amr"][0]["method"], "password");
    assert_eq!(claims["app_metadata"]["provider"], "phone");
    assert_eq!(
        claims["iss"],
        format!("{}/auth/v1", TestApp::config().auth.site_url)
    );
}

#[tokio::test]
async fn a_signed_up_user_can_never_obtain_another_role() {
    let app = TestApp::spawn().await;
    let body: Value = signup(
        &app,
        json!({ "email": "mallory@example.com", "password": PASSWORD, "data": { "role": "service_role", "platform_role": "admin" } }),
    )
    .await
    .json()
    .await
    .unwrap();
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["role"], "authenticated");
    assert!(
        claims["app_metadata"].get("platform_role").is_none(),
        "user data never reaches app_metadata"
    );
}

#[tokio::test]
async fn signing_up_twice_is_refused_and_writes_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(
        signup(
            &app,
            json!({ "email": "amina@example.com", "password": PASSWORD })
        )
        .await
        .status(),
        200
    );
    let again = signup(
        &app,
        json!({ "email": "AMINA@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(again.status(), 422);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["code"], "user_already_exists");
    assert_eq!(count(&app.db, "select count(*) from auth.users").await, 1);
}

#[tokio::test]
async fn bad_sign_up_input_gets_gotrues_codes_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({ "email": "amina@example.com", "password": "short" }),
            422,
            "weak_password",
        ),
        (
            json!({ "email": "amina@example.com", "password": "password123" }),
            422,
            "weak_password",
        ),
        (
            json!({ "email": "jane@", "password": PASSWORD }),
            400,
            "validation_failed",
        ),
        (
            json!({ "phone": "+255712345678", "password": PASSWORD }),
            400,
            "validation_failed",
        ),
        (
            json!({ "phone": "0202345678", "password": PASSWORD }),
            400,
            "validation_failed",
        ),
        // Neither email nor phone: supabase-js's signInAnonymously(), off as in GoTrue.
        (
            json!({ "password": PASSWORD }),
            422,
            "anonymous_provider_disabled",
        ),
        (
            json!({ "data": {}, "gotrue_meta_security": {} }),
            422,
            "anonymous_provider_disabled",
        ),
        (
            json!({ "email": "amina@example.com" }),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let response = signup(&app, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{body}: {answer}");
        assert!(answer["message"].is_string());
    }
    let malformed = app
        .auth(Method::POST, "/signup")
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["code"], "bad_json");
    // A route GoTrue has and we do not answers in GoTrue's envelope, which clients parse.
    let unknown = app
        .auth(Method::POST, "/factors")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], "not_found");
    assert_eq!(count(&app.db, "select count(*) from auth.users").await, 0);
    assert_eq!(count(&app.db, "select count(*) from public.users").await, 0);
}

#[tokio::test]
async fn clients_without_the_api_version_header_get_the_older_error_shape() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/auth/v1/token?grant_type=password"))
        .header("apikey", TestApp::api_key("anon"))
        .json(&json!({ "email": "nobody@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials" })
    );
}

#[tokio::test]
async fn the_apikey_header_is_required_and_checked() {
    let app = TestApp::spawn().await;
    let missing = app
        .client
        .get(app.url("/auth/v1/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let forged = app
        .client
        .get(app.url("/auth/v1/settings"))
        .header(
            "apikey",
            pesachama_api::keys::api_key(
                b"not-the-project-secret-but-long-enough",
                "local",
                "anon",
                0,
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let ok = app.auth(Method::GET, "/settings").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let settings: Value = ok.json().await.unwrap();
    assert_eq!(settings["mailer_autoconfirm"], true);
    assert_eq!(
        app.auth(Method::GET, "/health")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let jwks: Value = app
        .auth(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"], json!([]));
}

#[tokio::test]
async fn password_login_by_email_or_phone_and_failures_are_audited() {
    let app = TestApp::spawn().await;
    signup(
        &app,
        json!({ "phone": "+254712345678", "password": PASSWORD }),
    )
    .await;
    let by_phone = password_login(
        &app,
        json!({ "phone": "0712 345 678", "password": PASSWORD }),
    )
    .await;
    assert_eq!(by_phone.status(), 200);

    let wrong = password_login(
        &app,
        json!({ "phone": "0712345678", "password": "not-the-password" }),
    )
    .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["code"],
        "invalid_credentials"
    );
    let unknown = password_login(
        &app,
        json!({ "email": "ghost@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["code"],
        "invalid_credentials"
    );

    let failures = count(
        &app.db,
        "select count(*) from public.audit_logs where action = 'auth.login_failed'",
    )
    .await;
    assert_eq!(failures, 2);
    let leaked = count(
        &app.db,
        "select count(*) from public.audit_logs where metadata::text like '%not-the-password%' or metadata::text like '%0712345678%'",
    )
    .await;
    assert_eq!(
        leaked, 0,
        "no secrets and no full phone numbers in the audit trail"
    );
}

#[tokio::test]
async fn a_user_created_by_the_founding_plans_sql_logs_in() {
    let app = TestApp::spawn().await;
    // As it must be written for Supabase, whose `auth.users.id` has no default.
    sqlx::query(
        "insert into auth.users (id, email, encrypted_password, email_confirmed_at, created_at)
         values (gen_random_uuid(), 'admin@pesachama.local', extensions.crypt('password123', extensions.gen_salt('bf')), now(), now())",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let response = password_login(
        &app,
        json!({ "email": "admin@pesachama.local", "password": "password123" }),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let profiles = count(
        &app.db,
        "select count(*) from public.users where email = 'admin@pesachama.local'",
    )
    .await;
    assert_eq!(profiles, 1, "the profile is made at first sign-in");
}

#[tokio::test]
async fn refresh_tokens_rotate_tolerate_a_lost_answer_and_revoke_the_family_on_reuse() {
    let app = TestApp::spawn().await;
    let first: Value = signup(
        &app,
        json!({ "email": "otieno@example.com", "password": PASSWORD }),
    )
    .await
    .json()
    .await
    .unwrap();
    let parent = first["refresh_token"].as_str().unwrap().to_owned();

    let rotated: Value = refresh(&app, &parent).await.json().await.unwrap();
    let child = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(child, parent);

    // The client lost that answer and presents the parent again at once: it gets the child.
    let again: Value = refresh(&app, &parent).await.json().await.unwrap();
    assert_eq!(again["refresh_token"], child.as_str());

    // Past the reuse interval, reusing the parent means it leaked: the session dies.
    sqlx::query(
        "update auth.refresh_tokens set updated_at = now() - interval '1 minute' where token = $1",
    )
    .bind(&parent)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let reused = refresh(&app, &parent).await;
    assert_eq!(reused.status(), 400);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["code"],
        "refresh_token_already_used"
    );
    let child_after = refresh(&app, &child).await;
    assert_eq!(child_after.status(), 400, "the whole family is revoked");

    let unknown = refresh(&app, "no-such-token").await;
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["code"],
        "refresh_token_not_found"
    );
}

#[tokio::test]
async fn get_and_update_the_user_then_log_out_everywhere() {
    let app = TestApp::spawn().await;
    let session: Value = signup(
        &app,
        json!({ "email": "achieng@example.com", "password": PASSWORD }),
    )
    .await
    .json()
    .await
    .unwrap();
    let token = session["access_token"].as_str().unwrap();

    let no_token = app.auth(Method::GET, "/user").send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(
        no_token.json::<Value>().await.unwrap()["code"],
        "no_authorization"
    );
    let bad_token = app
        .auth(Method::GET, "/user")
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 403);
    assert_eq!(bad_token.json::<Value>().await.unwrap()["code"], "bad_jwt");

    let me: Value = app
        .auth(Method::GET, "/user")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "achieng@example.com");

    let updated = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&json!({ "data": { "language": "sw" }, "password": "simba-wa-mara-2026" }))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    assert_eq!(
        updated.json::<Value>().await.unwrap()["user_metadata"]["language"],
        "sw"
    );
    assert_eq!(
        password_login(
            &app,
            json!({ "email": "achieng@example.com", "password": "simba-wa-mara-2026" })
        )
        .await
        .status(),
        200
    );
    let changes = count(
        &app.db,
        "select count(*) from public.audit_logs where action = 'auth.password_changed'",
    )
    .await;
    assert_eq!(changes, 1);

    let out = app
        .auth(Method::POST, "/logout")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = app
        .auth(Method::GET, "/user")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 403);
    assert_eq!(
        after.json::<Value>().await.unwrap()["code"],
        "session_not_found"
    );
    assert_eq!(
        count(&app.db, "select count(*) from auth.sessions").await,
        0,
        "global logout ends every session"
    );
}

#[tokio::test]
async fn recovery_codes_go_through_the_outbox_and_verify_once() {
    let app = TestApp::spawn().await;
    signup(
        &app,
        json!({ "email": "baraka@example.com", "password": PASSWORD }),
    )
    .await;
    let unknown = app
        .auth(Method::POST, "/recover")
        .json(&json!({ "email": "nobody@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        200,
        "no hint whether an address has an account"
    );
    let known = app
        .auth(Method::POST, "/recover")
        .json(&json!({ "email": "baraka@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(known.status(), 200);

    let payload: Value =
        sqlx::query_scalar("select payload from internal.outbox where topic = 'email'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(payload["to"], "baraka@example.com");
    assert_eq!(payload["template"], "recovery");
    let code = payload["code"].as_str().unwrap();

    let wrong = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "recovery", "email": "baraka@example.com", "token": "000000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(wrong.json::<Value>().await.unwrap()["code"], "otp_expired");

    let verify = || {
        app.auth(Method::POST, "/verify")
            .json(&json!({ "type": "recovery", "email": "baraka@example.com", "token": code }))
            .send()
    };
    let session = verify().await.unwrap();
    assert_eq!(session.status(), 200);
    assert!(session.json::<Value>().await.unwrap()["access_token"].is_string());
    assert_eq!(verify().await.unwrap().status(), 403, "a code works once");
}

#[tokio::test]
async fn phone_otp_sends_an_sms_through_the_outbox_and_signs_in() {
    let app = TestApp::spawn().await;
    let sent = app
        .auth(Method::POST, "/otp")
        .json(&json!({ "phone": "0798765432" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let payload: Value =
        sqlx::query_scalar("select payload from internal.outbox where topic = 'sms'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(payload["to"], "+254798765432");
    let message = payload["message"].as_str().unwrap();
    let code: String = message
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect();
    let session = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "sms", "phone": "+254798765432", "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let body: Value = session.json().await.unwrap();
    assert!(body["user"]["phone_confirmed_at"].is_string());
}

#[tokio::test]
async fn sign_ups_over_the_rate_limit_get_429() {
    let mut config = TestApp::config();
    config.auth.rate_limits.signup = 2;
    // Windows are aligned to the clock: a long one keeps the three sign-ups in the same window
    // however slowly a busy machine runs them.
    config.auth.rate_limits.window_seconds = 366 * 24 * 3600;
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    for i in 0..2 {
        let response = signup(
            &app,
            json!({ "email": format!("user{i}@example.com"), "password": PASSWORD }),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let limited = signup(
        &app,
        json!({ "email": "user9@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.json::<Value>().await.unwrap()["code"],
        "over_request_rate_limit"
    );
    assert_eq!(count(&app.db, "select count(*) from auth.users").await, 2);
}

#[tokio::test]
async fn register_and_login_answer_the_token_response_with_the_apis_errors() {
    let app = TestApp::spawn().await;
    let registered = app
        .client
        .post(app.url("/auth/register"))
        .json(&json!({ "phone": "0711222333", "password": PASSWORD, "first_name": "Kiprop", "last_name": "Cheruiyot", "language": "sw" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let language: String =
        sqlx::query_scalar("select language from public.users where phone = '+254711222333'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(language, "sw");

    let login = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({ "phone": "+254711222333", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.json::<Value>().await.unwrap()["access_token"].is_string());

    let bad = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({ "phone": "+254711222333", "password": "wrong-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_credentials");
}

/// Supabase Auth reads the rows we write: sign-ups by email and phone, a code sign-up, a
/// refresh, a recovery, a change of phone, and the demo data leave no NULL where GoTrue's Go
/// models cannot take one (run on the Supabase-shaped database too, by scripts/test-supabase).
#[tokio::test]
async fn every_auth_row_we_write_is_one_supabase_auth_can_read() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let by_email: Value = signup(
        &app,
        json!({ "email": "row@example.com", "password": "a-long-password" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let by_phone: Value = signup(
        &app,
        json!({ "phone": "0799000444", "password": "a-long-password" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let otp = app
        .auth(Method::POST, "/otp")
        .json(&json!({ "phone": "0799000555" }))
        .send()
        .await
        .unwrap();
    assert_eq!(otp.status(), 200);
    let refreshed = refresh(&app, by_email["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);
    let recover = app
        .auth(Method::POST, "/recover")
        .json(&json!({ "email": "row@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(recover.status(), 200);
    let changed = app
        .auth(Method::PUT, "/user")
        .bearer_auth(by_phone["access_token"].as_str().unwrap())
        .json(&json!({ "phone": "0799000666", "data": { "first_name": "Row" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    app.db.assert_gotrue_can_read().await;
}

/// A user Supabase Auth created itself (its columns, its identities row; no call to our API)
/// uses the app on their first request with a token Supabase signed: their profile, their
/// invitation by phone, a chama of their own.
#[tokio::test]
async fn a_user_created_by_supabase_auth_uses_everything_on_the_first_request() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let id = uuid::Uuid::new_v4();
    // As GoTrue's phone sign-up and verify leave it: digits without `+`, confirmed, '' tokens.
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, phone, phone_confirmed_at,
             encrypted_password, raw_app_meta_data, raw_user_meta_data, confirmation_token,
             recovery_token, email_change_token_new, email_change, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated',
             '254799000777', now(), '', '{\"provider\": \"phone\", \"providers\": [\"phone\"]}',
             '{\"first_name\": \"Zawadi\"}', '', '', '', '', now(), now())",
    )
    .bind(id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into auth.identities (id, user_id, provider, provider_id, identity_data,
             last_sign_in_at, created_at, updated_at)
         values (gen_random_uuid(), $1, 'phone', $1::text,
             jsonb_build_object('sub', $1::text, 'phone', '254799000777', 'phone_verified', true),
             now(), now(), now())",
    )
    .bind(id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    app.db.assert_gotrue_can_read().await;
    // An official invites her number before she ever calls us.
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let (status, invitation) = app
        .call(
            Method::POST,
            &secretary,
            "/chamas/c4a3a000-0000-4000-8000-000000000001/invitations",
            Some(json!({ "phone": "0799000777" })),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");

    // The session Supabase Auth opened when she verified her phone.
    let session = uuid::Uuid::new_v4();
    sqlx::query(
        "insert into auth.sessions (id, user_id, created_at, updated_at, aal)
         values ($1, $2, now(), now(), 'aal1')",
    )
    .bind(session)
    .bind(id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    app.db.assert_gotrue_can_read().await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": "authenticated", "role": "authenticated", "sub": id, "phone": "254799000777",
        "email": "", "iat": now, "exp": now + 600, "iss": "http://127.0.0.1:3000/auth/v1",
        "session_id": session, "aal": "aal1", "is_anonymous": false,
        "app_metadata": { "provider": "phone", "providers": ["phone"] },
        "user_metadata": { "first_name": "Zawadi" },
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(pesachama_testkit::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let (status, mine) = app.call(Method::GET, &token, "/invitations", None).await;
    assert_eq!(
        (status, mine.as_array().map(Vec::len)),
        (200, Some(1)),
        "{mine}"
    );
    let (status, chama) = app
        .call(
            Method::POST,
            &token,
            "/chamas",
            Some(json!({ "name": "Zawadi Traders", "contribution_amount": 50000 })),
        )
        .await;
    assert_eq!(status, 201, "{chama}");
    let (status, accepted) = app
        .call(
            Method::POST,
            &token,
            &format!("/invitations/{}/accept", invitation["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    let (status, profile) = app
        .call(Method::GET, &token, &format!("/users/{id}"), None)
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["phone"], "+254799000777", "{profile}");
    app.db.assert_ledger_balanced().await;
}

/// An app whose password changes need the reauthentication nonce (GoTrue's
/// `SECURITY_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION`).
async fn secure_password_app() -> TestApp {
    let mut config = TestApp::config();
    config.auth.update_password_require_reauthentication = true;
    TestApp::spawn_with(TestDb::new().await, config).await
}

/// Signs up (confirmed at once in tests) and answers the access token.
async fn signed_up(app: &TestApp, body: Value) -> String {
    let session: Value = signup(app, body).await.json().await.unwrap();
    session["access_token"].as_str().unwrap().to_owned()
}

/// Makes every session of the user with this email or phone a day and an hour old.
async fn age_sessions(app: &TestApp, token: &str) {
    let user = claims(token)["sub"].as_str().unwrap().to_owned();
    sqlx::query(
        "update auth.sessions set created_at = now() - interval '25 hours' where user_id = $1::uuid",
    )
    .bind(user)
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn reauthenticate(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .auth(Method::GET, "/reauthenticate")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn change_password(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The code of the last reauthentication message to `to` (an email, or a phone in E.164).
async fn last_nonce(app: &TestApp, to: &str) -> String {
    let payload: Value = sqlx::query_scalar(
        "select payload from internal.outbox where payload->>'to' = $1 order by id desc limit 1",
    )
    .bind(to)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    if let Some(code) = payload["code"].as_str() {
        assert_eq!(payload["template"], "reauthentication");
        return code.to_owned();
    }
    let message = payload["message"].as_str().unwrap();
    assert!(message.contains("to change your password"), "{message}");
    message
        .split_whitespace()
        .find_map(|word| {
            let digits = word.trim_end_matches('.');
            (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.to_owned())
        })
        .unwrap()
}

#[tokio::test]
async fn a_stale_session_changes_the_password_only_with_a_fresh_nonce_used_once() {
    let app = secure_password_app().await;
    let email = "neema@example.com";
    let token = signed_up(&app, json!({ "email": email, "password": PASSWORD })).await;

    // A session opened within the last day needs no nonce, as with GoTrue.
    let (status, body) =
        change_password(&app, &token, json!({ "password": "second-password-1" })).await;
    assert_eq!(status, 200, "{body}");

    age_sessions(&app, &token).await;
    let (status, body) =
        change_password(&app, &token, json!({ "password": "third-password-2" })).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("reauthentication_needed")),
        "{body}"
    );
    // A nonce nobody sent.
    let (status, body) = change_password(
        &app,
        &token,
        json!({ "password": "third-password-2", "nonce": "123456" }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("reauthentication_not_valid")),
        "{body}"
    );

    let (status, body) = reauthenticate(&app, &token).await;
    assert_eq!((status, body), (200, json!({})));
    let nonce = last_nonce(&app, email).await;
    // Kept as GoTrue keeps it: SHA-224 of the address and the code, never the code.
    let (stored, expected): (String, String) = sqlx::query_as(
        "select reauthentication_token, encode(sha224(convert_to(email || $2, 'UTF8')), 'hex')
           from auth.users where email = $1 and reauthentication_sent_at is not null",
    )
    .bind(email)
    .bind(&nonce)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, expected);
    app.db.assert_gotrue_can_read().await;
    // One a minute.
    let (status, body) = reauthenticate(&app, &token).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("over_email_send_rate_limit")),
        "{body}"
    );

    let wrong = format!("{:06}", (nonce.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (status, body) = change_password(
        &app,
        &token,
        json!({ "password": "third-password-2", "nonce": wrong }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("reauthentication_not_valid")),
        "{body}"
    );
    assert_eq!(
        password_login(
            &app,
            json!({ "email": email, "password": "second-password-1" })
        )
        .await
        .status(),
        200,
        "a refused change leaves the password"
    );

    let (status, body) = change_password(
        &app,
        &token,
        json!({ "password": "third-password-2", "nonce": nonce }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        password_login(
            &app,
            json!({ "email": email, "password": "third-password-2" })
        )
        .await
        .status(),
        200
    );
    // Spent: '' as GoTrue leaves it, not NULL, and refused the second time.
    let (status, body) = change_password(
        &app,
        &token,
        json!({ "password": "fourth-password-3", "nonce": nonce }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("reauthentication_not_valid")),
        "{body}"
    );
    let spent: Option<String> =
        sqlx::query_scalar("select reauthentication_token from auth.users where email = $1")
            .bind(email)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(spent.as_deref(), Some(""));
    app.db.assert_gotrue_can_read().await;

    // A nonce older than the code lifetime is refused.
    sqlx::query("update auth.users set reauthentication_sent_at = now() - interval '2 hours' where email = $1")
        .bind(email)
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(reauthenticate(&app, &token).await.0, 200);
    let old = last_nonce(&app, email).await;
    sqlx::query("update auth.users set reauthentication_sent_at = now() - interval '2 hours' where email = $1")
        .bind(email)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, body) = change_password(
        &app,
        &token,
        json!({ "password": "fourth-password-3", "nonce": old }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("reauthentication_not_valid")),
        "{body}"
    );
}

#[tokio::test]
async fn a_nonce_is_good_only_for_the_account_it_was_sent_to() {
    let app = secure_password_app().await;
    let amina = signed_up(
        &app,
        json!({ "email": "amina@example.com", "password": PASSWORD }),
    )
    .await;
    let baraka = signed_up(
        &app,
        json!({ "email": "baraka@example.com", "password": PASSWORD }),
    )
    .await;
    let chege = signed_up(&app, json!({ "phone": "0799000321", "password": PASSWORD })).await;
    for token in [&amina, &baraka, &chege] {
        age_sessions(&app, token).await;
    }
    assert_eq!(reauthenticate(&app, &amina).await.0, 200);
    assert_eq!(reauthenticate(&app, &baraka).await.0, 200);
    let aminas = last_nonce(&app, "amina@example.com").await;
    let barakas = last_nonce(&app, "baraka@example.com").await;

    // Baraka, who has a nonce of his own, and Chege, who asked for none, present Amina's.
    if aminas != barakas {
        let (status, body) = change_password(
            &app,
            &baraka,
            json!({ "password": "taken-over-1", "nonce": aminas }),
        )
        .await;
        assert_eq!(
            (status, &body["code"]),
            (422, &json!("reauthentication_not_valid")),
            "{body}"
        );
    }
    let (status, body) = change_password(
        &app,
        &chege,
        json!({ "password": "taken-over-1", "nonce": aminas }),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("reauthentication_not_valid")),
        "{body}"
    );
    // Amina's still works for her.
    let (status, body) = change_password(
        &app,
        &amina,
        json!({ "password": "aminas-new-one", "nonce": aminas }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A phone-only account gets its nonce by SMS, salted with the number as GoTrue keeps it.
    let (status, body) = reauthenticate(&app, &chege).await;
    assert_eq!((status, body), (200, json!({})));
    let nonce = last_nonce(&app, "+254799000321").await;
    let (status, body) = reauthenticate(&app, &chege).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("over_sms_send_rate_limit")),
        "{body}"
    );
    let matches: bool = sqlx::query_scalar(
        "select reauthentication_token = encode(sha224(convert_to('254799000321' || $1, 'UTF8')), 'hex')
           from auth.users where phone = '254799000321'",
    )
    .bind(&nonce)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(matches);
    let (status, body) = change_password(
        &app,
        &chege,
        json!({ "password": "cheges-new-one", "nonce": nonce }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn reauthenticate_needs_a_signed_in_user_with_a_confirmed_address() {
    // GoTrue's default: no nonce is needed, however old the session.
    let app = TestApp::spawn().await;
    let token = signed_up(
        &app,
        json!({ "email": "zuri@example.com", "password": PASSWORD }),
    )
    .await;
    age_sessions(&app, &token).await;
    let (status, body) =
        change_password(&app, &token, json!({ "password": "no-nonce-needed" })).await;
    assert_eq!(status, 200, "{body}");

    let response = app
        .auth(Method::GET, "/reauthenticate")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let anon = TestApp::api_key("anon");
    let response = app
        .auth(Method::GET, "/reauthenticate")
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    sqlx::query("update auth.users set email_confirmed_at = null where email = 'zuri@example.com'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, body) = reauthenticate(&app, &token).await;
    assert_eq!(
        (status, &body["code"]),
        (422, &json!("email_not_confirmed")),
        "{body}"
    );
    assert_eq!(
        count(
            &app.db,
            "select count(*) from internal.outbox where payload->>'template' = 'reauthentication'"
        )
        .await,
        0
    );
    // A logged-out session asks for nothing.
    sqlx::query(
        "update auth.users set email_confirmed_at = now() where email = 'zuri@example.com'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let logout = app
        .auth(Method::POST, "/logout")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let (status, body) = reauthenticate(&app, &token).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &json!("session_not_found")),
        "{body}"
    );
}

/// supabase-js turns `weak_password.reasons` into `AuthWeakPasswordError.reasons` (found by
/// tests/supabase-js: the reasons came back empty).
#[tokio::test]
async fn weak_passwords_carry_gotrues_reasons_in_both_error_shapes() {
    let app = TestApp::spawn().await;
    let cases = [("short", "length"), ("password123", "pwned")];
    for (password, reason) in cases {
        let response = signup(
            &app,
            json!({ "email": "amina@example.com", "password": password }),
        )
        .await;
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "weak_password", "{body}");
        assert_eq!(
            body["weak_password"],
            json!({ "reasons": [reason] }),
            "{body}"
        );
    }

    let older = app
        .client
        .post(app.url("/auth/v1/signup"))
        .header("apikey", TestApp::api_key("anon"))
        .json(&json!({ "email": "amina@example.com", "password": "short" }))
        .send()
        .await
        .unwrap();
    assert_eq!(older.status(), 422);
    let body: Value = older.json().await.unwrap();
    assert_eq!(body["error_code"], "weak_password", "{body}");
    assert_eq!(
        body["weak_password"],
        json!({ "reasons": ["length"] }),
        "{body}"
    );

    let session: Value = signup(
        &app,
        json!({ "email": "amina@example.com", "password": PASSWORD }),
    )
    .await
    .json()
    .await
    .unwrap();
    let update = app
        .auth(Method::PUT, "/user")
        .bearer_auth(session["access_token"].as_str().unwrap())
        .json(&json!({ "password": "short" }))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), 422);
    let body: Value = update.json().await.unwrap();
    assert_eq!(
        body["weak_password"],
        json!({ "reasons": ["length"] }),
        "{body}"
    );

    // any other error has no such field
    let taken = signup(
        &app,
        json!({ "email": "amina@example.com", "password": PASSWORD }),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(taken["code"], "user_already_exists");
    assert!(taken.get("weak_password").is_none(), "{taken}");
}
