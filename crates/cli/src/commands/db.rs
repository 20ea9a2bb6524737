//! `pesachama db migrate | status | url`

use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_pgcluster::Cluster;
use pesachama_store::migrations::{self, State};

use crate::cli::{DbArgs, DbCommand, Global};
use crate::database::{Database, EMBEDDED_DATABASE};
use crate::output;

pub async fn run(global: &Global, args: &DbArgs) -> anyhow::Result<ExitCode> {
    if let DbCommand::Url = args.command {
        return url(global).await;
    }
    let database = Database::open(global).await?;
    let result = with_database(&database, &args.command).await;
    database.close().await;
    result
}

async fn with_database(database: &Database, command: &DbCommand) -> anyhow::Result<ExitCode> {
    let pool = pesachama_store::connect(&database.url, 2)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    match command {
        DbCommand::Migrate => {
            let applied = migrations::migrate(&pool).await?;
            if applied.is_empty() {
                output::line("The schema is current: nothing to apply.");
            }
            for migration in applied {
                output::line(&format!("applied {}_{}", migration.version, migration.name));
            }
        }
        DbCommand::Status { json } => {
            let status = migrations::status(&pool).await?;
            if *json {
                output::json(&status)?;
            } else {
                let rows: Vec<Vec<String>> = status
                    .iter()
                    .map(|m| {
                        vec![
                            m.version.clone(),
                            m.name.clone(),
                            match m.state {
                                State::Applied => "applied".to_owned(),
                                State::Pending => "pending".to_owned(),
                                State::NotInThisBuild => "not in this build".to_owned(),
                            },
                            m.applied_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["VERSION", "NAME", "STATE", "APPLIED AT"], &rows);
                let pending = status.iter().filter(|m| m.state == State::Pending).count();
                output::line(&format!(
                    "\n{} applied, {pending} pending",
                    status.len() - pending
                ));
            }
        }
        // Reached only with DATABASE_URL set (see `run`): the database in use is that one.
        DbCommand::Url => output::line(&database.url),
    }
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `db url` never starts anything: it names the database in use right now.
async fn url(global: &Global) -> anyhow::Result<ExitCode> {
    if let Some(url) = &global.database_url {
        output::line(url);
        return Ok(ExitCode::SUCCESS);
    }
    let data_dir = global.data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::attach_running(&data_dir)).await??;
    match cluster {
        Some(cluster) => {
            output::line(&cluster.url(EMBEDDED_DATABASE));
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "no embedded PostgreSQL is running in {} (start one with `pesachama serve`, or set DATABASE_URL)",
            global.data_dir.display()
        ),
    }
}
