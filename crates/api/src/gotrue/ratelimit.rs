//! Fixed-window rate limits kept in PostgreSQL, so every server instance counts together.

use sqlx::PgPool;

use super::AuthError;

/// Counts one request in `bucket` and refuses it when the window already has `limit`.
pub async fn hit(
    pool: &PgPool,
    bucket: &str,
    limit: i32,
    window_seconds: i64,
) -> Result<(), AuthError> {
    let count: i32 = sqlx::query_scalar(
        "insert into internal.rate_limits as r (bucket, window_start, count)
         values ($1, to_timestamp(floor(extract(epoch from now()) / $2) * $2), 1)
         on conflict (bucket, window_start) do update set count = r.count + 1
         returning count",
    )
    .bind(bucket)
    .bind(window_seconds as f64)
    .fetch_one(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?;
    if count > limit {
        tracing::warn!(bucket, count, limit, "rate limit reached");
        return Err(AuthError::over_rate_limit());
    }
    Ok(())
}

/// How many requests `bucket` has counted in the current window (nothing is counted).
pub async fn seen(pool: &PgPool, bucket: &str, window_seconds: i64) -> Result<i32, AuthError> {
    let count: Option<i32> = sqlx::query_scalar(
        "select count from internal.rate_limits
          where bucket = $1 and window_start = to_timestamp(floor(extract(epoch from now()) / $2) * $2)",
    )
    .bind(bucket)
    .bind(window_seconds as f64)
    .fetch_optional(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?;
    Ok(count.unwrap_or(0))
}

/// Applies the same limit per client address and per identifier (email or phone), so neither
/// one address trying many accounts nor many addresses trying one account get far.
pub async fn hit_both(
    pool: &PgPool,
    action: &str,
    ip: Option<&str>,
    identifier: Option<&str>,
    limit: i32,
    window_seconds: i64,
) -> Result<(), AuthError> {
    if let Some(ip) = ip {
        hit(pool, &format!("{action}:ip:{ip}"), limit, window_seconds).await?;
    }
    if let Some(identifier) = identifier {
        hit(
            pool,
            &format!("{action}:id:{}", identifier.to_lowercase()),
            limit,
            window_seconds,
        )
        .await?;
    }
    Ok(())
}
