//! The browser OAuth flow with Google, driven as supabase-js's `signInWithOAuth` drives it: a
//! browser that does not follow redirects on its own goes `/auth/v1/authorize` → Google (a
//! local fake speaking Google's wire format) → `/auth/v1/callback` → the app, then (PKCE)
//! trades its auth code at `/auth/v1/token?grant_type=pkce`. And the attacks on it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod oauth_support;

use base64::Engine as _;
use oauth_support::{CLIENT_ID, CLIENT_SECRET, FakeGoogle, user};
use pesachama_api::AppState;
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;
use url::Url;

const SITE: &str = "https://app.pesachama.example";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Setup {
    app: TestApp,
    google: FakeGoogle,
}

/// An app whose Google web client is configured (secret, endpoints at the fake) and whose
/// public URL is its own address, so Google's redirect reaches it.
async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(adjust: impl FnOnce(&mut pesachama_api::ServerConfig)) -> Setup {
    let google = FakeGoogle::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = TestApp::config();
    config.auth.site_url = format!("http://{address}");
    config.auth.google_client_ids = vec![
        CLIENT_ID.to_owned(),
        "android-client.apps.googleusercontent.com".to_owned(),
    ];
    config.auth.google_jwks_url = google.url("/oauth2/v3/certs");
    config.auth.google_oauth.client_secret = Some(CLIENT_SECRET.to_owned());
    config.auth.google_oauth.authorization_url = google.url("/o/oauth2/v2/auth");
    config.auth.google_oauth.token_url = google.url("/token");
    config.auth.redirects.site_url = SITE.to_owned();
    config.auth.redirects.allow_list = vec![
        "com.pesachama.app://login-callback".to_owned(),
        "https://*.preview.pesachama.example/**".to_owned(),
    ];
    adjust(&mut config);
    let db = TestDb::new().await;
    let state = AppState::new(db.pool.clone(), config);
    let app = TestApp::spawn_listener(listener, db, state).await;
    Setup { app, google }
}

/// A browser: no API key, no redirect followed unless asked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn location(response: &reqwest::Response) -> Url {
    Url::parse(
        response
            .headers()
            .get("location")
            .expect("a Location header")
            .to_str()
            .unwrap(),
    )
    .unwrap()
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn fragment(url: &Url) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(url.fragment().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// What one trip through the flow showed.
struct Trip {
    /// Where `/authorize` sent the browser (Google).
    to_google: Url,
    /// Where Google sent it (our callback).
    to_callback: Url,
    /// Where the callback sent it, and with which status.
    landing: Url,
    landing_status: u16,
}

async fn authorize(app: &TestApp, query: &str) -> reqwest::Response {
    browser()
        .get(app.url(&format!("/auth/v1/authorize?{query}")))
        .send()
        .await
        .unwrap()
}

/// `/authorize` with `query`, then Google, then the callback, as a browser follows them.
async fn travel(app: &TestApp, query: &str) -> Trip {
    let start = authorize(app, query).await;
    assert_eq!(start.status(), 302, "{}", start.text().await.unwrap());
    let to_google = location(&start);
    let at_google = browser().get(to_google.clone()).send().await.unwrap();
    assert_eq!(
        at_google.status(),
        302,
        "the fake Google refused the request"
    );
    let to_callback = location(&at_google);
    let back = browser().get(to_callback.clone()).send().await.unwrap();
    let landing_status = back.status().as_u16();
    Trip {
        to_google,
        to_callback,
        landing: location(&back),
        landing_status,
    }
}

fn pkce_query(redirect_to: &str, verifier: &str) -> String {
    format!(
        "provider=google&redirect_to={}&code_challenge={}&code_challenge_method=s256",
        urlencode(redirect_to),
        challenge(verifier)
    )
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn exchange(app: &TestApp, auth_code: &str, verifier: &str) -> reqwest::Response {
    app.auth(Method::POST, "/token?grant_type=pkce")
        .json(&json!({ "auth_code": auth_code, "code_verifier": verifier }))
        .send()
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn pkce_sign_in_creates_the_user_and_its_auth_code_trades_once_for_a_session() {
    let Setup { app, google } = setup().await;
    let redirect_to = format!("{SITE}/auth/callback?next=%2Fchamas");
    let trip = travel(
        &app,
        &format!(
            "{}&scopes=https://www.googleapis.com/auth/calendar.readonly&access_type=offline&prompt=consent&client_id=evil&redirect_uri=https://evil.example/",
            pkce_query(&redirect_to, VERIFIER)
        ),
    )
    .await;

    // To Google: our client, our callback, a code flow with openid, a state and a nonce; what
    // the app added for Google passes, what only we may set does not.
    let google_url = &trip.to_google;
    assert_eq!(google_url.path(), "/o/oauth2/v2/auth");
    assert_eq!(param(google_url, "client_id").unwrap(), CLIENT_ID);
    assert_eq!(
        param(google_url, "redirect_uri").unwrap(),
        app.url("/auth/v1/callback")
    );
    assert_eq!(param(google_url, "response_type").unwrap(), "code");
    assert_eq!(
        param(google_url, "scope").unwrap(),
        "openid email profile https://www.googleapis.com/auth/calendar.readonly"
    );
    assert_eq!(param(google_url, "access_type").unwrap(), "offline");
    assert_eq!(param(google_url, "prompt").unwrap(), "consent");
    assert_eq!(
        google_url
            .query_pairs()
            .filter(|(k, _)| k == "client_id")
            .count(),
        1
    );
    assert_eq!(
        google_url
            .query_pairs()
            .filter(|(k, _)| k == "redirect_uri")
            .count(),
        1
    );
    assert!(
        param(google_url, "code_challenge").is_none(),
        "our PKCE is ours"
    );
    let state = param(google_url, "state").unwrap();
    assert!(
        uuid::Uuid::parse_str(&state).is_ok(),
        "the state is the flow's id"
    );
    assert!(param(google_url, "nonce").is_some_and(|n| n.len() >= 32));

    // Back from Google, the browser lands on redirect_to with an auth code, not a session.
    assert_eq!(param(&trip.to_callback, "state").unwrap(), state);
    assert_eq!(trip.landing_status, 302);
    assert_eq!(trip.landing.host_str(), Some("app.pesachama.example"));
    assert_eq!(trip.landing.path(), "/auth/callback");
    assert_eq!(param(&trip.landing, "next").unwrap(), "/chamas");
    assert!(trip.landing.fragment().is_none());
    let auth_code = param(&trip.landing, "code").unwrap();
    assert_eq!(
        count(&app, "select count(*) from auth.sessions").await,
        0,
        "no session before the exchange"
    );
    // The flow row is GoTrue's: bound to the user, its code issued, Google's token kept.
    let (user_id, issued, provider_token, method): (Option<uuid::Uuid>, bool, String, String) =
        sqlx::query_as(
            "select user_id, auth_code_issued_at is not null, provider_access_token,
                    code_challenge_method::text from auth.flow_state where auth_code = $1",
        )
        .bind(&auth_code)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(user_id.is_some() && issued);
    assert!(provider_token.starts_with("ya29."));
    assert_eq!(method, "s256");
    app.db.assert_gotrue_can_read().await;

    // Google was asked, server to server, with the secret and the same redirect URI.
    let requests = google.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["client_secret"], CLIENT_SECRET);
    assert_eq!(requests[0]["redirect_uri"], app.url("/auth/v1/callback"));
    assert_eq!(requests[0]["grant_type"], "authorization_code");

    // The exchange: only the verifier's holder, once, even when two race.
    let (first, second) = tokio::join!(
        exchange(&app, &auth_code, VERIFIER),
        exchange(&app, &auth_code, VERIFIER)
    );
    let mut answers = [first, second];
    answers.sort_by_key(reqwest::Response::status);
    let [won, lost] = answers;
    assert_eq!(won.status(), 200);
    assert_eq!(lost.status(), 404);
    assert_eq!(
        lost.json::<Value>().await.unwrap()["code"],
        "flow_state_not_found"
    );
    let session: Value = won.json().await.unwrap();
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["user"]["email"], "chebet@gmail.com");
    assert_eq!(session["user"]["app_metadata"]["provider"], "google");
    assert_eq!(session["user"]["identities"][0]["provider"], "google");
    assert!(
        session["provider_token"]
            .as_str()
            .unwrap()
            .starts_with("ya29.")
    );
    assert_eq!(session["provider_refresh_token"], "1//fake-refresh");
    let access = session["access_token"].as_str().unwrap();
    let me = app
        .auth(Method::GET, "/user")
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.unwrap()["id"],
        session["user"]["id"]
    );

    let replay = exchange(&app, &auth_code, VERIFIER).await;
    assert_eq!(replay.status(), 404);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["code"],
        "flow_state_not_found"
    );
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.sessions").await, 1);
    assert_eq!(
        count(
            &app,
            "select count(*) from public.users where email = 'chebet@gmail.com'"
        )
        .await,
        1
    );
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn implicit_sign_in_lands_with_the_session_in_the_fragment() {
    let Setup {
        app,
        google: _google,
    } = setup().await;
    let trip = travel(
        &app,
        &format!(
            "provider=google&redirect_to={}",
            urlencode("com.pesachama.app://login-callback")
        ),
    )
    .await;
    assert_eq!(trip.landing_status, 302);
    assert_eq!(trip.landing.scheme(), "com.pesachama.app");
    assert!(param(&trip.landing, "code").is_none());
    let session = fragment(&trip.landing);
    assert_eq!(session["token_type"], "bearer");
    assert_eq!(session["expires_in"], "3600");
    assert!(session.contains_key("sb"));
    assert!(session["provider_token"].starts_with("ya29."));
    let me = app
        .auth(Method::GET, "/user")
        .bearer_auth(&session["access_token"])
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let refreshed = app
        .auth(Method::POST, "/token?grant_type=refresh_token")
        .json(&json!({ "refresh_token": session["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!(
        count(&app, "select count(*) from auth.flow_state").await,
        0,
        "an implicit flow leaves nothing behind"
    );

    // The state is spent: Google's redirect replayed signs nobody in again.
    let replay = browser().get(trip.to_callback).send().await.unwrap();
    assert_eq!(replay.status(), 303);
    let landing = location(&replay);
    assert_eq!(landing.host_str(), Some("app.pesachama.example"));
    assert_eq!(param(&landing, "error_code").unwrap(), "bad_oauth_state");
    assert_eq!(count(&app, "select count(*) from auth.sessions").await, 1);
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn google_links_a_verified_email_to_its_account_and_never_an_unverified_one() {
    let Setup { app, google } = setup().await;
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": "chebet@gmail.com", "password": "tembo-na-twiga-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 200);
    let owner = signup.json::<Value>().await.unwrap()["user"]["id"].clone();

    // Someone whose Google account claims the address without Google having verified it.
    google.next_user(user("666", "chebet@gmail.com", false));
    let trip1 = travel(&app, "provider=google").await;
    let session = fragment(&trip1.landing);
    let me: Value = app
        .auth(Method::GET, "/user")
        .bearer_auth(&session["access_token"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(me["id"], owner, "an unverified email took over an account");
    assert_eq!(me["email"], "");

    // The owner, verified by Google: linked to their account.
    google.next_user(user("777", "chebet@gmail.com", true));
    let trip2 = travel(&app, "provider=google").await;
    let session = fragment(&trip2.landing);
    let me: Value = app
        .auth(Method::GET, "/user")
        .bearer_auth(&session["access_token"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], owner);
    let providers: Vec<&str> = me["app_metadata"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(providers.contains(&"google") && providers.contains(&"email"));
    app.db.assert_gotrue_can_read().await;
}

#[tokio::test]
async fn a_redirect_to_that_is_not_allowed_lands_on_the_site_url_never_on_the_attacker() {
    let Setup {
        app,
        google: _google,
    } = setup().await;
    for evil in [
        "https://evil.example/steal",
        "https://app.pesachama.example@evil.example/",
        "https://app.pesachama.example.evil.example/",
        "http://app.pesachama.example/",
        "https://evil.example\\@app.pesachama.example/",
        "//evil.example/",
        "javascript:alert(document.cookie)",
    ] {
        let trip = travel(&app, &pkce_query(evil, VERIFIER)).await;
        assert_eq!(
            trip.landing.origin().ascii_serialization(),
            SITE,
            "{evil} got the code"
        );
        assert!(param(&trip.landing, "code").is_some());
    }
    // Implicit: the tokens would be in the fragment: same rule.
    let trip = travel(
        &app,
        &format!(
            "provider=google&redirect_to={}",
            urlencode("https://evil.example/")
        ),
    )
    .await;
    assert_eq!(trip.landing.origin().ascii_serialization(), SITE);

    // A forged Referer is no way around it either.
    let start = browser()
        .get(app.url("/auth/v1/authorize?provider=google"))
        .header("referer", "https://evil.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let referrers: Vec<String> =
        sqlx::query_scalar("select referrer from auth.flow_state where user_id is null")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(referrers, vec![SITE.to_owned()]);

    // What the allow list names is honoured.
    let preview = "https://pr-7.preview.pesachama.example/auth/callback";
    let trip = travel(&app, &pkce_query(preview, VERIFIER)).await;
    assert!(trip.landing.as_str().starts_with(preview));
}

#[tokio::test]
async fn a_forged_tampered_or_spent_state_signs_nobody_in() {
    let Setup { app, google } = setup().await;
    let callback = |query: String| {
        let url = app.url(&format!("/auth/v1/callback?{query}"));
        async move { browser().get(url).send().await.unwrap() }
    };
    let cases = [
        (
            "missing",
            "code=4/0Ad-fake-code-1".to_owned(),
            "bad_oauth_callback",
        ),
        (
            "not a flow id",
            "code=x&state=eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned(),
            "bad_oauth_state",
        ),
        (
            "forged",
            format!("code=x&state={}", uuid::Uuid::new_v4()),
            "bad_oauth_state",
        ),
    ];
    for (what, query, code) in cases {
        let response = callback(query).await;
        assert_eq!(response.status(), 303, "{what}");
        let landing = location(&response);
        assert_eq!(landing.origin().ascii_serialization(), SITE, "{what}");
        assert_eq!(
            param(&landing, "error").unwrap(),
            "invalid_request",
            "{what}"
        );
        assert_eq!(param(&landing, "error_code").unwrap(), code, "{what}");
    }

    // A real state, one character changed.
    let start = authorize(&app, &pkce_query(SITE, VERIFIER)).await;
    let state = param(&location(&start), "state").unwrap();
    let mut tampered = state.clone().into_bytes();
    tampered[0] = if tampered[0] == b'a' { b'b' } else { b'a' };
    let response = callback(format!(
        "code=x&state={}",
        String::from_utf8(tampered).unwrap()
    ))
    .await;
    assert_eq!(
        param(&location(&response), "error_code").unwrap(),
        "bad_oauth_state"
    );

    // A state whose PKCE code was handed out already: refused as used.
    let trip = travel(&app, &pkce_query(SITE, VERIFIER)).await;
    let replay = browser()
        .get(trip.to_callback.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    assert_eq!(
        param(&location(&replay), "error_code").unwrap(),
        "flow_state_already_used"
    );
    assert_eq!(
        google.token_requests().len(),
        1,
        "only the real trip reached Google"
    );
    assert_eq!(count(&app, "select count(*) from auth.sessions").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.users").await, 1);
}

#[tokio::test]
async fn a_google_code_from_another_flow_fails_on_its_nonce() {
    let Setup { app, google } = setup().await;
    // The attacker's own flow, up to Google's redirect (which they keep).
    let attacker = authorize(&app, "provider=google").await;
    google.next_user(user("999", "mshambulizi@gmail.com", true));
    let at_google = browser().get(location(&attacker)).send().await.unwrap();
    let attackers_code = param(&location(&at_google), "code").unwrap();
    // The victim's flow: the attacker plants their code on the victim's state.
    let victim = authorize(&app, &pkce_query(SITE, VERIFIER)).await;
    let victims_state = param(&location(&victim), "state").unwrap();
    let response = browser()
        .get(app.url(&format!(
            "/auth/v1/callback?code={}&state={victims_state}",
            urlencode(&attackers_code)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let landing = location(&response);
    assert_eq!(landing.origin().ascii_serialization(), SITE);
    assert_eq!(param(&landing, "error_code").unwrap(), "bad_oauth_callback");
    assert!(
        param(&landing, "error_description")
            .unwrap()
            .contains("nonce")
    );
    assert_eq!(fragment(&landing)["error_code"], "bad_oauth_callback");
    assert!(param(&landing, "code").is_none());
    assert_eq!(count(&app, "select count(*) from auth.users").await, 0);
    assert_eq!(
        count(
            &app,
            "select count(*) from auth.flow_state where user_id is not null"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn id_tokens_for_another_audience_issuer_or_nonce_are_refused() {
    let Setup { app, google } = setup().await;
    for (what, tamper) in [
        (
            "another app",
            json!({ "aud": "someone-else.apps.googleusercontent.com" }),
        ),
        // Accepted for grant_type=id_token, but not the web client this flow asked Google for.
        (
            "our Android client",
            json!({ "aud": "android-client.apps.googleusercontent.com" }),
        ),
        (
            "another nonce",
            json!({ "nonce": "chosen-by-the-attacker" }),
        ),
        ("no nonce", json!({ "nonce": null })),
        ("another issuer", json!({ "iss": "https://evil.example" })),
        (
            "expired",
            json!({ "exp": chrono::Utc::now().timestamp() - 60 }),
        ),
    ] {
        google.tamper(Some(tamper));
        let trip = travel(&app, &pkce_query(SITE, VERIFIER)).await;
        assert_eq!(trip.landing_status, 302, "{what}");
        assert_eq!(
            param(&trip.landing, "error_code").unwrap(),
            "bad_oauth_callback",
            "{what}"
        );
        assert!(param(&trip.landing, "code").is_none(), "{what}");
    }
    assert_eq!(count(&app, "select count(*) from auth.users").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 0);
}

#[tokio::test]
async fn a_code_verifier_of_another_flow_is_refused_and_the_code_stays_its_holders() {
    let Setup {
        app,
        google: _google,
    } = setup().await;
    let other_verifier = "another-verifier-of-another-flow-0123456789abcdefgh";
    let mine = travel(&app, &pkce_query(SITE, VERIFIER)).await;
    let theirs = travel(&app, &pkce_query(SITE, other_verifier)).await;
    let my_code = param(&mine.landing, "code").unwrap();
    let their_code = param(&theirs.landing, "code").unwrap();

    for (code, verifier) in [
        (&my_code, other_verifier),
        (&their_code, VERIFIER),
        (&my_code, &challenge(VERIFIER)[..]),
    ] {
        let refused = exchange(&app, code, verifier).await;
        assert_eq!(refused.status(), 400);
        assert_eq!(
            refused.json::<Value>().await.unwrap()["code"],
            "bad_code_verifier"
        );
    }
    assert_eq!(count(&app, "select count(*) from auth.sessions").await, 0);
    let missing = exchange(&app, &my_code, "").await;
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["code"],
        "validation_failed"
    );
    let unknown = exchange(&app, &uuid::Uuid::new_v4().to_string(), VERIFIER).await;
    assert_eq!(unknown.status(), 404);

    assert_eq!(exchange(&app, &my_code, VERIFIER).await.status(), 200);
    assert_eq!(
        exchange(&app, &their_code, other_verifier).await.status(),
        200
    );
}

#[tokio::test]
async fn expired_flows_are_refused_at_the_callback_and_at_the_exchange() {
    let Setup { app, google } = setup().await;
    // Five minutes at Google is too long.
    let start = authorize(&app, &pkce_query(SITE, VERIFIER)).await;
    let at_google = browser().get(location(&start)).send().await.unwrap();
    sqlx::query("update auth.flow_state set created_at = now() - interval '301 seconds'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let back = browser().get(location(&at_google)).send().await.unwrap();
    assert_eq!(back.status(), 303);
    let landing = location(&back);
    assert_eq!(param(&landing, "error_code").unwrap(), "bad_oauth_state");
    assert!(
        param(&landing, "error_description")
            .unwrap()
            .contains("expired")
    );
    assert!(google.token_requests().is_empty(), "Google never asked");

    // An auth code kept too long.
    let trip = travel(&app, &pkce_query(SITE, VERIFIER)).await;
    let code = param(&trip.landing, "code").unwrap();
    sqlx::query("update auth.flow_state set created_at = now() - interval '301 seconds'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let late = exchange(&app, &code, VERIFIER).await;
    assert_eq!(late.status(), 422);
    assert_eq!(
        late.json::<Value>().await.unwrap()["code"],
        "flow_state_expired"
    );
    assert_eq!(count(&app, "select count(*) from auth.sessions").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 0);
}

#[tokio::test]
async fn a_refusal_at_google_or_a_bad_code_comes_back_as_gotrues_error_redirect() {
    let Setup { app, google } = setup().await;
    google.deny_next(true);
    let trip = travel(&app, &pkce_query(&format!("{SITE}/welcome"), VERIFIER)).await;
    assert_eq!(trip.landing_status, 302);
    assert_eq!(trip.landing.path(), "/welcome");
    assert_eq!(param(&trip.landing, "error").unwrap(), "access_denied");
    assert_eq!(
        param(&trip.landing, "error_description").unwrap(),
        "The user denied access"
    );
    let hash = fragment(&trip.landing);
    assert_eq!(hash["error"], "access_denied");
    assert!(hash.contains_key("sb"));
    assert!(google.token_requests().is_empty());

    // A code Google does not know (made up, or spent already).
    google.deny_next(false);
    let start = authorize(&app, &pkce_query(SITE, VERIFIER)).await;
    let state = param(&location(&start), "state").unwrap();
    let response = browser()
        .get(app.url(&format!("/auth/v1/callback?code=made-up&state={state}")))
        .send()
        .await
        .unwrap();
    let landing = location(&response);
    assert_eq!(param(&landing, "error").unwrap(), "invalid_request");
    assert_eq!(param(&landing, "error_code").unwrap(), "bad_oauth_callback");
    assert!(
        param(&landing, "error_description")
            .unwrap()
            .contains("invalid_grant")
    );
    assert_eq!(count(&app, "select count(*) from auth.users").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 0);
}

#[tokio::test]
async fn without_a_client_secret_or_with_bad_parameters_authorize_refuses_and_writes_nothing() {
    let Setup {
        app,
        google: _google,
    } = setup_with(|config| config.auth.google_oauth.client_secret = None).await;
    let response = authorize(&app, "provider=google").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "validation_failed");
    assert_eq!(body["msg"], "Unsupported provider: provider is not enabled");

    let Setup {
        app,
        google: _google,
    } = setup().await;
    let bad = [
        (
            "provider=github",
            "Unsupported provider: Provider github could not be found",
        ),
        ("", "Unsupported provider: Provider  could not be found"),
        (
            "provider=google&code_challenge=abc&code_challenge_method=s256",
            "code challenge has to be between 43 and 128 characters",
        ),
        (
            &format!("provider=google&code_challenge={}", challenge(VERIFIER))[..],
            "PKCE flow requires code_challenge_method and code_challenge",
        ),
        (
            &format!(
                "provider=google&code_challenge={}&code_challenge_method=md5",
                challenge(VERIFIER)
            )[..],
            "Invalid code_challenge_method",
        ),
    ];
    for (query, message) in bad {
        let response = authorize(&app, query).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "validation_failed", "{query}");
        assert_eq!(body["msg"], message, "{query}");
    }
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 0);

    let posted = reqwest::Client::new()
        .post(app.url("/auth/v1/authorize?provider=google"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(
        posted.json::<Value>().await.unwrap()["error_code"],
        "method_not_allowed"
    );

    // The exchange is a token call: it needs the API key like the others.
    let keyless = reqwest::Client::new()
        .post(app.url("/auth/v1/token?grant_type=pkce"))
        .json(&json!({ "auth_code": "x", "code_verifier": VERIFIER }))
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 401);
}

#[tokio::test]
async fn authorize_is_rate_limited_per_address_and_sweeps_abandoned_flows() {
    let Setup {
        app,
        google: _google,
    } = setup_with(|config| config.auth.rate_limits.token = 2).await;
    // A flow abandoned two days ago, and one of GoTrue's own (a magic link) just as old.
    sqlx::query(
        "insert into auth.flow_state (id, provider_type, provider_access_token, provider_refresh_token,
             authentication_method, created_at, updated_at)
         values (gen_random_uuid(), 'google', '', '', 'oauth', now() - interval '2 days', now()),
                (gen_random_uuid(), 'email', '', '', 'magiclink', now() - interval '2 days', now())",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();

    for _ in 0..2 {
        assert_eq!(authorize(&app, "provider=google").await.status(), 302);
    }
    let limited = authorize(&app, "provider=google").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error_code"],
        "over_request_rate_limit"
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from auth.flow_state where created_at < now() - interval '1 day'"
        )
        .await,
        1,
        "the abandoned Google flow is gone, GoTrue's own row untouched"
    );
    assert_eq!(count(&app, "select count(*) from auth.flow_state").await, 3);
}

#[tokio::test]
async fn with_confirmation_on_an_unverified_google_email_is_turned_away_and_nothing_is_written() {
    let Setup { app, google } = setup_with(|config| config.auth.autoconfirm = false).await;
    google.next_user(user("4242", "unverified@gmail.com", false));
    let trip = travel(&app, &pkce_query(SITE, VERIFIER)).await;
    assert_eq!(trip.landing_status, 302);
    assert_eq!(param(&trip.landing, "error").unwrap(), "access_denied");
    assert!(param(&trip.landing, "code").is_none());
    assert_eq!(count(&app, "select count(*) from auth.users").await, 0);
    assert_eq!(count(&app, "select count(*) from auth.identities").await, 0);

    // Verified by Google: confirmed, signed in.
    google.next_user(user("4343", "verified@gmail.com", true));
    let trip = travel(&app, &pkce_query(SITE, VERIFIER)).await;
    let code = param(&trip.landing, "code").expect("an auth code");
    let session = exchange(&app, &code, VERIFIER).await;
    assert_eq!(session.status(), 200);
    let session: Value = session.json().await.unwrap();
    assert!(session["user"]["email_confirmed_at"].is_string());
    app.db.assert_gotrue_can_read().await;
}
