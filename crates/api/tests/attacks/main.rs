//! Attacks, each performed as an attacker would send it (over HTTP, or as the Data API runs a
//! request), and each refused. `docs/security.md` lists them by threat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../mpesa_common/mod.rs"]
mod mpesa_common;
#[path = "../ussd_common/mod.rs"]
mod ussd_common;

mod callback_dates;
mod input;
mod metrics;
mod mpesa;
mod phone_ownership;
mod stk_prompts;
mod tokens;
mod ussd;
