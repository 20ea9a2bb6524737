//! `migrate plan`: runs every transform over the legacy data and writes nothing; reports per
//! table what moves, what is fixed (and how), what cannot move (and why), and balance drift.

use crate::pipeline::{self, Cursor};
use crate::report::Summary;
use crate::source;

pub async fn run(from: &str, batch_size: usize) -> anyhow::Result<Summary> {
    let mut src = source::connect(from, "legacy").await?;
    pipeline::check_legacy_shape(&mut src).await?;
    let cx = source::load_context(&mut src).await?;
    let mut summary = Summary::default();
    for step in pipeline::STEPS.iter().copied() {
        let mut cursor = Cursor::new(step, None, batch_size);
        summary.tables.entry(step.name().to_owned()).or_default();
        while let Some(done) = cursor.next(&cx, &mut src).await? {
            summary.add(step.name(), &done.batch, &done.drifts);
        }
    }
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
