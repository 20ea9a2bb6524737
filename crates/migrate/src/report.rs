//! The reports `plan` and `verify` leave for the change ticket: Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::batch::Batch;
use crate::ledger::{Drift, ReceiptConflict};
use crate::rules::Violations;
use crate::target::Severity;

/// One fixed legacy row a person must be able to review: its key, why, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewRow {
    pub table: String,
    pub legacy_id: String,
    pub reason: String,
    pub detail: String,
}

/// Whether `copy` will stop on the quarantine threshold, said by `plan` beforehand.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantinePrediction {
    /// Rows that cannot move (what `copy` quarantines).
    pub rows_to_quarantine: u64,
    /// Legacy rows `copy` reads.
    pub rows_read: u64,
    pub limit: i64,
    /// The limit and how it was reached, in words.
    pub limit_rule: String,
    pub copy_stops: bool,
}

/// Per legacy table: rows read, moved, fixed (by reason), not moved (by reason).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TableReport {
    pub read: u64,
    pub fixed: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub tables: BTreeMap<String, TableReport>,
    /// Rows to write, per target table.
    pub target_rows: BTreeMap<String, u64>,
    /// Legacy tables deliberately not carried, with the row count and the reason.
    pub skipped: BTreeMap<String, (u64, String)>,
    /// Chamas whose legacy balance differs from the migrated ledger.
    pub drift: Vec<Drift>,
    pub chamas_checked: u64,
    /// Every fixed row marked "(review)", one by one.
    pub reviews: Vec<ReviewRow>,
    /// Duplicate receipts whose amount or checkout id differ, with both rows.
    pub receipt_conflicts: Vec<ReceiptConflict>,
    /// The target's rules, checked on the transformed rows: violations per rule (`plan`).
    pub target_rules: BTreeMap<String, Violations>,
    /// Whether `copy` will stop on the quarantine threshold (`plan`).
    pub quarantine: Option<QuarantinePrediction>,
}

impl Summary {
    pub fn add(&mut self, step_table: &str, batch: &Batch, drifts: &[Drift]) {
        self.tables.entry(step_table.to_owned()).or_default().read += batch.source_rows;
        for issue in &batch.issues {
            if issue.for_review() {
                self.reviews.push(ReviewRow {
                    table: issue.table.to_owned(),
                    legacy_id: issue.legacy_id.clone(),
                    reason: issue.reason.clone(),
                    detail: issue.detail.clone().unwrap_or_default(),
                });
            }
            let entry = self.tables.entry(issue.table.to_owned()).or_default();
            let map = match issue.severity {
                Severity::Rejected => &mut entry.rejected,
                _ => &mut entry.fixed,
            };
            *map.entry(issue.reason.clone()).or_default() += 1;
        }
        for (table, rows) in &batch.rows {
            *self.target_rows.entry(table.name.to_owned()).or_default() += rows.len() as u64;
        }
        self.chamas_checked += drifts.len() as u64;
        self.drift
            .extend(drifts.iter().filter(|d| d.drifted()).cloned());
    }

    pub fn rejected(&self) -> u64 {
        self.tables.values().flat_map(|t| t.rejected.values()).sum()
    }

    /// The target rules that the transformed rows break (none: `verify` will meet none).
    pub fn broken_rules(&self) -> Vec<(&str, &Violations)> {
        self.target_rules
            .iter()
            .filter(|(_, v)| v.count > 0)
            .map(|(rule, v)| (rule.as_str(), v))
            .collect()
    }

    pub fn markdown(&self, title: &str) -> String {
        let mut md = format!("# {title}\n\n");
        if let Some(q) = &self.quarantine {
            let _ = writeln!(
                md,
                "## Quarantine threshold\n\n{} of {} legacy rows cannot move; the limit is {}. {}\n",
                q.rows_to_quarantine,
                q.rows_read,
                q.limit_rule,
                if q.copy_stops {
                    "**`copy` will stop** on it: fix the rows in legacy, or raise the limit (`--max-quarantine-percent`, or `--max-quarantine` rows) after reading the table below."
                } else {
                    "`copy` will not stop on it."
                }
            );
        }
        if !self.target_rules.is_empty() {
            md.push_str("## The target's rules, checked on the transformed rows\n\n| rule | violations | first keys |\n|---|---:|---|\n");
            for (rule, v) in &self.target_rules {
                let _ = writeln!(md, "| {rule} | {} | {} |", v.count, v.sample.join(", "));
            }
            md.push('\n');
        }
        md.push_str(
            "## Per legacy table\n\n| table | rows | fixed | cannot move |\n|---|---:|---:|---:|\n",
        );
        for (name, t) in &self.tables {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} |",
                t.read,
                t.fixed.values().sum::<u64>(),
                t.rejected.values().sum::<u64>()
            );
        }
        for (name, (rows, why)) in &self.skipped {
            let _ = writeln!(md, "| {name} | {rows} | 0 | {rows} (not carried: {why}) |");
        }
        md.push_str("\n## Fixes (how)\n\n| table | fix | rows |\n|---|---|---:|\n");
        for (name, t) in &self.tables {
            for (reason, n) in &t.fixed {
                let _ = writeln!(md, "| {name} | {reason} | {n} |");
            }
        }
        md.push_str(
            "\n## Rows that cannot move (why)\n\n| table | reason | rows |\n|---|---|---:|\n",
        );
        for (name, t) in &self.tables {
            for (reason, n) in &t.rejected {
                let _ = writeln!(md, "| {name} | {reason} | {n} |");
            }
        }
        let _ = write!(
            md,
            "\n## Fixed rows to review\n\n{} rows (all in the JSON report and, after `copy`, in `pesachama_migrate.fixed_rows`).\n\n| table | legacy key | why | what changed |\n|---|---|---|---|\n",
            self.reviews.len()
        );
        for r in self.reviews.iter().take(REVIEW_ROWS_IN_MARKDOWN) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.table,
                r.legacy_id,
                r.reason,
                r.detail.replace('|', "\\|")
            );
        }
        if self.reviews.len() > REVIEW_ROWS_IN_MARKDOWN {
            let _ = writeln!(
                md,
                "\n({} more in the JSON report)",
                self.reviews.len() - REVIEW_ROWS_IN_MARKDOWN
            );
        }
        let _ = write!(
            md,
            "\n## Conflicting duplicate receipts\n\n{} receipts appear on two rows whose amount or checkout id differ (not a double callback): the first row keeps the receipt and counts, the other moves as cancelled. Decide which is right.\n\n| receipt | first row | its chama, amount, checkout id | other row | its chama, amount, checkout id |\n|---|---:|---|---:|---|\n",
            self.receipt_conflicts.len()
        );
        for c in &self.receipt_conflicts {
            let _ = writeln!(
                md,
                "| {} | {} | {}, {}, {} | {} | {}, {}, {} |",
                c.receipt,
                c.first.id,
                c.first.chama_id,
                c.first.amount,
                c.first.reference.as_deref().unwrap_or("none"),
                c.duplicate.id,
                c.duplicate.chama_id,
                c.duplicate.amount,
                c.duplicate.reference.as_deref().unwrap_or("none"),
            );
        }
        md.push_str("\n## Rows per target table\n\n| target table | rows |\n|---|---:|\n");
        for (name, n) in &self.target_rows {
            let _ = writeln!(md, "| {name} | {n} |");
        }
        let _ = write!(
            md,
            "\n## Balance drift\n\n{} of {} chamas have a legacy `chamas.balance` that differs from the sum of their migrated transactions (the migrated balance is the sum of its migrated money events; legacy's stored figure is not copied, nothing is posted to hide the difference). The causes add up to the difference (legacy minus migrated); all chamas are in the JSON report.\n\n| chama | legacy balance | legacy sum of completed rows | migrated balance | opening balance | causes (legacy minus migrated: legacy rows) |\n|---|---:|---:|---:|---:|---|\n",
            self.drift.len(),
            self.chamas_checked
        );
        for d in self.drift.iter().take(50) {
            let causes = d
                .causes
                .iter()
                .map(|c| {
                    let rows = if c.legacy_rows.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            c.legacy_rows
                                .iter()
                                .map(i64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    format!("{} {}{rows}", c.cause, cents(c.amount))
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                d.chama_id,
                cents(d.legacy_balance),
                cents(d.legacy_sum),
                cents(d.migrated_balance),
                cents(d.opening_balance),
                causes
            );
        }
        md
    }
}

/// Fixed rows listed in the Markdown report (all of them are in the JSON report).
const REVIEW_ROWS_IN_MARKDOWN: usize = 500;

fn cents(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", value.abs() / 100, value.abs() % 100)
}

/// Writes `<name>.md` and `<name>.json` into `dir`.
pub fn write(
    dir: &Path,
    name: &str,
    markdown: &str,
    json: &serde_json::Value,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{name}.md")), markdown)
        .with_context(|| format!("writing {name}.md"))?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(json)?,
    )
    .with_context(|| format!("writing {name}.json"))?;
    Ok(())
}
