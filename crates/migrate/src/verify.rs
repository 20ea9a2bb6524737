//! `migrate verify`: proof that the target holds exactly the transformed source.
//!
//! The source is transformed again (the same code as `copy`) into a scratch schema on the
//! target, then every target table is compared with its scratch twin: row counts and an
//! order-independent checksum (the sum of a 60-bit slice of each row's MD5) over key ranges,
//! and a differing range is split 16 ways until it is small enough to list the exact rows that
//! differ, as reladiff and pg_comparator do. Then the integrity report, the balance/ledger
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
/// A differing range this small is listed row by row.
const LIST_BELOW: i64 = 64;

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

/// A key range `[lo, lo + 2^bits)` of the uuid space.
#[derive(Debug, Clone, Copy)]
struct Range {
    lo: u128,
    bits: u32,
}

impl Range {
    fn condition(&self, key: &str) -> String {
        let lo = uuid::Uuid::from_u128(self.lo);
        let hi = if self.bits >= 128 {
            None
        } else {
            self.lo.checked_add(1u128 << self.bits)
        };
        match hi {
            Some(hi) => format!(
                "({key}) >= '{lo}'::uuid and ({key}) < '{}'::uuid",
                uuid::Uuid::from_u128(hi)
            ),
            None => format!("({key}) >= '{lo}'::uuid"),
        }
    }

    fn split(&self) -> Vec<Range> {
        let bits = self.bits.saturating_sub(4);
        (0..16u128)
            .map(|i| Range {
                lo: self.lo + (i << bits),
                bits,
            })
            .collect()
    }
}

async fn checksum(
    conn: &mut PgConnection,
    relation: &str,
    table: &Table,
    range: Range,
) -> anyhow::Result<(i64, String)> {
    let sql = format!(
        "select count(*), coalesce(sum(('x' || substr(md5(row({cols})::text), 1, 15))::bit(60)::bigint), 0)::text
           from {relation} where {cond}",
        cols = columns(table),
        cond = range.condition(table.key),
    );
    sqlx::query_as(&sql)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("checksum of {relation}"))
}

async fn row_hashes(
    conn: &mut PgConnection,
    relation: &str,
    table: &Table,
    range: Range,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let sql = format!(
        "select ({key})::text, md5(row({cols})::text) from {relation} where {cond}",
        key = table.key,
        cols = columns(table),
        cond = range.condition(table.key),
    );
    let rows: Vec<(String, String)> = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

async fn compare(
    conn: &mut PgConnection,
    table: &Table,
    scratch: &str,
) -> anyhow::Result<TableCheck> {
    let whole = Range { lo: 0, bits: 128 };
    let expected = checksum(conn, scratch, table, whole).await?;
    let actual = checksum(conn, table.name, table, whole).await?;
    let mut check = TableCheck {
        table: table.name.to_owned(),
        expected_rows: expected.0,
        target_rows: actual.0,
        ..Default::default()
    };
    let mut pending = vec![(whole, expected, actual)];
    while let Some((range, expected, actual)) = pending.pop() {
        check.ranges_compared += 1;
        if expected == actual {
            continue;
        }
        if expected.0.max(actual.0) > LIST_BELOW && range.bits >= 8 {
            for part in range.split() {
                let expected = checksum(conn, scratch, table, part).await?;
                let actual = checksum(conn, table.name, table, part).await?;
                pending.push((part, expected, actual));
            }
            continue;
        }
        let want = row_hashes(conn, scratch, table, range).await?;
        let have = row_hashes(conn, table.name, table, range).await?;
        for (key, hash) in &want {
            match have.get(key) {
                None => check
                    .differences
                    .push(format!("{} {key}: missing in the target", table.name)),
                Some(h) if h != hash => check.differences.push(format!(
                    "{} {key}: differs from the transformed source",
                    table.name
                )),
                _ => {}
            }
        }
        for key in have.keys().filter(|k| !want.contains_key(*k)) {
            check.differences.push(format!(
                "{} {key}: in the target but not in the transformed source",
                table.name
            ));
        }
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
