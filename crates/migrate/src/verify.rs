//! `migrate verify`: proof that the target holds exactly the transformed source.
//!
//! The source is transformed again (the same code as `copy`) into a scratch schema on the
//! target, then every target table is compared with its scratch twin: row count and an
//! order-independent checksum (the sum of a 60-bit slice of each row's MD5), and, for a table
//! whose checksums differ, one hash join of both sides on (row key, row hash) that lists the
//! exact rows that differ: one more scan of each side, whatever the number of differences. Then the integrity report, the balance/ledger
//! reconciliation, and RLS on every public table. Any difference is listed; none means exit 0.

use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::PgConnection;

use crate::copy::{self, columns};
use crate::pipeline;
use crate::source;
use crate::state;
use crate::target::{self, Sink, Table};

const SCRATCH: &str = "pesachama_verify";
/// Steps loaded into the scratch schema at once.
const PARALLEL_LOADS: usize = 3;
/// Tables compared at once.
const PARALLEL_COMPARES: usize = 2;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TableCheck {
    pub table: String,
    pub expected_rows: i64,
    pub target_rows: i64,
    pub ranges_compared: u64,
    pub differences: Vec<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verification {
    pub tables: Vec<TableCheck>,
    pub integrity: Vec<String>,
    pub reconciliation: Vec<String>,
    pub rows_compared: i64,
    pub seconds: f64,
}

impl Verification {
    pub fn differences(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| t.differences.iter().cloned())
            .collect();
        all.extend(self.integrity.iter().cloned());
        all.extend(self.reconciliation.iter().cloned());
        all
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "# Migration verification\n\n| table | expected rows | target rows | ranges compared | differences |\n|---|---:|---:|---:|---:|\n",
        );
        for t in &self.tables {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                t.table,
                t.expected_rows,
                t.target_rows,
                t.ranges_compared,
                t.differences.len()
            ));
        }
        let diffs = self.differences();
        md.push_str(&format!(
            "\n{} rows compared in {:.1} s. {} differences.\n",
            self.rows_compared,
            self.seconds,
            diffs.len()
        ));
        for d in diffs {
            md.push_str(&format!("- {d}\n"));
        }
        md
    }
}

pub async fn run(from: &str, to: &str, batch_size: usize) -> anyhow::Result<Verification> {
    let started = std::time::Instant::now();
    let mut src = source::connect(from, "legacy").await?;
    pipeline::check_legacy_shape(&mut src).await?;
    let mut dst = source::connect(to, "target").await?;
    let cx = source::load_context(&mut src).await?;
    let sink = Sink::Scratch(SCRATCH.into());
    let mut setup = format!("drop schema if exists {SCRATCH} cascade; create schema {SCRATCH};");
    for table in target::ALL {
        setup.push_str(&format!(
            "create unlogged table {} (like {} including defaults including identity);",
            sink.table(table),
            table.name
        ));
    }
    sqlx::raw_sql(&setup)
        .execute(&mut dst)
        .await
        .context("creating the verification scratch schema")?;
    drop(src);
    let cx = Arc::new(cx);
    let result = async {
        // The scratch tables have no keys or references, so every step loads at once (the
        // ledger as its two halves, as `copy` runs it), a few at a time, each on connections
        // of its own.
        let jobs = pipeline::STEPS.iter().flat_map(|step| {
            step.parts()
                .into_iter()
                .map(|part| part.cursor(*step, None, batch_size))
        });
        let loads = jobs.map(|mut cursor| {
            let (cx, sink) = (cx.clone(), sink.clone());
            async move {
                let mut src = source::connect(from, "legacy").await?;
                let mut dst = source::connect(to, "target").await?;
                let mut layouts = crate::pgbinary::Layouts::default();
                while let Some(done) = cursor.next(&cx, &mut src).await? {
                    copy::write_batch(&mut dst, &sink, &done.batch, &mut layouts).await?;
                }
                anyhow::Ok(())
            }
        });
        futures_util::stream::iter(loads)
            .buffer_unordered(PARALLEL_LOADS)
            .try_collect::<Vec<()>>()
            .await?;

        // Then every table against its twin, two at a time.
        let compares = target::ALL.iter().map(|table| {
            let scratch = sink.table(table);
            async move {
                let mut conn = source::connect(to, "target").await?;
                compare(&mut conn, table, &scratch).await
            }
        });
        let checks: Vec<TableCheck> = futures_util::stream::iter(compares)
            .buffered(PARALLEL_COMPARES)
            .try_collect()
            .await?;
        let mut verification = Verification::default();
        for check in checks {
            verification.rows_compared += check.expected_rows.max(check.target_rows);
            verification.tables.push(check);
        }
        verification.integrity = integrity(&mut dst).await?;
        for constraint in state::deferred_constraints(&mut dst).await? {
            verification.integrity.push(format!(
                "constraint {constraint} was dropped for a copy that has not finished: run `migrate copy` again to finish it"
            ));
        }
        for index in state::deferred_indexes(&mut dst).await? {
            verification.integrity.push(format!(
                "index {index} was dropped for a copy that has not finished: run `migrate copy` again to finish it"
            ));
        }
        verification.reconciliation = reconcile(&mut dst).await?;
        verification.seconds = started.elapsed().as_secs_f64();
        anyhow::Ok(verification)
    }
    .await;
    let _ = sqlx::raw_sql(&format!("drop schema if exists {SCRATCH} cascade"))
        .execute(&mut dst)
        .await;
    result
}

/// Count and order-independent checksum of a whole relation: one scan.
async fn checksum(
    conn: &mut PgConnection,
    relation: &str,
    table: &Table,
) -> anyhow::Result<(i64, String)> {
    let sql = format!(
        "select count(*), coalesce(sum(('x' || substr(md5(row({cols})::text), 1, 15))::bit(60)::bigint), 0)::text
           from {relation}",
        cols = columns(table),
    );
    sqlx::query_as(&sql)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("checksum of {relation}"))
}

/// Compares a table with its scratch twin: a checksum of each (one scan each); when they
/// differ, one hash join of the two on (row key, row hash) lists exactly the rows that differ.
/// So a table with differences costs one more scan of each side, whatever their number (a
/// bisection by key range costs a scan per range on a key without an index, and the scratch
/// tables have none).
async fn compare(
    conn: &mut PgConnection,
    table: &Table,
    scratch: &str,
) -> anyhow::Result<TableCheck> {
    let expected = checksum(conn, scratch, table).await?;
    let actual = checksum(conn, table.name, table).await?;
    let mut check = TableCheck {
        table: table.name.to_owned(),
        expected_rows: expected.0,
        target_rows: actual.0,
        ranges_compared: 1,
        ..Default::default()
    };
    if expected == actual {
        return Ok(check);
    }
    check.ranges_compared += 1;
    // Grouped first, so a key held by several rows compares as a multiset.
    let side = |relation: &str| {
        format!(
            "select ({key})::text as k, md5(row({cols})::text) as h, count(*) as n from {relation} group by 1, 2",
            key = table.key,
            cols = columns(table),
        )
    };
    let sql = format!(
        "select coalesce(e.k, a.k), coalesce(e.n, 0) > coalesce(a.n, 0)
           from ({expected}) e full join ({actual}) a on a.k = e.k and a.h = e.h
          where e.n is distinct from a.n
          order by 1, 2",
        expected = side(scratch),
        actual = side(table.name),
    );
    let rows: Vec<(Option<String>, bool)> = sqlx::query_as(&sql)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("listing the rows of {} that differ", table.name))?;
    // Per key: a row the source has more of (missing or different), and one the target has more of.
    let mut by_key: std::collections::BTreeMap<String, (bool, bool)> = Default::default();
    for (key, source_side) in rows {
        let entry = by_key.entry(key.unwrap_or_default()).or_default();
        if source_side {
            entry.0 = true;
        } else {
            entry.1 = true;
        }
    }
    for (key, sides) in by_key {
        check.differences.push(match sides {
            (true, true) => format!("{} {key}: differs from the transformed source", table.name),
            (true, false) => format!("{} {key}: missing in the target", table.name),
            _ => format!(
                "{} {key}: in the target but not in the transformed source",
                table.name
            ),
        });
    }
    Ok(check)
}

async fn integrity(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let failing: Vec<(String, i64, Vec<String>)> = sqlx::query_as(
        "select check_name, violations, coalesce(sample, '{}') from internal.integrity_report() where violations > 0",
    )
    .fetch_all(&mut *conn)
    .await
    .context("running internal.integrity_report()")?;
    Ok(failing
        .into_iter()
        .map(|(name, n, sample)| {
            format!("integrity {name}: {n} violations ({})", sample.join(", "))
        })
        .collect())
}

/// Every chama's balance equals the signed sum of its migrated transactions, every foreign key
/// the load did not check holds, and every public table has RLS with policies.
async fn reconcile(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let sign = "case when t.type in ('contribution', 'loan_repayment', 'fine', 'interest', 'opening_balance') then 1 else -1 end";
    let unbalanced: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "select c.id::text, c.balance, coalesce(s.total, 0)::bigint from public.chamas c
           left join (select t.chama_id,
                             sum(t.amount * case when t.type = 'reversal'
                                  then -(select {inner} from public.transactions o where o.id = t.reverses_id)
                                  else {sign} end) as total
                        from public.transactions t where t.status in ('completed', 'reversed') group by t.chama_id) s
             on s.chama_id = c.id
          where c.balance <> coalesce(s.total, 0)",
        inner = sign.replace("t.type", "o.type"),
    ))
    .fetch_all(&mut *conn)
    .await?;
    for (chama, balance, total) in unbalanced {
        problems.push(format!(
            "chama {chama}: balance {balance} but its transactions sum to {total}"
        ));
    }
    let fks: Vec<(String, String)> = sqlx::query_as(
        "select conrelid::regclass::text, conname::text from pg_constraint c join pg_namespace n on n.oid = c.connamespace
          where c.contype = 'f' and n.nspname in ('public', 'internal', 'auth') and array_length(c.conkey, 1) = 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (relation, constraint) in fks {
        let (column, parent, parent_column): (String, String, String) = sqlx::query_as(
            "select a.attname::text, c.confrelid::regclass::text, pa.attname::text from pg_constraint c
               join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
               join pg_attribute pa on pa.attrelid = c.confrelid and pa.attnum = c.confkey[1]
              where c.conname = $1 and c.conrelid = $2::regclass",
        )
        .bind(&constraint).bind(&relation).fetch_one(&mut *conn).await?;
        let orphans: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {relation} x where x.\"{column}\" is not null
               and not exists (select from {parent} p where p.\"{parent_column}\" = x.\"{column}\")"
        ))
        .fetch_one(&mut *conn)
        .await?;
        if orphans > 0 {
            problems.push(format!(
                "foreign key {constraint} on {relation}: {orphans} rows point at nothing"
            ));
        }
    }
    Ok(problems)
}
