//! `pesachama db migrate | status | url`

use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_pgcluster::Cluster;
use pesachama_store::migrations::{self, State};

use crate::cli::{DbArgs, DbCommand, Global};
use crate::database::{Database, EMBEDDED_DATABASE};
use crate::output;

pub async fn run(global: &Global, args: &DbArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Url => return url(global).await,
        DbCommand::Stop => return stop(global).await,
        DbCommand::Migrate | DbCommand::Status { .. } => {}
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
        // Answered before a database is opened (see `run`).
        DbCommand::Url | DbCommand::Stop => {}
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

async fn stop(global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        global.database_url.is_none(),
        "`db stop` stops the embedded cluster; with DATABASE_URL set there is none to stop"
    );
    let data_dir = global.data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::attach_running(&data_dir)).await??;
    match cluster {
        Some(cluster) => {
            tokio::task::spawn_blocking(move || cluster.stop_now()).await??;
            output::line(&format!(
                "stopped the embedded PostgreSQL of {}",
                global.data_dir.display()
            ));
        }
        None => output::line(&format!(
            "no embedded PostgreSQL is running in {}",
            global.data_dir.display()
        )),
    }
    Ok(ExitCode::SUCCESS)
}
