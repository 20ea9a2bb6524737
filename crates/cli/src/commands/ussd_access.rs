//! Who `serve` lets post to `/ussd` (see `crates/api/src/routes/ussd/access.rs` for why).
//!
//! Outside `--demo` both `USSD_CALLBACK_TOKEN` and `USSD_ALLOWED_IPS` are needed: with
//! neither, USSD is off (`/ussd` answers 503 naming them); with one of them only, `serve`
//! refuses to start, naming the unsafe combination. `--demo` also serves the open `POST /ussd`.

use anyhow::bail;
use pesachama_api::gate::{AllowList, check_token_setting};
use pesachama_api::routes::ussd::UssdGate;

use crate::cli::ServeArgs;

/// The USSD gate of `serve`, or why it must not start. Checked before anything is started
/// (and silent: [`log`] says what was chosen once the server starts).
pub fn gate(args: &ServeArgs) -> anyhow::Result<Option<UssdGate>> {
    let token = args
        .ussd_callback_token
        .clone()
        .filter(|t| !t.trim().is_empty());
    if let Some(token) = &token {
        check_token_setting("USSD_CALLBACK_TOKEN", token).map_err(anyhow::Error::msg)?;
    }
    let allowed =
        AllowList::parse("USSD_ALLOWED_IPS", &args.ussd_allowed_ips).map_err(anyhow::Error::msg)?;
    if args.demo {
        return Ok(Some(UssdGate {
            callback_token: token,
            allowed_sources: allowed,
            open: true,
        }));
    }
    match (token, allowed.is_empty()) {
        (Some(token), false) => Ok(Some(UssdGate {
            callback_token: Some(token),
            allowed_sources: allowed,
            open: false,
        })),
        (Some(_), true) => bail!(
            "unsafe USSD settings: USSD_CALLBACK_TOKEN without USSD_ALLOWED_IPS. Africa's Talking signs nothing, so anyone who learns the token could act as any phone number; set USSD_ALLOWED_IPS to the gateway's addresses (and TRUSTED_PROXY_HEADER behind a proxy)"
        ),
        (None, false) => bail!(
            "unsafe USSD settings: USSD_ALLOWED_IPS without USSD_CALLBACK_TOKEN; set both (the token is the secret part of the callback URL /ussd/<token>)"
        ),
        (None, true) => Ok(None),
    }
}

/// Says at start who may post to `/ussd`, and why not when nobody may.
pub fn log(gate: Option<&UssdGate>) {
    match gate {
        None => tracing::warn!(
            "USSD is off: /ussd answers 503 until USSD_CALLBACK_TOKEN and USSD_ALLOWED_IPS are set (or run --demo)"
        ),
        Some(gate) if gate.open => tracing::warn!(
            "USSD: POST /ussd is open to anyone (--demo) and believes any phoneNumber: never face the internet so"
        ),
        Some(_) => {
            tracing::info!("USSD: POST /ussd/<USSD_CALLBACK_TOKEN> from USSD_ALLOWED_IPS only");
        }
    }
}
