//! Google sign-in: verifying an ID token against Google's published keys.

use std::time::{Duration, Instant};

use pesachama_auth::Jwks;
use serde::Deserialize;
use sha2::Digest as _;
use tokio::sync::RwLock;

/// Google's keys rotate every few days; an hour of caching is what Google's own libraries do.
const CACHE_FOR: Duration = Duration::from_secs(3600);
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

#[derive(Debug)]
pub struct GoogleKeys {
    url: String,
    client: reqwest::Client,
    cached: RwLock<Option<(Instant, Jwks)>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GoogleIdentity {
    pub sub: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub nonce: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    #[error("Google sign-in is not configured (no client ids)")]
    NotConfigured,
    #[error("cannot fetch Google's keys: {0}")]
    Keys(String),
    #[error("{0}")]
    Token(#[from] pesachama_auth::TokenError),
    #[error("nonces mismatch")]
    Nonce,
}

impl GoogleKeys {
    pub fn new(url: String) -> Self {
        Self {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cached: RwLock::new(None),
        }
    }

    /// The HTTP client that talks to Google (keys, and the OAuth token endpoint).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    async fn keys(&self) -> Result<Jwks, GoogleError> {
        if let Some((at, jwks)) = self.cached.read().await.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(jwks.clone());
        }
        let mut cached = self.cached.write().await;
        let body = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| GoogleError::Keys(err.to_string()))?
            .text()
            .await
            .map_err(|err| GoogleError::Keys(err.to_string()))?;
        let jwks = Jwks::from_json(&body).map_err(GoogleError::Keys)?;
        *cached = Some((Instant::now(), jwks.clone()));
        Ok(jwks)
    }

    /// Verifies signature, issuer, audience (one of `client_ids`), expiry and, when the client
    /// sent one, the nonce: the token carries either the nonce itself or its SHA-256 in hex
    /// (what the native Google SDKs are given when the app hashes it first, as Supabase advises).
    pub async fn verify(
        &self,
        id_token: &str,
        client_ids: &[String],
        nonce: Option<&str>,
    ) -> Result<GoogleIdentity, GoogleError> {
        if client_ids.is_empty() {
            return Err(GoogleError::NotConfigured);
        }
        let jwks = self.keys().await?;
        let identity: GoogleIdentity = jwks.verify_external(id_token, client_ids, &ISSUERS)?;
        if let Some(nonce) = nonce {
            let hashed = hex::encode(sha2::Sha256::digest(nonce.as_bytes()));
            match identity.nonce.as_deref() {
                Some(got) if got == nonce || got == hashed => {}
                _ => return Err(GoogleError::Nonce),
            }
        }
        Ok(identity)
    }
}
