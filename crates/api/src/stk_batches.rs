//! STK callbacks, stored and applied a batch at a time.
//!
//! The callback route hands each STK callback here and answers Daraja once it is stored. Two
//! writers store what arrives together with one INSERT and one commit (a repeat of a stored
//! callback is not stored again), answer each arrival, and queue the new ones. A dispatcher
//! takes whatever is queued, looks up each callback's chama, and puts them on a board shared by
//! as many appliers as the machine has cores (at most four). Each applier claims the callbacks
//! of chamas no other applier holds (whole chamas, about an idle applier's share of what waits)
//! and gives them to `internal.apply_stk_callbacks`, which credits in one transaction, one
//! statement per table, every success that matches its waiting request. Appliers never hold the
//! same chama, so their batches never wait for each other's locks, and none waits for another
//! to finish a round. A chama's callbacks are handed out in the order they were stored; within
//! a claim, the batch's credits commit before the callbacks it left alone are applied. The callbacks a batch leaves alone (failures, unknown requests, mismatches, a
//! receipt seen before) are then applied one by one by `internal.apply_stk_callback`, whose
//! rules decide them as before; so is every callback of a batch the database refuses as a
//! whole.
//!
//! Nothing here is the only way a callback gets applied. A callback that is stored is in the
//! inbox as `received` until it is applied, and the M-Pesa worker re-scans the inbox
//! ([`crate::mpesa_worker`]), so a failed batch or a killed server only delays it. A callback
//! that finds the queue full stays in the inbox too, and a refiller reads such callbacks back
//! from it as soon as the queue has room again. The re-scan skips the callbacks this process's
//! appliers hold or its refiller will read back ([`InFlight`]): applying one twice would be
//! harmless (both functions lock its inbox row and apply only a `received` one), but the
//! second would wait for the first's locks for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use pesachama_mpesa::callback::StkCallback;
use pesachama_store::mpesa as store;
use pesachama_store::{PgPool, StoreError};
use serde_json::Value;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::batching::HeldConnection;
use crate::error::ApiError;
use crate::mpesa_worker::{Mpesa, apply_parsed_stk, stk_result};

/// At most this many callbacks in one batch (one transaction).
const MAX_BATCH: usize = 128;

/// Callbacks waiting for the applier, at most; beyond that the worker's re-scan applies them.
pub const QUEUE: usize = 8192;

/// A stored callback and what the route read in it.
type Stored = (i64, StkCallback);

/// Callbacks stored in one statement and transaction, at most.
const MAX_STORED: usize = 64;

/// Callbacks waiting to be stored, at most; beyond that the route answers 503 (Daraja retries).
pub const ARRIVALS: usize = 4096;

/// Connections that store arriving callbacks, each a batch at a time.
const STORE_WRITERS: usize = 2;

/// A callback that has arrived: stored, then answered through `stored`.
#[derive(Debug)]
struct Arrival {
    key: String,
    payload: Value,
    source_ip: Option<String>,
    parsed: StkCallback,
    stored: oneshot::Sender<Result<bool, StoreError>>,
}

/// Where the callback route hands STK callbacks: stored with the others that arrive at the
/// same time (one INSERT, one commit), then queued for the applier.
#[derive(Debug)]
pub struct StkApplier {
    arrivals: mpsc::Sender<Arrival>,
}

/// The applier's queue, shared by the writers that store callbacks.
#[derive(Debug)]
struct ApplyQueue {
    queue: mpsc::Sender<Stored>,
    /// The last callback found the queue full (logged when it changes).
    behind: AtomicBool,
    /// Told when a callback is left in the inbox, and when the queue goes away.
    spilled: Arc<Notify>,
    mpesa: Arc<Mpesa>,
}

impl Drop for ApplyQueue {
    fn drop(&mut self) {
        self.spilled.notify_one(); // the refiller ends
    }
}

/// Queued callbacks keyed by chama, shared by the appliers.
type Board = crate::batching::KeyedBoard<Option<Uuid>, Stored>;

/// The STK callbacks this process has queued for its appliers or is applying. The worker's
/// re-scan leaves them to the appliers: applying one at the same time would only wait for the
/// applier's locks and then find it applied.
///
/// It also marks the callbacks this process left in the inbox when its queue was full, which its
/// refiller reads back: the re-scan leaves those to it too, rather than apply the same chamas'
/// callbacks beside the appliers.
#[derive(Debug, Default)]
pub struct InFlight {
    ids: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// The highest id left in the inbox for the refiller; 0 when it has read back every one.
    spilled_up_to: AtomicI64,
}

impl InFlight {
    fn ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        crate::batching::unpoisoned(&self.ids)
    }

    /// Callback `id` was left in the inbox for the refiller.
    fn spilled(&self, id: i64) {
        self.spilled_up_to.fetch_max(id, Ordering::AcqRel);
    }

    /// The refiller has read back every callback up to `up_to` (or given up on them: the
    /// re-scan takes them); a later one left meanwhile keeps the mark.
    fn read_back(&self, up_to: i64) {
        let _ = self
            .spilled_up_to
            .compare_exchange(up_to, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Callbacks with ids up to this are the refiller's (0: none).
    pub fn spilled_up_to(&self) -> i64 {
        self.spilled_up_to.load(Ordering::Acquire)
    }

    /// This process will apply the STK callback `id`: queued, being applied, or left in the
    /// inbox for its refiller.
    pub fn claims(&self, id: i64) -> bool {
        id <= self.spilled_up_to() || self.contains(id)
    }

    /// Marks a callback as held by this process.
    pub fn add(&self, id: i64) {
        self.ids().insert(id);
    }

    /// The callbacks are no longer held (applied, or left to the re-scan).
    pub fn remove(&self, ids: impl IntoIterator<Item = i64>) {
        let mut held = self.ids();
        for id in ids {
            held.remove(&id);
        }
    }

    /// This process will apply the callback (queued or being applied).
    pub fn contains(&self, id: i64) -> bool {
        self.ids().contains(&id)
    }

    /// Every callback held, in no order.
    pub fn held(&self) -> Vec<i64> {
        self.ids().iter().copied().collect()
    }
}

impl StkApplier {
    pub fn start(pool: PgPool, mpesa: Arc<Mpesa>) -> Self {
        Self::with_queue(pool, mpesa, QUEUE)
    }

    /// [`Self::start`] with room for `queue` callbacks waiting to be applied ([`QUEUE`] in the
    /// server).
    pub fn with_queue(pool: PgPool, mpesa: Arc<Mpesa>, queue: usize) -> Self {
        let (queue, jobs) = mpsc::channel(queue.max(1));
        let appliers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        let board = Arc::new(Board::new(appliers, MAX_BATCH, MAX_BATCH * appliers * 2));
        tokio::spawn(dispatch(
            pool.clone(),
            Arc::clone(&mpesa),
            jobs,
            Arc::clone(&board),
        ));
        for _ in 0..appliers {
            tokio::spawn(apply_claims(
                pool.clone(),
                Arc::clone(&mpesa),
                Arc::clone(&board),
            ));
        }
        let spilled = Arc::new(Notify::new());
        let applying = Arc::new(ApplyQueue {
            queue,
            behind: AtomicBool::new(false),
            spilled: Arc::clone(&spilled),
            mpesa,
        });
        tokio::spawn(refill(pool.clone(), Arc::downgrade(&applying), spilled));
        let (arrivals, arrived) = mpsc::channel(ARRIVALS);
        let arrived = Arc::new(Mutex::new(arrived));
        for _ in 0..STORE_WRITERS {
            tokio::spawn(store_batches(
                pool.clone(),
                Arc::clone(&arrived),
                Arc::clone(&applying),
            ));
        }
        Self { arrivals }
    }

    /// Stores an STK callback under `key` and queues it to be applied. Answers whether it was
    /// new (`false`: a repeat of one stored before, not stored again). When this answers, the
    /// callback is committed to the inbox.
    pub async fn store(
        &self,
        key: String,
        payload: Value,
        source_ip: Option<String>,
        parsed: StkCallback,
    ) -> Result<bool, ApiError> {
        let (stored, answer) = oneshot::channel();
        let arrival = Arrival {
            key,
            payload,
            source_ip,
            parsed,
            stored,
        };
        self.arrivals.try_send(arrival).map_err(|_| {
            ApiError::Unavailable("too many M-Pesa callbacks are waiting to be stored".into())
        })?;
        let stored = answer
            .await
            .map_err(|_| ApiError::Unavailable("the M-Pesa callback inbox has stopped".into()))?;
        Ok(stored?)
    }
}

impl ApplyQueue {
    /// Applies a stored callback soon. Never waits: when the queue is full the callback stays
    /// `received` in the inbox for the worker's re-scan.
    fn apply_soon(&self, id: i64, parsed: StkCallback) {
        self.mpesa.in_flight.add(id);
        let behind = self.queue.try_send((id, parsed)).is_err();
        if behind {
            self.mpesa.in_flight.remove([id]);
            self.mpesa.in_flight.spilled(id);
            self.spilled.notify_one();
        }
        if behind != self.behind.swap(behind, Ordering::Relaxed) {
            if behind {
                tracing::warn!(
                    queued = QUEUE,
                    "the STK applier is behind: callbacks wait in the inbox for the worker's re-scan"
                );
            } else {
                tracing::info!("the STK applier has caught up");
            }
        }
    }
}

/// Callbacks read back from the inbox at most this many at a time.
const REFILL: usize = 1024;

/// The refiller. A callback that found the queue full stayed `received` in the inbox; once the
/// queue has room again, such callbacks are read back from the inbox, oldest first, and queued
/// as if they had just been stored. (The worker's re-scan would find them too, but only
/// [`Mpesa::rescan_after`] after they arrived, and it applies them a batch at a time on one
/// connection while the appliers wait for work.)
async fn refill(pool: PgPool, applying: std::sync::Weak<ApplyQueue>, spilled: Arc<Notify>) {
    loop {
        spilled.notified().await;
        loop {
            let Some(applying) = applying.upgrade() else {
                return; // the server is gone
            };
            // Read back a good share at a time: each read walks the inbox's waiting callbacks.
            let room = applying.queue.capacity();
            if room < REFILL.min(applying.queue.max_capacity()) {
                drop(applying);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let want = room.min(REFILL);
            let in_flight = &applying.mpesa.in_flight;
            let up_to = in_flight.spilled_up_to();
            if up_to == 0 {
                break;
            }
            let found = store::spilled_stk_callbacks(
                &pool,
                up_to,
                i32::try_from(want).unwrap_or(i32::MAX),
                &in_flight.held(),
            )
            .await;
            let found = match found {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read back STK callbacks left in the inbox; the worker's re-scan applies them");
                    in_flight.read_back(up_to);
                    break;
                }
            };
            let all = found.len() < want;
            for callback in found {
                // The route stored only callbacks it could read, so this parses; one that does
                // not is left to the re-scan, which holds it for review.
                if let Ok(parsed) = pesachama_mpesa::callback::parse_stk(&callback.payload) {
                    applying.apply_soon(callback.id, parsed);
                }
            }
            if all {
                // Every one up to the mark is queued. One left since with a higher id has raised
                // the mark (and notified); one left since below it is no longer marked, and the
                // worker's re-scan applies it.
                in_flight.read_back(up_to);
                break;
            }
        }
    }
}

/// A writer of the inbox: stores what has arrived in one statement (each callback alone if the
/// database refuses the batch), answers each, and queues the new ones for the applier.
async fn store_batches(
    pool: PgPool,
    arrived: Arc<Mutex<mpsc::Receiver<Arrival>>>,
    applying: Arc<ApplyQueue>,
) {
    let mut held = HeldConnection::new(pool.clone());
    while let Some(batch) = crate::batching::next_batch(&arrived, MAX_STORED, &mut held).await {
        let rows: Vec<store::NewCallback<'_>> = batch
            .iter()
            .map(|arrival| store::NewCallback {
                kind: "stk",
                key: &arrival.key,
                payload: &arrival.payload,
                source_ip: arrival.source_ip.as_deref(),
                status: "received",
            })
            .collect();
        let stored = held
            .run(async |conn| store::store_callbacks(conn, &rows).await)
            .await;
        let ids = match stored {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(err) if batch.len() > 1 => {
                tracing::warn!(callbacks = batch.len(), error = %err, "storing a batch of STK callbacks failed; each is stored alone");
                let alone = rows.iter().map(|row| async {
                    store::store_callbacks(&pool, std::slice::from_ref(row))
                        .await
                        .map(|mut ids| ids.pop().flatten())
                });
                futures_util::future::join_all(alone).await
            }
            Err(err) => vec![Err(err)],
        };
        drop(rows);
        for (arrival, id) in batch.into_iter().zip(ids) {
            let answer = match id {
                Ok(Some(id)) => {
                    applying.apply_soon(id, arrival.parsed);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(err) => Err(err),
            };
            let _ = arrival.stored.send(answer);
        }
    }
}

/// The dispatcher: takes what is queued, looks up each callback's chama (one query for the
/// lot), and offers them to the appliers keyed by chama. A batch whose chamas cannot be looked
/// up is let go: its callbacks stay `received` for the worker's re-scan, as when the queue is
/// full, rather than be applied without the key that keeps appliers apart.
async fn dispatch(
    pool: PgPool,
    mpesa: Arc<Mpesa>,
    jobs: mpsc::Receiver<Stored>,
    board: Arc<Board>,
) {
    let jobs = Mutex::new(jobs);
    let mut held = HeldConnection::new(pool);
    while let Some(batch) = crate::batching::next_batch(&jobs, MAX_BATCH, &mut held).await {
        match held.run(async |conn| by_chama(conn, &batch).await).await {
            Ok(chamas) => {
                let keyed = batch
                    .into_iter()
                    .map(|stored| (chamas.get(&stored.1.checkout_request_id).copied(), stored))
                    .collect();
                board.offer(keyed).await;
            }
            Err(err) => {
                tracing::warn!(callbacks = batch.len(), error = %err, "cannot look up the chamas of STK callbacks; left for the worker's re-scan");
                mpesa.in_flight.remove(batch.iter().map(|(id, _)| *id));
            }
        }
    }
    board.close();
}

/// An applier: claims the callbacks of chamas no other applier holds, applies them, and
/// claims again. Appliers never hold the same chama (nor its accounts, members and audit
/// chain), so their batches do not wait for each other's locks.
async fn apply_claims(pool: PgPool, mpesa: Arc<Mpesa>, board: Arc<Board>) {
    use futures_util::FutureExt;
    let mut held = HeldConnection::new(pool.clone());
    while let Some(claim) = board.claim(Some(&mut held)).await {
        // A panic must not keep the claim: its chamas would never be applied again here, and
        // its callbacks would stay in flight, out of the re-scan's reach.
        let applied = async {
            match held.get().await {
                Ok(conn) => apply_batch_on(conn, &pool, &mpesa, &claim.jobs).await,
                // As if the batch had failed: each is tried alone, on connections of the pool.
                Err(_) => apply_batch(&pool, &mpesa, &claim.jobs).await,
            }
        };
        let outcome = std::panic::AssertUnwindSafe(applied).catch_unwind().await;
        if !matches!(&outcome, Ok(outcomes) if outcomes.iter().all(Result::is_ok)) {
            held.give_back();
        }
        match outcome {
            Ok(outcomes) => {
                for ((id, _), outcome) in claim.jobs.iter().zip(outcomes) {
                    if let Err(err) = outcome {
                        tracing::warn!(callback_id = id, error = %err, "applying a callback failed; the worker retries it");
                    }
                }
            }
            Err(panic) => tracing::error!(
                callbacks = claim.jobs.len(),
                panic = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("?"),
                "applying STK callbacks panicked; the worker retries them"
            ),
        }
        mpesa.in_flight.remove(claim.jobs.iter().map(|(id, _)| *id));
        board.release(claim);
    }
}

/// The chama of each callback's request, by CheckoutRequestID (absent: no request known; those
/// share the key `None`).
async fn by_chama(
    conn: &mut sqlx::PgConnection,
    batch: &[Stored],
) -> Result<std::collections::HashMap<String, Uuid>, StoreError> {
    let checkouts: Vec<&str> = batch
        .iter()
        .map(|(_, parsed)| parsed.checkout_request_id.as_str())
        .collect();
    store::chamas_of_checkouts(conn, &checkouts).await
}

/// Applies stored callbacks: in one transaction those the batch function can credit, then the
/// rest one by one. Answers each callback's status after it, in order.
pub async fn apply_batch(
    pool: &PgPool,
    mpesa: &Mpesa,
    callbacks: &[Stored],
) -> Vec<Result<String, StoreError>> {
    apply_batch_on(pool, pool, mpesa, callbacks).await
}

/// [`apply_batch`], the batch's statement run by `batch_executor` (the one-by-one callbacks
/// still take connections of `pool`, side by side).
async fn apply_batch_on(
    batch_executor: impl sqlx::PgExecutor<'_>,
    pool: &PgPool,
    mpesa: &Mpesa,
    callbacks: &[Stored],
) -> Vec<Result<String, StoreError>> {
    if callbacks.is_empty() {
        return Vec::new();
    }
    let results: Vec<_> = callbacks
        .iter()
        .filter_map(|(id, parsed)| Some((*id, stk_result(parsed)?)))
        .collect();
    let batched: Vec<(i64, &store::StkResult<'_>)> =
        results.iter().map(|(id, result)| (*id, result)).collect();
    let statuses = match in_one_statement(batch_executor, &batched).await {
        Ok(statuses) => statuses,
        Err(err) => {
            tracing::warn!(callbacks = batched.len(), error = %err, "a batch of STK callbacks failed; each is applied alone");
            Vec::new()
        }
    };
    let decided: std::collections::HashMap<i64, String> = batched
        .iter()
        .zip(statuses)
        .filter_map(|((id, _), status)| Some((*id, status?)))
        .collect();
    tracing::info!(
        callbacks = callbacks.len(),
        in_batch = decided.len(),
        "STK callbacks applied"
    );
    let alone = callbacks.iter().map(|(id, parsed)| async {
        match decided.get(id) {
            Some(status) => Ok(status.clone()),
            None => apply_parsed_stk(pool, mpesa, *id, parsed).await,
        }
    });
    futures_util::future::join_all(alone).await
}

/// The batch function, in a statement of its own: its own transaction, committed when it
/// answers and rolled back whole when it fails.
async fn in_one_statement(
    executor: impl sqlx::PgExecutor<'_>,
    callbacks: &[(i64, &store::StkResult<'_>)],
) -> Result<Vec<Option<String>>, StoreError> {
    if callbacks.is_empty() {
        return Ok(Vec::new());
    }
    store::apply_stk_batch(executor, callbacks).await
}
