//! `sync`: writes made on legacy while the copy runs, and after it, reach the target; a
//! transaction still open on legacy waits for its commit; the result verifies with zero
//! differences and a balanced ledger.

#![allow(clippy::unwrap_used)]

use pesachama_migrate::{copy, generate, source, sync, verify};
use pesachama_testkit::TestDb;
use sqlx::Connection as _;

fn options(stop: Option<u64>) -> copy::CopyOptions {
    copy::CopyOptions {
        batch_size: 300,
        max_quarantine: copy::QuarantineLimit::rows(10_000),
        stop_after_batches: stop,
        progress: false,
    }
}

#[tokio::test]
async fn writes_during_and_after_the_copy_reach_the_target() {
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed: 3,
        },
    )
    .await
    .unwrap();
    sync::install_capture(&mut src).await.unwrap();
    let target = TestDb::new().await;

    // Killed midway; meanwhile legacy keeps taking writes.
    copy::run(&legacy.url, &target.url, &options(Some(2)))
        .await
        .unwrap_err();
    // Until the copy finishes, sync refuses: it upserts by keys the load dropped.
    let mut early = source::connect(&target.url, "target").await.unwrap();
    let refused = sync::cycle(&mut src, &mut early).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("the copy has not finished"),
        "{refused:#}"
    );
    let (chama, user): (String, String) = sqlx::query_as(
        "select m.chama_id::text, m.user_id::text from chama_members m join chamas c on c.id = m.chama_id
          where m.status = 'active' order by m.id limit 1",
    )
    .fetch_one(&mut src).await.unwrap();
    let new_tx: i64 = sqlx::query_scalar(
        "insert into transactions (chama_id, user_id, type, amount, status, payment_method, reference, mpesa_receipt, created_at, updated_at)
         values ($1::uuid, $2::uuid, 'contribution', 1234.50, 'completed', 'mpesa', 'ws_CO_sync1', 'SYNC000001', '2024-07-01 10:00:00', '2024-07-01 10:00:00')
         returning id",
    )
    .bind(&chama).bind(&user).fetch_one(&mut src).await.unwrap();
    sqlx::query("update users set first_name = 'Renamed', updated_at = '2024-07-01 11:00:00' where id = $1::uuid")
        .bind(&user).execute(&mut src).await.unwrap();
    copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap();

    // After the copy: a notification about the new transaction, a pending payment completing.
    sqlx::query("insert into notifications (user_id, type, title, data, created_at) values ($1::uuid, 'transaction', 'Received', json_build_object('transaction_id', $2::bigint), '2024-07-01 12:00:00')")
        .bind(&user).bind(new_tx).execute(&mut src).await.unwrap();
    sqlx::query("update transactions set status = 'completed' where id = (select id from transactions where status = 'pending' and amount > 0 order by id limit 1)")
        .execute(&mut src).await.unwrap();

    // A legacy transaction still open is not applied until it commits.
    let mut open = sqlx::PgConnection::connect(&legacy.url).await.unwrap();
    let mut open_tx = open.begin().await.unwrap();
    sqlx::query("update users set last_name = 'Pending' where id = $1::uuid")
        .bind(&user)
        .execute(&mut *open_tx)
        .await
        .unwrap();

    let mut dst = source::connect(&target.url, "target").await.unwrap();
    let first = sync::cycle(&mut src, &mut dst).await.unwrap();
    assert!(first.applied >= 4, "{first:?}");
    assert_eq!(
        first.pending, 0,
        "the open transaction is not visible yet: {first:?}"
    );
    let name: String =
        sqlx::query_scalar("select first_name from public.users where id = $1::uuid")
            .bind(&user)
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(name, "Renamed");
    let last: Option<String> =
        sqlx::query_scalar("select last_name from public.users where id = $1::uuid")
            .bind(&user)
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_ne!(last.as_deref(), Some("Pending"));

    open_tx.commit().await.unwrap();
    let second = sync::cycle(&mut src, &mut dst).await.unwrap();
    assert_eq!((second.applied, second.pending), (1, 0), "{second:?}");
    let again = sync::cycle(&mut src, &mut dst).await.unwrap();
    assert_eq!(again.applied, 0, "nothing left: {again:?}");

    let cents: i64 =
        sqlx::query_scalar("select amount from public.transactions where legacy_id = $1")
            .bind(new_tx.to_string())
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(cents, 123_450);
    let result = verify::run(&legacy.url, &target.url, 300).await.unwrap();
    assert!(
        result.differences().is_empty(),
        "{:#?}",
        result.differences()
    );
    target.assert_ledger_balanced().await;
}

/// A legacy delete of a transaction and of a membership, synced: the target removes both (the
/// rows kept for review), its books are posted again without them, and it passes its own
/// integrity checks and `verify`.
#[tokio::test]
async fn a_legacy_delete_leaves_the_targets_books_agreeing_with_its_rows() {
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed: 4,
        },
    )
    .await
    .unwrap();
    sync::install_capture(&mut src).await.unwrap();
    let target = TestDb::new().await;
    copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap();

    // A completed contribution that moved, and a member with money in a chama.
    let (gone_tx, chama): (i64, uuid::Uuid) = sqlx::query_as(
        "select t.id, t.chama_id from transactions t
          where lower(t.status) = 'completed' and lower(t.type) = 'contribution' and t.amount > 0
            and not exists (select from disbursement_requests d where d.transaction_id = t.id)
            and (t.mpesa_receipt is null or not exists (select from transactions o where o.mpesa_receipt = t.mpesa_receipt and o.id <> t.id))
          order by t.id limit 1",
    )
    .fetch_one(&mut src)
    .await
    .unwrap();
    let moved: i64 = sqlx::query_scalar(
        "select count(*) from public.transactions where legacy_id = $1 and status = 'completed'",
    )
    .bind(gone_tx.to_string())
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(moved, 1);
    let gone_member: i32 = sqlx::query_scalar(
        "select m.id from chama_members m join chamas c on c.id = m.chama_id
          where lower(m.role) = 'member' and lower(m.status) = 'active' and c.id <> $1
            and exists (select from transactions t where t.chama_id = m.chama_id and t.user_id = m.user_id
                         and lower(t.status) = 'completed' and lower(t.type) = 'contribution' and t.amount > 0)
          order by m.id limit 1",
    )
    .bind(chama)
    .fetch_one(&mut src)
    .await
    .unwrap();
    let member_row = pesachama_migrate::ids::legacy("chama_members", i64::from(gone_member));
    let total: i64 =
        sqlx::query_scalar("select contributed_total from public.chama_members where id = $1")
            .bind(member_row)
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert!(total > 0, "the member has money in the chama");
    sqlx::query("delete from transactions where id = $1")
        .bind(gone_tx)
        .execute(&mut src)
        .await
        .unwrap();
    sqlx::query("delete from chama_members where id = $1")
        .bind(gone_member)
        .execute(&mut src)
        .await
        .unwrap();

    let mut dst = source::connect(&target.url, "target").await.unwrap();
    let cycle = sync::cycle(&mut src, &mut dst).await.unwrap();
    assert_eq!(cycle.deletes_for_review.len(), 2, "{cycle:?}");

    target.assert_ledger_balanced().await;
    let left: i64 =
        sqlx::query_scalar("select count(*) from public.transactions where legacy_id = $1")
            .bind(gone_tx.to_string())
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(left, 0, "the deleted transaction left the target");
    let kept: Vec<String> = sqlx::query_scalar(
        "select source_table from pesachama_migrate.legacy_deletes order by source_table",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    assert_eq!(
        kept,
        vec!["chama_members", "transactions"],
        "kept for review"
    );
    let members: i64 =
        sqlx::query_scalar("select count(*) from public.chama_members where id = $1")
            .bind(member_row)
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(members, 0, "the deleted membership left the target");
    let result = verify::run(&legacy.url, &target.url, 300).await.unwrap();
    assert!(
        result.differences().is_empty(),
        "{:#?}",
        result.differences()
    );
}
