//! Throttling password guessing without locking the owner out.
//!
//! Only *failed* passwords count, in PostgreSQL (`internal.login_failures`) so every instance
//! counts together, in two buckets per attempt:
//!
//! - the account from one address (`account_ip:<identifier>:<address>`): a few failures
//!   (`per_address`, 5), then a wait that doubles with each further failure;
//! - the account from anywhere (`account:<identifier>`): more failures (`per_account`, 20),
//!   then the same doubling wait, against guessing spread over many addresses.
//!
//! While a bucket waits, a password attempt is answered 429 `over_request_rate_limit` with
//! `Retry-After`, without checking the password, unless it comes from a **known device**: a
//! request whose `X-Device-Id` (a random identifier the app generates once and keeps; we store
//! only its SHA-256) signed in to this account with its password before. The owner's phone thus
//! signs in with the right password whatever someone else guesses, even from the same carrier
//! address (CGNAT), while a guesser who does not hold that identifier waits. A wrong password
//! from a known device still counts. Refreshing a session (`grant_type=refresh_token`) is the
//! other known-device path and is never slowed by password failures.
//!
//! A correct password clears the account's count and that address's; failures older than
//! `forget_after_seconds` are forgotten.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::{AuthError, PasswordLimits};

/// The header carrying the app's device identifier.
pub const DEVICE_HEADER: &str = "x-device-id";

/// An identifier too short to be unguessable is ignored (the app should send 128 random bits).
const DEVICE_ID_LENGTH: std::ops::RangeInclusive<usize> = 16..=200;

/// The SHA-256 of a usable `X-Device-Id`.
pub fn device_hash(headers: &axum::http::HeaderMap) -> Option<String> {
    let id = headers.get(DEVICE_HEADER)?.to_str().ok()?.trim();
    DEVICE_ID_LENGTH
        .contains(&id.len())
        .then(|| hex::encode(Sha256::digest(id.as_bytes())))
}

/// The failure buckets of a password attempt.
pub struct Buckets {
    account: String,
    account_ip: Option<String>,
}

impl Buckets {
    pub fn new(identifier: &str, ip: Option<&str>) -> Self {
        let identifier = identifier.to_lowercase();
        Self {
            account_ip: ip.map(|ip| format!("account_ip:{identifier}:{ip}")),
            account: format!("account:{identifier}"),
        }
    }

    fn all(&self) -> Vec<&str> {
        std::iter::once(self.account.as_str())
            .chain(self.account_ip.as_deref())
            .collect()
    }
}

/// Until when the attempt must wait, if it must.
pub async fn waiting_until(
    pool: &PgPool,
    buckets: &Buckets,
) -> Result<Option<DateTime<Utc>>, AuthError> {
    Ok(sqlx::query_scalar(
        "select max(locked_until) from internal.login_failures
          where bucket = any($1) and locked_until > now()",
    )
    .bind(buckets.all())
    .fetch_one(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?)
}

/// GoTrue's 429, with the seconds left to wait.
pub fn refusal(until: DateTime<Utc>) -> AuthError {
    let millis = u64::try_from((until - Utc::now()).num_milliseconds()).unwrap_or(0);
    let seconds = millis.div_ceil(1000).max(1);
    AuthError::over_rate_limit().retry_after(seconds)
}

/// Counts a wrong password in both buckets; answers how many failures the account-and-address
/// bucket now holds (the account's when there is no address).
pub async fn record_failure(
    pool: &PgPool,
    buckets: &Buckets,
    limits: &PasswordLimits,
) -> Result<i32, AuthError> {
    let account = bump(pool, &buckets.account, limits.per_account, limits).await?;
    match &buckets.account_ip {
        Some(bucket) => bump(pool, bucket, limits.per_address, limits).await,
        None => Ok(account),
    }
}

/// One more failure in `bucket`; from the `free`-th on, a wait of `backoff_seconds` doubling
/// with each failure (at most `max_backoff_seconds`). Atomic: concurrent failures all count.
async fn bump(
    pool: &PgPool,
    bucket: &str,
    free: i32,
    limits: &PasswordLimits,
) -> Result<i32, AuthError> {
    let failures: i32 = sqlx::query_scalar(
        "insert into internal.login_failures as f (bucket, failures, last_failure_at, locked_until)
         values ($1, 1, now(), case when $2 <= 1 then now() + make_interval(secs => $3) end)
         on conflict (bucket) do update set
           failures = case when f.last_failure_at < now() - make_interval(secs => $4) then 1
                           else f.failures + 1 end,
           last_failure_at = now(),
           locked_until = case
             when (case when f.last_failure_at < now() - make_interval(secs => $4) then 1
                        else f.failures + 1 end) >= $2
             then now() + make_interval(secs => least($5, $3 * power(2, greatest(0,
                    (case when f.last_failure_at < now() - make_interval(secs => $4) then 1
                          else f.failures + 1 end) - $2))))
           end
         returning failures",
    )
    .bind(bucket)
    .bind(free)
    .bind(limits.backoff_seconds as f64)
    .bind(limits.forget_after_seconds as f64)
    .bind(limits.max_backoff_seconds as f64)
    .fetch_one(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?;
    Ok(failures)
}

/// A correct password: the account's failures and this address's are forgotten.
pub async fn record_success(
    conn: &mut sqlx::PgConnection,
    buckets: &Buckets,
) -> Result<(), AuthError> {
    sqlx::query("delete from internal.login_failures where bucket = any($1)")
        .bind(buckets.all())
        .execute(conn)
        .await
        .map_err(pesachama_store::StoreError::from)?;
    Ok(())
}

/// Whether `device` signed in to `user` with a password before.
pub async fn is_known_device(pool: &PgPool, user: Uuid, device: &str) -> Result<bool, AuthError> {
    Ok(sqlx::query_scalar(
        "select exists (select from internal.known_devices where user_id = $1 and device_hash = $2)",
    )
    .bind(user)
    .bind(device)
    .fetch_one(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?)
}

/// Remembers `device` as one that signed in to `user`.
pub async fn remember_device(
    conn: &mut sqlx::PgConnection,
    user: Uuid,
    device: &str,
) -> Result<(), AuthError> {
    sqlx::query(
        "insert into internal.known_devices (user_id, device_hash, last_sign_in_at)
         values ($1, $2, now())
         on conflict (user_id, device_hash) do update set last_sign_in_at = now()",
    )
    .bind(user)
    .bind(device)
    .execute(conn)
    .await
    .map_err(pesachama_store::StoreError::from)?;
    Ok(())
}
