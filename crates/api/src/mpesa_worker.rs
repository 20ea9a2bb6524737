//! M-Pesa in the server: the settings and Daraja client ([`Mpesa`]), the applier of stored
//! callbacks, and the worker that owns the outbox topics `mpesa.stk_push`, and, when B2C is
//! configured, `payout` and `mpesa.b2c_status` (see [`crate::mpesa_payouts`]).
//!
//! Callbacks are applied right after they are stored, once the callback route has answered
//! (STK callbacks by [`crate::stk_batches`], the others by [`apply_soon`]), and again by the
//! worker, which re-scans the inbox for callbacks still `received`: a server killed between
//! storing and applying loses nothing, and applying twice is harmless because the database
//! functions lock the inbox row and apply only a `received` one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pesachama_mpesa::callback::{StkCallback, parse_stk};
use pesachama_mpesa::client::StkPush;
use pesachama_mpesa::{DarajaClient, DarajaError};
use pesachama_store::mpesa::{self as store, StkResult, StoredCallback};
use pesachama_store::outbox::{self, OutboxMessage};
use pesachama_store::{PgPool, StoreError};
use uuid::Uuid;

use crate::delivery::backoff_seconds;
use crate::mpesa_payouts::{PAYOUT_TOPIC, STATUS_TOPIC};

/// Topic of an STK push to start (written by the API route and the USSD menu alike).
pub const STK_TOPIC: &str = "mpesa.stk_push";

/// M-Pesa settings and the client.
#[derive(Debug)]
pub struct Mpesa {
    pub client: DarajaClient,
    /// Where Daraja reaches this server, e.g. `https://pesachama.example.com`.
    pub callback_base: String,
    /// The secret path segment of every callback URL.
    pub callback_token: String,
    /// Source addresses callbacks may come from; empty: any (the embedded default).
    pub allowed_sources: crate::gate::AllowList,
    /// How long a callback naming an unknown CheckoutRequestID waits for its request (the push
    /// answer may still be on its way) before it goes to review.
    pub unknown_grace: Duration,
    /// Callbacks still unapplied after this long are applied by the worker's re-scan.
    pub rescan_after: Duration,
    /// Requests and payouts unanswered this long are reconciled (asked about).
    pub reconcile_after: Duration,
    /// STK callbacks this process's applier holds, which the re-scan leaves to it.
    pub in_flight: crate::stk_batches::InFlight,
}

impl Mpesa {
    pub fn new(client: DarajaClient, callback_base: &str, callback_token: &str) -> Self {
        Self {
            client,
            callback_base: callback_base.trim_end_matches('/').to_owned(),
            callback_token: callback_token.to_owned(),
            allowed_sources: crate::gate::AllowList::default(),
            unknown_grace: Duration::from_secs(120),
            rescan_after: Duration::from_secs(5),
            reconcile_after: Duration::from_secs(180),
            in_flight: Default::default(),
        }
    }

    /// B2C is configured (an initiator and its security credential).
    pub fn pays_out(&self) -> bool {
        !self.client.config().security_credential.is_empty()
    }

    /// The URL Daraja posts a callback of `kind` to (`stk`, `b2c/result`, ...).
    pub fn callback_url(&self, kind: &str) -> String {
        format!(
            "{}/mpesa/callbacks/{}/{kind}",
            self.callback_base, self.callback_token
        )
    }
}

/// Applies one stored callback; answers its new status.
pub async fn apply(
    pool: &PgPool,
    mpesa: &Mpesa,
    callback: &StoredCallback,
) -> Result<String, StoreError> {
    match callback.kind.as_str() {
        "stk" => apply_stk(pool, mpesa, callback).await,
        "c2b_confirmation" => apply_c2b(pool, callback).await,
        "b2c_result" | "b2c_timeout" | "status_result" | "status_timeout" => {
            crate::mpesa_payouts::apply(pool, mpesa, callback).await
        }
        other => {
            store::hold_callback(
                pool,
                callback.id,
                &format!("no applier for {other} callbacks"),
            )
            .await?;
            Ok("review".to_owned())
        }
    }
}

async fn apply_stk(
    pool: &PgPool,
    mpesa: &Mpesa,
    callback: &StoredCallback,
) -> Result<String, StoreError> {
    let parsed = match parse_stk(&callback.payload) {
        Ok(parsed) => parsed,
        Err(err) => {
            store::hold_callback(pool, callback.id, &err.0).await?;
            return Ok("review".to_owned());
        }
    };
    apply_parsed_stk(pool, mpesa, callback.id, &parsed).await
}

/// What the database functions read in a parsed STK callback; `None` when its ResultCode
/// does not fit (such a callback is held for review).
pub(crate) fn stk_result(parsed: &StkCallback) -> Option<StkResult<'_>> {
    let result_code = i32::try_from(parsed.result_code).ok()?;
    let paid = parsed.paid.as_ref();
    Some(StkResult {
        checkout_request_id: &parsed.checkout_request_id,
        result_code,
        result_desc: &parsed.result_desc,
        amount: paid.map(|p| p.amount.minor()),
        receipt: paid.map(|p| p.receipt.as_str()),
        phone: paid.map(|p| p.phone.as_e164()),
        paid_at: paid.and_then(|p| p.paid_at),
    })
}

/// Applies one stored STK callback on its own (`internal.apply_stk_callback`).
pub(crate) async fn apply_parsed_stk(
    pool: &PgPool,
    mpesa: &Mpesa,
    id: i64,
    parsed: &StkCallback,
) -> Result<String, StoreError> {
    let Some(result) = stk_result(parsed) else {
        store::hold_callback(pool, id, "ResultCode out of range").await?;
        return Ok("review".to_owned());
    };
    let status = store::apply_stk(pool, id, &result, mpesa.unknown_grace.as_secs_f64()).await?;
    tracing::info!(callback_id = id, checkout_request_id = %parsed.checkout_request_id, result.result_code, status, "STK callback");
    Ok(status)
}

async fn apply_c2b(pool: &PgPool, callback: &StoredCallback) -> Result<String, StoreError> {
    let parsed = match pesachama_mpesa::callback::parse_c2b(&callback.payload) {
        Ok(parsed) => parsed,
        Err(err) => {
            store::hold_callback(pool, callback.id, &err.0).await?;
            return Ok("review".to_owned());
        }
    };
    let status = store::apply_c2b(
        pool,
        callback.id,
        &parsed.trans_id,
        parsed.amount.minor(),
        &parsed.bill_ref,
        parsed.phone.as_ref().map(|p| p.as_e164()),
        parsed.paid_at,
    )
    .await?;
    tracing::info!(callback_id = callback.id, trans_id = %parsed.trans_id, status, "C2B confirmation");
    Ok(status)
}

/// Applies a callback just stored, after the route has answered; the re-scan retries it if
/// this fails.
pub fn apply_soon(pool: PgPool, mpesa: Arc<Mpesa>, id: i64) {
    tokio::spawn(async move {
        let outcome = match store::callback(&pool, id).await {
            Ok(Some(callback)) => apply(&pool, &mpesa, &callback).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = outcome {
            tracing::warn!(callback_id = id, error = %err, "applying a callback failed; the worker retries it");
        }
    });
}

const BATCH: i64 = 20;

/// What a member reads when their push may or may not have gone out.
const UNCONFIRMED_PUSH: &str = "We could not confirm that M-Pesa sent you a prompt. If you got one and paid, your chama's officials will check the payment and credit it; otherwise, please try again.";
const LEASE_SECONDS: f64 = 120.0;

/// The M-Pesa outbox worker.
#[derive(Debug, Clone)]
pub struct MpesaWorker {
    pub pool: PgPool,
    pub mpesa: Arc<Mpesa>,
    /// Pause between rounds when there was nothing to do.
    pub idle: Duration,
    /// How often reconciliation runs.
    pub reconcile_every: Duration,
}

enum Outcome {
    Done,
    Retry(String),
}

impl MpesaWorker {
    pub fn new(pool: PgPool, mpesa: Arc<Mpesa>) -> Self {
        Self {
            pool,
            mpesa,
            idle: Duration::from_millis(250),
            reconcile_every: Duration::from_secs(60),
        }
    }

    /// One round: the due outbox messages of our topics, then the callbacks left unapplied.
    /// Answers how many things it handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut topics = vec![STK_TOPIC];
        if self.mpesa.pays_out() {
            topics.extend([PAYOUT_TOPIC, STATUS_TOPIC]);
        }
        let batch = outbox::claim(&self.pool, &topics, BATCH, LEASE_SECONDS).await?;
        for message in &batch {
            let outcome = match message.topic.as_str() {
                STK_TOPIC => self.stk_push(message).await?,
                topic => {
                    let handled = if topic == PAYOUT_TOPIC {
                        crate::mpesa_payouts::pay(&self.pool, &self.mpesa, message).await?
                    } else {
                        crate::mpesa_payouts::query_status(&self.pool, &self.mpesa, message).await?
                    };
                    match handled {
                        Ok(()) => Outcome::Done,
                        Err(why) => Outcome::Retry(why),
                    }
                }
            };
            match outcome {
                Outcome::Done => outbox::complete(&self.pool, message.id).await?,
                Outcome::Retry(why) => {
                    let dead = outbox::fail(
                        &self.pool,
                        message.id,
                        &why,
                        backoff_seconds(message.attempts),
                    )
                    .await?;
                    tracing::warn!(outbox_id = message.id, topic = %message.topic, attempts = message.attempts, dead, error = %why, "M-Pesa request not made; retried later");
                }
            }
        }
        let pending = store::pending_callbacks(
            &self.pool,
            self.mpesa.rescan_after.as_secs_f64(),
            100,
            &self.mpesa.in_flight.held(),
        )
        .await?;
        // STK callbacks (the many) a batch at a time, as the route's applier does.
        let mut stk = Vec::new();
        let mut statuses = Vec::new();
        for callback in &pending {
            if callback.kind == "stk" && self.mpesa.in_flight.claims(callback.id) {
                continue; // this process's applier has it, or its refiller will read it back
            }
            if callback.kind != "stk" {
                statuses.push(apply(&self.pool, &self.mpesa, callback).await?);
                continue;
            }
            match parse_stk(&callback.payload) {
                Ok(parsed) => stk.push((callback.id, parsed)),
                Err(err) => {
                    store::hold_callback(&self.pool, callback.id, &err.0).await?;
                    statuses.push("review".to_owned());
                }
            }
        }
        for outcome in crate::stk_batches::apply_batch(&self.pool, &self.mpesa, &stk).await {
            statuses.push(outcome?);
        }
        let applied = statuses.iter().filter(|s| *s != "received").count();
        Ok(batch.len() + applied)
    }

    /// A push that may or may not have prompted the member: never sent again, the request
    /// fails with [`UNCONFIRMED_PUSH`], and a payment it brings waits for review.
    async fn push_unconfirmed(&self, id: Uuid, why: &str) -> Result<Outcome, StoreError> {
        store::fail_payment_request(&self.pool, id, None, why, UNCONFIRMED_PUSH).await?;
        tracing::warn!(payment_request_id = %id, why, "STK push outcome unknown; not sent again");
        Ok(Outcome::Done)
    }

    async fn stk_push(&self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let id = message
            .payload
            .get("payment_request_id")
            .and_then(|v| v.as_str())
            .and_then(|v| Uuid::parse_str(v).ok());
        let Some(id) = id else {
            outbox::bury(
                &self.pool,
                message.id,
                "the payload has no payment_request_id",
            )
            .await?;
            return Ok(Outcome::Done);
        };
        let Some(request) = store::payment_request(&self.pool, id).await? else {
            outbox::bury(&self.pool, message.id, "no such payment request").await?;
            return Ok(Outcome::Done);
        };
        if request.status != "queued" {
            return Ok(Outcome::Done); // sent already (a previous attempt), or cancelled
        }
        let phone = match pesachama_domain::Phone::parse(&request.phone) {
            Ok(phone) => phone,
            Err(err) => {
                store::fail_payment_request(
                    &self.pool,
                    id,
                    None,
                    &err.to_string(),
                    "This phone number cannot receive M-Pesa prompts.",
                )
                .await?;
                return Ok(Outcome::Done);
            }
        };
        if !store::stk_push_starting(&self.pool, id).await? {
            // An earlier attempt called Daraja and its answer never came back: the member may
            // have been prompted. Pushing again could have them pay twice.
            return self
                .push_unconfirmed(id, "an earlier attempt to send the push got no answer")
                .await;
        }
        let callback_url = self.mpesa.callback_url("stk");
        let push = StkPush {
            amount: request.amount / 100,
            phone: &phone,
            callback_url: &callback_url,
            account_reference: &request.account_reference,
            description: "Contribution",
        };
        match self.mpesa.client.stk_push(&push).await {
            Ok(accepted) => {
                store::stk_push_sent(
                    &self.pool,
                    id,
                    &accepted.merchant_request_id,
                    &accepted.checkout_request_id,
                )
                .await?;
                tracing::info!(payment_request_id = %id, checkout_request_id = %accepted.checkout_request_id, "STK push sent");
                Ok(Outcome::Done)
            }
            Err(err @ DarajaError::Rejected { .. }) => {
                store::fail_payment_request(&self.pool, id, None, &err.to_string(), "M-Pesa could not send the prompt to this phone. Check the number and try again.").await?;
                tracing::warn!(payment_request_id = %id, error = %err, "STK push refused");
                Ok(Outcome::Done)
            }
            Err(err @ DarajaError::Unavailable(_)) => {
                // It never got through: send it later.
                store::stk_push_not_sent(&self.pool, id).await?;
                Ok(Outcome::Retry(err.to_string()))
            }
            Err(err) => self.push_unconfirmed(id, &err.to_string()).await,
        }
    }

    /// Runs until `shutdown` completes; a database hiccup is logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_reconcile = std::time::Instant::now();
        loop {
            if last_reconcile.elapsed() >= self.reconcile_every {
                last_reconcile = std::time::Instant::now();
                match crate::mpesa_reconcile::reconcile_once(
                    &self.pool,
                    &self.mpesa,
                    self.mpesa.reconcile_after,
                )
                .await
                {
                    Ok(report)
                        if !report.changed.is_empty()
                            || !report.errors.is_empty()
                            || report.review_callbacks + report.review_requests > 0 =>
                    {
                        tracing::info!(
                            changed = report.changed.len(),
                            pending = report.still_pending.len(),
                            payouts_queried = report.payouts_queried.len(),
                            review_callbacks = report.review_callbacks,
                            review_requests = report.review_requests,
                            errors = report.errors.len(),
                            "M-Pesa reconciliation"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "M-Pesa reconciliation failed; it runs again later")
                    }
                }
            }
            let pause = match self.run_once().await {
                Ok(n) if n as i64 >= BATCH => Duration::ZERO,
                Ok(_) => self.idle,
                Err(err) => {
                    tracing::warn!(error = %err, "the M-Pesa worker cannot reach the database");
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
