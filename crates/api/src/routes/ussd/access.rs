//! Who may post to the USSD callback.
//!
//! Africa's Talking signs nothing, and `phoneNumber` is just a form field: whoever can post to
//! the callback can speak for any number. So, outside `--demo`, a request must come to
//! `POST /ussd/{token}` (the secret `USSD_CALLBACK_TOKEN`, compared in constant time) **and**
//! from the gateway's addresses (`USSD_ALLOWED_IPS`, read through `TRUSTED_PROXY_HEADER`);
//! the checks are those of the M-Pesa callbacks ([`crate::gate`]). A token alone is refused at
//! start: a token leaks (logs, proxies, a gateway dashboard) and then nothing else stands. The
//! open `POST /ussd` exists only in `--demo`. A server started without either answers 503
//! `ussd_not_configured` naming the settings.
//!
//! Refusals are HTTP errors on purpose: the gateway ends a session on any error, and whoever
//! else is posting gets no menu.

use crate::ApiError;
use crate::gate::{self, AllowList};
use crate::gotrue::ClientIp;

/// The USSD callback's access settings (`ServerConfig::ussd`; `None`: USSD is off).
#[derive(Debug, Clone, Default)]
pub struct UssdGate {
    /// The secret path segment of `POST /ussd/{token}`.
    pub callback_token: Option<String>,
    /// The gateway's addresses; empty admits any (only `--demo` starts so).
    pub allowed_sources: AllowList,
    /// `POST /ussd` without a token is served too (`--demo` only).
    pub open: bool,
}

impl UssdGate {
    /// Whether the gate is safe to face the internet: a token and an allow-list, no open route.
    pub fn is_closed(&self) -> bool {
        self.callback_token.is_some() && !self.allowed_sources.is_empty() && !self.open
    }
}

/// 503 `ussd_not_configured`, naming what is missing.
fn not_configured() -> ApiError {
    ApiError::NotConfigured {
        code: "ussd_not_configured",
        message: "USSD is not configured: set USSD_CALLBACK_TOKEN and USSD_ALLOWED_IPS (the Africa's Talking gateway's addresses)".to_owned(),
    }
}

/// Checks a request to `/ussd` (`token` `None`) or `/ussd/{token}` before anything is read.
pub(crate) fn admit(
    gate: Option<&UssdGate>,
    token: Option<&str>,
    client: &ClientIp,
) -> Result<(), ApiError> {
    let Some(gate) = gate else {
        return Err(not_configured());
    };
    let token_ok = match (token, &gate.callback_token) {
        (None, _) => gate.open,
        (Some(given), Some(expected)) => gate::token_matches(given, expected),
        (Some(_), None) => false,
    };
    if !token_ok {
        tracing::warn!(source = ?client.0, "USSD request without the right path token refused");
        return Err(ApiError::NotFound);
    }
    if !gate.allowed_sources.admits(client) {
        tracing::warn!(source = ?client.0, "USSD request from an address outside USSD_ALLOWED_IPS refused");
        return Err(ApiError::Forbidden(
            "USSD requests are accepted from the gateway's addresses only".to_owned(),
        ));
    }
    Ok(())
}

/// The path for the logs: the token of `/ussd/{token}` becomes `***`.
pub(crate) fn loggable_path(path: &str) -> Option<&'static str> {
    path.starts_with("/ussd/").then_some("/ussd/***")
}
