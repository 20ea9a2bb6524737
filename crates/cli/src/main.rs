//! `pesachama`: parses arguments and configuration, then hands over to library code.

mod cli;
mod commands;
mod database;
mod logging;
mod output;
mod storage_config;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc instead of the system allocator: the migration copy spent close to half its time in
/// glibc's malloc and free (BENCHMARKS.md), and the server allocates per request too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(&cli) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
            Command::Db(args) => commands::db::run(&cli.global, args).await,
            Command::Check(args) => commands::check::run(&cli.global, args).await,
            Command::Keys(args) => commands::keys::run(&cli.global, args),
            Command::Worker(args) => commands::worker::run(&cli.global, args).await,
            Command::Admin(args) => commands::admin::run(&cli.global, args).await,
            Command::Migrate(args) => commands::migrate::run(&cli.global, args).await,
            Command::Simulate(args) => commands::simulate::run(&cli.global, args).await,
            Command::Mpesa(args) => match &args.command {
                commands::mpesa_commands::MpesaCommand::Reconcile(args) => {
                    commands::mpesa_commands::reconcile(&cli.global, args).await
                }
                commands::mpesa_commands::MpesaCommand::RegisterC2b(args) => {
                    commands::mpesa_commands::register_c2b(args).await
                }
            },
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line a person can act on; the chain of causes joined with ": ".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
