//! A phone or email belongs to an account only once a code sent to it has come back. Each test
//! is an attack that took a treasurer's invitation before (issue 29, item 1), run against a
//! server configured as outside `--demo`: confirmation on.

use pesachama_testkit::{TEST_JWT_SECRET, TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
/// The number the secretary invites as treasurer; nobody has it yet.
const INVITED: &str = "+254799000111";
const PASSWORD: &str = "a-long-password-for-tests";

/// The demo data on a server whose sign-ups and changes need their code.
async fn confirming_app() -> TestApp {
    let mut config = TestApp::config();
    config.auth.autoconfirm = false;
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

/// The secretary of Umoja invites `INVITED` as treasurer.
async fn invite_treasurer(app: &TestApp) -> String {
    let secretary = app.demo_token("mwanaisha.hassan@example.co.ke").await;
    let (status, invitation) = app
        .call(
            Method::POST,
            &secretary,
            &format!("/chamas/{UMOJA}/invitations"),
            Some(json!({ "phone": INVITED, "role": "treasurer" })),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    invitation["id"].as_str().unwrap().to_owned()
}

/// The newest code sent by SMS to `to` (the first six digits of the message).
async fn sms_code(app: &TestApp, to: &str) -> String {
    let message: String = sqlx::query_scalar(
        "select payload->>'message' from internal.outbox where topic = 'sms' and payload->>'to' = $1
          order by id desc limit 1",
    )
    .bind(to)
    .fetch_one(&app.db.pool)
    .await
    .expect("an SMS to that number");
    message
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect()
}

/// What an attacker can do with an account whose token says it has `INVITED`: see and accept
/// the invitation. Both must fail.
async fn assert_invitation_out_of_reach(app: &TestApp, token: &str, invitation: &str) {
    let (status, mine) = app.call(Method::GET, token, "/invitations", None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine, json!([]), "the invitation must not be shown");
    let (status, answer) = app
        .call(
            Method::POST,
            token,
            &format!("/invitations/{invitation}/accept"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    let members: i64 = sqlx::query_scalar(
        "select count(*) from public.chama_members where chama_id = $1 and role = 'treasurer'",
    )
    .bind(uuid::Uuid::parse_str(UMOJA).unwrap())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(members, 1, "Umoja still has only its own treasurer");
}

/// An access token as Supabase Auth (or we) would sign it for `user`, carrying `phone` in its
/// claims whether or not that phone was ever confirmed (for a live session of `user`).
async fn token_with_phone(app: &TestApp, user: &str, phone: &str) -> String {
    let session = crate::live_session(&app.db.pool, user).await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": "authenticated", "role": "authenticated", "sub": user, "phone": phone,
        "email": "", "iat": now, "exp": now + 600, "iss": "http://127.0.0.1:3000/auth/v1",
        "session_id": session, "aal": "aal1", "is_anonymous": false,
        "app_metadata": {}, "user_metadata": {},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn changing_ones_phone_to_an_invited_number_does_not_take_the_invitation() {
    let app = confirming_app().await;
    let invitation = invite_treasurer(&app).await;
    // Otieno has an account (email confirmed) and no chama; he sets the invited number.
    let session = app
        .sign_in(json!({ "email": "otieno.odhiambo@example.co.ke", "password": "password123" }))
        .await;
    let token = session["access_token"].as_str().unwrap();
    let changed = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&json!({ "phone": INVITED }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let user: Value = changed.json().await.unwrap();
    assert_eq!(user["new_phone"], "254799000111", "{user}");
    assert_ne!(
        user["phone"], "254799000111",
        "not his until the code comes back"
    );

    // A fresh token, and one whose phone claim says the number outright: neither reaches it.
    let fresh = app
        .sign_in(json!({ "email": "otieno.odhiambo@example.co.ke", "password": "password123" }))
        .await;
    assert_invitation_out_of_reach(&app, fresh["access_token"].as_str().unwrap(), &invitation)
        .await;
    let otieno = session["user"]["id"].as_str().unwrap();
    assert_invitation_out_of_reach(
        &app,
        &token_with_phone(&app, otieno, "254799000111").await,
        &invitation,
    )
    .await;

    // A guessed code does not confirm it either.
    let guessed = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "phone_change", "phone": INVITED, "token": "000000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status(), 403);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn signing_up_with_an_invited_number_gives_no_session_and_no_invitation() {
    let app = confirming_app().await;
    let invitation = invite_treasurer(&app).await;
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": INVITED, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 200);
    let user: Value = signup.json().await.unwrap();
    assert!(
        user.get("access_token").is_none(),
        "no session before the code: {user}"
    );
    let sign_in = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "phone": INVITED, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 400);
    assert_eq!(
        sign_in.json::<Value>().await.unwrap()["code"],
        "phone_not_confirmed"
    );
    let id = user["id"].as_str().unwrap();
    assert_invitation_out_of_reach(
        &app,
        &token_with_phone(&app, id, "254799000111").await,
        &invitation,
    )
    .await;
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_real_owner_takes_back_a_number_someone_signed_up_with_and_joins() {
    let app = confirming_app().await;
    let invitation = invite_treasurer(&app).await;
    // An attacker signs up first with the invited number and a password of theirs.
    let squat = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": INVITED, "password": "attackers-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(squat.status(), 200);

    // The owner signs up too: the unconfirmed account is theirs to take, with a new code.
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": INVITED, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 200, "{:?}", signup.text().await);
    let code = sms_code(&app, INVITED).await;
    let verified = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "sms", "phone": INVITED, "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let session: Value = verified.json().await.unwrap();
    let token = session["access_token"].as_str().unwrap();

    let refused = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "phone": INVITED, "password": "attackers-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "the attacker's password is gone");
    let (status, mine) = app.call(Method::GET, token, "/invitations", None).await;
    assert_eq!((status, mine.as_array().map(Vec::len)), (200, Some(1)));
    let (status, answer) = app
        .call(
            Method::POST,
            token,
            &format!("/invitations/{invitation}/accept"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_phone_change_confirmed_by_its_code_moves_the_number_and_the_profile() {
    let app = confirming_app().await;
    let session = app
        .sign_in(json!({ "email": "otieno.odhiambo@example.co.ke", "password": "password123" }))
        .await;
    let token = session["access_token"].as_str().unwrap();
    let new = "+254799000222";
    let changed = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&json!({ "phone": "0799 000 222" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let code = sms_code(&app, new).await;
    let stored: String = sqlx::query_scalar(
        "select phone_change_token from auth.users where email = 'otieno.odhiambo@example.co.ke'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_ne!(stored, code, "the code is kept hashed");
    let verified = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "phone_change", "phone": new, "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let user: Value = verified.json::<Value>().await.unwrap()["user"].clone();
    assert_eq!(user["phone"], "254799000222");
    assert!(user["phone_confirmed_at"].is_string(), "{user}");
    assert!(user.get("new_phone").is_none(), "{user}");
    let profile: Option<String> = sqlx::query_scalar(
        "select phone from public.users where email = 'otieno.odhiambo@example.co.ke'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(profile.as_deref(), Some(new));
    let again = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "phone_change", "phone": new, "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403, "a code works once");
}

#[tokio::test]
async fn an_email_change_waits_for_the_code_sent_to_the_new_address() {
    let app = confirming_app().await;
    let session = app
        .sign_in(json!({ "email": "otieno.odhiambo@example.co.ke", "password": "password123" }))
        .await;
    let token = session["access_token"].as_str().unwrap();
    let taken = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&json!({ "email": "wanjiku.kamau@example.co.ke" }))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 422);
    assert_eq!(taken.json::<Value>().await.unwrap()["code"], "email_exists");

    let changed = app
        .auth(Method::PUT, "/user")
        .bearer_auth(token)
        .json(&json!({ "email": "otieno@new.example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let user: Value = changed.json().await.unwrap();
    assert_eq!(user["email"], "otieno.odhiambo@example.co.ke");
    assert_eq!(user["new_email"], "otieno@new.example.com");
    let code: String = sqlx::query_scalar(
        "select payload->>'code' from internal.outbox where topic = 'email' and payload->>'to' = 'otieno@new.example.com'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let verified = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "email_change", "email": "otieno@new.example.com", "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let signed_in = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "email": "otieno@new.example.com", "password": "password123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
}

#[tokio::test]
async fn the_data_api_trusts_no_phone_claim_either() {
    let app = confirming_app().await;
    let invitation = invite_treasurer(&app).await;
    let otieno = "5eed0000-0000-4000-8000-000000000002";
    let exists: bool =
        sqlx::query_scalar("select exists (select from auth.users where id = $1::uuid)")
            .bind(otieno)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(exists, "the demo data has Otieno");
    // As PostgREST runs a request: role authenticated, the token's claims.
    let claims = json!({ "sub": otieno, "role": "authenticated", "phone": "254799000111" });
    let mut tx = pesachama_store::rls::begin_as(
        &app.db.pool,
        pesachama_store::rls::DbRole::Authenticated,
        &claims,
    )
    .await
    .unwrap();
    let seen: i64 = sqlx::query_scalar("select count(*) from public.chama_invitations")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0);
    let answered = sqlx::query("select public.respond_to_invitation($1::uuid, true)")
        .bind(&invitation)
        .execute(&mut *tx)
        .await;
    assert!(answered.is_err(), "accepting through rpc is refused");
}

/// Sign-up does not tell who is registered (issue 29 #14): on a number its owner confirmed, a
/// second sign-up is answered as GoTrue answers it where sign-ups need a code — 200 and a user
/// that does not exist — and changes nothing: no code, no new password, no session.
#[tokio::test]
async fn signing_up_on_a_confirmed_number_answers_like_a_new_sign_up_and_changes_nothing() {
    let app = confirming_app().await;
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": INVITED, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 200);
    let genuine: Value = signup.json().await.unwrap();
    let code = sms_code(&app, INVITED).await;
    let verified = app
        .auth(Method::POST, "/verify")
        .json(&json!({ "type": "sms", "phone": INVITED, "token": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    let texts = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from internal.outbox where topic = 'sms' and payload->>'to' = $1",
        )
        .bind(INVITED)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    let sent_before = texts().await;

    let probe = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": "0799 000 111", "password": "attackers-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200, "no 422 that says the number is taken");
    let answer: Value = probe.json().await.unwrap();
    assert!(answer.get("access_token").is_none(), "{answer}");
    assert_ne!(answer["id"], genuine["id"], "the owner's id is not shown");
    assert_eq!(answer["phone"], genuine["phone"]);
    assert!(answer["phone_confirmed_at"].is_null());
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&answer),
        keys(&genuine),
        "same shape as a real sign-up"
    );
    assert_eq!(texts().await, sent_before, "no code goes to the owner");

    let users: i64 = sqlx::query_scalar("select count(*) from auth.users where phone = $1")
        .bind(INVITED.trim_start_matches('+'))
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
    for (password, status) in [("attackers-password-1", 400), (PASSWORD, 200)] {
        let login = app
            .auth(Method::POST, "/token?grant_type=password")
            .json(&json!({ "phone": INVITED, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), status, "password {password}");
    }
}
