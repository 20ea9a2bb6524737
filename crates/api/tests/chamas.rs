//! Chamas and manual contributions over HTTP, as real users, with the ledger checked after
//! every test that moves money.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "tembo-na-twiga-42";
const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const KISUMU: &str = "c4a3a000-0000-4000-8000-000000000002";
const AKINYI_TREASURER: &str = "akinyi.achieng@example.co.ke";
const NAFULA_MEMBER: &str = "5eed0000-0000-4000-8000-000000000007";
const CHEBET_MEMBER: &str = "chebet.langat@example.co.ke";

async fn sign_up(app: &TestApp, email: &str) -> String {
    let response = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn demo_app() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn contribute(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/transactions"))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

async fn balance(db: &TestDb, chama: &str) -> i64 {
    sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
        .bind(chama)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn creating_a_chama_makes_the_creator_its_chairperson_and_only_members_see_it() {
    let app = TestApp::spawn().await;
    let founder = sign_up(&app, "founder@example.co.ke").await;
    let outsider = sign_up(&app, "outsider@example.co.ke").await;

    let created = app
        .client
        .post(app.url("/chamas"))
        .bearer_auth(&founder)
        .json(&json!({ "name": "  Nyeri Dairy Farmers ", "contribution_amount": 50000, "contribution_frequency": "weekly" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let chama: Value = created.json().await.unwrap();
    assert_eq!(chama["name"], "Nyeri Dairy Farmers");
    assert_eq!(chama["chama_type"], "savings");
    assert_eq!(chama["balance"], 0);
    assert_eq!(chama["my_role"], "chairperson");
    assert_eq!(chama["required_approvals"], 1);
    let id = chama["id"].as_str().unwrap();

    let mine: Value = app
        .client
        .get(app.url("/chamas"))
        .bearer_auth(&founder)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);

    let theirs: Value = app
        .client
        .get(app.url("/chamas"))
        .bearer_auth(&outsider)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    let probe = app
        .client
        .get(app.url(&format!("/chamas/{id}")))
        .bearer_auth(&outsider)
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 404);
    let unknown = app
        .client
        .get(app.url(&format!("/chamas/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&founder)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn bad_chamas_are_refused_naming_the_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let founder = sign_up(&app, "founder@example.co.ke").await;
    let cases = [
        (json!({ "name": "X", "contribution_amount": 100 }), "name"),
        (
            json!({ "name": "Valid", "contribution_amount": 0 }),
            "contribution_amount",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": -500 }),
            "contribution_amount",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": 100.5 }),
            "contribution_amount",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": "100" }),
            "contribution_amount",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": 1_000_000_000_001i64 }),
            "contribution_amount",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": 100, "chama_type": "ponzi" }),
            "chama_type",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": 100, "contribution_frequency": "daily" }),
            "contribution_frequency",
        ),
        (
            json!({ "name": "Valid", "contribution_amount": 100, "required_approvals": 3 }),
            "required_approvals",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .client
            .post(app.url("/chamas"))
            .bearer_auth(&founder)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    let malformed = app
        .client
        .post(app.url("/chamas"))
        .bearer_auth(&founder)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let anonymous = app
        .client
        .post(app.url("/chamas"))
        .json(&json!({ "name": "Valid", "contribution_amount": 100 }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        count(&app.db, "select count(*) from public.chamas").await,
        0
    );
}

#[tokio::test]
async fn the_treasurer_records_a_contribution_once_per_idempotency_key() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let before = balance(&app.db, UMOJA).await;
    let body = json!({
        "chama_id": UMOJA, "member_id": NAFULA_MEMBER, "amount": 100000,
        "payment_method": "cash", "reference": "RCPT-0042", "description": "November, paid at the meeting"
    });

    let first = contribute(&app, &treasurer, Some("nov-nafula-1"), body.clone()).await;
    assert_eq!(first.status(), 201, "{:?}", first.text().await);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let recorded: Value = first.json().await.unwrap();
    assert_eq!(recorded["amount"], 100000);
    assert_eq!(recorded["status"], "completed");
    assert_eq!(recorded["member_id"], NAFULA_MEMBER);
    assert_eq!(balance(&app.db, UMOJA).await, before + 100000);

    // The client lost the answer and retries: the same answer, nothing recorded twice.
    let retry = contribute(&app, &treasurer, Some("nov-nafula-1"), body.clone()).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], recorded["id"]);
    assert_eq!(balance(&app.db, UMOJA).await, before + 100000);

    // The same key for another request is a mistake the client must hear about.
    let mut other = body.clone();
    other["amount"] = json!(200000);
    let reused = contribute(&app, &treasurer, Some("nov-nafula-1"), other).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(balance(&app.db, UMOJA).await, before + 100000);

    // The member is told, in the same transaction.
    let notified = count(
        &app.db,
        "select count(*) from public.notifications where user_id = '5eed0000-0000-4000-8000-000000000007' and title = 'Contribution received'",
    )
    .await;
    assert_eq!(notified, 1);
    // Audited once, as recorded by the treasurer who asked, with the role requests have.
    let audited = count(
        &app.db,
        &format!(
            "select count(*) from public.audit_logs where action = 'transactions.insert'
                and record_id = '{}' and actor_id = '5eed0000-0000-4000-8000-000000000003'
                and actor_role = 'authenticated'",
            recorded["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(audited, 1);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn only_the_chamas_treasurer_or_chairperson_records_and_bad_contributions_write_nothing() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let member = app.demo_token(CHEBET_MEMBER).await;
    let outsider = sign_up(&app, "outsider@example.co.ke").await;
    let transactions_before = count(&app.db, "select count(*) from public.transactions").await;
    let good = json!({ "chama_id": UMOJA, "member_id": NAFULA_MEMBER, "amount": 5000, "payment_method": "cash" });

    let by_member = contribute(&app, &member, Some("k1"), good.clone()).await;
    assert_eq!(by_member.status(), 403);
    let by_outsider = contribute(&app, &outsider, Some("k2"), good.clone()).await;
    assert_eq!(
        by_outsider.status(),
        404,
        "a chama one cannot see is not found"
    );
    // Akinyi is a plain member of Kisumu: her treasurer role in Umoja does not carry over.
    let mut elsewhere = good.clone();
    elsewhere["chama_id"] = json!(KISUMU);
    elsewhere["member_id"] = json!("5eed0000-0000-4000-8000-000000000010");
    assert_eq!(
        contribute(&app, &treasurer, Some("k3"), elsewhere)
            .await
            .status(),
        403
    );

    let mut cases = Vec::new();
    for amount in [
        json!(0),
        json!(-100),
        json!(10.5),
        json!("5000"),
        json!(1_000_000_001i64),
    ] {
        let mut body = good.clone();
        body["amount"] = amount;
        cases.push((body, "amount"));
    }
    let mut mpesa = good.clone();
    mpesa["payment_method"] = json!("mpesa");
    cases.push((mpesa, "payment_method"));
    for (body, field) in cases {
        let response = contribute(&app, &treasurer, Some("bad"), body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["details"]["field"],
            field
        );
    }
    // A member of another chama, and a missing key.
    let mut stranger = good.clone();
    stranger["member_id"] = json!("5eed0000-0000-4000-8000-000000000002");
    assert_eq!(
        contribute(&app, &treasurer, Some("k4"), stranger)
            .await
            .status(),
        422
    );
    let keyless = contribute(&app, &treasurer, None, good.clone()).await;
    assert_eq!(keyless.status(), 422);
    assert_eq!(
        keyless.json::<Value>().await.unwrap()["error"]["details"]["field"],
        "Idempotency-Key"
    );

    assert_eq!(
        count(&app.db, "select count(*) from public.transactions").await,
        transactions_before
    );
    assert_eq!(
        count(&app.db, "select count(*) from internal.idempotency_keys").await,
        0
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn many_concurrent_contributions_end_with_exact_balances() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let before = balance(&app.db, UMOJA).await;
    let nafula_before: i64 = sqlx::query_scalar(
        "select contributed_total from public.chama_members where chama_id = $1::uuid and user_id = $2::uuid",
    )
    .bind(UMOJA)
    .bind(NAFULA_MEMBER)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();

    // 40 distinct contributions, each sent twice at once (a client retrying too eagerly).
    let mut tasks = Vec::new();
    for i in 0..40 {
        for _ in 0..2 {
            let client = app.client.clone();
            let url = app.url("/transactions");
            let token = treasurer.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .header("idempotency-key", format!("burst-{i}"))
                    .json(&json!({ "chama_id": UMOJA, "member_id": NAFULA_MEMBER, "amount": 1000 + i, "payment_method": "cash" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    // Each pair: one recorded (201), the other replayed (201) or told it is in flight (409).
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let expected: i64 = (0..40).map(|i| 1000 + i).sum();
    assert_eq!(balance(&app.db, UMOJA).await, before + expected);
    let nafula_after: i64 = sqlx::query_scalar(
        "select contributed_total from public.chama_members where chama_id = $1::uuid and user_id = $2::uuid",
    )
    .bind(UMOJA)
    .bind(NAFULA_MEMBER)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(nafula_after, nafula_before + expected);
    assert_eq!(
        count(
            &app.db,
            "select count(*) from internal.idempotency_keys where key like 'burst-%'"
        )
        .await,
        40
    );
    app.db.assert_ledger_balanced().await;
}

async fn reverse(
    app: &TestApp,
    token: &str,
    id: &str,
    key: &str,
    reason: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/transactions/{id}/reverse")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "reason": reason }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_official_reverses_a_wrong_contribution_once_with_a_reason() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let member = app.demo_token(CHEBET_MEMBER).await;
    let outsider = sign_up(&app, "outsider@example.co.ke").await;
    let before = balance(&app.db, UMOJA).await;
    let recorded: Value = contribute(
        &app,
        &treasurer,
        Some("typo-1"),
        json!({ "chama_id": UMOJA, "member_id": NAFULA_MEMBER, "amount": 1_000_000, "payment_method": "cash" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = recorded["id"].as_str().unwrap();
    assert_eq!(balance(&app.db, UMOJA).await, before + 1_000_000);

    assert_eq!(reverse(&app, &member, id, "r0", "typo").await.status(), 403);
    assert_eq!(
        reverse(&app, &outsider, id, "r0", "typo").await.status(),
        404
    );
    assert_eq!(reverse(&app, &treasurer, id, "r0", "").await.status(), 422);

    let reversed = reverse(&app, &treasurer, id, "r1", "Typed 10,000 instead of 1,000").await;
    assert_eq!(reversed.status(), 201);
    let reversal: Value = reversed.json().await.unwrap();
    assert_eq!(reversal["type"], "reversal");
    assert_eq!(reversal["reverses_id"], recorded["id"]);
    assert_eq!(reversal["amount"], 1_000_000);
    assert_eq!(balance(&app.db, UMOJA).await, before);
    let status: String =
        sqlx::query_scalar("select status from public.transactions where id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "reversed");

    // A replay answers the same reversal; a second reversal under another key is refused.
    let replay = reverse(&app, &treasurer, id, "r1", "Typed 10,000 instead of 1,000").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let again = reverse(&app, &treasurer, id, "r2", "Once more").await;
    assert_eq!(again.status(), 422);
    // A reversal is not itself reversible here.
    let reversal_id = reversal["id"].as_str().unwrap();
    assert_eq!(
        reverse(&app, &treasurer, reversal_id, "r3", "Undo the undo")
            .await
            .status(),
        422
    );
    assert_eq!(balance(&app.db, UMOJA).await, before);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn money_already_spent_cannot_be_reversed_away() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let recorded: Value = contribute(
        &app,
        &treasurer,
        Some("big"),
        json!({ "chama_id": UMOJA, "member_id": NAFULA_MEMBER, "amount": 500_000, "payment_method": "bank" }),
    )
    .await
    .json()
    .await
    .unwrap();
    // The chama pays out everything it holds (as a disbursement will), straight in the ledger.
    sqlx::query(
        "select internal.post_journal($1::uuid, 'disbursement', 'test payout', jsonb_build_array(
            jsonb_build_object('account_id', internal.ensure_account($1::uuid, 'disbursements'), 'amount', c.balance),
            jsonb_build_object('account_id', internal.ensure_account($1::uuid, 'cash'), 'amount', -c.balance)))
         from public.chamas c where c.id = $1::uuid",
    )
    .bind(UMOJA)
    .execute(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(balance(&app.db, UMOJA).await, 0);
    let refused = reverse(
        &app,
        &treasurer,
        recorded["id"].as_str().unwrap(),
        "k",
        "Wrong member",
    )
    .await;
    assert_eq!(refused.status(), 422);
    let error: Value = refused.json().await.unwrap();
    // The chama's balance is updated first (the lock order), so its rule speaks first; the
    // cash account's own no-overdraft rule stands behind it.
    assert_eq!(
        error["error"]["details"]["constraint"],
        "chamas_balance_not_negative"
    );
    assert_eq!(balance(&app.db, UMOJA).await, 0);
    app.db.assert_ledger_balanced().await;
}
