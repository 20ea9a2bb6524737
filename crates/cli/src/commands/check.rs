//! `pesachama check`: the data-integrity report; exit code 1 when anything is violated.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{CheckArgs, Global};
use crate::database::Database;
use crate::output;

pub async fn run(global: &Global, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let database = Database::open(global).await?;
    let result = async {
        let pool = pesachama_store::connect(&database.url, 2)
            .await
            .with_context(|| format!("cannot connect to {}", database.describe()))?;
        let checks = pesachama_store::integrity::report(&pool).await?;
        pool.close().await;
        anyhow::Ok(checks)
    }
    .await;
    database.close().await;
    let checks = result?;

    let failed = checks.iter().filter(|check| !check.passed()).count();
    if args.json {
        output::json(&serde_json::json!({ "passed": failed == 0, "checks": checks }))?;
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|check| {
                vec![
                    if check.passed() { "ok" } else { "FAIL" }.to_owned(),
                    check.name.clone(),
                    check.violations.to_string(),
                    check.description.clone(),
                    check.sample.join(" "),
                ]
            })
            .collect();
        output::table(
            &["", "CHECK", "VIOLATIONS", "WHAT IT CHECKS", "SAMPLE"],
            &rows,
        );
        output::line(&format!("\n{} checks, {failed} failed", checks.len()));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
