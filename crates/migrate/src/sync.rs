//! `migrate sync`: keeps the target current while both systems run.
//!
//! Capture is trigger-based (logical decoding needs `wal_level = logical` and a replication
//! role, which the legacy server may not have): `install_capture` adds, on legacy, schema
//! `pesachama_sync` with a `changes` table and an AFTER trigger on every migrated table that
//! records which row changed (table, operation, id, chama), in the writer's transaction. A
//! cycle takes every change it can see, which are exactly those of committed transactions
//! (a transaction still running is invisible until it commits, and is picked up by a later
//! cycle: changes are deleted by id once applied, never skipped by a watermark), re-derives the
//! affected target rows from the *current* legacy state with the same transforms as `copy`, and
//! upserts them (a chama's ledger is rebuilt whole: new journals are added, journals are never
//! changed). Re-applying a change is harmless, and since what is applied is the current state,
//! the order of changes inside a cycle cannot matter: the result equals a fresh copy of legacy
//! as it is now. Applied changes are then deleted on legacy. Lag is the age of the oldest
//! change not yet applied.

use std::collections::BTreeSet;

use anyhow::Context as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::Batch;
use crate::copy::columns;
use crate::model::{AuditLog, Device, Disbursement, Meeting, Notification, text};
use crate::pipeline::{self, LegacyRow};
use crate::rows;
use crate::source::{self, Context};
use crate::target::{self, Table};
use crate::users;

/// The legacy tables whose changes are captured.
pub const CAPTURED: &[&str] = &[
    "users",
    "user_devices",
    "chamas",
    "chama_members",
    "transactions",
    "disbursement_requests",
    "meetings",
    "notifications",
    "audit_logs",
];

const CAPTURE: &str = "
create schema if not exists pesachama_sync;
create table if not exists pesachama_sync.changes (
  id bigserial primary key,
  txid bigint not null default txid_current(),
  table_name text not null,
  op text not null,
  row_id text not null,
  chama_id text,
  at timestamptz not null default clock_timestamp()
);
create or replace function pesachama_sync.capture() returns trigger
  language plpgsql security definer set search_path = '' as $$
declare
  r jsonb := case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end;
begin
  insert into pesachama_sync.changes (table_name, op, row_id, chama_id)
    values (tg_table_name, tg_op, r ->> 'id', r ->> 'chama_id');
  if tg_op = 'UPDATE' and (to_jsonb(old) ->> 'chama_id') is distinct from (r ->> 'chama_id') then
    insert into pesachama_sync.changes (table_name, op, row_id, chama_id)
      values (tg_table_name, tg_op, r ->> 'id', to_jsonb(old) ->> 'chama_id');
  end if;
  return null;
end
$$;
";

/// Adds the capture schema and triggers on legacy (idempotent). Run it before `copy`, so the
/// writes made while the copy runs reach the target too.
pub async fn install_capture(src: &mut PgConnection) -> anyhow::Result<()> {
    let mut sql = CAPTURE.to_owned();
    for table in CAPTURED {
        sql.push_str(&format!(
            "drop trigger if exists pesachama_sync_capture on public.{table};
             create trigger pesachama_sync_capture after insert or update or delete on public.{table}
               for each row execute function pesachama_sync.capture();"
        ));
    }
    sqlx::raw_sql(&sql)
        .execute(&mut *src)
        .await
        .context("installing change capture on legacy")?;
    Ok(())
}

pub async fn capture_installed(src: &mut PgConnection) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select to_regclass('pesachama_sync.changes') is not null")
            .fetch_one(&mut *src)
            .await?,
    )
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Cycle {
    /// Changes applied in this cycle.
    pub applied: u64,
    /// Changes committed since the cycle read them (applied by the next cycle).
    pub pending: u64,
    /// Age in seconds of the oldest change not yet applied (0 when none).
    pub lag_seconds: f64,
    /// Deletes of rows the target keeps (history), listed for review.
    pub deletes_for_review: Vec<String>,
}

#[derive(Debug, Default)]
struct Keys {
    users: BTreeSet<String>,
    chamas: BTreeSet<String>,
    members: BTreeSet<String>,
    ledger: BTreeSet<Uuid>,
    meetings: BTreeSet<String>,
    devices: BTreeSet<String>,
    disbursements: BTreeSet<String>,
    notifications: BTreeSet<String>,
    audit: BTreeSet<String>,
}

/// One cycle: applies every committed change, returns what it did and the lag.
pub async fn cycle(src: &mut PgConnection, dst: &mut PgConnection) -> anyhow::Result<Cycle> {
    if !capture_installed(src).await? {
        anyhow::bail!(
            "change capture is not installed on legacy: run `pesachama migrate sync --install` (before `copy`)"
        );
    }
    // Once the target is live it has writes of its own, which a cycle would overwrite (a
    // chama's books are posted again whole from legacy).
    let recorded: bool =
        sqlx::query_scalar("select to_regclass('pesachama_migrate.cutover') is not null")
            .fetch_one(&mut *dst)
            .await?;
    if recorded
        && let Some(cut) = crate::access::open_cutover(dst).await?
        && cut.step == crate::access::Step::Live
    {
        anyhow::bail!(
            "the target is live since cut-over {}: a sync would overwrite its writes; `migrate rollback` first to go back to legacy",
            cut.id
        );
    }
    // Changes are upserted by key: the keys a copy drops for its load must be back.
    let unfinished = crate::state::deferred_constraints(dst).await?;
    if !unfinished.is_empty() {
        anyhow::bail!(
            "the copy has not finished ({} keys still to build, e.g. {}): run `pesachama migrate copy` again first",
            unfinished.len(),
            unfinished[0]
        );
    }
    let changes: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
        "select id, table_name, op, row_id, chama_id from pesachama_sync.changes order by id",
    )
    .fetch_all(&mut *src)
    .await?;
    let mut out = Cycle::default();
    let mut keys = Keys::default();
    let mut deletes: Vec<(Table, Uuid)> = Vec::new();
    for (_, table, op, id, chama) in &changes {
        let chama_uuid = chama.as_deref().and_then(|c| c.parse::<Uuid>().ok());
        if op == "DELETE" {
            let legacy: Option<i64> = id.parse().ok();
            match (table.as_str(), legacy) {
                ("notifications", Some(n)) => deletes.push((
                    target::NOTIFICATIONS,
                    crate::ids::legacy("notifications", n),
                )),
                ("user_devices", Some(n)) => {
                    deletes.push((target::DEVICES, crate::ids::legacy("user_devices", n)))
                }
                // A membership gone from legacy goes from the target too (its money is then the
                // chama's, as a fresh copy would post it); the row is kept for review.
                ("chama_members", Some(n)) => {
                    deletes.push((target::MEMBERS, crate::ids::legacy("chama_members", n)));
                    out.deletes_for_review.push(format!(
                        "{table} {id} deleted in legacy: removed from the target, its row kept in pesachama_migrate.legacy_deletes"
                    ));
                }
                // A transaction: its chama's books are posted again without it (below).
                ("transactions", Some(_)) => out.deletes_for_review.push(format!(
                    "{table} {id} deleted in legacy: removed from the target with its journal, its row kept in pesachama_migrate.legacy_deletes"
                )),
                _ => out.deletes_for_review.push(format!(
                    "{table} {id} deleted in legacy; kept in the target (review)"
                )),
            }
        }
        match table.as_str() {
            "users" => {
                keys.users.insert(id.clone());
            }
            "chamas" => {
                keys.chamas.insert(id.clone());
            }
            "chama_members" | "transactions" => {
                if let Some(c) = chama_uuid {
                    keys.ledger.insert(c);
                    if table == "chama_members" {
                        keys.members.insert(c.to_string());
                    }
                }
            }
            "meetings" => {
                keys.meetings.insert(id.clone());
            }
            "user_devices" => {
                keys.devices.insert(id.clone());
            }
            "disbursement_requests" => {
                keys.disbursements.insert(id.clone());
            }
            "notifications" => {
                keys.notifications.insert(id.clone());
            }
            "audit_logs" => {
                keys.audit.insert(id.clone());
            }
            _ => {}
        }
    }
    // A notification naming a row legacy deleted now names a row that did not move: it is
    // derived again, as a copy would write it (the reference null, the legacy id kept).
    for (_, table, op, id, _) in &changes {
        let Some((key, _)) = rows::LEGACY_REFERENCES.iter().find(|(_, t)| t == table) else {
            continue;
        };
        let Ok(legacy) = id.parse::<i64>() else {
            continue;
        };
        if op != "DELETE" {
            continue;
        }
        let naming: Vec<String> = sqlx::query_scalar(
            "select id::text from notifications
              where jsonb_path_exists(data::jsonb, ('strict $.**.' || $1 || ' ? (@ == $n || @ == $s)')::jsonpath,
                                      jsonb_build_object('n', $2::bigint, 's', $2::text))",
        )
        .bind(key)
        .bind(legacy)
        .fetch_all(&mut *src)
        .await?;
        keys.notifications.extend(naming);
    }
    if !changes.is_empty() {
        let cx = source::load_context(src).await?;
        let batches = derive(&keys, &cx, src).await?;
        let mut tx = sqlx::Connection::begin(&mut *dst).await?;
        sqlx::raw_sql("set local session_replication_role = replica")
            .execute(&mut *tx)
            .await?;
        let rebuilt: Vec<Uuid> = keys
            .ledger
            .iter()
            .copied()
            .filter(|c| cx.chama_ids.contains(c))
            .collect();
        let posted: Vec<Uuid> = batches
            .iter()
            .flat_map(|b| b.rows_of(&target::TRANSACTIONS))
            .filter_map(|row| row[0].as_deref().and_then(|id| id.parse().ok()))
            .collect();
        sqlx::raw_sql(LEGACY_DELETES).execute(&mut *tx).await?;
        clear_books(&mut tx, &rebuilt, &posted).await?;
        let mut layouts = crate::pgbinary::Layouts::default();
        for batch in &batches {
            merge(&mut tx, batch, &mut layouts).await?;
        }
        for (table, id) in &deletes {
            if table.name == target::MEMBERS.name {
                sqlx::query(
                    "insert into pesachama_migrate.legacy_deletes (source_table, target_table, target_id, target_row, outcome)
                     select 'chama_members', 'public.chama_members', m.id, to_jsonb(m), 'removed from the target'
                       from public.chama_members m where m.id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(&format!("delete from {} where id = $1", table.name))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let accounts: Vec<Uuid> = batches
            .iter()
            .flat_map(|b| b.rows_of(&target::ACCOUNTS))
            .filter_map(|row| row[0].as_deref().and_then(|id| id.parse().ok()))
            .collect();
        settle_books(&mut tx, &rebuilt, &accounts).await?;
        tx.commit().await?;
        let ids: Vec<i64> = changes.iter().map(|c| c.0).collect();
        sqlx::query("delete from pesachama_sync.changes where id = any($1)")
            .bind(&ids)
            .execute(&mut *src)
            .await?;
        out.applied = ids.len() as u64;
    }
    let (pending, lag): (i64, f64) = sqlx::query_as(
        "select count(*), coalesce(extract(epoch from clock_timestamp() - min(at)), 0)::float8 from pesachama_sync.changes",
    )
    .fetch_one(&mut *src)
    .await?;
    out.pending = pending as u64;
    out.lag_seconds = lag;
    Ok(out)
}

async fn read_keyed<T: LegacyRow>(
    src: &mut PgConnection,
    keys: &BTreeSet<String>,
    key_type: &str,
) -> anyhow::Result<Vec<T>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = keys
        .iter()
        .map(|k| format!("'{}'::{key_type}", k.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",");
    let select = format!(
        "select {} from public.{} where id in ({list}) order by id",
        T::select_list(),
        T::TABLE
    );
    Ok(source::copy_out(src, &select)
        .await?
        .into_iter()
        .map(T::from_fields)
        .collect())
}

/// The target rows of every changed key, in load order.
async fn derive(keys: &Keys, cx: &Context, src: &mut PgConnection) -> anyhow::Result<Vec<Batch>> {
    let mut batches = Vec::new();
    let mut b = Batch::default();
    for user in cx.users.iter().filter(|u| keys.users.contains(text(&u.id))) {
        if let Some(contact) = cx.contacts.get(text(&user.id)) {
            users::transform(user, contact, &mut b);
        }
    }
    batches.push(std::mem::take(&mut b));
    for chama in cx
        .chamas
        .iter()
        .filter(|c| keys.chamas.contains(text(&c.id)))
    {
        rows::chama(chama, &cx.user_ids, &cx.chairless, &mut b);
    }
    batches.push(std::mem::take(&mut b));
    for chama in &keys.members {
        let active = chama
            .parse::<Uuid>()
            .ok()
            .and_then(|c| cx.chama_active.get(&c).copied());
        if let Some(members) = cx.members_by_chama.get(chama) {
            rows::members(active, members, &mut b);
        }
    }
    for m in read_keyed::<Meeting>(src, &keys.meetings, "uuid").await? {
        rows::meeting(&m, &cx.user_ids, &mut b);
    }
    for d in read_keyed::<Device>(src, &keys.devices, "bigint").await? {
        rows::device(&d, &cx.superseded_devices, &mut b);
    }
    batches.push(std::mem::take(&mut b));
    let chamas: Vec<Uuid> = keys
        .ledger
        .iter()
        .copied()
        .filter(|c| cx.chama_ids.contains(c))
        .collect();
    let (books, _) = pipeline::books_of(&chamas, cx, src).await?;
    batches.push(books);
    let dcx = rows::DisbursementContext {
        users: &cx.user_ids,
        required: &cx.required_approvals,
        moved_transactions: &cx.moved_transactions,
    };
    for d in read_keyed::<Disbursement>(src, &keys.disbursements, "uuid").await? {
        rows::disbursement(&d, &dcx, &mut b);
    }
    let notifications = read_keyed::<Notification>(src, &keys.notifications, "bigint").await?;
    let refs = pipeline::references_of(src, cx, &notifications).await?;
    for n in &notifications {
        rows::notification(n, &refs, &mut b);
    }
    for a in read_keyed::<AuditLog>(src, &keys.audit, "bigint").await? {
        rows::audit(&a, &mut b);
    }
    batches.push(b);
    Ok(batches)
}

/// The conflict target of each table, and the columns an upsert must not overwrite (the
/// balances the ledger step sets).
fn upsert_shape(table: &Table) -> (&'static str, &'static [&'static str]) {
    match table.name {
        "internal.user_pins" => ("user_id", &[]),
        "public.meeting_attendance" => ("meeting_id, user_id", &[]),
        "public.chamas" => ("id", &["balance"]),
        "public.chama_members" => ("id", &["contributed_total"]),
        _ => ("id", &[]),
    }
}

/// Upserts a batch into the target (inside the caller's transaction, triggers suppressed).
async fn merge(
    conn: &mut PgConnection,
    batch: &Batch,
    layouts: &mut crate::pgbinary::Layouts,
) -> anyhow::Result<()> {
    let mut tables: Vec<_> = batch.rows.iter().collect();
    // Postings belong to journals that are new in this batch: decide before adding journals.
    tables.sort_by_key(|(t, _)| (t.name != target::POSTINGS.name) as u8);
    for (table, rows) in tables {
        let scratch = format!("pg_temp.sync_{}", table.name.replace('.', "__"));
        sqlx::raw_sql(&format!(
            "drop table if exists {scratch}; create temp table {scratch} (like {} including defaults including identity) on commit drop",
            table.name
        ))
        .execute(&mut *conn)
        .await?;
        let cols = columns(table);
        crate::copy::copy_rows(conn, &scratch, table, rows, layouts).await?;
        let statement = if table.name == target::POSTINGS.name {
            format!(
                "insert into internal.postings ({cols}) select {cols} from {scratch} s
                  where not exists (select from internal.journals j where j.id = s.journal_id)"
            )
        } else if table.name == target::JOURNALS.name {
            format!(
                "insert into internal.journals ({cols}) select {cols} from {scratch} on conflict (id) do nothing"
            )
        } else {
            let (conflict, keep) = upsert_shape(table);
            let set = table
                .columns
                .iter()
                .filter(|c| !conflict.split(", ").any(|k| k == **c) && !keep.contains(c))
                .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "insert into {} ({cols}) select {cols} from {scratch} on conflict ({conflict}) do update set {set}",
                table.name
            )
        };
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("applying changes to {}", table.name))?;
    }
    crate::copy::write_updates(conn, &target::Sink::Target, batch).await
}

/// Where the target's rows of legacy rows deleted after the copy are kept, for review.
const LEGACY_DELETES: &str = "
create table if not exists pesachama_migrate.legacy_deletes (
  id bigserial primary key,
  source_table text not null,
  target_table text not null,
  target_id uuid not null,
  target_row jsonb not null,
  outcome text not null,
  at timestamptz not null default now()
)";

/// Before a chama's books are merged again: its migrated transactions that legacy no longer
/// has (deleted, or no longer moving) leave the target, their rows kept in
/// `pesachama_migrate.legacy_deletes`, and its journals and postings go, to be posted again
/// whole from legacy as it is now. So the books always equal a fresh copy's: a journal
/// posted for a row legacy has since deleted or changed cannot stay behind the balances.
/// (Before cut-over every journal of the target is the migration's.)
async fn clear_books(
    conn: &mut PgConnection,
    chamas: &[Uuid],
    posted: &[Uuid],
) -> anyhow::Result<()> {
    if chamas.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "with gone as (
           delete from public.transactions t
            where t.chama_id = any($1) and not (t.id = any($2))
              and (t.legacy_id is not null or t.type = 'opening_balance')
           returning t.*)
         insert into pesachama_migrate.legacy_deletes (source_table, target_table, target_id, target_row, outcome)
         select 'transactions', 'public.transactions', g.id, to_jsonb(g),
                'removed from the target with its journal; the chama''s books posted again without it'
           from gone g",
    )
    .bind(chamas)
    .bind(posted)
    .execute(&mut *conn)
    .await
    .context("removing transactions legacy no longer has")?;
    sqlx::query(
        "delete from internal.postings p using internal.journals j
          where p.journal_id = j.id and j.chama_id = any($1)",
    )
    .bind(chamas)
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from internal.journals where chama_id = any($1)")
        .bind(chamas)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// After the merge: accounts the books no longer have (a removed member's) go, every other
/// account of the chamas equals its postings, and the chama's balance and each member's total
/// equal their accounts.
async fn settle_books(
    conn: &mut PgConnection,
    chamas: &[Uuid],
    accounts: &[Uuid],
) -> anyhow::Result<()> {
    if chamas.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "delete from internal.ledger_accounts a
          where a.chama_id = any($1) and not (a.id = any($2))
            and not exists (select from internal.postings p where p.account_id = a.id)",
    )
    .bind(chamas)
    .bind(accounts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update internal.ledger_accounts a
            set balance = coalesce((select sum(p.amount) from internal.postings p where p.account_id = a.id), 0)
          where a.chama_id = any($1)",
    )
    .bind(chamas)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update public.chamas c
            set balance = coalesce((select a.balance from internal.ledger_accounts a
                                     where a.chama_id = c.id and a.kind = 'cash'), 0)
          where c.id = any($1)",
    )
    .bind(chamas)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update public.chama_members m
            set contributed_total = -coalesce((select a.balance from internal.ledger_accounts a
                                                where a.chama_id = m.chama_id and a.kind = 'member_equity'
                                                  and a.user_id = m.user_id), 0)
          where m.chama_id = any($1)",
    )
    .bind(chamas)
    .execute(&mut *conn)
    .await
    .context("settling the rebuilt books")?;
    Ok(())
}
