//! The Daraja client.
//!
//! One OAuth token is cached until a minute before it expires; the cache is behind an async
//! mutex held while refreshing, so many callers needing a token at once cause one refresh, not
//! a stampede. Calls time out; 5xx answers and network errors are retried with exponential
//! backoff, anything else (a 4xx, a refusal in the body) is reported at once, since repeating
//! a refused request cannot make it succeed. Logs name the endpoint, the status and the time
//! taken, never a key, a password, a token or a full phone number.

use std::time::{Duration, Instant};

use chrono::Utc;
use pesachama_domain::Phone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::time::{stk_password, timestamp};

/// What the client needs to know. `Debug` hides the secrets.
#[derive(Clone)]
pub struct DarajaConfig {
    /// `https://sandbox.safaricom.co.ke`, `https://api.safaricom.co.ke`, or a simulator.
    pub base_url: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// The paybill / till of STK pushes and C2B, and PartyA of B2C.
    pub shortcode: String,
    pub passkey: String,
    pub initiator_name: String,
    /// The B2C `SecurityCredential`, computed once from the initiator password and the
    /// certificate (see [`crate::credential`]); empty when B2C is not configured.
    pub security_credential: String,
    pub timeout: Duration,
    /// Retries after the first attempt, for 5xx and network errors.
    pub retries: u32,
    /// The first retry's pause; each next one doubles it.
    pub backoff: Duration,
}

impl std::fmt::Debug for DarajaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DarajaConfig")
            .field("base_url", &self.base_url)
            .field("shortcode", &self.shortcode)
            .field("initiator_name", &self.initiator_name)
            .field("b2c", &!self.security_credential.is_empty())
            .finish_non_exhaustive()
    }
}

impl DarajaConfig {
    /// A configuration with the usual timeouts and retries.
    pub fn new(
        base_url: impl Into<String>,
        consumer_key: impl Into<String>,
        consumer_secret: impl Into<String>,
        shortcode: impl Into<String>,
        passkey: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            shortcode: shortcode.into(),
            passkey: passkey.into(),
            initiator_name: String::new(),
            security_credential: String::new(),
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DarajaError {
    /// Daraja refused the request (4xx, or a non-zero ResponseCode); repeating it will not help.
    #[error("Daraja refused the request ({code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// Daraja could not be reached or kept failing (5xx) after the retries. For a payment
    /// (STK push, B2C) this means the request never got through (no connection, 503, 429).
    #[error("Daraja is unavailable: {0}")]
    Unavailable(String),
    /// A payment request that may have reached Daraja although no answer says so (a timeout,
    /// a dropped connection, a 500): sending it again could prompt or pay twice, so it is not
    /// retried. The caller finds out what happened (a status query) or asks the person.
    #[error("Daraja may or may not have the request: {0}")]
    Uncertain(String),
    /// An answer that is not what Daraja answers.
    #[error("unexpected answer from Daraja: {0}")]
    Protocol(String),
}

impl DarajaError {
    /// Worth trying again later (the outbox's backoff) rather than giving up.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Whether a call may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Queries, registration, OAuth: asking twice does no harm.
    Safe,
    /// Payments: only if the first never got through.
    OnlyUnsent,
}

#[derive(Debug)]
struct CachedToken {
    token: String,
    refresh_after: Instant,
}

#[derive(Debug)]
pub struct DarajaClient {
    config: DarajaConfig,
    http: reqwest::Client,
    token: Mutex<Option<CachedToken>>,
}

/// An STK push to start.
#[derive(Debug, Clone)]
pub struct StkPush<'a> {
    /// Whole shillings (Daraja takes no cents).
    pub amount: i64,
    pub phone: &'a Phone,
    pub callback_url: &'a str,
    /// Shown to the payer; cut to 12 characters.
    pub account_reference: &'a str,
    /// Cut to 13 characters.
    pub description: &'a str,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StkPushAccepted {
    #[serde(rename = "MerchantRequestID")]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: String,
    pub response_code: String,
    #[serde(default)]
    pub response_description: String,
    #[serde(default)]
    pub customer_message: String,
}

/// What an STK query learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkQueryOutcome {
    /// The payer has not answered yet.
    Pending,
    /// Final: 0 is paid, anything else is the failure code.
    Final {
        result_code: i64,
        result_desc: String,
    },
}

/// A B2C payment to start.
#[derive(Debug, Clone)]
pub struct B2cPayment<'a> {
    /// Whole shillings.
    pub amount: i64,
    pub phone: &'a Phone,
    pub remarks: &'a str,
    pub occasion: &'a str,
    pub result_url: &'a str,
    pub timeout_url: &'a str,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct B2cAccepted {
    #[serde(rename = "ConversationID")]
    pub conversation_id: String,
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    pub response_code: String,
    #[serde(default)]
    pub response_description: String,
}

/// Cuts to at most `max` characters (Daraja refuses longer AccountReference/TransactionDesc).
pub fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl DarajaClient {
    pub fn new(config: DarajaConfig) -> Result<Self, DarajaError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|err| DarajaError::Protocol(format!("cannot build the HTTP client: {err}")))?;
        Ok(Self {
            config,
            http,
            token: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &DarajaConfig {
        &self.config
    }

    /// A valid access token: the cached one, or a new one (one refresh at a time).
    pub async fn access_token(&self) -> Result<String, DarajaError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_after
        {
            return Ok(token.token.clone());
        }
        let url = format!(
            "{}/oauth/v1/generate?grant_type=client_credentials",
            self.config.base_url
        );
        let answer = self
            .send("oauth", Repeat::Safe, || {
                self.http.get(&url).basic_auth(
                    &self.config.consumer_key,
                    Some(&self.config.consumer_secret),
                )
            })
            .await?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DarajaError::Protocol("the OAuth answer has no access_token".into()))?
            .to_owned();
        // "3599", a string; a number is accepted too.
        let expires_in = match answer.get("expires_in") {
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .unwrap_or(3599);
        // Refresh a minute early (and never cache past what Daraja said).
        let keep = Duration::from_secs(expires_in.saturating_sub(60).max(1));
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_after: Instant::now() + keep,
        });
        Ok(token)
    }

    /// Forgets the cached token (Daraja said it is no longer valid).
    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// POSTs `body` to `path` with the bearer token; a 401 refreshes the token once.
    async fn post(&self, name: &str, path: &str, body: &Value) -> Result<Value, DarajaError> {
        self.post_as(name, path, body, Repeat::Safe).await
    }

    /// POSTs a payment: repeated only when it certainly did not get through.
    async fn post_payment(
        &self,
        name: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, DarajaError> {
        self.post_as(name, path, body, Repeat::OnlyUnsent).await
    }

    async fn post_as(
        &self,
        name: &str,
        path: &str,
        body: &Value,
        repeat: Repeat,
    ) -> Result<Value, DarajaError> {
        let url = format!("{}{path}", self.config.base_url);
        for attempt in 0..2 {
            let token = self.access_token().await?;
            match self
                .send(name, repeat, || {
                    self.http.post(&url).bearer_auth(&token).json(body)
                })
                .await
            {
                Err(DarajaError::Rejected { status: 401, .. }) if attempt == 0 => {
                    self.forget_token().await;
                }
                other => return other,
            }
        }
        Err(DarajaError::Protocol(
            "the access token was refused twice".into(),
        ))
    }

    /// Sends with retries on 5xx and network errors; answers the JSON body of a 2xx. A
    /// payment ([`Repeat::OnlyUnsent`]) is retried only when it did not get through: no
    /// connection, 503 or 429. Any other failure of a payment is [`DarajaError::Uncertain`].
    async fn send(
        &self,
        name: &str,
        repeat: Repeat,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, DarajaError> {
        let mut pause = self.config.backoff;
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = request().send().await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let failure = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    tracing::info!(endpoint = name, status, elapsed_ms, attempt, "daraja call");
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if (200..300).contains(&status) {
                        if body.is_null() {
                            return Err(DarajaError::Protocol(format!(
                                "{name} answered {status} without JSON"
                            )));
                        }
                        return Ok(body);
                    }
                    let code = body
                        .get("errorCode")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let message = body
                        .get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| text.chars().take(200).collect());
                    if status < 500 {
                        return Err(DarajaError::Rejected {
                            status,
                            code,
                            message,
                        });
                    }
                    // Daraja answers a query for a payment still in progress with a 500
                    // "The transaction is being processed": not worth retrying here.
                    if code == "500.001.1001" {
                        return Err(DarajaError::Rejected {
                            status,
                            code,
                            message,
                        });
                    }
                    let failure = format!("{name} answered {status} {code} {message}");
                    if repeat == Repeat::OnlyUnsent && !matches!(status, 503 | 429) {
                        return Err(DarajaError::Uncertain(failure));
                    }
                    failure
                }
                Err(err) => {
                    let unsent = err.is_connect();
                    let err = err.without_url();
                    tracing::warn!(endpoint = name, elapsed_ms, attempt, error = %err, "daraja call failed");
                    let failure = format!("{name}: {err}");
                    if repeat == Repeat::OnlyUnsent && !unsent {
                        return Err(DarajaError::Uncertain(failure));
                    }
                    failure
                }
            };
            if attempt >= self.config.retries {
                return Err(DarajaError::Unavailable(failure));
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2);
        }
    }

    /// Asks M-Pesa to prompt the payer for their PIN.
    pub async fn stk_push(&self, push: &StkPush<'_>) -> Result<StkPushAccepted, DarajaError> {
        let ts = timestamp(Utc::now());
        let body = json!({
            "BusinessShortCode": self.config.shortcode,
            "Password": stk_password(&self.config.shortcode, &self.config.passkey, &ts),
            "Timestamp": ts,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": push.amount,
            "PartyA": push.phone.msisdn(),
            "PartyB": self.config.shortcode,
            "PhoneNumber": push.phone.msisdn(),
            "CallBackURL": push.callback_url,
            "AccountReference": clip(push.account_reference, 12),
            "TransactionDesc": clip(push.description, 13),
        });
        tracing::info!(phone = %push.phone.masked(), amount = push.amount, "STK push");
        let answer = self
            .post_payment("stk_push", "/mpesa/stkpush/v1/processrequest", &body)
            .await?;
        let accepted: StkPushAccepted = serde_json::from_value(answer)
            .map_err(|err| DarajaError::Protocol(format!("STK push answer: {err}")))?;
        if accepted.response_code != "0" {
            return Err(DarajaError::Rejected {
                status: 200,
                code: accepted.response_code,
                message: accepted.response_description,
            });
        }
        Ok(accepted)
    }

    /// Asks what became of an STK push.
    pub async fn stk_query(
        &self,
        checkout_request_id: &str,
    ) -> Result<StkQueryOutcome, DarajaError> {
        let ts = timestamp(Utc::now());
        let body = json!({
            "BusinessShortCode": self.config.shortcode,
            "Password": stk_password(&self.config.shortcode, &self.config.passkey, &ts),
            "Timestamp": ts,
            "CheckoutRequestID": checkout_request_id,
        });
        match self
            .post("stk_query", "/mpesa/stkpushquery/v1/query", &body)
            .await
        {
            Ok(answer) => {
                // ResultCode is a string here ("0", "1032"), a number elsewhere.
                let code = match answer.get("ResultCode") {
                    Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
                    Some(Value::Number(n)) => n.as_i64(),
                    _ => None,
                }
                .ok_or_else(|| {
                    DarajaError::Protocol("the STK query answer has no ResultCode".into())
                })?;
                let desc = answer
                    .get("ResultDesc")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(StkQueryOutcome::Final {
                    result_code: code,
                    result_desc: desc,
                })
            }
            Err(DarajaError::Rejected { code, .. }) if code == "500.001.1001" => {
                Ok(StkQueryOutcome::Pending)
            }
            Err(err) => Err(err),
        }
    }

    /// Tells Daraja where paybill payments are validated and confirmed.
    pub async fn register_c2b_urls(
        &self,
        validation_url: &str,
        confirmation_url: &str,
    ) -> Result<(), DarajaError> {
        let body = json!({
            "ShortCode": self.config.shortcode,
            "ResponseType": "Completed",
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        });
        self.post("c2b_register", "/mpesa/c2b/v1/registerurl", &body)
            .await
            .map(|_| ())
    }

    /// Pays money to a phone (B2C). Needs the initiator and its security credential.
    pub async fn b2c_payment(
        &self,
        payment: &B2cPayment<'_>,
        originator_conversation_id: &str,
    ) -> Result<B2cAccepted, DarajaError> {
        if self.config.security_credential.is_empty() {
            return Err(DarajaError::Protocol(
                "B2C is not configured (no initiator password and certificate)".into(),
            ));
        }
        let body = json!({
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": self.config.initiator_name,
            "SecurityCredential": self.config.security_credential,
            "CommandID": "BusinessPayment",
            "Amount": payment.amount,
            "PartyA": self.config.shortcode,
            "PartyB": payment.phone.msisdn(),
            "Remarks": clip(payment.remarks, 100),
            "QueueTimeOutURL": payment.timeout_url,
            "ResultURL": payment.result_url,
            "Occassion": clip(payment.occasion, 100),
        });
        tracing::info!(phone = %payment.phone.masked(), amount = payment.amount, "B2C payment");
        let answer = self
            .post_payment("b2c", "/mpesa/b2c/v1/paymentrequest", &body)
            .await?;
        let accepted: B2cAccepted = serde_json::from_value(answer)
            .map_err(|err| DarajaError::Protocol(format!("B2C answer: {err}")))?;
        if accepted.response_code != "0" {
            return Err(DarajaError::Rejected {
                status: 200,
                code: accepted.response_code,
                message: accepted.response_description,
            });
        }
        Ok(accepted)
    }

    /// Asks for the status of a transaction; the answer arrives later at `result_url`, under
    /// the OriginatorConversationID this returns (the query's own, not the payment's). The
    /// payment's OriginatorConversationID also travels as the `Occasion`, which Daraja echoes.
    pub async fn transaction_status(
        &self,
        transaction_id: &str,
        originator_conversation_id: &str,
        result_url: &str,
        timeout_url: &str,
    ) -> Result<String, DarajaError> {
        let body = json!({
            "Initiator": self.config.initiator_name,
            "SecurityCredential": self.config.security_credential,
            "CommandID": "TransactionStatusQuery",
            "TransactionID": transaction_id,
            "OriginatorConversationID": originator_conversation_id,
            "PartyA": self.config.shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": "status",
            "Occasion": clip(originator_conversation_id, 100),
        });
        let answer = self
            .post(
                "transaction_status",
                "/mpesa/transactionstatus/v1/query",
                &body,
            )
            .await?;
        answer
            .get("OriginatorConversationID")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                DarajaError::Protocol(
                    "the status query's answer has no OriginatorConversationID".into(),
                )
            })
    }
}
