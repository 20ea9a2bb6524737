//! Input no column can hold: a clear 422 naming the field, and nothing written.

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";

#[tokio::test]
async fn a_nul_character_in_any_text_field_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let audit_rows = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from public.audit_logs")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let before = audit_rows().await;
    for (method, path, body, field) in [
        (
            Method::POST,
            "/chamas".to_owned(),
            json!({ "name": "Umoja\u{0}", "contribution_amount": 100000 }),
            "name",
        ),
        (
            Method::PATCH,
            format!("/chamas/{UMOJA}"),
            json!({ "description": "a\u{0}b" }),
            "description",
        ),
        (
            Method::PATCH,
            "/users/me".to_owned(),
            json!({ "first_name": "\u{0}" }),
            "first_name",
        ),
        (
            Method::POST,
            format!("/chamas/{UMOJA}/meetings"),
            json!({ "title": "AGM\u{0}", "scheduled_for": "2030-01-01T10:00:00Z" }),
            "title",
        ),
    ] {
        let (status, error) = app.call(method, &chair, &path, Some(body)).await;
        assert_eq!(status, 422, "{path}: {error}");
        assert_eq!(error["error"]["details"]["field"], field, "{path}: {error}");
    }
    assert_eq!(audit_rows().await, before, "nothing was written");

    // GoTrue's routes answer in GoTrue's shape.
    let signup = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": "nul@example.com", "password": "a-long-password", "data": { "first_name": "a\u{0}" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 422);
    let body: Value = signup.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("data.first_name")),
        "{body}"
    );

    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_frameworks_own_refusals_answer_in_the_error_envelope() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let (status, error) = app
        .call(Method::GET, &chair, "/chamas/not-a-uuid", None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{error}"
    );
}
