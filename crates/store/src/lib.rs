//! The only crate that speaks SQL. Functions take any executor (`&PgPool`, a transaction, a
//! connection), so the same call runs on the pool or inside the caller's transaction.

pub mod auth;
pub mod auth_admin;
pub mod db;
pub mod flow_state;
pub mod integrity;
pub mod migrations;
pub mod mpesa;
pub mod mpesa_b2c;
pub mod notifications;
pub mod outbox;
pub mod pins;
pub mod realtime;
pub mod rls;
pub mod storage;
pub mod ussd;
pub mod ussd_pin_tries;

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
    /// The role migrating lacks a right the schema needs; nothing was written.
    #[error("{0}")]
    MissingRight(String),
    #[error("migration {version}_{name} failed: {source}")]
    MigrationFailed {
        version: String,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    /// A unique constraint refused the write: the thing exists already.
    #[error("unique constraint {constraint} violated")]
    Conflict { constraint: String },
    /// A check, not-null or foreign-key constraint refused the write: the input breaks a rule.
    #[error("constraint {constraint} violated")]
    RuleViolated { constraint: String },
    /// A trigger or function refused the write with a message meant for the caller
    /// (SQLSTATE class P0, raised with `raise exception ... using errcode = 'P0001'`).
    #[error("{message}")]
    Refused { message: String },
    /// A function answered "no such thing" (SQLSTATE PX404), or RLS hides it.
    #[error("{message}")]
    NotFound { message: String },
    /// The same idempotency key is still being processed (SQLSTATE PX409).
    #[error("{message}")]
    InFlight { message: String },
    /// A function refused its input (SQLSTATE PX422); the message names the problem.
    #[error("{message}")]
    Invalid { message: String },
    /// A function refused one input field (SQLSTATE PX422 raised with `column = '<field>'`).
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// A function refused because the caller asked too often (SQLSTATE PX429).
    #[error("{message}")]
    RateLimited { message: String },
    /// RLS or a missing privilege stopped the statement.
    #[error("{message}")]
    PermissionDenied { message: String },
    #[error(transparent)]
    Database(sqlx::Error),
}

impl StoreError {
    /// The refusal a function signals with `code` (a SQLSTATE it raises, or one it answers
    /// with, as a batch does for each of its requests), or `None` for codes that are not one.
    pub fn refusal(code: &str, message: impl Into<String>) -> Option<Self> {
        let message = message.into();
        Some(match code {
            "P0001" => Self::Refused { message },
            "PX404" => Self::NotFound { message },
            "PX409" => Self::InFlight { message },
            "PX422" => Self::Invalid { message },
            "PX429" => Self::RateLimited { message },
            "42501" => Self::PermissionDenied { message },
            _ => return None,
        })
    }
}

impl From<sqlx::Error> for StoreError {
    /// Sorts database errors by SQLSTATE, so the layers above can answer 409 for a duplicate,
    /// 422 for a broken rule and 403/404 for what RLS refused, naming the constraint.
    fn from(err: sqlx::Error) -> Self {
        let Some(db) = err.as_database_error() else {
            return Self::Database(err);
        };
        let constraint = || db.constraint().unwrap_or("unnamed").to_owned();
        let code = db.code().map(|code| code.into_owned());
        match code.as_deref() {
            Some("23505") => Self::Conflict {
                constraint: constraint(),
            },
            Some("23514" | "23502" | "23503" | "23P01" | "22001" | "22003" | "22P02") => {
                Self::RuleViolated {
                    constraint: db
                        .constraint()
                        .map(str::to_owned)
                        .unwrap_or_else(|| db.message().to_owned()),
                }
            }
            // A NUL character in text (22021) or in a jsonb string (22P05): the caller's input.
            Some("22021" | "22P05") => Self::Invalid {
                message: "text must not contain a NUL character".to_owned(),
            },
            Some("PX422") if field(db).is_some() => Self::InvalidField {
                field: field(db).unwrap_or_default().to_owned(),
                message: db.message().to_owned(),
            },
            Some(code) => Self::refusal(code, db.message()).unwrap_or(Self::Database(err)),
            None => Self::Database(err),
        }
    }
}

/// The field a function named when it refused an input (`raise ... using column = 'amount'`).
fn field(db: &dyn sqlx::error::DatabaseError) -> Option<&str> {
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.column())
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
