//! The embedded default end to end: a cold start from an empty data folder, `db url` while it
//! runs, a clean stop on SIGTERM, and the one-line errors of bad configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{pesachama, remove_cluster_files, run, stderr, stdout};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(url: &str, timeout: Duration) -> reqwest::Response {
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(url).await {
            return response;
        }
        assert!(
            started.elapsed() < timeout,
            "{url} did not answer within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_cold_starts_on_an_embedded_cluster_and_stops_it_on_sigterm() {
    // tempfile makes a 0700 folder: when the tests run as root, the unprivileged server user
    // cannot enter it, so this also covers the server home moving to the temp folder.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    let data = data_dir.to_str().unwrap();
    let port = free_port();
    let mut server = pesachama()
        .args([
            "--data-dir",
            data,
            "serve",
            "--demo",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        // To a file, not a pipe: nobody would drain a pipe, and a server blocked writing its
        // log (one line per request while we poll /health) would never stop.
        .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
        .spawn()
        .unwrap();

    let health = wait_for(
        &format!("http://127.0.0.1:{port}/health"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // `db url` names the running cluster, and the URL works.
    let url = run(&["--data-dir", data, "db", "url"]);
    assert!(url.status.success(), "{}", stderr(&url));
    let url = stdout(&url).trim().to_owned();
    assert!(url.starts_with("postgres://postgres:"), "{url}");
    let pool = pesachama_store::connect(&url, 1).await.unwrap();
    let chamas: i64 = sqlx::query_scalar("select count(*) from public.chamas")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(chamas >= 3, "demo data loaded: {chamas} chamas");
    pool.close().await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if stopping.elapsed() > Duration::from_secs(30) {
            let _ = server.kill();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("serve did not stop within 30 s of SIGTERM; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "serve exits cleanly on SIGTERM");

    let after = run(&["--data-dir", data, "db", "url"]);
    assert_eq!(
        after.status.code(),
        Some(1),
        "the cluster stopped with the server"
    );
    assert!(stderr(&after).contains("no embedded PostgreSQL is running"));

    // A second start reuses the cluster and its data.
    let again = run(&["--data-dir", data, "check"]);
    assert!(
        again.status.success(),
        "{}{}",
        stdout(&again),
        stderr(&again)
    );
    remove_cluster_files(&data_dir);
}

#[test]
fn serve_on_a_port_in_use_fails_in_one_line_before_creating_anything() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    let output = run(&[
        "--data-dir",
        data_dir.to_str().unwrap(),
        "serve",
        "--port",
        &port,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.starts_with("error: cannot listen on 127.0.0.1:"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!data_dir.exists(), "no cluster was created");
}

#[test]
fn missing_postgresql_binaries_say_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("state");
    let output = pesachama()
        .env("PESACHAMA_PG_BIN", "/nonexistent")
        .args(["--data-dir", data_dir.to_str().unwrap(), "db", "status"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("apt-get install postgresql"),
        "{}",
        stderr(&output)
    );
    assert!(!data_dir.exists(), "nothing half-created");
}

#[test]
fn unknown_flags_are_usage_errors() {
    let output = run(&["serve", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--no-such-flag"));
}

#[test]
fn a_malformed_database_url_names_the_setting() {
    let output = run(&["--database-url", "mysql://localhost/db", "db", "status"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("DATABASE_URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_database_is_one_clear_line() {
    let port = free_port();
    let output = run(&[
        "--database-url",
        &format!("postgres://u:secret@127.0.0.1:{port}/db"),
        "db",
        "status",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("Connection refused"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password is never printed: {message}"
    );
}

#[test]
fn a_malformed_log_level_names_the_setting() {
    let output = pesachama()
        .env("LOG_LEVEL", "very=loud=please")
        .args(["db", "url"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("LOG_LEVEL"), "{}", stderr(&output));
}

/// A backup restored into an empty data folder: the folder gets its cluster, the restore passes
/// `check`, and the cluster is stopped again afterwards (issue 32 #4).
#[tokio::test]
async fn a_backup_restores_into_an_empty_data_folder_which_gets_its_cluster() {
    if pesachama_testkit::supabase_mode() {
        return; // a Supabase database is backed up by the project (docs/operations.md)
    }
    let source = pesachama_testkit::TestDb::new().await;
    pesachama_store::seed_demo(&source.pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.dump");
    let backed = run(&[
        "--database-url",
        &source.url,
        "db",
        "backup",
        file.to_str().unwrap(),
    ]);
    assert!(backed.status.success(), "{}", stderr(&backed));

    let data_dir = dir.path().join("state");
    let data = data_dir.to_str().unwrap();
    let restored = run(&["--data-dir", data, "db", "restore", file.to_str().unwrap()]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let check = run(&["--data-dir", data, "check"]);
    assert!(
        check.status.success(),
        "{}\n{}",
        stdout(&check),
        stderr(&check)
    );
    assert!(stdout(&check).contains(" 0 failed"), "{}", stdout(&check));
    let running = run(&["--data-dir", data, "db", "url"]);
    assert!(
        !running.status.success(),
        "the commands stopped the cluster they started"
    );
    remove_cluster_files(&data_dir);
}
