//! Google's token endpoint: the authorization code the browser brought back is traded, server
//! to server, with the client secret, for Google's tokens (RFC 6749 §4.1.3, as Google documents
//! it: a form POST, a JSON answer).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct GoogleTokens {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// Google's error answer (`{"error": "invalid_grant", "error_description": "Bad Request"}`).
#[derive(Debug, Deserialize)]
struct GoogleError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Google refused the code (used, expired, for another client or redirect URI).
    #[error("Google refused the authorization code: {0}")]
    Refused(String),
    /// Google could not be reached or answered something else than its token format.
    #[error("Google's token endpoint failed: {0}")]
    Unavailable(String),
}

pub struct Exchange<'a> {
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub redirect_uri: &'a str,
    pub code: &'a str,
}

impl std::fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub async fn exchange(
    client: &reqwest::Client,
    request: &Exchange<'_>,
) -> Result<GoogleTokens, ExchangeError> {
    let response = client
        .post(request.token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", request.code),
            ("client_id", request.client_id),
            ("client_secret", request.client_secret),
            ("redirect_uri", request.redirect_uri),
        ])
        .send()
        .await
        // Without the URL: reqwest's error text would carry it, and nothing secret is in it,
        // but the code is in the body only; keep the message short.
        .map_err(|err| ExchangeError::Unavailable(err.without_url().to_string()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|err| ExchangeError::Unavailable(err.without_url().to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|err| ExchangeError::Unavailable(format!("unreadable answer: {err}")));
    }
    match serde_json::from_slice::<GoogleError>(&body) {
        Ok(error) if status.is_client_error() => {
            Err(ExchangeError::Refused(match error.error_description {
                Some(description) => format!("{} ({description})", error.error),
                None => error.error,
            }))
        }
        _ => Err(ExchangeError::Unavailable(format!("HTTP {status}"))),
    }
}
