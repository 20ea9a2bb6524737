//! `pesachama migrate ...`: the migration toolkit's commands (the work is in
//! `pesachama-migrate`; this file is arguments, confirmation and output).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pesachama_migrate::{copy, cutover, generate, plan, report, source, state, sync, verify};

use crate::cli::Global;
use crate::output;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Args)]
pub struct Endpoints {
    /// The legacy database (read only).
    #[arg(long, env = "LEGACY_DATABASE_URL", hide_env_values = true)]
    pub from: Option<String>,
    /// The target database (default: DATABASE_URL).
    #[arg(long, hide_env_values = true)]
    pub to: Option<String>,
    /// Legacy rows per batch.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
}

/// When `copy` stops on rows that cannot move (`plan` says beforehand whether it will).
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// Stop when more than this percentage of the legacy rows read cannot move.
    #[arg(long, default_value_t = 1.0)]
    pub max_quarantine_percent: f64,
    /// Stop when more than this many rows cannot move (overrides the percentage).
    #[arg(long)]
    pub max_quarantine: Option<i64>,
}

impl QuarantineArgs {
    fn limit(&self) -> copy::QuarantineLimit {
        match self.max_quarantine {
            Some(rows) => copy::QuarantineLimit::rows(rows),
            None => copy::QuarantineLimit::percent(self.max_quarantine_percent),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Create the legacy schema in an empty database and fill it with realistic data with every known quirk.
    GenerateLegacy {
        /// The (empty) database to fill.
        #[arg(long, env = "LEGACY_DATABASE_URL", hide_env_values = true)]
        to: Option<String>,
        /// 1 is production size (40,000 users, 3,000 chamas, 2.5 million transactions).
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        /// How often each quirk occurs (0 to 1).
        #[arg(long, default_value_t = 0.02)]
        quirk_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Report what will move, what will be fixed and how, what cannot move and why (writes nothing to a database).
    Plan {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Folder for plan.md and plan.json.
        #[arg(long, default_value = "migration-report")]
        report_dir: PathBuf,
        #[command(flatten)]
        quarantine: QuarantineArgs,
    },
    /// Copy the legacy data into the target in resumable batches.
    Copy {
        #[command(flatten)]
        endpoints: Endpoints,
        #[command(flatten)]
        quarantine: QuarantineArgs,
        /// Testing: stop after this many committed batches, as a killed run would.
        #[arg(long, hide = true)]
        stop_after_batches: Option<u64>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Prove the target holds exactly the transformed source; exit 1 on any difference.
    Verify {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Folder for verify.md and verify.json.
        #[arg(long, default_value = "migration-report")]
        report_dir: PathBuf,
    },
    /// Keep the target current while both systems run: apply legacy changes, report the lag.
    Sync {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Install the change capture on legacy (run before `copy`), then sync.
        #[arg(long)]
        install: bool,
        /// Keep syncing until interrupted, a cycle every --interval seconds.
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Freeze legacy (revoke CONNECT, terminate sessions), drain, verify, set sequences, start capture for rollback.
    Cutover {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Replay every write made on the target since the cut-over into legacy, then reopen legacy.
    Rollback {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Where a copy has got to: steps, batches, rows, quarantine.
    Status {
        /// The target database (default: DATABASE_URL).
        #[arg(long, hide_env_values = true)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn need(url: Option<&String>, what: &str) -> anyhow::Result<String> {
    url.cloned().with_context(|| {
        format!("no {what} database: pass its URL or set the environment variable")
    })
}

fn target(endpoints_to: Option<&String>, global: &Global) -> anyhow::Result<String> {
    need(
        endpoints_to.or(global.database_url.as_ref()),
        "target (--to or DATABASE_URL)",
    )
}

pub async fn run(global: &Global, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        MigrateCommand::GenerateLegacy {
            to,
            scale,
            quirk_rate,
            seed,
            yes,
        } => {
            let url = need(to.as_ref(), "legacy (--to or LEGACY_DATABASE_URL)")?;
            output::confirm(
                &format!(
                    "generate-legacy: will create the legacy schema in {} and fill it (scale {scale}, quirk rate {quirk_rate}, seed {seed})",
                    source::redact(&url)
                ),
                *yes,
            )?;
            let mut conn = source::connect(&url, "legacy").await?;
            let started = std::time::Instant::now();
            let made = generate::run(
                &mut conn,
                &generate::GenerateOptions {
                    scale: *scale,
                    quirk_rate: *quirk_rate,
                    seed: *seed,
                },
            )
            .await?;
            output::line(&format!(
                "generated {} users, {} chamas, {} transactions, {} notifications, {} audit rows in {:.1} s",
                made.users,
                made.chamas,
                made.transactions,
                made.notifications,
                made.audit_logs,
                started.elapsed().as_secs_f64()
            ));
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Plan {
            endpoints,
            report_dir,
            quarantine,
        } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let summary = plan::run(&from, endpoints.batch_size, quarantine.limit()).await?;
            let markdown = summary.markdown("Migration plan");
            report::write(
                report_dir,
                "plan",
                &markdown,
                &serde_json::to_value(&summary)?,
            )?;
            output::line(&markdown);
            output::line(&format!(
                "written: {}/plan.md and plan.json",
                report_dir.display()
            ));
            if let Some(q) = &summary.quarantine {
                output::line(&format!(
                    "{} rows cannot move; limit {}: copy {}",
                    q.rows_to_quarantine,
                    q.limit_rule,
                    if q.copy_stops {
                        "WILL STOP on the quarantine threshold"
                    } else {
                        "will not stop on the quarantine threshold"
                    }
                ));
            }
            for (rule, v) in summary.broken_rules() {
                output::line(&format!(
                    "the target's rule {rule} would fail for {} rows (first: {}): verify will report it",
                    v.count,
                    v.sample.join(", ")
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Copy {
            endpoints,
            quarantine,
            stop_after_batches,
            yes,
        } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let to = target(endpoints.to.as_ref(), global)?;
            output::confirm(
                &format!(
                    "copy: will write the legacy data of {} into {} (schema pesachama_migrate for checkpoints and quarantine; triggers suppressed during the load, one migration audit entry)",
                    source::redact(&from),
                    source::redact(&to)
                ),
                *yes,
            )?;
            let options = copy::CopyOptions {
                batch_size: endpoints.batch_size,
                max_quarantine: quarantine.limit(),
                stop_after_batches: *stop_after_batches,
                progress: true,
            };
            let summary = copy::run(&from, &to, &options).await?;
            output::line(&format!(
                "copied {} legacy rows into {} target rows in {:.1} s ({:.0} rows/s){}; {} rows quarantined (pesachama_migrate.quarantine)",
                summary.source_rows,
                summary.target_rows,
                summary.seconds,
                summary.source_rows as f64 / summary.seconds.max(0.001),
                if summary.resumed { ", resumed" } else { "" },
                summary.quarantined
            ));
            output::line(&summary.timings());
            for warning in &summary.warnings {
                output::line(&format!("warning: {warning}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Verify {
            endpoints,
            report_dir,
        } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let to = target(endpoints.to.as_ref(), global)?;
            let result = verify::run(&from, &to, endpoints.batch_size).await?;
            let markdown = result.markdown();
            report::write(
                report_dir,
                "verify",
                &markdown,
                &serde_json::to_value(&result)?,
            )?;
            output::line(&markdown);
            Ok(if result.differences().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        MigrateCommand::Sync {
            endpoints,
            install,
            follow,
            interval,
            yes,
        } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let to = target(endpoints.to.as_ref(), global)?;
            output::confirm(
                &format!(
                    "sync: will {}apply the changes captured on {} to {}",
                    if *install {
                        "install change capture (schema pesachama_sync, triggers) on legacy, then "
                    } else {
                        ""
                    },
                    source::redact(&from),
                    source::redact(&to)
                ),
                *yes,
            )?;
            let mut src = source::connect(&from, "legacy").await?;
            if *install {
                sync::install_capture(&mut src).await?;
                output::line("change capture installed on legacy");
            }
            let mut dst = source::connect(&to, "target").await?;
            loop {
                let cycle = sync::cycle(&mut src, &mut dst).await?;
                output::line(&format!(
                    "applied {} changes; {} pending; lag {:.1} s",
                    cycle.applied, cycle.pending, cycle.lag_seconds
                ));
                for note in &cycle.deletes_for_review {
                    output::line(note);
                }
                if !*follow {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs_f64(interval.max(0.1))) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Cutover { endpoints, yes } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let to = target(endpoints.to.as_ref(), global)?;
            output::confirm(
                &format!(
                    "cutover: will revoke CONNECT on {} from every non-superuser role, terminate its sessions, make it read-only, drain and verify into {}, and start capturing target changes for a rollback",
                    source::redact(&from),
                    source::redact(&to)
                ),
                *yes,
            )?;
            let done = cutover::cutover(&from, &to, endpoints.batch_size).await?;
            output::line(&format!(
                "legacy frozen (CONNECT revoked from {:?}, {} sessions ended); {} changes drained; {} rows verified, 0 differences.\n\n\
                 Switch now:\n  1. point every server at the target: DATABASE_URL={} pesachama serve (or your Supabase project)\n  \
                 2. point the mobile app at the target's Supabase URL and anon key\n  \
                 3. point the M-Pesa callback, USSD and SMS webhooks at the new server\n  \
                 4. keep legacy frozen; if anything is wrong: pesachama migrate rollback (replays every target write into legacy, then reopens it)",
                done.frozen_roles,
                done.sessions_terminated,
                done.drained_changes,
                done.rows_verified,
                source::redact(&to)
            ));
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Rollback { endpoints, yes } => {
            let from = need(
                endpoints.from.as_ref(),
                "legacy (--from or LEGACY_DATABASE_URL)",
            )?;
            let to = target(endpoints.to.as_ref(), global)?;
            output::confirm(
                &format!(
                    "rollback: will replay every change made on {} since the cut-over into {} and reopen it",
                    source::redact(&to),
                    source::redact(&from)
                ),
                *yes,
            )?;
            let back = cutover::rollback(&from, &to).await?;
            if back.reopened_only {
                output::line(
                    "the cut-over had stopped before the target went live: legacy reopened as it was recorded (CONNECT and read-only setting)",
                );
            } else {
                output::line(&format!(
                    "replayed {} target rows into legacy; legacy reopened",
                    back.replayed
                ));
            }
            for note in &back.not_replayed {
                output::line(note);
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Status { to, json } => {
            let to = target(to.as_ref(), global)?;
            let mut conn = source::connect(&to, "target").await?;
            let checkpoints = state::checkpoints(&mut conn).await?;
            let quarantined = if checkpoints.is_empty() {
                0
            } else {
                state::quarantined(&mut conn).await?
            };
            // What a copy dropped for its load and has not built again (it did not finish).
            let mut unbuilt = state::deferred_constraints(&mut conn).await?;
            unbuilt.extend(state::deferred_indexes(&mut conn).await?);
            if *json {
                output::json(&serde_json::json!({
                    "steps": checkpoints,
                    "quarantined": quarantined,
                    "still_to_build": unbuilt,
                }))?;
            } else if checkpoints.is_empty() {
                output::line("no migration has run against this target");
            } else {
                let rows: Vec<Vec<String>> = checkpoints
                    .iter()
                    .map(|c| {
                        vec![
                            c.step.clone(),
                            if c.done {
                                "done".into()
                            } else {
                                "in progress".into()
                            },
                            c.batches.to_string(),
                            c.source_rows.to_string(),
                            c.target_rows.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &["STEP", "STATE", "BATCHES", "LEGACY ROWS", "TARGET ROWS"],
                    &rows,
                );
                output::line(&format!("{quarantined} rows quarantined"));
                if !unbuilt.is_empty() {
                    output::line(&format!(
                        "{} keys and indexes dropped for the load are still to build (run `pesachama migrate copy` again to finish): {}",
                        unbuilt.len(),
                        unbuilt.join(", ")
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
