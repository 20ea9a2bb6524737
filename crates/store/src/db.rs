//! Connections, databases and the demo data.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::StoreError;

/// Opens a pool. The first connection is made here, so an unreachable or misconfigured
/// database fails at start-up with the driver's reason, not on the first request.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("pesachama")
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    // One direct connection first: a pool retries until its timeout and then reports only
    // "timed out", while a single attempt says why (refused, bad password, no such database).
    PgConnection::connect_with(&options).await?.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// A pooled connection idle for at least this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Checks a connection the pool is about to hand out, when it has been idle a while: one that
/// does not answer is closed, and the pool hands out another (or a new one). The pool's own test
/// pings every connection on every acquire, a round trip before each query; with the ping on
/// release, 13 % of the STK benchmark process's samples (BENCHMARKS.md, 2026-12-02, evening). A
/// connection used within the last second is handed out as it is: if the server went away in
/// that second, the query fails and the connection is dropped.
fn ping_if_idle<'c>(
    conn: &'c mut PgConnection,
    meta: PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>> {
    Box::pin(async move {
        if meta.idle_for >= PING_WHEN_IDLE_FOR {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// Creates database `name` on the server of `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; quote it.
        let statement = format!("create database {}", quote_ident(name));
        if let Err(err) = sqlx::raw_sql(&statement).execute(&mut conn).await {
            // Another process may have created it between our check and ours.
            let duplicate = err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|c| c == "42P04");
            if !duplicate {
                return Err(err.into());
            }
        }
    }
    conn.close().await?;
    Ok(())
}

/// Loads the demo data (`supabase/seed.sql`). It is written to be idempotent: a second run
/// changes nothing.
pub async fn seed_demo(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(crate::migrations::SEED)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Quotes a SQL identifier: wraps it in double quotes and doubles any inside.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn quotes_identifiers_so_they_cannot_break_out() {
        assert_eq!(quote_ident("pesachama"), "\"pesachama\"");
        assert_eq!(quote_ident("a\"; drop"), "\"a\"\"; drop\"");
    }
}
