//! `pesachama db migrate | status | url`

use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_pgcluster::Cluster;
use pesachama_store::migrations::{self, State};

use crate::cli::{DbArgs, DbCommand, Global};
use crate::database::{Database, EMBEDDED_DATABASE};
use crate::output;

pub async fn run(global: &Global, args: &DbArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Url => return url(global).await,
        DbCommand::Stop => return stop(global).await,
        DbCommand::Migrate | DbCommand::Status { .. } => {}
        DbCommand::Backup { .. } | DbCommand::Restore { .. } => {
            let database = Database::open(global).await?;
            let result = match &args.command {
                DbCommand::Backup { file } => backup(&database, file).await,
                DbCommand::Restore { file, force } => restore(&database, file, *force).await,
                _ => unreachable!("matched above"),
            };
            database.close().await;
            return result;
        }
    }
    let database = Database::open(global).await?;
    let result = with_database(&database, &args.command).await;
    database.close().await;
    result
}

async fn with_database(database: &Database, command: &DbCommand) -> anyhow::Result<ExitCode> {
    let pool = pesachama_store::connect(&database.url, 2)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    match command {
        DbCommand::Migrate => {
            let applied = migrations::migrate(&pool).await?;
            if applied.is_empty() {
                output::line("The schema is current: nothing to apply.");
            }
            for migration in applied {
                output::line(&format!("applied {}_{}", migration.version, migration.name));
            }
        }
        DbCommand::Status { json } => {
            let status = migrations::status(&pool).await?;
            if *json {
                output::json(&status)?;
            } else {
                let rows: Vec<Vec<String>> = status
                    .iter()
                    .map(|m| {
                        vec![
                            m.version.clone(),
                            m.name.clone(),
                            match m.state {
                                State::Applied => "applied".to_owned(),
                                State::Pending => "pending".to_owned(),
                                State::NotInThisBuild => "not in this build".to_owned(),
                            },
                            m.applied_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["VERSION", "NAME", "STATE", "APPLIED AT"], &rows);
                let pending = status.iter().filter(|m| m.state == State::Pending).count();
                output::line(&format!(
                    "\n{} applied, {pending} pending",
                    status.len() - pending
                ));
            }
        }
        // Answered in `run`.
        DbCommand::Url | DbCommand::Stop | DbCommand::Backup { .. } | DbCommand::Restore { .. } => {
        }
    }
    pool.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `db url` never starts anything: it names the database in use right now.
async fn url(global: &Global) -> anyhow::Result<ExitCode> {
    if let Some(url) = &global.database_url {
        output::line(url);
        return Ok(ExitCode::SUCCESS);
    }
    let data_dir = global.data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::attach_running(&data_dir)).await??;
    match cluster {
        Some(cluster) => {
            output::line(&cluster.url(EMBEDDED_DATABASE));
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "no embedded PostgreSQL is running in {} (start one with `pesachama serve`, or set DATABASE_URL)",
            global.data_dir.display()
        ),
    }
}

async fn stop(global: &Global) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        global.database_url.is_none(),
        "`db stop` stops the embedded cluster; with DATABASE_URL set there is none to stop"
    );
    let data_dir = global.data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::attach_running(&data_dir)).await??;
    match cluster {
        Some(cluster) => {
            tokio::task::spawn_blocking(move || cluster.stop_now()).await??;
            output::line(&format!(
                "stopped the embedded PostgreSQL of {}",
                global.data_dir.display()
            ));
        }
        None => output::line(&format!(
            "no embedded PostgreSQL is running in {}",
            global.data_dir.display()
        )),
    }
    Ok(ExitCode::SUCCESS)
}

/// A client tool of the cluster's PostgreSQL (`pg_dump`, `pg_restore`): the same version as
/// the embedded server, so its dumps always load.
fn pg_tool(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let binaries = pesachama_pgcluster::Binaries::locate()?;
    let tool = binaries.dir().join(name);
    anyhow::ensure!(
        tool.is_file(),
        "{name} is not in {} (install PostgreSQL's client tools of the same version)",
        binaries.dir().display()
    );
    Ok(tool)
}

/// Runs a PostgreSQL tool to its end, its output passed through.
async fn run_tool(mut command: std::process::Command) -> anyhow::Result<std::process::ExitStatus> {
    Ok(tokio::task::spawn_blocking(move || command.status()).await??)
}

async fn backup(database: &Database, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !file.exists(),
        "{} exists: a backup never overwrites a file (choose another name or remove it)",
        file.display()
    );
    let started = std::time::Instant::now();
    // Written next to its final name and renamed once complete: a crash leaves no half backup
    // under the name.
    let partial = file.with_extension("partial");
    let mut command = std::process::Command::new(pg_tool("pg_dump")?);
    command
        .arg("--format=custom")
        .arg("--file")
        .arg(&partial)
        .arg("--dbname")
        .arg(&database.url);
    let status = run_tool(command).await.context("running pg_dump")?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        anyhow::bail!("pg_dump of {} failed ({status})", database.describe());
    }
    std::fs::rename(&partial, file)
        .with_context(|| format!("moving the backup to {}", file.display()))?;
    let bytes = std::fs::metadata(file)?.len();
    output::line(&format!(
        "backed up {} to {} ({:.1} MiB in {:.1} s)",
        database.describe(),
        file.display(),
        bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}

async fn restore(
    database: &Database,
    file: &std::path::Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(file.is_file(), "no backup at {}", file.display());
    let pool = pesachama_store::connect(&database.url, 1)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    let holds_data: bool = sqlx::query_scalar(
        "select exists (select from pg_namespace where nspname = 'internal')
             or exists (select from pg_tables where schemaname = 'public')",
    )
    .fetch_one(&pool)
    .await?;
    if holds_data && !force {
        pool.close().await;
        anyhow::bail!(
            "{} already holds data: nothing was restored (`db restore --force` replaces it with the backup)",
            database.describe()
        );
    }
    // The request roles are cluster-wide and not in a database's dump; the backup's grants
    // name them. The first migration creates them the same way.
    sqlx::raw_sql(
        "do $roles$
         declare spec record;
         begin
           for spec in select * from (values ('anon', 'nologin noinherit'),
               ('authenticated', 'nologin noinherit'), ('service_role', 'nologin noinherit bypassrls'),
               ('authenticator', 'login noinherit')) as r(name, options)
           loop
             if not exists (select from pg_roles where rolname = spec.name) then
               execute format('create role %I %s', spec.name, spec.options);
             end if;
           end loop;
         end
         $roles$",
    )
    .execute(&pool)
    .await
    .context("creating the request roles the backup's grants name")?;
    pool.close().await;

    let started = std::time::Instant::now();
    let mut command = std::process::Command::new(pg_tool("pg_restore")?);
    command
        .arg("--no-owner")
        .arg("--exit-on-error")
        .arg("--single-transaction");
    if holds_data {
        command.arg("--clean").arg("--if-exists");
    }
    command.arg("--dbname").arg(&database.url).arg(file);
    let status = run_tool(command).await.context("running pg_restore")?;
    anyhow::ensure!(
        status.success(),
        "pg_restore of {} into {} failed ({status}): nothing was restored (one transaction)",
        file.display(),
        database.describe()
    );
    output::line(&format!(
        "restored {} into {} in {:.1} s; `pesachama check` verifies it",
        file.display(),
        database.describe(),
        started.elapsed().as_secs_f64()
    ));
    Ok(ExitCode::SUCCESS)
}
