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
    let mut tasks = super::delivery::spawn(worker, &pool, &stopped);
    // M-Pesa jobs (STK pushes, payouts, reconciliation) need real Daraja settings here: the
    // built-in simulator belongs to a `serve` process, whose address its callbacks go to.
    if let Some(mpesa) = super::mpesa::configure(&args.mpesa, false, "127.0.0.1:0".parse()?)
        .await?
        .mpesa()
    {
        let worker = pesachama_api::mpesa_worker::MpesaWorker::new(pool.clone(), mpesa);
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })));
    } else {
        tracing::info!("no MPESA_* settings: this worker runs no M-Pesa job");
    }
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
