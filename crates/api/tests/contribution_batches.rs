//! Manual contributions recorded a batch at a time: each request of a batch is checked and
//! answered on its own, a refused one writes nothing, and the books balance however the
//! requests were grouped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_api::ApiError;
use pesachama_api::contribution_batches::{ContributionRequest, ContributionWriter, record_batch};
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use uuid::Uuid;

const UMOJA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000001);
const KISUMU: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000002);
const ELDORET: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000003);
const WANJIKU: Uuid = person(1); // chairperson of Umoja
const AKINYI: Uuid = person(3); // treasurer of Umoja, member of Kisumu
const NAFULA: Uuid = person(7); // member of Umoja
const MUTUA: Uuid = person(8); // secretary of Kisumu, member of Eldoret
const CHEBET: Uuid = person(9); // member of Umoja, treasurer of Eldoret
const BARASA: Uuid = person(0x10); // member of Kisumu

/// The demo person whose id ends in the hexadecimal digits of `n`.
const fn person(n: u128) -> Uuid {
    Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000000 + n)
}

async fn demo_db() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    db
}

fn request(actor: Uuid, chama: Uuid, member: Uuid, amount: i64, key: &str) -> ContributionRequest {
    ContributionRequest {
        actor,
        chama_id: chama,
        member_id: member,
        amount,
        method: "cash".into(),
        reference: None,
        description: Some(format!("by batch, key {key}")),
        idempotency_key: key.into(),
        request_hash: format!("hash-of-{key}-{amount}"),
    }
}

async fn scalar<T>(db: &TestDb, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

async fn balance(db: &TestDb, chama: Uuid) -> i64 {
    sqlx::query_scalar("select balance from public.chamas where id = $1")
        .bind(chama)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn contributed(db: &TestDb, chama: Uuid, member: Uuid) -> i64 {
    sqlx::query_scalar(
        "select contributed_total from public.chama_members where chama_id = $1 and user_id = $2",
    )
    .bind(chama)
    .bind(member)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

fn status(answer: &Result<Value, ApiError>) -> u16 {
    match answer {
        Ok(_) => 201,
        Err(err) => err.status().as_u16(),
    }
}

#[tokio::test]
async fn each_request_of_a_batch_is_answered_on_its_own_and_only_the_good_ones_write() {
    let db = demo_db().await;
    let transactions_before: i64 = scalar(&db, "select count(*) from public.transactions").await;
    let (umoja, eldoret) = (balance(&db, UMOJA).await, balance(&db, ELDORET).await);
    let nafula = contributed(&db, UMOJA, NAFULA).await;

    let mut mpesa = request(AKINYI, UMOJA, NAFULA, 1_000, "by-mpesa");
    mpesa.method = "mpesa".into();
    let mut long_key = request(AKINYI, UMOJA, NAFULA, 1_000, "x");
    long_key.idempotency_key = "k".repeat(256);
    let requests = [
        request(AKINYI, UMOJA, NAFULA, 100_000, "a"), // the treasurer: recorded
        request(AKINYI, KISUMU, BARASA, 5_000, "b"),  // a plain member there: 403
        request(CHEBET, KISUMU, BARASA, 5_000, "c"),  // not in that chama: 404
        mpesa,                                        // M-Pesa comes through M-Pesa: 422
        request(AKINYI, UMOJA, NAFULA, 100_000, "a"), // the same key again, in flight: 409
        request(WANJIKU, UMOJA, CHEBET, 70_000, "d"), // the chairperson: recorded
        request(AKINYI, UMOJA, BARASA, 5_000, "e"),   // not a member of Umoja: 422
        long_key,                                     // a key over 255 characters: 422
        request(CHEBET, ELDORET, MUTUA, 50_000, "f"), // another chama's treasurer: recorded
    ];
    let refs: Vec<&ContributionRequest> = requests.iter().collect();
    let answers = record_batch(&db.pool, &refs).await.unwrap();
    let statuses: Vec<u16> = answers.iter().map(status).collect();
    assert_eq!(statuses, [201, 403, 404, 422, 409, 201, 422, 422, 201]);
    let recorded = answers[0].as_ref().unwrap();
    assert_eq!(recorded["replayed"], false);
    assert_eq!(recorded["transaction"]["amount"], 100_000);
    assert_eq!(recorded["transaction"]["member_id"], NAFULA.to_string());
    assert_eq!(recorded["transaction"]["recorded_by"], AKINYI.to_string());
    assert_eq!(recorded["transaction"]["status"], "completed");
    let Err(ApiError::Validation { message, .. }) = &answers[6] else {
        panic!("{:?}", answers[6]);
    };
    assert_eq!(message, "member_id is not an active member of this chama");

    // Three recorded, nothing of the other six.
    let transactions_after: i64 = scalar(&db, "select count(*) from public.transactions").await;
    assert_eq!(transactions_after, transactions_before + 3);
    assert_eq!(balance(&db, UMOJA).await, umoja + 170_000);
    assert_eq!(balance(&db, ELDORET).await, eldoret + 50_000);
    assert_eq!(contributed(&db, UMOJA, NAFULA).await, nafula + 100_000);
    let keys: i64 = scalar(&db, "select count(*) from internal.idempotency_keys").await;
    assert_eq!(keys, 3);

    // Each is audited as its recorder's, told to its member, and queued for delivery.
    let audited: i64 = scalar(
        &db,
        "select count(*) from public.audit_logs a join public.transactions t on a.record_id = t.id::text
          where a.action = 'transactions.insert' and a.actor_id = t.created_by
            and a.actor_role = 'authenticated' and t.description like 'by batch%'",
    )
    .await;
    assert_eq!(audited, 3);
    let queued: i64 = scalar(
        &db,
        "select count(*) from public.notifications n
           join internal.outbox o on o.payload ->> 'notification_id' = n.id::text
          where n.title = 'Contribution received'",
    )
    .await;
    assert_eq!(
        queued, 3,
        "every member of the demo has a phone: one SMS each"
    );

    // A retry answers the first answer; the same key with another body is refused.
    let mut changed = request(AKINYI, UMOJA, NAFULA, 100_000, "a");
    changed.request_hash = "another body".into();
    let retry = request(AKINYI, UMOJA, NAFULA, 100_000, "a");
    let answers = record_batch(&db.pool, &[&retry]).await.unwrap();
    let replay = answers[0].as_ref().unwrap();
    assert_eq!(replay["replayed"], true);
    assert_eq!(replay["transaction"]["id"], recorded["transaction"]["id"]);
    let answers = record_batch(&db.pool, &[&changed]).await.unwrap();
    assert_eq!(status(&answers[0]), 422);
    assert_eq!(balance(&db, UMOJA).await, umoja + 170_000);
    db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn requests_queued_together_are_written_in_one_transaction() {
    let db = demo_db().await;
    let writer = ContributionWriter::start(db.pool.clone(), 1);
    let umoja = balance(&db, UMOJA).await;
    // On this single-threaded runtime every request is queued before the writer first runs.
    let requests = (0..20).map(|n| {
        writer.record(request(
            AKINYI,
            UMOJA,
            [NAFULA, CHEBET][n % 2],
            1_000 + n as i64,
            &format!("together-{n}"),
        ))
    });
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| status(a) == 201), "{answers:?}");
    let written_by: i64 = scalar(
        &db,
        "select count(distinct xmin::text) from public.transactions where description like 'by batch%'",
    )
    .await;
    assert_eq!(written_by, 1, "twenty requests, one transaction");
    let total: i64 = (0..20).map(|n| 1_000 + n).sum();
    assert_eq!(balance(&db, UMOJA).await, umoja + total);
    db.assert_ledger_balanced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_over_http_end_with_exact_balances() {
    let app = TestApp::spawn_with(demo_db().await, TestApp::config()).await;
    let treasurers = [
        ("akinyi.achieng@example.co.ke", UMOJA, [NAFULA, CHEBET]),
        ("njoroge.mwangi@example.co.ke", KISUMU, [BARASA, MUTUA]),
        ("chebet.langat@example.co.ke", ELDORET, [MUTUA, WANJIKU]),
    ];
    let (mut tokens, mut before) = (Vec::new(), Vec::new());
    for (email, chama, _) in treasurers {
        tokens.push(app.demo_token(email).await);
        before.push(balance(&app.db, chama).await);
    }
    let app = std::sync::Arc::new(app);

    // 60 distinct contributions, and 10 copies of one request racing with each other.
    let mut tasks = Vec::new();
    for n in 0..70usize {
        let (t, key) = if n < 60 {
            (n % 3, format!("http-{n}"))
        } else {
            (0, "the-same-one".to_owned())
        };
        let (_, chama, members) = treasurers[t];
        let (member, amount) = if n < 60 {
            (members[n % 2], 10_000 + n as i64)
        } else {
            (NAFULA, 99_900)
        };
        let body = json!({
            "chama_id": chama, "member_id": member, "amount": amount,
            "payment_method": "cash"
        });
        let (app, token) = (app.clone(), tokens[t].clone());
        tasks.push(tokio::spawn(async move {
            let response = app
                .client
                .post(app.url("/transactions"))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: Value = response.json().await.unwrap();
            (status, replayed, body)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(
        results[..60].iter().all(|(status, ..)| *status == 201),
        "{:?}",
        results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.0 != 201)
            .map(|(n, r)| (n, r.0))
            .collect::<Vec<_>>()
    );
    // The racing copies: recorded once; the others replayed it or heard it was in flight.
    let copies = &results[60..];
    let fresh = copies.iter().filter(|(s, r, _)| *s == 201 && !r).count();
    assert_eq!(fresh, 1, "{copies:?}");
    assert!(
        copies.iter().all(|(s, ..)| *s == 201 || *s == 409),
        "{copies:?}"
    );
    let ids: std::collections::HashSet<&Value> = copies
        .iter()
        .filter(|(s, ..)| *s == 201)
        .map(|(_, _, body)| &body["id"])
        .collect();
    assert_eq!(ids.len(), 1, "every 201 names the same transaction");

    for (t, (_, chama, _)) in treasurers.iter().enumerate() {
        let expected: i64 = (0..60usize)
            .filter(|n| n % 3 == t)
            .map(|n| 10_000 + n as i64)
            .sum::<i64>()
            + if t == 0 { 99_900 } else { 0 };
        assert_eq!(balance(&app.db, *chama).await, before[t] + expected);
    }
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn without_writers_each_request_is_recorded_alone_under_the_same_rules() {
    let config = pesachama_api::ServerConfig {
        contribution_writers: 0,
        ..TestApp::config()
    };
    let app = TestApp::spawn_with(demo_db().await, config).await;
    let token = app.demo_token("akinyi.achieng@example.co.ke").await;
    let umoja = balance(&app.db, UMOJA).await;
    let post = |key: &'static str, member: Uuid| {
        app.client
            .post(app.url("/transactions"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({
                "chama_id": UMOJA, "member_id": member, "amount": 25_000, "payment_method": "bank"
            }))
            .send()
    };
    let first = post("alone-1", NAFULA).await.unwrap();
    assert_eq!(first.status(), 201);
    let replay = post("alone-1", NAFULA).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let stranger = post("alone-2", BARASA).await.unwrap();
    assert_eq!(stranger.status(), 422);
    assert_eq!(balance(&app.db, UMOJA).await, umoja + 25_000);
    let recorded: i64 = scalar(&app.db, "select count(*) from public.transactions where payment_method = 'bank' and created_by = '5eed0000-0000-4000-8000-000000000003'").await;
    assert_eq!(recorded, 1);
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_batch_that_fails_as_a_whole_is_tried_request_by_request() {
    let db = demo_db().await;
    // A rule only a trigger knows, so the batch function cannot refuse the one request itself.
    sqlx::raw_sql(
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
           if exists (select from changed where description = 'poison') then
             raise exception 'poisoned' using errcode = 'P0001';
           end if;
           return null;
         end $$;
         create trigger poison after insert on public.transactions
           referencing new table as changed for each statement execute function refuse_poison();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let writer = ContributionWriter::start(db.pool.clone(), 1);
    let umoja = balance(&db, UMOJA).await;
    let mut poison = request(AKINYI, UMOJA, NAFULA, 5_000, "poison");
    poison.description = Some("poison".into());
    let requests = [
        request(AKINYI, UMOJA, NAFULA, 1_000, "fine-1"),
        poison,
        request(AKINYI, UMOJA, CHEBET, 2_000, "fine-2"),
    ];
    let answers =
        futures_util::future::join_all(requests.into_iter().map(|r| writer.record(r))).await;
    let statuses: Vec<u16> = answers.iter().map(status).collect();
    assert_eq!(statuses, [201, 422, 201], "{answers:?}");
    // Alone in its batch, it hears the same refusal, not that the writer is unavailable.
    let mut alone = request(AKINYI, UMOJA, NAFULA, 5_000, "poison-alone");
    alone.description = Some("poison".into());
    assert_eq!(status(&writer.record(alone).await), 422);
    assert_eq!(balance(&db, UMOJA).await, umoja + 3_000);
    db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_chama_held_by_another_transaction_holds_up_only_its_own_requests() {
    let db = demo_db().await;
    let writer = std::sync::Arc::new(ContributionWriter::start(db.pool.clone(), 1));
    let (umoja, eldoret) = (balance(&db, UMOJA).await, balance(&db, ELDORET).await);
    // Another transaction holds Umoja's row for 8 s (a batch waits at most 5 s for a lock).
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("select 1 from public.chamas where id = $1 for update")
        .bind(UMOJA)
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (umoja_request, eldoret_request) = (
        request(AKINYI, UMOJA, NAFULA, 4_000, "held-umoja"),
        request(CHEBET, ELDORET, MUTUA, 6_000, "free-eldoret"),
    );
    // On this single-threaded runtime both are queued before the writer runs: one batch.
    let both = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let umoja = writer.record(umoja_request);
            let eldoret = async { (writer.record(eldoret_request).await, started.elapsed()) };
            tokio::join!(umoja, eldoret)
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let released = started.elapsed();
    holder.commit().await.unwrap();
    let (umoja_answer, (eldoret_answer, eldoret_at)) = both.await.unwrap();
    assert_eq!(status(&eldoret_answer), 201, "{eldoret_answer:?}");
    assert!(
        eldoret_at < released,
        "Eldoret answered at {eldoret_at:?}, only after Umoja was released at {released:?}"
    );
    assert_eq!(status(&umoja_answer), 201, "{umoja_answer:?}");
    assert_eq!(balance(&db, UMOJA).await, umoja + 4_000);
    assert_eq!(balance(&db, ELDORET).await, eldoret + 6_000);
    db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_member_loaded_without_an_equity_account_gets_one_on_the_first_contribution() {
    let db = demo_db().await;
    // As `migrate copy` loads members: with the row triggers (the account's among them) off.
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::raw_sql(
        "set session_replication_role = replica;
         insert into public.chama_members (chama_id, user_id, role, status, joined_at)
           values ('c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000010',
                   'member', 'active', now());
         set session_replication_role = origin;",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let accounts = "select count(*) from internal.ledger_accounts
                     where chama_id = 'c4a3a000-0000-4000-8000-000000000001'
                       and user_id = '5eed0000-0000-4000-8000-000000000010'";
    assert_eq!(scalar::<i64>(&db, accounts).await, 0);
    let answers = record_batch(
        &db.pool,
        &[&request(AKINYI, UMOJA, BARASA, 30_000, "first-for-barasa")],
    )
    .await
    .unwrap();
    assert_eq!(status(&answers[0]), 201, "{answers:?}");
    assert_eq!(scalar::<i64>(&db, accounts).await, 1);
    assert_eq!(contributed(&db, UMOJA, BARASA).await, 30_000);
    db.assert_ledger_balanced().await;
}
