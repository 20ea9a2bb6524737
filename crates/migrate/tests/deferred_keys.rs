#![allow(clippy::unwrap_used)]

//! Keys dropped for a load and built again after it, on real PostgreSQL: a foreign key whose
//! rows do not all hold comes back `NOT VALID` with a warning, and a duplicated key stops the
//! run with PostgreSQL's message (and is still to build, so a re-run tries again).

use pesachama_migrate::{source, state};
use pesachama_testkit::TestDb;

async fn tables(db: &TestDb) -> sqlx::PgConnection {
    let mut conn = source::connect(&db.url, "target").await.unwrap();
    state::ensure(&mut conn).await.unwrap();
    sqlx::raw_sql(
        "create table public.parents (id bigint primary key, code text unique);
         create table public.children (id bigint primary key, parent_id bigint references public.parents (id));
         insert into public.parents values (1, 'a'), (2, 'b');
         insert into public.children values (10, 1);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

async fn constraints(conn: &mut sqlx::PgConnection) -> Vec<(String, bool)> {
    sqlx::query_as(
        "select conname::text, convalidated from pg_constraint
          where conrelid in ('public.parents'::regclass, 'public.children'::regclass) order by 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn keys_come_back_and_a_broken_foreign_key_comes_back_not_valid_with_a_warning() {
    let db = TestDb::empty().await;
    let mut conn = tables(&db).await;
    let before = constraints(&mut conn).await;
    let deferred = state::defer_constraints(&mut conn, &["public.parents"])
        .await
        .unwrap();
    // The parents' key and unique code, and the children's reference to them; not the
    // children's own key.
    assert_eq!(deferred, 3);
    assert_eq!(
        constraints(&mut conn).await,
        [("children_pkey".to_owned(), true)]
    );
    // The load: a child whose parent never came.
    sqlx::raw_sql(
        "insert into public.children values (11, 99); insert into public.parents values (3, 'c')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let warnings = state::restore_deferred(&db.url, 2).await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("children_parent_id_fkey") && warnings[0].contains("not valid"),
        "{warnings:?}"
    );
    let after = constraints(&mut conn).await;
    let expected: Vec<(String, bool)> = before
        .into_iter()
        .map(|(name, valid)| (name.clone(), valid && name != "children_parent_id_fkey"))
        .collect();
    assert_eq!(after, expected);
    assert!(
        state::deferred_constraints(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );
    // Still enforced for new rows.
    let orphan = sqlx::raw_sql("insert into public.children values (12, 98)")
        .execute(&mut conn)
        .await;
    assert!(orphan.is_err());
}

#[tokio::test]
async fn a_duplicated_key_stops_the_restore_and_stays_to_build() {
    let db = TestDb::empty().await;
    let mut conn = tables(&db).await;
    state::defer_constraints(&mut conn, &["public.parents"])
        .await
        .unwrap();
    sqlx::raw_sql("insert into public.parents values (2, 'z')")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = state::restore_deferred(&db.url, 2).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("parents_pkey") && message.contains("(id)=(2)"),
        "{message}"
    );
    let left = state::deferred_constraints(&mut conn).await.unwrap();
    assert!(
        left.iter().any(|c| c.starts_with("parents_pkey")),
        "{left:?}"
    );
    // Fixed (here by hand), a second restore finishes.
    sqlx::raw_sql("delete from public.parents where code = 'z'")
        .execute(&mut conn)
        .await
        .unwrap();
    let warnings = state::restore_deferred(&db.url, 2).await.unwrap();
    assert!(warnings.is_empty());
    assert!(
        state::deferred_constraints(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );
}
