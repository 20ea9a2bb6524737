//! `migrate plan`: runs every transform over the legacy data and writes nothing; reports per
//! table what moves, what is fixed (and how, row by row for what needs review), what cannot
//! move (and why), balance drift with its causes, conflicting receipts, the target's rules
//! checked on the transformed rows, and whether `copy` will stop on the quarantine threshold.

use crate::copy::QuarantineLimit;
use crate::pipeline::{self, Cursor};
use crate::report::{QuarantinePrediction, Summary};
use crate::rules::Predictor;
use crate::source;

pub async fn run(
    from: &str,
    batch_size: usize,
    max_quarantine: QuarantineLimit,
) -> anyhow::Result<Summary> {
    let mut src = source::connect(from, "legacy").await?;
    pipeline::check_legacy_shape(&mut src).await?;
    let cx = source::load_context(&mut src).await?;
    let mut summary = Summary::default();
    let mut rules = Predictor::default();
    for step in pipeline::STEPS.iter().copied() {
        let mut cursor = Cursor::new(step, None, batch_size);
        summary.tables.entry(step.name().to_owned()).or_default();
        while let Some(done) = cursor.next(&cx, &mut src).await? {
            summary.add(step.name(), &done.batch, &done.drifts);
            rules.add(&done.batch);
        }
    }
    summary.target_rules = rules
        .finish()
        .into_iter()
        .map(|(rule, v)| (rule.to_owned(), v))
        .collect();
    let mut conflicts: Vec<_> = cx.receipt_conflicts.values().cloned().collect();
    conflicts.sort_by_key(|c| c.duplicate.id);
    summary.receipt_conflicts = conflicts;
    let read: u64 = pipeline::STEPS.iter().map(|s| s.total(&cx)).sum();
    let rejected = summary.rejected();
    let limit = max_quarantine.limit(read);
    summary.quarantine = Some(QuarantinePrediction {
        rows_to_quarantine: rejected,
        rows_read: read,
        limit,
        limit_rule: max_quarantine.describe(read),
        copy_stops: rejected as i64 > limit,
    });
    let count = |t: &str| cx.counts.get(t).copied().unwrap_or(0);
    summary.skipped.insert(
        "user_sessions".into(),
        (
            count("user_sessions"),
            "legacy refresh tokens; members sign in again with their old password".into(),
        ),
    );
    summary.skipped.insert(
        "ussd_sessions".into(),
        (
            count("ussd_sessions"),
            "gateway sessions live 180 s; none survives the cut-over".into(),
        ),
    );
    Ok(summary)
}
