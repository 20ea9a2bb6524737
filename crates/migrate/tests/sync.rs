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
