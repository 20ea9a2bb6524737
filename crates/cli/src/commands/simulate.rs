//! `pesachama simulate ...`: stand-ins for the outside world.

mod ussd;

use std::process::ExitCode;

use crate::cli::{Global, SimulateArgs, SimulateCommand};

pub async fn run(global: &Global, args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        SimulateCommand::Ussd(ussd) => ussd::run(global, ussd).await,
        SimulateCommand::Daraja(daraja) => {
            super::mpesa_commands::simulate_daraja(global, daraja).await
        }
    }
}
