//! Identity beyond passwords: PINs, tokens signed by a Supabase project's published keys,
//! Google sign-in against a local JWKS, and RLS deciding what a signed-in user sees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pesachama_api::AppState;
use pesachama_testkit::fake::FakeService;
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "tembo-na-twiga-42";
const GOOGLE_CLIENT: &str = "pesachama-test.apps.googleusercontent.com";

struct Session {
    user_id: Uuid,
    access_token: String,
    session_id: String,
}

async fn sign_up(app: &TestApp, email: &str) -> Session {
    let response = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    let claims = unverified_claims(&access_token);
    Session {
        user_id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
        session_id: claims["session_id"].as_str().unwrap().to_owned(),
        access_token,
    }
}

fn unverified_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A P-256 key pair: the private key as PEM and the public key as a JWK.
fn es256_key(seed: u8, kid: &str) -> (EncodingKey, Value) {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::EncodePrivateKey as _;
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let pem = secret.to_pkcs8_pem(Default::default()).unwrap();
    let point = secret.public_key().to_encoded_point(false);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())
    });
    (EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(), jwk)
}

fn sign_es256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn put_pin(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url("/auth/pin"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn verify_pin(app: &TestApp, token: &str, pin: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/pin/verify"))
        .bearer_auth(token)
        .json(&json!({ "pin": pin }))
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test]
async fn a_pin_is_set_checked_changed_only_with_the_old_one_and_locks_after_three_wrong_tries() {
    let app = TestApp::spawn().await;
    let user = sign_up(&app, "nafula@example.co.ke").await;
    let token = &user.access_token;

    let (status, error) = error_code(verify_pin(&app, token, "2468").await).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("pin_not_set")));

    for bad in ["123", "12345", "12a4", ""] {
        let (status, error) = error_code(put_pin(&app, token, json!({ "pin": bad })).await).await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(error["details"]["field"], "pin");
    }
    assert_eq!(
        put_pin(&app, token, json!({ "pin": "2468" }))
            .await
            .status(),
        204
    );
    assert_eq!(verify_pin(&app, token, "2468").await.status(), 204);

    // Changing needs the current PIN, and a wrong one counts.
    let (status, error) = error_code(put_pin(&app, token, json!({ "pin": "1357" })).await).await;
    assert_eq!(
        (status, error["details"]["field"].as_str()),
        (422, Some("current_pin"))
    );
    let (status, error) =
        error_code(put_pin(&app, token, json!({ "pin": "1357", "current_pin": "0000" })).await)
            .await;
    assert_eq!((status, error["code"].as_str()), (401, Some("invalid_pin")));
    assert_eq!(error["details"]["remaining_attempts"], 2);

    let (status, error) = error_code(verify_pin(&app, token, "1111").await).await;
    assert_eq!(
        (status, error["details"]["remaining_attempts"].as_i64()),
        (401, Some(1))
    );
    let (status, error) = error_code(verify_pin(&app, token, "2222").await).await;
    assert_eq!((status, error["code"].as_str()), (423, Some("pin_locked")));
    assert!(error["details"]["locked_until"].is_string());

    // Locked: even the right PIN is refused, and not compared.
    let (status, _) = error_code(verify_pin(&app, token, "2468").await).await;
    assert_eq!(status, 423);
    let (status, _) =
        error_code(put_pin(&app, token, json!({ "pin": "1357", "current_pin": "2468" })).await)
            .await;
    assert_eq!(status, 423);

    // The lock expires; the right PIN works again and the count starts afresh.
    sqlx::query("update internal.user_pins set locked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(verify_pin(&app, token, "2468").await.status(), 204);
    assert_eq!(
        put_pin(&app, token, json!({ "pin": "1357", "current_pin": "2468" }))
            .await
            .status(),
        204
    );
    assert_eq!(verify_pin(&app, token, "1357").await.status(), 204);

    // Stored hashed; audited without the digits.
    let stored: String = sqlx::query_scalar("select pin_hash from internal.user_pins")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$2"), "{stored}");
    let audit: Vec<(String, String)> = sqlx::query_as(
        "select action, metadata::text from public.audit_logs where action like 'auth.pin%' order by id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "auth.pin_changed",
            "auth.pin_failed",
            "auth.pin_failed",
            "auth.pin_locked",
            "auth.pin_changed"
        ]
    );
    for (_, metadata) in &audit {
        for pin in ["2468", "1357", "0000", "1111", "2222"] {
            assert!(!metadata.contains(pin), "{metadata}");
        }
    }
}

#[tokio::test]
async fn pins_need_a_signed_in_user() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .put(app.url("/auth/pin"))
        .json(&json!({ "pin": "2468" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let count: i64 = sqlx::query_scalar("select count(*) from internal.user_pins")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn tokens_signed_by_a_supabase_projects_published_key_are_accepted() {
    let (key, jwk) = es256_key(11, "supabase-2026");
    let jwks_server =
        FakeService::json("/auth/v1/.well-known/jwks.json", json!({ "keys": [jwk] })).await;
    let jwks = pesachama_api::keys::fetch_jwks(&jwks_server.url("/auth/v1/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.len(), 1);

    let db = TestDb::new().await;
    let config = TestApp::config();
    let issuer = config.auth.issuer();
    let state = AppState::with_jwks(db.pool.clone(), config, jwks);
    let app = TestApp::spawn_state(db, state).await;
    let user = sign_up(&app, "akinyi@example.co.ke").await;

    // What Supabase Auth issues with an asymmetric signing key: the same claims, ES256.
    let claims = json!({
        "sub": user.user_id, "aud": "authenticated", "role": "authenticated",
        "iss": issuer, "iat": now(), "exp": now() + 600,
        "email": "akinyi@example.co.ke", "phone": "", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now()}],
        "session_id": user.session_id, "is_anonymous": false,
        "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {}
    });
    let supabase_token = sign_es256(&key, "supabase-2026", &claims);
    let me = app
        .auth(Method::GET, "/user")
        .bearer_auth(&supabase_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.unwrap()["email"],
        "akinyi@example.co.ke"
    );
    let profile = app
        .client
        .get(app.url(&format!("/users/{}", user.user_id)))
        .bearer_auth(&supabase_token)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);

    // The same claims signed by a key that is not published, or expired, or HS256-signed
    // with the public key as the secret (key confusion): refused.
    let (stranger, _) = es256_key(12, "supabase-2026");
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 60);
    let (_, published) = es256_key(11, "supabase-2026");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(published.to_string().as_bytes()),
    )
    .unwrap();
    for (what, token) in [
        (
            "unpublished key",
            sign_es256(&stranger, "supabase-2026", &claims),
        ),
        ("expired", sign_es256(&key, "supabase-2026", &expired)),
        ("key confusion", confused),
    ] {
        let response = app
            .auth(Method::GET, "/user")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{what}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["code"],
            "bad_jwt",
            "{what}"
        );
    }
}

async fn google_app() -> (TestApp, FakeService, EncodingKey) {
    let (key, jwk) = es256_key(21, "google-key-1");
    let google = FakeService::json("/oauth2/v3/certs", json!({ "keys": [jwk] })).await;
    let mut config = TestApp::config();
    config.auth.google_client_ids = vec![GOOGLE_CLIENT.to_owned()];
    config.auth.google_jwks_url = google.url("/oauth2/v3/certs");
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    (app, google, key)
}

fn google_claims(sub: &str, email: &str, nonce: Option<&str>) -> Value {
    json!({
        "iss": "https://accounts.google.com", "aud": GOOGLE_CLIENT, "azp": GOOGLE_CLIENT,
        "sub": sub, "email": email, "email_verified": true, "name": "Chebet Langat",
        "picture": "https://lh3.googleusercontent.com/a/chebet", "nonce": nonce,
        "iat": now(), "exp": now() + 3600
    })
}

async fn google_sign_in(app: &TestApp, id_token: &str, nonce: Option<&str>) -> reqwest::Response {
    app.auth(Method::POST, "/token?grant_type=id_token")
        .json(&json!({ "provider": "google", "id_token": id_token, "nonce": nonce }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn google_sign_in_creates_then_finds_the_user_through_their_identity() {
    let (app, _google, key) = google_app().await;
    let token = sign_es256(
        &key,
        "google-key-1",
        &google_claims("1029384756", "chebet@gmail.com", Some("n-0nce")),
    );

    let first = google_sign_in(&app, &token, Some("n-0nce")).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["user"]["email"], "chebet@gmail.com");
    assert_eq!(first["user"]["app_metadata"]["provider"], "google");
    let claims = unverified_claims(first["access_token"].as_str().unwrap());
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["amr"][0]["method"], "oauth");

    // The nonce may also arrive hashed in the token (what native SDKs are handed).
    let hashed = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"other-nonce"))
    };
    let token = sign_es256(
        &key,
        "google-key-1",
        &google_claims("1029384756", "chebet@gmail.com", Some(&hashed)),
    );
    let second = google_sign_in(&app, &token, Some("other-nonce")).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["user"]["id"], first["user"]["id"]);

    let identities: i64 = sqlx::query_scalar(
        "select count(*) from auth.identities where provider = 'google' and provider_id = '1029384756'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(identities, 1);
    let profiles: i64 =
        sqlx::query_scalar("select count(*) from public.users where email = 'chebet@gmail.com'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(profiles, 1);
}

#[tokio::test]
async fn google_tokens_for_another_app_expired_forged_or_with_a_wrong_nonce_are_refused() {
    let (app, _google, key) = google_app().await;
    let good = google_claims("555", "wafula@gmail.com", Some("abc"));
    let mut other_app = good.clone();
    other_app["aud"] = json!("someone-else.apps.googleusercontent.com");
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 60);
    let mut other_issuer = good.clone();
    other_issuer["iss"] = json!("https://evil.example.com");
    let (forger, _) = es256_key(22, "google-key-1");

    let cases = [
        (
            "another app's token",
            sign_es256(&key, "google-key-1", &other_app),
            Some("abc"),
        ),
        (
            "expired",
            sign_es256(&key, "google-key-1", &expired),
            Some("abc"),
        ),
        (
            "another issuer",
            sign_es256(&key, "google-key-1", &other_issuer),
            Some("abc"),
        ),
        (
            "forged",
            sign_es256(&forger, "google-key-1", &good),
            Some("abc"),
        ),
        (
            "unknown key id",
            sign_es256(&key, "google-key-9", &good),
            Some("abc"),
        ),
        (
            "wrong nonce",
            sign_es256(&key, "google-key-1", &good),
            Some("xyz"),
        ),
        ("not a JWT", "not-a-token".to_owned(), None),
    ];
    for (what, token, nonce) in cases {
        let response = google_sign_in(&app, &token, nonce).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["code"],
            "bad_oauth_callback",
            "{what}"
        );
    }
    let users: i64 = sqlx::query_scalar("select count(*) from auth.users")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing written");
}

#[tokio::test]
async fn rls_decides_which_profiles_a_user_sees_even_when_a_query_forgets_its_where() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let outsider = sign_up(&app, "outsider@example.co.ke").await;

    // The demo's Wanjiku chairs Umoja; Nafula is a member of it; Otieno is in other chamas only.
    let wanjiku = "5eed0000-0000-4000-8000-000000000001";
    let nafula = "5eed0000-0000-4000-8000-000000000007";
    let otieno = "5eed0000-0000-4000-8000-000000000002";
    let login = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "email": "wanjiku.kamau@example.co.ke", "password": "password123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let wanjiku_token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let profile = |token: String, id: String| {
        let request = app
            .client
            .get(app.url(&format!("/users/{id}")))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(profile(wanjiku_token.clone(), nafula.to_owned()).await, 200);
    assert_eq!(
        profile(wanjiku_token.clone(), wanjiku.to_owned()).await,
        200
    );
    assert_eq!(
        profile(outsider.access_token.clone(), wanjiku.to_owned()).await,
        404
    );
    assert_eq!(
        profile(outsider.access_token.clone(), outsider.user_id.to_string()).await,
        200
    );

    // The mechanism every route uses, with a query that forgets `where id = ...`: the claims
    // the server issued, set transaction-locally as PostgREST does, and nothing else.
    let claims = unverified_claims(&outsider.access_token);
    let mut tx = pesachama_store::rls::begin_as(
        &app.db.pool,
        pesachama_store::rls::DbRole::Authenticated,
        &claims,
    )
    .await
    .unwrap();
    let visible: Vec<Uuid> = sqlx::query_scalar("select id from public.users")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, [outsider.user_id]);
    let everything: i64 = sqlx::query_scalar("select count(*) from public.transactions")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(everything, 0);
    tx.rollback().await.unwrap();

    let wanjiku_claims = unverified_claims(&wanjiku_token);
    let mut tx = pesachama_store::rls::begin_as(
        &app.db.pool,
        pesachama_store::rls::DbRole::Authenticated,
        &wanjiku_claims,
    )
    .await
    .unwrap();
    let visible: Vec<String> = sqlx::query_scalar("select id::text from public.users order by id")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert!(visible.contains(&nafula.to_owned()));
    assert!(!visible.contains(&outsider.user_id.to_string()));
    assert!(!visible.contains(&otieno.to_owned()), "{visible:?}");
    let chamas: i64 = sqlx::query_scalar("select count(*) from public.chamas")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(chamas, 2, "Umoja (chair) and Eldoret (member), not Kisumu");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn opaque_supabase_api_keys_are_accepted_when_configured() {
    let mut config = TestApp::config();
    config.auth.opaque_api_keys = vec!["sb_publishable_pesachama_test_key".to_owned()];
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    let with_key = |key: &'static str| {
        app.client
            .get(app.url("/auth/v1/settings"))
            .header("apikey", key)
            .send()
    };
    assert_eq!(
        with_key("sb_publishable_pesachama_test_key")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        with_key("sb_publishable_pesachama_test_kez")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        with_key("sb_publishable_pesachama_test_key_")
            .await
            .unwrap()
            .status(),
        401
    );
}

/// Someone signs up first with another person's email and a password of theirs, and never
/// confirms it. When the owner signs in with Google (which proves the address), the account
/// becomes theirs: the email confirmed, the squatter's password gone (GoTrue's rule). Before,
/// with confirmation on, the owner was turned away and the squatter's password stayed.
#[tokio::test]
async fn google_sign_in_takes_an_address_back_from_an_unconfirmed_sign_up() {
    let (key, jwk) = es256_key(21, "google-key-1");
    let google = FakeService::json("/oauth2/v3/certs", json!({ "keys": [jwk] })).await;
    let mut config = TestApp::config();
    config.auth.google_client_ids = vec![GOOGLE_CLIENT.to_owned()];
    config.auth.google_jwks_url = google.url("/oauth2/v3/certs");
    config.auth.autoconfirm = false;
    let app = TestApp::spawn_with(TestDb::new().await, config).await;

    let squat = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": "chebet@gmail.com", "password": "squatters-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(squat.status(), 200);
    let squatted: Value = squat.json().await.unwrap();

    let token = sign_es256(
        &key,
        "google-key-1",
        &google_claims("1029384756", "chebet@gmail.com", Some("n-0nce")),
    );
    let owner = google_sign_in(&app, &token, Some("n-0nce")).await;
    assert_eq!(owner.status(), 200);
    let owner: Value = owner.json().await.unwrap();
    assert_eq!(owner["user"]["id"], squatted["id"]);
    assert!(!owner["user"]["email_confirmed_at"].is_null());

    let login = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "email": "chebet@gmail.com", "password": "squatters-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 400, "the squatter's password is gone");
    app.db.assert_gotrue_can_read().await;
}
