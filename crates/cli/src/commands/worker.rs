//! `pesachama worker`: the outbox worker and the sweeper without the HTTP server, for scale-out.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{Global, WorkerArgs};
use crate::database::Database;

pub async fn run(global: &Global, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let database = Database::open(global).await?;
    let result = work(global, &database, args).await;
    database.close().await;
    result
}

async fn work(global: &Global, database: &Database, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let pool = pesachama_store::connect(&database.url, 5)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    pesachama_store::migrations::migrate(&pool).await?;
    let worker = super::delivery::worker(global, database, &args.delivery, &pool)?;
    if worker.is_none() {
        tracing::warn!(
            "no delivery channel is configured (PESACHAMA_MAILBOX, AT_USERNAME, FCM_SERVICE_ACCOUNT, SMTP_URL): only the sweeper runs"
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = super::delivery::spawn(worker, &pool, &stopped);
    tracing::info!(database = %database.describe(), "the worker is running; Ctrl-C or SIGTERM stops it");
    super::serve::shutdown_signal().await;
    tracing::info!("stopping the worker");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}
