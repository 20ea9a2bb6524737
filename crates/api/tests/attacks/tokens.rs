//! Tokens: what a valid signature alone must not buy.

use pesachama_testkit::{TEST_JWT_SECRET, TestApp};
use reqwest::Method;
use serde_json::json;

/// A token signed with the project's secret for a demo user and a live session of theirs, not
/// valid until `nbf`.
fn token_valid_from(user: &str, session: uuid::Uuid, nbf: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "aud": "authenticated", "role": "authenticated", "sub": user, "email": "", "phone": "",
        "iat": now, "nbf": nbf, "exp": now + 3600, "iss": "http://127.0.0.1:3000/auth/v1",
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
async fn a_token_is_refused_before_its_not_before_time() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let wanjiku = "5eed0000-0000-4000-8000-000000000001";
    let session = crate::live_session(&app.db.pool, wanjiku).await;
    let now = chrono::Utc::now().timestamp();
    let (status, _) = app
        .call(
            Method::GET,
            &token_valid_from(wanjiku, session, now + 600),
            "/chamas",
            None,
        )
        .await;
    // 403 `bad_jwt`, GoTrue's answer to a token it cannot accept.
    assert_eq!(status, 403, "a token from the future is not valid yet");
    let (status, chamas) = app
        .call(
            Method::GET,
            &token_valid_from(wanjiku, session, now - 5),
            "/chamas",
            None,
        )
        .await;
    assert_eq!(status, 200, "{chamas}");
}
