//! USSD PINs (`internal.user_pins`): the hash, the count of wrong tries, the lockout.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PinRow {
    pub pin_hash: String,
    pub failed_attempts: i32,
    pub locked_until: Option<DateTime<Utc>>,
    /// The database's clock, so lockouts do not depend on the server's.
    pub now: DateTime<Utc>,
}

/// The user's PIN row, locked for the rest of the transaction: tries of one user are counted
/// one after another, never lost to a race.
pub async fn lock(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<PinRow>, StoreError> {
    Ok(sqlx::query_as(
        "select pin_hash, failed_attempts, locked_until, now() as now
           from internal.user_pins where user_id = $1 for update",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

/// Sets (or replaces) the PIN and clears any count of wrong tries and any lockout.
pub async fn set(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    pin_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into internal.user_pins (user_id, pin_hash) values ($1, $2)
         on conflict (user_id) do update
           set pin_hash = excluded.pin_hash, failed_attempts = 0, locked_until = null",
    )
    .bind(user_id)
    .bind(pin_hash)
    .execute(executor)
    .await?;
    Ok(())
}

/// Counts one wrong try. At `max_attempts` the PIN locks for `lock_seconds` and the count
/// starts again. Returns the tries now counted and the lockout, if one began.
pub async fn record_failure(
    conn: &mut PgConnection,
    user_id: Uuid,
    max_attempts: i32,
    lock_seconds: i64,
) -> Result<(i32, Option<DateTime<Utc>>), StoreError> {
    Ok(sqlx::query_as(
        "update internal.user_pins set
            failed_attempts = case when failed_attempts + 1 >= $2 then 0 else failed_attempts + 1 end,
            locked_until = case when failed_attempts + 1 >= $2
                                then now() + make_interval(secs => $3) end
          where user_id = $1
          returning case when locked_until is null then failed_attempts else $2 end, locked_until",
    )
    .bind(user_id)
    .bind(max_attempts)
    .bind(lock_seconds as f64)
    .fetch_one(conn)
    .await?)
}

/// A right PIN: the count of wrong tries starts again.
pub async fn record_success(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "update internal.user_pins set failed_attempts = 0, locked_until = null
          where user_id = $1 and (failed_attempts <> 0 or locked_until is not null)",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}
