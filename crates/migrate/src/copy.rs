//! `migrate copy`: every step once the steps it refers to are done (independent steps in
//! parallel), each in batches written with COPY, each batch committed together with its
//! checkpoint. Within a step, the next batch is read and transformed while the current one is
//! written, so the legacy reads, the transforms and the target's writes overlap.
//!
//! During the load the session runs with `session_replication_role = replica`, so the target's
//! triggers (audit rows, `updated_at`, bootstrap of chamas and members, foreign-key checks) stay
//! quiet: the transforms already produced the rows those triggers would have, and one
//! `migration.copy` audit entry records the whole load instead. CHECK constraints still hold;
//! plain indexes, and the large tables' keys with the foreign keys that need them, are built
//! once after the load (see [`state::defer_constraints`]); `verify` runs the integrity report
//! afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use indicatif::ProgressBar;
use sqlx::PgConnection;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{Batch, Update};
use crate::pgbinary::{self, Layouts};
use crate::pgtext::{self, Fields};
use crate::pipeline::{self, Step};
use crate::progress::{self, Mode, Progress};
use crate::source::{self, Context};
use crate::state;
use crate::target::{self, Sink, Table};

/// Indexes and keys built at once after the load.
const RESTORE_PARALLEL: usize = 3;

/// What a step says when another step's failure stopped it.
const STOPPED: &str = "stopped because another step failed";

/// When `copy` stops on the quarantine: once more rows are quarantined than `percent` of the
/// legacy rows it reads (what moves plus what cannot), or than `rows` when given (the absolute
/// override). `plan` applies the same rule beforehand, so it says whether `copy` will stop.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QuarantineLimit {
    pub percent: f64,
    pub rows: Option<i64>,
}

impl Default for QuarantineLimit {
    /// 1 % of the rows read: real legacy data has quirks "in small numbers" (the generator's
    /// default rate quarantines about 0.1 %); more means something is wrong with the source.
    fn default() -> Self {
        Self {
            percent: 1.0,
            rows: None,
        }
    }
}

impl QuarantineLimit {
    /// An absolute limit, whatever the size of the source.
    pub fn rows(rows: i64) -> Self {
        Self {
            rows: Some(rows),
            ..Self::default()
        }
    }

    /// A limit relative to the rows read.
    pub fn percent(percent: f64) -> Self {
        Self {
            percent,
            rows: None,
        }
    }

    /// The most rows that may be quarantined when `read` legacy rows are read.
    pub fn limit(&self, read: u64) -> i64 {
        match self.rows {
            Some(rows) => rows,
            None => (read as f64 * self.percent.max(0.0) / 100.0).floor() as i64,
        }
    }

    /// The limit for `read` rows, and how it was reached, in words.
    pub fn describe(&self, read: u64) -> String {
        match self.rows {
            Some(rows) => format!("{rows} rows (--max-quarantine)"),
            None => format!(
                "{} rows ({}% of the {read} legacy rows read, --max-quarantine-percent)",
                self.limit(read),
                self.percent
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Legacy rows per batch (for the ledger: transactions, whole chamas at a time).
    pub batch_size: usize,
    /// Stop the run when more rows than this allows are quarantined.
    pub max_quarantine: QuarantineLimit,
    /// Test hook: stop (as if killed) after this many committed batches.
    pub stop_after_batches: Option<u64>,
    pub progress: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            max_quarantine: QuarantineLimit::default(),
            stop_after_batches: None,
            progress: true,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CopySummary {
    pub source_rows: u64,
    pub target_rows: u64,
    pub quarantined: i64,
    pub seconds: f64,
    pub resumed: bool,
    /// Foreign keys added back `NOT VALID` because some rows do not hold (see
    /// [`state::restore_deferred`]).
    pub warnings: Vec<String>,
    /// When each step started (once the steps it needs were done) and how long it ran.
    pub steps: Vec<StepTime>,
    /// How long building the keys and indexes dropped for the load took.
    pub build_seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTime {
    pub step: &'static str,
    /// Seconds after the run started.
    pub started: f64,
    pub seconds: f64,
}

impl CopySummary {
    /// One line: each step's start and duration, then the build after the load.
    pub fn timings(&self) -> String {
        let mut parts: Vec<String> = self
            .steps
            .iter()
            .map(|t| format!("{} {:.1} s (from {:.1} s)", t.step, t.seconds, t.started))
            .collect();
        parts.push(format!(
            "keys and indexes built after the load {:.1} s",
            self.build_seconds
        ));
        format!("time per step: {}", parts.join(", "))
    }
}

/// Writes one batch's rows and updates into `sink` on `conn` (inside the caller's transaction).
pub async fn write_batch(
    conn: &mut PgConnection,
    sink: &Sink,
    batch: &Batch,
    layouts: &mut Layouts,
) -> anyhow::Result<()> {
    for (table, rows) in &batch.rows {
        copy_rows(conn, &sink.table(table), table, rows, layouts).await?;
    }
    write_updates(conn, sink, batch).await
}

/// COPYs `rows` of `table` into `into` (the table itself or a twin of it): in binary when
/// every value has a plain binary form, else in text (`pgbinary` says why).
pub async fn copy_rows(
    conn: &mut PgConnection,
    into: &str,
    table: &Table,
    rows: &[Fields],
    layouts: &mut Layouts,
) -> anyhow::Result<()> {
    let kinds = layouts.of(conn, table.name, table.columns).await?;
    let binary = kinds.and_then(|kinds| {
        pgbinary::encode(kinds, rows)
            .map_err(|unwritable| {
                let column = table.columns.get(unwritable.column).unwrap_or(&"?");
                tracing::debug!(
                    table = table.name,
                    column,
                    "a value has no plain binary form: COPY in text"
                );
            })
            .ok()
    });
    let (payload, format) = match binary {
        Some(payload) => (payload, " (FORMAT binary)"),
        None => (pgtext::encode_rows(rows).into_bytes(), ""),
    };
    let statement = format!("COPY {into} ({}) FROM STDIN{format}", columns(table));
    let mut copy = conn
        .copy_in_raw(&statement)
        .await
        .with_context(|| format!("starting {statement}"))?;
    copy.send(payload)
        .await
        .with_context(|| format!("copying into {into}"))?;
    copy.finish()
        .await
        .with_context(|| format!("copying into {into}"))?;
    Ok(())
}

/// Sets the balances a ledger batch computed on rows loaded earlier.
pub async fn write_updates(
    conn: &mut PgConnection,
    sink: &Sink,
    batch: &Batch,
) -> anyhow::Result<()> {
    let (mut chamas, mut balances) = (Vec::<Uuid>::new(), Vec::<i64>::new());
    let (mut m_chamas, mut m_users, mut m_totals) =
        (Vec::<Uuid>::new(), Vec::<Uuid>::new(), Vec::<i64>::new());
    for update in &batch.updates {
        match update {
            Update::ChamaBalance { chama, balance } => {
                chamas.push(*chama);
                balances.push(*balance);
            }
            Update::MemberTotal { chama, user, total } => {
                m_chamas.push(*chama);
                m_users.push(*user);
                m_totals.push(*total);
            }
        }
    }
    if !chamas.is_empty() {
        sqlx::query(&format!(
            "update {} c set balance = v.balance from unnest($1::uuid[], $2::bigint[]) v(id, balance) where c.id = v.id",
            sink.table(&target::CHAMAS)
        ))
        .bind(&chamas).bind(&balances).execute(&mut *conn).await.context("setting chama balances")?;
    }
    if !m_chamas.is_empty() {
        sqlx::query(&format!(
            "update {} m set contributed_total = v.total from unnest($1::uuid[], $2::uuid[], $3::bigint[]) v(chama, usr, total)
             where m.chama_id = v.chama and m.user_id = v.usr",
            sink.table(&target::MEMBERS)
        ))
        .bind(&m_chamas).bind(&m_users).bind(&m_totals).execute(&mut *conn).await.context("setting member totals")?;
    }
    Ok(())
}

pub fn columns(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a target that is not this build's schema, or (for a new run) not empty.
pub async fn check_target(
    url: &str,
    conn: &mut PgConnection,
    resuming: bool,
) -> anyhow::Result<()> {
    let pool = pesachama_store::connect(url, 1)
        .await
        .context("connecting to the target")?;
    let pending = pesachama_store::migrations::pending_count(&pool).await;
    pool.close().await;
    match pending {
        Ok(0) => {}
        Ok(n) => bail!(
            "the target's schema is not current: {n} migrations of this build are not applied (run `pesachama db migrate` against it first)"
        ),
        Err(err) => bail!(
            "the target does not have the PesaChama schema ({err}); run `pesachama db migrate` against it first"
        ),
    }
    // The copy writes GoTrue's tables: on a Supabase project, a role without the rights is told
    // which, before anything is written.
    pesachama_store::migrations::preflight(&mut *conn)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    if resuming {
        return Ok(());
    }
    let (users, chamas, transactions): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from auth.users), (select count(*) from public.chamas), (select count(*) from public.transactions)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if users + chamas + transactions > 0 {
        bail!(
            "the target is not empty ({users} auth users, {chamas} chamas, {transactions} transactions): migrate into a freshly migrated database"
        );
    }
    Ok(())
}

pub async fn run(from: &str, to: &str, options: &CopyOptions) -> anyhow::Result<CopySummary> {
    let started = std::time::Instant::now();
    let mut src = source::connect(from, "legacy").await?;
    pipeline::check_legacy_shape(&mut src).await?;
    let mut lock = source::connect(to, "target").await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(state::COPY_LOCK)
        .fetch_one(&mut lock)
        .await?;
    if !locked {
        bail!(
            "another `pesachama migrate copy` is running against this target (advisory lock held); wait for it or stop it"
        );
    }
    let resuming = !state::checkpoints(&mut lock).await?.is_empty();
    if resuming {
        // A finished copy is not run again: it would drop the keys of a target that may be
        // live by now.
        let finished: Option<String> = sqlx::query_scalar(
            "select to_char(max(finished_at), 'YYYY-MM-DD HH24:MI:SS TZ') from pesachama_migrate.runs where status = 'done'",
        )
        .fetch_one(&mut lock)
        .await?;
        if let Some(at) = finished {
            bail!(
                "the copy into this target finished at {at}: nothing to do (`migrate sync` keeps it current; to copy again, use a freshly migrated database)"
            );
        }
    }
    check_target(to, &mut lock, resuming).await?;
    state::ensure(&mut lock).await?;
    sqlx::query("insert into pesachama_migrate.runs (options) values ($1)")
        .bind(serde_json::json!({ "batch_size": options.batch_size, "resumed": resuming }))
        .execute(&mut lock)
        .await?;
    let cx = Arc::new(source::load_context(&mut src).await?);
    drop(src);
    let read: u64 = pipeline::STEPS.iter().map(|s| s.total(&cx)).sum();
    let max_quarantine = options.max_quarantine.limit(read);
    let limit_words = options.max_quarantine.describe(read);
    let loaded: Vec<&str> = target::ALL.iter().map(|t| t.name).collect();
    state::defer_indexes(&mut lock, &loaded).await?;
    state::defer_constraints(&mut lock, state::KEYS_BUILT_AFTER).await?;
    state::suspend_autovacuum(&mut lock, &loaded, true).await?;

    let progress = Progress::new(Mode::detect(options.progress));
    let batches = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let checkpoints = state::checkpoints(&mut lock).await?;
    // Each step waits for the steps it needs, then runs; the first error stops the others at
    // a batch boundary.
    let mut finished: std::collections::HashMap<Step, watch::Receiver<Option<bool>>> =
        std::collections::HashMap::new();
    let mut signals = Vec::new();
    for step in pipeline::STEPS.iter().copied() {
        let (tx, rx) = watch::channel(None);
        finished.insert(step, rx);
        signals.push((step, tx));
    }
    let mut tasks = Vec::new();
    for (step, signal) in signals {
        let shards = shards(step, &checkpoints);
        let needs: Vec<watch::Receiver<Option<bool>>> =
            step.needs().iter().map(|n| finished[n].clone()).collect();
        let bar = progress.step(
            step.name(),
            step.total(&cx),
            shards.iter().map(|s| s.rows_done).sum(),
        );
        let progress = progress.clone();
        let (cx, to, options, batches, stop, limit_words) = (
            cx.clone(),
            to.to_owned(),
            options.clone(),
            batches.clone(),
            stop.clone(),
            limit_words.clone(),
        );
        let from = from.to_owned();
        tasks.push(async move {
            let result = async {
                for mut need in needs {
                    let ok = need
                        .wait_for(Option::is_some)
                        .await
                        .map(|done| *done == Some(true))
                        .unwrap_or(false);
                    if !ok {
                        bail!(STOPPED);
                    }
                }
                let began = started.elapsed().as_secs_f64();
                progress.started(step.name());
                let runs = shards.into_iter().filter(|s| !s.done).map(|shard| {
                    copy_step(
                        step,
                        shard,
                        cx.clone(),
                        &from,
                        &to,
                        &options,
                        (max_quarantine, &limit_words),
                        &batches,
                        &stop,
                        (&progress, &bar),
                    )
                });
                futures_util::future::try_join_all(runs).await?;
                anyhow::Ok(StepTime {
                    step: step.name(),
                    started: began,
                    seconds: started.elapsed().as_secs_f64() - began,
                })
            }
            .await;
            if result.is_ok() {
                progress.finished(step.name());
            } else {
                bar.abandon();
            }
            if result.is_err() {
                stop.store(true, Ordering::SeqCst);
            }
            let _ = signal.send(Some(result.is_ok()));
            result
        });
    }
    let ticker = progress.ticker();
    let results = futures_util::future::join_all(tasks).await;
    ticker.abort();
    let mut steps = Vec::new();
    let mut errors: Vec<anyhow::Error> = Vec::new();
    for result in results {
        match result {
            Ok(time) => steps.push(time),
            Err(err) => errors.push(err),
        }
    }
    let cause = errors
        .iter()
        .position(|e| e.to_string() != STOPPED)
        .unwrap_or(0);
    if let Some(err) = errors.into_iter().nth(cause) {
        return Err(err);
    }

    progress.finish();
    progress.say("copy: building the keys and indexes dropped for the load");
    let building = std::time::Instant::now();
    let watcher = watch_build(to, &progress, &mut lock).await?;
    let warnings = state::restore_deferred(to, RESTORE_PARALLEL).await;
    watcher.abort();
    let warnings = warnings?;
    progress.say(&format!(
        "copy: keys and indexes built in {}",
        progress::duration(building.elapsed().as_secs())
    ));
    let build_seconds = building.elapsed().as_secs_f64();
    state::suspend_autovacuum(&mut lock, &loaded, false).await?;

    // Legacy audit ids were copied as they were: the identity continues after them.
    sqlx::raw_sql(
        "select setval(pg_get_serial_sequence('internal.legacy_audit_logs', 'id'),
                       greatest(coalesce((select max(id) from internal.legacy_audit_logs), 0), 1))",
    )
    .execute(&mut lock)
    .await
    .context("setting sequences")?;
    let quarantined = state::quarantined(&mut lock).await?;
    let (source_rows, target_rows): (i64, i64) = sqlx::query_as(
        "select coalesce(sum(source_rows), 0)::bigint, coalesce(sum(target_rows), 0)::bigint from pesachama_migrate.checkpoints",
    ).fetch_one(&mut lock).await?;
    let already: bool = sqlx::query_scalar(
        "select exists (select from public.audit_logs where action = 'migration.copy')",
    )
    .fetch_one(&mut lock)
    .await?;
    if !already {
        sqlx::query("select internal.audit_log('migration.copy', null, null, null, $1, null)")
            .bind(serde_json::json!({ "source_rows": source_rows, "target_rows": target_rows, "quarantined": quarantined, "tool": "pesachama migrate copy" }))
            .execute(&mut lock).await.context("writing the migration's audit entry")?;
    }
    sqlx::query("update pesachama_migrate.runs set finished_at = now(), status = 'done' where finished_at is null")
        .execute(&mut lock).await?;
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(state::COPY_LOCK)
        .execute(&mut lock)
        .await;
    Ok(CopySummary {
        source_rows: source_rows as u64,
        target_rows: target_rows as u64,
        quarantined,
        seconds: started.elapsed().as_secs_f64(),
        resumed: resuming,
        warnings,
        steps,
        build_seconds,
    })
}

/// Shows the build after the load (a third of a production run): how many of the keys and
/// indexes recorded for it are built, from its own connection, until aborted.
async fn watch_build(
    to: &str,
    progress: &Progress,
    conn: &mut PgConnection,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let total = still_to_build(conn).await?;
    let bar = progress.extra("keys and indexes", total.max(0) as u64);
    let mut watching = source::connect(to, "target").await?;
    let progress = progress.clone();
    Ok(tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut last_line = std::time::Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let Ok(left) = still_to_build(&mut watching).await else {
                return;
            };
            bar.set_position((total - left).max(0) as u64);
            if progress.mode() == Mode::Lines && last_line.elapsed() >= progress::PLAIN_EVERY {
                eprintln!(
                    "copy: building keys and indexes: {} of {total} built ({})",
                    total - left,
                    progress::duration(started.elapsed().as_secs())
                );
                last_line = std::time::Instant::now();
            }
        }
    }))
}

/// Keys and indexes recorded to build after the load and not built yet.
async fn still_to_build(conn: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "select ((select count(*) from pesachama_migrate.deferred_indexes)
               + (select count(*) from pesachama_migrate.deferred_constraints))::bigint",
    )
    .fetch_one(conn)
    .await?)
}

/// A batch read and transformed, with the legacy rows its rejections quote.
type Prepared = (
    pipeline::Done,
    std::collections::HashMap<(String, String), String>,
);

/// A part of a step ([`pipeline::Part`]) as this run copies it: from its checkpoint.
#[derive(Debug, Clone)]
struct Shard {
    part: pipeline::Part,
    /// The last key its checkpoint recorded.
    after: Option<String>,
    rows_done: u64,
    done: bool,
}

fn shards(step: Step, checkpoints: &[state::Checkpoint]) -> Vec<Shard> {
    let mut shards: Vec<Shard> = step
        .parts()
        .into_iter()
        .map(|part| {
            let checkpoint = checkpoints.iter().find(|c| c.step == part.name);
            Shard {
                after: checkpoint.and_then(|c| c.last_key.clone()),
                rows_done: checkpoint.map_or(0, |c| c.source_rows.max(0) as u64),
                done: checkpoint.is_some_and(|c| c.done),
                part,
            }
        })
        .collect();
    // A run started by a version that copied the ledger in one stream (under the first half's
    // checkpoint) may have passed the split already: the second half resumes where it stopped.
    if let [first, second] = shards.as_mut_slice()
        && second.after.is_none()
    {
        second.after = first
            .after
            .clone()
            .filter(|key| key.as_str() > pipeline::BEFORE_LEDGER_SPLIT);
    }
    shards
}

#[allow(clippy::too_many_arguments)]
async fn copy_step(
    step: Step,
    shard: Shard,
    cx: Arc<Context>,
    from: &str,
    to: &str,
    options: &CopyOptions,
    limit: (i64, &str),
    batches: &AtomicU64,
    stop: &Arc<AtomicBool>,
    (progress, bar): (&Progress, &ProgressBar),
) -> anyhow::Result<()> {
    let mut src = source::connect(from, "legacy").await?;
    let mut dst = source::connect(to, "target").await?;
    let mut layouts = Layouts::default();
    // The reader runs one batch ahead of the writer.
    let (ready, mut prepared) = mpsc::channel::<anyhow::Result<Prepared>>(1);
    let mut cursor = shard
        .part
        .cursor(step, shard.after.clone(), options.batch_size);
    let reading_stop = stop.clone();
    let reader = tokio::spawn(async move {
        loop {
            if reading_stop.load(Ordering::SeqCst) {
                return;
            }
            let next = async {
                let Some(done) = cursor.next(&cx, &mut src).await? else {
                    return anyhow::Ok(None);
                };
                let legacy_rows = state::rejected_rows(&mut src, &done.batch.issues).await?;
                anyhow::Ok(Some((done, legacy_rows)))
            }
            .await;
            let item = match next {
                Ok(Some(item)) => Ok(item),
                Ok(None) => return,
                Err(err) => Err(err),
            };
            let failed = item.is_err();
            if ready.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let result = async {
        while let Some(item) = prepared.recv().await {
            if stop.load(Ordering::SeqCst) {
                bail!(STOPPED);
            }
            let (done, legacy_rows) = item?;
            write_prepared(
                step,
                &shard.part.name,
                &mut dst,
                &mut layouts,
                &done,
                &legacy_rows,
                limit,
            )
            .await?;
            progress.inc(bar, done.batch.source_rows);
            let n = batches.fetch_add(1, Ordering::SeqCst) + 1;
            if options.stop_after_batches.is_some_and(|limit| n >= limit) {
                stop.store(true, Ordering::SeqCst);
                bail!("stopped after {n} batches (--stop-after-batches); run again to resume");
            }
        }
        if stop.load(Ordering::SeqCst) {
            bail!(STOPPED);
        }
        state::mark_done(&mut dst, &shard.part.name).await?;
        anyhow::Ok(())
    }
    .await;
    drop(prepared);
    let _ = reader.await;
    result
}

/// Writes one prepared batch and its checkpoint in one target transaction.
async fn write_prepared(
    step: Step,
    checkpoint: &str,
    dst: &mut PgConnection,
    layouts: &mut Layouts,
    done: &pipeline::Done,
    legacy_rows: &std::collections::HashMap<(String, String), String>,
    (max_quarantine, limit_words): (i64, &str),
) -> anyhow::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *dst).await?;
    sqlx::raw_sql("set local session_replication_role = replica").execute(&mut *tx).await
        .context("suppressing triggers needs a role allowed to set session_replication_role (superuser, or postgres on Supabase)")?;
    write_batch(&mut tx, &Sink::Target, &done.batch, layouts)
        .await
        .with_context(|| format!("step {}", step.name()))?;
    state::record_batch(
        &mut tx,
        checkpoint,
        &done.key,
        done.batch.source_rows,
        done.batch.target_rows(),
        &done.batch.issues,
        &done.drifts,
        legacy_rows,
    )
    .await?;
    let quarantined = state::quarantined(&mut tx).await?;
    if quarantined > max_quarantine {
        drop(tx);
        bail!(
            "{quarantined} rows quarantined, more than the limit of {limit_words}: stopping (see pesachama_migrate.quarantine; `migrate plan` says beforehand how many rows cannot move)"
        );
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(step: &str, last_key: &str, done: bool) -> state::Checkpoint {
        state::Checkpoint {
            step: step.to_owned(),
            last_key: Some(last_key.to_owned()),
            batches: 1,
            source_rows: 10,
            target_rows: 20,
            done,
        }
    }

    /// Each shard as (checkpoint, where its cursor starts after, where it stops, done).
    fn plan(shards: &[Shard]) -> Vec<(String, Option<String>, Option<&str>, bool)> {
        shards
            .iter()
            .map(|s| {
                let cursor = s.part.cursor(Step::Ledger, s.after.clone(), 1);
                (s.part.name.clone(), cursor.after, s.part.until, s.done)
            })
            .collect()
    }

    fn row(
        name: &str,
        after: Option<&str>,
        until: Option<&'static str>,
        done: bool,
    ) -> (String, Option<String>, Option<&'static str>, bool) {
        (name.to_owned(), after.map(str::to_owned), until, done)
    }

    const LOW: &str = "1b9f0d3e-6c44-4a52-9a1e-0c5b9c1d2e3f";
    const HIGH: &str = "c3d2e1f0-0a1b-4c2d-8e3f-405162738495";

    #[test]
    fn the_ledger_runs_as_two_halves_split_at_a_fixed_id() {
        assert_eq!(
            plan(&shards(Step::Ledger, &[])),
            [
                row("transactions", None, Some(pipeline::LEDGER_SPLIT), false),
                row(
                    "transactions@2",
                    Some(pipeline::BEFORE_LEDGER_SPLIT),
                    None,
                    false
                ),
            ]
        );
        assert!(pipeline::BEFORE_LEDGER_SPLIT < pipeline::LEDGER_SPLIT);
        // Every other step is one stream.
        let audit = shards(Step::Audit, &[]);
        assert_eq!(
            (
                audit.len(),
                audit[0].part.name.as_str(),
                audit[0].part.until
            ),
            (1, "audit_logs", None)
        );
    }

    #[test]
    fn each_half_resumes_from_its_own_checkpoint() {
        let done = [
            checkpoint("transactions", LOW, false),
            checkpoint("transactions@2", HIGH, true),
        ];
        let shards = shards(Step::Ledger, &done);
        assert_eq!(
            plan(&shards),
            [
                row(
                    "transactions",
                    Some(LOW),
                    Some(pipeline::LEDGER_SPLIT),
                    false
                ),
                row("transactions@2", Some(HIGH), None, true),
            ]
        );
        assert_eq!(shards.iter().map(|s| s.rows_done).sum::<u64>(), 20);
    }

    #[test]
    fn a_one_stream_run_that_passed_the_split_is_resumed_without_copying_twice() {
        // An older version wrote the whole ledger under one checkpoint, and got past the split.
        let old = [checkpoint("transactions", HIGH, false)];
        assert_eq!(
            plan(&shards(Step::Ledger, &old)),
            [
                row(
                    "transactions",
                    Some(HIGH),
                    Some(pipeline::LEDGER_SPLIT),
                    false
                ),
                row("transactions@2", Some(HIGH), None, false),
            ]
        );
        // One that had not got there: the second half starts at the split.
        let old = [checkpoint("transactions", LOW, false)];
        assert_eq!(
            plan(&shards(Step::Ledger, &old))[1],
            row(
                "transactions@2",
                Some(pipeline::BEFORE_LEDGER_SPLIT),
                None,
                false
            )
        );
    }
}
