//! Reading the legacy database: COPY out, and the context every step shares.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::clean;
use crate::ledger::ReceiptConflict;
use crate::model::{Chama, Member, User, text};
use crate::pgtext::{self, Fields};
use crate::users::{self, Contact};

/// Connects with the settings the toolkit relies on (ISO dates; UTC on the target).
pub async fn connect(url: &str, what: &str) -> anyhow::Result<PgConnection> {
    let mut conn = PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to the {what} database ({})", redact(url)))?;
    sqlx::raw_sql("set datestyle = 'ISO, YMD'; set timezone = 'UTC'; set statement_timeout = 0")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The rows of `select` via `COPY (...) TO STDOUT`.
pub async fn copy_out(conn: &mut PgConnection, select: &str) -> anyhow::Result<Vec<Fields>> {
    let mut stream = conn
        .copy_out_raw(&format!("COPY ({select}) TO STDOUT"))
        .await
        .with_context(|| format!("reading legacy: {select}"))?;
    let mut payload = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        payload.extend_from_slice(&chunk);
    }
    Ok(pgtext::decode(&payload))
}

/// What every step needs to know about the rest of legacy, read once per run.
#[derive(Debug, Default)]
pub struct Context {
    pub users: Vec<User>,
    pub contacts: HashMap<String, Contact>,
    pub user_ids: HashSet<Uuid>,
    pub chamas: Vec<Chama>,
    pub chama_ids: HashSet<Uuid>,
    pub chama_active: HashMap<Uuid, bool>,
    pub chama_created: HashMap<Uuid, String>,
    pub legacy_balance: HashMap<Uuid, i64>,
    pub required_approvals: HashMap<Uuid, i64>,
    /// Every legacy membership, by chama id (text), including those of deleted chamas.
    pub members_by_chama: BTreeMap<String, Vec<Member>>,
    /// The users whose membership of an existing chama moves.
    pub migrated_members: HashMap<Uuid, Vec<Uuid>>,
    pub transactions_per_chama: HashMap<Uuid, u64>,
    pub duplicate_receipts: HashSet<i64>,
    /// The duplicates of a receipt whose amount or checkout id (reference) differs from the
    /// first row's: not a double callback but a conflict, by the duplicate's legacy id.
    pub receipt_conflicts: HashMap<i64, ReceiptConflict>,
    /// Active chamas with no active membership that moves: carried as suspended (dormant).
    pub chairless: HashSet<Uuid>,
    pub superseded_devices: HashSet<i64>,
    pub moved_transactions: HashSet<i64>,
    /// Rows per legacy table.
    pub counts: BTreeMap<String, u64>,
}

pub const LEGACY_TABLES: &[&str] = &[
    "users",
    "user_sessions",
    "user_devices",
    "chamas",
    "chama_members",
    "transactions",
    "disbursement_requests",
    "meetings",
    "ussd_sessions",
    "notifications",
    "audit_logs",
];

pub async fn load_context(conn: &mut PgConnection) -> anyhow::Result<Context> {
    let mut cx = Context::default();
    for table in LEGACY_TABLES {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from public.{table}"))
            .fetch_one(&mut *conn)
            .await?;
        cx.counts.insert((*table).to_owned(), n as u64);
    }
    cx.users = copy_out(
        conn,
        &format!("select {} from users order by id", User::select_list()),
    )
    .await?
    .into_iter()
    .map(User::from_fields)
    .collect();
    cx.contacts = users::resolve_contacts(&cx.users);
    cx.user_ids = users::ids(&cx.users);
    cx.chamas = copy_out(
        conn,
        &format!("select {} from chamas order by id", Chama::select_list()),
    )
    .await?
    .into_iter()
    .map(Chama::from_fields)
    .collect();
    for chama in &cx.chamas {
        let Ok(id) = text(&chama.id).parse::<Uuid>() else {
            continue;
        };
        cx.chama_ids.insert(id);
        cx.chama_active.insert(
            id,
            clean::chama_status(text(&chama.status)).unwrap_or("active") == "active",
        );
        cx.chama_created.insert(
            id,
            clean::nairobi_to_utc(text(&chama.created_at)).unwrap_or_default(),
        );
        cx.legacy_balance.insert(
            id,
            clean::kes_to_cents(text(&chama.balance)).unwrap_or_default(),
        );
        cx.required_approvals
            .insert(id, text(&chama.required_approvals).parse().unwrap_or(2));
    }
    let members = copy_out(
        conn,
        &format!(
            "select {} from chama_members order by chama_id, id",
            Member::select_list()
        ),
    )
    .await?;
    for member in members.into_iter().map(Member::from_fields) {
        if let (Ok(chama), Ok(user), Ok(_)) = (
            text(&member.chama_id).parse::<Uuid>(),
            text(&member.user_id).parse::<Uuid>(),
            clean::nairobi_to_utc(text(&member.joined_at)),
        ) && cx.chama_ids.contains(&chama)
        {
            cx.migrated_members.entry(chama).or_default().push(user);
        }
        cx.members_by_chama
            .entry(text(&member.chama_id).to_owned())
            .or_default()
            .push(member);
    }
    for (chama, n) in copy_out(
        conn,
        "select chama_id, count(*) from transactions group by chama_id",
    )
    .await?
    .into_iter()
    .filter_map(|f| {
        Some((
            f.first()?.as_deref()?.parse::<Uuid>().ok()?,
            f.get(1)?.as_deref()?.parse::<u64>().ok()?,
        ))
    }) {
        cx.transactions_per_chama.insert(chama, n);
    }
    for chama in &cx.chamas {
        let Ok(id) = text(&chama.id).parse::<Uuid>() else {
            continue;
        };
        let can_chair = cx
            .members_by_chama
            .get(text(&chama.id))
            .is_some_and(|members| {
                members.iter().any(|m| {
                    clean::member_status(text(&m.status)).unwrap_or("active") == "active"
                        && clean::nairobi_to_utc(text(&m.joined_at)).is_ok()
                        && text(&m.user_id).parse::<Uuid>().is_ok()
                })
            });
        if cx.chama_active.get(&id) == Some(&true) && !can_chair {
            cx.chairless.insert(id);
        }
    }
    // The first row with a receipt keeps it; later rows with the same receipt are duplicates
    // (double M-Pesa callbacks), or conflicts when their amount or checkout id differs.
    let duplicates = copy_out(
        conn,
        "select d.id, d.receipt, f.id, f.chama_id, f.amount, f.reference, d.chama_id, d.amount, d.reference,
                (f.amount <> d.amount or f.reference is distinct from d.reference)
           from (select id, chama_id, amount, reference, upper(btrim(mpesa_receipt)) as receipt,
                        first_value(id) over w as first_id, row_number() over w as n
                   from transactions where mpesa_receipt is not null
                 window w as (partition by upper(btrim(mpesa_receipt)) order by id)) d
           join transactions f on f.id = d.first_id
          where d.n > 1",
    )
    .await?;
    for f in duplicates {
        let field = |i: usize| f.get(i).cloned().flatten();
        let Some(id) = field(0).and_then(|i| i.parse::<i64>().ok()) else {
            continue;
        };
        cx.duplicate_receipts.insert(id);
        if field(9).as_deref() == Some("t") {
            let payment = |id: i64, at: usize| crate::ledger::LegacyPayment {
                id,
                chama_id: field(at).unwrap_or_default(),
                amount: field(at + 1).unwrap_or_default(),
                reference: field(at + 2),
            };
            let first = field(2).and_then(|i| i.parse().ok()).unwrap_or_default();
            cx.receipt_conflicts.insert(
                id,
                ReceiptConflict {
                    receipt: field(1).unwrap_or_default(),
                    first: payment(first, 3),
                    duplicate: payment(id, 6),
                },
            );
        }
    }
    cx.superseded_devices = ids_of(conn, "select id from (select id, row_number() over (partition by btrim(fcm_token) order by created_at desc, id desc) as n from user_devices) d where n > 1").await?;
    let referenced = copy_out(conn, "select t.id, t.type, t.status, t.amount, t.created_at, t.updated_at from transactions t where t.id in (select transaction_id from disbursement_requests)").await?;
    for f in referenced {
        let row = crate::model::Transaction {
            id: f.first().cloned().flatten(),
            kind: f.get(1).cloned().flatten(),
            status: f.get(2).cloned().flatten(),
            amount: f.get(3).cloned().flatten(),
            created_at: f.get(4).cloned().flatten(),
            updated_at: f.get(5).cloned().flatten(),
            ..Default::default()
        };
        if crate::ledger::moves(&row)
            && let Ok(id) = text(&row.id).parse()
        {
            cx.moved_transactions.insert(id);
        }
    }
    Ok(cx)
}

async fn ids_of(conn: &mut PgConnection, select: &str) -> anyhow::Result<HashSet<i64>> {
    Ok(copy_out(conn, select)
        .await?
        .into_iter()
        .filter_map(|f| f.first()?.as_deref()?.parse().ok())
        .collect())
}
