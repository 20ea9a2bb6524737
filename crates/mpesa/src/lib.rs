//! M-Pesa through Safaricom's Daraja API.
//!
//! * [`client::DarajaClient`]: OAuth (one cached token, refreshed by one caller at a time), STK
//!   push and query, C2B URL registration, B2C payments and transaction status, with timeouts
//!   and retries on 5xx and network errors only. Nothing secret is ever logged.
//! * [`callback`]: strict parsers for what Daraja posts back (STK, B2C, C2B).
//! * [`credential`]: the B2C `SecurityCredential` (RSA PKCS#1 v1.5 with the certificate's key).
//! * [`simulator`]: a local Daraja on loopback that answers like the real one and delivers the
//!   real callback shapes, chosen per phone number or amount, for tests, the benchmark and the
//!   embedded default.

pub mod callback;
pub mod client;
pub mod credential;
pub mod simulator;
pub mod time;

pub use client::{DarajaClient, DarajaConfig, DarajaError};

/// Daraja's sandbox.
pub const SANDBOX_URL: &str = "https://sandbox.safaricom.co.ke";
/// Daraja's production API.
pub const PRODUCTION_URL: &str = "https://api.safaricom.co.ke";
/// The sandbox's STK shortcode and passkey (published by Safaricom for testing).
pub const SANDBOX_SHORTCODE: &str = "174379";
pub const SANDBOX_PASSKEY: &str =
    "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";
