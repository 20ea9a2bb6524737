//! Manual contributions, written a batch at a time.
//!
//! A contribution is about a dozen rows in eight tables (journal, postings, balances, the
//! transactions row, the member's notification, its delivery, the audit entry, the
//! idempotency key), and written one request per transaction the database spends most of its
//! time starting statements and triggers for one row each. So the requests that arrive
//! together are gathered here and recorded by one call of
//! `internal.record_manual_contributions`, which writes each table once for the whole batch
//! and answers each request on its own: recorded, replayed, or refused with the same error the
//! single-request function raises. Nobody waits for a batch to fill: a writer takes whatever
//! is queued when it is free, so under light load a batch is one request.
//!
//! If a batch fails as a whole in the database (which the function's own checks make
//! unlikely: a rule that only a trigger or the commit checks, a deadlock, or a chama row held
//! longer than the function's `lock_timeout`, 5 s, by another transaction), each of its
//! requests is tried again
//! alone, all at once, so one request can never take the others down with it and a chama
//! that is busy holds up only its own requests. The queue holds at most [`QUEUE`] requests;
//! beyond that a request is answered 503 at once.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use crate::batching::HeldConnection;
use crate::error::ApiError;

/// At most this many requests in one batch (one transaction).
const MAX_BATCH: usize = 64;

/// Requests waiting for a writer, at most.
pub const QUEUE: usize = 4096;

/// One request, as the batch function reads it.
#[derive(Debug, Clone, Serialize)]
pub struct ContributionRequest {
    pub actor: Uuid,
    pub chama_id: Uuid,
    pub member_id: Uuid,
    pub amount: i64,
    pub method: String,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub idempotency_key: String,
    pub request_hash: String,
}

/// The answer for one request: `{"replayed": bool, "transaction": {...}}`.
pub type Answer = Result<Value, ApiError>;

#[derive(Debug)]
struct Job {
    request: ContributionRequest,
    reply: oneshot::Sender<Answer>,
}

/// The queue the route hands its requests to, and the writers that empty it.
#[derive(Debug)]
pub struct ContributionWriter {
    queue: mpsc::Sender<Job>,
}

impl ContributionWriter {
    /// Starts `writers` tasks, each recording one batch at a time on its own connection.
    pub fn start(pool: PgPool, writers: usize) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(pool.clone(), Arc::clone(&jobs)));
        }
        Self { queue }
    }

    /// Records one contribution (in whatever batch it lands) and answers for it.
    pub async fn record(&self, request: ContributionRequest) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { request, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => ApiError::Unavailable(
                    "too many contributions are waiting to be recorded; retry shortly".into(),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Unavailable("the contribution writer has stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| ApiError::Unavailable("the contribution writer has stopped".into()))?
    }
}

/// A writer: takes what is queued (waiting only for the first), records it, answers.
async fn write_batches(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut held = HeldConnection::new(pool.clone());
    loop {
        let Some(batch) = crate::batching::next_batch(&jobs, MAX_BATCH, &mut held).await else {
            return; // the server is gone
        };
        let requests: Vec<&ContributionRequest> = batch.iter().map(|job| &job.request).collect();
        match held
            .run(async |conn| record_batch(conn, &requests).await)
            .await
        {
            Ok(answers) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(BatchError::Database(err)) if batch.len() > 1 => {
                tracing::warn!(requests = batch.len(), error = %err, "a batch of contributions failed; each is tried alone");
                let alone = batch.into_iter().map(|job| {
                    let pool = &pool;
                    async move {
                        let answer = match record_batch(pool, &[&job.request]).await {
                            Ok(mut answers) => answers.remove(0),
                            Err(err) => Err(err.into()),
                        };
                        let _ = job.reply.send(answer);
                    }
                });
                futures_util::future::join_all(alone).await;
            }
            Err(BatchError::Database(err)) => {
                // A single request (larger batches took the branch above): its own error.
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.reply.send(Err(BatchError::Database(err).into()));
                }
            }
            Err(BatchError::Other(err)) => {
                tracing::warn!(requests = batch.len(), error = %err, "a batch of contributions failed");
                for job in batch {
                    let _ = job.reply.send(Err(ApiError::Unavailable(
                        "the contribution could not be recorded now; retry shortly".into(),
                    )));
                }
            }
        }
    }
}

/// Why a batch was not recorded.
#[derive(Debug)]
pub enum BatchError {
    /// The database refused the batch: its requests may each go through alone.
    Database(sqlx::Error),
    /// No connection, or the answer made no sense: trying again alone would not help.
    Other(ApiError),
}

impl From<BatchError> for ApiError {
    fn from(err: BatchError) -> Self {
        match err {
            BatchError::Database(err)
                if err
                    .as_database_error()
                    .and_then(|db| db.code())
                    .is_some_and(|code| code == "55P03") =>
            {
                Self::Unavailable("this chama is busy; retry shortly".into())
            }
            BatchError::Database(err) => err.into(),
            BatchError::Other(err) => err,
        }
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(err: sqlx::Error) -> Self {
        if err.as_database_error().is_some() {
            Self::Database(err)
        } else {
            Self::Other(err.into())
        }
    }
}

/// Records `requests` in one statement, which is its own transaction: committed when it
/// answers, rolled back whole when it fails. An answer per request, in order.
pub async fn record_batch(
    executor: impl sqlx::PgExecutor<'_>,
    requests: &[&ContributionRequest],
) -> Result<Vec<Answer>, BatchError> {
    let numbered: Vec<Value> = requests
        .iter()
        .enumerate()
        .map(|(i, request)| {
            let mut value = serde_json::to_value(request).map_err(ApiError::internal)?;
            value["i"] = i.into();
            Ok(value)
        })
        .collect::<Result<_, ApiError>>()
        .map_err(BatchError::Other)?;
    // A refused batch is rolled back with its statement. The server reports the error first,
    // so a caller that retries its requests elsewhere waits until this connection is ready
    // again (`HeldConnection::after_error`): by then their keys are free.
    let Json(answers): Json<Vec<Value>> =
        sqlx::query_scalar("select internal.record_manual_contributions($1)")
            .bind(Json(&numbered))
            .fetch_one(executor)
            .await?;
    if answers.len() != requests.len() {
        return Err(BatchError::Other(ApiError::Internal(
            format!(
                "a batch of {} contributions was answered {} times",
                requests.len(),
                answers.len()
            )
            .into(),
        )));
    }
    Ok(answers.into_iter().map(answer).collect())
}

/// One request's answer: the recorded (or replayed) transaction, or its refusal as an error.
fn answer(mut value: Value) -> Answer {
    let Some(code) = value.get("error").and_then(Value::as_str) else {
        value.as_object_mut().map(|fields| fields.remove("i"));
        return Ok(value);
    };
    let message = value["message"].as_str().unwrap_or("refused").to_owned();
    match pesachama_store::StoreError::refusal(code, message.clone()) {
        Some(refusal) => Err(refusal.into()),
        None => Err(ApiError::Internal(
            format!("a contribution was refused with {code}: {message}").into(),
        )),
    }
}
