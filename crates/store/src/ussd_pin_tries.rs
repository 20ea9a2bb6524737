//! Wrong PINs typed on USSD, per (phone number, source address): `internal.ussd_pin_tries`
//! (the migration `20260117000100_ussd_pin_tries.sql` says why they are apart from the app's).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PinTries {
    pub failures: i32,
    pub blocked_until: Option<DateTime<Utc>>,
    /// The database's clock.
    pub now: DateTime<Utc>,
}

impl PinTries {
    /// Until when this pair must wait, if it must.
    pub fn waiting_until(&self) -> Option<DateTime<Utc>> {
        self.blocked_until.filter(|until| *until > self.now)
    }
}

/// The pair's row, created if missing and locked for the rest of the transaction, so the
/// guesses of one pair are counted one after another.
pub async fn lock(
    conn: &mut PgConnection,
    phone: &str,
    source: &str,
) -> Result<PinTries, StoreError> {
    sqlx::query(
        "insert into internal.ussd_pin_tries (phone, source) values ($1, $2)
         on conflict (phone, source) do nothing",
    )
    .bind(phone)
    .bind(source)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as(
        "select failures, blocked_until, now() as now from internal.ussd_pin_tries
          where phone = $1 and source = $2 for update",
    )
    .bind(phone)
    .bind(source)
    .fetch_one(conn)
    .await?)
}

/// Counts a wrong PIN. From the `free`-th on, the pair waits `base_seconds`, doubled for each
/// wrong PIN after that, at most `max_seconds`. A pair whose last wrong PIN is a day old
/// starts again from one.
pub async fn record_failure(
    conn: &mut PgConnection,
    phone: &str,
    source: &str,
    free: i32,
    base_seconds: i64,
    max_seconds: i64,
) -> Result<PinTries, StoreError> {
    Ok(sqlx::query_as(
        "with counted as (
           select case when last_failed_at < now() - interval '1 day' then 1
                       else failures + 1 end as failures
             from internal.ussd_pin_tries where phone = $1 and source = $2)
         update internal.ussd_pin_tries t set
            failures = c.failures,
            last_failed_at = now(),
            blocked_until = case when c.failures >= $3 then now() + make_interval(secs =>
                              least($5::float8, $4::float8 * power(2, least(c.failures - $3, 30)))) end
           from counted c
          where t.phone = $1 and t.source = $2
          returning t.failures, t.blocked_until, now() as now",
    )
    .bind(phone)
    .bind(source)
    .bind(free)
    .bind(base_seconds as f64)
    .bind(max_seconds as f64)
    .fetch_one(conn)
    .await?)
}

/// A right PIN: the pair is forgotten.
pub async fn clear(conn: &mut PgConnection, phone: &str, source: &str) -> Result<(), StoreError> {
    sqlx::query("delete from internal.ussd_pin_tries where phone = $1 and source = $2")
        .bind(phone)
        .bind(source)
        .execute(conn)
        .await?;
    Ok(())
}
