//! The outbox worker: delivers what transactions left in `internal.outbox`.
//!
//! Channels: push through FCM, email through SMTP and SMS through Africa's Talking, each when
//! configured; and the local mailbox of the embedded default, which takes whatever has no
//! provider (codes, invitations, notifications): each message is appended as a JSON line to a
//! file and logged, so a developer can read the code and sign in. Failures retry with
//! exponential backoff and end `dead` after `max_attempts`; a message that can never go (an
//! invalid number, a refused address) is dead at once. A device token that FCM declares dead is
//! forgotten. Each channel a notification goes out on is recorded in its `sent_via`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use pesachama_store::notifications::{self, PushTarget};
use pesachama_store::outbox::{self, OutboxMessage};
use pesachama_store::{PgPool, StoreError};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use crate::email::{EmailOutcome, Smtp};
use crate::push::{Fcm, Push, PushOutcome};
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
        self.write(message, &message.payload).await
    }

    async fn write(&self, message: &OutboxMessage, payload: &Value) -> std::io::Result<()> {
        let line = serde_json::json!({
            "id": message.id,
            "topic": message.topic,
            "at": chrono::Utc::now(),
            "message": payload,
        });
        // The mailbox holds sign-in codes: readable by its owner only, whoever made it first.
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .await?;
        let permissions = file.metadata().await?.permissions();
        if std::os::unix::fs::PermissionsExt::mode(&permissions) & 0o077 != 0 {
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .await?;
        }
        file.write_all(format!("{line}\n").as_bytes()).await?;
        file.flush().await?;
        tracing::info!(
            outbox_id = message.id,
            topic = %message.topic,
            to = payload.get("to").and_then(|v| v.as_str()).unwrap_or(""),
            code = payload.get("code").and_then(|v| v.as_str()).unwrap_or(""),
            text = payload.get("message").or_else(|| payload.get("title")).and_then(|v| v.as_str()).unwrap_or(""),
            mailbox = %self.path.display(),
            "local mailbox: message delivered"
        );
        Ok(())
    }
}

async fn send_sms(sms: &AfricasTalking, message: &OutboxMessage) -> Outcome {
    let text = |key: &str| message.payload[key].as_str().unwrap_or_default();
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

/// Retry after 2^attempts seconds, at most an hour.
pub fn backoff_seconds(attempts: i32) -> f64 {
    2f64.powi(attempts.clamp(0, 12)).min(3600.0)
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub pool: PgPool,
    /// Takes whatever has no provider of its own below.
    pub mailbox: Option<LocalMailbox>,
    pub sms: Option<AfricasTalking>,
    pub push: Option<Arc<Fcm>>,
    pub email: Option<Smtp>,
}

enum Outcome {
    Delivered,
    Retry(String),
    Dead(String),
}

impl Worker {
    /// A worker with no channel yet (nothing is claimed until one is set).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            mailbox: None,
            sms: None,
            push: None,
            email: None,
        }
    }

    /// The topics this worker can deliver.
    fn topics(&self) -> Vec<&'static str> {
        let local = self.mailbox.is_some();
        let mut topics = Vec::new();
        if local || self.email.is_some() {
            topics.push("email");
        }
        if local || self.sms.is_some() {
            topics.push("sms");
        }
        if local || self.push.is_some() {
            topics.push("push");
        }
        topics
    }

    async fn deliver(&self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let outcome = match (
            message.topic.as_str(),
            &self.sms,
            &self.email,
            &self.mailbox,
        ) {
            ("push", ..) => return self.push(message).await,
            ("sms", Some(sms), _, _) => send_sms(sms, message).await,
            ("email", _, Some(email), _) => match email.send(&message.payload).await {
                EmailOutcome::Sent => {
                    tracing::info!(outbox_id = message.id, "email sent");
                    Outcome::Delivered
                }
                EmailOutcome::Retry(why) => Outcome::Retry(why),
                EmailOutcome::Rejected(why) => Outcome::Dead(why),
            },
            (_, _, _, Some(mailbox)) => match mailbox.deliver(message).await {
                Ok(()) => Outcome::Delivered,
                Err(err) => Outcome::Retry(err.to_string()),
            },
            _ => Outcome::Retry(format!("no channel delivers {}", message.topic)),
        };
        if matches!(outcome, Outcome::Delivered) {
            self.record_channel(message, &message.topic).await?;
        }
        Ok(outcome)
    }

    /// A notification to one device: FCM when configured, else the local mailbox.
    async fn push(&self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let id = |key: &str| {
            message.payload[key]
                .as_str()
                .and_then(|v| Uuid::parse_str(v).ok())
        };
        let (Some(notification_id), Some(device_id)) = (id("notification_id"), id("device_id"))
        else {
            return Ok(Outcome::Dead(
                "a push needs `notification_id` and `device_id`".to_owned(),
            ));
        };
        let Some(target) =
            notifications::push_target(&self.pool, notification_id, device_id).await?
        else {
            tracing::info!(
                outbox_id = message.id,
                "push skipped: the notification or the device is gone"
            );
            return Ok(Outcome::Delivered);
        };
        let outcome = match (&self.push, &self.mailbox) {
            (Some(fcm), _) => self.push_fcm(fcm, message, device_id, &target).await?,
            (None, Some(mailbox)) => {
                let shown = json!({
                    "to": format!("{} device", target.platform),
                    "title": target.title,
                    "body": target.body,
                    "data": target.data,
                });
                match mailbox.write(message, &shown).await {
                    Ok(()) => Outcome::Delivered,
                    Err(err) => Outcome::Retry(err.to_string()),
                }
            }
            (None, None) => Outcome::Retry("no channel delivers push".to_owned()),
        };
        if matches!(outcome, Outcome::Delivered) {
            notifications::mark_sent(&self.pool, notification_id, "push").await?;
        }
        Ok(outcome)
    }

    async fn push_fcm(
        &self,
        fcm: &Fcm,
        message: &OutboxMessage,
        device_id: Uuid,
        target: &PushTarget,
    ) -> Result<Outcome, StoreError> {
        let push = Push {
            token: &target.token,
            title: &target.title,
            body: target.body.as_deref().unwrap_or_default(),
            data: &target.data,
        };
        Ok(match fcm.send(&push).await {
            PushOutcome::Sent { name } => {
                tracing::info!(outbox_id = message.id, fcm_message = %name, "push sent");
                Outcome::Delivered
            }
            PushOutcome::DeadToken(why) => {
                let forgotten =
                    notifications::forget_device(&self.pool, device_id, &target.token).await?;
                tracing::info!(outbox_id = message.id, %device_id, forgotten, reason = %why, "dead device token forgotten");
                return Ok(Outcome::Dead(format!("{why}; the device was forgotten")));
            }
            PushOutcome::Retry(why) => Outcome::Retry(why),
            PushOutcome::Rejected(why) => Outcome::Dead(why),
        })
    }

    /// For a message that carries a notification, the channel it went out on.
    async fn record_channel(
        &self,
        message: &OutboxMessage,
        channel: &str,
    ) -> Result<(), StoreError> {
        let notification = message.payload["notification_id"]
            .as_str()
            .and_then(|v| Uuid::parse_str(v).ok());
        if let Some(id) = notification {
            notifications::mark_sent(&self.pool, id, channel).await?;
        }
        Ok(())
    }

    /// Claims and delivers one batch; answers how many messages it handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let topics = self.topics();
        if topics.is_empty() {
            return Ok(0);
        }
        let batch = outbox::claim(&self.pool, &topics, BATCH, LEASE_SECONDS).await?;
        for message in &batch {
            match self.deliver(message).await? {
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

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Withdrawal requests expired.
    pub requests: i32,
    /// Invitations expired.
    pub invitations: i32,
    /// Meetings whose members were reminded (a day ahead).
    pub reminders: i32,
    /// USSD sessions past the telco's 180 seconds, marked timed out.
    pub ussd_sessions: i32,
    /// Counters of wrong passwords quiet for a week, forgotten (they would count from one again
    /// anyway after `forget_after_seconds`, a day by default).
    pub throttles: i32,
}

/// Expires withdrawal requests, invitations and USSD sessions past their time, sends the
/// reminders of meetings starting within a day, and forgets wrong-password counters quiet for a
/// week.
pub async fn sweep_once(pool: &PgPool) -> Result<Swept, StoreError> {
    let requests: i32 = sqlx::query_scalar("select internal.expire_disbursements()")
        .fetch_one(pool)
        .await?;
    let invitations: i32 = sqlx::query_scalar("select internal.expire_invitations()")
        .fetch_one(pool)
        .await?;
    let reminders = notifications::send_meeting_reminders(pool, 24).await?;
    let ussd_sessions: i32 = sqlx::query_scalar("select internal.expire_ussd_sessions()")
        .fetch_one(pool)
        .await?;
    // Wrong USSD PINs are forgotten by `expire_ussd_sessions` above.
    let throttles: i32 = sqlx::query_scalar(
        "with forgotten as (
            delete from internal.login_failures
             where last_failure_at < now() - interval '7 days'
               and (locked_until is null or locked_until < now())
            returning 1)
         select count(*)::int from forgotten",
    )
    .fetch_one(pool)
    .await?;
    let swept = Swept {
        requests,
        invitations,
        reminders,
        ussd_sessions,
        throttles,
    };
    if swept != Swept::default() {
        tracing::info!(
            requests,
            invitations,
            reminders,
            ussd_sessions,
            throttles,
            "swept"
        );
    }
    Ok(swept)
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
