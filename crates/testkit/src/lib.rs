//! Test-only helpers: a fresh database per test and the app running on it.
//!
//! Databases live on one shared PostgreSQL server: the one `TEST_DATABASE_URL` names (an admin
//! URL on a server where tests may create and drop databases), or else a throwaway embedded
//! cluster under the system temp folder, started by the first test that needs it and left
//! running for the next test process (nextest runs each test in a process of its own). Each
//! test gets a new database cloned from a template that has every migration applied, which
//! takes milliseconds instead of the seconds a full migration would.

// A test helper that cannot set up its database has nothing better to do than fail loudly.
#![allow(clippy::expect_used)]

mod app;
mod db;
pub mod fake;

pub use app::{TEST_JWT_SECRET, TEST_USSD_TOKEN, TestApp};
pub use db::{TestDb, admin_url, supabase_mode};
