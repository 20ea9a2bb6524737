//! Attacks, each performed as an attacker would send it (over HTTP, or as the Data API runs a
//! request), and each refused. `docs/security.md` lists them by threat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../ussd_common/mod.rs"]
mod ussd_common;

mod input;
mod metrics;
mod mpesa;
mod phone_ownership;
mod stk_prompts;
mod tokens;
mod ussd;
