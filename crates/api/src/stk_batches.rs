//! STK callbacks, stored and applied a batch at a time.
//!
//! The callback route hands each STK callback here and answers Daraja once it is stored. Two
//! writers store what arrives together with one INSERT and one commit (a repeat of a stored
//! callback is not stored again), answer each arrival, and queue the new ones for the applier.
//! The applier takes whatever callbacks are queued (waiting only for the first), splits them by
//! chama into as many parts as the machine has cores (at most four), and gives each part, at
//! once and each on its own connection, to `internal.apply_stk_callbacks`, which credits in one
//! transaction, one statement per table, every success that matches its waiting request. Parts
//! never share a chama, so they never wait for each other's locks. The callbacks a part leaves
//! alone (failures, unknown requests, mismatches, a receipt seen before) are then applied one
//! by one by `internal.apply_stk_callback`, whose rules decide them as before; so is every
//! callback of a part the database refuses as a whole.
//!
//! Nothing here is the only way a callback gets applied. A callback that is stored is in the
//! inbox as `received` until it is applied, and the M-Pesa worker re-scans the inbox
//! ([`crate::mpesa_worker`]), so a full queue, a failed batch or a killed server only delays
//! it. Applying a callback twice is harmless: both functions lock its inbox row and apply only
//! a `received` one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pesachama_mpesa::callback::StkCallback;
use pesachama_store::mpesa as store;
use pesachama_store::{PgPool, StoreError};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

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
}

impl StkApplier {
    pub fn start(pool: PgPool, mpesa: Arc<Mpesa>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(apply_batches(pool.clone(), mpesa, jobs));
        let applying = Arc::new(ApplyQueue {
            queue,
            behind: AtomicBool::new(false),
        });
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
        let behind = self.queue.try_send((id, parsed)).is_err();
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

/// A writer of the inbox: stores what has arrived in one statement (each callback alone if the
/// database refuses the batch), answers each, and queues the new ones for the applier.
async fn store_batches(
    pool: PgPool,
    arrived: Arc<Mutex<mpsc::Receiver<Arrival>>>,
    applying: Arc<ApplyQueue>,
) {
    while let Some(batch) = crate::batching::next_batch(&arrived, MAX_STORED).await {
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
        let ids = match store::store_callbacks(&pool, &rows).await {
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

/// The applier: takes what is queued, splits it by chama into parts that share no row, and
/// applies the parts at once, each on its own connection.
async fn apply_batches(pool: PgPool, mpesa: Arc<Mpesa>, jobs: mpsc::Receiver<Stored>) {
    let parts = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4);
    let jobs = Mutex::new(jobs);
    while let Some(batch) = crate::batching::next_batch(&jobs, MAX_BATCH).await {
        let split = by_chama(&pool, batch, parts).await;
        let applied = split.iter().map(|part| async {
            let outcomes = apply_batch(&pool, &mpesa, part).await;
            for ((id, _), outcome) in part.iter().zip(outcomes) {
                if let Err(err) = outcome {
                    tracing::warn!(callback_id = id, error = %err, "applying a callback failed; the worker retries it");
                }
            }
        });
        futures_util::future::join_all(applied).await;
    }
}

/// `batch` in at most `parts` parts, the callbacks of one chama always in the same part: the
/// parts lock different chamas (and their accounts, members and audit chains), so they do not
/// wait for each other. A callback whose request is not known goes to the first part.
async fn by_chama(pool: &PgPool, batch: Vec<Stored>, parts: usize) -> Vec<Vec<Stored>> {
    if parts <= 1 || batch.len() <= 1 {
        return vec![batch];
    }
    let checkouts: Vec<&str> = batch
        .iter()
        .map(|(_, parsed)| parsed.checkout_request_id.as_str())
        .collect();
    let chamas = match store::chamas_of_checkouts(pool, &checkouts).await {
        Ok(chamas) => chamas,
        Err(err) => {
            tracing::warn!(error = %err, "cannot split STK callbacks by chama; applied as one batch");
            return vec![batch];
        }
    };
    let mut split: Vec<Vec<Stored>> = (0..parts).map(|_| Vec::new()).collect();
    for stored in batch {
        let part = chamas
            .get(&stored.1.checkout_request_id)
            .map_or(0, |chama| (chama.as_u128() % parts as u128) as usize);
        split[part].push(stored);
    }
    split.retain(|part| !part.is_empty());
    split
}

/// Applies stored callbacks: in one transaction those the batch function can credit, then the
/// rest one by one. Answers each callback's status after it, in order.
pub async fn apply_batch(
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
    let statuses = match in_one_transaction(pool, &batched).await {
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

async fn in_one_transaction(
    pool: &PgPool,
    callbacks: &[(i64, &store::StkResult<'_>)],
) -> Result<Vec<Option<String>>, StoreError> {
    if callbacks.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await?;
    let statuses = match store::apply_stk_batch(&mut *tx, callbacks).await {
        Ok(statuses) => statuses,
        Err(err) => return Err(pesachama_store::rolled_back(tx, err).await),
    };
    tx.commit().await?;
    Ok(statuses)
}
