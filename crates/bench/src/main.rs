//! `pesachama-bench`: measurements with their baseline taken in the same process, so the
//! figures are ratios a reader can trust on another machine.
//!
//! Runs on the same throwaway PostgreSQL the tests use (or `TEST_DATABASE_URL`).

#![allow(clippy::print_stdout)]

mod auth;
mod contributions;
mod mpesa;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "PesaChama benchmarks (build with --release)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// How long each timed phase runs, in seconds.
    #[arg(long, default_value_t = 5, global = true)]
    seconds: u64,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Logins per second against the bcrypt bound of this machine, and the cost of the
    /// per-request RLS context.
    Auth,
    /// Contributions per second through the API against pgbench's TPC-B rate on the same
    /// server, and read latency at half that load.
    Contributions,
    /// STK callbacks applied per second end to end against pgbench's TPC-B rate, and the
    /// time from callback to acknowledgement.
    Mpesa,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let phase = std::time::Duration::from_secs(cli.seconds);
    match cli.bench {
        Bench::Auth => runtime.block_on(auth::run(phase)),
        Bench::Contributions => runtime.block_on(contributions::run(phase)),
        Bench::Mpesa => runtime.block_on(mpesa::run(phase)),
    }
}
