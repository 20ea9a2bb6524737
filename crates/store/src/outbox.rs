//! The outbox (`internal.outbox`): what must happen after a commit, claimed by workers.
//!
//! Claiming takes a lease (`locked_until`) with `FOR UPDATE SKIP LOCKED`, so two workers never
//! hold the same message; a worker that dies mid-delivery loses its lease and the message is
//! claimed again later (delivery is at least once; receivers deduplicate by message id).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub topic: String,
    pub payload: Value,
    /// Including this one.
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Claims up to `limit` due messages of `topics` for `lease_seconds`: the oldest due, across
/// the topics. Each topic's due messages are read from their own index, so a backlog of other
/// topics costs a claim nothing.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    topics: &[&str],
    limit: i64,
    lease_seconds: f64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    Ok(sqlx::query_as(
        "update internal.outbox o
            set locked_until = now() + make_interval(secs => $3), attempts = o.attempts + 1
          where o.id in (
                select d.id
                  from unnest($1::text[]) as t(topic)
                 cross join lateral (
                       select id, run_after from internal.outbox
                        where status = 'pending' and topic = t.topic and run_after <= now()
                          and (locked_until is null or locked_until < now())
                        order by run_after, id
                        for update skip locked
                        limit $2) d
                 order by d.run_after, d.id
                 limit $2)
          returning o.id, o.topic, o.payload, o.attempts, o.max_attempts, o.created_at",
    )
    .bind(&topics)
    .bind(limit)
    .bind(lease_seconds)
    .fetch_all(executor)
    .await?)
}

/// Delivered.
pub async fn complete(executor: impl PgExecutor<'_>, id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "update internal.outbox set status = 'done', done_at = now(), locked_until = null,
                last_error = null
          where id = $1",
    )
    .bind(id)
    .execute(executor)
    .await?;
    Ok(())
}

/// Not delivered: retried after `retry_in_seconds`, or dead once its attempts are spent.
/// Answers whether the message is now dead.
pub async fn fail(
    executor: impl PgExecutor<'_>,
    id: i64,
    error: &str,
    retry_in_seconds: f64,
) -> Result<bool, StoreError> {
    let status: String = sqlx::query_scalar(
        "update internal.outbox
            set status = case when attempts >= max_attempts then 'dead' else 'pending' end,
                run_after = now() + make_interval(secs => $3),
                locked_until = null,
                last_error = left($2, 2000)
          where id = $1
          returning status",
    )
    .bind(id)
    .bind(error)
    .bind(retry_in_seconds)
    .fetch_one(executor)
    .await?;
    Ok(status == "dead")
}

/// Will never be delivered (a number that does not exist, say): dead at once.
pub async fn bury(executor: impl PgExecutor<'_>, id: i64, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "update internal.outbox set status = 'dead', locked_until = null, last_error = left($2, 2000)
          where id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(executor)
    .await?;
    Ok(())
}
