//! The rules the target enforces (its constraints and `internal.integrity_report()`), checked
//! by `plan` on the transformed rows before anything is written, so that `verify` never meets
//! a surprise: each check has the name the integrity report gives it.
//!
//! Rows arrive batch by batch in step order (users and chamas before what refers to them, so
//! references are checked as they come); a ledger batch holds whole chamas, so its journals are
//! complete. What is kept across batches is small (ids of users and chamas, a 64-bit hash per
//! receipt), so `plan` runs at production size.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::batch::{Batch, Update};
use crate::pgtext::Fields;
use crate::target::{self, Table};

/// Violations of one rule: how many, and the first few keys.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violations {
    pub count: u64,
    pub sample: Vec<String>,
}

/// Every rule checked, with its violations (none when the rule holds).
pub const RULES: &[(&str, &str)] = &[
    (
        "one_chairperson",
        "every active chama has exactly one active chairperson",
    ),
    ("unique_live_emails", "no two live users share an email"),
    ("unique_live_phones", "no two live users share a phone"),
    (
        "positive_amounts",
        "every transaction and withdrawal request moves a positive amount",
    ),
    (
        "updated_after_created",
        "no row was updated before it was created",
    ),
    (
        "members_have_chama_and_user",
        "every membership points at an existing chama and user",
    ),
    (
        "transactions_have_chama_and_user",
        "every transaction points at an existing chama (and user, when it names one)",
    ),
    (
        "journals_balance",
        "every journal has two or more postings that sum to zero",
    ),
    (
        "balances_not_negative",
        "no chama's balance (its cash account) is below zero",
    ),
    (
        "unique_mpesa_receipts",
        "no M-Pesa receipt is counted twice",
    ),
];

/// What `plan` has seen of the transformed rows, and the rules they break.
#[derive(Debug, Default)]
pub struct Predictor {
    users: HashSet<String>,
    chamas: HashSet<String>,
    /// Active chamas, and the active chairpersons of each chama.
    active_chamas: Vec<String>,
    chairs: HashMap<String, u64>,
    live_emails: HashMap<String, u64>,
    live_phones: HashMap<String, u64>,
    /// A hash of every receipt seen (a collision would report a false duplicate once in
    /// about 10^12 at production size, never hide a real one).
    receipts: HashSet<u64>,
    pub violations: BTreeMap<&'static str, Violations>,
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

fn column(table: &Table, name: &str) -> usize {
    table
        .columns
        .iter()
        .position(|c| *c == name)
        .unwrap_or(usize::MAX)
}

fn get<'a>(row: &'a Fields, table: &Table, name: &str) -> Option<&'a str> {
    row.get(column(table, name))?.as_deref()
}

impl Predictor {
    fn violation(&mut self, rule: &'static str, key: impl Into<String>) {
        let v = self.violations.entry(rule).or_default();
        v.count += 1;
        if v.sample.len() < 5 {
            v.sample.push(key.into());
        }
    }

    /// Takes in one batch's rows.
    pub fn add(&mut self, batch: &Batch) {
        for (table, rows) in &batch.rows {
            for row in rows {
                self.row(table, row);
            }
        }
        // Journals are whole within a batch.
        let mut journals: HashMap<&str, (u64, i64)> = HashMap::new();
        for row in batch.rows_of(&target::JOURNALS) {
            if let Some(id) = get(row, &target::JOURNALS, "id") {
                journals.entry(id).or_default();
            }
        }
        for row in batch.rows_of(&target::POSTINGS) {
            let journal = get(row, &target::POSTINGS, "journal_id").unwrap_or_default();
            let amount: i64 = get(row, &target::POSTINGS, "amount")
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            let entry = journals.entry(journal).or_default();
            entry.0 += 1;
            entry.1 += amount;
        }
        let mut unbalanced: Vec<String> = journals
            .into_iter()
            .filter(|(_, (n, sum))| *n < 2 || *sum != 0)
            .map(|(id, _)| id.to_owned())
            .collect();
        unbalanced.sort();
        for id in unbalanced {
            self.violation("journals_balance", id);
        }
        for update in &batch.updates {
            if let Update::ChamaBalance { chama, balance } = update
                && *balance < 0
            {
                self.violation("balances_not_negative", chama.to_string());
            }
        }
    }

    fn row(&mut self, table: &Table, row: &Fields) {
        let id = get(row, table, "id").unwrap_or_default().to_owned();
        if let (Some(created), Some(updated)) =
            (get(row, table, "created_at"), get(row, table, "updated_at"))
            && updated < created
        {
            self.violation("updated_after_created", format!("{}/{id}", table.name));
        }
        match table.name {
            "public.users" => {
                self.users.insert(id.clone());
                if get(row, table, "deleted_at").is_none() {
                    if let Some(email) = get(row, table, "email") {
                        *self.live_emails.entry(email.to_owned()).or_default() += 1;
                    }
                    if let Some(phone) = get(row, table, "phone") {
                        *self.live_phones.entry(phone.to_owned()).or_default() += 1;
                    }
                }
            }
            "public.chamas" => {
                if get(row, table, "status") == Some("active") {
                    self.active_chamas.push(id.clone());
                }
                self.chamas.insert(id);
            }
            "public.chama_members" => {
                let chama = get(row, table, "chama_id").map(str::to_owned);
                if get(row, table, "role") == Some("chairperson")
                    && get(row, table, "status") == Some("active")
                    && let Some(chama) = &chama
                {
                    *self.chairs.entry(chama.clone()).or_default() += 1;
                }
                let user = get(row, table, "user_id");
                if !(chama.is_some_and(|c| self.chamas.contains(&c))
                    && user.is_some_and(|u| self.users.contains(u)))
                {
                    self.violation("members_have_chama_and_user", id);
                }
            }
            "public.transactions" => {
                if get(row, table, "amount")
                    .and_then(|a| a.parse::<i64>().ok())
                    .is_none_or(|a| a <= 0)
                {
                    self.violation("positive_amounts", id.clone());
                }
                if let Some(receipt) = get(row, table, "mpesa_receipt")
                    && !self.receipts.insert(hash(receipt))
                {
                    self.violation("unique_mpesa_receipts", receipt.to_owned());
                }
                let chama_ok = get(row, table, "chama_id").is_some_and(|c| self.chamas.contains(c));
                let user_ok = get(row, table, "user_id").is_none_or(|u| self.users.contains(u));
                if !(chama_ok && user_ok) {
                    self.violation("transactions_have_chama_and_user", id);
                }
            }
            "public.disbursement_requests"
                if get(row, table, "amount")
                    .and_then(|a| a.parse::<i64>().ok())
                    .is_none_or(|a| a <= 0) =>
            {
                self.violation("positive_amounts", id);
            }
            _ => {}
        }
    }

    /// The rules over everything seen: each rule, with its violations (empty when it holds).
    pub fn finish(mut self) -> BTreeMap<&'static str, Violations> {
        let active = std::mem::take(&mut self.active_chamas);
        for chama in active {
            if self.chairs.get(&chama).copied().unwrap_or(0) != 1 {
                self.violation("one_chairperson", chama);
            }
        }
        let mut emails: Vec<String> = std::mem::take(&mut self.live_emails)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(e, _)| e)
            .collect();
        emails.sort();
        for email in emails {
            self.violation("unique_live_emails", email);
        }
        let mut phones: Vec<String> = std::mem::take(&mut self.live_phones)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(p, _)| p)
            .collect();
        phones.sort();
        for phone in phones {
            self.violation("unique_live_phones", phone);
        }
        let mut all = BTreeMap::new();
        for (rule, _) in RULES {
            all.insert(*rule, self.violations.remove(rule).unwrap_or_default());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgtext::some;

    fn chama(id: &str, status: &str) -> Fields {
        let mut row: Fields = vec![None; target::CHAMAS.columns.len()];
        row[column(&target::CHAMAS, "id")] = some(id);
        row[column(&target::CHAMAS, "status")] = some(status);
        row
    }

    fn member(id: &str, chama: &str, role: &str, status: &str) -> Fields {
        let mut row: Fields = vec![None; target::MEMBERS.columns.len()];
        row[column(&target::MEMBERS, "id")] = some(id);
        row[column(&target::MEMBERS, "chama_id")] = some(chama);
        row[column(&target::MEMBERS, "user_id")] = some("u1");
        row[column(&target::MEMBERS, "role")] = some(role);
        row[column(&target::MEMBERS, "status")] = some(status);
        row
    }

    #[test]
    fn an_active_chama_without_an_active_chairperson_is_predicted_to_fail_one_chairperson() {
        let mut user: Fields = vec![None; target::USERS.columns.len()];
        user[0] = some("u1");
        let mut batch = Batch::default();
        batch.push(target::USERS, user);
        batch.push(target::CHAMAS, chama("empty", "active"));
        batch.push(target::CHAMAS, chama("chaired", "active"));
        batch.push(target::CHAMAS, chama("dormant", "suspended"));
        batch.push(
            target::MEMBERS,
            member("m1", "chaired", "chairperson", "active"),
        );
        batch.push(target::MEMBERS, member("m2", "gone", "member", "active"));
        let mut predictor = Predictor::default();
        predictor.add(&batch);
        let rules = predictor.finish();
        assert_eq!(rules.len(), RULES.len(), "every rule is answered");
        assert_eq!(rules["one_chairperson"].sample, ["empty"]);
        assert_eq!(rules["members_have_chama_and_user"].sample, ["m2"]);
        assert_eq!(rules["unique_live_phones"].count, 0);
    }
}
