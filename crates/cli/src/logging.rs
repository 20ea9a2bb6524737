//! Log lines go to standard error, as JSON by default (one object a line, with the fields of the
//! request span such as `request_id`), so standard output stays for command results.

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

pub fn init(cli: &Cli) -> anyhow::Result<()> {
    let default = if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        "info"
    } else {
        "warn"
    };
    let requested = cli.global.log_level.as_deref().unwrap_or(default);
    let filter = EnvFilter::try_new(requested).with_context(|| {
        format!("LOG_LEVEL / --log-level {requested:?} is not a valid log filter")
    })?;
    // PostgreSQL's notices ("schema ... already exists, skipping") are noise unless asked for.
    let filter = if requested.contains("sqlx") {
        filter
    } else {
        filter.add_directive(
            "sqlx::postgres::notice=warn"
                .parse()
                .context("a built-in log filter")?,
        )
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
    Ok(())
}
