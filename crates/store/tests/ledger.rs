//! The ledger's rules, enforced by the database whoever writes: journals balance, history is
//! append-only, cash never goes negative, and the balances kept beside the ledger (chamas.balance,
//! chama_members.contributed_total, ledger_accounts.balance) always equal it, under concurrency
//! too. Every test that moves money ends with `assert_ledger_balanced`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use pesachama_store::PgPool;
use pesachama_testkit::TestDb;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const UMOJA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000001);
const BODA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000002);
/// Akinyi: treasurer of Umoja, member of Boda.
const AKINYI: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000003);
/// Nafula: member of Umoja.
const NAFULA: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000007);
/// Barasa: member of Boda only.
const BARASA: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000010);
/// The five members of Umoja.
const UMOJA_MEMBERS: [Uuid; 5] = [
    Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000001),
    AKINYI,
    Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000005),
    NAFULA,
    Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000009),
];

async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    db
}

/// The integrity report is clean, and, checked here directly as well: every chama's balance is
/// the sum of its cash postings, every member's total the negated sum of their equity postings,
/// every account's stored balance the sum of its postings, and all postings sum to zero.
async fn assert_ledger_balanced(pool: &PgPool) {
    let report = pesachama_store::integrity::report(pool).await.unwrap();
    assert!(!report.is_empty());
    let failed: Vec<_> = report.iter().filter(|check| !check.passed()).collect();
    assert!(failed.is_empty(), "integrity report: {failed:#?}");

    let (chamas_off, members_off, accounts_off, total): (i64, i64, i64, i64) = sqlx::query_as(
        "select
           (select count(*) from public.chamas c
             where c.balance <> coalesce((select sum(p.amount) from internal.postings p
                                            join internal.ledger_accounts a on a.id = p.account_id
                                           where a.chama_id = c.id and a.kind = 'cash'), 0)),
           (select count(*) from public.chama_members m
             where m.contributed_total <> -coalesce((select sum(p.amount) from internal.postings p
                                                       join internal.ledger_accounts a on a.id = p.account_id
                                                      where a.chama_id = m.chama_id and a.user_id = m.user_id), 0)),
           (select count(*) from internal.ledger_accounts a
             where a.balance <> coalesce((select sum(p.amount) from internal.postings p
                                           where p.account_id = a.id), 0)),
           (select coalesce(sum(amount), 0)::bigint from internal.postings)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (chamas_off, members_off, accounts_off, total),
        (0, 0, 0, 0),
        "(chamas, members, accounts off the ledger; sum of all postings)"
    );
}

/// Everything a failed money movement must leave untouched.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    journals: i64,
    postings: i64,
    transactions: i64,
    balances: Vec<(Uuid, i64)>,
    member_totals: Vec<(Uuid, Uuid, i64)>,
    accounts: Vec<(Uuid, i64)>,
}

async fn books(pool: &PgPool) -> Books {
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    Books {
        journals: count("select count(*) from internal.journals").await,
        postings: count("select count(*) from internal.postings").await,
        transactions: count("select count(*) from public.transactions").await,
        balances: sqlx::query_as("select id, balance from public.chamas order by id")
            .fetch_all(pool)
            .await
            .unwrap(),
        member_totals: sqlx::query_as(
            "select chama_id, user_id, contributed_total from public.chama_members order by 1, 2",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        accounts: sqlx::query_as("select id, balance from internal.ledger_accounts order by id")
            .fetch_all(pool)
            .await
            .unwrap(),
    }
}

async fn account(pool: &PgPool, chama: Uuid, kind: &str) -> Uuid {
    sqlx::query_scalar("select internal.ensure_account($1, $2)")
        .bind(chama)
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn equity_account(pool: &PgPool, chama: Uuid, user: Uuid) -> Uuid {
    sqlx::query_scalar("select internal.ensure_account($1, 'member_equity', $2)")
        .bind(chama)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn chama_balance(pool: &PgPool, chama: Uuid) -> i64 {
    sqlx::query_scalar("select balance from public.chamas where id = $1")
        .bind(chama)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn contributed_total(pool: &PgPool, chama: Uuid, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "select contributed_total from public.chama_members where chama_id = $1 and user_id = $2",
    )
    .bind(chama)
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Posts a journal through internal.post_journal; postings are (account, signed amount).
async fn post(
    executor: impl sqlx::PgExecutor<'_>,
    chama: Uuid,
    kind: &str,
    postings: &[(Uuid, i64)],
) -> Result<Uuid, sqlx::Error> {
    let postings: Vec<_> = postings
        .iter()
        .map(|(account, amount)| json!({"account_id": account, "amount": amount}))
        .collect();
    sqlx::query_scalar("select internal.post_journal($1, $2, 'test', $3)")
        .bind(chama)
        .bind(kind)
        .bind(json!(postings))
        .fetch_one(executor)
        .await
}

async fn contribute(
    executor: impl sqlx::PgExecutor<'_>,
    chama: Uuid,
    user: Uuid,
    amount: i64,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("select internal.record_contribution($1, $2, $3, 'mpesa')")
        .bind(chama)
        .bind(user)
        .bind(amount)
        .fetch_one(executor)
        .await
}

/// The SQLSTATE and constraint name of a database error.
fn refusal(result: Result<impl std::fmt::Debug, sqlx::Error>) -> (String, Option<String>) {
    let err = result.expect_err("the database accepted it");
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("not a database error: {err}"));
    (
        db.code().unwrap_or_default().into_owned(),
        db.constraint().map(str::to_owned),
    )
}

#[tokio::test]
async fn post_journal_refuses_an_unbalanced_journal_and_writes_nothing() {
    let db = seeded().await;
    let pool = &db.pool;
    let cash = account(pool, UMOJA, "cash").await;
    let equity = equity_account(pool, UMOJA, NAFULA).await;
    let fees = account(pool, UMOJA, "fees").await;
    let before = books(pool).await;

    let balanced_journals = "journals_balanced".to_owned();
    for postings in [
        vec![(cash, 10_000), (equity, -9_000)],
        vec![(cash, 10_000)],
        vec![(cash, 10_000), (equity, -10_000), (fees, 1)],
        vec![],
    ] {
        let got = refusal(post(pool, UMOJA, "contribution", &postings).await);
        assert_eq!(
            got,
            ("23514".to_owned(), Some(balanced_journals.clone())),
            "{postings:?}"
        );
    }
    // Balanced, but a zero posting is not a posting.
    let (code, _) = refusal(post(pool, UMOJA, "adjustment", &[(cash, 0), (fees, 0)]).await);
    assert_eq!(code, "23514");

    assert_eq!(books(pool).await, before);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn post_journal_refuses_a_posting_to_another_chamas_account() {
    let db = seeded().await;
    let pool = &db.pool;
    let umoja_cash = account(pool, UMOJA, "cash").await;
    let boda_equity = equity_account(pool, BODA, BARASA).await;
    let before = books(pool).await;

    // Money into Umoja credited to a member's equity in Boda.
    let got = refusal(
        post(
            pool,
            UMOJA,
            "contribution",
            &[(umoja_cash, 50_000), (boda_equity, -50_000)],
        )
        .await,
    );
    assert_eq!(got.0, "23503");
    // And an account that does not exist at all.
    let got = refusal(
        post(
            pool,
            UMOJA,
            "contribution",
            &[(umoja_cash, 50_000), (Uuid::new_v4(), -50_000)],
        )
        .await,
    );
    assert_eq!(got.0, "23503");

    assert_eq!(books(pool).await, before);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn an_unbalanced_journal_written_around_post_journal_fails_at_commit() {
    let db = seeded().await;
    let pool = &db.pool;
    let cash = account(pool, UMOJA, "cash").await;
    let equity = equity_account(pool, UMOJA, NAFULA).await;
    let before = books(pool).await;

    let raw = |postings: Vec<(Uuid, i64)>| async move {
        let mut tx = pool.begin().await.unwrap();
        let journal: Uuid = sqlx::query_scalar(
            "insert into internal.journals (chama_id, kind, memo) values ($1, 'adjustment', 'raw')
             returning id",
        )
        .bind(UMOJA)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        for (account, amount) in postings {
            // Each statement succeeds: the check is deferred to COMMIT.
            sqlx::query(
                "insert into internal.postings (journal_id, account_id, amount) values ($1, $2, $3)",
            )
            .bind(journal)
            .bind(account)
            .bind(amount)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await
    };

    for postings in [vec![(cash, 10_000)], vec![(cash, 10_000), (equity, -5_000)]] {
        let got = refusal(raw(postings).await);
        assert_eq!(
            got,
            ("23514".to_owned(), Some("journals_balanced".to_owned()))
        );
    }
    assert_eq!(books(pool).await, before);

    // Checked at once when asked to, and a balanced journal passes the check.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set constraints all immediate")
        .execute(&mut *tx)
        .await
        .unwrap();
    let journal: Uuid = sqlx::query_scalar(
        "insert into internal.journals (chama_id, kind, memo) values ($1, 'adjustment', 'raw')
         returning id",
    )
    .bind(UMOJA)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let one_sided = sqlx::query(
        "insert into internal.postings (journal_id, account_id, amount) values ($1, $2, 10000)",
    )
    .bind(journal)
    .bind(cash)
    .execute(&mut *tx)
    .await;
    assert_eq!(
        refusal(one_sided),
        ("23514".to_owned(), Some("journals_balanced".to_owned()))
    );
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let journal: Uuid = sqlx::query_scalar(
        "insert into internal.journals (chama_id, kind, memo) values ($1, 'adjustment', 'raw')
         returning id",
    )
    .bind(UMOJA)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "insert into internal.postings (journal_id, account_id, amount)
         values ($1, $2, 10000), ($1, $3, -10000)",
    )
    .bind(journal)
    .bind(cash)
    .bind(equity)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("set constraints all immediate")
        .execute(&mut *tx)
        .await
        .unwrap();
    // Balanced, but written around post_journal the stored balances did not move: only
    // post_journal may write the ledger, so this one is not kept.
    tx.rollback().await.unwrap();

    assert_eq!(books(pool).await, before);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn postings_and_journals_cannot_be_changed_or_removed() {
    let db = seeded().await;
    let pool = &db.pool;
    let before = books(pool).await;

    let statements = [
        "update internal.postings set amount = amount * 2",
        "delete from internal.postings",
        "truncate internal.postings",
        "update internal.journals set memo = 'rewritten'",
        "delete from internal.journals",
        "truncate internal.journals cascade",
    ];
    // As the owner (who holds every privilege) and as the service role (which holds every
    // privilege in `internal`): the append-only triggers refuse both.
    for role in ["postgres", "service_role"] {
        for sql in statements {
            let mut tx = pool.begin().await.unwrap();
            if role == "service_role" {
                sqlx::query("set local role service_role")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            let result = sqlx::query(sql).execute(&mut *tx).await;
            let err = result.expect_err(sql);
            let db_err = err.as_database_error().unwrap();
            assert_eq!(
                db_err.code().as_deref(),
                Some("42501"),
                "{role}: {sql}: {err}"
            );
            // The service role holds no TRUNCATE on the public tables a cascade reaches, so
            // a cascading truncate stops there, before the triggers are asked.
            let refused_earlier = role == "service_role"
                && sql.contains("cascade")
                && db_err.message().contains("permission denied");
            assert!(
                db_err.message().contains("append-only") || refused_earlier,
                "{role}: {sql}: {err}"
            );
            tx.rollback().await.unwrap();
        }
    }

    assert_eq!(books(pool).await, before);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn cash_can_never_go_negative() {
    let db = seeded().await;
    let pool = &db.pool;
    let cash = account(pool, UMOJA, "cash").await;
    let paid_out = account(pool, UMOJA, "disbursements").await;
    let in_transit = account(pool, UMOJA, "payouts_in_transit").await;
    let balance = chama_balance(pool, UMOJA).await;
    assert_eq!(balance, 19 * 100_000);
    let before = books(pool).await;

    // One cent more than there is. The chama row is updated first (the lock order), so its
    // mirror of the cash account refuses first.
    let got = refusal(
        post(
            pool,
            UMOJA,
            "disbursement",
            &[(cash, -(balance + 1)), (paid_out, balance + 1)],
        )
        .await,
    );
    assert_eq!(
        got,
        (
            "23514".to_owned(),
            Some("chamas_balance_not_negative".to_owned())
        )
    );

    // The cash account refuses by itself too, whoever writes it.
    let got = refusal(
        sqlx::query("update internal.ledger_accounts set balance = -1 where id = $1")
            .bind(cash)
            .execute(pool)
            .await,
    );
    assert_eq!(
        got,
        (
            "23514".to_owned(),
            Some("ledger_accounts_no_overdraft".to_owned())
        )
    );

    // Money in transit cannot be settled before it was sent.
    let got = refusal(
        post(
            pool,
            UMOJA,
            "payout_settled",
            &[(in_transit, -10_000), (paid_out, 10_000)],
        )
        .await,
    );
    assert_eq!(
        got,
        (
            "23514".to_owned(),
            Some("ledger_accounts_no_overdraft".to_owned())
        )
    );
    assert_eq!(books(pool).await, before);

    // All of it, exactly, may leave.
    post(
        pool,
        UMOJA,
        "disbursement",
        &[(cash, -balance), (paid_out, balance)],
    )
    .await
    .unwrap();
    assert_eq!(chama_balance(pool, UMOJA).await, 0);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn a_contribution_moves_the_ledger_and_its_mirrors_together() {
    let db = seeded().await;
    let pool = &db.pool;
    let equity = equity_account(pool, UMOJA, NAFULA).await;
    let balance = chama_balance(pool, UMOJA).await;
    let total = contributed_total(pool, UMOJA, NAFULA).await;
    assert_eq!(total, 3 * 100_000);

    let tx_id: Uuid = sqlx::query_scalar(
        "select internal.record_contribution($1, $2, 25000, 'mpesa', 'REF-1', 'SHK7Q2W9XZ',
                                             '+254720345007', 'June', $2)",
    )
    .bind(UMOJA)
    .bind(NAFULA)
    .fetch_one(pool)
    .await
    .unwrap();

    assert_eq!(chama_balance(pool, UMOJA).await, balance + 25_000);
    assert_eq!(contributed_total(pool, UMOJA, NAFULA).await, total + 25_000);
    let equity_balance: i64 =
        sqlx::query_scalar("select balance from internal.ledger_accounts where id = $1")
            .bind(equity)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(equity_balance, -(total + 25_000), "equity is credit-normal");

    let (status, amount, kind, postings, sum): (String, i64, String, i64, i64) = sqlx::query_as(
        "select t.status, t.amount, t.type,
                (select count(*) from internal.postings p where p.journal_id = t.journal_id),
                (select sum(p.amount)::bigint from internal.postings p where p.journal_id = t.journal_id)
           from public.transactions t where t.id = $1",
    )
    .bind(tx_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), amount, kind.as_str(), postings, sum),
        ("completed", 25_000, "contribution", 2, 0)
    );

    // Refused contributions leave nothing behind, not even the journal posted before the
    // transactions row failed.
    let before = books(pool).await;
    let duplicate_receipt = sqlx::query_scalar::<_, Uuid>(
        "select internal.record_contribution($1, $2, 25000, 'mpesa', 'REF-2', 'SHK7Q2W9XZ')",
    )
    .bind(UMOJA)
    .bind(NAFULA)
    .fetch_one(pool)
    .await;
    assert_eq!(
        refusal(duplicate_receipt),
        (
            "23505".to_owned(),
            Some("transactions_mpesa_receipt_key".to_owned())
        )
    );
    assert_eq!(refusal(contribute(pool, UMOJA, NAFULA, 0).await).0, "23514");
    assert_eq!(
        refusal(contribute(pool, UMOJA, NAFULA, -500).await).0,
        "23514"
    );
    // Barasa is not a member of Umoja.
    assert_eq!(
        refusal(contribute(pool, UMOJA, BARASA, 500).await).0,
        "P0001"
    );
    assert_eq!(books(pool).await, before);

    assert_ledger_balanced(pool).await;
}

/// 8 connections × 25 contributions: six connections pay into Umoja for its five members, two
/// alternate between Umoja and Boda for Akinyi (a member of both). Not a shilling is lost.
#[tokio::test]
async fn concurrent_contributions_on_separate_connections_lose_nothing() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let db = seeded().await;
    let pool = &db.pool;
    let before_balances: BTreeMap<Uuid, i64> = [
        (UMOJA, chama_balance(pool, UMOJA).await),
        (BODA, chama_balance(pool, BODA).await),
    ]
    .into();
    let mut before_totals = BTreeMap::new();
    for member in UMOJA_MEMBERS {
        before_totals.insert(
            (UMOJA, member),
            contributed_total(pool, UMOJA, member).await,
        );
    }
    before_totals.insert((BODA, AKINYI), contributed_total(pool, BODA, AKINYI).await);
    let before = books(pool).await;

    // What each task pays, decided up front.
    let plan: Vec<Vec<(Uuid, Uuid, i64)>> = (0..TASKS)
        .map(|task| {
            (0..EACH)
                .map(|i| {
                    let amount = 100 * (task as i64 + 1) + i as i64;
                    if task < 6 {
                        (
                            UMOJA,
                            UMOJA_MEMBERS[(task + i) % UMOJA_MEMBERS.len()],
                            amount,
                        )
                    } else if i % 2 == 0 {
                        (UMOJA, AKINYI, amount)
                    } else {
                        (BODA, AKINYI, amount)
                    }
                })
                .collect()
        })
        .collect();

    let mut tasks = tokio::task::JoinSet::new();
    for payments in plan.clone() {
        let url = db.url.clone();
        tasks.spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            for (chama, member, amount) in payments {
                contribute(&mut conn, chama, member, amount).await.unwrap();
            }
            conn.close().await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    let mut expected_balances = before_balances;
    let mut expected_totals = before_totals;
    for (chama, member, amount) in plan.iter().flatten() {
        *expected_balances.get_mut(chama).unwrap() += amount;
        *expected_totals.get_mut(&(*chama, *member)).unwrap() += amount;
    }
    for (chama, expected) in &expected_balances {
        assert_eq!(
            chama_balance(pool, *chama).await,
            *expected,
            "chama {chama}"
        );
    }
    for ((chama, member), expected) in &expected_totals {
        assert_eq!(
            contributed_total(pool, *chama, *member).await,
            *expected,
            "member {member} of {chama}"
        );
    }
    let after = books(pool).await;
    let n = (TASKS * EACH) as i64;
    assert_eq!(after.transactions, before.transactions + n);
    assert_eq!(after.journals, before.journals + n);
    assert_eq!(after.postings, before.postings + 2 * n);
    assert_ledger_balanced(pool).await;
}

/// 8 connections race to withdraw 300.00 ten times each from 19,000.00: exactly 63 succeed, the
/// rest are refused, and the chama keeps the last 100.00.
#[tokio::test]
async fn concurrent_withdrawals_never_overdraw() {
    const TASKS: usize = 8;
    const EACH: usize = 10;
    const AMOUNT: i64 = 30_000;
    let db = seeded().await;
    let pool = &db.pool;
    let cash = account(pool, UMOJA, "cash").await;
    let paid_out = account(pool, UMOJA, "disbursements").await;
    let balance = chama_balance(pool, UMOJA).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let url = db.url.clone();
        tasks.spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let mut paid = 0;
            for _ in 0..EACH {
                match post(
                    &mut conn,
                    UMOJA,
                    "disbursement",
                    &[(cash, -AMOUNT), (paid_out, AMOUNT)],
                )
                .await
                {
                    Ok(_) => paid += 1,
                    Err(err) => {
                        let db = err.as_database_error().unwrap();
                        assert_eq!(
                            db.constraint(),
                            Some("chamas_balance_not_negative"),
                            "{err}"
                        );
                    }
                }
            }
            conn.close().await.unwrap();
            paid
        });
    }
    let mut paid = 0;
    while let Some(done) = tasks.join_next().await {
        paid += done.unwrap();
    }

    assert_eq!(paid, balance / AMOUNT);
    assert_eq!(chama_balance(pool, UMOJA).await, balance - paid * AMOUNT);
    assert_ledger_balanced(pool).await;
}
