//! `pesachama mpesa reconcile` and `pesachama simulate daraja`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pesachama_mpesa::simulator::{Simulator, SimulatorConfig};

use crate::cli::Global;
use crate::commands::mpesa::{MpesaArgs, configure};
use crate::database::Database;
use crate::output;

#[derive(Debug, Args)]
pub struct MpesaCommandArgs {
    #[command(subcommand)]
    pub command: MpesaCommand,
}

#[derive(Debug, Subcommand)]
pub enum MpesaCommand {
    /// Ask Daraja about STK requests without a callback and payouts without a result, settle
    /// what it answers, and print what changed and what is stuck.
    Reconcile(Box<ReconcileArgs>),
    /// Tell Daraja where paybill payments to the shortcode are validated and confirmed (this
    /// server's C2B callback URLs, under MPESA_CALLBACK_URL and the callback token). Run once
    /// per shortcode; Safaricom's production lets a shortcode register only once.
    RegisterC2b(Box<RegisterC2bArgs>),
}

#[derive(Debug, Args)]
pub struct RegisterC2bArgs {
    /// Register without asking (for scripts).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub mpesa: MpesaArgs,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only what has waited at least this many seconds.
    #[arg(long, default_value_t = 180)]
    pub older_than: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub mpesa: MpesaArgs,
}

#[derive(Debug, Args)]
pub struct DarajaArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Milliseconds between a request and its callback.
    #[arg(long, default_value_t = 2000)]
    pub delay_ms: u64,
    /// Where to write the simulator's certificate (for MPESA_CERTIFICATE); default: the
    /// data folder's `daraja-simulator.pem`.
    #[arg(long)]
    pub certificate_out: Option<std::path::PathBuf>,
}

pub async fn reconcile(global: &Global, args: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let database = Database::open(global).await?;
    let result = async {
        let pool = pesachama_store::connect(&database.url, 2)
            .await
            .with_context(|| format!("cannot connect to {}", database.describe()))?;
        // The callbacks that the status queries cause go to the running server's URLs.
        let mpesa = configure(&args.mpesa, false, "127.0.0.1:0".parse()?)
            .await?
            .daraja(
                "no MPESA_* settings: set the Daraja credentials (or MPESA_BASE_URL of `pesachama simulate daraja`) that the server uses",
            )?;
        let report = pesachama_api::mpesa_reconcile::reconcile_once(
            &pool,
            &mpesa,
            Duration::from_secs(args.older_than),
        )
        .await?;
        pool.close().await;
        anyhow::Ok(report)
    }
    .await;
    database.close().await;
    let report = result?;
    if args.json {
        output::json(&serde_json::to_value(&report)?)?;
    } else {
        output::line(&format!("STK requests asked about: {}", report.stk_queried));
        for (id, became) in &report.changed {
            output::line(&format!("  payment request {id}: {became}"));
        }
        for id in &report.still_pending {
            output::line(&format!(
                "  payment request {id}: still waiting for the payer"
            ));
        }
        output::line(&format!(
            "payouts asked about: {}",
            report.payouts_queried.len()
        ));
        for id in &report.payouts_queried {
            output::line(&format!(
                "  withdrawal {id}: status query queued for the server's M-Pesa worker (its answer settles it)"
            ));
        }
        output::line(&format!(
            "held for review: {} callbacks, {} payment requests",
            report.review_callbacks, report.review_requests
        ));
        for error in &report.errors {
            output::line(&format!("error: {error}"));
        }
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `pesachama mpesa register-c2b`.
pub async fn register_c2b(args: &RegisterC2bArgs) -> anyhow::Result<ExitCode> {
    let mpesa = configure(&args.mpesa, false, "127.0.0.1:0".parse()?)
        .await?
        .daraja(
            "no MPESA_* settings: set the Daraja credentials (MPESA_CONSUMER_KEY, MPESA_CONSUMER_SECRET, MPESA_SHORTCODE, MPESA_PASSKEY), MPESA_CALLBACK_URL and MPESA_CALLBACK_TOKEN as the server has them",
        )?;
    let validation = mpesa.callback_url("c2b/validation");
    let confirmation = mpesa.callback_url("c2b/confirmation");
    let shown = |url: &str| url.replace(&mpesa.callback_token, "<MPESA_CALLBACK_TOKEN>");
    output::confirm(
        &format!(
            "register-c2b: will tell Daraja ({}) that paybill payments to shortcode {} are validated at\n  {}\nand confirmed at\n  {}",
            mpesa.client.config().base_url,
            mpesa.client.config().shortcode,
            shown(&validation),
            shown(&confirmation)
        ),
        args.yes,
    )?;
    mpesa
        .client
        .register_c2b_urls(&validation, &confirmation)
        .await
        .context("Daraja refused the C2B registration")?;
    output::line("registered: Daraja will validate and confirm paybill payments at these URLs");
    Ok(ExitCode::SUCCESS)
}

/// `pesachama simulate daraja`.
pub async fn simulate_daraja(global: &Global, args: &DarajaArgs) -> anyhow::Result<ExitCode> {
    let config = SimulatorConfig {
        delay: Duration::from_millis(args.delay_ms),
        ..SimulatorConfig::default()
    };
    let simulator = Simulator::new(config.clone()).map_err(|err| anyhow::anyhow!("{err}"))?;
    let certificate = args
        .certificate_out
        .clone()
        .unwrap_or_else(|| global.data_dir.join("daraja-simulator.pem"));
    if let Some(parent) = certificate.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&certificate, simulator.certificate_pem())
        .with_context(|| format!("cannot write {}", certificate.display()))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let running = simulator.serve(listener).await?;
    output::line(&format!("Daraja simulator on {}", running.base_url()));
    output::line(&format!("MPESA_BASE_URL={}", running.base_url()));
    output::line(&format!("MPESA_CONSUMER_KEY={}", config.consumer_key));
    output::line(&format!("MPESA_CONSUMER_SECRET={}", config.consumer_secret));
    output::line(&format!("MPESA_SHORTCODE={}", config.shortcode));
    output::line(&format!("MPESA_PASSKEY={}", config.passkey));
    output::line(&format!("MPESA_INITIATOR_NAME={}", config.initiator_name));
    output::line(&format!(
        "MPESA_INITIATOR_PASSWORD={}",
        config.initiator_password
    ));
    output::line(&format!("MPESA_CERTIFICATE={}", certificate.display()));
    output::line("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    drop(running);
    Ok(ExitCode::SUCCESS)
}
