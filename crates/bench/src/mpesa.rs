//! STK callbacks applied per second, end to end (POST to the callback route → stored raw →
//! acknowledged → applied: journal, balances, transactions row, notification, audit), against
//! pgbench's TPC-B rate on the same server in the same run; and the time from a callback's
//! POST to its acknowledgement (p50/p99).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pesachama_api::AppState;
use pesachama_api::mpesa_worker::{Mpesa, MpesaWorker};
use pesachama_mpesa::DarajaClient;
use pesachama_mpesa::simulator::{Simulator, SimulatorConfig};
use pesachama_testkit::{TestApp, TestDb};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::contributions::{chamas_with_chairpersons, integrity_passes};

const TOKEN: &str = "bench-callback-token-0123456789abcdef";
/// Payment requests waiting per client: more than a phase can use.
const PER_CLIENT: i64 = 12000;

fn callback(checkout: &str, receipt: &str, phone: i64) -> Value {
    json!({ "Body": { "stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": { "Item": [
            { "Name": "Amount", "Value": 10 }, { "Name": "MpesaReceiptNumber", "Value": receipt },
            { "Name": "Balance" }, { "Name": "TransactionDate", "Value": 20261201133416_i64 },
            { "Name": "PhoneNumber", "Value": phone } ] } } } })
}

pub async fn run(phase: Duration) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let clients = cores * 4;
    println!("machine: {cores} cores; {clients} clients; each timed phase {phase:?}");
    let tps = crate::contributions::pgbench_tps(phase, clients, cores).await?;
    println!(
        "pgbench TPC-B (scale {}, {clients} clients): {tps:.0} transactions/s",
        crate::contributions::pgbench_scale(clients)
    );

    let sim = Simulator::new(SimulatorConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .start()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mpesa = Arc::new(Mpesa::new(
        DarajaClient::new(sim.client_config())?,
        &format!("http://{address}"),
        TOKEN,
    ));
    let db = TestDb::new().await;
    let pool = pesachama_store::connect(&db.url, clients as u32 + 8).await?;
    let mut config = TestApp::config();
    config.auth.rate_limits.signup = i32::MAX;
    config.mpesa = Some(mpesa.clone());
    let app =
        Arc::new(TestApp::spawn_listener(listener, db, AppState::new(pool.clone(), config)).await);
    // The M-Pesa worker, as `serve` runs it: it applies what the route's applier could not
    // take (its queue full) from the inbox.
    let worker = tokio::spawn(MpesaWorker::new(pool, mpesa.clone()).run(std::future::pending()));

    // One chama per client (its member, phone and waiting STK requests), so the figure is the
    // system's, not one chama's queue.
    let chamas = chamas_with_chairpersons(&app, clients, "STK benchmark chama", 1000).await?;
    for (i, chama) in chamas.iter().enumerate() {
        let phone = format!("+2547{:08}", i);
        sqlx::query("update public.users set phone = $2 where id = $1::uuid")
            .bind(&chama.member)
            .bind(&phone)
            .execute(&app.db.pool)
            .await?;
        sqlx::query(
            "insert into public.payment_requests (chama_id, user_id, phone, amount, status, checkout_request_id)
             select $1::uuid, $2::uuid, $3, 1000, 'sent', 'ws_CO_bench_' || $4 || '_' || k
               from generate_series(1, $5) k",
        )
        .bind(&chama.chama)
        .bind(&chama.member)
        .bind(&phone)
        .bind(i as i64)
        .bind(PER_CLIENT)
        .execute(&app.db.pool)
        .await?;
    }

    let url = mpesa.callback_url("stk");
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let posted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (app, url, latencies, posted) =
            (app.clone(), url.clone(), latencies.clone(), posted.clone());
        tasks.push(tokio::spawn(async move {
            let phone: i64 = format!("2547{:08}", i).parse().unwrap_or_default();
            let mut mine = Vec::new();
            let mut k = 1;
            while started.elapsed() < phase && k <= PER_CLIENT {
                let n = posted.fetch_add(1, Ordering::Relaxed);
                let body = callback(&format!("ws_CO_bench_{i}_{k}"), &format!("B{n:09}"), phone);
                let sent = Instant::now();
                let response = app.client.post(&url).json(&body).send().await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "callback answered {}",
                    response.status()
                );
                mine.push(sent.elapsed());
                k += 1;
            }
            latencies.lock().await.extend(mine);
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = posted.load(Ordering::Relaxed) as i64;
    // Applied: wait until every acknowledged callback is credited. Counted as the stored
    // callbacks no longer waiting (the inbox's partial index of pending ones, which holds only
    // the backlog), not by scanning requests: a scan every 20 ms had been a fifth of the
    // database's work, and counting the open requests' index, a tenth.
    let applied = || async {
        let pending: i64 = sqlx::query_scalar(
            "select count(*) from internal.mpesa_callbacks where status in ('received', 'failed')",
        )
        .fetch_one(&app.db.pool)
        .await?;
        anyhow::Ok(total - pending)
    };
    loop {
        if applied().await? >= total || started.elapsed() > phase * 4 {
            break;
        }
        // Each count reads the backlog's index entries (2 to 6 ms under load), on the cores the
        // appliers use; every 50 ms it takes less from them than every 20 ms did, for at most
        // 50 ms of error in the finishing time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Every callback the count calls applied must have credited its request (both counted in
    // one snapshot: appliers may still be at work after a timed-out wait).
    let (pending, credited): (i64, i64) = sqlx::query_as(
        "select (select count(*) from internal.mpesa_callbacks where status in ('received', 'failed')),
                (select count(*) from public.payment_requests where status = 'completed')",
    )
    .fetch_one(&app.db.pool)
    .await?;
    let applied = total - pending;
    anyhow::ensure!(
        credited == applied,
        "{applied} callbacks applied but {credited} requests credited"
    );
    let rate = applied as f64 / elapsed;
    println!(
        "STK callbacks applied end to end: {applied} of {total} in {elapsed:.1} s = {rate:.0}/s = {:.2} of pgbench's TPC-B rate",
        rate / tps
    );
    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    if !latencies.is_empty() {
        let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        println!(
            "callback to acknowledgement: p50 {:.1} ms, p99 {:.1} ms",
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3
        );
    }
    let checked = integrity_passes(&app.db.pool).await;
    worker.abort();
    checked
}
