//! Migrations apply once, in order, and leave the bookkeeping Supabase's CLI reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_store::migrations::{self, EMBEDDED, State};
use pesachama_testkit::TestDb;

#[tokio::test]
async fn migrating_an_empty_database_applies_every_migration_in_order() {
    let db = TestDb::empty().await;
    let before = migrations::status(&db.pool).await.unwrap();
    assert!(before.iter().all(|m| m.state == State::Pending));

    let applied = migrations::migrate(&db.pool).await.unwrap();
    let versions: Vec<_> = applied.iter().map(|m| m.version).collect();
    let expected: Vec<_> = EMBEDDED.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);

    let recorded: Vec<String> = sqlx::query_scalar(
        "select version from supabase_migrations.schema_migrations order by version",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(recorded, expected);
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let db = TestDb::new().await;
    let applied = migrations::migrate(&db.pool).await.unwrap();
    assert!(applied.is_empty());
    assert_eq!(migrations::pending_count(&db.pool).await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let (a, b, c) = tokio::join!(
        migrations::migrate(&db.pool),
        migrations::migrate(&db.pool),
        migrations::migrate(&db.pool)
    );
    let total = a.unwrap().len() + b.unwrap().len() + c.unwrap().len();
    assert_eq!(total, EMBEDDED.len());
}

#[tokio::test]
async fn a_migration_the_build_does_not_know_is_reported_not_hidden() {
    let db = TestDb::new().await;
    sqlx::query("insert into supabase_migrations.schema_migrations (version, name) values ('29991231000000', 'from_the_future')")
        .execute(&db.pool)
        .await
        .unwrap();
    let status = migrations::status(&db.pool).await.unwrap();
    let last = status.last().unwrap();
    assert_eq!(last.version, "29991231000000");
    assert_eq!(last.state, State::NotInThisBuild);
}
