//! Realtime delivery latency: from the commit of a row to a websocket client holding its
//! `postgres_changes` message, with 1,000 and 5,000 connected subscribers, against the raw
//! LISTEN/NOTIFY latency of the same server measured in the same run.
//!
//! Subscribers are distinct users, 50 to a chama, each on a connection of its own (vsn 2.0.0,
//! as supabase-js connects). A writer inserts one `transactions` row (no member named, so every
//! member of the chama may see it) every 20 ms, round-robin over the chamas. Two shapes:
//! every subscriber listening to the whole table (each change is checked under RLS for every
//! distinct identity: the worst case), and each listening to its own chama with a filter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pesachama_testkit::{TEST_JWT_SECRET, TestApp};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const MEMBERS_PER_CHAMA: usize = 50;
const INTERVAL: Duration = Duration::from_millis(20);

pub async fn run(phase: Duration, counts: &[usize]) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "machine: {cores} cores; one change every {INTERVAL:?} for {phase:?} per run; {MEMBERS_PER_CHAMA} subscribers per chama"
    );
    let app = TestApp::spawn().await;
    let baseline = notify_baseline(&app, phase).await?;
    println!(
        "baseline LISTEN/NOTIFY, commit to listener: {}",
        baseline.summary()
    );
    drop(app);
    for &count in counts {
        for filtered in [false, true] {
            // A fresh server and database per run, so a run never starts behind another's backlog.
            let app = TestApp::spawn().await;
            let users = make_members(&app, count).await?;
            let result = deliver(&app, &users, filtered, phase).await?;
            println!(
                "{count} subscribers, {}: {} ({} of {} deliveries)",
                if filtered {
                    "each filtered to its chama"
                } else {
                    "all on the whole table"
                },
                result.latencies.summary(),
                result.delivered,
                result.expected
            );
            println!(
                "    p95 = {:.1} x the NOTIFY baseline p95",
                result.latencies.percentile(95.0) / baseline.percentile(95.0).max(0.001)
            );
        }
    }
    Ok(())
}

struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn summary(&self) -> String {
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms over {} samples",
            self.percentile(50.0),
            self.percentile(95.0),
            self.percentile(99.0),
            self.0.len()
        )
    }
}

/// Raw NOTIFY latency: autocommit `pg_notify` returned → a PgListener on the same server has it.
async fn notify_baseline(app: &TestApp, phase: Duration) -> anyhow::Result<Latencies> {
    let mut listener = sqlx::postgres::PgListener::connect(&app.db.url).await?;
    listener.listen("bench_baseline").await?;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let pool = app.db.pool.clone();
    let writer_sent = sent.clone();
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let mut seq = 0usize;
        while started.elapsed() < phase {
            sqlx::query("select pg_notify('bench_baseline', $1)")
                .bind(seq.to_string())
                .execute(&pool)
                .await?;
            writer_sent.lock().await.push(Instant::now());
            seq += 1;
            tokio::time::sleep(INTERVAL).await;
        }
        anyhow::Ok(seq)
    });
    let mut samples = Vec::new();
    let total = loop {
        match tokio::time::timeout(Duration::from_secs(2), listener.recv()).await {
            Ok(note) => {
                let seq: usize = note?.payload().parse()?;
                let at = Instant::now();
                // The notification can beat the writer's bookkeeping; wait for it.
                loop {
                    if let Some(sent_at) = sent.lock().await.get(seq) {
                        samples.push(at.saturating_duration_since(*sent_at).as_secs_f64() * 1e3);
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            Err(_) => break writer.await??,
        }
    };
    anyhow::ensure!(samples.len() == total, "NOTIFY lost notifications");
    Ok(Latencies(samples))
}

/// `count` users in chamas of 50, inserted straight into the database, with their tokens.
async fn make_members(app: &TestApp, count: usize) -> anyhow::Result<Vec<(Uuid, Uuid, String)>> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "with people as (
           insert into auth.users (instance_id, id, aud, role, email, created_at, updated_at)
           select '00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
                  'authenticated', 'bench-' || gen_random_uuid() || '@example.co.ke', now(), now()
             from generate_series(1, $1) returning id
         ), profiles as (
           insert into public.users (id) select id from people returning id
         ), numbered as (
           select id, (row_number() over (order by id) - 1) / $2 as chama_no from profiles
         ), chamas as (
           insert into public.chamas (name, contribution_amount, created_by)
           select 'Bench ' || n.chama_no || ' ' || left(gen_random_uuid()::text, 8), 100000, null::uuid
             from numbered n group by n.chama_no returning id, name
         )
         insert into public.chama_members (chama_id, user_id, role, status, joined_at)
         select c.id, n.id, 'member', 'active', now()
           from numbered n join chamas c on split_part(c.name, ' ', 2)::bigint = n.chama_no
         returning chama_id, user_id",
    )
    .bind(i64::try_from(count)?)
    .bind(i64::try_from(MEMBERS_PER_CHAMA)?)
    .fetch_all(&app.db.pool)
    .await?;
    let issuer = pesachama_auth::TokenIssuer::hs256(
        TEST_JWT_SECRET.as_bytes(),
        "http://127.0.0.1:3000/auth/v1",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    rows.into_iter()
        .map(|(chama, user)| {
            let token = issuer.sign(&json!({
                "sub": user, "aud": "authenticated", "role": "authenticated", "iat": now,
                "exp": now + 3600, "iss": "http://127.0.0.1:3000/auth/v1",
                "app_metadata": {}, "user_metadata": {},
            }))?;
            Ok((chama, user, token))
        })
        .collect()
}

struct Delivery {
    latencies: Latencies,
    delivered: usize,
    expected: usize,
}

async fn deliver(
    app: &TestApp,
    users: &[(Uuid, Uuid, String)],
    filtered: bool,
    phase: Duration,
) -> anyhow::Result<Delivery> {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let samples: Arc<Mutex<Vec<f64>>> = Arc::default();
    let ready = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let apikey = TestApp::api_key("anon");
    let mut clients = Vec::new();
    for (chama, _, token) in users {
        let url = format!(
            "ws://{}/realtime/v1/websocket?apikey={apikey}&vsn=2.0.0",
            app.address
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        let mut binding = json!({ "event": "INSERT", "schema": "public", "table": "transactions" });
        if filtered {
            binding["filter"] = json!(format!("chama_id=eq.{chama}"));
        }
        let join = json!(["1", "1", "realtime:bench", "phx_join",
            { "config": { "postgres_changes": [binding] }, "access_token": token }]);
        socket.send(Message::Text(join.to_string().into())).await?;
        let (sent, samples, ready) = (sent.clone(), samples.clone(), ready.clone());
        let mut stop = stop_rx.clone();
        clients.push(tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = socket.next() => message,
                    _ = stop.changed() => return,
                };
                let Some(Ok(Message::Text(text))) = message else {
                    if message.is_none() {
                        return;
                    }
                    continue;
                };
                let at = Instant::now();
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match frame[3].as_str() {
                    Some("system") => {
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("postgres_changes") => {
                        let seq = frame[4]["data"]["record"]["description"]
                            .as_str()
                            .and_then(|s| s.parse::<usize>().ok());
                        if let Some(seq) = seq {
                            loop {
                                if let Some(sent_at) = sent.lock().await.get(seq) {
                                    let ms = at.saturating_duration_since(*sent_at).as_secs_f64();
                                    samples.lock().await.push(ms * 1e3);
                                    break;
                                }
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }));
    }
    while ready.load(Ordering::Relaxed) < users.len() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut chamas: Vec<Uuid> = users.iter().map(|(c, _, _)| *c).collect();
    chamas.sort_unstable();
    chamas.dedup();
    let members = |chama: Uuid| users.iter().filter(|(c, _, _)| *c == chama).count();
    let started = Instant::now();
    let mut expected = 0;
    let mut seq = 0usize;
    while started.elapsed() < phase {
        let chama = chamas[seq % chamas.len()];
        sqlx::query(
            "insert into public.transactions (chama_id, type, amount, status, payment_method, description)
             values ($1, 'contribution', 100, 'pending', 'cash', $2)",
        )
        .bind(chama)
        .bind(seq.to_string())
        .execute(&app.db.pool)
        .await?;
        sent.lock().await.push(Instant::now());
        expected += members(chama);
        seq += 1;
        tokio::time::sleep(INTERVAL).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    for client in clients {
        let _ = client.await;
    }
    let latencies = Latencies(samples.lock().await.clone());
    Ok(Delivery {
        delivered: latencies.0.len(),
        latencies,
        expected,
    })
}
