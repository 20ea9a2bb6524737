//! Stored STK callbacks, applied a batch at a time.
//!
//! The callback route stores a callback, answers Daraja, and hands the parsed callback here.
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
use tokio::sync::{Mutex, mpsc};

use crate::mpesa_worker::{Mpesa, apply_parsed_stk, stk_result};

/// At most this many callbacks in one batch (one transaction).
const MAX_BATCH: usize = 128;

/// Callbacks waiting for the applier, at most; beyond that the worker's re-scan applies them.
pub const QUEUE: usize = 8192;

/// A stored callback and what the route read in it.
type Stored = (i64, StkCallback);

/// The queue the callback route hands stored callbacks to.
#[derive(Debug)]
pub struct StkApplier {
    queue: mpsc::Sender<Stored>,
    /// The last callback found the queue full (logged when it changes).
    behind: AtomicBool,
}

impl StkApplier {
    pub fn start(pool: PgPool, mpesa: Arc<Mpesa>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(apply_batches(pool, mpesa, jobs));
        Self {
            queue,
            behind: AtomicBool::new(false),
        }
    }

    /// Applies a stored callback soon. Never waits: when the queue is full the callback stays
    /// `received` in the inbox for the worker's re-scan.
    pub fn apply_soon(&self, id: i64, parsed: StkCallback) {
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
    let statuses = store::apply_stk_batch(&mut *tx, callbacks).await?;
    tx.commit().await?;
    Ok(statuses)
}
