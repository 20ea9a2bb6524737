//! Applies `supabase/migrations/` and reports on them.
//!
//! Bookkeeping lives in `supabase_migrations.schema_migrations`, the table the Supabase CLI
//! uses, so a database migrated by `pesachama db migrate` and one migrated by
//! `supabase db push` agree on what has been applied, and either tool can take over.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// One migration file, embedded at build time.
#[derive(Debug)]
pub struct Migration {
    /// The 14-digit timestamp prefix of the file name.
    pub version: &'static str,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Every migrating process takes this transaction-scoped advisory lock, so several servers
/// starting at once apply each migration exactly once.
const MIGRATION_LOCK: i64 = 0x7065_7361_6d69_6772; // "pesamigr"

const BOOKKEEPING: &str = "
    create schema if not exists supabase_migrations;
    create table if not exists supabase_migrations.schema_migrations (version text primary key);
    alter table supabase_migrations.schema_migrations add column if not exists statements text[];
    alter table supabase_migrations.schema_migrations add column if not exists name text;
    alter table supabase_migrations.schema_migrations
        add column if not exists applied_at timestamptz default now();
";

/// Applies every migration not applied yet, each in its own transaction; returns those applied.
/// On a database whose `auth` and `storage` are someone else's (a Supabase project), the rights
/// the schema needs there are checked first ([`preflight`]): a role without them is told which
/// and how to grant them, before anything is written.
pub async fn migrate(pool: &PgPool) -> Result<Vec<&'static Migration>, StoreError> {
    let mut applied = Vec::new();
    let pending = status(pool)
        .await
        .map(|all| all.iter().any(|m| m.state == State::Pending))
        .unwrap_or(true);
    {
        let mut tx = pool.begin().await?;
        lock(&mut tx).await?;
        if pending {
            preflight(&mut tx).await?;
        }
        sqlx::raw_sql(BOOKKEEPING).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    for migration in EMBEDDED {
        let mut tx = pool.begin().await?;
        lock(&mut tx).await?;
        let done: bool = sqlx::query_scalar(
            "select exists (select from supabase_migrations.schema_migrations where version = $1)",
        )
        .bind(migration.version)
        .fetch_one(&mut *tx)
        .await?;
        if done {
            continue;
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::MigrationFailed {
                version: migration.version.to_owned(),
                name: migration.name.to_owned(),
                source,
            })?;
        sqlx::query(
            "insert into supabase_migrations.schema_migrations (version, name, statements)
             values ($1, $2, array[$3])",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(migration.sql)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied.push(migration);
    }
    Ok(applied)
}

/// The rights our schema needs in Supabase's `auth` and `storage`, where those schemas exist and
/// are not the migrating role's own: reading and writing GoTrue's user tables (sign-up, the
/// profile, `caller_phone()`), and creating policies on `storage.objects` (which a Supabase
/// project grants `postgres` through supautils' `policy_grants`). Each missing one is named
/// with what to do; the check writes nothing (the trial policy is rolled back).
pub async fn preflight(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let (role, foreign_auth): (String, bool) = sqlx::query_as(
        "select current_user::text,
                coalesce((select not pg_has_role(n.nspowner, 'USAGE') from pg_namespace n
                           where n.nspname = 'auth'), false)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !foreign_auth {
        return Ok(());
    }
    let mut missing = Vec::new();
    for schema in ["auth", "storage"] {
        let usage: Option<bool> = sqlx::query_scalar(
            "select has_schema_privilege(oid, 'USAGE') from pg_namespace where nspname = $1",
        )
        .bind(schema)
        .fetch_optional(&mut *conn)
        .await?;
        if usage == Some(false) {
            missing.push(format!(
                "USAGE on schema {schema} (grant usage on schema {schema} to {role};)"
            ));
        }
    }
    for table in ["users", "identities", "sessions", "refresh_tokens"] {
        // By oid: naming the table would need USAGE on the schema, checked above.
        let granted: Option<bool> = sqlx::query_scalar(
            "select has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE')
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'auth' and c.relname = $1",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?;
        if granted == Some(false) {
            missing.push(format!(
                "SELECT, INSERT and UPDATE on auth.{table} (grant select, insert, update on auth.{table} to {role};)"
            ));
        }
    }
    let needs_policies: bool = sqlx::query_scalar(
        "select case when exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                    where n.nspname = 'storage' and c.relname = 'objects')
                     then has_schema_privilege('storage', 'USAGE')
                          and not exists (select from pg_policies
                                           where schemaname = 'storage' and tablename = 'objects'
                                             and policyname like 'pesachama\\_%')
                     else false end",
    )
    .fetch_one(&mut *conn)
    .await?;
    if needs_policies {
        // A savepoint when the caller is in a transaction, a transaction of its own otherwise.
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let trial = sqlx::query(
            "create policy pesachama_preflight on storage.objects for select to authenticated using (false)",
        )
        .execute(&mut *tx)
        .await;
        tx.rollback().await?;
        if let Err(err) = trial {
            let denied = err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "42501");
            if !denied {
                return Err(err.into());
            }
            missing.push(format!(
                "the right to create policies on storage.objects, which {role} does not own: on Supabase, \
                 connect as postgres (supautils lets it through `policy_grants`); elsewhere, run \
                 the migrations as the owner of storage.objects"
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::MissingRight(format!(
            "nothing was written: the role {role} lacks {}",
            missing.join("; and ")
        )))
    }
}

async fn lock(tx: &mut sqlx::PgTransaction<'_>) -> Result<(), StoreError> {
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// In the database but not in this build (a newer pesachama, or a project's own migration).
    NotInThisBuild,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    pub version: String,
    pub name: String,
    pub state: State,
    pub applied_at: Option<DateTime<Utc>>,
}

/// Every migration this build knows and every one the database has, in version order.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, StoreError> {
    let recorded: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = match sqlx::query_as(
        "select version, name, applied_at from supabase_migrations.schema_migrations order by version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        Err(err) => match StoreError::from_missing_schema(err) {
            StoreError::NotMigrated => Vec::new(),
            other => return Err(other),
        },
    };

    let mut out: Vec<MigrationStatus> = EMBEDDED
        .iter()
        .map(|m| {
            let row = recorded.iter().find(|(version, _, _)| version == m.version);
            MigrationStatus {
                version: m.version.to_owned(),
                name: m.name.to_owned(),
                state: if row.is_some() {
                    State::Applied
                } else {
                    State::Pending
                },
                applied_at: row.and_then(|(_, _, at)| *at),
            }
        })
        .collect();
    for (version, name, applied_at) in recorded {
        if !EMBEDDED.iter().any(|m| m.version == version) {
            out.push(MigrationStatus {
                version,
                name: name.unwrap_or_default(),
                state: State::NotInThisBuild,
                applied_at,
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// How many of this build's migrations the database still lacks.
pub async fn pending_count(pool: &PgPool) -> Result<usize, StoreError> {
    Ok(status(pool)
        .await?
        .iter()
        .filter(|m| m.state == State::Pending)
        .count())
}
