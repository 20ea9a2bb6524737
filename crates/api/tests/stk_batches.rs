//! STK callbacks applied a batch at a time (`pesachama_api::stk_batches`): the batch decides
//! every callback exactly as the one-at-a-time function would, in one transaction, and falls
//! back to one at a time when the database refuses the batch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pesachama_api::mpesa_worker::Mpesa;
use pesachama_api::stk_batches::apply_batch;
use pesachama_mpesa::callback::{StkCallback, parse_stk};
use pesachama_mpesa::{DarajaClient, DarajaConfig};
use pesachama_store::PgPool;
use pesachama_testkit::TestDb;
use serde_json::{Value, json};

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const SECOND: &str = "c4a3a000-0000-4000-8000-000000000002";
/// Members of Umoja (0007, 0009) and of the second chama (0010, 0003).
const WANJIKU: &str = "5eed0000-0000-4000-8000-000000000007";
const OTIENO: &str = "5eed0000-0000-4000-8000-000000000009";
const AKINYI: &str = "5eed0000-0000-4000-8000-000000000010";
const BARASA: &str = "5eed0000-0000-4000-8000-000000000003";

/// M-Pesa settings whose Daraja is never called here; unknown requests go to review at once.
fn mpesa() -> Mpesa {
    let client = DarajaClient::new(DarajaConfig::new(
        "http://127.0.0.1:9",
        "key",
        "secret",
        "174379",
        "passkey",
    ))
    .unwrap();
    let mut mpesa = Mpesa::new(client, "http://127.0.0.1:9", "token");
    mpesa.unknown_grace = Duration::ZERO;
    mpesa
}

fn callback(checkout: &str, code: i64, paid: Option<(i64, &str, &str)>) -> Value {
    let mut body = json!({ "Body": { "stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout,
        "ResultCode": code, "ResultDesc": if code == 0 { "The service request is processed successfully." } else { "Request cancelled by user" },
    }}});
    if let Some((shillings, receipt, phone)) = paid {
        let msisdn: i64 = phone.trim_start_matches('+').parse().unwrap();
        body["Body"]["stkCallback"]["CallbackMetadata"] = json!({ "Item": [
            { "Name": "Amount", "Value": shillings }, { "Name": "MpesaReceiptNumber", "Value": receipt },
            { "Name": "Balance" }, { "Name": "TransactionDate", "Value": 20261201133416_i64 },
            { "Name": "PhoneNumber", "Value": msisdn } ] });
    }
    body
}

async fn phone(pool: &PgPool, user: &str) -> String {
    sqlx::query_scalar("select phone::text from public.users where id = $1::uuid")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A payment request waiting for its callback (`sent`), for KES 500.
async fn waiting(pool: &PgPool, chama: &str, user: &str, checkout: &str) {
    sqlx::query(
        "insert into public.payment_requests (chama_id, user_id, phone, amount, status, checkout_request_id)
         select $1::uuid, $2::uuid, u.phone, 50000, 'sent', $3 from public.users u where u.id = $2::uuid",
    )
    .bind(chama)
    .bind(user)
    .bind(checkout)
    .execute(pool)
    .await
    .unwrap();
}

/// Stores a callback as the route does; answers it with its inbox id.
async fn stored(pool: &PgPool, body: Value) -> (i64, StkCallback) {
    let parsed = parse_stk(&body).unwrap();
    let key = format!("{}:{}", parsed.checkout_request_id, parsed.result_code);
    let id =
        pesachama_store::mpesa::store_callback(pool, "stk", &key, &body, None, "received", None)
            .await
            .unwrap()
            .unwrap();
    (id, parsed)
}

/// `n` successes for Wanjiku's waiting requests `<prefix>_<k>`, stored, with receipts
/// `<letter>` and seven digits.
async fn successes(pool: &PgPool, prefix: &str, letter: char, n: usize) -> Vec<(i64, StkCallback)> {
    let wanjiku = phone(pool, WANJIKU).await;
    let mut callbacks = Vec::new();
    for k in 0..n {
        let checkout = format!("{prefix}_{k}");
        waiting(pool, UMOJA, WANJIKU, &checkout).await;
        let receipt = format!("TK{letter}{k:07}");
        callbacks.push(
            stored(
                pool,
                callback(&checkout, 0, Some((500, &receipt, &wanjiku))),
            )
            .await,
        );
    }
    callbacks
}

/// One callback of every kind the applier meets, in one database: answers them in arrival order.
async fn every_case(pool: &PgPool) -> Vec<(i64, StkCallback)> {
    let wanjiku = phone(pool, WANJIKU).await;
    let otieno = phone(pool, OTIENO).await;
    let akinyi = phone(pool, AKINYI).await;
    let barasa = phone(pool, BARASA).await;
    for (chama, user, checkout) in [
        (UMOJA, WANJIKU, "ws_CO_ok_1"),
        (UMOJA, OTIENO, "ws_CO_ok_2"),
        (SECOND, AKINYI, "ws_CO_ok_3"),
        (UMOJA, WANJIKU, "ws_CO_cancelled"),
        (UMOJA, WANJIKU, "ws_CO_short"),
        (UMOJA, OTIENO, "ws_CO_other_phone"),
        (UMOJA, OTIENO, "ws_CO_same_receipt"),
        (SECOND, BARASA, "ws_CO_left"),
        (UMOJA, WANJIKU, "ws_CO_queried"),
        (UMOJA, WANJIKU, "ws_CO_done_before"),
    ] {
        waiting(pool, chama, user, checkout).await;
    }
    // Barasa is suspended from the second chama before his payment lands; one request was
    // credited by an STK query already (no receipt yet); one callback was applied before.
    sqlx::query(
        "update public.chama_members set status = 'suspended' where user_id = $1::uuid and chama_id = $2::uuid",
    )
    .bind(BARASA)
    .bind(SECOND)
    .execute(pool)
    .await
    .unwrap();
    let queried = sqlx::query_scalar::<_, uuid::Uuid>(
        "select id from public.payment_requests where checkout_request_id = 'ws_CO_queried'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let settled: String = sqlx::query_scalar(
        "select internal.apply_stk_query($1, 0, 'The service request is processed successfully.')",
    )
    .bind(queried)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(settled, "completed");
    let mut callbacks = Vec::new();
    let done_before = stored(pool, callback("ws_CO_done_before", 1032, None)).await;
    sqlx::query("update internal.mpesa_callbacks set status = 'applied' where id = $1")
        .bind(done_before.0)
        .execute(pool)
        .await
        .unwrap();
    for body in [
        callback("ws_CO_ok_1", 0, Some((500, "TKA1000001", &wanjiku))),
        callback("ws_CO_ok_2", 0, Some((500, "TKA1000002", &otieno))),
        callback("ws_CO_cancelled", 1032, None),
        callback("ws_CO_ok_3", 0, Some((500, "TKA1000003", &akinyi))),
        callback("ws_CO_nobody_asked", 0, Some((500, "TKA1000004", &otieno))),
        callback("ws_CO_short", 0, Some((499, "TKA1000005", &wanjiku))),
        callback("ws_CO_other_phone", 0, Some((500, "TKA1000006", &wanjiku))),
        callback("ws_CO_same_receipt", 0, Some((500, "TKA1000001", &otieno))),
        callback("ws_CO_left", 0, Some((500, "TKA1000007", &barasa))),
        callback("ws_CO_queried", 0, Some((500, "TKA1000008", &wanjiku))),
    ] {
        callbacks.push(stored(pool, body).await);
    }
    callbacks.push(done_before);
    callbacks
}

/// Everything the callbacks changed, without the ids and clocks that differ between runs.
async fn outcome(pool: &PgPool) -> Value {
    sqlx::query_scalar(
        "select jsonb_build_object(
           'callbacks', (select jsonb_agg(jsonb_build_object('key', idempotency_key, 'status', status,
                                                              'error', error, 'attempts', attempts)
                                          order by idempotency_key)
                           from internal.mpesa_callbacks),
           'requests', (select jsonb_agg(jsonb_build_object('checkout', checkout_request_id,
                            'status', status, 'receipt', mpesa_receipt, 'code', result_code,
                            'desc', result_desc, 'reason', failure_reason,
                            'credited', transaction_id is not null)
                          order by checkout_request_id)
                          from public.payment_requests),
           'transactions', (select jsonb_agg(jsonb_build_object('reference', reference,
                                'user', user_id, 'amount', amount, 'method', payment_method,
                                'receipt', mpesa_receipt, 'phone', phone, 'description', description,
                                'status', status, 'by', created_by,
                                'at_payment', created_at = '2026-12-01 10:34:16+00',
                                'memo', (select memo from internal.journals j where j.id = journal_id))
                              order by reference)
                              from public.transactions where payment_method = 'mpesa' and reference like 'ws_CO_%'),
           'balances', (select jsonb_agg(jsonb_build_object('chama', id, 'balance', balance) order by id)
                          from public.chamas),
           'totals', (select jsonb_agg(jsonb_build_object('chama', chama_id, 'user', user_id,
                                                          'total', contributed_total)
                                       order by chama_id, user_id) from public.chama_members),
           'accounts', (select jsonb_agg(jsonb_build_object('chama', chama_id, 'kind', kind,
                                                            'user', user_id, 'balance', balance)
                                         order by chama_id, kind, user_id) from internal.ledger_accounts),
           'notifications', (select jsonb_agg(jsonb_build_object('user', user_id, 'title', title,
                                                                 'body', body, 'keys', (select jsonb_agg(k order by k) from jsonb_object_keys(data) k))
                                              order by user_id, title, body)
                               from public.notifications where created_at > now() - interval '1 hour'
                                and type = 'transaction'),
           'outbox', (select jsonb_agg(t order by t) from (select topic || ':' || count(*) as t
                        from internal.outbox group by topic) o),
           'audit', (select jsonb_agg(a order by a) from (select action || ':' || count(*) as a
                       from public.audit_logs group by action) l))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn integrity(pool: &PgPool) {
    let failing: Vec<(String, i64)> = sqlx::query_as(
        "select check_name, violations from internal.integrity_report() where violations > 0",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(failing.is_empty(), "integrity checks fail: {failing:?}");
}

async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    db
}

fn statuses(answers: Vec<Result<String, pesachama_store::StoreError>>) -> Vec<String> {
    answers.into_iter().map(Result::unwrap).collect()
}

#[tokio::test]
async fn a_batch_decides_every_callback_as_one_at_a_time_would() {
    let mpesa = mpesa();
    let (alone, batched) = (seeded().await, seeded().await);

    let callbacks = every_case(&alone.pool).await;
    let mut one_by_one = Vec::new();
    for callback in &callbacks {
        one_by_one.extend(apply_batch(&alone.pool, &mpesa, std::slice::from_ref(callback)).await);
    }
    let callbacks = every_case(&batched.pool).await;
    let together = apply_batch(&batched.pool, &mpesa, &callbacks).await;

    let expected = [
        "applied", "applied", "applied", "applied", "review", "review", "review", "review",
        "review", "applied", "applied",
    ];
    assert_eq!(statuses(one_by_one), expected);
    assert_eq!(statuses(together), expected);
    let (alone_outcome, batched_outcome) =
        (outcome(&alone.pool).await, outcome(&batched.pool).await);
    assert_eq!(alone_outcome, batched_outcome);

    // What the outcome says, checked once by hand: three credits of KES 500 (and the query's
    // earlier one), the cancelled request failed, the rest held.
    let requests = &batched_outcome["requests"];
    let status_of = |checkout: &str| {
        requests
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["checkout"] == checkout)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    for (checkout, status) in [
        ("ws_CO_ok_1", "completed"),
        ("ws_CO_ok_2", "completed"),
        ("ws_CO_ok_3", "completed"),
        ("ws_CO_cancelled", "failed"),
        ("ws_CO_short", "review"),
        ("ws_CO_other_phone", "review"),
        ("ws_CO_same_receipt", "review"),
        ("ws_CO_left", "review"),
        ("ws_CO_queried", "completed"),
        ("ws_CO_done_before", "sent"),
    ] {
        assert_eq!(status_of(checkout), status, "{checkout}");
    }
    assert_eq!(batched_outcome["transactions"].as_array().unwrap().len(), 4);
    let receipts: Vec<&str> = batched_outcome["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["receipt"].as_str().unwrap())
        .collect();
    assert_eq!(
        receipts,
        ["TKA1000001", "TKA1000002", "TKA1000003", "TKA1000008"]
    );
    integrity(&alone.pool).await;
    integrity(&batched.pool).await;
}

#[tokio::test]
async fn the_credits_of_a_batch_are_one_transaction() {
    let mpesa = mpesa();
    let db = seeded().await;
    let callbacks = successes(&db.pool, "ws_CO_many", 'M', 20).await;
    let before: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
        .bind(UMOJA)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        statuses(apply_batch(&db.pool, &mpesa, &callbacks).await)
            .iter()
            .all(|s| s == "applied")
    );
    let (rows, writers, after): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(distinct t.xmin::text), (select balance from public.chamas where id = $1::uuid)
           from public.transactions t where t.reference like 'ws_CO_many_%'",
    )
    .bind(UMOJA)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, writers, after - before), (20, 1, 20 * 50_000));
    integrity(&db.pool).await;
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_applied_one_callback_at_a_time() {
    let mpesa = mpesa();
    let db = seeded().await;
    // A rule only a multi-row statement breaks: the batch fails as a whole, each alone passes.
    sqlx::raw_sql(
        "create function public.one_at_a_time() returns trigger language plpgsql as $$
         begin
           if (select count(*) from new_rows) > 1 then
             raise exception 'one transaction row per statement, please';
           end if;
           return null;
         end $$;
         create trigger one_at_a_time after insert on public.transactions
           referencing new table as new_rows for each statement execute function public.one_at_a_time();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let callbacks = successes(&db.pool, "ws_CO_poison", 'P', 5).await;
    assert!(
        statuses(apply_batch(&db.pool, &mpesa, &callbacks).await)
            .iter()
            .all(|s| s == "applied")
    );
    let (rows, writers): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct t.xmin::text) from public.transactions t where t.reference like 'ws_CO_poison_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, writers), (5, 5));
    integrity(&db.pool).await;
}

#[tokio::test]
async fn batches_racing_over_the_same_callbacks_credit_each_once() {
    let mpesa = mpesa();
    let db = seeded().await;
    let (wanjiku, akinyi) = (
        phone(&db.pool, WANJIKU).await,
        phone(&db.pool, AKINYI).await,
    );
    let mut callbacks = Vec::new();
    for k in 0..12 {
        let checkout = format!("ws_CO_race_{k}");
        let (chama, user, phone) = if k % 2 == 0 {
            (UMOJA, WANJIKU, &wanjiku)
        } else {
            (SECOND, AKINYI, &akinyi)
        };
        waiting(&db.pool, chama, user, &checkout).await;
        let receipt = format!("TKR{k:07}");
        callbacks.push(
            stored(
                &db.pool,
                callback(&checkout, 0, Some((500, &receipt, phone))),
            )
            .await,
        );
    }
    let balances = || async {
        sqlx::query_scalar::<_, i64>("select sum(balance)::bigint from public.chamas")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let before = balances().await;
    // Four appliers, each with the callbacks in another order (and two in halves).
    let mut reversed = callbacks.clone();
    reversed.reverse();
    let (a, b, c, d) = tokio::join!(
        apply_batch(&db.pool, &mpesa, &callbacks),
        apply_batch(&db.pool, &mpesa, &reversed),
        apply_batch(&db.pool, &mpesa, &callbacks[..6]),
        apply_batch(&db.pool, &mpesa, &callbacks[6..]),
    );
    for answers in [a, b, c, d] {
        assert!(statuses(answers).iter().all(|s| s == "applied"));
    }
    assert_eq!(balances().await - before, 12 * 50_000);
    let credited: i64 = sqlx::query_scalar(
        "select count(*) from public.transactions where reference like 'ws_CO_race_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(credited, 12);
    integrity(&db.pool).await;
}

#[tokio::test]
async fn callbacks_stored_together_are_stored_once_per_key() {
    use pesachama_store::mpesa::{NewCallback, store_callbacks};
    let db = seeded().await;
    let payload = json!({ "Body": {} });
    let new = |key| NewCallback {
        kind: "stk",
        key,
        payload: &payload,
        source_ip: Some("196.201.214.200"),
        status: "received",
    };
    let first = store_callbacks(&db.pool, &[new("a:0")]).await.unwrap();
    assert!(first[0].is_some());
    // A repeat of a stored key, a new key twice in one statement, another new key.
    let ids = store_callbacks(&db.pool, &[new("a:0"), new("b:0"), new("b:0"), new("c:0")])
        .await
        .unwrap();
    assert!(ids[0].is_none() && ids[1].is_some() && ids[2].is_none() && ids[3].is_some());
    let stored: Vec<(String, String)> = sqlx::query_as(
        "select idempotency_key, host(source_ip) from internal.mpesa_callbacks order by id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let keys: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a:0", "b:0", "c:0"]);
    assert!(stored.iter().all(|(_, ip)| ip == "196.201.214.200"));
}

#[tokio::test]
async fn the_servers_role_may_apply_a_batch() {
    let db = seeded().await;
    let callbacks = successes(&db.pool, "ws_CO_role", 'S', 2).await;
    let results: Vec<_> = callbacks
        .iter()
        .map(|(id, parsed)| {
            let paid = parsed.paid.as_ref().unwrap();
            (*id, parsed, paid)
        })
        .collect();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("set local role service_role")
        .execute(&mut *tx)
        .await
        .unwrap();
    // The worker's re-scan, skipping what an applier holds, is the role's too.
    let pending = pesachama_store::mpesa::pending_callbacks(&mut *tx, 0.0, 10, &[callbacks[0].0])
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        [callbacks[1].0]
    );
    let batch: Vec<(i64, pesachama_store::mpesa::StkResult<'_>)> = results
        .iter()
        .map(|(id, parsed, paid)| {
            (
                *id,
                pesachama_store::mpesa::StkResult {
                    checkout_request_id: &parsed.checkout_request_id,
                    result_code: 0,
                    result_desc: &parsed.result_desc,
                    amount: Some(paid.amount.minor()),
                    receipt: Some(&paid.receipt),
                    phone: Some(paid.phone.as_e164()),
                    paid_at: paid.paid_at,
                },
            )
        })
        .collect();
    let refs: Vec<(i64, &pesachama_store::mpesa::StkResult<'_>)> =
        batch.iter().map(|(id, r)| (*id, r)).collect();
    let statuses = pesachama_store::mpesa::apply_stk_batch(&mut *tx, &refs)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        statuses,
        [Some("applied".to_owned()), Some("applied".to_owned())]
    );
    integrity(&db.pool).await;
}

#[tokio::test]
async fn the_re_scan_leaves_alone_the_callbacks_this_process_holds_and_reaches_past_them() {
    let db = seeded().await;
    let mut settings = mpesa();
    settings.rescan_after = Duration::ZERO;
    let mpesa = std::sync::Arc::new(settings);
    // More held than the re-scan reads at a time (100), all older than the free one.
    let callbacks = successes(&db.pool, "ws_CO_held", 'H', 101).await;
    let (held, free) = callbacks.split_at(100);
    let statuses = || async {
        sqlx::query_as::<_, (String, i64)>(
            "select status, count(*) from internal.mpesa_callbacks group by status order by status",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    for (id, _) in held {
        mpesa.in_flight.add(*id);
    }
    let worker = pesachama_api::mpesa_worker::MpesaWorker::new(db.pool.clone(), mpesa.clone());
    worker.run_once().await.unwrap();
    let free_status: String =
        sqlx::query_scalar("select status from internal.mpesa_callbacks where id = $1")
            .bind(free[0].0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(free_status, "applied");
    assert_eq!(
        statuses().await,
        [("applied".to_owned(), 1), ("received".to_owned(), 100)]
    );
    // Released (applied elsewhere, or given up): the re-scan takes them.
    mpesa.in_flight.remove(held.iter().map(|(id, _)| *id));
    worker.run_once().await.unwrap();
    assert_eq!(statuses().await, [("applied".to_owned(), 101)]);
    integrity(&db.pool).await;
}

#[tokio::test]
async fn callbacks_that_found_the_queue_full_are_applied_once_it_has_room() {
    let db = seeded().await;
    let mut settings = mpesa();
    // The worker's re-scan would take an hour: only the applier's own read-back applies them.
    settings.rescan_after = Duration::from_secs(3600);
    let mpesa = std::sync::Arc::new(settings);
    let applier =
        pesachama_api::stk_batches::StkApplier::with_queue(db.pool.clone(), mpesa.clone(), 2);
    let wanjiku = phone(&db.pool, WANJIKU).await;
    let mut arrivals = Vec::new();
    for k in 0..40 {
        let checkout = format!("ws_CO_spill_{k}");
        waiting(&db.pool, UMOJA, WANJIKU, &checkout).await;
        let body = callback(&checkout, 0, Some((500, &format!("TKS{k:07}"), &wanjiku)));
        arrivals.push((format!("{checkout}:0"), body));
    }
    // All at once: most find the queue (2) full and stay in the inbox.
    let stored = futures_util::future::join_all(arrivals.into_iter().map(|(key, body)| {
        let parsed = parse_stk(&body).unwrap();
        applier.store(key, body, None, parsed)
    }))
    .await;
    assert!(stored.iter().all(|s| matches!(s, Ok(true))), "{stored:?}");
    let applied = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from internal.mpesa_callbacks where status = 'applied'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let started = std::time::Instant::now();
    while applied().await < 40 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(applied().await, 40);
    let credited: i64 = sqlx::query_scalar(
        "select count(*) from public.transactions where reference like 'ws_CO_spill_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(credited, 40, "each credited once");
    integrity(&db.pool).await;
}
