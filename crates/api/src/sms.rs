//! SMS through Africa's Talking (`POST {base}/version1/messaging`, form fields `username`, `to`,
//! `message`, `from`; header `apiKey`). Answers say per recipient whether the message went:
//! status codes 100-102 are accepted; 403 (invalid number), 404 (unsupported number type) and
//! 406 (blacklisted) will never work; anything else is worth another try.

use std::time::Duration;

use serde::Deserialize;

pub const PRODUCTION_URL: &str = "https://api.africastalking.com";
pub const SANDBOX_URL: &str = "https://api.sandbox.africastalking.com";

#[derive(Debug, Clone)]
pub struct AfricasTalking {
    pub base_url: String,
    pub username: String,
    pub api_key: String,
    /// A registered sender id or short code; the provider's default when absent.
    pub sender_id: Option<String>,
    client: reqwest::Client,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsOutcome {
    Sent {
        message_id: String,
    },
    /// Try again later (provider trouble, our balance, a network error).
    Retry(String),
    /// It will never go (a bad number, a blacklisted one).
    Rejected(String),
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(rename = "SMSMessageData")]
    data: MessageData,
}

#[derive(Debug, Deserialize)]
struct MessageData {
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "Recipients", default)]
    recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    #[serde(rename = "statusCode")]
    status_code: i64,
    #[serde(default)]
    status: String,
    #[serde(rename = "messageId", default)]
    message_id: String,
}

impl AfricasTalking {
    pub fn new(
        base_url: impl Into<String>,
        username: impl Into<String>,
        api_key: impl Into<String>,
        sender_id: Option<String>,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            username: username.into(),
            api_key: api_key.into(),
            sender_id,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn send(&self, to: &str, message: &str) -> SmsOutcome {
        let mut form = vec![
            ("username", self.username.as_str()),
            ("to", to),
            ("message", message),
        ];
        if let Some(from) = &self.sender_id {
            form.push(("from", from.as_str()));
        }
        let response = match self
            .client
            .post(format!("{}/version1/messaging", self.base_url))
            .header("apiKey", &self.api_key)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => return SmsOutcome::Retry(format!("cannot reach Africa's Talking: {err}")),
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.as_u16() == 401 {
            return SmsOutcome::Retry(
                "Africa's Talking refused the credentials (AT_USERNAME, AT_API_KEY)".to_owned(),
            );
        }
        if !status.is_success() {
            return SmsOutcome::Retry(format!(
                "Africa's Talking answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        let answer: Answer = match serde_json::from_str(&body) {
            Ok(answer) => answer,
            Err(err) => {
                return SmsOutcome::Retry(format!(
                    "unexpected answer from Africa's Talking ({err})"
                ));
            }
        };
        match answer.data.recipients.first() {
            Some(r) if (100..=102).contains(&r.status_code) => SmsOutcome::Sent {
                message_id: r.message_id.clone(),
            },
            Some(r) if matches!(r.status_code, 403 | 404 | 406) => {
                SmsOutcome::Rejected(format!("{} ({})", r.status, r.status_code))
            }
            Some(r) => SmsOutcome::Retry(format!("{} ({})", r.status, r.status_code)),
            None => SmsOutcome::Retry(format!(
                "no recipient in the answer: {}",
                answer.data.message
            )),
        }
    }
}
