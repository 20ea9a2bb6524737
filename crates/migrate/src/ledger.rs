//! A chama's legacy money history as balanced journals.
//!
//! Legacy kept `transactions` rows and a `chamas.balance` maintained by read-then-write; the
//! target keeps a double-entry ledger whose cash account *is* the balance. So every completed
//! legacy row becomes a journal (cash against the member's equity, the chama's equity, fees or
//! disbursements), refunds written as negative contributions (2019-2020) or as `reversal` rows
//! become reversals of the contribution they undo, duplicates of one M-Pesa receipt are kept
//! but not counted, zero amounts cannot move. A chama's balance is the sum of its migrated
//! money events: the running balance may dip below zero on the way (legacy allowed it), and
//! nothing is posted for that. Only where the whole migrated history ends below zero (the
//! target cannot hold a negative balance) is an opening balance posted, for exactly the
//! shortfall, naming the legacy rows it stands for. What legacy's stored balance says is
//! compared and reported as drift per chama with its causes and amounts, never copied.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::batch::{Batch, Update};
use crate::clean;
use crate::ids;
use crate::model::{Transaction, text};
use crate::pgtext::some;
use crate::target::{self, Issue};

const TABLE: &str = Transaction::TABLE;

/// A journal's legs: account kind, member (for equity), signed amount.
type Legs = Vec<(&'static str, Option<Uuid>, i64)>;

/// A legacy row with an M-Pesa receipt, as a receipt conflict quotes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegacyPayment {
    pub id: i64,
    pub chama_id: String,
    /// KES, as legacy stored it.
    pub amount: String,
    /// The checkout id (CheckoutRequestID) or manual reference.
    pub reference: Option<String>,
}

/// Two legacy rows with one receipt whose amount or checkout id differ: not a double callback.
/// The first keeps the receipt and counts; the duplicate is kept as cancelled, for review.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptConflict {
    pub receipt: String,
    pub first: LegacyPayment,
    pub duplicate: LegacyPayment,
}

/// One reason legacy's balance and the migrated one differ: legacy minus migrated, in cents,
/// and the legacy rows behind it (none for the stored balance's own drift).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cause {
    pub cause: String,
    pub amount: i64,
    pub legacy_rows: Vec<i64>,
}

/// What one chama's legacy balance says against what its migrated ledger says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub chama_id: Uuid,
    /// `chamas.balance` in legacy, in cents.
    pub legacy_balance: i64,
    /// The signed sum of legacy's completed (and reversed) rows, duplicates included.
    pub legacy_sum: i64,
    /// The migrated cash balance: the sum of the migrated transactions.
    pub migrated_balance: i64,
    /// The opening balance posted (0 when none was needed).
    pub opening_balance: i64,
    /// Why `legacy_balance` and `migrated_balance` differ; the amounts add up to the difference.
    pub causes: Vec<Cause>,
}

impl Drift {
    pub fn drifted(&self) -> bool {
        self.legacy_balance != self.migrated_balance
    }
}

/// The chama the history belongs to, and what the history needs from the rest of legacy.
#[derive(Debug)]
pub struct ChamaBooks<'a> {
    pub chama_id: Uuid,
    /// The chama's `created_at` in UTC.
    pub created_at: &'a str,
    pub legacy_balance_cents: i64,
    /// Users with a migrated membership of this chama.
    pub members: &'a [Uuid],
    /// Legacy transaction ids that repeat an earlier row's M-Pesa receipt.
    pub duplicate_receipts: &'a HashSet<i64>,
    /// Those of them whose amount or checkout id differ from the first row's.
    pub receipt_conflicts: &'a HashMap<i64, ReceiptConflict>,
}

/// A legacy row after cleaning, before posting.
#[derive(Debug, Clone)]
struct Tx {
    legacy: i64,
    id: Uuid,
    user: Option<Uuid>,
    kind: &'static str,
    amount: i64,
    status: &'static str,
    method: Option<&'static str>,
    reference: Option<String>,
    receipt: Option<String>,
    phone: Option<String>,
    description: Option<String>,
    metadata: Value,
    created: String,
    updated: String,
    reverses: Option<usize>,
    reason: Option<String>,
    /// Why this row's money counts differently than in legacy (for the drift report).
    cause: Option<&'static str>,
}

const DUPLICATE: &str = "duplicate M-Pesa callback: legacy counted it twice";
const CONFLICT: &str = "conflicting duplicate receipt: counted once (review)";
const REVERSED_ALONE: &str = "marked reversed without a reversal row: legacy counted it";

/// Legacy's own sign of a row in its balance.
fn legacy_sign(kind: &str) -> i64 {
    match kind {
        "contribution" | "loan_repayment" | "fine" | "interest" => 1,
        _ => -1,
    }
}

fn posted(status: &str) -> bool {
    status == "completed" || status == "reversed"
}

/// Cleans one legacy row; `Err` is the reason it cannot move.
fn clean_row(row: &Transaction, books: &ChamaBooks<'_>, out: &mut Batch) -> Result<Tx, String> {
    let legacy: i64 = text(&row.id)
        .parse()
        .map_err(|_| "id is not a number".to_owned())?;
    let kind = clean::transaction_type(text(&row.kind))
        .ok_or_else(|| format!("unknown transaction type {:?}", text(&row.kind)))?;
    let status = clean::transaction_status(text(&row.status))
        .ok_or_else(|| format!("unknown transaction status {:?}", text(&row.status)))?;
    let amount = clean::kes_to_cents(text(&row.amount))?;
    if amount == 0 {
        return Err("amount 0 moves no money".into());
    }
    if amount < 0 && kind != "contribution" {
        return Err(format!("negative amount on a {kind}"));
    }
    let created = clean::nairobi_to_utc(text(&row.created_at))?;
    let (updated, clock) =
        clean::updated_not_before_created(&created, &clean::nairobi_to_utc(text(&row.updated_at))?);
    if clock {
        out.issue(Issue::fixed(
            TABLE,
            legacy,
            "updated_at before created_at: set to created_at",
        ));
    }
    let mut metadata = match row.metadata.as_deref().map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(Value::Object(map))) => Value::Object(map),
        Some(Ok(other)) => json!({ "legacy": other }),
        Some(Err(_)) => json!({ "legacy_text": text(&row.metadata) }),
    };
    let mut status = status;
    let mut receipt = row.mpesa_receipt.as_deref().and_then(|r| {
        let cleaned = clean::mpesa_receipt(r);
        if cleaned.is_none() {
            metadata["legacy_mpesa_receipt"] = json!(r);
            out.issue(Issue::fixed(
                TABLE,
                legacy,
                "malformed M-Pesa receipt kept in metadata",
            ));
        }
        cleaned
    });
    let mut cause = None;
    if books.duplicate_receipts.contains(&legacy) {
        metadata["duplicate_of_receipt"] = json!(receipt.take().or(row.mpesa_receipt.clone()));
        if posted(status) {
            status = "cancelled";
        }
        match books.receipt_conflicts.get(&legacy) {
            Some(conflict) => {
                cause = Some(CONFLICT);
                metadata["conflicts_with_legacy_transaction"] = json!(conflict.first.id);
                let quote = |p: &LegacyPayment| {
                    format!(
                        "row {} (chama {}, KES {}, checkout {})",
                        p.id,
                        p.chama_id,
                        p.amount,
                        p.reference.as_deref().unwrap_or("none")
                    )
                };
                out.issue(
                    Issue::fixed(
                        TABLE,
                        legacy,
                        "conflicting duplicate receipt (different amount or checkout id): kept as cancelled, not counted (review)",
                    )
                    .with_detail(format!(
                        "receipt {}: {} keeps it and counts; {} differs from it and is kept as cancelled",
                        conflict.receipt,
                        quote(&conflict.first),
                        quote(&conflict.duplicate)
                    )),
                );
            }
            None => {
                cause = Some(DUPLICATE);
                out.issue(Issue::fixed(
                    TABLE,
                    legacy,
                    "duplicate M-Pesa callback: kept as cancelled, not counted",
                ));
            }
        }
    }
    let phone = row.phone.as_deref().and_then(|p| {
        let parsed = clean::phone(p).map(|p| p.as_e164().to_owned());
        if parsed.is_none() {
            out.issue(Issue::fixed(
                TABLE,
                legacy,
                "transaction phone malformed: dropped",
            ));
        }
        parsed
    });
    let method = row
        .payment_method
        .as_deref()
        .and_then(clean::payment_method);
    Ok(Tx {
        legacy,
        id: ids::legacy("transactions", legacy),
        user: row.user_id.as_deref().and_then(|u| u.parse().ok()),
        kind,
        amount,
        status,
        method,
        reference: row.reference.clone(),
        receipt,
        phone,
        description: row.description.clone(),
        metadata,
        created,
        updated,
        reverses: None,
        reason: None,
        cause,
    })
}

/// Whether a legacy row moves at all (the rules `clean_row` rejects by), for references to it.
pub fn moves(row: &Transaction) -> bool {
    rejection(row).is_none()
}

/// Why a legacy row does not move (the rules `clean_row` rejects by, in its words), or `None`.
pub fn rejection(row: &Transaction) -> Option<String> {
    if text(&row.id).parse::<i64>().is_err() {
        return Some("id is not a number".into());
    }
    let Some(kind) = clean::transaction_type(text(&row.kind)) else {
        return Some(format!("unknown transaction type {:?}", text(&row.kind)));
    };
    if clean::transaction_status(text(&row.status)).is_none() {
        return Some(format!(
            "unknown transaction status {:?}",
            text(&row.status)
        ));
    }
    let amount = match clean::kes_to_cents(text(&row.amount)) {
        Ok(amount) => amount,
        Err(reason) => return Some(reason),
    };
    if amount == 0 {
        return Some("amount 0 moves no money".into());
    }
    if amount < 0 && kind != "contribution" {
        return Some(format!("negative amount on a {kind}"));
    }
    clean::nairobi_to_utc(text(&row.created_at))
        .and(clean::nairobi_to_utc(text(&row.updated_at)))
        .err()
}

/// Pairs refunds with what they refund: the latest earlier posted row of the same member and
/// amount (same reference first) that nothing has reversed yet.
fn pair_reversals(txs: &mut [Tx], out: &mut Batch) {
    let mut reversed: HashSet<usize> = HashSet::new();
    for i in 0..txs.len() {
        let negative = txs[i].kind == "contribution" && txs[i].amount < 0;
        let reversal = txs[i].kind == "reversal";
        if !negative && !reversal {
            continue;
        }
        let amount = txs[i].amount.abs();
        txs[i].amount = amount;
        if !posted(txs[i].status) {
            txs[i].kind = if reversal {
                "withdrawal"
            } else {
                "contribution"
            };
            out.issue(Issue::fixed(
                TABLE,
                txs[i].legacy,
                "refund that never completed: kept, not counted",
            ));
            continue;
        }
        let candidates = (0..i).rev().filter(|&j| {
            !reversed.contains(&j)
                && posted(txs[j].status)
                && txs[j].kind != "reversal"
                && txs[j].reverses.is_none()
                && txs[j].user == txs[i].user
                && txs[j].amount == amount
                && (reversal || txs[j].kind == "contribution")
        });
        let candidates: Vec<usize> = candidates.collect();
        let by_reference = candidates
            .iter()
            .copied()
            .find(|&j| txs[j].reference.is_some() && txs[j].reference == txs[i].reference);
        match by_reference.or_else(|| candidates.first().copied()) {
            Some(j) => {
                reversed.insert(j);
                txs[j].status = "reversed";
                txs[i].kind = "reversal";
                txs[i].reverses = Some(j);
                txs[i].reason = Some(if negative {
                    "legacy refund written as a negative contribution".into()
                } else {
                    txs[i]
                        .description
                        .clone()
                        .unwrap_or_else(|| "legacy reversal".into())
                });
                if negative {
                    out.issue(Issue::fixed(
                        TABLE,
                        txs[i].legacy,
                        "negative contribution: migrated as a reversal",
                    ));
                }
            }
            None => {
                txs[i].kind = "withdrawal";
                out.issue(Issue::fixed(
                    TABLE,
                    txs[i].legacy,
                    "refund without the row it refunds: migrated as a withdrawal to the member",
                ));
            }
        }
    }
    // A legacy `reversed` row that no reversal undoes moved no money in the end.
    for (j, tx) in txs.iter_mut().enumerate() {
        if tx.status == "reversed" && !reversed.contains(&j) {
            tx.status = "cancelled";
            tx.cause = Some(REVERSED_ALONE);
            out.issue(Issue::fixed(
                TABLE,
                tx.legacy,
                "marked reversed without a reversal row: kept as cancelled",
            ));
        }
    }
}

/// The accounts and signed amounts of a row's journal, and the journal's kind.
fn legs(tx: &Tx, is_member: bool) -> (&'static str, Legs) {
    let a = tx.amount;
    let member = tx.user.filter(|_| is_member);
    match (tx.kind, member) {
        ("contribution", Some(u)) => (
            "contribution",
            vec![("cash", None, a), ("member_equity", Some(u), -a)],
        ),
        ("contribution", None) => (
            "contribution",
            vec![("cash", None, a), ("chama_equity", None, -a)],
        ),
        ("withdrawal", Some(u)) => (
            "disbursement",
            vec![("cash", None, -a), ("member_equity", Some(u), a)],
        ),
        ("withdrawal" | "disbursement", _) => (
            "disbursement",
            vec![("cash", None, -a), ("disbursements", None, a)],
        ),
        ("loan", _) => ("loan", vec![("cash", None, -a), ("disbursements", None, a)]),
        ("dividend", _) => (
            "dividend",
            vec![("cash", None, -a), ("disbursements", None, a)],
        ),
        ("fee", _) => ("fee", vec![("cash", None, -a), ("fees", None, a)]),
        ("loan_repayment", _) => (
            "loan_repayment",
            vec![("cash", None, a), ("chama_equity", None, -a)],
        ),
        ("fine", _) => ("fine", vec![("cash", None, a), ("chama_equity", None, -a)]),
        _ => (
            "interest",
            vec![("cash", None, a), ("chama_equity", None, -a)],
        ),
    }
}

/// Builds a chama's books from its legacy rows (ordered by created_at, id).
pub fn build(books: &ChamaBooks<'_>, rows: &[Transaction], out: &mut Batch) -> Drift {
    let members: HashSet<Uuid> = books.members.iter().copied().collect();
    let mut legacy_sum = 0i64;
    // Each legacy row's effect on legacy's balance, and why a row that did not move did not.
    let mut legacy_effect: Vec<(i64, i64)> = Vec::with_capacity(rows.len());
    let mut not_moved: HashMap<i64, String> = HashMap::new();
    let mut txs = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = text(&row.id).parse().unwrap_or_default();
        if let (Some(kind), Some(status), Ok(amount)) = (
            clean::transaction_type(text(&row.kind)),
            clean::transaction_status(text(&row.status)),
            clean::kes_to_cents(text(&row.amount)),
        ) && posted(status)
        {
            let effect = if kind == "contribution" {
                amount
            } else {
                legacy_sign(kind) * amount
            };
            legacy_sum += effect;
            legacy_effect.push((id, effect));
        }
        match clean_row(row, books, out) {
            Ok(tx) => txs.push(tx),
            Err(reason) => {
                not_moved.insert(id, reason.clone());
                out.issue(Issue::rejected(TABLE, text(&row.id), reason));
            }
        }
    }
    pair_reversals(&mut txs, out);

    // Journals in history order; a reversal's legs are its original's, negated.
    let mut journal_legs: Vec<Option<(&'static str, Legs)>> = Vec::with_capacity(txs.len());
    let mut running = 0i64;
    for tx in &txs {
        let entry = if !posted(tx.status) {
            None
        } else if let Some(j) = tx.reverses {
            journal_legs[j].clone().map(|(_, legs)| {
                (
                    "reversal",
                    legs.into_iter()
                        .map(|(k, u, a)| (k, u, -a))
                        .collect::<Vec<_>>(),
                )
            })
        } else {
            Some(legs(tx, tx.user.is_some_and(|u| members.contains(&u))))
        };
        if let Some((_, legs)) = &entry {
            running += legs
                .iter()
                .filter(|(k, _, _)| *k == "cash")
                .map(|(_, _, a)| a)
                .sum::<i64>();
        }
        journal_legs.push(entry);
    }

    let mut balances: HashMap<(&'static str, Option<Uuid>), i64> = HashMap::new();
    balances.insert(("cash", None), 0);
    for user in books.members {
        balances.insert(("member_equity", Some(*user)), 0);
    }
    let chama = books.chama_id;
    let mut post = |out: &mut Batch,
                    journal: Uuid,
                    kind: &str,
                    memo: &str,
                    reverses: Option<Uuid>,
                    at: &str,
                    legs: &[(&'static str, Option<Uuid>, i64)]| {
        out.push(
            target::JOURNALS,
            vec![
                some(journal),
                some(chama),
                some(kind),
                some(memo),
                reverses.map(|r| r.to_string()),
                None,
                some(at),
            ],
        );
        for (kind, user, amount) in legs {
            *balances.entry((kind, *user)).or_default() += amount;
            out.push(
                target::POSTINGS,
                vec![
                    some(journal),
                    some(ids::account(chama, kind, *user)),
                    some(amount),
                ],
            );
        }
    };

    // Each migrated row's effect on the cash, by legacy id.
    let mut migrated_effect: HashMap<i64, i64> = HashMap::with_capacity(txs.len());
    for (tx, entry) in txs.iter().zip(&journal_legs) {
        let cash = entry.as_ref().map_or(0, |(_, legs)| {
            legs.iter()
                .filter(|(k, _, _)| *k == "cash")
                .map(|(_, _, a)| a)
                .sum::<i64>()
        });
        migrated_effect.insert(tx.legacy, cash);
    }
    // Why legacy's balance and the migrated one differ, row by row, grouped by cause.
    let causes_of: HashMap<i64, &'static str> = txs
        .iter()
        .filter_map(|t| t.cause.map(|c| (t.legacy, c)))
        .collect();
    let mut causes: Vec<Cause> = Vec::new();
    let mut add = |cause: String, amount: i64, row: Option<i64>| {
        if amount == 0 {
            return;
        }
        let at = match causes.iter().position(|c| c.cause == cause) {
            Some(at) => at,
            None => {
                causes.push(Cause {
                    cause,
                    amount: 0,
                    legacy_rows: Vec::new(),
                });
                causes.len() - 1
            }
        };
        causes[at].amount += amount;
        causes[at].legacy_rows.extend(row);
    };
    add(
        "legacy's stored balance differs from its own sum of completed rows (read-then-write drift)".into(),
        books.legacy_balance_cents - legacy_sum,
        None,
    );
    let mut not_counted: Vec<i64> = Vec::new();
    for (id, effect) in &legacy_effect {
        let migrated = migrated_effect.get(id).copied().unwrap_or(0);
        let difference = effect - migrated;
        if difference == 0 {
            continue;
        }
        if difference > 0 {
            not_counted.push(*id);
        }
        let cause = match (not_moved.get(id), causes_of.get(id)) {
            (Some(reason), _) => format!("did not move ({reason}): legacy counted it"),
            (None, Some(cause)) => (*cause).to_owned(),
            (None, None) => "counted with another sign than legacy's (a reversal of a payout, or a refund without its row)".to_owned(),
        };
        add(cause, difference, Some(*id));
    }

    // The balance is the sum of the migrated events; only a history that ends below zero
    // (which the target cannot hold) gets an opening balance, for exactly the shortfall.
    let opening = -running;
    if opening > 0 {
        // The payouts the recorded money does not cover: those after the running balance was
        // last at or above zero.
        let mut uncovered: Vec<i64> = Vec::new();
        let mut balance = 0i64;
        for (tx, entry) in txs.iter().zip(&journal_legs) {
            let cash = migrated_effect.get(&tx.legacy).copied().unwrap_or(0);
            if entry.is_none() || cash == 0 {
                continue;
            }
            balance += cash;
            if balance >= 0 {
                uncovered.clear();
            } else if cash < 0 {
                uncovered.push(tx.legacy);
            }
        }
        add(
            "opening balance: the migrated history ends below zero".into(),
            -opening,
            None,
        );
        let at = match txs.first() {
            Some(first) if first.created.as_str() < books.created_at => first.created.clone(),
            _ => books.created_at.to_owned(),
        };
        let journal = ids::derived(&format!("journal:opening_balance:{chama}"));
        let memo = "opening balance: the migrated legacy history ends below zero";
        post(
            out,
            journal,
            "opening_balance",
            memo,
            None,
            &at,
            &[("cash", None, opening), ("chama_equity", None, -opening)],
        );
        let stands_for = json!({
            "migration": "opening_balance",
            "cause": "the migrated legacy history ends below zero",
            "legacy_rows_counted_by_legacy_not_migrated": not_counted,
            "legacy_payouts_not_covered": uncovered,
        });
        out.push(
            target::TRANSACTIONS,
            vec![
                some(ids::derived(&format!("opening_balance:{chama}"))),
                some(chama),
                None,
                some("opening_balance"),
                some(opening),
                some("completed"),
                some("internal"),
                None,
                None,
                None,
                some(memo),
                some(journal),
                None,
                None,
                some(&stands_for),
                None,
                some(&at),
                some(&at),
            ],
        );
        out.issue(
            Issue::fixed(
                TABLE,
                chama,
                "opening balance posted: the migrated history ends below zero (review)",
            )
            .with_detail(format!(
                "{} cents, standing for the legacy rows legacy counted that did not move as money {:?} and covering the payouts {:?}",
                opening, not_counted, uncovered
            )),
        );
    }

    for (i, tx) in txs.iter().enumerate() {
        let journal = journal_legs[i].as_ref().map(|(kind, legs)| {
            let journal = ids::derived(&format!("journal:transactions:{}", tx.legacy));
            let reverses = tx
                .reverses
                .map(|j| ids::derived(&format!("journal:transactions:{}", txs[j].legacy)));
            let memo = tx.description.clone().unwrap_or_else(|| tx.kind.to_owned());
            post(out, journal, kind, &memo, reverses, &tx.created, legs);
            journal
        });
        out.push(
            target::TRANSACTIONS,
            vec![
                some(tx.id),
                some(chama),
                tx.user.map(|u| u.to_string()),
                some(tx.kind),
                some(tx.amount),
                some(tx.status),
                tx.method.map(str::to_owned),
                tx.reference.clone(),
                tx.receipt.clone(),
                tx.phone.clone(),
                tx.description.clone(),
                journal.map(|j| j.to_string()),
                tx.reverses.map(|j| txs[j].id.to_string()),
                tx.reason.clone(),
                some(&tx.metadata),
                some(tx.legacy),
                some(&tx.created),
                some(&tx.updated),
            ],
        );
    }

    let mut accounts: Vec<_> = balances.into_iter().collect();
    accounts.sort_by_key(|((kind, user), _)| (*kind, *user));
    let mut cash = 0;
    for ((kind, user), balance) in accounts {
        if kind == "cash" {
            cash = balance;
            out.updates.push(Update::ChamaBalance { chama, balance });
        }
        // Every member's total, zero included: a sync re-derives books that may have gone down.
        if let Some(user) = user {
            out.updates.push(Update::MemberTotal {
                chama,
                user,
                total: -balance,
            });
        }
        out.push(
            target::ACCOUNTS,
            vec![
                some(ids::account(chama, kind, user)),
                some(chama),
                some(kind),
                user.map(|u| u.to_string()),
                some(balance),
                some(books.created_at),
            ],
        );
    }
    Drift {
        chama_id: chama,
        legacy_balance: books.legacy_balance_cents,
        legacy_sum,
        migrated_balance: cash,
        opening_balance: opening.max(0),
        causes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: i64, user: Uuid, kind: &str, amount: &str, status: &str, at: &str) -> Transaction {
        Transaction {
            id: Some(id.to_string()),
            chama_id: Some(Uuid::from_u128(9).to_string()),
            user_id: Some(user.to_string()),
            kind: Some(kind.into()),
            amount: Some(amount.into()),
            status: Some(status.into()),
            created_at: Some(at.into()),
            updated_at: Some(at.into()),
            ..Transaction::default()
        }
    }

    fn sum_postings(out: &Batch) -> i64 {
        out.rows_of(&target::POSTINGS)
            .iter()
            .map(|p| p[2].as_deref().unwrap().parse::<i64>().unwrap())
            .sum()
    }

    fn books<'a>(members: &'a [Uuid], dups: &'a HashSet<i64>) -> ChamaBooks<'a> {
        static NO_CONFLICTS: std::sync::LazyLock<HashMap<i64, ReceiptConflict>> =
            std::sync::LazyLock::new(HashMap::new);
        ChamaBooks {
            chama_id: Uuid::from_u128(9),
            created_at: "2019-01-01 00:00:00.000000+00",
            legacy_balance_cents: 123_400,
            members,
            duplicate_receipts: dups,
            receipt_conflicts: &NO_CONFLICTS,
        }
    }

    /// The causes of a drift add up to exactly the difference between the two balances.
    fn causes_add_up(drift: &Drift) {
        assert_eq!(
            drift.causes.iter().map(|c| c.amount).sum::<i64>(),
            drift.legacy_balance - drift.migrated_balance,
            "{drift:#?}"
        );
    }

    #[test]
    fn negative_contributions_become_reversals_and_the_books_balance() {
        let u = Uuid::from_u128(1);
        let dups = HashSet::new();
        let rows = vec![
            tx(
                1,
                u,
                "contribution",
                "1000.00",
                "completed",
                "2019-05-01 10:00:00",
            ),
            tx(
                2,
                u,
                "Contribution",
                "500.00",
                "COMPLETED",
                "2019-05-02 10:00:00",
            ),
            tx(
                3,
                u,
                "contribution",
                "-500.00",
                "completed",
                "2019-05-03 10:00:00",
            ),
        ];
        let mut out = Batch::default();
        let drift = build(&books(&[u], &dups), &rows, &mut out);
        assert_eq!(drift.migrated_balance, 100_000);
        assert_eq!(drift.legacy_sum, 100_000);
        assert!(drift.drifted(), "legacy said 1234.00");
        assert_eq!(sum_postings(&out), 0, "every journal balances");
        let txs = out.rows_of(&target::TRANSACTIONS);
        assert_eq!(txs[1][5].as_deref(), Some("reversed"));
        assert_eq!(txs[2][3].as_deref(), Some("reversal"));
        assert_eq!(txs[2][4].as_deref(), Some("50000"), "positive cents");
        assert_eq!(txs[2][12], txs[1][0], "names what it reverses");
        assert!(out.updates.contains(&Update::MemberTotal {
            chama: Uuid::from_u128(9),
            user: u,
            total: 100_000
        }));
    }

    #[test]
    fn zero_amounts_are_rejected_and_duplicate_receipts_not_counted() {
        let u = Uuid::from_u128(1);
        let dups: HashSet<i64> = [2].into();
        let mut first = tx(
            1,
            u,
            "contribution",
            "300.00",
            "completed",
            "2022-01-01 10:00:00",
        );
        first.mpesa_receipt = Some("QAB1234567".into());
        let mut dup = first.clone();
        dup.id = Some("2".into());
        let rows = vec![
            first,
            dup,
            tx(
                3,
                u,
                "contribution",
                "0.00",
                "completed",
                "2022-01-02 10:00:00",
            ),
        ];
        let mut out = Batch::default();
        let drift = build(&books(&[u], &dups), &rows, &mut out);
        assert_eq!(drift.migrated_balance, 30_000);
        assert_eq!(drift.legacy_sum, 60_000, "legacy counted the duplicate");
        assert!(
            out.issues
                .iter()
                .any(|i| i.legacy_id == "3" && i.severity == crate::target::Severity::Rejected)
        );
        let txs = out.rows_of(&target::TRANSACTIONS);
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[1][5].as_deref(), Some("cancelled"));
        assert_eq!(txs[1][8], None, "the receipt stays unique");
    }

    #[test]
    fn a_history_that_dips_below_zero_gets_no_opening_balance() {
        let u = Uuid::from_u128(1);
        let dups = HashSet::new();
        let rows = vec![
            tx(
                1,
                u,
                "disbursement",
                "700.00",
                "completed",
                "2020-01-01 10:00:00",
            ),
            tx(
                2,
                u,
                "contribution",
                "1000.00",
                "completed",
                "2020-02-01 10:00:00",
            ),
        ];
        let mut out = Batch::default();
        let members = [u];
        let mut b = books(&members, &dups);
        b.legacy_balance_cents = 30_000;
        let drift = build(&b, &rows, &mut out);
        assert_eq!(drift.opening_balance, 0);
        assert_eq!(drift.migrated_balance, 30_000, "-700 + 1000");
        assert!(!drift.drifted(), "legacy's balance is its own sum");
        assert!(drift.causes.is_empty(), "{:?}", drift.causes);
        assert!(
            out.rows_of(&target::TRANSACTIONS)
                .iter()
                .all(|t| t[3].as_deref() != Some("opening_balance"))
        );
        assert_eq!(sum_postings(&out), 0);
    }

    #[test]
    fn drift_is_reported_with_its_causes_and_amounts() {
        let u = Uuid::from_u128(1);
        let dups: HashSet<i64> = [2].into();
        let mut first = tx(
            1,
            u,
            "contribution",
            "300.00",
            "completed",
            "2022-01-01 10:00:00",
        );
        first.mpesa_receipt = Some("QAB1234567".into());
        let mut dup = first.clone();
        dup.id = Some("2".into());
        let rows = vec![
            first,
            dup,
            tx(3, u, "fine", "0.00", "completed", "2022-01-02 10:00:00"),
            tx(4, u, "BONUS", "50.00", "completed", "2022-01-03 10:00:00"),
        ];
        let mut out = Batch::default();
        let members = [u];
        let mut b = books(&members, &dups);
        b.legacy_balance_cents = 70_000;
        let drift = build(&b, &rows, &mut out);
        assert_eq!(drift.migrated_balance, 30_000);
        assert_eq!(drift.opening_balance, 0);
        causes_add_up(&drift);
        let cause = |text: &str| {
            drift
                .causes
                .iter()
                .find(|c| c.cause.contains(text))
                .unwrap_or_else(|| panic!("no cause {text:?}: {:#?}", drift.causes))
        };
        assert_eq!(cause("duplicate M-Pesa callback").amount, 30_000);
        assert_eq!(cause("duplicate M-Pesa callback").legacy_rows, [2]);
        assert_eq!(cause("read-then-write").amount, 10_000, "700 - 600");
    }

    #[test]
    fn only_a_history_that_ends_below_zero_gets_an_opening_balance_naming_its_rows() {
        let u = Uuid::from_u128(1);
        let dups = HashSet::new();
        let rows = vec![
            tx(
                1,
                u,
                "contribution",
                "100.00",
                "completed",
                "2020-01-01 10:00:00",
            ),
            tx(
                2,
                u,
                "disbursement",
                "700.00",
                "completed",
                "2020-02-01 10:00:00",
            ),
        ];
        let mut out = Batch::default();
        let members = [u];
        let mut b = books(&members, &dups);
        b.legacy_balance_cents = -60_000;
        let drift = build(&b, &rows, &mut out);
        assert_eq!(drift.opening_balance, 60_000);
        assert_eq!(drift.migrated_balance, 0, "never below zero");
        causes_add_up(&drift);
        let opening = out
            .rows_of(&target::TRANSACTIONS)
            .iter()
            .find(|t| t[3].as_deref() == Some("opening_balance"))
            .unwrap();
        let metadata: Value = serde_json::from_str(opening[14].as_deref().unwrap()).unwrap();
        assert_eq!(metadata["legacy_payouts_not_covered"], json!([2]));
        assert!(
            out.issues
                .iter()
                .any(|i| i.for_review() && i.detail.as_deref().is_some_and(|d| d.contains("[2]")))
        );
        assert_eq!(sum_postings(&out), 0);
    }
}
