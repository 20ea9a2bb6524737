//! `pesachama-bench`: measurements with their baseline taken in the same process, so the
//! figures are ratios a reader can trust on another machine.
//!
//! Runs on the same throwaway PostgreSQL the tests use (or `TEST_DATABASE_URL`).

#![allow(clippy::print_stdout)]

mod auth;
mod contributions;
mod mpesa;
mod realtime;
mod storage;
mod ussd;

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
    Contributions {
        /// Concurrent clients, for pgbench and for the API alike (each client of the API is
        /// the chairperson of a chama of its own). Default: 4 per core.
        #[arg(long)]
        clients: Option<usize>,
        /// Connections that record batches of contributions (the server's
        /// `contribution_writers`); 0 for one request per transaction, the baseline.
        #[arg(long, default_value_t = 2)]
        writers: usize,
    },
    /// What one call of the contribution batch function costs per batch size, fitted to a
    /// fixed part per batch and a part per contribution, against one pgbench TPC-B
    /// transaction on one connection of the same server.
    ContributionBatches {
        /// Batch sizes to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8, 16, 32])]
        sizes: Vec<usize>,
        /// Runs of `--seconds` per size, the sizes taking turns; each size keeps its median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Commit-to-client latency of realtime postgres_changes with many connected subscribers,
    /// against raw LISTEN/NOTIFY on the same server.
    Realtime {
        /// Subscriber counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000])]
        subscribers: Vec<usize>,
    },
    /// USSD hops per second and p50/p99 latency per hop at 500 concurrent sessions, against
    /// `GET /health` at the same concurrency.
    Ussd,
    /// Upload and download MB/s through `/storage/v1` against raw filesystem writes and
    /// reads of the same bytes.
    Storage,
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
        Bench::Contributions { clients, writers } => {
            runtime.block_on(contributions::run(phase, clients, writers))
        }
        Bench::ContributionBatches { sizes, rounds } => {
            runtime.block_on(contributions::batch_cost(phase, &sizes, rounds))
        }
        Bench::Realtime { subscribers } => runtime.block_on(realtime::run(phase, &subscribers)),
        Bench::Ussd => runtime.block_on(ussd::run(phase)),
        Bench::Storage => runtime.block_on(storage::run(phase)),
        Bench::Mpesa => runtime.block_on(mpesa::run(phase)),
    }
}
