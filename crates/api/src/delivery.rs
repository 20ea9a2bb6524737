//! The outbox worker: delivers what transactions left in `internal.outbox`.
//!
//! Channels: SMS through Africa's Talking when configured; and the local mailbox of the embedded
//! default, where email and SMS messages (sign-up codes, recovery codes, invitations) are
//! appended as JSON lines to a file and logged, so a developer can read the code and sign in.
//! Push (FCM) and an email provider are not built yet; their messages wait in the outbox.
//! Failures retry with exponential backoff and end `dead` after `max_attempts`; a message that
//! can never go (an invalid number) is dead at once.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use pesachama_store::outbox::{self, OutboxMessage};
use pesachama_store::{PgPool, StoreError};
use tokio::io::AsyncWriteExt as _;

use crate::sms::{AfricasTalking, SmsOutcome};
const BATCH: i64 = 50;
const LEASE_SECONDS: f64 = 60.0;
const IDLE: Duration = Duration::from_millis(500);

/// Appends each message to a JSON-lines file.
#[derive(Debug, Clone)]
pub struct LocalMailbox {
    pub path: PathBuf,
}

impl LocalMailbox {
    async fn deliver(&self, message: &OutboxMessage) -> std::io::Result<()> {
        let line = serde_json::json!({
            "id": message.id,
            "topic": message.topic,
            "at": chrono::Utc::now(),
            "message": message.payload,
        });
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await?;
        file.write_all(format!("{line}\n").as_bytes()).await?;
        file.flush().await?;
        tracing::info!(
            outbox_id = message.id,
            topic = %message.topic,
            to = message.payload.get("to").and_then(|v| v.as_str()).unwrap_or(""),
            code = message.payload.get("code").and_then(|v| v.as_str()).unwrap_or(""),
            text = message.payload.get("message").and_then(|v| v.as_str()).unwrap_or(""),
            mailbox = %self.path.display(),
            "local mailbox: message delivered"
        );
        Ok(())
    }
}

/// Retry after 2^attempts seconds, at most an hour.
pub fn backoff_seconds(attempts: i32) -> f64 {
    2f64.powi(attempts.clamp(0, 12)).min(3600.0)
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub pool: PgPool,
    /// Takes email, and SMS unless `sms` is set.
    pub mailbox: Option<LocalMailbox>,
    pub sms: Option<AfricasTalking>,
}

enum Outcome {
    Delivered,
    Retry(String),
    Dead(String),
}

impl Worker {
    /// The topics this worker can deliver.
    fn topics(&self) -> Vec<&'static str> {
        let mut topics = Vec::new();
        if self.mailbox.is_some() {
            topics.push("email");
        }
        if self.mailbox.is_some() || self.sms.is_some() {
            topics.push("sms");
        }
        topics
    }

    async fn deliver(&self, message: &OutboxMessage) -> Outcome {
        let text = |key: &str| {
            message
                .payload
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
        };
        match (message.topic.as_str(), &self.sms, &self.mailbox) {
            ("sms", Some(sms), _) => {
                if text("to").is_empty() || text("message").is_empty() {
                    return Outcome::Dead("an SMS needs `to` and `message`".to_owned());
                }
                match sms.send(text("to"), text("message")).await {
                    SmsOutcome::Sent { message_id } => {
                        tracing::info!(outbox_id = message.id, message_id, "SMS sent");
                        Outcome::Delivered
                    }
                    SmsOutcome::Retry(why) => Outcome::Retry(why),
                    SmsOutcome::Rejected(why) => Outcome::Dead(why),
                }
            }
            (_, _, Some(mailbox)) => match mailbox.deliver(message).await {
                Ok(()) => Outcome::Delivered,
                Err(err) => Outcome::Retry(err.to_string()),
            },
            _ => Outcome::Retry(format!("no channel delivers {}", message.topic)),
        }
    }

    /// Claims and delivers one batch; answers how many messages it handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let topics = self.topics();
        if topics.is_empty() {
            return Ok(0);
        }
        let batch = outbox::claim(&self.pool, &topics, BATCH, LEASE_SECONDS).await?;
        for message in &batch {
            match self.deliver(message).await {
                Outcome::Delivered => outbox::complete(&self.pool, message.id).await?,
                Outcome::Retry(why) => {
                    let dead = outbox::fail(
                        &self.pool,
                        message.id,
                        &why,
                        backoff_seconds(message.attempts),
                    )
                    .await?;
                    tracing::warn!(outbox_id = message.id, attempts = message.attempts, dead, error = %why, "delivery failed");
                }
                Outcome::Dead(why) => {
                    outbox::bury(&self.pool, message.id, &why).await?;
                    tracing::warn!(outbox_id = message.id, error = %why, "delivery impossible; the message is dead");
                }
            }
        }
        Ok(batch.len())
    }

    /// Runs until `shutdown` completes; a database hiccup is logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.run_once().await {
                Ok(n) if n as i64 == BATCH => Duration::ZERO,
                Ok(_) => IDLE,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox worker cannot reach the database");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Expires withdrawal requests and invitations past their time; answers how many.
pub async fn sweep_once(pool: &PgPool) -> Result<(i32, i32), StoreError> {
    let requests: i32 = sqlx::query_scalar("select internal.expire_disbursements()")
        .fetch_one(pool)
        .await?;
    let invitations: i32 = sqlx::query_scalar("select internal.expire_invitations()")
        .fetch_one(pool)
        .await?;
    if requests + invitations > 0 {
        tracing::info!(requests, invitations, "expired");
    }
    Ok((requests, invitations))
}

/// Sweeps every minute until `shutdown` completes.
pub async fn run_sweeper(pool: PgPool, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = every.tick() => {
                if let Err(err) = sweep_once(&pool).await {
                    tracing::warn!(error = %err, "the expiry sweep failed; it runs again in a minute");
                }
            }
        }
    }
}
