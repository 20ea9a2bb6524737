//! USSD hops per second and latency per hop at many concurrent sessions, against a baseline of
//! the same server answering `GET /health` at the same concurrency in the same run.
//!
//! Each simulated phone walks a session the way members do without a PIN (home, my chamas, a
//! balance, back, home, next meeting as the member under RLS, home, exit: nine hops, each
//! posting the whole `*`-joined text as Africa's Talking does), then dials again. PIN hops are
//! not in the mix: each one is a cost-10 bcrypt verification (~70 ms of one core, see the auth
//! benchmark), so they are bound by the machine's cores, not by the USSD code.
//!
//! Two USSD phases: with no pause between hops (the most hops the server takes: 500 requests
//! always in flight, so latency is mostly queueing), and with members' pace, a pause of
//! `THINK` between a screen and the next input (a person reads and types for several seconds;
//! one second is a harsh reading of it), where the latency per hop is what a member waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pesachama_api::AppState;
use pesachama_testkit::{TestApp, TestDb};

const SESSIONS: usize = 500;
const POOL: u32 = 20;
/// The pause between an answer and the next input in the paced phase.
const THINK: Duration = Duration::from_secs(1);
/// The demo members' phones.
const PHONES: [&str; 10] = [
    "+254712345001",
    "+254722345002",
    "+254733345003",
    "+254710345004",
    "+254701345005",
    "+254798345006",
    "+254720345007",
    "+254113345008",
    "+254115345009",
    "+254727345010",
];
const WALK: [&str; 9] = [
    "",
    "1",
    "1*1",
    "1*1*0",
    "1*1*0*00",
    "1*1*0*00*6",
    "1*1*0*00*6*1",
    "1*1*0*00*6*1*00",
    "1*1*0*00*6*1*00*0",
];

fn form(session: &str, phone: &str, text: &str) -> Vec<(&'static str, String)> {
    vec![
        ("sessionId", session.to_owned()),
        ("serviceCode", "*384*21#".to_owned()),
        ("phoneNumber", phone.to_owned()),
        ("networkCode", "63902".to_owned()),
        ("text", text.to_owned()),
    ]
}

struct Figures {
    count: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Figures {
        count: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// `SESSIONS` clients each running `work` until the phase ends; every call's latency.
async fn load<F, Fut>(phase: Duration, work: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send,
{
    let start = Instant::now();
    let deadline = start + phase;
    let mut tasks = Vec::new();
    for client in 0..SESSIONS {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut round = 0;
            while Instant::now() < deadline {
                latencies.extend(work(client, round).await?);
                round += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(figures(latencies, start.elapsed()))
}

pub async fn run(phase: Duration) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "machine: {cores} cores; {SESSIONS} concurrent sessions; database pool {POOL}; each timed phase {phase:?}"
    );
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await?;
    let pool = pesachama_store::connect(&db.url, POOL).await?;
    let app = Arc::new(TestApp::spawn_state(db, AppState::new(pool, TestApp::config())).await);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SESSIONS)
        .build()?;

    let health = {
        let (app, client) = (app.clone(), client.clone());
        load(phase, move |_, _| {
            let (app, client) = (app.clone(), client.clone());
            async move {
                let sent = Instant::now();
                let response = client.get(app.url("/health")).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "GET /health: {}",
                    response.status()
                );
                let _ = response.bytes().await?;
                Ok(vec![sent.elapsed()])
            }
        })
        .await?
    };
    println!(
        "baseline GET /health: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        health.per_second,
        health.p50.as_secs_f64() * 1e3,
        health.p99.as_secs_f64() * 1e3
    );

    for think in [Duration::ZERO, THINK] {
        let hops = sessions(&app, &client, phase, think).await?;
        println!(
            "USSD hops (POST /ussd/<token>, nine-hop sessions without PIN, {} ms between hops): {} hops, {:.0}/s = {:.2} of the /health rate, p50 {:.1} ms, p99 {:.1} ms",
            think.as_millis(),
            hops.count,
            hops.per_second,
            hops.per_second / health.per_second,
            hops.p50.as_secs_f64() * 1e3,
            hops.p99.as_secs_f64() * 1e3
        );
        if !think.is_zero() {
            println!(
                "goal p99 < 50 ms at {SESSIONS} sessions at members' pace: {}",
                if hops.p99 < Duration::from_millis(50) {
                    "met"
                } else {
                    "not met"
                }
            );
        }
    }
    Ok(())
}

async fn sessions(
    app: &Arc<TestApp>,
    client: &reqwest::Client,
    phase: Duration,
    think: Duration,
) -> anyhow::Result<Figures> {
    {
        let (app, client) = (app.clone(), client.clone());
        load(phase, move |session, round| {
            let (app, client) = (app.clone(), client.clone());
            async move {
                if round == 0 {
                    // Spread the first dials over one pause, as members do not all dial at once.
                    let spread = think.mul_f64(session as f64 / SESSIONS as f64);
                    tokio::time::sleep(spread).await;
                }
                let id = format!("BENCH_{}_{session}_{round}", think.as_millis());
                let phone = PHONES[session % PHONES.len()];
                let mut latencies = Vec::with_capacity(WALK.len());
                for text in WALK {
                    let sent = Instant::now();
                    let body = client
                        .post(app.url(&format!("/ussd/{}", pesachama_testkit::TEST_USSD_TOKEN)))
                        .form(&form(&id, phone, text))
                        .send()
                        .await?
                        .text()
                        .await?;
                    latencies.push(sent.elapsed());
                    anyhow::ensure!(
                        !body.starts_with("END Sorry"),
                        "session {id} hop {text:?} failed: {body}"
                    );
                    tokio::time::sleep(think).await;
                }
                Ok(latencies)
            }
        })
        .await
    }
}
