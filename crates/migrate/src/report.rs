//! The reports `plan` and `verify` leave for the change ticket: Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::batch::Batch;
use crate::ledger::Drift;
use crate::target::Severity;

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
}

impl Summary {
    pub fn add(&mut self, step_table: &str, batch: &Batch, drifts: &[Drift]) {
        self.tables.entry(step_table.to_owned()).or_default().read += batch.source_rows;
        for issue in &batch.issues {
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

    pub fn markdown(&self, title: &str) -> String {
        let mut md = format!(
            "# {title}\n\n## Per legacy table\n\n| table | rows | fixed | cannot move |\n|---|---:|---:|---:|\n"
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
        md.push_str("\n## Rows per target table\n\n| target table | rows |\n|---|---:|\n");
        for (name, n) in &self.target_rows {
            let _ = writeln!(md, "| {name} | {n} |");
        }
        let _ = write!(
            md,
            "\n## Balance drift\n\n{} of {} chamas have a legacy `chamas.balance` that differs from the sum of their migrated transactions (the migrated balance is the ledger's; legacy's stored figure is not copied).\n\n| chama | legacy balance | legacy sum of completed rows | migrated balance | opening balance |\n|---|---:|---:|---:|---:|\n",
            self.drift.len(),
            self.chamas_checked
        );
        for d in self.drift.iter().take(50) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                d.chama_id,
                cents(d.legacy_balance),
                cents(d.legacy_sum),
                cents(d.migrated_balance),
                cents(d.opening_balance)
            );
        }
        md
    }
}

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
