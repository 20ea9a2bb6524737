//! The steps of a migration, in dependency order, each read in batches by key.
//!
//! `plan`, `copy` and `verify` all walk the same cursors and apply the same transforms; they
//! differ only in what they do with each batch (count it, write it, write it to scratch).

use anyhow::Context as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::Batch;
use crate::ledger::{self, ChamaBooks, Drift};
use crate::model::{
    self, AuditLog, Device, Disbursement, Meeting, Notification, Transaction, text,
};
use crate::rows;
use crate::source::{self, Context};
use crate::users;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Users,
    Chamas,
    Members,
    Meetings,
    Devices,
    Ledger,
    Disbursements,
    Notifications,
    Audit,
}

/// Every step, in an order that respects [`Step::needs`] (as `plan` walks them).
pub const STEPS: &[Step] = &[
    Step::Users,
    Step::Audit,
    Step::Chamas,
    Step::Members,
    Step::Meetings,
    Step::Devices,
    Step::Notifications,
    Step::Ledger,
    Step::Disbursements,
];

impl Step {
    /// The steps whose rows this step's rows refer to: `copy` starts a step once these are
    /// done, and runs the others meanwhile. The legacy audit trail needs nothing, and
    /// notifications only users and chamas, so the two largest tables load alongside the rest.
    pub fn needs(self) -> &'static [Step] {
        match self {
            Step::Users | Step::Audit => &[],
            Step::Chamas | Step::Devices => &[Step::Users],
            Step::Members | Step::Meetings | Step::Notifications => &[Step::Users, Step::Chamas],
            Step::Ledger => &[Step::Chamas, Step::Members],
            Step::Disbursements => &[Step::Users, Step::Ledger],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Users => "users",
            Step::Chamas => "chamas",
            Step::Members => "chama_members",
            Step::Meetings => "meetings",
            Step::Devices => "user_devices",
            Step::Ledger => "transactions",
            Step::Disbursements => "disbursement_requests",
            Step::Notifications => "notifications",
            Step::Audit => "audit_logs",
        }
    }

    /// Legacy rows this step reads in all.
    pub fn total(self, cx: &Context) -> u64 {
        cx.counts.get(self.name()).copied().unwrap_or(0)
    }
}

/// Where a step has got to: the last key of the last batch done.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub step: Step,
    pub after: Option<String>,
    /// The ledger only: the chama id this cursor stops before (its shard's end).
    pub until: Option<String>,
    pub batch_size: usize,
}

/// The ledger is copied in two shards side by side: the chamas whose ids sort below this and
/// the rest. A fixed point of the id space, not a median of the data, so that a resumed run
/// splits the chamas exactly as the first run did whatever changed in the legacy database
/// meanwhile. Legacy chama ids are random (v4), so the halves are about equal.
pub const LEDGER_SPLIT: &str = "80000000-0000-0000-0000-000000000000";

/// The cursor key the ledger's second half starts after: every chama id at or above
/// [`LEDGER_SPLIT`] sorts after it, and none below.
pub const BEFORE_LEDGER_SPLIT: &str = "7fffffff-ffff-ffff-ffff-ffffffffffff";

/// A part of a step read by a cursor of its own, side by side with the step's other parts:
/// its checkpoint's name, and the keys it starts after and stops before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub after: Option<&'static str>,
    pub until: Option<&'static str>,
}

impl Step {
    /// The parts this step is read in: itself, except the ledger, the longest step, which is
    /// two halves (`transactions` below [`LEDGER_SPLIT`], `transactions@2` from it).
    pub fn parts(self) -> Vec<Part> {
        if self != Step::Ledger {
            return vec![Part {
                name: self.name().to_owned(),
                after: None,
                until: None,
            }];
        }
        vec![
            Part {
                name: self.name().to_owned(),
                after: None,
                until: Some(LEDGER_SPLIT),
            },
            Part {
                name: format!("{}@2", self.name()),
                after: Some(BEFORE_LEDGER_SPLIT),
                until: None,
            },
        ]
    }
}

impl Part {
    /// A cursor over this part, from its start or after `resume_after`.
    pub fn cursor(&self, step: Step, resume_after: Option<String>, batch_size: usize) -> Cursor {
        let after = resume_after.or_else(|| self.after.map(str::to_owned));
        Cursor::new(step, after, batch_size).until(self.until.map(str::to_owned))
    }
}

/// One batch and the key to resume after it.
#[derive(Debug)]
pub struct Done {
    pub batch: Batch,
    pub key: String,
    pub drifts: Vec<Drift>,
}

impl Cursor {
    pub fn new(step: Step, after: Option<String>, batch_size: usize) -> Self {
        Self {
            step,
            after,
            until: None,
            batch_size: batch_size.max(1),
        }
    }

    /// This cursor, stopping before `until` (the ledger's shards).
    pub fn until(mut self, until: Option<String>) -> Self {
        self.until = until;
        self
    }

    /// The next batch, or `None` when the step is finished.
    pub async fn next(
        &mut self,
        cx: &Context,
        src: &mut PgConnection,
    ) -> anyhow::Result<Option<Done>> {
        let done = match self.step {
            Step::Users => self.in_memory(
                &cx.users,
                |u| text(&u.id).to_owned(),
                |u, out| {
                    if let Some(contact) = cx.contacts.get(text(&u.id)) {
                        users::transform(u, contact, out);
                    }
                },
            ),
            Step::Chamas => self.in_memory(
                &cx.chamas,
                |c| text(&c.id).to_owned(),
                |c, out| rows::chama(c, &cx.user_ids, &cx.chairless, out),
            ),
            Step::Members => self.members(cx),
            Step::Ledger => self.ledger(cx, src).await?,
            Step::Meetings => {
                let rows = self.read::<Meeting>(src, "id", "uuid").await?;
                self.rows(
                    rows,
                    |m| text(&m.id).to_owned(),
                    |m, out| rows::meeting(m, &cx.user_ids, out),
                )
            }
            Step::Devices => {
                let rows = self.read::<Device>(src, "id", "bigint").await?;
                self.rows(
                    rows,
                    |d| text(&d.id).to_owned(),
                    |d, out| rows::device(d, &cx.superseded_devices, out),
                )
            }
            Step::Disbursements => {
                let rows = self.read::<Disbursement>(src, "id", "uuid").await?;
                let dcx = rows::DisbursementContext {
                    users: &cx.user_ids,
                    required: &cx.required_approvals,
                    moved_transactions: &cx.moved_transactions,
                };
                self.rows(
                    rows,
                    |d| text(&d.id).to_owned(),
                    |d, out| rows::disbursement(d, &dcx, out),
                )
            }
            Step::Notifications => {
                let rows = self.read::<Notification>(src, "id", "bigint").await?;
                let refs = references_of(src, cx, &rows).await?;
                self.rows(
                    rows,
                    |n| text(&n.id).to_owned(),
                    |n, out| rows::notification(n, &refs, out),
                )
            }
            Step::Audit => {
                let rows = self.read::<AuditLog>(src, "id", "bigint").await?;
                self.rows(rows, |a| text(&a.id).to_owned(), rows::audit)
            }
        };
        if let Some(done) = &done {
            self.after = Some(done.key.clone());
        }
        Ok(done)
    }

    fn in_memory<T>(
        &self,
        all: &[T],
        key: impl Fn(&T) -> String,
        each: impl Fn(&T, &mut Batch),
    ) -> Option<Done> {
        let start = match &self.after {
            None => 0,
            Some(after) => all.partition_point(|row| key(row).as_str() <= after.as_str()),
        };
        let slice = &all[start.min(all.len())..(start + self.batch_size).min(all.len())];
        let last = slice.last()?;
        let mut batch = Batch::default();
        for row in slice {
            each(row, &mut batch);
        }
        batch.source_rows = slice.len() as u64;
        Some(Done {
            batch,
            key: key(last),
            drifts: Vec::new(),
        })
    }

    fn rows<T>(
        &self,
        rows: Vec<T>,
        key: impl Fn(&T) -> String,
        each: impl Fn(&T, &mut Batch),
    ) -> Option<Done> {
        let last = key(rows.last()?);
        let mut batch = Batch::default();
        for row in &rows {
            each(row, &mut batch);
        }
        batch.source_rows = rows.len() as u64;
        Some(Done {
            batch,
            key: last,
            drifts: Vec::new(),
        })
    }

    /// Reads the next `batch_size` rows of a legacy table in key order.
    async fn read<T: LegacyRow>(
        &self,
        src: &mut PgConnection,
        key: &str,
        key_type: &str,
    ) -> anyhow::Result<Vec<T>> {
        let filter = match &self.after {
            None => String::new(),
            Some(after) => format!("where {key} > {}::{key_type}", literal(after)),
        };
        let select = format!(
            "select {} from public.{} {filter} order by {key} limit {}",
            T::select_list(),
            T::TABLE,
            self.batch_size
        );
        Ok(source::copy_out(src, &select)
            .await?
            .into_iter()
            .map(T::from_fields)
            .collect())
    }

    /// Memberships, a few chamas at a time (the chairperson rule is per chama).
    fn members(&self, cx: &Context) -> Option<Done> {
        let mut batch = Batch::default();
        let mut last = None;
        let range = match &self.after {
            None => cx.members_by_chama.range::<String, _>(..),
            Some(after) => cx.members_by_chama.range::<String, _>((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            )),
        };
        for (chama, members) in range {
            let active = chama
                .parse::<Uuid>()
                .ok()
                .and_then(|c| cx.chama_active.get(&c).copied());
            rows::members(active, members, &mut batch);
            batch.source_rows += members.len() as u64;
            last = Some(chama.clone());
            if batch.source_rows as usize >= self.batch_size {
                break;
            }
        }
        Some(Done {
            batch,
            key: last?,
            drifts: Vec::new(),
        })
    }

    /// The books of a few chamas at a time: every chama's history is posted whole.
    async fn ledger(&self, cx: &Context, src: &mut PgConnection) -> anyhow::Result<Option<Done>> {
        let start = match &self.after {
            None => 0,
            Some(after) => cx.chamas.partition_point(|c| text(&c.id) <= after.as_str()),
        };
        let mut chosen: Vec<Uuid> = Vec::new();
        let mut planned = 0u64;
        for chama in cx.chamas.iter().skip(start) {
            if self
                .until
                .as_deref()
                .is_some_and(|until| text(&chama.id) >= until)
            {
                break;
            }
            let Ok(id) = text(&chama.id).parse::<Uuid>() else {
                continue;
            };
            chosen.push(id);
            planned += cx.transactions_per_chama.get(&id).copied().unwrap_or(0);
            if planned as usize >= self.batch_size {
                break;
            }
        }
        let Some(last) = chosen.last().copied() else {
            return Ok(None);
        };
        let (batch, drifts) = books_of(&chosen, cx, src).await?;
        Ok(Some(Done {
            batch,
            key: last.to_string(),
            drifts,
        }))
    }
}

/// The books of the chamas `chosen`: every chama's legacy history read and posted whole.
pub async fn books_of(
    chosen: &[Uuid],
    cx: &Context,
    src: &mut PgConnection,
) -> anyhow::Result<(Batch, Vec<Drift>)> {
    let mut batch = Batch::default();
    let mut drifts = Vec::new();
    if chosen.is_empty() {
        return Ok((batch, drifts));
    }
    let list = chosen
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    let select = format!(
        "select {} from public.transactions where chama_id in ({list}) order by chama_id, created_at, id",
        Transaction::select_list()
    );
    let all: Vec<Transaction> = source::copy_out(src, &select)
        .await?
        .into_iter()
        .map(Transaction::from_fields)
        .collect();
    batch.source_rows = all.len() as u64;
    let mut by_chama: std::collections::HashMap<String, Vec<Transaction>> = Default::default();
    for row in all {
        by_chama
            .entry(text(&row.chama_id).to_owned())
            .or_default()
            .push(row);
    }
    let empty = Vec::new();
    for chama in chosen {
        let rows = by_chama.remove(&chama.to_string()).unwrap_or_default();
        let books = ChamaBooks {
            chama_id: *chama,
            created_at: cx
                .chama_created
                .get(chama)
                .map(String::as_str)
                .unwrap_or_default(),
            legacy_balance_cents: cx.legacy_balance.get(chama).copied().unwrap_or_default(),
            members: cx.migrated_members.get(chama).unwrap_or(&empty),
            duplicate_receipts: &cx.duplicate_receipts,
            receipt_conflicts: &cx.receipt_conflicts,
        };
        drifts.push(ledger::build(&books, &rows, &mut batch));
    }
    Ok((batch, drifts))
}

/// What the legacy ids inside these notifications' data name: the rows that do not move
/// (rejected by a transform, or not in legacy at all), read from legacy for this batch.
pub async fn references_of(
    src: &mut PgConnection,
    cx: &Context,
    notifications: &[Notification],
) -> anyhow::Result<rows::References> {
    let mut named: Vec<(&'static str, i64)> = Vec::new();
    for n in notifications {
        if let Some(Ok(data)) = n
            .data
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
        {
            rows::legacy_references(&data, &mut named);
        }
    }
    let mut refs = rows::References {
        unmoved: Default::default(),
        chamas: cx.chama_ids.clone(),
    };
    let ids = |table: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = named
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let transactions = ids("transactions");
    if !transactions.is_empty() {
        let found: Vec<Transaction> = source::copy_out(
            src,
            &format!(
                "select {} from public.transactions where id in ({})",
                Transaction::select_list(),
                list(&transactions)
            ),
        )
        .await?
        .into_iter()
        .map(Transaction::from_fields)
        .collect();
        let mut present = std::collections::HashSet::new();
        for row in &found {
            let id: i64 = text(&row.id).parse().unwrap_or_default();
            present.insert(id);
            if let Some(why) = ledger::rejection(row) {
                refs.unmoved
                    .insert(("transactions", id), format!("quarantined: {why}"));
            }
        }
        for id in transactions.iter().filter(|id| !present.contains(*id)) {
            refs.unmoved
                .insert(("transactions", *id), "no such row in legacy".into());
        }
    }
    let members = ids("chama_members");
    if !members.is_empty() {
        let found = source::copy_out(
            src,
            &format!(
                "select id, chama_id, joined_at from public.chama_members where id in ({})",
                list(&members)
            ),
        )
        .await?;
        let mut present = std::collections::HashSet::new();
        for f in found {
            let field = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
            let id: i64 = field(0).parse().unwrap_or_default();
            present.insert(id);
            let chama_exists = field(1)
                .parse::<Uuid>()
                .is_ok_and(|c| cx.chama_ids.contains(&c));
            if !chama_exists {
                refs.unmoved.insert(
                    ("chama_members", id),
                    "quarantined: chama does not exist (hard-deleted in legacy)".into(),
                );
            } else if let Err(why) = crate::clean::nairobi_to_utc(&field(2)) {
                refs.unmoved
                    .insert(("chama_members", id), format!("quarantined: {why}"));
            }
        }
        for id in members.iter().filter(|id| !present.contains(*id)) {
            refs.unmoved
                .insert(("chama_members", *id), "no such row in legacy".into());
        }
    }
    let notes = ids("notifications");
    if !notes.is_empty() {
        let present: std::collections::HashSet<i64> = source::copy_out(
            src,
            &format!(
                "select id from public.notifications where id in ({})",
                list(&notes)
            ),
        )
        .await?
        .into_iter()
        .filter_map(|f| f.first()?.as_deref()?.parse().ok())
        .collect();
        for id in notes.iter().filter(|id| !present.contains(*id)) {
            refs.unmoved
                .insert(("notifications", *id), "no such row in legacy".into());
        }
    }
    Ok(refs)
}

/// A key as an SQL literal (keys are uuids and integers we produced, but quote anyway).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The legacy row types readable by key.
pub trait LegacyRow: Sized {
    const TABLE: &'static str;
    fn select_list() -> String;
    fn from_fields(fields: crate::pgtext::Fields) -> Self;
}

macro_rules! legacy_readable {
    ($($t:ty),*) => {$(
        impl LegacyRow for $t {
            const TABLE: &'static str = <$t>::TABLE;
            fn select_list() -> String { <$t>::select_list() }
            fn from_fields(fields: crate::pgtext::Fields) -> Self { <$t>::from_fields(fields) }
        }
    )*};
}
legacy_readable!(Meeting, Device, Disbursement, Notification, AuditLog);

/// Checks the source is the legacy schema: every legacy table with the columns we read.
pub async fn check_legacy_shape(src: &mut PgConnection) -> anyhow::Result<()> {
    let expected: &[(&str, &[&str])] = &[
        ("users", model::User::COLUMNS),
        ("user_devices", model::Device::COLUMNS),
        ("chamas", model::Chama::COLUMNS),
        ("chama_members", model::Member::COLUMNS),
        ("transactions", model::Transaction::COLUMNS),
        ("disbursement_requests", model::Disbursement::COLUMNS),
        ("meetings", model::Meeting::COLUMNS),
        ("notifications", model::Notification::COLUMNS),
        ("audit_logs", model::AuditLog::COLUMNS),
        ("user_sessions", &["id", "user_id"]),
        ("ussd_sessions", &["id", "session_id"]),
    ];
    let found: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, column_name::text from information_schema.columns where table_schema = 'public'",
    )
    .fetch_all(&mut *src)
    .await
    .context("reading the source's schema")?;
    let mut missing = Vec::new();
    for (table, columns) in expected {
        for column in *columns {
            if !found.iter().any(|(t, c)| t == table && c == column) {
                missing.push(format!("{table}.{column}"));
            }
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "the source is not the legacy PesaChama v1 schema: missing {} (first: {})",
            missing.len(),
            missing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_comes_once_and_after_the_steps_it_needs() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(STEPS.iter().filter(|s| *s == step).count(), 1, "{step:?}");
            for need in step.needs() {
                let at = STEPS.iter().position(|s| s == need).unwrap_or(usize::MAX);
                assert!(at < i, "{step:?} needs {need:?}, which comes after it");
            }
        }
        assert_eq!(STEPS.len(), 9);
    }

    #[test]
    fn the_ledger_halves_cover_every_chama_once() {
        let halves = Step::Ledger.parts();
        assert_eq!(halves.len(), 2);
        // A chama id is in the first half while below the split, in the second from it.
        let first = |id: &str| halves[0].until.is_some_and(|until| id < until);
        let second = |id: &str| halves[1].after.is_some_and(|after| id > after);
        for id in [
            "00000000-0000-4000-8000-000000000000",
            "7fffffff-ffff-4fff-bfff-ffffffffffff",
            LEDGER_SPLIT,
            "80000000-0000-4000-8000-000000000001",
            "ffffffff-ffff-4fff-bfff-ffffffffffff",
        ] {
            assert!(first(id) != second(id), "{id} in exactly one half");
        }
    }
}
