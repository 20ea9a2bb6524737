//! Running queries as the caller, exactly as PostgREST does.
//!
//! Every API request opens a transaction and, before any query, sets the database role and the
//! JWT claims *transaction-locally* (`set_config(.., true)`). RLS policies then see the caller
//! through `auth.uid()` and `auth.jwt()`; a query that forgets its own `WHERE user_id = ..`
//! still cannot return another user's rows. When the transaction ends the settings vanish, so a
//! pooled connection never carries one caller's identity into the next request.

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use crate::StoreError;

/// The database roles a request may take. A closed set: the role name reaches `set_config`, so
/// it never comes from a client as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    Anon,
    Authenticated,
    /// System paths only: callbacks, USSD, workers. Bypasses RLS.
    ServiceRole,
}

impl DbRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anon => "anon",
            Self::Authenticated => "authenticated",
            Self::ServiceRole => "service_role",
        }
    }
}

/// Begins a transaction in which every query runs as `role` with `claims`.
pub async fn begin_as<'a>(
    pool: &'a PgPool,
    role: DbRole,
    claims: &Value,
) -> Result<Transaction<'a, Postgres>, StoreError> {
    // BEGIN and the settings travel in one round trip (a simple-protocol query of two
    // statements): a request pays for the RLS context without waiting on the network twice.
    let begin = format!(
        "begin; select set_config('role', {}, true), set_config('request.jwt.claims', {}, true)",
        literal(role.as_str()),
        literal(&claims.to_string()),
    );
    Ok(pool.begin_with(begin).await?)
}

/// A string as an SQL literal. With `standard_conforming_strings` (on by default since
/// PostgreSQL 9.1, and on Supabase) only the quote needs doubling; backslashes are literal.
/// Serialized JSON never holds a raw NUL, which PostgreSQL refuses anyway.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_double_quotes_and_keep_everything_else() {
        assert_eq!(literal("anon"), "'anon'");
        assert_eq!(
            literal(r#"{"name":"O'Brien \"x\""}"#),
            r#"'{"name":"O''Brien \"x\""}'"#
        );
    }
}
