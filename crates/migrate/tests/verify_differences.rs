//! `verify` on a copy with a few differences (a posting, a deleted notification, an archived
//! audit entry, each on a table whose row key has no index): each is found and named exactly,
//! in about the time of a clean verify. `PESACHAMA_VERIFY_SCALE` (default 0.002) sets the size
//! of the generated legacy database, to measure at a larger one (`--no-capture` prints times).

#![allow(clippy::unwrap_used)]

use pesachama_migrate::{copy, generate, source, verify};
use pesachama_testkit::TestDb;

#[tokio::test]
async fn a_few_differences_are_each_named_in_about_the_time_of_a_clean_verify() {
    let scale: f64 = std::env::var("PESACHAMA_VERIFY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.002);
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale,
            quirk_rate: 0.02,
            seed: 12,
        },
    )
    .await
    .unwrap();
    drop(src);
    let target = TestDb::new().await;
    let options = copy::CopyOptions {
        batch_size: 5000,
        max_quarantine: copy::QuarantineLimit::rows(1_000_000),
        progress: false,
        ..Default::default()
    };
    copy::run(&legacy.url, &target.url, &options).await.unwrap();

    let mut dst = source::connect(&target.url, "target").await.unwrap();
    let scans_before = postings_scans(&mut dst).await;
    let clean = verify::run(&legacy.url, &target.url, 5000).await.unwrap();
    let clean_scans = postings_scans(&mut dst).await - scans_before;
    let clean_tables: Vec<String> = clean
        .tables
        .iter()
        .flat_map(|t| t.differences.clone())
        .collect();
    assert!(clean_tables.is_empty(), "{clean_tables:#?}");

    let (journal, account, notification, audit): (uuid::Uuid, uuid::Uuid, uuid::Uuid, i64) =
        sqlx::query_as(
            "select p.journal_id, p.account_id,
                    (select id from public.notifications order by id limit 1),
                    (select id from internal.legacy_audit_logs order by id limit 1)
               from internal.postings p order by p.id desc limit 1",
        )
        .fetch_one(&mut dst)
        .await
        .unwrap();
    // Past the ledger's and the archive's append-only guards, as a corruption would be.
    sqlx::raw_sql(&format!(
        "set session_replication_role = replica;
         update internal.postings set amount = amount + 1 where journal_id = '{journal}' and account_id = '{account}';
         delete from public.notifications where id = '{notification}';
         update internal.legacy_audit_logs set action = 'tampered' where id = {audit};
         set session_replication_role = origin;"
    ))
    .execute(&mut dst)
    .await
    .unwrap();

    let scans_before = postings_scans(&mut dst).await;
    let tampered = verify::run(&legacy.url, &target.url, 5000).await.unwrap();
    let tampered_scans = postings_scans(&mut dst).await - scans_before;
    let found: Vec<String> = tampered
        .tables
        .iter()
        .flat_map(|t| t.differences.clone())
        .collect();
    let posting_key: String =
        sqlx::query_scalar("select md5($1::text || '/' || $2::text)::uuid::text")
            .bind(journal)
            .bind(account)
            .fetch_one(&mut dst)
            .await
            .unwrap();
    let audit_key: String = sqlx::query_scalar("select md5($1::text)::uuid::text")
        .bind(audit)
        .fetch_one(&mut dst)
        .await
        .unwrap();
    let mut expected = vec![
        format!("internal.postings {posting_key}: differs from the transformed source"),
        format!("public.notifications {notification}: missing in the target"),
        format!("internal.legacy_audit_logs {audit_key}: differs from the transformed source"),
    ];
    let mut found_sorted = found.clone();
    found_sorted.sort();
    expected.sort();
    assert_eq!(found_sorted, expected);
    eprintln!(
        "verify at scale {scale}: {} rows compared; clean {:.2} s ({clean_scans} scans of the postings), with 3 differences {:.2} s ({tampered_scans} scans)",
        tampered.rows_compared, clean.seconds, tampered.seconds
    );
    // The postings' row key has no index: finding the one that differs costs one more scan,
    // not one per key range of a bisection.
    assert!(
        tampered_scans <= clean_scans + 2,
        "finding a difference scanned the postings {tampered_scans} times (a clean verify: {clean_scans})"
    );
}

/// Sequential scans of the target's postings so far (after the sessions that made them ended).
async fn postings_scans(conn: &mut sqlx::PgConnection) -> i64 {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sqlx::query_scalar(
        "select coalesce(seq_scan, 0) from pg_stat_user_tables where relid = 'internal.postings'::regclass",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}
