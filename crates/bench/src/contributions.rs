//! Contributions recorded per second through the API against pgbench's TPC-B rate on the same
//! server in the same run, and read latency under half that load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pesachama_api::AppState;
use pesachama_api::contribution_batches::{ContributionRequest, record_batch};
use pesachama_api::error::ApiError;
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

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

/// A chairperson and the chama they created (who may record contributions, as a treasurer may).
pub(crate) struct Treasurer {
    pub(crate) token: String,
    pub(crate) chama: String,
    pub(crate) member: String,
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
    let treasurers = chamas_with_chairpersons(&app, clients, "Benchmark chama", 100_000).await?;

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

    integrity_passes(&app.db.pool).await
}

/// Fails unless every check of the integrity report passes (the ledger balances).
pub(crate) async fn integrity_passes(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let failing: Vec<(String, i64)> = sqlx::query_as(
        "select check_name, violations from internal.integrity_report() where violations > 0",
    )
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(
        failing.is_empty(),
        "the ledger does not balance after the run: {failing:?}"
    );
    println!("integrity report after the run: every check passes");
    Ok(())
}

/// Chamas the batches of `batch_cost` spread over: a batch of up to this many holds one
/// request per chama, as the API's batches do when each client records for a chama of its own.
const COST_CHAMAS: usize = 8;

/// What one call of `internal.record_manual_contributions` costs for each batch size (the
/// median of `rounds` runs of `phase`, the sizes taking turns), on one connection with nothing
/// else running, fitted to `fixed + per contribution × size` by least
/// squares, next to one pgbench TPC-B transaction on one connection of the same server.
///
/// Under load a batch is as large as the concurrency makes it (2.4 requests with 8 clients and
/// 2 writers), so the fixed part decides what a contribution costs there.
pub async fn batch_cost(phase: Duration, sizes: &[usize], rounds: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        !sizes.is_empty() && !sizes.contains(&0),
        "--sizes needs at least one size, none of them 0"
    );
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    let tps = pgbench_tps(phase, 1, 1).await?;
    let tpcb_ms = 1e3 / tps;
    println!(
        "pgbench TPC-B (scale {}, 1 client): {tps:.0} transactions/s = {tpcb_ms:.3} ms each",
        pgbench_scale(1)
    );

    let db = TestDb::new().await;
    let pool = pesachama_store::connect(&db.url, 4).await?;
    let mut config = TestApp::config();
    config.auth.rate_limits.signup = i32::MAX;
    let app = TestApp::spawn_state(db, AppState::new(pool, config)).await;
    let chamas = chamas_with_chairpersons(&app, COST_CHAMAS, "Benchmark chama", 100_000).await?;
    let chamas = chamas
        .iter()
        .map(|t| Ok((t.member.parse::<Uuid>()?, t.chama.parse::<Uuid>()?)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut conn = app.db.pool.acquire().await?;
    let mut key = 0u64;
    // Each size runs `rounds` times, the sizes taking turns, and keeps its median: on a
    // machine whose speed drifts, a slow stretch then lands in one round of every size rather
    // than in all the rounds of one.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for _ in 0..rounds {
        for (&size, times) in sizes.iter().zip(&mut times) {
            let started = Instant::now();
            let mut calls = 0usize;
            while started.elapsed() < phase {
                let requests: Vec<ContributionRequest> = (0..size)
                    .map(|j| {
                        let (member, chama) = chamas[(calls * size + j) % chamas.len()];
                        key += 1;
                        ContributionRequest {
                            actor: member,
                            chama_id: chama,
                            member_id: member,
                            amount: 1000 + (key % 1000) as i64,
                            method: "cash".into(),
                            reference: None,
                            description: None,
                            idempotency_key: format!("cost-{key}"),
                            request_hash: "batch-cost".into(),
                        }
                    })
                    .collect();
                let refs: Vec<&ContributionRequest> = requests.iter().collect();
                let answers = record_batch(&mut *conn, &refs)
                    .await
                    .map_err(|err| anyhow::anyhow!("a batch failed: {:?}", ApiError::from(err)))?;
                if let Some(Err(err)) = answers.iter().find(|answer| answer.is_err()) {
                    anyhow::bail!("a contribution was refused: {err:?}");
                }
                calls += 1;
            }
            times.push(started.elapsed().as_secs_f64() * 1e3 / calls as f64);
        }
    }
    let mut points = Vec::new();
    for (&size, times) in sizes.iter().zip(&mut times) {
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let each = ms / size as f64;
        let each_round = times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>();
        println!(
            "batches of {size}: {ms:.2} ms a call (median of {}), {each:.3} ms a contribution = {:.1} TPC-B transactions",
            each_round.join(", "),
            each / tpcb_ms
        );
        points.push((size as f64, ms));
    }

    if let Some((fixed, per)) = least_squares(&points) {
        println!(
            "fitted: {fixed:.2} ms a batch (= {:.1} TPC-B transactions) + {per:.3} ms a contribution (= {:.1})",
            fixed / tpcb_ms,
            per / tpcb_ms
        );
    }
    integrity_passes(&app.db.pool).await
}

/// The line `y = a + b x` nearest the points, as `(a, b)`; none for fewer than two sizes.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| (my - sxy / sxx * mx, sxy / sxx))
}

/// `count` chamas named `<label> <i>`, each created through the API by a chairperson of its
/// own, with `contribution_amount` (cents) as the chama's contribution.
pub(crate) async fn chamas_with_chairpersons(
    app: &TestApp,
    count: usize,
    label: &str,
    contribution_amount: i64,
) -> anyhow::Result<Vec<Arc<Treasurer>>> {
    let mut treasurers = Vec::new();
    for i in 0..count {
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
            .json(&json!({ "name": format!("{label} {i}"), "contribution_amount": contribution_amount }))
            .send()
            .await?
            .json()
            .await?;
        let chama = chama["id"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(
            !token.is_empty() && !member.is_empty() && !chama.is_empty(),
            "setting up benchmark chama {i}: the signup or the chama was refused"
        );
        treasurers.push(Arc::new(Treasurer {
            token,
            chama,
            member,
        }));
    }
    Ok(treasurers)
}

#[cfg(test)]
mod tests {
    use super::least_squares;

    #[test]
    fn least_squares_recovers_a_line_and_needs_two_sizes() {
        let points = [(1.0, 2.8), (2.0, 3.3), (4.0, 4.3), (8.0, 6.3)];
        let (fixed, per) = least_squares(&points).expect("four sizes fit a line");
        assert!((fixed - 2.3).abs() < 1e-9, "fixed {fixed}");
        assert!((per - 0.5).abs() < 1e-9, "per {per}");
        assert_eq!(least_squares(&[(4.0, 4.3)]), None);
        assert_eq!(least_squares(&[(4.0, 4.3), (4.0, 4.5)]), None);
    }
}
