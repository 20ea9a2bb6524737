//! Attacks, each performed as an attacker would send it (over HTTP, or as the Data API runs a
//! request), and each refused. `docs/security.md` lists them by threat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod input;
mod metrics;
mod phone_ownership;
mod tokens;
