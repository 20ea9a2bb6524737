//! Withdrawals approved by k of the officials, over HTTP as the demo's real users, with the
//! ledger checked after every test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_testkit::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
// Umoja: Wanjiku chairs, Akinyi is treasurer, Mwanaisha secretary; Nafula and Chebet members.
const WANJIKU: &str = "wanjiku.kamau@example.co.ke";
const AKINYI: &str = "akinyi.achieng@example.co.ke";
const MWANAISHA: &str = "mwanaisha.hassan@example.co.ke";
const CHEBET: &str = "chebet.langat@example.co.ke";

struct Demo {
    app: TestApp,
}

impl Demo {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        pesachama_store::seed_demo(&app.db.pool).await.unwrap();
        Self { app }
    }

    async fn request(&self, token: &str, key: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(&format!("/chamas/{UMOJA}/disbursements")))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn act(
        &self,
        token: &str,
        id: &str,
        action: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .post(self.app.url(&format!("/disbursements/{id}/{action}")))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn balance(&self) -> i64 {
        sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
            .bind(UMOJA)
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_withdrawal_needs_k_officials_reserves_the_money_and_is_paid_once() {
    let demo = Demo::new().await;
    let chebet = demo.app.demo_token(CHEBET).await;
    let akinyi = demo.app.demo_token(AKINYI).await;
    let wanjiku = demo.app.demo_token(WANJIKU).await;
    let mwanaisha = demo.app.demo_token(MWANAISHA).await;
    let before = demo.balance().await;

    let created = demo
        .request(
            &chebet,
            "fees-1",
            json!({ "amount": 250_000, "reason": "Hospital bill for my mother" }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let request: Value = created.json().await.unwrap();
    assert_eq!(request["status"], "pending");
    assert_eq!(request["required_approvals"], 2);
    assert_eq!(request["recipient_phone"], "+254115345009");
    let id = request["id"].as_str().unwrap().to_owned();
    let told = demo
        .count("select count(*) from public.notifications where title = 'Withdrawal awaiting your approval' and data->>'disbursement_request_id' = (select id::text from public.disbursement_requests where reason = 'Hospital bill for my mother')")
        .await;
    assert_eq!(told, 3, "each official is told");

    // A member cannot decide; the requester (even an official) never decides on their own.
    assert_eq!(demo.act(&chebet, &id, "approve", None).await.status(), 403);

    let first = demo
        .act(
            &akinyi,
            &id,
            "approve",
            Some(json!({ "comment": "Pole sana" })),
        )
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (first["status"].as_str(), first["approvals"].as_i64()),
        (Some("pending"), Some(1))
    );
    assert_eq!(
        demo.balance().await,
        before,
        "nothing moves before the threshold"
    );
    assert_eq!(
        demo.act(&akinyi, &id, "approve", None).await.status(),
        409,
        "once per official"
    );

    let second: Value = demo
        .act(&wanjiku, &id, "approve", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["status"], "approved");
    assert_eq!(second["decisions"].as_array().unwrap().len(), 2);
    assert_eq!(demo.balance().await, before - 250_000, "reserved");
    assert_eq!(
        demo.count("select count(*) from internal.outbox where topic = 'payout'")
            .await,
        1
    );
    // Too late for a third decision.
    assert_eq!(
        demo.act(&mwanaisha, &id, "approve", None).await.status(),
        422
    );

    // While M-Pesa is paying it (the B2C worker has started), it cannot be paid in cash too.
    let started: Option<String> =
        sqlx::query_scalar("select internal.b2c_payout_starting($1::uuid)")
            .bind(&id)
            .fetch_one(&demo.app.db.pool)
            .await
            .unwrap();
    assert!(started.is_some());
    let refused = demo
        .act(
            &akinyi,
            &id,
            "mark-paid",
            Some(json!({ "reference": "CASH-77" })),
        )
        .await;
    assert_eq!(refused.status(), 422);
    assert!(
        refused.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("M-Pesa is already paying")
    );
    assert_eq!(demo.balance().await, before - 250_000);
    // As if the B2C request had been refused before Daraja took it: approved again.
    sqlx::query("update public.disbursement_requests set status = 'approved', originator_conversation_id = null where id = $1::uuid")
        .bind(&id)
        .execute(&demo.app.db.pool)
        .await
        .unwrap();

    // Paid in cash by the treasurer.
    assert_eq!(
        demo.act(
            &wanjiku,
            &id,
            "mark-paid",
            Some(json!({ "reference": "CASH-77" }))
        )
        .await
        .status(),
        403,
        "the treasurer's job"
    );
    let paid = demo
        .act(
            &akinyi,
            &id,
            "mark-paid",
            Some(json!({ "reference": "CASH-77" })),
        )
        .await;
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["status"], "completed");
    assert!(paid["transaction_id"].is_string());
    assert_eq!(demo.balance().await, before - 250_000);
    assert_eq!(
        demo.act(
            &akinyi,
            &id,
            "mark-paid",
            Some(json!({ "reference": "CASH-77" }))
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        demo.count(
            "select count(*) from internal.outbox where topic = 'payout' and status = 'pending'"
        )
        .await,
        0,
        "the payout job is withdrawn"
    );
    demo.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn rejections_cancellation_and_bad_requests() {
    let demo = Demo::new().await;
    let chebet = demo.app.demo_token(CHEBET).await;
    let akinyi = demo.app.demo_token(AKINYI).await;
    let wanjiku = demo.app.demo_token(WANJIKU).await;
    let mwanaisha = demo.app.demo_token(MWANAISHA).await;
    let before = demo.balance().await;

    // An official asking: the two other officials can still reach 2 approvals.
    let own: Value = demo
        .request(
            &akinyi,
            "own-1",
            json!({ "amount": 10_000, "reason": "Transport to the bank" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let own_id = own["id"].as_str().unwrap();
    assert_eq!(
        demo.act(&akinyi, own_id, "approve", None).await.status(),
        403
    );
    // With Akinyi asking, only Wanjiku and Mwanaisha can approve, and 2 are needed: one
    // rejection settles it.
    let after_one: Value = demo
        .act(&wanjiku, own_id, "reject", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        after_one["status"], "rejected",
        "only Mwanaisha is left, and 2 are needed"
    );

    let mine: Value = demo
        .request(
            &chebet,
            "mine-1",
            json!({ "amount": 10_000, "reason": "Seeds for the shamba" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let mine_id = mine["id"].as_str().unwrap();
    let one_no: Value = demo
        .act(&mwanaisha, mine_id, "reject", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        one_no["status"], "pending",
        "two officials can still approve"
    );
    assert_eq!(
        demo.act(&akinyi, mine_id, "cancel", None).await.status(),
        403,
        "not hers"
    );
    let cancelled: Value = demo
        .act(&chebet, mine_id, "cancel", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        demo.act(&wanjiku, mine_id, "approve", None).await.status(),
        422
    );

    for (body, what) in [
        (json!({ "amount": 0, "reason": "Nothing" }), "zero"),
        (json!({ "amount": 10.5, "reason": "Fraction" }), "fraction"),
        (json!({ "amount": 100, "reason": "x" }), "short reason"),
        (
            json!({ "amount": 100, "reason": "For someone else", "recipient_member_id": "5eed0000-0000-4000-8000-000000000002" }),
            "not a member",
        ),
    ] {
        assert_eq!(
            demo.request(&chebet, what, body).await.status(),
            422,
            "{what}"
        );
    }
    let keyless = demo
        .app
        .client
        .post(demo.app.url(&format!("/chamas/{UMOJA}/disbursements")))
        .bearer_auth(&chebet)
        .json(&json!({ "amount": 100, "reason": "No key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 422);
    let outsider = demo
        .app
        .auth(Method::POST, "/signup")
        .json(&json!({ "email": "outsider@example.co.ke", "password": "tembo-na-twiga-42" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        demo.request(
            &outsider,
            "o-1",
            json!({ "amount": 100, "reason": "Let me in" })
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        demo.act(&outsider, own_id, "approve", None).await.status(),
        404
    );
    let listed: Value = demo
        .app
        .client
        .get(demo.app.url(&format!("/chamas/{UMOJA}/disbursements")))
        .bearer_auth(&chebet)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "the demo's, Akinyi's and Chebet's"
    );
    assert_eq!(demo.balance().await, before);
    demo.app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn concurrent_approvals_and_two_requests_racing_for_the_last_shilling_end_correctly() {
    let demo = Demo::new().await;
    let chebet = demo.app.demo_token(CHEBET).await;
    let akinyi = demo.app.demo_token(AKINYI).await;
    let wanjiku = demo.app.demo_token(WANJIKU).await;
    let mwanaisha = demo.app.demo_token(MWANAISHA).await;
    let nafula_phone_login = {
        let response = demo
            .app
            .auth(Method::POST, "/token?grant_type=password")
            .json(&json!({ "phone": "0720345007", "password": "password123" }))
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let balance = demo.balance().await;
    // Two requests of 60 % of the balance each: only one can be paid.
    let amount = balance * 6 / 10;
    let mut ids = Vec::new();
    for (token, key) in [(&chebet, "race-a"), (&nafula_phone_login, "race-b")] {
        let request: Value = demo
            .request(
                token,
                key,
                json!({ "amount": amount, "reason": "Emergency school fees" }),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(request["id"].as_str().unwrap().to_owned());
    }
    // All three officials approve both requests at once.
    let mut tasks = Vec::new();
    for id in &ids {
        for token in [&akinyi, &wanjiku, &mwanaisha] {
            let client = demo.app.client.clone();
            let url = demo.app.url(&format!("/disbursements/{id}/approve"));
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
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
    // Per request: two approvals land (200), the third finds it decided (422).
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        2,
        "{statuses:?}"
    );

    let outcomes: Vec<(String, i32)> = sqlx::query_as(
        "select status, approvals_count from public.disbursement_requests where reason = 'Emergency school fees' order by status",
    )
    .fetch_all(&demo.app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [("approved".to_owned(), 2), ("failed".to_owned(), 2)],
        "one wins the money, the other is told there is not enough"
    );
    assert_eq!(demo.balance().await, balance - amount);
    assert_eq!(
        demo.count("select count(*) from internal.journals where kind = 'disbursement'")
            .await,
        1
    );
    demo.app.db.assert_ledger_balanced().await;
}
