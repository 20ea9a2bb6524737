//! `pesachama migrate ...` through the real binary: generate, plan (report files), copy
//! (refused without a terminal or --yes), verify (exit code), status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pesachama, stderr, stdout};
use pesachama_testkit::TestDb;

#[tokio::test]
async fn generate_plan_copy_verify_status_through_the_binary() {
    let legacy = TestDb::empty().await;
    let target = TestDb::new().await;
    let reports = tempfile::tempdir().unwrap();
    let migrate = |args: &[&str]| {
        pesachama()
            .env("LEGACY_DATABASE_URL", &legacy.url)
            .env("DATABASE_URL", &target.url)
            .arg("migrate")
            .args(args)
            .output()
            .expect("run pesachama")
    };

    let refused = migrate(&["generate-legacy", "--scale", "0.001"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );

    let made = migrate(&[
        "generate-legacy",
        "--scale",
        "0.001",
        "--quirk-rate",
        "0.05",
        "--yes",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stdout(&made).contains("generated"), "{}", stdout(&made));

    let dir = reports.path().to_str().unwrap();
    let plan = migrate(&["plan", "--report-dir", dir]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(stdout(&plan).contains("## Rows that cannot move (why)"));
    assert!(
        stdout(&plan).contains("will not stop on the quarantine threshold"),
        "{}",
        stdout(&plan)
    );
    // With a limit below what cannot move, plan says beforehand that copy will stop.
    let strict = migrate(&["plan", "--report-dir", dir, "--max-quarantine", "1"]);
    assert!(strict.status.success(), "{}", stderr(&strict));
    assert!(
        stdout(&strict).contains("WILL STOP on the quarantine threshold"),
        "{}",
        stdout(&strict)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.path().join("plan.json")).unwrap())
            .unwrap();
    assert!(json["tables"]["transactions"]["read"].as_u64().unwrap() > 0);
    assert!(reports.path().join("plan.md").exists());

    let refused = migrate(&["copy"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );
    let nothing: i64 = sqlx::query_scalar("select count(*) from public.users")
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_eq!(nothing, 0, "a refused copy writes nothing");

    // Stopped early (as if killed): status says what the finishing run will build.
    let stopped = migrate(&[
        "copy",
        "--yes",
        "--batch-size",
        "500",
        "--stop-after-batches",
        "2",
    ]);
    assert!(!stopped.status.success());
    let status = migrate(&["status"]);
    assert!(
        stdout(&status).contains("still to build")
            && stdout(&status).contains("transactions_pkey of transactions"),
        "{}",
        stdout(&status)
    );
    let copied = migrate(&["copy", "--yes", "--batch-size", "500"]);
    assert!(copied.status.success(), "{}", stderr(&copied));
    // Without a terminal, progress comes as plain lines (issue 28 #13).
    for line in [
        "copy: users started",
        "copy: transactions done, ",
        "copy: building the keys and indexes dropped for the load",
        "copy: keys and indexes built in ",
    ] {
        assert!(
            stderr(&copied).contains(line),
            "{line}: {}",
            stderr(&copied)
        );
    }
    assert!(!stderr(&copied).contains("ETA 0s"), "{}", stderr(&copied));
    assert!(stdout(&copied).contains("rows/s"), "{}", stdout(&copied));
    let timings = stdout(&copied)
        .lines()
        .find(|l| l.starts_with("time per step: "))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        [
            "users ",
            "transactions ",
            "audit_logs ",
            "keys and indexes built after the load "
        ]
        .iter()
        .all(|step| timings.contains(step)),
        "{}",
        stdout(&copied)
    );

    let verified = migrate(&["verify", "--report-dir", dir]);
    assert!(
        verified.status.success(),
        "{}\n{}",
        stdout(&verified),
        stderr(&verified)
    );
    assert!(
        stdout(&verified).contains(" 0 differences"),
        "{}",
        stdout(&verified)
    );

    let status = migrate(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    // Nine steps, the ledger as two halves.
    let steps: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 10, "{steps:?}");
    assert_eq!(status["still_to_build"], serde_json::json!([]));
    assert!(steps.contains(&"transactions") && steps.contains(&"transactions@2"));
    assert!(
        status["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["done"] == true)
    );

    // A difference makes verify fail, and names the row.
    sqlx::query("update public.users set first_name = 'Changed' where id = (select id from public.users order by id limit 1)")
        .execute(&target.pool).await.unwrap();
    let failed = migrate(&["verify", "--report-dir", dir]);
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert!(
        stdout(&failed).contains("public.users"),
        "{}",
        stdout(&failed)
    );
}
