#![allow(clippy::unwrap_used)]

//! Generated legacy data with every quirk -> plan -> copy (killed midway, resumed) -> verify,
//! on real PostgreSQL: zero differences, a balanced ledger, a corrupted row named, and a legacy
//! member signing in on the target with their old password through the real HTTP app.

use pesachama_migrate::{copy, generate, plan, source, verify};
use pesachama_testkit::{TestApp, TestDb};

const BATCH: usize = 400;

async fn legacy_db(scale: f64, rate: f64) -> TestDb {
    let db = TestDb::empty().await;
    let mut conn = source::connect(&db.url, "legacy").await.unwrap();
    generate::run(
        &mut conn,
        &generate::GenerateOptions {
            scale,
            quirk_rate: rate,
            seed: 7,
        },
    )
    .await
    .unwrap();
    db
}

fn options(stop: Option<u64>) -> copy::CopyOptions {
    copy::CopyOptions {
        batch_size: BATCH,
        max_quarantine: copy::QuarantineLimit::rows(10_000),
        stop_after_batches: stop,
        progress: false,
    }
}

#[tokio::test]
async fn every_quirk_is_planned_copied_resumed_and_verified() {
    let legacy = legacy_db(0.002, 0.2).await;

    let summary = plan::run(&legacy.url, BATCH, copy::QuarantineLimit::rows(10_000))
        .await
        .unwrap();
    let reasons: Vec<String> = summary
        .tables
        .values()
        .flat_map(|t| t.fixed.keys().chain(t.rejected.keys()).cloned())
        .collect();
    for quirk in [
        "phone rewritten to E.164",
        "same number as a soft-deleted user",
        "invalid email dropped",
        "email shared with another live user",
        "updated_at before created_at",
        "negative contribution: migrated as a reversal",
        "amount 0 moves no money",
        "duplicate M-Pesa callback",
        "chama does not exist",
        "same approver twice",
        "attendee is not a known user",
        "legacy ids inside data rewritten",
        "contribution frequency spelled differently",
        "token registered again",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(quirk)),
            "plan lacks {quirk:?}: {reasons:#?}"
        );
    }
    assert!(!summary.drift.is_empty(), "some generated chamas drifted");
    assert!(summary.skipped["user_sessions"].0 > 0);

    // Killed after a few batches, then resumed: the same result as one uninterrupted run.
    let target = TestDb::new().await;
    let indexes = "select string_agg(indexdef, E'\\n' order by indexdef) from pg_indexes
                    where schemaname in ('public', 'internal', 'auth')";
    let schema_indexes: String = sqlx::query_scalar(indexes)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    let constraints = "select string_agg(conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                              || case when convalidated then '' else ' NOT VALID' end, E'\n' order by conrelid::regclass::text, conname)
                         from pg_constraint where connamespace in ('public'::regnamespace, 'internal'::regnamespace, 'auth'::regnamespace)";
    let schema_constraints: String = sqlx::query_scalar(constraints)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    let err = copy::run(&legacy.url, &target.url, &options(Some(3)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stopped after"), "{err:#}");
    // The plain indexes were dropped for the load, and are recorded to be built again.
    let deferred: i64 =
        sqlx::query_scalar("select count(*) from pesachama_migrate.deferred_indexes")
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert!(deferred > 10, "{deferred} indexes deferred");
    // Never one of Supabase Auth's or Storage's (issue 27: `must be owner of index
    // identities_email_idx` on a Supabase project).
    let theirs: i64 = sqlx::query_scalar(
        "select count(*) from pesachama_migrate.deferred_indexes
          where table_name ~ '^(auth|storage)\\.'",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(theirs, 0);
    // On the large tables, so were the unique indexes that are no constraint's (every migrated
    // transaction fills its legacy id); on the others, such an index stays.
    let unique_deferred: Vec<String> = sqlx::query_scalar(
        "select name from pesachama_migrate.deferred_indexes
          where definition like 'CREATE UNIQUE INDEX %' order by name",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    for name in [
        "internal.journals_reversed_once",
        "transactions_legacy_id_key",
        "notifications_legacy_id_key",
    ] {
        assert!(
            unique_deferred.iter().any(|n| n == name),
            "{name} not deferred: {unique_deferred:?}"
        );
    }
    assert!(
        unique_deferred
            .iter()
            .all(|n| ["users_live", "chama_members", "ledger_accounts"]
                .iter()
                .all(|other| !n.contains(other))),
        "{unique_deferred:?}"
    );
    // So were the large tables' keys, and the foreign keys that need them.
    let keys: Vec<(String, String)> = sqlx::query_as(
        "select kind, name from pesachama_migrate.deferred_constraints order by kind, name",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    assert!(
        keys.iter()
            .any(|(k, n)| k == "key" && n == "transactions_pkey")
            && keys
                .iter()
                .any(|(k, n)| k == "foreign" && n == "postings_journal_id_fkey"),
        "{keys:?}"
    );
    let key_present: bool = sqlx::query_scalar(
        "select exists (select from pg_constraint where conname = 'transactions_pkey')",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert!(!key_present, "dropped for the load");
    // Autovacuum stays off on the tables being filled until the load is done.
    let autovacuum_off = "select c.oid::regclass::text from pg_class c
                           where c.relkind = 'r' and c.reloptions @> array['autovacuum_enabled=false']
                           order by 1";
    let off: Vec<String> = sqlx::query_scalar(autovacuum_off)
        .fetch_all(&target.pool)
        .await
        .unwrap();
    for table in ["internal.postings", "transactions"] {
        assert!(
            off.iter().any(|t| t == table),
            "{table} not suspended: {off:?}"
        );
    }
    // Supabase Auth's tables are never altered, even where the role could.
    assert!(!off.iter().any(|t| t.starts_with("auth.")), "{off:?}");
    // Verify says so, for the keys and for the plain indexes.
    let half = verify::run(&legacy.url, &target.url, BATCH).await.unwrap();
    for leftover in [
        "constraint transactions_pkey of transactions was dropped for a copy that has not finished",
        "was dropped for a copy that has not finished: run `migrate copy` again",
    ] {
        assert!(
            half.integrity.iter().any(|i| i.contains(leftover)),
            "{:#?}",
            half.integrity
        );
    }
    assert!(
        half.integrity
            .iter()
            .any(|i| i.starts_with("index ") && i.contains("has not finished")),
        "{:#?}",
        half.integrity
    );
    let resumed = copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap();
    assert!(resumed.resumed);
    let off: Vec<String> = sqlx::query_scalar(autovacuum_off)
        .fetch_all(&target.pool)
        .await
        .unwrap();
    assert!(off.is_empty(), "autovacuum back on everywhere: {off:?}");
    // The ledger went as two halves, each checkpointed, together every legacy transaction.
    let halves: Vec<(String, i64, bool)> = sqlx::query_as(
        "select step, source_rows, done from pesachama_migrate.checkpoints
          where step like 'transactions%' order by step",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    let legacy_transactions: i64 = sqlx::query_scalar("select count(*) from transactions")
        .fetch_one(&legacy.pool)
        .await
        .unwrap();
    assert_eq!(
        halves
            .iter()
            .map(|(s, _, d)| (s.as_str(), *d))
            .collect::<Vec<_>>(),
        [("transactions", true), ("transactions@2", true)]
    );
    assert!(halves.iter().all(|(_, rows, _)| *rows > 0), "{halves:?}");
    assert_eq!(
        halves.iter().map(|(_, rows, _)| rows).sum::<i64>(),
        legacy_transactions
    );
    let after: String = sqlx::query_scalar(indexes)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(
        after, schema_indexes,
        "every index is back as the schema defines it"
    );
    let constraints_after: String = sqlx::query_scalar(constraints)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(
        constraints_after, schema_constraints,
        "every key and foreign key is back, and valid"
    );
    assert!(resumed.warnings.is_empty(), "{:?}", resumed.warnings);
    assert_eq!(
        resumed.quarantined as u64,
        summary.rejected(),
        "quarantine holds exactly the rows that cannot move"
    );

    let result = verify::run(&legacy.url, &target.url, BATCH).await.unwrap();
    assert!(
        result.differences().is_empty(),
        "{:#?}",
        result.differences()
    );
    target.assert_ledger_balanced().await;
    let expected: i64 = summary.target_rows["public.transactions"] as i64;
    let copied: i64 = sqlx::query_scalar("select count(*) from public.transactions")
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(copied, expected, "no duplicates after the resume");
    let audit: i64 = sqlx::query_scalar(
        "select count(*) from public.audit_logs where action = 'migration.copy'",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(audit, 1, "one audit entry for the whole load");

    let unkept: i64 = sqlx::query_scalar(
        "select count(*) from pesachama_migrate.quarantine where legacy_row is null",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert_eq!(unkept, 0, "every quarantined row is kept, as JSON");

    // A finished copy is not run again (it would drop the keys of what may be live by now),
    // and the refusal changes nothing.
    let refused = copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("finished at"),
        "{refused:#}"
    );
    let again: i64 = sqlx::query_scalar("select count(*) from public.transactions")
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(again, copied);
    let keys_kept: bool = sqlx::query_scalar(
        "select exists (select from pg_constraint where conname = 'transactions_pkey')",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert!(keys_kept);

    // One corrupted row is found and named.
    let victim: String = sqlx::query_scalar(
        "select id::text from public.transactions where status = 'completed' order by id limit 1",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query("update public.transactions set description = 'tampered' where id = $1::uuid")
        .bind(&victim)
        .execute(&target.pool)
        .await
        .unwrap();
    let result = verify::run(&legacy.url, &target.url, BATCH).await.unwrap();
    let differences = result.differences();
    assert_eq!(differences.len(), 1, "{differences:#?}");
    assert!(differences[0].contains(&victim), "{differences:#?}");
}

#[tokio::test]
async fn a_legacy_member_signs_in_on_the_target_with_the_old_password() {
    let legacy = legacy_db(0.001, 0.05).await;
    let target = TestDb::new().await;
    copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap();

    let mut conn = source::connect(&legacy.url, "legacy").await.unwrap();
    let (email, hash, phone): (String, String, String) = sqlx::query_as(
        "select lower(email), password_hash, phone from users where deleted_at is null and password_hash is not null
           and email like '%@example.co.ke' and email = lower(email) order by id limit 1",
    )
    .fetch_one(&mut conn).await.unwrap();
    let password = generate::PASSWORDS
        .iter()
        .find(|p| pesachama_auth::hashing::verify_password(p, &hash))
        .unwrap();
    let app = TestApp::spawn_with(target, TestApp::config()).await;
    let session = app
        .sign_in(serde_json::json!({ "email": email, "password": password }))
        .await;
    assert!(session["access_token"].is_string());
    let wrong = app
        .auth(reqwest::Method::POST, "/token?grant_type=password")
        .json(&serde_json::json!({ "email": email, "password": "not-the-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let _ = phone;
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_message() {
    let legacy = legacy_db(0.001, 0.05).await;
    // A source that is not the legacy schema.
    let not_legacy = TestDb::new().await;
    let err = plan::run(&not_legacy.url, BATCH, copy::QuarantineLimit::default())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("not the legacy PesaChama v1 schema"),
        "{err:#}"
    );
    // A target that is not migrated.
    let empty = TestDb::empty().await;
    let err = copy::run(&legacy.url, &empty.url, &options(None))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("pesachama db migrate"),
        "{err:#}"
    );
    // A target that is not empty.
    let used = TestDb::new().await;
    sqlx::query(
        "insert into auth.users (id, email) values (gen_random_uuid(), 'someone@example.com')",
    )
    .execute(&used.pool)
    .await
    .unwrap();
    let err = copy::run(&legacy.url, &used.url, &options(None))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    // Unreachable.
    let err = copy::run(
        "postgres://nobody:x@127.0.0.1:1/none",
        &used.url,
        &options(None),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot connect to the legacy database"),
        "{err:#}"
    );
    // Two copies at once.
    let target = TestDb::new().await;
    let mut holder = source::connect(&target.url, "target").await.unwrap();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(pesachama_migrate::state::COPY_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    let err = copy::run(&legacy.url, &target.url, &options(None))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("another `pesachama migrate copy` is running"),
        "{err:#}"
    );
}
