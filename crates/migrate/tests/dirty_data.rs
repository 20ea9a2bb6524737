#![allow(clippy::unwrap_used)]

//! Generated legacy data with every quirk of the legacy README, plus hand-written rows of the
//! classes real data has beyond it (issue 28): a chama with no members and one whose members
//! all left, a history that dips below zero and one that ends below zero, receipts repeated
//! by a double callback and by a conflicting row, approvals with decisions written as text or
//! unreadable, a phone typed with a redundant trunk zero that reveals a duplicate account,
//! notifications naming rows that do not move. `plan` predicts every outcome and every rule
//! of the target; `copy` then `verify` finds zero differences and the ledger balances.

use pesachama_migrate::{copy, generate, plan, report::Summary, source, verify};
use pesachama_testkit::TestDb;
use serde_json::Value;

const BATCH: usize = 300;

const U_KEEPER: &str = "a0000000-0000-4000-8000-000000000001";
const U_TRUNK_DUPLICATE: &str = "a0000000-0000-4000-8000-000000000002";
const U_TRUNK_ALONE: &str = "a0000000-0000-4000-8000-000000000003";
const CH_EMPTY: &str = "c0000000-0000-4000-8000-000000000001";
const CH_ALL_LEFT: &str = "c0000000-0000-4000-8000-000000000002";
const CH_DIP: &str = "c0000000-0000-4000-8000-000000000003";
const CH_BELOW_ZERO: &str = "c0000000-0000-4000-8000-000000000004";
const CH_RECEIPTS: &str = "c0000000-0000-4000-8000-000000000005";
const REQUEST: &str = "d0000000-0000-4000-8000-000000000001";
const GHOST_CHAMA: &str = "e0000000-0000-4000-8000-000000000001";

/// The dirty rows, by legacy transaction id: 900001.. in the chamas above.
const DIRTY: &str = r#"
insert into users (id, email, phone, first_name, last_name, last_login_at, created_at, updated_at) values
  ('a0000000-0000-4000-8000-000000000001', null, '0712999001', 'Keeper', 'One', '2024-05-01 10:00:00', '2020-01-01 10:00:00', '2020-01-01 10:00:00'),
  ('a0000000-0000-4000-8000-000000000002', null, '+254 0712 999 001', 'Trunk', 'Twin', '2023-01-01 10:00:00', '2020-01-02 10:00:00', '2020-01-02 10:00:00'),
  ('a0000000-0000-4000-8000-000000000003', null, '+254 0712 999 002', 'Trunk', 'Alone', '2023-01-01 10:00:00', '2020-01-03 10:00:00', '2020-01-03 10:00:00');

insert into chamas (id, name, contribution_amount, contribution_frequency, balance, status, created_at, updated_at) values
  ('c0000000-0000-4000-8000-000000000001', 'Empty Chama', 500, 'monthly', 500.00, 'active', '2020-02-01 10:00:00', '2020-02-01 10:00:00'),
  ('c0000000-0000-4000-8000-000000000002', 'All Left Chama', 500, 'monthly', 0, 'Active', '2020-02-01 10:00:00', '2020-02-01 10:00:00'),
  ('c0000000-0000-4000-8000-000000000003', 'Dip Chama', 500, 'monthly', 300.00, 'active', '2020-02-01 10:00:00', '2020-02-01 10:00:00'),
  ('c0000000-0000-4000-8000-000000000004', 'Below Zero Chama', 500, 'monthly', -600.00, 'active', '2020-02-01 10:00:00', '2020-02-01 10:00:00'),
  ('c0000000-0000-4000-8000-000000000005', 'Receipts Chama', 500, 'monthly', 1400.00, 'active', '2020-02-01 10:00:00', '2020-02-01 10:00:00');

insert into chama_members (id, chama_id, user_id, role, status, joined_at) values
  (900001, 'c0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'chairperson', 'left', '2020-02-01 10:00:00'),
  (900002, 'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'chairperson', 'active', '2020-02-01 10:00:00'),
  (900003, 'c0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 'chairperson', 'active', '2020-02-01 10:00:00'),
  (900004, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'chairperson', 'active', '2020-02-01 10:00:00'),
  (900005, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000002', 'member', 'active', '2020-02-01 11:00:00'),
  (900006, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000003', 'member', 'active', '2020-02-01 12:00:00'),
  (900007, 'e0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'member', 'active', '2020-02-01 12:00:00');

insert into transactions (id, chama_id, user_id, type, amount, status, payment_method, reference, mpesa_receipt, created_at, updated_at) values
  -- a contribution from someone who is no member, into the chama that has none
  (900001, 'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'contribution', 500.00, 'completed', 'cash', null, null, '2020-03-01 10:00:00', '2020-03-01 10:00:00'),
  -- a payout before the money that covers it: legacy's balance is its own sum (300)
  (900002, 'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'disbursement', 700.00, 'completed', 'cash', null, null, '2020-03-01 10:00:00', '2020-03-01 10:00:00'),
  (900003, 'c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'contribution', 1000.00, 'completed', 'cash', null, null, '2020-04-01 10:00:00', '2020-04-01 10:00:00'),
  -- more paid out than ever came in
  (900004, 'c0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 'contribution', 100.00, 'completed', 'cash', null, null, '2020-03-01 10:00:00', '2020-03-01 10:00:00'),
  (900005, 'c0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 'disbursement', 700.00, 'completed', 'cash', null, null, '2020-04-01 10:00:00', '2020-04-01 10:00:00'),
  -- a double callback (same receipt, amount and checkout id), and a conflict (amount and checkout id differ)
  (900006, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'contribution', 300.00, 'completed', 'mpesa', 'ws_CO_A', 'QZZ0000001', '2020-03-01 10:00:00', '2020-03-01 10:00:00'),
  (900007, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'contribution', 300.00, 'completed', 'mpesa', 'ws_CO_A', 'QZZ0000001', '2020-03-01 10:00:02', '2020-03-01 10:00:02'),
  (900008, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000002', 'contribution', 300.00, 'completed', 'mpesa', 'ws_CO_B', 'QZZ0000002', '2020-03-02 10:00:00', '2020-03-02 10:00:00'),
  (900009, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000003', 'contribution', 500.00, 'completed', 'mpesa', 'ws_CO_C', 'qzz0000002', '2020-03-03 10:00:00', '2020-03-03 10:00:00'),
  -- a row that cannot move, named by a notification
  (900010, 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'contribution', 0.00, 'completed', 'cash', null, null, '2020-03-04 10:00:00', '2020-03-04 10:00:00');

insert into disbursement_requests (id, chama_id, requested_by, recipient_phone, amount, reason, status, approvals, created_at, updated_at) values
  ('d0000000-0000-4000-8000-000000000001', 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', '+254 0712 999 002', 200.00, 'school fees', 'pending',
   '[{"user_id": "a0000000-0000-4000-8000-000000000001", "approved": "true", "at": "2023-04-01T10:00:00"},
     {"user_id": "a0000000-0000-4000-8000-000000000003", "approved": "maybe"},
     {"user_id": "a0000000-0000-4000-8000-000000000002", "approved": "FALSE", "at": "soon"}]',
   '2023-04-01 09:00:00', '2023-04-01 09:00:00'),
  -- approvals that are no list, too long to be part of an index key when quoted
  ('d0000000-0000-4000-8000-000000000002', 'c0000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', '0712999001', 100.00, 'rent', 'rejected',
   to_jsonb((select string_agg(md5(i::text), ' ') from generate_series(1, 400) i)), '2023-04-01 09:00:00', '2023-04-01 09:00:00');

insert into notifications (id, user_id, type, title, data, created_at) values
  (900001, 'a0000000-0000-4000-8000-000000000001', 'transaction', 'Zero', '{"transaction_id": 900010, "chama_id": "c0000000-0000-4000-8000-000000000005"}', '2020-03-04 10:00:00'),
  (900002, 'a0000000-0000-4000-8000-000000000001', 'system', 'Ghost', '{"member_id": 900007, "chama_id": "e0000000-0000-4000-8000-000000000001"}', '2020-03-04 10:00:00'),
  (900003, 'a0000000-0000-4000-8000-000000000001', 'transaction', 'Missing', '{"transaction_id": 99999999}', '2020-03-04 10:00:00'),
  (900004, 'a0000000-0000-4000-8000-000000000001', 'transaction', 'Fine', '{"transaction_id": 900008}', '2020-03-04 10:00:00');
"#;

async fn dirty_legacy() -> TestDb {
    let db = TestDb::empty().await;
    let mut conn = source::connect(&db.url, "legacy").await.unwrap();
    generate::run(
        &mut conn,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed: 11,
        },
    )
    .await
    .unwrap();
    sqlx::raw_sql(DIRTY).execute(&mut conn).await.unwrap();
    db
}

fn options(limit: copy::QuarantineLimit) -> copy::CopyOptions {
    copy::CopyOptions {
        batch_size: BATCH,
        max_quarantine: limit,
        stop_after_batches: None,
        progress: false,
    }
}

/// The review row of `table`/`id` whose reason contains `reason`.
fn review<'a>(summary: &'a Summary, table: &str, id: &str, reason: &str) -> &'a str {
    summary
        .reviews
        .iter()
        .find(|r| r.table == table && r.legacy_id == id && r.reason.contains(reason))
        .map(|r| r.detail.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no review of {table} {id} for {reason:?}: {:#?}",
                summary
                    .reviews
                    .iter()
                    .filter(|r| r.legacy_id == id)
                    .collect::<Vec<_>>()
            )
        })
}

#[tokio::test]
async fn every_dirty_class_is_planned_copied_and_verified_with_nothing_hidden() {
    let legacy = dirty_legacy().await;
    let summary = plan::run(&legacy.url, BATCH, copy::QuarantineLimit::rows(10_000))
        .await
        .unwrap();

    // Plan predicts every rule of the target: none will fail at verify.
    assert!(
        summary.broken_rules().is_empty(),
        "{:#?}",
        summary.broken_rules()
    );
    assert!(summary.target_rules.contains_key("one_chairperson"));
    // 1. Chamas nobody can chair are carried dormant, each reported.
    for chama in [CH_EMPTY, CH_ALL_LEFT] {
        review(&summary, "chamas", chama, "carried as suspended (dormant)");
    }
    // 2. Drift per chama with its causes; no opening balance where legacy's own sum explains it.
    let drift = |chama: &str| {
        summary
            .drift
            .iter()
            .find(|d| d.chama_id.to_string() == chama)
    };
    assert!(
        drift(CH_DIP).is_none(),
        "a history that dips below zero needs no opening balance: {:?}",
        drift(CH_DIP)
    );
    let below = drift(CH_BELOW_ZERO).unwrap();
    assert_eq!(below.opening_balance, 60_000);
    assert_eq!(below.migrated_balance, 0);
    let detail = review(&summary, "transactions", CH_BELOW_ZERO, "opening balance");
    assert!(detail.contains("900005"), "names the payout: {detail}");
    let receipts = drift(CH_RECEIPTS).unwrap();
    assert_eq!(receipts.legacy_balance, 140_000);
    assert_eq!(receipts.migrated_balance, 60_000);
    assert_eq!(
        receipts.causes.iter().map(|c| c.amount).sum::<i64>(),
        receipts.legacy_balance - receipts.migrated_balance,
        "{receipts:#?}"
    );
    let cause = |text: &str| {
        receipts
            .causes
            .iter()
            .find(|c| c.cause.contains(text))
            .unwrap_or_else(|| panic!("{text}: {receipts:#?}"))
    };
    assert_eq!(
        (
            cause("duplicate M-Pesa callback").amount,
            cause("duplicate M-Pesa callback").legacy_rows.clone()
        ),
        (30_000, vec![900007])
    );
    assert_eq!(
        (
            cause("conflicting duplicate receipt").amount,
            cause("conflicting duplicate receipt").legacy_rows.clone()
        ),
        (50_000, vec![900009])
    );
    // 10. The conflict, with both rows; the double callback is no conflict.
    let conflict = summary
        .receipt_conflicts
        .iter()
        .find(|c| c.receipt == "QZZ0000002")
        .unwrap();
    assert_eq!((conflict.first.id, conflict.duplicate.id), (900008, 900009));
    assert_eq!(
        (
            conflict.first.amount.as_str(),
            conflict.duplicate.amount.as_str()
        ),
        ("300.00", "500.00")
    );
    assert!(
        !summary
            .receipt_conflicts
            .iter()
            .any(|c| c.duplicate.id == 900007)
    );
    let detail = review(&summary, "transactions", "900009", "conflicting duplicate");
    assert!(
        detail.contains("900008") && detail.contains("ws_CO_C"),
        "{detail}"
    );
    // 7. "true" and "FALSE" are decisions; "maybe" is none, reported; an unreadable time too.
    let detail = review(
        &summary,
        "disbursement_requests",
        REQUEST,
        "decision unreadable",
    );
    assert!(
        detail.contains(U_TRUNK_ALONE) && detail.contains("maybe"),
        "{detail}"
    );
    let detail = review(
        &summary,
        "disbursement_requests",
        REQUEST,
        "time unreadable",
    );
    assert!(detail.contains("soon"), "{detail}");
    let detail = review(
        &summary,
        "disbursement_requests",
        "d0000000-0000-4000-8000-000000000002",
        "approvals not a JSON array",
    );
    assert!(detail.len() > 8000, "the value is quoted whole");
    // 8 and 9. The trunk-zero number parses, reveals a duplicate, and says who kept it.
    let detail = review(&summary, "users", U_TRUNK_DUPLICATE, "phone shared");
    assert!(
        detail.contains(U_KEEPER) && detail.contains("+254 0712 999 001"),
        "{detail}"
    );
    assert!(
        !summary
            .reviews
            .iter()
            .any(|r| r.legacy_id == U_TRUNK_ALONE && r.reason.contains("phone")),
        "a lone trunk-zero number is just a number"
    );
    // 11. Every reference to a row that did not move.
    let detail = review(&summary, "notifications", "900001", "did not move");
    assert!(detail.contains("amount 0"), "{detail}");
    let detail = review(&summary, "notifications", "900002", "did not move");
    assert!(detail.contains("chama does not exist"), "{detail}");
    review(
        &summary,
        "notifications",
        "900002",
        "chama that does not exist",
    );
    let detail = review(&summary, "notifications", "900003", "did not move");
    assert!(detail.contains("no such row"), "{detail}");
    assert!(
        !summary.reviews.iter().any(|r| r.legacy_id == "900004"),
        "a reference to a moved row is only rewritten"
    );
    // 14. Plan says beforehand whether copy stops.
    let q = summary.quarantine.as_ref().unwrap();
    assert!(!q.copy_stops && q.rows_to_quarantine > 0, "{q:?}");
    // Every review row has its detail, in the Markdown report too.
    assert!(
        summary.reviews.iter().all(|r| !r.detail.is_empty()),
        "{:#?}",
        summary.reviews
    );
    let markdown = summary.markdown("plan");
    assert!(markdown.contains("## Fixed rows to review"));
    assert!(markdown.contains("QZZ0000002"));

    let target = TestDb::new().await;
    let copied = copy::run(
        &legacy.url,
        &target.url,
        &options(copy::QuarantineLimit::rows(10_000)),
    )
    .await
    .unwrap();
    assert_eq!(copied.quarantined as u64, q.rows_to_quarantine);
    let result = verify::run(&legacy.url, &target.url, BATCH).await.unwrap();
    assert!(
        result.differences().is_empty(),
        "{:#?}",
        result.differences()
    );
    target.assert_ledger_balanced().await;

    let pool = &target.pool;
    let status = |chama: &'static str| async move {
        sqlx::query_as::<_, (String, i64)>(
            "select status, balance from public.chamas where id = $1::uuid",
        )
        .bind(chama)
        .fetch_one(pool)
        .await
        .unwrap()
    };
    assert_eq!(status(CH_EMPTY).await, ("suspended".into(), 50_000));
    assert_eq!(status(CH_ALL_LEFT).await.0, "suspended");
    assert_eq!(status(CH_DIP).await, ("active".into(), 30_000));
    assert_eq!(status(CH_BELOW_ZERO).await, ("active".into(), 0));
    assert_eq!(status(CH_RECEIPTS).await, ("active".into(), 60_000));
    // Opening balances: only where the history ends below zero, naming its rows.
    let openings: Vec<(String, Value)> = sqlx::query_as(
        "select chama_id::text, metadata from public.transactions where type = 'opening_balance'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let ours: Vec<_> = openings
        .iter()
        .filter(|(c, _)| c.starts_with("c0000000"))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].0, CH_BELOW_ZERO);
    assert_eq!(
        ours[0].1["legacy_payouts_not_covered"],
        serde_json::json!([900005])
    );
    // Generated chamas too: an opening balance only lifts a history that ends below zero to
    // zero, never above it.
    let lifted_above_zero: i64 = sqlx::query_scalar(
        "select count(*) from public.transactions o join public.chamas c on c.id = o.chama_id
          where o.type = 'opening_balance' and c.balance <> 0",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(lifted_above_zero, 0, "an opening balance without a cause");
    // Approvals as legacy meant them.
    let decisions: Vec<(String, String)> = sqlx::query_as(
        "select approver_id::text, decision from public.disbursement_approvals
          where request_id = $1::uuid order by approver_id",
    )
    .bind(REQUEST)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        decisions,
        [
            (U_KEEPER.to_owned(), "approve".to_owned()),
            (U_TRUNK_DUPLICATE.to_owned(), "reject".to_owned())
        ]
    );
    // The trunk-zero number is the member's, for signing in by phone.
    let phones: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select u.id::text, u.phone::text, a.phone from public.users u join auth.users a on a.id = u.id
          where u.id = any($1::uuid[]) order by u.id",
    )
    .bind(vec![U_KEEPER, U_TRUNK_DUPLICATE, U_TRUNK_ALONE])
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        phones,
        [
            (
                U_KEEPER.to_owned(),
                Some("+254712999001".to_owned()),
                Some("254712999001".to_owned())
            ),
            (U_TRUNK_DUPLICATE.to_owned(), None, None),
            (
                U_TRUNK_ALONE.to_owned(),
                Some("+254712999002".to_owned()),
                Some("254712999002".to_owned())
            ),
        ]
    );
    // Every review row is kept per row on the target, as in the report.
    let kept: Vec<(String, String, String, String)> = sqlx::query_as(
        "select source_table, legacy_id, reason, detail from pesachama_migrate.fixed_rows",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(kept.len(), summary.reviews.len());
    assert!(kept.iter().any(|(t, id, _, detail)| t == "users"
        && id == U_TRUNK_DUPLICATE
        && detail.contains(U_KEEPER)));
    let causes: Value =
        sqlx::query_scalar("select causes from pesachama_migrate.drift where chama_id = $1::uuid")
            .bind(CH_RECEIPTS)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        causes.to_string().contains("conflicting duplicate receipt"),
        "{causes}"
    );
    // No migrated notification names a transaction or membership that is not there.
    let dangling: i64 = sqlx::query_scalar(
        "select count(*) from public.notifications n
          where (n.data->>'transaction_id' is not null
                 and not exists (select from public.transactions t where t.id::text = n.data->>'transaction_id'))
             or (n.data->>'member_id' is not null
                 and not exists (select from public.chama_members m where m.id::text = n.data->>'member_id'))",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(dangling, 0);
    let zero: Value =
        sqlx::query_scalar("select data from public.notifications where legacy_id = '900001'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(zero["transaction_id"], Value::Null);
    assert_eq!(zero["legacy_transaction_id"], serde_json::json!(900010));
    let _ = GHOST_CHAMA;
}

#[tokio::test]
async fn plan_says_beforehand_whether_copy_stops_on_the_quarantine_threshold() {
    let legacy = dirty_legacy().await;
    let relaxed = plan::run(&legacy.url, BATCH, copy::QuarantineLimit::default())
        .await
        .unwrap();
    let q = relaxed.quarantine.clone().unwrap();
    let cannot_move = q.rows_to_quarantine as i64;
    assert!(cannot_move > 0);
    // Relative to what is read: 1 % of it by default.
    assert_eq!(q.limit, q.rows_read as i64 / 100);
    assert!(!q.copy_stops, "{q:?}");
    // The same rule as copy's, to the row: at the limit copy goes on, one below it stops.
    let at = plan::run(&legacy.url, BATCH, copy::QuarantineLimit::rows(cannot_move))
        .await
        .unwrap();
    assert!(!at.quarantine.unwrap().copy_stops);
    let below = copy::QuarantineLimit::rows(cannot_move - 1);
    let strict = plan::run(&legacy.url, BATCH, below).await.unwrap();
    assert!(strict.quarantine.unwrap().copy_stops);
    let tiny = copy::QuarantineLimit::percent(0.001);
    let said = plan::run(&legacy.url, BATCH, tiny).await.unwrap();
    assert!(said.quarantine.unwrap().copy_stops, "a percentage too");

    let stopped = TestDb::new().await;
    let err = copy::run(&legacy.url, &stopped.url, &options(below))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("more than the limit of"),
        "{err:#}"
    );
    let target = TestDb::new().await;
    let done = copy::run(
        &legacy.url,
        &target.url,
        &options(copy::QuarantineLimit::rows(cannot_move)),
    )
    .await
    .unwrap();
    assert_eq!(done.quarantined, cannot_move);
    target.assert_ledger_balanced().await;
}
