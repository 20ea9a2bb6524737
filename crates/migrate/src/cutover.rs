//! `migrate cutover` and `migrate rollback`.
//!
//! Cut-over freezes legacy for real: CONNECT is revoked from every non-superuser role that had
//! it (and from PUBLIC), their sessions are terminated, and the database defaults to read-only
//! for whoever still connects; then the change capture is drained into the target, the target
//! is verified, sequences are set, and capture starts on the target (triggers writing every
//! change of the tables members write into `pesachama_migrate.target_changes`), so a rollback
//! can replay every write made on the target into legacy before legacy is reopened.
//!
//! Rollback replays those changes into legacy in order (new transactions, notifications, device
//! tokens, memberships, meetings with their registers and withdrawal requests with their
//! decisions inserted, changed rows updated, deleted ones deleted, chama balances set to the
//! target's ledger), inside one legacy transaction that also records which target row became
//! which legacy row (`pesachama_sync.rollback_map`), so a rollback interrupted and run again
//! inserts nothing twice; then it restores CONNECT and read-write.

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::PgConnection;

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
create table if not exists pesachama_migrate.cutover (
  id bigserial primary key,
  at timestamptz not null default now(),
  legacy_roles text[] not null,
  legacy_public_connect boolean not null,
  rolled_back_at timestamptz
);
create or replace function pesachama_migrate.capture() returns trigger
  language plpgsql security definer set search_path = '' as $$
begin
  insert into pesachama_migrate.target_changes (table_name, op, row)
    values (tg_table_schema || '.' || tg_table_name, tg_op,
            case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end);
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

pub async fn cutover(from: &str, to: &str, batch_size: usize) -> anyhow::Result<Cutover> {
    let mut src = source::connect(from, "legacy").await?;
    let mut dst = source::connect(to, "target").await?;
    if !sync::capture_installed(&mut src).await? {
        bail!(
            "change capture is not installed on legacy (`migrate sync --install` before `copy`): writes made since the copy would be lost"
        );
    }
    // 1. Freeze legacy.
    let (database, public_connect): (String, bool) = sqlx::query_as(
        "select current_database()::text, coalesce(has_database_privilege('public', current_database(), 'CONNECT'), false)",
    )
    .fetch_one(&mut src)
    .await?;
    let roles: Vec<String> = sqlx::query_scalar(
        "select rolname::text from pg_roles where rolcanlogin and not rolsuper and rolname <> current_user
            and has_database_privilege(oid, current_database(), 'CONNECT') order by 1",
    )
    .fetch_all(&mut src)
    .await?;
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut freeze = format!(
        "revoke connect on database {} from public;",
        quoted(&database)
    );
    for role in &roles {
        freeze.push_str(&format!(
            "revoke connect on database {} from {};",
            quoted(&database),
            quoted(role)
        ));
    }
    freeze.push_str(&format!(
        "alter database {} set default_transaction_read_only = on;",
        quoted(&database)
    ));
    sqlx::raw_sql(&freeze)
        .execute(&mut src)
        .await
        .context("revoking access to legacy")?;
    let terminated: i64 = sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'",
    )
    .fetch_one(&mut src)
    .await?;
    // 2. Drain.
    let mut drained = 0;
    loop {
        let cycle = sync::cycle(&mut src, &mut dst).await?;
        drained += cycle.applied;
        if cycle.applied == 0 && cycle.pending == 0 {
            break;
        }
    }
    // 3. Verify.
    let verification = verify::run(from, to, batch_size).await?;
    let differences = verification.differences();
    if !differences.is_empty() {
        bail!(
            "verify found {} differences after the drain; legacy stays frozen (`migrate rollback` reopens it): {}",
            differences.len(),
            differences
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    // 4. Sequences, 5. capture on the target.
    let mut sql = format!(
        "select setval(pg_get_serial_sequence('internal.legacy_audit_logs', 'id'),
                       greatest(coalesce((select max(id) from internal.legacy_audit_logs), 0), 1));
         {TARGET_CAPTURE}"
    );
    for table in TARGET_CAPTURED {
        sql.push_str(&format!(
            "drop trigger if exists pesachama_rollback_capture on {table};
             create trigger pesachama_rollback_capture after insert or update or delete on {table}
               for each row execute function pesachama_migrate.capture();"
        ));
    }
    sqlx::raw_sql(&sql)
        .execute(&mut dst)
        .await
        .context("starting capture on the target")?;
    sqlx::query("insert into pesachama_migrate.cutover (legacy_roles, legacy_public_connect) values ($1, $2)")
        .bind(&roles).bind(public_connect).execute(&mut dst).await?;
    Ok(Cutover {
        frozen_roles: roles,
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
    pub replayed: u64,
    pub not_replayed: Vec<String>,
}

pub async fn rollback(from: &str, to: &str) -> anyhow::Result<Rollback> {
    let mut src = source::connect(from, "legacy").await?;
    // Cut-over made the database read-only by default; this session writes.
    sqlx::raw_sql("set default_transaction_read_only = off")
        .execute(&mut src)
        .await?;
    let mut dst = source::connect(to, "target").await?;
    let cut: Option<(i64, Vec<String>, bool)> = sqlx::query_as(
        "select id, legacy_roles, legacy_public_connect from pesachama_migrate.cutover where rolled_back_at is null order by id desc limit 1",
    )
    .fetch_optional(&mut dst)
    .await
    .context("no cut-over recorded on this target (pesachama_migrate.cutover)")?;
    let Some((cut_id, roles, public_connect)) = cut else {
        bail!("no cut-over to roll back on this target");
    };
    let changes: Vec<(i64, String, String, Value)> = sqlx::query_as(
        "select id, table_name, op, row from pesachama_migrate.target_changes order by id",
    )
    .fetch_all(&mut dst)
    .await?;
    let mut report = Rollback::default();
    let mut tx = sqlx::Connection::begin(&mut src).await?;
    sqlx::raw_sql(
        "set local default_transaction_read_only = off; set local transaction_read_only = off;
         set local session_replication_role = replica;
         create table if not exists pesachama_sync.rollback_map (target_id uuid primary key, legacy_id bigint not null);",
    )
    .execute(&mut *tx)
    .await?;
    let mut chamas = std::collections::BTreeSet::new();
    // Passwords last: a new member's auth.users row comes before their profile.
    let ordered = changes
        .iter()
        .filter(|c| c.1 != "auth.users")
        .chain(changes.iter().filter(|c| c.1 == "auth.users"));
    for (id, table, op, row) in ordered {
        let applied = replay(&mut tx, table, op, row, &mut chamas).await?;
        if applied {
            report.replayed += 1;
        } else {
            report.not_replayed.push(format!(
                "target change {id}: {op} on {table} (not replayed; review)"
            ));
        }
    }
    for chama in &chamas {
        let balance: Option<i64> =
            sqlx::query_scalar("select balance from public.chamas where id = $1::uuid")
                .bind(chama)
                .fetch_optional(&mut dst)
                .await?;
        if let Some(balance) = balance {
            sqlx::query("update chamas set balance = $2::numeric / 100 where id = $1::uuid")
                .bind(chama)
                .bind(balance)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    // Reopen legacy.
    let database: String = sqlx::query_scalar("select current_database()::text")
        .fetch_one(&mut src)
        .await?;
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut reopen = format!(
        "alter database {} reset default_transaction_read_only;",
        quoted(&database)
    );
    if public_connect {
        reopen.push_str(&format!(
            "grant connect on database {} to public;",
            quoted(&database)
        ));
    }
    for role in &roles {
        reopen.push_str(&format!(
            "grant connect on database {} to {};",
            quoted(&database),
            quoted(role)
        ));
    }
    sqlx::raw_sql(&reopen)
        .execute(&mut src)
        .await
        .context("reopening legacy")?;
    let mut stop =
        String::from("update pesachama_migrate.cutover set rolled_back_at = now() where id = $1;");
    for table in TARGET_CAPTURED {
        stop.push_str(&format!(
            "drop trigger if exists pesachama_rollback_capture on {table};"
        ));
    }
    sqlx::query("update pesachama_migrate.cutover set rolled_back_at = now() where id = $1")
        .bind(cut_id)
        .execute(&mut dst)
        .await?;
    for table in TARGET_CAPTURED {
        sqlx::raw_sql(&format!(
            "drop trigger if exists pesachama_rollback_capture on {table}"
        ))
        .execute(&mut dst)
        .await?;
    }
    Ok(report)
}

/// Replays one target change into legacy; `false` when it is of a kind not replayed.
async fn replay(
    conn: &mut PgConnection,
    table: &str,
    op: &str,
    row: &Value,
    chamas: &mut std::collections::BTreeSet<String>,
) -> anyhow::Result<bool> {
    if op == "DELETE" {
        return replay_delete(conn, table, row).await;
    }
    match table {
        "auth.users" => {
            sqlx::query(
                "update users set password_hash = coalesce($2, password_hash) where id = $1::uuid",
            )
            .bind(s(row, "id"))
            .bind(s(row, "encrypted_password"))
            .execute(&mut *conn)
            .await?;
        }
        "public.users" => {
            let Some(phone) = s(row, "phone") else {
                return Ok(false);
            };
            let hash: Option<String> = None;
            sqlx::query(
                "insert into users (id, email, phone, password_hash, first_name, last_name, id_number, avatar_url, language, created_at, updated_at, deleted_at)
                 values ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamp, $11::timestamp, $12::timestamp)
                 on conflict (id) do update set email = excluded.email, phone = excluded.phone, first_name = excluded.first_name,
                   last_name = excluded.last_name, id_number = excluded.id_number, avatar_url = excluded.avatar_url,
                   language = excluded.language, updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
            )
            .bind(s(row, "id")).bind(s(row, "email")).bind(phone).bind(hash)
            .bind(s(row, "first_name")).bind(s(row, "last_name")).bind(s(row, "id_number")).bind(s(row, "avatar_url"))
            .bind(s(row, "language")).bind(to_nairobi(&row["created_at"])).bind(to_nairobi(&row["updated_at"])).bind(to_nairobi(&row["deleted_at"]))
            .execute(&mut *conn).await?;
        }
        "public.chamas" => {
            sqlx::query("update chamas set name = $2, description = $3, required_approvals = $4::int, updated_at = $5::timestamp where id = $1::uuid")
                .bind(s(row, "id")).bind(s(row, "name")).bind(s(row, "description")).bind(s(row, "required_approvals"))
                .bind(to_nairobi(&row["updated_at"])).execute(&mut *conn).await?;
            if let Some(id) = s(row, "id") {
                chamas.insert(id);
            }
        }
        "public.chama_members" => {
            sqlx::query(
                "insert into chama_members (chama_id, user_id, role, status, joined_at) values ($1::uuid, $2::uuid, $3, $4, coalesce($5::timestamp, now()))
                 on conflict (chama_id, user_id) do update set role = excluded.role, status = excluded.status",
            )
            .bind(s(row, "chama_id")).bind(s(row, "user_id")).bind(s(row, "role")).bind(s(row, "status")).bind(to_nairobi(&row["joined_at"]))
            .execute(&mut *conn).await?;
        }
        "public.transactions" => {
            if s(row, "type").as_deref() == Some("opening_balance") {
                return Ok(true);
            }
            let legacy = mapped(conn, row, "legacy_id").await?;
            let values = (
                s(row, "chama_id"),
                s(row, "user_id"),
                s(row, "type"),
                kes(&row["amount"]),
                s(row, "status"),
                s(row, "payment_method").filter(|m| m != "internal"),
                s(row, "reference"),
                s(row, "mpesa_receipt"),
                s(row, "phone"),
                s(row, "description"),
                to_nairobi(&row["created_at"]),
                to_nairobi(&row["updated_at"]),
            );
            match legacy {
                Some(id) => {
                    sqlx::query("update transactions set status = $2, amount = $3::numeric, description = $4, updated_at = $5::timestamp where id = $1")
                        .bind(id).bind(&values.4).bind(&values.3).bind(&values.9).bind(&values.11).execute(&mut *conn).await?;
                }
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "insert into transactions (chama_id, user_id, type, amount, status, payment_method, reference, mpesa_receipt, phone, description, metadata, created_at, updated_at)
                         values ($1::uuid, $2::uuid, $3, $4::numeric, $5, $6, $7, $8, $9, $10, $11::json, $12::timestamp, $13::timestamp) returning id",
                    )
                    .bind(&values.0).bind(&values.1).bind(&values.2).bind(&values.3).bind(&values.4).bind(&values.5)
                    .bind(&values.6).bind(&values.7).bind(&values.8).bind(&values.9)
                    .bind(row.get("metadata").map(|m| m.to_string())).bind(&values.10).bind(&values.11)
                    .fetch_one(&mut *conn).await?;
                    remember(conn, row, id).await?;
                }
            }
            if let Some(chama) = values.0 {
                chamas.insert(chama);
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
                return Ok(true);
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
            if op != "INSERT" || mapped(conn, row, "").await?.is_some() {
                return Ok(op == "UPDATE");
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
            sqlx::query(
                "update meetings set attendees = case when $3 then array_append(array_remove(attendees, $2::uuid), $2::uuid)
                                                     else array_remove(attendees, $2::uuid) end
                  where id = $1::uuid",
            )
            .bind(s(row, "meeting_id")).bind(s(row, "user_id")).bind(came)
            .execute(&mut *conn).await?;
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
            set_decision(conn, row, Some(decision)).await?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Replays a row deleted on the target; `false` for tables whose rows are never deleted by
/// the app (transactions, users, chamas: left for review).
async fn replay_delete(conn: &mut PgConnection, table: &str, row: &Value) -> anyhow::Result<bool> {
    match table {
        "public.notifications" => {
            let Some(id) = mapped(conn, row, "legacy_id").await? else {
                return Ok(true); // never reached legacy
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
            set_decision(conn, row, None).await?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Legacy keeps officials' decisions as JSON on the request, one per official: replaces the
/// decision of the approval `row` names with `decision`, or removes it (`None`).
async fn set_decision(
    conn: &mut PgConnection,
    row: &Value,
    decision: Option<Value>,
) -> anyhow::Result<()> {
    sqlx::query(
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
    Ok(())
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
