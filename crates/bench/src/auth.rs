//! Logins against the bcrypt bound, and the RLS context's cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pesachama_store::rls::{self, DbRole};
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "tembo-na-twiga-42";

pub async fn run(phase: Duration) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("machine: {cores} cores; each timed phase {phase:?}");

    // Baseline: one cost-10 bcrypt verification on one core.
    let hash = pesachama_auth::hashing::hash_password(PASSWORD)?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while started.elapsed() < phase.min(Duration::from_secs(3)) || rounds < 5 {
        assert!(pesachama_auth::hashing::verify_password(PASSWORD, &hash));
        rounds += 1;
    }
    let one = started.elapsed() / rounds;
    let bound = cores as f64 / one.as_secs_f64();
    println!(
        "bcrypt cost 10: {:.1} ms per verification; bound = {cores} cores / that = {bound:.1} logins/s",
        one.as_secs_f64() * 1e3
    );

    // GoTrue's default limit (150 token calls per 5 minutes per address) would stop a
    // benchmark that comes from one address; it measures the work, so the limits are lifted.
    let mut config = TestApp::config();
    config.auth.rate_limits.token = i32::MAX;
    config.auth.rate_limits.signup = i32::MAX;
    let app = Arc::new(TestApp::spawn_with(TestDb::new().await, config).await);
    let mut users = Vec::new();
    for i in 0..cores * 2 {
        let response = app
            .auth(reqwest::Method::POST, "/signup")
            .json(&json!({ "email": format!("bench{i}@example.co.ke"), "password": PASSWORD }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "sign-up failed: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        users.push((
            format!("bench{i}@example.co.ke"),
            body["access_token"].as_str().unwrap_or_default().to_owned(),
            body["user"]["id"]
                .as_str()
                .unwrap_or_default()
                .parse::<Uuid>()?,
        ));
    }
    let logins = timed(phase, cores * 2, {
        let app = app.clone();
        let users = users.clone();
        move |worker| {
            let app = app.clone();
            let email = users[worker].0.clone();
            async move {
                let response = app
                    .auth(reqwest::Method::POST, "/token?grant_type=password")
                    .json(&json!({ "email": email, "password": PASSWORD }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "login failed: {}",
                    response.status()
                );
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "password logins over HTTP: {logins:.1}/s = {:.2} of the bcrypt bound",
        logins / bound
    );

    // The RLS context: the same one-row read with and without `set_config(role, claims)`.
    let (_, token, me) = users[0].clone();
    let claims: Value = {
        use base64_decode::payload;
        payload(&token)?
    };
    let pool = app.db.pool.clone();
    // Alternate the two phases three times and keep the best of each, so a burst of noise
    // from elsewhere on the machine does not decide the ratio.
    let (mut plain, mut with_rls) = (0f64, 0f64);
    for _ in 0..3 {
        plain = plain.max(plain_reads(&pool, phase, cores * 2, me).await?);
        with_rls = with_rls.max(rls_reads(&pool, phase, cores * 2, me, &claims).await?);
    }
    println!(
        "one-row read in a transaction: {plain:.0}/s without the RLS context, {with_rls:.0}/s with it = {:.2} of the plain rate",
        with_rls / plain
    );
    let http = timed(phase, cores * 2, {
        let app = app.clone();
        move |_| {
            let app = app.clone();
            let token = token.clone();
            async move {
                let response = app
                    .client
                    .get(app.url(&format!("/users/{me}")))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "read failed: {}",
                    response.status()
                );
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "GET /users/{{id}} over HTTP (JWT check + RLS context + read): {http:.0}/s = {:.2} of the plain database rate",
        http / plain
    );
    Ok(())
}

/// Runs `work` from `workers` tasks for `phase`; answers completed operations per second.
async fn timed<F, Fut>(phase: Duration, workers: usize, work: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let work = work.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < phase {
                work(worker).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

mod base64_decode {
    use base64::Engine as _;

    /// The (unverified) payload of a JWT the benchmark itself obtained.
    pub fn payload(token: &str) -> anyhow::Result<serde_json::Value> {
        let part = token
            .split('.')
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

async fn plain_reads(
    pool: &sqlx::PgPool,
    phase: Duration,
    workers: usize,
    me: Uuid,
) -> anyhow::Result<f64> {
    let pool = pool.clone();
    timed(phase, workers, move |_| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            let _: Option<Uuid> = sqlx::query_scalar("select id from public.users where id = $1")
                .bind(me)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}

async fn rls_reads(
    pool: &sqlx::PgPool,
    phase: Duration,
    workers: usize,
    me: Uuid,
    claims: &Value,
) -> anyhow::Result<f64> {
    let pool = pool.clone();
    let claims = claims.clone();
    timed(phase, workers, move |_| {
        let pool = pool.clone();
        let claims = claims.clone();
        async move {
            let mut tx = rls::begin_as(&pool, DbRole::Authenticated, &claims).await?;
            let found: Option<Uuid> =
                sqlx::query_scalar("select id from public.users where id = $1")
                    .bind(me)
                    .fetch_optional(&mut *tx)
                    .await?;
            anyhow::ensure!(found == Some(me), "RLS hid the caller's own row");
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}
