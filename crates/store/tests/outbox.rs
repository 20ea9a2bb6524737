//! Claiming outbox messages: the oldest due messages of the asked topics, each to one claimer,
//! whatever waits in other topics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use pesachama_store::PgPool;
use pesachama_store::outbox;
use pesachama_testkit::TestDb;

/// Adds a message of `topic` due `due_in_seconds` from now (negative: overdue), with `status`.
async fn add(pool: &PgPool, topic: &str, due_in_seconds: f64, status: &str) -> i64 {
    sqlx::query_scalar(
        "insert into internal.outbox (topic, payload, status, run_after)
         values ($1, '{}', $2, now() + make_interval(secs => $3)) returning id",
    )
    .bind(topic)
    .bind(status)
    .bind(due_in_seconds)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn ids(batch: &[outbox::OutboxMessage]) -> Vec<i64> {
    batch.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn claims_the_oldest_due_of_its_topics_across_them() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let sms_old = add(pool, "sms", -30.0, "pending").await;
    let push = add(pool, "push", -20.0, "pending").await;
    let sms_new = add(pool, "sms", -10.0, "pending").await;
    let sms_newest = add(pool, "sms", -5.0, "pending").await;
    // Not for this claimer: another topic, not yet due, done, dead.
    let other = add(pool, "mpesa.stk_push", -60.0, "pending").await;
    add(pool, "sms", 60.0, "pending").await;
    add(pool, "sms", -90.0, "done").await;
    add(pool, "push", -90.0, "dead").await;

    let first = outbox::claim(pool, &["sms", "push"], 3, 60.0)
        .await
        .unwrap();
    assert_eq!(
        ids(&first),
        [sms_old, push, sms_new],
        "oldest first, across topics"
    );
    assert!(first.iter().all(|m| m.attempts == 1));

    // Leased: not claimed again until the lease runs out.
    let second = outbox::claim(pool, &["sms", "push"], 3, 60.0)
        .await
        .unwrap();
    assert_eq!(ids(&second), [sms_newest]);
    assert!(
        outbox::claim(pool, &["sms", "push"], 3, 60.0)
            .await
            .unwrap()
            .is_empty()
    );

    // The other topic's claimer gets its own message, and only it.
    let mpesa = outbox::claim(pool, &["mpesa.stk_push"], 20, 60.0)
        .await
        .unwrap();
    assert_eq!(ids(&mpesa), [other]);

    // A lease that ran out is claimed again, its attempt counted.
    sqlx::query(
        "update internal.outbox set locked_until = now() - interval '1 second' where id = $1",
    )
    .bind(push)
    .execute(pool)
    .await
    .unwrap();
    let again = outbox::claim(pool, &["push"], 5, 60.0).await.unwrap();
    assert_eq!(ids(&again), [push]);
    assert_eq!(again[0].attempts, 2);
}

#[tokio::test]
async fn a_backlog_of_other_topics_is_not_claimed() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    sqlx::query(
        "insert into internal.outbox (topic, payload, run_after)
         select 'sms', '{}', now() - interval '1 minute' from generate_series(1, 500)",
    )
    .execute(pool)
    .await
    .unwrap();
    let mine = add(pool, "mpesa.stk_push", -1.0, "pending").await;
    let batch = outbox::claim(pool, &["mpesa.stk_push", "payout"], 20, 60.0)
        .await
        .unwrap();
    assert_eq!(ids(&batch), [mine]);
    let sms_leased: i64 = sqlx::query_scalar(
        "select count(*) from internal.outbox where topic = 'sms' and locked_until is not null",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(sms_leased, 0, "the backlog is untouched");
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_message() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into internal.outbox (topic, payload, run_after)
         select case when i % 3 = 0 then 'push' else 'sms' end, '{}', now() - make_interval(secs => i)
           from generate_series(1, 300) i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = outbox::claim(&pool, &["sms", "push"], 7, 60.0)
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        break mine;
                    }
                    mine.extend(ids(&batch));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut claimed = 0;
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            claimed += 1;
            assert!(seen.insert(id), "message {id} claimed twice");
        }
    }
    assert_eq!(claimed, 300, "every message claimed once");
}
