//! `db migrate`, `db status`, `check` and `keys` against a real database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{run, stderr, stdout};
use pesachama_testkit::TestDb;

#[tokio::test]
async fn db_migrate_applies_everything_then_nothing() {
    let db = TestDb::empty().await;
    let first = run(&["--database-url", &db.url, "db", "migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let applied = stdout(&first)
        .lines()
        .filter(|line| line.starts_with("applied "))
        .count();
    assert_eq!(applied, pesachama_store::migrations::EMBEDDED.len());

    let second = run(&["--database-url", &db.url, "db", "migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("nothing to apply"),
        "{}",
        stdout(&second)
    );
}

#[tokio::test]
async fn db_status_lists_every_migration_as_applied() {
    let db = TestDb::new().await;
    let output = run(&["--database-url", &db.url, "db", "status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let status: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status.len(), pesachama_store::migrations::EMBEDDED.len());
    assert!(
        status
            .iter()
            .all(|m| m["state"] == "applied" && m["applied_at"].is_string())
    );

    let table = run(&["--database-url", &db.url, "db", "status"]);
    assert!(stdout(&table).contains("0 pending"), "{}", stdout(&table));
}

#[tokio::test]
async fn check_passes_on_the_demo_data() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    let output = run(&["--database-url", &db.url, "check"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains(" 0 failed"));
}

#[tokio::test]
async fn check_fails_with_exit_1_when_a_balance_drifts_from_the_ledger() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    // What the founding plan's read-modify-write handler does under concurrency: a balance
    // written by hand, no journal behind it.
    sqlx::query("update public.chamas set balance = balance + 100 where id = (select id from public.chamas order by name limit 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    let output = run(&["--database-url", &db.url, "check", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["violations"].as_i64().unwrap() > 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "exactly the drift check fails: {failed:?}");
    assert!(failed[0].contains("balance"), "{failed:?}");
}

#[tokio::test]
async fn check_fails_on_a_live_user_with_an_invalid_email() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    // The constraint would refuse it; a legacy import with the constraint dropped would not.
    let constraint: String = sqlx::query_scalar(
        "select conname from pg_constraint where conrelid = 'public.users'::regclass and contype = 'c' and pg_get_constraintdef(oid) ilike '%email%' and pg_get_constraintdef(oid) like '%~%' limit 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "alter table public.users drop constraint {constraint}"
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("update public.users set email = 'jane@' where id = (select id from public.users where email is not null order by email limit 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    let output = run(&["--database-url", &db.url, "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("FAIL"), "{}", stdout(&output));
}

#[tokio::test]
async fn check_on_a_database_without_the_schema_says_to_migrate() {
    let db = TestDb::empty().await;
    let output = run(&["--database-url", &db.url, "check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("pesachama db migrate"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn keys_are_supabase_api_keys_for_the_configured_secret() {
    let secret = "a-test-secret-that-is-at-least-32-characters-long";
    let output = common::pesachama()
        .env("SUPABASE_JWT_SECRET", secret)
        .env("SUPABASE_URL", "https://abcdefgh.supabase.co")
        .args(["keys"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("anon: eyJ"));
    assert!(lines[1].starts_with("service_role: eyJ"));

    // The same secret gives the same keys, so a .env written once stays valid.
    let again = common::pesachama()
        .env("SUPABASE_JWT_SECRET", secret)
        .env("SUPABASE_URL", "https://abcdefgh.supabase.co")
        .args(["keys", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        format!("anon: {}", json["anon"].as_str().unwrap()),
        lines[0]
    );
}

#[test]
fn keys_with_a_database_url_but_no_secret_name_the_missing_setting() {
    let output = run(&[
        "--database-url",
        "postgres://u:p@db.example:5432/postgres",
        "keys",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("SUPABASE_JWT_SECRET is not set"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn serve_refuses_to_start_when_the_jwks_url_cannot_be_fetched() {
    let db = TestDb::new().await;
    let output = run(&[
        "--database-url",
        &db.url,
        "--jwt-secret",
        "a-test-secret-that-is-long-enough-for-hs256",
        "serve",
        "--port",
        "0",
        "--jwks-url",
        "http://127.0.0.1:9/auth/v1/.well-known/jwks.json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("SUPABASE_JWKS_URL: cannot fetch"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn admin_grant_and_revoke_by_email_or_phone() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    let granted = run(&["--database-url", &db.url, "admin", "grant", "0720345007"]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    assert!(
        stdout(&granted).contains("granted platform admin"),
        "{}",
        stdout(&granted)
    );
    let role: Option<String> = sqlx::query_scalar(
        "select raw_app_meta_data->>'platform_role' from auth.users where id = '5eed0000-0000-4000-8000-000000000007'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(role.as_deref(), Some("admin"));

    let revoked = run(&[
        "--database-url",
        &db.url,
        "admin",
        "revoke",
        "+254720345007",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let role: Option<String> = sqlx::query_scalar(
        "select raw_app_meta_data->>'platform_role' from auth.users where id = '5eed0000-0000-4000-8000-000000000007'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(role, None);

    let nobody = run(&[
        "--database-url",
        &db.url,
        "admin",
        "grant",
        "nobody@example.com",
    ]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        stderr(&nobody).contains("no user has"),
        "{}",
        stderr(&nobody)
    );
}

/// Outside `--demo`, an email or phone counts only once its code came back: the settings that
/// supabase-js reads say so, and a phone sign-up gets no session.
#[tokio::test]
async fn serve_without_demo_requires_confirmation() {
    use pesachama_testkit::{TEST_JWT_SECRET, TestApp};
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = common::pesachama()
        .args(["--database-url", &db.url, "serve", "--port"])
        .arg(port.to_string())
        .env("SUPABASE_JWT_SECRET", TEST_JWT_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let settings = loop {
        if let Ok(answer) = client
            .get(format!("{base}/auth/v1/settings"))
            .header("apikey", TestApp::api_key("anon"))
            .send()
            .await
            && answer.status() == 200
        {
            break answer.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "serve did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(settings["phone_autoconfirm"], false, "{settings}");
    assert_eq!(settings["mailer_autoconfirm"], false, "{settings}");
    let signup: serde_json::Value = client
        .post(format!("{base}/auth/v1/signup"))
        .header("apikey", TestApp::api_key("anon"))
        .json(
            &serde_json::json!({ "phone": "0799000333", "password": "a-long-password-for-tests" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(signup.get("access_token").is_none(), "{signup}");
    assert!(signup["phone_confirmed_at"].is_null(), "{signup}");
    server.kill().unwrap();
    let _ = server.wait();
}

/// The chamas' balances and the members' totals, to compare two databases by.
async fn books(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select c.id::text, c.balance from public.chamas c
         union all
         select m.id::text, m.contributed_total from public.chama_members m
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// `db backup` then `db restore` into an empty database: the restore passes `check` and holds
/// the same books; restoring over data is refused unless `--force`; a backup never overwrites
/// a file.
#[tokio::test]
async fn a_backup_restores_into_an_empty_database_with_the_same_books() {
    if pesachama_testkit::supabase_mode() {
        // A Supabase project's database is backed up by the project (docs/operations.md); its
        // `auth` and `storage` belong to Supabase's roles, which a restore cannot recreate.
        return;
    }
    let source = TestDb::new().await;
    pesachama_store::seed_demo(&source.pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pesachama.dump");
    let file_arg = file.to_str().unwrap();

    let backed = run(&["--database-url", &source.url, "db", "backup", file_arg]);
    assert!(backed.status.success(), "{}", stderr(&backed));
    assert!(stdout(&backed).contains("backed up"), "{}", stdout(&backed));
    let again = run(&["--database-url", &source.url, "db", "backup", file_arg]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );

    let target = TestDb::empty().await;
    let restored = run(&["--database-url", &target.url, "db", "restore", file_arg]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let check = run(&["--database-url", &target.url, "check"]);
    assert!(
        check.status.success(),
        "{}\n{}",
        stdout(&check),
        stderr(&check)
    );
    assert!(stdout(&check).contains(" 0 failed"), "{}", stdout(&check));
    assert_eq!(books(&target.pool).await, books(&source.pool).await);
    assert!(!books(&target.pool).await.is_empty());

    // Over data: refused, nothing touched; with --force, replaced by the backup.
    sqlx::query("update public.users set first_name = 'Changed' where first_name = 'Wanjiku'")
        .execute(&target.pool)
        .await
        .unwrap();
    let refused = run(&["--database-url", &target.url, "db", "restore", file_arg]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    let changed: i64 =
        sqlx::query_scalar("select count(*) from public.users where first_name = 'Changed'")
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(changed, 1, "a refused restore touches nothing");
    target.pool.close().await;
    let forced = run(&[
        "--database-url",
        &target.url,
        "db",
        "restore",
        "--force",
        file_arg,
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let pool = pesachama_store::connect(&target.url, 1).await.unwrap();
    let changed: i64 =
        sqlx::query_scalar("select count(*) from public.users where first_name = 'Changed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(changed, 0, "the backup replaced the database");
    assert_eq!(books(&pool).await, books(&source.pool).await);
}
