//! The toolkit's own bookkeeping on the target, in schema `pesachama_migrate` (created by
//! `migrate copy`, never exposed to the Data API): checkpoints per step, the quarantine, fix
//! counts, balance drift. A batch's rows and its checkpoint commit in one transaction, so a
//! killed run resumes after the last committed batch with nothing duplicated or lost.

use std::collections::HashMap;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::PgConnection;

use crate::ledger::Drift;
use crate::source;
use crate::target::{Issue, Severity};

const SCHEMA: &str = "
create schema if not exists pesachama_migrate;
revoke all on schema pesachama_migrate from public;
create table if not exists pesachama_migrate.runs (
  id bigserial primary key,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  status text not null default 'running',
  options jsonb not null default '{}'
);
create table if not exists pesachama_migrate.checkpoints (
  step text primary key,
  last_key text,
  batches bigint not null default 0,
  source_rows bigint not null default 0,
  target_rows bigint not null default 0,
  done boolean not null default false,
  updated_at timestamptz not null default now()
);
create table if not exists pesachama_migrate.quarantine (
  id bigserial primary key,
  source_table text not null,
  legacy_id text not null,
  reason text not null,
  legacy_row jsonb,
  created_at timestamptz not null default now(),
  unique (source_table, legacy_id, reason)
);
create table if not exists pesachama_migrate.fixes (
  source_table text not null,
  reason text not null,
  rows bigint not null default 0,
  primary key (source_table, reason)
);
create table if not exists pesachama_migrate.deferred_indexes (
  name text primary key,
  table_name text not null,
  definition text not null
);
create table if not exists pesachama_migrate.deferred_constraints (
  name text not null,
  table_name text not null,
  definition text not null,
  kind text not null check (kind in ('key', 'foreign')),
  primary key (table_name, name)
);
create table if not exists pesachama_migrate.drift (
  chama_id uuid primary key,
  legacy_balance bigint not null,
  legacy_sum bigint not null,
  migrated_balance bigint not null,
  opening_balance bigint not null
);
-- Why each chama's legacy balance and migrated balance differ: [{cause, amount, legacy_rows}],
-- amounts (legacy minus migrated, cents) adding up to the difference.
alter table pesachama_migrate.drift add column if not exists causes jsonb not null default '[]';
-- Per legacy row, each fix a person must be able to review (reason ending in (review)):
-- the legacy key, why (reason) and what changed (detail).
-- A detail can be long (an opening balance names every row it stands for): the key holds its md5.
create table if not exists pesachama_migrate.fixed_rows (
  id bigserial primary key,
  source_table text not null,
  legacy_id text not null,
  reason text not null,
  detail text not null default ''
);
create unique index if not exists fixed_rows_once
  on pesachama_migrate.fixed_rows (source_table, legacy_id, reason, md5(detail));
";

/// Drops the indexes of `tables` that are no constraint's, after recording them in
/// `pesachama_migrate.deferred_indexes`, in one transaction: loading into unindexed tables and
/// building each index once afterwards is much cheaper than updating it row by row (pg_restore
/// does the same). Unique ones go only on the [`KEYS_BUILT_AFTER`] tables, as their keys do
/// (partial unique indexes such as `transactions_legacy_id_key`, which every migrated row
/// fills); the keys themselves are deferred by [`defer_constraints`].
/// A run killed meanwhile leaves them recorded; [`restore_deferred`] builds them at the end of
/// the run that finishes. Answers how many indexes are deferred.
///
/// Only our own tables' indexes: never those of `auth` and `storage`, which belong to Supabase
/// Auth and Storage (on a Supabase project the role cannot drop them; on an older project it
/// could, and would lose their comments and whatever Supabase attached to them).
pub async fn defer_indexes(conn: &mut PgConnection, tables: &[&str]) -> anyhow::Result<i64> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "insert into pesachama_migrate.deferred_indexes (name, table_name, definition)
         select i.indexrelid::regclass::text, i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid)
           from pg_index i
          where i.indrelid = any (select to_regclass(t) from unnest($1::text[]) t)
            and not i.indisprimary
            and (not i.indisunique
                 or i.indrelid = any (select to_regclass(t) from unnest($2::text[]) t))
            and not exists (select from pg_constraint c where c.conindid = i.indexrelid)
            and exists (select from pg_class t
                         where t.oid = i.indrelid and pg_has_role(t.relowner, 'MEMBER')
                           and t.relnamespace::regnamespace::text not in ('auth', 'storage'))
         on conflict (name) do nothing",
    )
    .bind(tables)
    .bind(KEYS_BUILT_AFTER)
    .execute(&mut *tx)
    .await
    .context("recording the indexes to build after the load")?;
    let names: Vec<String> =
        sqlx::query_scalar("select name from pesachama_migrate.deferred_indexes order by name")
            .fetch_all(&mut *tx)
            .await?;
    for name in &names {
        // The name is a regclass as PostgreSQL printed it (quoted where needed).
        sqlx::raw_sql(&format!("drop index if exists {name}"))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("dropping index {name} for the load"))?;
    }
    tx.commit().await?;
    Ok(names.len() as i64)
}

/// Turns autovacuum off (`suspended`) or back to the server's settings for `tables`. During
/// the load it would vacuum and analyze tables that are still filling, on the same cores as the
/// load (measured at a fifth of the production size: about 4 % of all CPU samples while the
/// copy ran). The tables are new, so there is no setting of the operator's to keep; a killed
/// run leaves autovacuum off until the resumed run finishes. Tables the connecting role does
/// not own (ALTER TABLE needs ownership), and Supabase's `auth` and `storage`, are left as
/// they are.
pub async fn suspend_autovacuum(
    conn: &mut PgConnection,
    tables: &[&str],
    suspended: bool,
) -> anyhow::Result<()> {
    let owned: Vec<String> = sqlx::query_scalar(
        "select c.oid::regclass::text from pg_class c
          where c.oid = any (select to_regclass(t) from unnest($1::text[]) t)
            and pg_has_role(c.relowner, 'MEMBER')
            and c.relnamespace::regnamespace::text not in ('auth', 'storage')",
    )
    .bind(tables)
    .fetch_all(&mut *conn)
    .await
    .context("listing the tables whose autovacuum the load suspends")?;
    let change = if suspended {
        "set (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
    } else {
        "reset (autovacuum_enabled, toast.autovacuum_enabled)"
    };
    for table in &owned {
        sqlx::raw_sql(&format!("alter table {table} {change}"))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("alter table {table} {change}"))?;
    }
    Ok(())
}

/// The tables whose keys are built after the load rather than kept up to date row by row:
/// the large ones, whose rows arrive in an order that scatters their (random) keys over the
/// whole index, so each row's insert touches a different page. Measured at a fifth of the
/// production size, this upkeep was a quarter of the copy's time, and building the same keys
/// afterwards took under a tenth of it.
pub const KEYS_BUILT_AFTER: &[&str] = &[
    "internal.journals",
    "internal.postings",
    "public.transactions",
    "public.notifications",
    "internal.legacy_audit_logs",
];

/// Drops the primary keys and unique constraints of `tables`, and the foreign keys that point
/// at them (which need them), after recording each in `pesachama_migrate.deferred_constraints`,
/// in one transaction. [`restore_deferred`] adds them back when the load is done. Nothing
/// depends on them meanwhile: every batch is written whole with its checkpoint, so a resumed
/// run writes nothing twice, and the load checks no foreign keys (triggers are quiet). The
/// transforms produce unique keys (derived from unique legacy ids, duplicates quarantined);
/// the keys being built again afterwards is the proof. Answers how many are deferred.
pub async fn defer_constraints(conn: &mut PgConnection, tables: &[&str]) -> anyhow::Result<i64> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "insert into pesachama_migrate.deferred_constraints (name, table_name, definition, kind)
         select c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid),
                case when c.contype = 'f' then 'foreign' else 'key' end
           from pg_constraint c
          where ((c.contype in ('p', 'u') and c.conrelid = any (select to_regclass(t) from unnest($1::text[]) t))
                 or (c.contype = 'f' and c.confrelid = any (select to_regclass(t) from unnest($1::text[]) t)))
            -- never Supabase's own tables' (see defer_indexes)
            and exists (select from pg_class t
                         where t.oid = c.conrelid and pg_has_role(t.relowner, 'MEMBER')
                           and t.relnamespace::regnamespace::text not in ('auth', 'storage'))
         on conflict do nothing",
    )
    .bind(tables)
    .execute(&mut *tx)
    .await
    .context("recording the keys to build after the load")?;
    let deferred: Vec<(String, String)> = sqlx::query_as(
        "select table_name, name from pesachama_migrate.deferred_constraints
          order by kind = 'key', table_name, name",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Foreign keys first: a key cannot go while a foreign key needs it.
    for (table, name) in &deferred {
        sqlx::raw_sql(&format!(
            "alter table {table} drop constraint if exists {}",
            quote_ident(name)
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("dropping {name} of {table} for the load"))?;
    }
    tx.commit().await?;
    Ok(deferred.len() as i64)
}

/// Constraints a copy dropped and has not added back (its run did not finish).
pub async fn deferred_constraints(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let recorded: bool = sqlx::query_scalar(
        "select to_regclass('pesachama_migrate.deferred_constraints') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !recorded {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "select name || ' of ' || table_name from pesachama_migrate.deferred_constraints
          order by table_name, name",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// PostgreSQL's DETAIL of a database error (which names a duplicated key), as ": ...".
fn detail(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        .and_then(|e| e.detail())
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Builds again what [`defer_indexes`] and [`defer_constraints`] dropped, each forgotten once
/// it is back: first the keys and the plain indexes, `parallel` at a time on connections of
/// their own (largest table first), then the foreign keys, which need the keys.
///
/// A key that cannot be built (duplicates: a bug in a transform) stops the run with
/// PostgreSQL's message naming the duplicated value; a re-run tries again. A foreign key is
/// added `NOT VALID` and then validated; one whose rows do not all hold stays `NOT VALID`
/// (still enforced for new rows), and is answered here as a warning (`verify` lists the rows).
pub async fn restore_deferred(url: &str, parallel: usize) -> anyhow::Result<Vec<String>> {
    let mut conn = source::connect(url, "target").await?;
    if !exists(&mut conn).await? {
        return Ok(Vec::new());
    }
    let builds: Vec<(String, String, String, String)> = sqlx::query_as(
        "select table_name, name, definition, kind
           from (select table_name, name, definition, 'key' as kind
                   from pesachama_migrate.deferred_constraints where kind = 'key'
                 union all
                 select table_name, name, definition, 'index'
                   from pesachama_migrate.deferred_indexes) b
          order by coalesce(pg_relation_size(to_regclass(table_name)), 0) desc, table_name, name",
    )
    .fetch_all(&mut conn)
    .await?;
    let jobs = builds
        .into_iter()
        .map(|(table, name, definition, kind)| async move {
            let mut conn = source::connect(url, "target").await?;
            sqlx::raw_sql("set maintenance_work_mem = '256MB'")
                .execute(&mut conn)
                .await?;
            if kind == "key" {
                add_constraint(&mut conn, &table, &name, &definition, "").await?;
                forget_constraint(&mut conn, &table, &name).await
            } else {
                let create = definition.replacen(" INDEX ", " INDEX IF NOT EXISTS ", 1);
                let mut tx = sqlx::Connection::begin(&mut conn).await?;
                sqlx::raw_sql(&create)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| {
                        anyhow::anyhow!(
                            "building index {name} after the load: {err}{} (`migrate copy` again retries)",
                            detail(&err)
                        )
                    })?;
                sqlx::query("delete from pesachama_migrate.deferred_indexes where name = $1")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        });
    futures_util::stream::iter(jobs)
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    let foreign: Vec<(String, String, String)> = sqlx::query_as(
        "select table_name, name, definition from pesachama_migrate.deferred_constraints
          where kind = 'foreign' order by table_name, name",
    )
    .fetch_all(&mut conn)
    .await?;
    // Added one at a time (each locks both of its tables), then validated side by side: a
    // validation locks only against changes to its tables' schema, and is a scan of each.
    for (table, name, definition) in &foreign {
        add_constraint(&mut conn, table, name, definition, " NOT VALID").await?;
    }
    let validations = foreign.into_iter().map(|(table, name, _)| async move {
        let mut conn = source::connect(url, "target").await?;
        let validated = sqlx::raw_sql(&format!(
            "alter table {table} validate constraint {}",
            quote_ident(&name)
        ))
        .execute(&mut conn)
        .await;
        forget_constraint(&mut conn, &table, &name).await?;
        anyhow::Ok(validated.err().map(|err| {
            format!(
                "foreign key {name} of {table} is back but not valid: {err}{} (`migrate verify` lists the rows)",
                detail(&err)
            )
        }))
    });
    let mut warnings: Vec<String> = futures_util::stream::iter(validations)
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<Option<String>>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    warnings.sort();
    Ok(warnings)
}

/// Adds a recorded constraint unless it is there already (a run killed after adding it).
async fn add_constraint(
    conn: &mut PgConnection,
    table: &str,
    name: &str,
    definition: &str,
    suffix: &str,
) -> anyhow::Result<()> {
    let present: bool = sqlx::query_scalar(
        "select exists (select from pg_constraint where conrelid = to_regclass($1) and conname = $2)",
    )
    .bind(table)
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    if present {
        return Ok(());
    }
    sqlx::raw_sql(&format!(
        "alter table {table} add constraint {} {definition}{suffix}",
        quote_ident(name)
    ))
    .execute(&mut *conn)
    .await
    .map_err(|err| {
        anyhow::anyhow!(
            "building {name} of {table} after the load: {err}{} (the transforms should never produce this: please report it; `migrate copy` again retries)",
            detail(&err)
        )
    })?;
    Ok(())
}

async fn forget_constraint(conn: &mut PgConnection, table: &str, name: &str) -> anyhow::Result<()> {
    sqlx::query(
        "delete from pesachama_migrate.deferred_constraints where table_name = $1 and name = $2",
    )
    .bind(table)
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Indexes a copy dropped and has not built again (its run did not finish).
pub async fn deferred_indexes(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    if !exists(conn).await? {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("select name from pesachama_migrate.deferred_indexes order by name")
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Held by a running `migrate copy` for its whole run, on the target.
pub const COPY_LOCK: i64 = 0x7065_7361_636f_7079; // "pesacopy"

pub async fn ensure(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *conn)
        .await
        .context("creating schema pesachama_migrate")?;
    Ok(())
}

pub async fn exists(conn: &mut PgConnection) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select to_regclass('pesachama_migrate.checkpoints') is not null")
            .fetch_one(&mut *conn)
            .await?,
    )
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Checkpoint {
    pub step: String,
    pub last_key: Option<String>,
    pub batches: i64,
    pub source_rows: i64,
    pub target_rows: i64,
    pub done: bool,
}

pub async fn checkpoints(conn: &mut PgConnection) -> anyhow::Result<Vec<Checkpoint>> {
    if !exists(conn).await? {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as("select step, last_key, batches, source_rows, target_rows, done from pesachama_migrate.checkpoints order by step")
        .fetch_all(&mut *conn)
        .await?)
}

/// The legacy rows of rejected issues, as JSON, read from the source for the quarantine.
pub async fn rejected_rows(
    src: &mut PgConnection,
    issues: &[Issue],
) -> anyhow::Result<HashMap<(String, String), String>> {
    let mut by_table: HashMap<&str, Vec<&str>> = HashMap::new();
    for issue in issues.iter().filter(|i| i.severity == Severity::Rejected) {
        by_table
            .entry(issue.table)
            .or_default()
            .push(issue.legacy_id.as_str());
    }
    let mut rows = HashMap::new();
    for (table, ids) in by_table {
        // By the id column's own type, so the primary key finds them: comparing `id::text`
        // would read the whole table for every batch.
        let id_type: String = sqlx::query_scalar(
            "select format_type(a.atttypid, a.atttypmod) from pg_attribute a
              where a.attrelid = to_regclass('public.' || $1) and a.attname = 'id'",
        )
        .bind(table)
        .fetch_one(&mut *src)
        .await
        .with_context(|| format!("legacy table {table} has no id column"))?;
        let found: Vec<(String, String)> = sqlx::query_as(&format!(
            "select t.id::text, row_to_json(t)::text from public.{table} t where t.id = any($1::text[]::{id_type}[])"
        ))
        .bind(&ids)
        .fetch_all(&mut *src)
        .await?;
        for (id, row) in found {
            rows.insert((table.to_owned(), id), row);
        }
    }
    Ok(rows)
}

/// Records one committed batch (call inside the batch's transaction).
#[allow(clippy::too_many_arguments)]
pub async fn record_batch(
    conn: &mut PgConnection,
    step: &str,
    key: &str,
    source_rows: u64,
    target_rows: u64,
    issues: &[Issue],
    drifts: &[Drift],
    legacy_rows: &HashMap<(String, String), String>,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into pesachama_migrate.checkpoints (step, last_key, batches, source_rows, target_rows)
         values ($1, $2, 1, $3, $4)
         on conflict (step) do update set last_key = excluded.last_key, batches = checkpoints.batches + 1,
           source_rows = checkpoints.source_rows + excluded.source_rows,
           target_rows = checkpoints.target_rows + excluded.target_rows, updated_at = now()",
    )
    .bind(step).bind(key).bind(source_rows as i64).bind(target_rows as i64)
    .execute(&mut *conn).await?;
    let (mut q_tables, mut q_ids, mut q_reasons, mut q_rows) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fixes: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
    for issue in issues {
        match issue.severity {
            Severity::Rejected => {
                q_tables.push(issue.table);
                q_ids.push(issue.legacy_id.as_str());
                q_reasons.push(issue.reason.as_str());
                q_rows.push(
                    legacy_rows
                        .get(&(issue.table.to_owned(), issue.legacy_id.clone()))
                        .cloned(),
                );
            }
            _ => {
                *fixes
                    .entry((issue.table, issue.reason.as_str()))
                    .or_default() += 1
            }
        }
    }
    let review: Vec<&Issue> = issues.iter().filter(|i| i.for_review()).collect();
    sqlx::query(
        "insert into pesachama_migrate.fixed_rows (source_table, legacy_id, reason, detail)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[])
         on conflict do nothing",
    )
    .bind(review.iter().map(|i| i.table).collect::<Vec<_>>())
    .bind(
        review
            .iter()
            .map(|i| i.legacy_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(review.iter().map(|i| i.reason.as_str()).collect::<Vec<_>>())
    .bind(
        review
            .iter()
            .map(|i| i.detail.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await
    .context("recording the fixed rows to review")?;
    sqlx::query(
        "insert into pesachama_migrate.quarantine (source_table, legacy_id, reason, legacy_row)
         select t, i, r, j::jsonb from unnest($1::text[], $2::text[], $3::text[], $4::text[]) as u(t, i, r, j)
         on conflict do nothing",
    )
    .bind(&q_tables)
    .bind(&q_ids)
    .bind(&q_reasons)
    .bind(&q_rows)
    .execute(&mut *conn)
    .await?;
    let (f_tables, f_reasons, f_rows): (Vec<&str>, Vec<&str>, Vec<i64>) = fixes.into_iter().fold(
        (vec![], vec![], vec![]),
        |(mut a, mut b, mut c), ((t, r), n)| {
            a.push(t);
            b.push(r);
            c.push(n);
            (a, b, c)
        },
    );
    sqlx::query(
        "insert into pesachama_migrate.fixes (source_table, reason, rows)
         select * from unnest($1::text[], $2::text[], $3::bigint[])
         on conflict (source_table, reason) do update set rows = fixes.rows + excluded.rows",
    )
    .bind(&f_tables)
    .bind(&f_reasons)
    .bind(&f_rows)
    .execute(&mut *conn)
    .await?;
    for d in drifts {
        sqlx::query("insert into pesachama_migrate.drift (chama_id, legacy_balance, legacy_sum, migrated_balance, opening_balance, causes)
                     values ($1, $2, $3, $4, $5, $6) on conflict (chama_id) do nothing")
            .bind(d.chama_id).bind(d.legacy_balance).bind(d.legacy_sum).bind(d.migrated_balance).bind(d.opening_balance)
            .bind(serde_json::to_value(&d.causes)?)
            .execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn mark_done(conn: &mut PgConnection, step: &str) -> anyhow::Result<()> {
    sqlx::query(
        "insert into pesachama_migrate.checkpoints (step, done) values ($1, true)
         on conflict (step) do update set done = true, updated_at = now()",
    )
    .bind(step)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn quarantined(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from pesachama_migrate.quarantine")
            .fetch_one(&mut *conn)
            .await?,
    )
}
