//! The only crate that speaks SQL. Functions take any executor (`&PgPool`, a transaction, a
//! connection), so the same call runs on the pool or inside the caller's transaction.

pub mod db;
pub mod integrity;
pub mod migrations;

pub use db::{connect, ensure_database, seed_demo};
pub use sqlx::PgPool;

/// What the store reports to the layers above.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database has no PesaChama schema yet; run `pesachama db migrate`")]
    NotMigrated,
    #[error(
        "the database has migration {version} that this build of pesachama does not know; upgrade pesachama"
    )]
    UnknownMigration { version: String },
    #[error("migration {version}_{name} failed: {source}")]
    MigrationFailed {
        version: String,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether an error means "the schema is not there" (undefined table, function or schema).
    pub(crate) fn from_missing_schema(err: sqlx::Error) -> Self {
        let missing = err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| matches!(code.as_ref(), "42P01" | "42883" | "3F000"));
        if missing {
            Self::NotMigrated
        } else {
            Self::Database(err)
        }
    }
}
