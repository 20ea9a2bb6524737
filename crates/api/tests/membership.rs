//! Suspending and reinstating members, and closing a chama, over HTTP as the demo's users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const AKINYI_ID: &str = "5eed0000-0000-4000-8000-000000000003";
const MWANAISHA_ID: &str = "5eed0000-0000-4000-8000-000000000005";
const NAFULA_ID: &str = "5eed0000-0000-4000-8000-000000000007";
const CHEBET_ID: &str = "5eed0000-0000-4000-8000-000000000009";
const WANJIKU_ID: &str = "5eed0000-0000-4000-8000-000000000001";

async fn demo() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn status_of(app: &TestApp, user: &str) -> String {
    sqlx::query_scalar(
        "select status from public.chama_members where chama_id = $1::uuid and user_id = $2::uuid",
    )
    .bind(UMOJA)
    .bind(user)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn contribute(app: &TestApp, token: &str, key: &str, member: &str) -> u16 {
    app.client
        .post(app.url("/transactions"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "chama_id": UMOJA, "member_id": member, "amount": 50000, "payment_method": "cash" }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_official_suspends_a_member_who_then_loses_access_until_reinstated() {
    let app = demo().await;
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let suspend = format!("/chamas/{UMOJA}/members/{CHEBET_ID}/suspend");
    let reinstate = format!("/chamas/{UMOJA}/members/{CHEBET_ID}/reinstate");

    let (status, answer) = app
        .call(
            Method::POST,
            &treasurer,
            &suspend,
            Some(json!({ "reason": "three months of missed contributions" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "suspended");
    assert_eq!(status_of(&app, CHEBET_ID).await, "suspended");

    let (status, _) = app
        .call(Method::GET, &chebet, &format!("/chamas/{UMOJA}"), None)
        .await;
    assert_eq!(status, 404, "a suspended member no longer sees the chama");
    assert_eq!(
        contribute(&app, &treasurer, "while-suspended", CHEBET_ID).await,
        422,
        "no contribution is recorded for a suspended member"
    );
    let (status, again) = app
        .call(
            Method::POST,
            &treasurer,
            &suspend,
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(status, 422, "{again}");

    let (_, notes) = app.call(Method::GET, &chebet, "/notifications", None).await;
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["title"] == "Membership suspended"
                && n["body"].as_str().unwrap().contains("missed contributions")),
        "{notes}"
    );
    let audited = count(
        &app,
        "select count(*) from public.audit_logs where action = 'member.suspended' \
         and metadata->>'reason' = 'three months of missed contributions'",
    )
    .await;
    assert_eq!(audited, 1);

    let (status, answer) = app.call(Method::POST, &treasurer, &reinstate, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(status_of(&app, CHEBET_ID).await, "active");
    let (status, _) = app
        .call(Method::GET, &chebet, &format!("/chamas/{UMOJA}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        contribute(&app, &treasurer, "after-reinstating", CHEBET_ID).await,
        201
    );
    let (status, _) = app.call(Method::POST, &treasurer, &reinstate, None).await;
    assert_eq!(status, 422, "an active member is not reinstated");
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn suspensions_that_break_a_rule_are_refused_and_change_nothing() {
    let app = demo().await;
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let chebet = app.demo_token("chebet.langat@example.co.ke").await;
    let suspend = |user: &str| format!("/chamas/{UMOJA}/members/{user}/suspend");
    let why = Some(json!({ "reason": "not paying" }));

    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "a plain member",
            chebet.clone(),
            why.clone(),
            403,
            NAFULA_ID,
        ),
        ("no reason", treasurer.clone(), None, 422, NAFULA_ID),
        (
            "a blank reason",
            treasurer.clone(),
            Some(json!({ "reason": "  " })),
            422,
            NAFULA_ID,
        ),
        (
            "an unknown field",
            treasurer.clone(),
            Some(json!({ "why": "x" })),
            400,
            NAFULA_ID,
        ),
        (
            "the chairperson",
            treasurer.clone(),
            why.clone(),
            422,
            WANJIKU_ID,
        ),
        ("oneself", treasurer.clone(), why.clone(), 422, AKINYI_ID),
        (
            "not a member",
            treasurer.clone(),
            why.clone(),
            422,
            "5eed0000-0000-4000-8000-000000000002",
        ),
    ];
    for (what, token, body, expected, user) in cases {
        let (status, answer) = app.call(Method::POST, &token, &suspend(user), body).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
    }
    let (status, _) = app
        .call(
            Method::POST,
            &treasurer,
            &format!("/chamas/c4a3a000-0000-4000-8000-000000000003/members/{NAFULA_ID}/suspend"),
            why.clone(),
        )
        .await;
    assert_eq!(status, 404, "another chama is not even visible");

    // Umoja needs 2 approvals and has 3 officials: one may be suspended, not two.
    let (status, answer) = app
        .call(Method::POST, &chair, &suspend(MWANAISHA_ID), why.clone())
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = app
        .call(Method::POST, &chair, &suspend(AKINYI_ID), why.clone())
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("threshold"),
        "{answer}"
    );
    assert_eq!(status_of(&app, AKINYI_ID).await, "active");
    for user in [NAFULA_ID, CHEBET_ID, WANJIKU_ID] {
        assert_eq!(status_of(&app, user).await, "active");
    }
    let suspensions = count(
        &app,
        "select count(*) from public.audit_logs where action = 'member.suspended'",
    )
    .await;
    assert_eq!(
        suspensions, 1,
        "only the secretary's suspension went through"
    );
}

#[tokio::test]
async fn the_chairperson_closes_an_empty_chama_and_nothing_else() {
    let app = demo().await;
    let chair = app.demo_token("wanjiku.kamau@example.co.ke").await;
    let treasurer = app.demo_token("akinyi.achieng@example.co.ke").await;
    let why = Some(json!({ "reason": "the group has wound up" }));

    // Umoja holds money and a withdrawal in progress: refused, with the reason.
    let (status, answer) = app
        .call(
            Method::POST,
            &chair,
            &format!("/chamas/{UMOJA}/close"),
            why.clone(),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("KES"),
        "{answer}"
    );
    let (status, _) = app
        .call(
            Method::POST,
            &treasurer,
            &format!("/chamas/{UMOJA}/close"),
            why.clone(),
        )
        .await;
    assert_eq!(status, 403, "only the chairperson closes");

    // A new, empty chama closes; then it takes no contributions.
    let (status, chama) = app
        .call(
            Method::POST,
            &chair,
            "/chamas",
            Some(json!({ "name": "Short-lived Group", "contribution_amount": 100000 })),
        )
        .await;
    assert_eq!(status, 201, "{chama}");
    let id = chama["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call(Method::POST, &chair, &format!("/chamas/{id}/close"), None)
        .await;
    assert_eq!(status, 422, "a reason is required");
    let (status, answer) = app
        .call(
            Method::POST,
            &chair,
            &format!("/chamas/{id}/close"),
            why.clone(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, closed) = app
        .call(Method::GET, &chair, &format!("/chamas/{id}"), None)
        .await;
    assert_eq!(closed["status"], "closed");
    let refused = app
        .client
        .post(app.url("/transactions"))
        .bearer_auth(&chair)
        .header("Idempotency-Key", "into-a-closed-chama")
        .json(&json!({ "chama_id": id, "member_id": WANJIKU_ID, "amount": 50000, "payment_method": "cash" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let (status, _) = app
        .call(Method::POST, &chair, &format!("/chamas/{id}/close"), why)
        .await;
    assert_eq!(status, 422, "closed once");
    app.db.assert_ledger_balanced().await;
}
