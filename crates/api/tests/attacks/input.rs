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

/// A name others read that holds a character hiding or reordering text is a 422 naming the
/// field and the character (issue 29 #14); names in any script, with emoji sequences, pass.
#[tokio::test]
async fn names_that_hide_or_reorder_text_are_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let chamas = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from public.chamas")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
    };
    let before = chamas().await;
    for (method, path, body, field, code_point) in [
        (
            Method::POST,
            "/chamas".to_owned(),
            json!({ "name": "Umo\u{200B}ja", "contribution_amount": 100000 }),
            "name",
            "U+200B",
        ),
        (
            Method::PATCH,
            format!("/chamas/{UMOJA}"),
            json!({ "name": "Umoja\u{202E}puorG" }),
            "name",
            "U+202E",
        ),
        (
            Method::PATCH,
            "/users/me".to_owned(),
            json!({ "first_name": "Wanjiku\u{2066}" }),
            "first_name",
            "U+2066",
        ),
        (
            Method::PATCH,
            "/users/me".to_owned(),
            json!({ "last_name": "Ka\u{200D}mau" }),
            "last_name",
            "U+200D",
        ),
    ] {
        let (status, answer) = app.call(method, &chair, &path, Some(body)).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(code_point),
            "{answer}"
        );
    }
    assert_eq!(chamas().await, before);
    let (name, last): (String, String) = sqlx::query_as(
        "select c.name, u.last_name from public.chamas c, public.users u
          where c.id = $1 and u.email = 'wanjiku.kamau@example.co.ke'",
    )
    .bind(uuid::Uuid::parse_str(UMOJA).unwrap())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(!name.contains('\u{202E}') && !last.contains('\u{200D}'));

    let (status, answer) = app
        .call(
            Method::PATCH,
            &chair,
            "/users/me",
            Some(json!({ "first_name": "Zoë", "last_name": "محمد" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = app
        .call(
            Method::POST,
            &chair,
            "/chamas",
            Some(json!({ "name": "Wamama 👩\u{200D}👩\u{200D}👧", "contribution_amount": 100000 })),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}
