//! Tokens that outlived their account (issue 29, item 5): a signed token used to work for its
//! whole hour after a logout, a suspension, a deletion or a revoked admin right, because only
//! its signature was checked and the admin flag was read from it. Each test keeps using such a
//! token as its holder (or whoever stole it) would, and is refused.

use std::sync::Arc;
use std::time::Duration;

use pesachama_api::storage_api::{DEFAULT_FILE_SIZE_LIMIT, StorageSettings};
use pesachama_storage::{FsStore, ObjectStore};
use pesachama_store::rls::{self, DbRole};
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

const WANJIKU: &str = "wanjiku.kamau@example.co.ke";
const WANJIKU_ID: &str = "5eed0000-0000-4000-8000-000000000001";
const CHEBET: &str = "chebet.langat@example.co.ke";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";

/// The demo data, with storage, and the session check as fresh as `ttl`.
async fn demo_app(ttl: Duration) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestApp::config();
    config.auth.session_check_ttl = ttl;
    config.storage = Some(StorageSettings {
        backend: ObjectStore::Fs(Arc::new(FsStore::new(dir.path()).unwrap())),
        file_size_limit: DEFAULT_FILE_SIZE_LIMIT,
    });
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    (app, dir)
}

/// Status and error code of an app route and of a storage route called with `token`.
async fn reach(app: &TestApp, token: &str) -> ((u16, Value), u16) {
    let (status, body) = app.call(Method::GET, token, "/chamas", None).await;
    let storage = app
        .client
        .get(app.url("/storage/v1/bucket"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let code = match &body["error"]["code"] {
        Value::Null => body["code"].clone(),
        code => code.clone(),
    };
    ((status, code), storage)
}

async fn sql(app: &TestApp, statement: &str, user: &str) {
    sqlx::query(statement)
        .bind(uuid::Uuid::parse_str(user).unwrap())
        .execute(&app.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_stops_working_once_its_session_is_logged_out() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    let token = app.demo_token(CHEBET).await;
    assert_eq!(reach(&app, &token).await, ((200, Value::Null), 200));

    let logout = app
        .auth(Method::POST, "/logout")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let ((status, code), storage) = reach(&app, &token).await;
    assert_eq!((status, code), (403, json!("session_not_found")));
    assert_eq!(storage, 400, "storage refuses it as InvalidJWT");
}

#[tokio::test]
async fn a_token_stops_working_once_an_administrator_suspends_its_user() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    sql(
        &app,
        "select internal.set_platform_admin($1, true, null)",
        WANJIKU_ID,
    )
    .await;
    let admin = app.demo_token(WANJIKU).await;
    let token = app.demo_token(CHEBET).await;
    assert_eq!(reach(&app, &token).await.0.0, 200);

    let (status, body) = app
        .call(
            Method::POST,
            &admin,
            &format!("/admin/users/{CHEBET_ID}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ((status, _), storage) = reach(&app, &token).await;
    assert_eq!((status, storage), (403, 400));
}

#[tokio::test]
async fn a_ban_set_in_the_database_refuses_the_token_even_with_its_session_kept() {
    // What Supabase Auth's admin API does: `banned_until` set, sessions left in place.
    let (app, _dir) = demo_app(Duration::ZERO).await;
    let token = app.demo_token(CHEBET).await;
    assert_eq!(reach(&app, &token).await.0.0, 200);
    sql(
        &app,
        "update auth.users set banned_until = now() + interval '1 day' where id = $1",
        CHEBET_ID,
    )
    .await;
    assert_eq!(reach(&app, &token).await.0, (403, json!("user_banned")));
}

#[tokio::test]
async fn a_token_stops_working_once_its_user_is_deleted() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    let token = app.demo_token(CHEBET).await;
    assert_eq!(reach(&app, &token).await.0.0, 200);
    sql(
        &app,
        "update auth.users set deleted_at = now() where id = $1",
        CHEBET_ID,
    )
    .await;
    assert_eq!(reach(&app, &token).await.0, (403, json!("user_not_found")));
}

#[tokio::test]
async fn a_revoked_administrator_loses_the_admin_routes_and_the_data_api_at_once() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    sql(
        &app,
        "select internal.set_platform_admin($1, true, null)",
        WANJIKU_ID,
    )
    .await;
    let admin = app.demo_token(WANJIKU).await;
    let (status, _) = app.call(Method::GET, &admin, "/admin/users", None).await;
    assert_eq!(status, 200);
    assert!(data_api_admin(&app, &admin).await, "the Data API agrees");

    sql(
        &app,
        "select internal.set_platform_admin($1, false, null)",
        WANJIKU_ID,
    )
    .await;
    let (status, body) = app.call(Method::GET, &admin, "/admin/users", None).await;
    assert_eq!(status, 403, "the token still says admin: {body}");
    assert!(
        !data_api_admin(&app, &admin).await,
        "PostgREST hands RLS the token's claims: the database decides anyway"
    );
    // Still a member: the rest of the app works.
    let (status, _) = app.call(Method::GET, &admin, "/chamas", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_logged_out_administrator_token_is_no_admin_in_the_data_api() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    sql(
        &app,
        "select internal.set_platform_admin($1, true, null)",
        WANJIKU_ID,
    )
    .await;
    let admin = app.demo_token(WANJIKU).await;
    assert!(data_api_admin(&app, &admin).await);
    let logout = app
        .auth(Method::POST, "/logout")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(!data_api_admin(&app, &admin).await);
}

#[tokio::test]
async fn a_user_token_without_a_session_is_refused() {
    let (app, _dir) = demo_app(Duration::ZERO).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": "authenticated", "role": "authenticated", "sub": CHEBET_ID, "email": "", "phone": "",
        "iat": now, "exp": now + 600, "iss": "http://127.0.0.1:3000/auth/v1", "aal": "aal1",
        "is_anonymous": false, "app_metadata": {}, "user_metadata": {},
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(pesachama_testkit::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        reach(&app, &token).await.0,
        (403, json!("session_not_found"))
    );
}

#[tokio::test]
async fn with_the_default_cache_a_ban_bites_within_its_ttl() {
    // A ban made elsewhere (another instance, Supabase Auth): this instance may have the
    // session cached as live, for one TTL at most.
    let ttl = Duration::from_millis(500);
    let (app, _dir) = demo_app(ttl).await;
    let token = app.demo_token(CHEBET).await;
    assert_eq!(reach(&app, &token).await.0.0, 200);
    sql(
        &app,
        "update auth.users set banned_until = now() + interval '1 day' where id = $1",
        CHEBET_ID,
    )
    .await;
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(reach(&app, &token).await.0, (403, json!("user_banned")));
}

/// `public.is_platform_admin()` as the Data API would run it for `token`: role
/// `authenticated` and the token's claims as signed.
async fn data_api_admin(app: &TestApp, token: &str) -> bool {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let mut tx = rls::begin_as(&app.db.pool, DbRole::Authenticated, &claims)
        .await
        .unwrap();
    let admin: bool = sqlx::query_scalar("select public.is_platform_admin()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    admin
}

#[tokio::test]
#[ignore = "a benchmark: cargo nextest run --run-ignored only ... bench_"]
async fn bench_session_check_cost() {
    for ttl in [Duration::ZERO, Duration::from_secs(5)] {
        let (app, _dir) = demo_app(ttl).await;
        let token = app.demo_token(CHEBET).await;
        for _ in 0..50 {
            app.call(Method::GET, &token, "/notifications", None).await;
        }
        let n = 1000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let (status, _) = app.call(Method::GET, &token, "/notifications", None).await;
            assert_eq!(status, 200);
        }
        let per = start.elapsed() / n;
        eprintln!("ttl {ttl:?}: {per:?} per GET /notifications");
    }
}
