//! `migrate cutover` and `migrate rollback`.
//!
//! Cut-over first records legacy's access state on the target (`access`), then freezes legacy
//! for real: CONNECT is revoked from every non-superuser role that had it (and from PUBLIC),
//! their sessions are terminated, and the database defaults to read-only for whoever still
//! connects; then the change capture is drained into the target, the target is verified,
//! sequences are set, and capture starts on the target (triggers writing every change of the
//! tables members write into `pesachama_migrate.target_changes`), so a rollback can replay
//! every write made on the target into legacy before legacy is reopened. A stop at any step
//! before that last one reopens legacy as recorded; a killed run leaves it for `rollback`.
//!
//! Rollback, before the target went live, only reopens legacy. After, it replays each target
//! row changed since (its last state, once) into legacy as the same fact, parents before
//! children, inside one legacy transaction with legacy's own foreign keys checked: users,
//! accounts' passwords, chamas, memberships, meetings and their registers, transactions,
//! withdrawal requests and officials' decisions, notifications, device tokens. Each touched
//! chama's balance moves by exactly what the replayed rows add to legacy's own sum of its
//! transactions. What legacy cannot hold stops the rollback, with the list, having written
//! nothing. Which target row became which legacy row is recorded in
//! `pesachama_sync.rollback_map` in the same transaction.

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::PgConnection;

use crate::access::{self, Step};
use crate::source;
use crate::sync;
use crate::verify;

/// Target tables whose changes after cut-over are captured for a rollback.
pub const TARGET_CAPTURED: &[&str] = &[
    "auth.users",
    "public.users",
    "public.chamas",
    "public.chama_members",
    "public.transactions",
    "public.notifications",
    "public.device_tokens",
    "public.meetings",
    "public.meeting_attendance",
    "public.disbursement_requests",
    "public.disbursement_approvals",
];

const TARGET_CAPTURE: &str = "
create table if not exists pesachama_migrate.target_changes (
  id bigserial primary key,
  table_name text not null,
  op text not null,
  row jsonb not null,
  at timestamptz not null default clock_timestamp()
);
create or replace function pesachama_migrate.capture() returns trigger
  language plpgsql security definer set search_path = '' as $$
begin
  insert into pesachama_migrate.target_changes (table_name, op, row)
    values (tg_table_schema || '.' || tg_table_name, tg_op,
            case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end);
  -- A write that waited on a rollback (which locks this table) finds it done: refused, so
  -- the app is never told a write was kept that legacy will not have.
  if exists (select from pesachama_migrate.cutover c
              where c.id = (select max(id) from pesachama_migrate.cutover)
                and c.rolled_back_at is not null) then
    raise exception 'the cut-over was rolled back: write to the legacy database'
      using errcode = '55000';
  end if;
  return null;
end
$$;
";

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cutover {
    pub frozen_roles: Vec<String>,
    pub sessions_terminated: i64,
    pub drained_changes: u64,
    pub rows_verified: i64,
}

/// How `cutover` runs. `stop_after` makes it stop once a step is done, as a failure there
/// would (for tests, and to rehearse); `crash` makes that stop leave everything as a killed
/// process would, legacy frozen, for `rollback` to reopen.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    pub batch_size: usize,
    pub stop_after: Option<Step>,
    pub crash: bool,
}

impl Default for CutoverOptions {
    fn default() -> Self {
        CutoverOptions {
            batch_size: 10_000,
            stop_after: None,
            crash: false,
        }
    }
}

pub async fn cutover(from: &str, to: &str, batch_size: usize) -> anyhow::Result<Cutover> {
    cutover_with(
        from,
        to,
        &CutoverOptions {
            batch_size,
            ..Default::default()
        },
    )
    .await
}

/// Records legacy's access state, freezes legacy, ends its sessions, drains, verifies, starts
/// capture on the target. A stop at any step before the target is live reopens legacy exactly
/// as it was recorded (and says so); if even that fails, `rollback` reopens it.
pub async fn cutover_with(
    from: &str,
    to: &str,
    options: &CutoverOptions,
) -> anyhow::Result<Cutover> {
    let mut src = source::connect(from, "legacy").await?;
    let mut dst = source::connect(to, "target").await?;
    if !sync::capture_installed(&mut src).await? {
        bail!(
            "change capture is not installed on legacy (`migrate sync --install` before `copy`): writes made since the copy would be lost"
        );
    }
    if let Some(open) = access::open_cutover(&mut dst).await? {
        if open.step == Step::Live {
            bail!(
                "a cut-over is already done (cut-over {}): the target is live; `migrate rollback` undoes it",
                open.id
            );
        }
        bail!(
            "cut-over {} stopped at step `{}` without reopening legacy (the process was killed?): run `pesachama migrate rollback` to reopen legacy as it was recorded, then cut over again",
            open.id,
            open.step.name()
        );
    }
    // This session writes on legacy (the drain deletes applied changes) whatever happens to the
    // database's default.
    sqlx::raw_sql("set default_transaction_read_only = off")
        .execute(&mut src)
        .await?;
    // 0. Record legacy's access state, committed before anything changes.
    let state = access::record(&mut src, &mut dst).await?;
    let mut reached = Step::Recorded;
    let result = frozen_steps(&mut src, &mut dst, from, to, options, &state, &mut reached).await;
    let error = match result {
        Ok(done) => return Ok(done),
        Err(error) => error,
    };
    if options.crash {
        return Err(error.context(format!(
            "cut-over {} stopped after step `{}` as asked, legacy left as a killed run leaves it (`migrate rollback` reopens it)",
            state.id,
            reached.name()
        )));
    }
    // Any stop before the target is live: legacy gets its access back.
    let reason = format!("{error:#}");
    let reopened = async {
        access::reopen(&mut src, &state).await?;
        access::mark_reopened(&mut dst, state.id, Some(&reason)).await
    }
    .await;
    match reopened {
        Ok(()) => Err(error.context(format!(
            "cut-over stopped after step `{}`; legacy is open again as before (CONNECT back for {}, read-only reset): fix the cause, then `migrate sync` and `migrate cutover` again",
            reached.name(),
            if state.grantees.is_empty() { "nobody".to_owned() } else { state.grantees.join(", ") }
        ))),
        Err(reopen) => Err(error.context(format!(
            "cut-over stopped after step `{}`, and reopening legacy failed ({reopen:#}): run `pesachama migrate rollback` to reopen it",
            reached.name()
        ))),
    }
}

/// The steps run with legacy frozen; `reached` is the last one done.
async fn frozen_steps(
    src: &mut PgConnection,
    dst: &mut PgConnection,
    from: &str,
    to: &str,
    options: &CutoverOptions,
    state: &access::Recorded,
    reached: &mut Step,
) -> anyhow::Result<Cutover> {
    let stop = |step: Step| -> anyhow::Result<()> {
        if options.stop_after == Some(step) {
            bail!("stopped after step `{}` as asked", step.name());
        }
        Ok(())
    };
    stop(Step::Recorded)?;
    // 1. Freeze legacy.
    access::freeze(src, state).await?;
    *reached = Step::Frozen;
    access::set_step(dst, state.id, Step::Frozen).await?;
    stop(Step::Frozen)?;
    let terminated = access::end_sessions(src).await?;
    *reached = Step::SessionsEnded;
    access::set_step(dst, state.id, Step::SessionsEnded).await?;
    stop(Step::SessionsEnded)?;
    // 2. Drain.
    let mut drained = 0;
    loop {
        let cycle = sync::cycle(src, dst)
            .await
            .context("draining the change capture into the target")?;
        drained += cycle.applied;
        if cycle.applied == 0 && cycle.pending == 0 {
            break;
        }
    }
    *reached = Step::Drained;
    access::set_step(dst, state.id, Step::Drained).await?;
    stop(Step::Drained)?;
    // 3. Verify.
    let verification = verify::run(from, to, options.batch_size).await?;
    let differences = verification.differences();
    if !differences.is_empty() {
        bail!(
            "verify found {} differences after the drain: {}",
            differences.len(),
            differences
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    *reached = Step::Verified;
    access::set_step(dst, state.id, Step::Verified).await?;
    stop(Step::Verified)?;
    // 4. Sequences, 5. capture on the target, and the step `live`, in one transaction.
    let mut sql = format!(
        "select setval(pg_get_serial_sequence('internal.legacy_audit_logs', 'id'),
                       greatest(coalesce((select max(id) from internal.legacy_audit_logs), 0), 1));
         {TARGET_CAPTURE}
         truncate pesachama_migrate.target_changes;"
    );
    for table in TARGET_CAPTURED {
        sql.push_str(&format!(
            "drop trigger if exists pesachama_rollback_capture on {table};
             create trigger pesachama_rollback_capture after insert or update or delete on {table}
               for each row execute function pesachama_migrate.capture();"
        ));
    }
    sql.push_str(&format!(
        "update pesachama_migrate.cutover set step = 'live' where id = {};",
        state.id
    ));
    sqlx::raw_sql(&format!("begin; {sql} commit;"))
        .execute(&mut *dst)
        .await
        .context("starting capture on the target")?;
    *reached = Step::Live;
    Ok(Cutover {
        frozen_roles: state.roles.clone(),
        sessions_terminated: terminated,
        drained_changes: drained,
        rows_verified: verification.rows_compared,
    })
}

/// UTC `timestamptz` text (as `to_jsonb` writes it) to Nairobi local legacy `timestamp` text.
fn to_nairobi(value: &Value) -> Option<String> {
    let text = value.as_str()?;
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        (parsed.naive_utc() + chrono::Duration::hours(3))
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
    )
}

fn s(row: &Value, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn kes(cents: &Value) -> Option<String> {
    let c = cents.as_i64()?;
    Some(format!(
        "{}{}.{:02}",
        if c < 0 { "-" } else { "" },
        c.abs() / 100,
        c.abs() % 100
    ))
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Rollback {
    /// Target rows replayed into legacy (each row once, as it is last).
    pub replayed: u64,
    /// Always empty when rollback succeeds: anything it cannot replay stops it.
    pub not_replayed: Vec<String>,
    /// The cut-over had not made the target live: legacy was only reopened.
    pub reopened_only: bool,
}

/// The order target rows reach legacy in: what a row refers to comes first (a chama's
/// chairperson membership is captured before the chama itself, by the chama's own trigger).
fn tier(table: &str) -> u8 {
    match table {
        "public.users" => 0,
        "auth.users" => 1,
        "public.chamas" => 2,
        "public.chama_members" => 3,
        "public.meetings" => 4,
        "public.meeting_attendance" => 5,
        "public.transactions" => 6,
        "public.disbursement_requests" => 7,
        "public.disbursement_approvals" => 8,
        "public.notifications" => 9,
        "public.device_tokens" => 10,
        _ => 11,
    }
}

/// The key of a captured row (the register has no id of its own).
fn row_key(table: &str, row: &Value) -> String {
    match table {
        "public.meeting_attendance" => format!(
            "{}/{}",
            s(row, "meeting_id").unwrap_or_default(),
            s(row, "user_id").unwrap_or_default()
        ),
        _ => s(row, "id").unwrap_or_default(),
    }
}

/// Legacy's own signed sum of a chama's posted transactions (as `plan` computes it).
const LEGACY_SUM: &str = "select coalesce(sum(case
          when lower(btrim(type)) in ('contribution', 'deposit', 'loan_repayment', 'repayment', 'fine', 'penalty', 'interest')
          then amount else -amount end), 0)::text
      from transactions where chama_id = $1::uuid
       and lower(btrim(status)) in ('completed', 'complete', 'success', 'successful', 'reversed')";

/// Undoes a cut-over, whatever step it reached. Before the target went live, legacy is
/// reopened as recorded. After, every row the target wrote since is replayed into legacy as
/// the same fact, each row once as it is now, parents before children, with legacy's own
/// foreign keys checked; each touched chama's `balance` moves by exactly the money the
/// replayed rows add to legacy's own sum of its transactions (never set to the target's
/// ledger, whose history may differ from legacy's). Anything that cannot be replayed stops the
/// rollback with the list, having written nothing; otherwise legacy is reopened as recorded.
pub async fn rollback(from: &str, to: &str) -> anyhow::Result<Rollback> {
    let mut src = source::connect(from, "legacy").await?;
    // Cut-over made the database read-only by default; this session writes.
    sqlx::raw_sql("set default_transaction_read_only = off")
        .execute(&mut src)
        .await?;
    let mut dst = source::connect(to, "target").await?;
    let Some(cut) = access::open_cutover(&mut dst).await? else {
        bail!(
            "no cut-over to roll back on this target: none is recorded in pesachama_migrate.cutover that has not been rolled back or reopened already"
        );
    };
    if cut.step != Step::Live {
        access::reopen(&mut src, &cut).await?;
        access::mark_reopened(
            &mut dst,
            cut.id,
            Some(&format!(
                "rolled back after step `{}` (the target never went live)",
                cut.step.name()
            )),
        )
        .await?;
        sqlx::query("update pesachama_migrate.cutover set rolled_back_at = now() where id = $1")
            .bind(cut.id)
            .execute(&mut dst)
            .await?;
        return Ok(Rollback {
            reopened_only: true,
            ..Default::default()
        });
    }
    // Writes to the target wait from here to the end: a write in flight is in what is read
    // (the lock waits for it), and one that arrives meanwhile is refused once this is done
    // (`capture` sees the rollback), never acknowledged and lost.
    let mut hold = sqlx::Connection::begin(&mut dst).await?;
    sqlx::raw_sql("lock table pesachama_migrate.target_changes in exclusive mode")
        .execute(&mut *hold)
        .await?;
    let changes: Vec<(i64, String, String, Value)> = sqlx::query_as(
        "select id, table_name, op, row from pesachama_migrate.target_changes order by id",
    )
    .fetch_all(&mut *hold)
    .await?;
    // Each row once, as it is last: an insert later updated is one insert of the last state.
    let mut last = std::collections::HashMap::new();
    for (i, (_, table, _, row)) in changes.iter().enumerate() {
        last.insert((table.as_str(), row_key(table, row)), i);
    }
    let mut net: Vec<&(i64, String, String, Value)> = changes
        .iter()
        .enumerate()
        .filter(|(i, (_, table, _, row))| last[&(table.as_str(), row_key(table, row))] == *i)
        .map(|(_, c)| c)
        .collect();
    // Writes parents first; deletes after every write, children first.
    net.sort_by_key(|(id, table, op, _)| {
        if op == "DELETE" {
            (1, u8::MAX - tier(table), *id)
        } else {
            (0, tier(table), *id)
        }
    });
    let mut report = Rollback::default();
    let mut failures = Vec::new();
    let mut tx = sqlx::Connection::begin(&mut src).await?;
    sqlx::raw_sql(
        "set local default_transaction_read_only = off; set local transaction_read_only = off;
         create table if not exists pesachama_sync.rollback_map (target_id uuid primary key, legacy_id bigint not null);",
    )
    .execute(&mut *tx)
    .await?;
    let mut sums: std::collections::BTreeMap<String, String> = Default::default();
    for (id, table, op, row) in net {
        sqlx::raw_sql("savepoint replay").execute(&mut *tx).await?;
        let what = format!(
            "target change {id}: {op} on {table} {}",
            row_key(table, row)
        );
        match replay(&mut tx, table, op, row, &mut sums).await {
            Ok(None) => {
                sqlx::raw_sql("release savepoint replay")
                    .execute(&mut *tx)
                    .await?;
                report.replayed += 1;
            }
            Ok(Some(why)) => {
                sqlx::raw_sql("rollback to savepoint replay")
                    .execute(&mut *tx)
                    .await?;
                failures.push(format!("{what}: {why}"));
            }
            Err(err) => {
                sqlx::raw_sql("rollback to savepoint replay")
                    .execute(&mut *tx)
                    .await?;
                failures.push(format!("{what}: legacy refused it: {err:#}"));
            }
        }
    }
    if !failures.is_empty() {
        tx.rollback().await?;
        bail!(
            "rollback stopped: {} target changes cannot be replayed into legacy, so nothing was written and legacy stays frozen (the target stays live and keeps capturing): {}",
            failures.len(),
            failures.join("; ")
        );
    }
    // Balances move by the money the replay added to legacy's own sum, nothing else.
    for (chama, before) in &sums {
        sqlx::query(&format!(
            "update chamas set balance = balance + (({LEGACY_SUM}) ::numeric - $2::numeric) where id = $1::uuid"
        ))
        .bind(chama)
        .bind(before)
        .execute(&mut *tx)
        .await?;
    }
    // The replay is not a legacy change for `sync` to carry back to the target.
    sqlx::raw_sql("delete from pesachama_sync.changes where txid = txid_current()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    access::reopen(&mut src, &cut).await?;
    let mut stop = format!(
        "update pesachama_migrate.cutover set rolled_back_at = now(), reopened_at = now() where id = {};",
        cut.id
    );
    for table in TARGET_CAPTURED {
        stop.push_str(&format!(
            "drop trigger if exists pesachama_rollback_capture on {table};"
        ));
    }
    sqlx::raw_sql(&stop).execute(&mut *hold).await?;
    hold.commit().await?;
    Ok(report)
}

/// Remembers legacy's own sum of a chama's transactions before the replay first changes them.
async fn note_sum(
    conn: &mut PgConnection,
    chama: Option<&String>,
    sums: &mut std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if let Some(chama) = chama
        && !sums.contains_key(chama)
    {
        let sum: String = sqlx::query_scalar(LEGACY_SUM)
            .bind(chama)
            .fetch_one(&mut *conn)
            .await?;
        sums.insert(chama.clone(), sum);
    }
    Ok(())
}

/// Legacy's spelling of a target enumeration value (`merry_go_round` → `merry-go-round`).
fn dashed(value: Option<String>) -> Option<String> {
    value.map(|v| match v.as_str() {
        "biweekly" => "bi-weekly".to_owned(),
        _ => v.replace('_', "-"),
    })
}

/// Replays one target row (its last state) into legacy: `None` when done, `Some(reason)` when
/// legacy cannot hold it as the same fact.
async fn replay(
    conn: &mut PgConnection,
    table: &str,
    op: &str,
    row: &Value,
    sums: &mut std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Option<String>> {
    if op == "DELETE" {
        return replay_delete(conn, table, row).await;
    }
    match table {
        "auth.users" => {
            // The profile (tier 0) is in legacy by now; the password is what auth adds.
            let found = sqlx::query(
                "update users set password_hash = coalesce($2, password_hash) where id = $1::uuid",
            )
            .bind(s(row, "id"))
            .bind(s(row, "encrypted_password"))
            .execute(&mut *conn)
            .await?;
            if found.rows_affected() == 0 {
                return Ok(Some(
                    "an account without a profile legacy holds (legacy keeps account and profile in one users row)".into(),
                ));
            }
        }
        "public.users" => {
            let Some(phone) = s(row, "phone") else {
                return Ok(Some(
                    "a user without a phone number: legacy's users.phone is NOT NULL".into(),
                ));
            };
            sqlx::query(
                "insert into users (id, email, phone, first_name, last_name, id_number, avatar_url, language, created_at, updated_at, deleted_at)
                 values ($1::uuid, $2, $3, $4, $5, $6, $7, coalesce($8, 'en'), $9::timestamp, $10::timestamp, $11::timestamp)
                 on conflict (id) do update set email = excluded.email, phone = excluded.phone, first_name = excluded.first_name,
                   last_name = excluded.last_name, id_number = excluded.id_number, avatar_url = excluded.avatar_url,
                   language = excluded.language, updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
            )
            .bind(s(row, "id")).bind(s(row, "email")).bind(phone)
            .bind(s(row, "first_name")).bind(s(row, "last_name")).bind(s(row, "id_number")).bind(s(row, "avatar_url"))
            .bind(s(row, "language")).bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"])).bind(to_nairobi(&row["deleted_at"]))
            .execute(&mut *conn).await?;
        }
        "public.chamas" => {
            // A chama new on the target is inserted with no money: its transactions bring it.
            // Free-text enumerations keep legacy's spelling where they mean the same.
            sqlx::query(
                "insert into chamas (id, name, description, chama_type, registration_number, contribution_amount,
                                     contribution_frequency, balance, paybill_account, required_approvals, created_by,
                                     status, created_at, updated_at, deleted_at)
                 values ($1::uuid, $2, $3, $4, $5, $6::numeric, $7, 0, $8, $9::int, $10::uuid, $11,
                         $12::timestamp, $13::timestamp, $14::timestamp)
                 on conflict (id) do update set name = excluded.name, description = excluded.description,
                   chama_type = case when regexp_replace(lower(chamas.chama_type), '[^a-z]', '', 'g')
                                        = regexp_replace(excluded.chama_type, '[^a-z]', '', 'g')
                                     then chamas.chama_type else excluded.chama_type end,
                   contribution_frequency = case when regexp_replace(lower(chamas.contribution_frequency), '[^a-z]', '', 'g')
                                                    = regexp_replace(excluded.contribution_frequency, '[^a-z]', '', 'g')
                                                 then chamas.contribution_frequency else excluded.contribution_frequency end,
                   registration_number = excluded.registration_number, contribution_amount = excluded.contribution_amount,
                   paybill_account = excluded.paybill_account, required_approvals = excluded.required_approvals,
                   status = excluded.status, updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
            )
            .bind(s(row, "id")).bind(s(row, "name")).bind(s(row, "description")).bind(dashed(s(row, "chama_type")))
            .bind(s(row, "registration_number")).bind(kes(&row["contribution_amount"])).bind(dashed(s(row, "contribution_frequency")))
            .bind(s(row, "paybill_account")).bind(s(row, "required_approvals")).bind(s(row, "created_by")).bind(s(row, "status"))
            .bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"])).bind(to_nairobi(&row["deleted_at"]))
            .execute(&mut *conn).await?;
        }
        "public.chama_members" => {
            // Legacy's chama_id has no foreign key: check what it would not.
            let chama: bool =
                sqlx::query_scalar("select exists (select from chamas where id = $1::uuid)")
                    .bind(s(row, "chama_id"))
                    .fetch_one(&mut *conn)
                    .await?;
            if !chama {
                return Ok(Some(format!(
                    "a membership of chama {} that legacy does not have",
                    s(row, "chama_id").unwrap_or_default()
                )));
            }
            let status = s(row, "status").map(|status| match status.as_str() {
                "pending" => "invited".to_owned(),
                "declined" => "left".to_owned(),
                _ => status,
            });
            sqlx::query(
                "insert into chama_members (chama_id, user_id, role, status, joined_at)
                 values ($1::uuid, $2::uuid, $3, $4, coalesce($5::timestamp, $6::timestamp, now()))
                 on conflict (chama_id, user_id) do update set role = excluded.role, status = excluded.status",
            )
            .bind(s(row, "chama_id")).bind(s(row, "user_id")).bind(s(row, "role")).bind(status)
            .bind(to_nairobi(&row["joined_at"])).bind(to_nairobi(&row["created_at"]))
            .execute(&mut *conn).await?;
        }
        "public.transactions" => {
            if s(row, "type").as_deref() == Some("opening_balance") {
                return Ok(Some(
                    "an opening balance (a migration entry, not a legacy fact) changed on the target".into(),
                ));
            }
            let chama = s(row, "chama_id");
            note_sum(conn, chama.as_ref(), sums).await?;
            match mapped(conn, row, "legacy_id").await? {
                Some(id) => {
                    // Amounts of posted money never change on the target; status and text do.
                    sqlx::query("update transactions set status = $2, description = $3, updated_at = $4::timestamp where id = $1")
                        .bind(id).bind(s(row, "status")).bind(s(row, "description")).bind(to_nairobi(&row["updated_at"]))
                        .execute(&mut *conn).await?;
                }
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into transactions (chama_id, user_id, type, amount, status, payment_method, reference, mpesa_receipt, phone, description, metadata, created_at, updated_at)
                         values ($1::uuid, $2::uuid, $3, $4::numeric, $5, $6, $7, $8, $9, $10, $11::json, $12::timestamp, $13::timestamp) returning id",
                    )
                    .bind(&chama).bind(s(row, "user_id")).bind(s(row, "type")).bind(kes(&row["amount"])).bind(s(row, "status"))
                    .bind(s(row, "payment_method").filter(|m| m != "internal"))
                    .bind(s(row, "reference")).bind(s(row, "mpesa_receipt")).bind(s(row, "phone")).bind(s(row, "description"))
                    .bind(row.get("metadata").map(|m| m.to_string()))
                    .bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"]))
                    .fetch_one(&mut *conn).await?;
                    remember(conn, row, id).await?;
                }
            }
        }
        "public.notifications" => {
            if let Some(id) = mapped(conn, row, "legacy_id").await? {
                // Known to legacy: what a member can change is whether it was read.
                sqlx::query("update notifications set is_read = $2 where id = $1")
                    .bind(id)
                    .bind(!row["read_at"].is_null())
                    .execute(&mut *conn)
                    .await?;
                return Ok(None);
            }
            let id: i64 = sqlx::query_scalar(
                "insert into notifications (user_id, type, title, body, data, is_read, sent_via, created_at)
                 values ($1::uuid, $2, $3, $4, $5::json, $6, $7::varchar[], $8::timestamp) returning id",
            )
            .bind(s(row, "user_id")).bind(s(row, "type")).bind(s(row, "title")).bind(s(row, "body"))
            .bind(row.get("data").map(|d| d.to_string())).bind(!row["read_at"].is_null())
            .bind(row["sent_via"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>()).unwrap_or_default())
            .bind(to_nairobi(&row["created_at"])).fetch_one(&mut *conn).await?;
            remember(conn, row, id).await?;
        }
        "public.device_tokens" => {
            // Legacy keeps a token per user; one it has already needs nothing more.
            let known: bool = sqlx::query_scalar(
                "select exists (select from user_devices where user_id = $1::uuid and fcm_token = $2)",
            )
            .bind(s(row, "user_id"))
            .bind(s(row, "token"))
            .fetch_one(&mut *conn)
            .await?;
            if known || mapped(conn, row, "").await?.is_some() {
                return Ok(None);
            }
            let id: i64 = sqlx::query_scalar("insert into user_devices (user_id, fcm_token, platform, created_at) values ($1::uuid, $2, $3, $4::timestamp) returning id")
                .bind(s(row, "user_id")).bind(s(row, "token")).bind(s(row, "platform")).bind(to_nairobi(&row["created_at"]))
                .fetch_one(&mut *conn).await?;
            remember(conn, row, id).await?;
        }
        "public.meetings" => {
            sqlx::query(
                "insert into meetings (id, chama_id, title, agenda, scheduled_for, duration_minutes, venue, meeting_type, agora_channel, minutes, status, created_by, created_at, updated_at)
                 values ($1::uuid, $2::uuid, $3, $4, $5::timestamp, $6::int, $7, $8, $9, $10, $11, $12::uuid, $13::timestamp, $14::timestamp)
                 on conflict (id) do update set title = excluded.title, agenda = excluded.agenda, scheduled_for = excluded.scheduled_for,
                   duration_minutes = excluded.duration_minutes, venue = excluded.venue, meeting_type = excluded.meeting_type,
                   agora_channel = excluded.agora_channel, minutes = excluded.minutes, status = excluded.status, updated_at = excluded.updated_at",
            )
            .bind(s(row, "id")).bind(s(row, "chama_id")).bind(s(row, "title")).bind(s(row, "agenda"))
            .bind(to_nairobi(&row["scheduled_for"])).bind(s(row, "duration_minutes")).bind(s(row, "venue"))
            .bind(s(row, "meeting_type")).bind(s(row, "agora_channel")).bind(s(row, "minutes")).bind(s(row, "status"))
            .bind(s(row, "created_by")).bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"]))
            .execute(&mut *conn).await?;
        }
        "public.meeting_attendance" => {
            // Legacy keeps the register as an array of those who came.
            let came = matches!(s(row, "status").as_deref(), Some("present" | "late"));
            let found = sqlx::query(
                "update meetings set attendees = case when $3 then array_append(array_remove(attendees, $2::uuid), $2::uuid)
                                                     else array_remove(attendees, $2::uuid) end
                  where id = $1::uuid",
            )
            .bind(s(row, "meeting_id")).bind(s(row, "user_id")).bind(came)
            .execute(&mut *conn).await?;
            if found.rows_affected() == 0 {
                return Ok(Some(
                    "the register of a meeting legacy does not have".into(),
                ));
            }
        }
        "public.disbursement_requests" => {
            let transaction = match s(row, "transaction_id") {
                Some(target) => legacy_of(conn, &target).await?,
                None => None,
            };
            sqlx::query(
                "insert into disbursement_requests (id, chama_id, requested_by, recipient_phone, amount, reason, status, transaction_id, created_at, updated_at)
                 values ($1::uuid, $2::uuid, $3::uuid, $4, $5::numeric, $6, $7, $8, $9::timestamp, $10::timestamp)
                 on conflict (id) do update set status = excluded.status, updated_at = excluded.updated_at,
                   transaction_id = coalesce(excluded.transaction_id, disbursement_requests.transaction_id)",
            )
            .bind(s(row, "id")).bind(s(row, "chama_id")).bind(s(row, "requested_by")).bind(s(row, "recipient_phone"))
            .bind(kes(&row["amount"])).bind(s(row, "reason"))
            .bind(s(row, "status").map(|status| legacy_disbursement_status(&status)))
            .bind(transaction).bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"]))
            .execute(&mut *conn).await?;
        }
        "public.disbursement_approvals" => {
            let decision = serde_json::json!({
                "user_id": s(row, "approver_id"),
                "approved": s(row, "decision").as_deref() == Some("approve"),
                "comment": s(row, "comment"),
                "at": to_nairobi(&row["created_at"]).map(|at| at.replace(' ', "T")),
            });
            if !set_decision(conn, row, Some(decision)).await? {
                return Ok(Some("a decision on a request legacy does not have".into()));
            }
        }
        other => return Ok(Some(format!("legacy has no table for {other}"))),
    }
    Ok(None)
}

/// Replays a row deleted on the target. Users, chamas, transactions and withdrawal requests
/// are history legacy keeps (the app never deletes them): such a delete is reported.
async fn replay_delete(
    conn: &mut PgConnection,
    table: &str,
    row: &Value,
) -> anyhow::Result<Option<String>> {
    match table {
        "public.notifications" => {
            let Some(id) = mapped(conn, row, "legacy_id").await? else {
                return Ok(None); // never reached legacy
            };
            sqlx::query("delete from notifications where id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        "public.device_tokens" => {
            sqlx::query("delete from user_devices where user_id = $1::uuid and fcm_token = $2")
                .bind(s(row, "user_id"))
                .bind(s(row, "token"))
                .execute(&mut *conn)
                .await?;
        }
        "public.chama_members" => {
            sqlx::query(
                "delete from chama_members where chama_id = $1::uuid and user_id = $2::uuid",
            )
            .bind(s(row, "chama_id"))
            .bind(s(row, "user_id"))
            .execute(&mut *conn)
            .await?;
        }
        "public.meetings" => {
            sqlx::query("delete from meetings where id = $1::uuid")
                .bind(s(row, "id"))
                .execute(&mut *conn)
                .await?;
        }
        "public.meeting_attendance" => {
            sqlx::query("update meetings set attendees = array_remove(attendees, $2::uuid) where id = $1::uuid")
                .bind(s(row, "meeting_id"))
                .bind(s(row, "user_id"))
                .execute(&mut *conn)
                .await?;
        }
        "public.disbursement_approvals" => {
            let _ = set_decision(conn, row, None).await?;
        }
        other => {
            return Ok(Some(format!(
                "a delete of {other} history, which legacy keeps"
            )));
        }
    }
    Ok(None)
}

/// Legacy keeps officials' decisions as JSON on the request, one per official: replaces the
/// decision of the approval `row` names with `decision`, or removes it (`None`).
async fn set_decision(
    conn: &mut PgConnection,
    row: &Value,
    decision: Option<Value>,
) -> anyhow::Result<bool> {
    let found = sqlx::query(
        "update disbursement_requests
            set approvals = (select coalesce(jsonb_agg(a), '[]'::jsonb)
                               from jsonb_array_elements(approvals::jsonb) a
                              where a ->> 'user_id' is distinct from $2)
                            || case when $3::jsonb is null then '[]'::jsonb else jsonb_build_array($3::jsonb) end
          where id = $1::uuid",
    )
    .bind(s(row, "request_id"))
    .bind(s(row, "approver_id"))
    .bind(decision)
    .execute(&mut *conn)
    .await?;
    Ok(found.rows_affected() > 0)
}

/// The legacy status of a target withdrawal request. Legacy knows pending, approved, rejected,
/// disbursed and failed (and `cancelled` in old rows): money reserved or on its way is
/// `approved`, paid is `disbursed`, and a request that expired unapproved is `rejected`.
fn legacy_disbursement_status(status: &str) -> &'static str {
    match status {
        "approved" | "processing" => "approved",
        "completed" => "disbursed",
        "failed" => "failed",
        "rejected" | "expired" => "rejected",
        "cancelled" => "cancelled",
        _ => "pending",
    }
}

/// The legacy id a previous replay recorded for a target row.
async fn legacy_of(conn: &mut PgConnection, target_id: &str) -> anyhow::Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "select legacy_id from pesachama_sync.rollback_map where target_id = $1::uuid",
    )
    .bind(target_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The legacy id of a target row: its `legacy_id` column, or one a previous replay recorded.
async fn mapped(
    conn: &mut PgConnection,
    row: &Value,
    legacy_column: &str,
) -> anyhow::Result<Option<i64>> {
    if let Some(id) = s(row, legacy_column).and_then(|l| l.parse::<i64>().ok()) {
        return Ok(Some(id));
    }
    match s(row, "id") {
        Some(id) => legacy_of(conn, &id).await,
        None => Ok(None),
    }
}

async fn remember(conn: &mut PgConnection, row: &Value, legacy: i64) -> anyhow::Result<()> {
    sqlx::query(
        "insert into pesachama_sync.rollback_map values ($1::uuid, $2) on conflict do nothing",
    )
    .bind(s(row, "id"))
    .bind(legacy)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
