//! A chama's legacy money history as balanced journals.
//!
//! Legacy kept `transactions` rows and a `chamas.balance` maintained by read-then-write; the
//! target keeps a double-entry ledger whose cash account *is* the balance. So every completed
//! legacy row becomes a journal (cash against the member's equity, the chama's equity, fees or
//! disbursements), refunds written as negative contributions (2019-2020) or as `reversal` rows
//! become reversals of the contribution they undo, duplicates of one M-Pesa receipt are kept
//! but not counted, zero amounts cannot move. Where the migrated history would take the cash
//! below zero (money that came in before the legacy system's records start), an opening
//! balance is posted first, so the chama's balance equals the sum of its migrated transactions.
//! What legacy's stored balance says is compared and reported as drift, never copied.

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
}

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
    if books.duplicate_receipts.contains(&legacy) {
        metadata["duplicate_of_receipt"] = json!(receipt.take().or(row.mpesa_receipt.clone()));
        if posted(status) {
            status = "cancelled";
        }
        out.issue(Issue::fixed(
            TABLE,
            legacy,
            "duplicate M-Pesa callback: kept as cancelled, not counted",
        ));
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
    })
}

/// Whether a legacy row moves at all (the rules `clean_row` rejects by), for references to it.
pub fn moves(row: &Transaction) -> bool {
    let (Some(kind), Some(_), Ok(amount)) = (
        clean::transaction_type(text(&row.kind)),
        clean::transaction_status(text(&row.status)),
        clean::kes_to_cents(text(&row.amount)),
    ) else {
        return false;
    };
    amount != 0
        && (amount > 0 || kind == "contribution")
        && clean::nairobi_to_utc(text(&row.created_at)).is_ok()
        && clean::nairobi_to_utc(text(&row.updated_at)).is_ok()
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
    let mut txs = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(kind), Some(status), Ok(amount)) = (
            clean::transaction_type(text(&row.kind)),
            clean::transaction_status(text(&row.status)),
            clean::kes_to_cents(text(&row.amount)),
        ) && posted(status)
        {
            legacy_sum += if kind == "contribution" {
                amount
            } else {
                legacy_sign(kind) * amount
            };
        }
        match clean_row(row, books, out) {
            Ok(tx) => txs.push(tx),
            Err(reason) => out.issue(Issue::rejected(TABLE, text(&row.id), reason)),
        }
    }
    pair_reversals(&mut txs, out);

    // Journals in history order; a reversal's legs are its original's, negated.
    let mut journal_legs: Vec<Option<(&'static str, Legs)>> = Vec::with_capacity(txs.len());
    let (mut running, mut lowest) = (0i64, 0i64);
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
            lowest = lowest.min(running);
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

    let opening = -lowest;
    if opening > 0 {
        let at = match txs.first() {
            Some(first) if first.created.as_str() < books.created_at => first.created.clone(),
            _ => books.created_at.to_owned(),
        };
        let journal = ids::derived(&format!("journal:opening_balance:{chama}"));
        let memo = "opening balance: legacy history starts below zero";
        post(
            out,
            journal,
            "opening_balance",
            memo,
            None,
            &at,
            &[("cash", None, opening), ("chama_equity", None, -opening)],
        );
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
                some(json!({ "migration": "opening_balance" })),
                None,
                some(&at),
                some(&at),
            ],
        );
        out.issue(Issue::fixed(
            TABLE,
            chama,
            "opening balance posted: legacy history goes below zero",
        ));
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
        ChamaBooks {
            chama_id: Uuid::from_u128(9),
            created_at: "2019-01-01 00:00:00.000000+00",
            legacy_balance_cents: 123_400,
            members,
            duplicate_receipts: dups,
        }
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
    fn history_below_zero_gets_an_opening_balance() {
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
        let drift = build(&books(&[u], &dups), &rows, &mut out);
        assert_eq!(drift.opening_balance, 70_000);
        assert_eq!(drift.migrated_balance, 100_000, "700 opening - 700 + 1000");
        let sum: i64 = out
            .rows_of(&target::TRANSACTIONS)
            .iter()
            .map(|t| {
                let a: i64 = t[4].as_deref().unwrap().parse().unwrap();
                if matches!(t[3].as_deref(), Some("disbursement")) {
                    -a
                } else {
                    a
                }
            })
            .sum();
        assert_eq!(
            sum, drift.migrated_balance,
            "balance = sum of the migrated transactions"
        );
        assert_eq!(sum_postings(&out), 0);
    }
}
