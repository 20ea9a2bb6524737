//! Contributions recorded per second through the API against pgbench's TPC-B rate on the same
//! server in the same run, and read latency under half that load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pesachama_api::AppState;
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const PASSWORD: &str = "tembo-na-twiga-42";

/// The pgbench scale for `clients`: at least one branch per client, as pgbench's documentation
/// advises (TPC-B updates one branch row per transaction, so fewer branches than clients
/// measures the queue on those rows, not the machine), and never below 10.
pub(crate) fn pgbench_scale(clients: usize) -> usize {
    clients.max(10)
}

/// pgbench's TPC-B rate on a fresh database of the same server.
pub(crate) async fn pgbench_tps(
    phase: Duration,
    clients: usize,
    threads: usize,
) -> anyhow::Result<f64> {
    let db = TestDb::empty().await;
    // Nothing else runs meanwhile, so blocking this thread on pgbench is fine.
    let init = std::process::Command::new("pgbench")
        .args([
            "-i",
            "-q",
            "-s",
            &pgbench_scale(clients).to_string(),
            &db.url,
        ])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let run = std::process::Command::new("pgbench")
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &threads.to_string(),
            "-T",
            &phase.as_secs().max(1).to_string(),
            &db.url,
        ])
        .output()?;
    anyhow::ensure!(
        run.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    out.lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|tps| tps.parse::<f64>().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output:\n{out}"))
}

struct Treasurer {
    token: String,
    chama: String,
    member: String,
}

pub async fn run(phase: Duration, clients: Option<usize>, writers: usize) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let clients = clients.unwrap_or(cores * 4).max(1);
    println!(
        "machine: {cores} cores; {clients} clients; {writers} contribution writers; each timed phase {phase:?}"
    );
    let tps = pgbench_tps(phase, clients, cores.min(clients)).await?;
    println!(
        "pgbench TPC-B (scale {}, {clients} clients): {tps:.0} transactions/s",
        pgbench_scale(clients)
    );

    let db = TestDb::new().await;
    let pool = pesachama_store::connect(&db.url, clients as u32 + writers as u32 + 4).await?;
    let mut config = TestApp::config();
    config.contribution_writers = writers;
    config.auth.rate_limits.signup = i32::MAX;
    config.auth.rate_limits.token = i32::MAX;
    let app = Arc::new(TestApp::spawn_state(db, AppState::new(pool, config)).await);

    // One chama per client, so the figure is the system's, not one chama's queue.
    let mut treasurers = Vec::new();
    for i in 0..clients {
        let signup: Value = app
            .auth(reqwest::Method::POST, "/signup")
            .json(&json!({ "email": format!("chair{i}@example.co.ke"), "password": PASSWORD }))
            .send()
            .await?
            .json()
            .await?;
        let token = signup["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let member = signup["user"]["id"].as_str().unwrap_or_default().to_owned();
        let chama: Value = app
            .client
            .post(app.url("/chamas"))
            .bearer_auth(&token)
            .json(&json!({ "name": format!("Benchmark chama {i}"), "contribution_amount": 100000 }))
            .send()
            .await?
            .json()
            .await?;
        // The chairperson records (treasurer or chairperson may).
        treasurers.push(Arc::new(Treasurer {
            token,
            chama: chama["id"].as_str().unwrap_or_default().to_owned(),
            member,
        }));
    }

    let counter = Arc::new(AtomicU64::new(0));
    let contribute = |t: Arc<Treasurer>, app: Arc<TestApp>, counter: Arc<AtomicU64>| async move {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let response = app
            .client
            .post(app.url("/transactions"))
            .bearer_auth(&t.token)
            .header("idempotency-key", format!("bench-{n}"))
            .json(&json!({ "chama_id": t.chama, "member_id": t.member, "amount": 1000 + (n % 1000) as i64, "payment_method": "cash" }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "contribution failed: {}",
            response.status()
        );
        anyhow::Ok(())
    };

    // Full speed.
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in &treasurers {
        let (t, app, counter, done) = (t.clone(), app.clone(), counter.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < phase {
                contribute(t.clone(), app.clone(), counter.clone()).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "contributions through POST /transactions: {rate:.0}/s = {:.2} of pgbench's TPC-B rate",
        rate / tps
    );
    // Rows one transaction wrote share its xmin: how many requests each batch held.
    let (rows, batches): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct xmin::text) from public.transactions
          where description is null and payment_method = 'cash'",
    )
    .fetch_one(&app.db.pool)
    .await?;
    println!(
        "  in {batches} database transactions: {:.1} contributions per batch on average",
        rows as f64 / batches.max(1) as f64
    );

    // Half that load, paced, while other clients read.
    let target = rate / 2.0;
    let interval = Duration::from_secs_f64(treasurers.len() as f64 / target.max(1.0));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in &treasurers {
        let (t, app, counter) = (t.clone(), app.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            while started.elapsed() < phase {
                ticker.tick().await;
                contribute(t.clone(), app.clone(), counter.clone()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in treasurers.iter().take(cores) {
        let (t, app, latencies) = (t.clone(), app.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let paths = [
                format!("/chamas/{}", t.chama),
                "/chamas".to_owned(),
                "/notifications?limit=20".to_owned(),
                format!("/chamas/{}/members", t.chama),
            ];
            let mut i = 0;
            while started.elapsed() < phase {
                let path = &paths[i % paths.len()];
                i += 1;
                let sent = Instant::now();
                let response = app
                    .client
                    .get(app.url(path))
                    .bearer_auth(&t.token)
                    .send()
                    .await?;
                anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
                let _ = response.bytes().await?;
                latencies.lock().await.push(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    if !latencies.is_empty() {
        println!(
            "reads (GET /chamas/{{id}}, /chamas, /notifications, /chamas/{{id}}/members) at {target:.0} contributions/s: {} reads, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            latencies.len(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.95).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3
        );
    }

    let failing: Vec<(String, i64)> = sqlx::query_as(
        "select check_name, violations from internal.integrity_report() where violations > 0",
    )
    .fetch_all(&app.db.pool)
    .await?;
    anyhow::ensure!(
        failing.is_empty(),
        "the ledger does not balance after the run: {failing:?}"
    );
    println!("integrity report after the run: every check passes");
    Ok(())
}
