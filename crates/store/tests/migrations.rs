//! Migrations apply once, in order, and leave the bookkeeping Supabase's CLI reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_store::migrations::{self, EMBEDDED, State};
use pesachama_testkit::TestDb;
use sqlx::Connection as _;

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

/// Supabase's schemas as the catalog describes them: every relation, column, function, index,
/// trigger, policy and comment in them, with owners and privileges, one line each. Members of
/// extensions are left out (creating an extension we use, `pg_trgm`, in `extensions` is what a
/// project does from its dashboard too).
const SUPABASE_OWNED: &str = "
with s as (select oid, nspname from pg_namespace
            where nspname in ('auth', 'storage', 'extensions', 'realtime', 'graphql_public', 'pgbouncer'))
select 'schema ' || s.nspname || ' ' || pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '')
  from s join pg_namespace n on n.oid = s.oid
union all
select 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner)
       || ' ' || coalesce(c.relacl::text, '') || ' ' || coalesce(c.reloptions::text, '')
       || ' rls=' || c.relrowsecurity || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
  from pg_class c join s on s.oid = c.relnamespace
 where not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                     and d.deptype = 'e')
union all
select 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' ' || coalesce(a.attacl::text, '')
  from pg_attribute a join pg_class c on c.oid = a.attrelid join s on s.oid = c.relnamespace
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where a.attnum > 0 and not a.attisdropped
union all
select 'function ' || p.oid::regprocedure || ' ' || pg_get_userbyid(p.proowner) || ' '
       || coalesce(p.proacl::text, '') || ' ' || md5(coalesce(p.prosrc, '')) || ' ' || p.prosecdef
  from pg_proc p join s on s.oid = p.pronamespace
 where not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                     and d.deptype = 'e')
union all
select 'index ' || pg_get_indexdef(i.indexrelid) || ' ' || coalesce(obj_description(i.indexrelid, 'pg_class'), '')
  from pg_index i join pg_class c on c.oid = i.indrelid join s on s.oid = c.relnamespace
union all
select 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass || ' ' || t.tgenabled::text
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join s on s.oid = c.relnamespace
 where not t.tgisinternal
union all
select 'policy ' || pol.polname || ' on ' || pol.polrelid::regclass
  from pg_policy pol join pg_class c on c.oid = pol.polrelid join s on s.oid = c.relnamespace
order by 1";

/// On a Supabase project, our migrations change nothing of Supabase's but add our policies on
/// `storage.objects` (issue 27: the compatibility layer granted on Supabase's functions, and
/// `migrate copy` dropped GoTrue's indexes). Meaningful only on the Supabase-shaped database
/// (`scripts/test-supabase`, run by CI for both permission models): on plain PostgreSQL these
/// schemas are ours, made by the compatibility layer.
#[tokio::test]
async fn on_supabase_our_migrations_touch_nothing_of_supabases_but_storage_policies() {
    if !pesachama_testkit::supabase_mode() {
        return;
    }
    let db = TestDb::empty().await;
    let snapshot = || async {
        sqlx::query_scalar::<_, String>(SUPABASE_OWNED)
            .fetch_all(&db.pool)
            .await
            .unwrap()
    };
    let before = snapshot().await;
    migrations::migrate(&db.pool).await.unwrap();
    let after = snapshot().await;
    let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    let added: Vec<_> = after
        .iter()
        .filter(|l| !before.contains(l))
        .filter(|l| !(l.starts_with("policy pesachama_") && l.ends_with(" on storage.objects")))
        .collect();
    assert!(
        gone.is_empty() && added.is_empty(),
        "changed by our migrations:\n- {gone:#?}\n+ {added:#?}"
    );
}

/// On a Supabase project, a role without rights on GoTrue's tables, or one supautils does not
/// let create policies on `storage.objects`, is told which right it lacks and how to grant it,
/// and nothing is migrated. Meaningful only on the Supabase-shaped database (there `auth` and
/// `storage` are not ours; see `scripts/test-supabase`).
#[tokio::test]
async fn on_supabase_a_role_without_the_rights_is_told_which_before_anything_is_written() {
    if !pesachama_testkit::supabase_mode() {
        return;
    }
    let db = TestDb::empty().await;
    let role = format!("deployer_{}", &db.name[db.name.len() - 8..]);
    let mut admin = sqlx::PgConnection::connect(pesachama_testkit::admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "create role {role} login; grant create, connect on database {} to {role}",
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let pool = pesachama_store::connect(&url, 1).await.unwrap();
    let refused = migrations::migrate(&pool).await.unwrap_err().to_string();
    for named in [
        "nothing was written",
        "SELECT, INSERT and UPDATE on auth.users",
        &format!("grant select, insert, update on auth.users to {role}"),
        "storage",
    ] {
        assert!(refused.contains(named), "{named:?} not in: {refused}");
    }
    let bookkeeping: bool = sqlx::query_scalar(
        "select to_regclass('supabase_migrations.schema_migrations') is not null
             or to_regnamespace('internal') is not null",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!bookkeeping, "nothing written");
    pool.close().await;
    sqlx::raw_sql(&format!(
        "revoke all on database {} from {role}; drop role {role}",
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
}
