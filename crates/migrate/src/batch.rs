//! What one batch of legacy rows becomes: rows for target tables, balance updates, issues.

use uuid::Uuid;

use crate::pgtext::Fields;
use crate::target::{Issue, Table};

/// Balances the ledger step sets on rows loaded by earlier steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// `chamas.balance`: the chama's cash account.
    ChamaBalance { chama: Uuid, balance: i64 },
    /// `chama_members.contributed_total`: the member's equity (credit-normal, so negated).
    MemberTotal { chama: Uuid, user: Uuid, total: i64 },
}

#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<(Table, Vec<Fields>)>,
    pub updates: Vec<Update>,
    pub issues: Vec<Issue>,
    /// Legacy rows read for this batch.
    pub source_rows: u64,
}

impl Batch {
    pub fn push(&mut self, table: Table, row: Fields) {
        debug_assert_eq!(row.len(), table.columns.len(), "{}", table.name);
        match self.rows.iter_mut().find(|(t, _)| t.name == table.name) {
            Some((_, rows)) => rows.push(row),
            None => self.rows.push((table, vec![row])),
        }
    }

    pub fn issue(&mut self, issue: Issue) {
        self.issues.push(issue);
    }

    /// The rows for `table`, if any.
    pub fn rows_of(&self, table: &Table) -> &[Fields] {
        self.rows
            .iter()
            .find(|(t, _)| t.name == table.name)
            .map(|(_, rows)| rows.as_slice())
            .unwrap_or(&[])
    }

    /// Rows written, over every table.
    pub fn target_rows(&self) -> u64 {
        self.rows.iter().map(|(_, rows)| rows.len() as u64).sum()
    }

    pub fn merge(&mut self, other: Batch) {
        for (table, rows) in other.rows {
            for row in rows {
                self.push(table, row);
            }
        }
        self.updates.extend(other.updates);
        self.issues.extend(other.issues);
        self.source_rows += other.source_rows;
    }
}
