//! The migration toolkit: legacy PesaChama v1 (`sql/legacy_schema.sql`) to this project's
//! schema. `generate` fills a legacy database with realistic data and every known quirk;
//! `plan` reports what will move and what must be fixed; `copy` moves it in resumable batches
//! with COPY; `verify` proves the target holds exactly the transformed source.
//!
//! Module map: `clean` (value transforms), `users`, `ledger`, `rows` (row transforms, pure and
//! unit-tested), `ids` (deterministic ids), `pgtext` (COPY format), `source` (reading legacy),
//! `pipeline` (steps and batches), `state` (the `pesachama_migrate` schema on the target),
//! `copy`, `plan`, `verify`, `report`, `generate`.

pub mod access;
pub mod batch;
pub mod clean;
pub mod copy;
pub mod cutover;
pub mod generate;
pub mod ids;
pub mod ledger;
pub mod model;
pub mod pgbinary;
pub mod pgtext;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rows;
pub mod rules;
pub mod source;
pub mod state;
pub mod sync;
pub mod target;
pub mod users;
pub mod verify;

/// The legacy schema, embedded (a copy of `../shared/legacy/schema.sql`).
pub const LEGACY_SCHEMA: &str = include_str!("../sql/legacy_schema.sql");
