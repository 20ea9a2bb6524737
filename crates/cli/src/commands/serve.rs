//! `pesachama serve`

use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_api::{AppState, ServerConfig};
use tokio::net::TcpListener;

use crate::cli::{Global, ServeArgs};
use crate::database::Database;

pub async fn run(global: &Global, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Bind first: a port in use is reported before anything is started or created.
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (choose another port with --port or API_PORT)",
                args.host, args.port
            )
        })?;
    let database = Database::open(global).await?;
    let result = serve(global, &database, listener, args).await;
    database.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve(
    global: &Global,
    database: &Database,
    listener: TcpListener,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    let pool = pesachama_store::connect(&database.url, args.pool_size)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    let applied = pesachama_store::migrations::migrate(&pool).await?;
    tracing::info!(applied = applied.len(), database = %database.describe(), "schema is current");
    if args.demo {
        pesachama_store::seed_demo(&pool)
            .await
            .context("loading the demo data")?;
        tracing::info!("demo data loaded");
    }

    let address = listener.local_addr()?;
    let mut config = ServerConfig::with_secret(crate::commands::keys::jwt_secret(global)?);
    config.auth.site_url = global
        .supabase_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    let app = pesachama_api::app(AppState::new(pool.clone(), config));
    tracing::info!(%address, "PesaChama is listening on http://{address}");
    pesachama_api::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("shutting down");
    pool.close().await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
