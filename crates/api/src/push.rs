//! Push notifications through Firebase Cloud Messaging's HTTP v1 API.
//!
//! Authentication is a Google service account: a JWT signed with its RS256 key (scope
//! `firebase.messaging`, audience the account's `token_uri`) is exchanged at `token_uri` for an
//! OAuth2 access token, which is cached until a minute before it expires; one refresh runs at a
//! time. Messages go to `POST {base}/v1/projects/{project}/messages:send` as
//! `{message:{token, notification:{title, body}, data}}` (FCM wants every data value a string).
//! A 404 or an `UNREGISTERED` error means the device token is dead and should be forgotten.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

pub const PRODUCTION_URL: &str = "https://fcm.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a Google service-account key file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a key file as the Firebase console downloads it.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let account: Self = serde_json::from_str(text)
            .map_err(|err| format!("not a Google service-account key file: {err}"))?;
        EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|err| format!("the service account's private_key is not an RSA key: {err}"))?;
        Ok(account)
    }
}

/// What became of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Sent {
        name: String,
    },
    /// The device token is no longer valid: forget it.
    DeadToken(String),
    /// Try again later (FCM trouble, quota, a network error, our credentials).
    Retry(String),
    /// This message will never go (FCM refused its content).
    Rejected(String),
}

/// The message shown on the device.
#[derive(Debug, Clone)]
pub struct Push<'a> {
    pub token: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    /// Flattened into FCM's string-to-string `data`.
    pub data: &'a Value,
}

#[derive(Debug)]
pub struct Fcm {
    base_url: String,
    account: ServiceAccount,
    key: EncodingKey,
    client: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "an_hour")]
    expires_in: u64,
}

fn an_hour() -> u64 {
    3600
}

impl Fcm {
    pub fn new(base_url: impl Into<String>, account: ServiceAccount) -> Result<Self, String> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|err| format!("the service account's private_key is not an RSA key: {err}"))?;
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            account,
            key,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            token: Mutex::new(None),
        })
    }

    pub fn project_id(&self) -> &str {
        &self.account.project_id
    }

    /// A valid access token: the cached one, or a new one (the lock makes concurrent callers
    /// wait for a single exchange).
    async fn access_token(&self) -> Result<String, String> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(
            &header,
            &Assertion {
                iss: &self.account.client_email,
                scope: SCOPE,
                aud: &self.account.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
        .map_err(|err| format!("cannot sign the service-account assertion: {err}"))?;
        let response = self
            .client
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|err| format!("cannot reach Google's token endpoint: {err}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "Google's token endpoint answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|err| format!("unexpected answer from Google's token endpoint: {err}"))?;
        let lifetime = Duration::from_secs(answer.expires_in.saturating_sub(60));
        *cached = Some((answer.access_token.clone(), Instant::now() + lifetime));
        Ok(answer.access_token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    pub async fn send(&self, push: &Push<'_>) -> PushOutcome {
        let token = match self.access_token().await {
            Ok(token) => token,
            Err(why) => return PushOutcome::Retry(why),
        };
        let body = json!({
            "message": {
                "token": push.token,
                "notification": { "title": push.title, "body": push.body },
                "data": string_map(push.data),
            }
        });
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.base_url, self.account.project_id
        );
        let response = match self
            .client
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => return PushOutcome::Retry(format!("cannot reach FCM: {err}")),
        };
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let error_code = fcm_error_code(&answer);
        match status {
            200 => PushOutcome::Sent {
                name: answer["name"].as_str().unwrap_or_default().to_owned(),
            },
            404 => PushOutcome::DeadToken("FCM: the device token is not registered".to_owned()),
            _ if error_code.as_deref() == Some("UNREGISTERED") => {
                PushOutcome::DeadToken("FCM: UNREGISTERED".to_owned())
            }
            401 | 403 => {
                self.forget_token().await;
                PushOutcome::Retry(format!("FCM refused our credentials ({status})"))
            }
            400 => PushOutcome::Rejected(format!(
                "FCM refused the message: {}",
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("invalid argument")
            )),
            _ => PushOutcome::Retry(format!(
                "FCM answered {status}{}",
                error_code.map(|c| format!(" ({c})")).unwrap_or_default()
            )),
        }
    }
}

/// FCM's own error code (`UNREGISTERED`, `QUOTA_EXCEEDED`, ...) from an error answer.
fn fcm_error_code(answer: &Value) -> Option<String> {
    answer["error"]["details"]
        .as_array()?
        .iter()
        .find_map(|d| d["errorCode"].as_str().map(str::to_owned))
}

/// FCM's `data` is a map of strings: strings stay, everything else is its JSON text.
fn string_map(data: &Value) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(object) = data.as_object() {
        for (key, value) in object {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            map.insert(key.clone(), Value::String(text));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_values_become_strings_and_nulls_are_left_out() {
        let map = string_map(&json!({"a": "x", "b": 5, "c": null, "d": {"e": true}}));
        assert_eq!(
            Value::Object(map),
            json!({"a": "x", "b": "5", "d": "{\"e\":true}"})
        );
    }

    #[test]
    fn the_fcm_error_code_is_read_from_the_details() {
        let answer = json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
        ]}});
        assert_eq!(fcm_error_code(&answer).as_deref(), Some("UNREGISTERED"));
        assert_eq!(fcm_error_code(&json!({})), None);
    }

    #[test]
    fn a_key_file_without_an_rsa_key_is_refused() {
        let text = json!({"project_id": "p", "client_email": "a@b", "private_key": "nope",
                          "token_uri": "http://x"})
        .to_string();
        assert!(ServiceAccount::from_json(&text).is_err());
        assert!(ServiceAccount::from_json("{}").is_err());
    }
}
