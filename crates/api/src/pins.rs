//! PINs for feature-phone members: 4 digits, bcrypt-hashed like passwords. The app's routes
//! count wrong tries here ([`check`]: three lock the PIN for a while); the USSD menus compare
//! with [`compare`] and count their tries apart, per number and source
//! (`routes::ussd::actions`), so that guesses sent to `/ussd` never lock the app.

use chrono::{DateTime, Utc};
use pesachama_domain::Pin;
use pesachama_store::{StoreError, pins};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::gotrue::AuthError;

/// Wrong tries before the PIN locks.
pub const MAX_ATTEMPTS: i32 = 3;
/// How long a locked PIN stays locked.
pub const LOCK_SECONDS: i64 = 30 * 60;

/// What checking a PIN found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    Correct,
    /// Wrong; this many tries are left before the lockout.
    Wrong {
        remaining: i32,
    },
    /// Locked (by this try or an earlier one) until then; the PIN was not even compared.
    Locked {
        until: DateTime<Utc>,
    },
    /// The user has no PIN yet.
    NotSet,
}

/// Checks `pin` for `user_id` inside the caller's transaction, counting a wrong try and
/// locking at the third. Commit the transaction whatever the answer: the count must stick.
pub async fn check(
    conn: &mut PgConnection,
    user_id: Uuid,
    pin: &Pin,
) -> Result<PinCheck, AuthError> {
    // `compare` locks the PIN row: the tries of one user are counted one after another.
    match compare(&mut *conn, user_id, pin).await? {
        PinCheck::Correct => {
            pins::record_success(&mut *conn, user_id).await?;
            Ok(PinCheck::Correct)
        }
        PinCheck::Wrong { .. } => {
            let (attempts, locked) =
                pins::record_failure(&mut *conn, user_id, MAX_ATTEMPTS, LOCK_SECONDS).await?;
            match locked {
                Some(until) => {
                    audit(
                        conn,
                        "auth.pin_locked",
                        user_id,
                        json!({ "locked_until": until }),
                    )
                    .await?;
                    Ok(PinCheck::Locked { until })
                }
                None => {
                    audit(
                        conn,
                        "auth.pin_failed",
                        user_id,
                        json!({ "attempts": attempts }),
                    )
                    .await?;
                    Ok(PinCheck::Wrong {
                        remaining: MAX_ATTEMPTS - attempts,
                    })
                }
            }
        }
        other => Ok(other),
    }
}

/// Compares `pin` with `user_id`'s without counting anything: `Correct`, `Wrong { remaining:
/// 0 }` (the caller counts), `Locked` when the app's lockout is on, or `NotSet`.
pub async fn compare(
    conn: &mut PgConnection,
    user_id: Uuid,
    pin: &Pin,
) -> Result<PinCheck, AuthError> {
    let Some(row) = pins::lock(&mut *conn, user_id).await? else {
        return Ok(PinCheck::NotSet);
    };
    if let Some(until) = row.locked_until.filter(|until| *until > row.now) {
        return Ok(PinCheck::Locked { until });
    }
    let digits = pin.expose().to_owned();
    let hash = row.pin_hash;
    let correct =
        crate::gotrue::blocking(move || pesachama_auth::hashing::verify_password(&digits, &hash))
            .await?;
    Ok(if correct {
        PinCheck::Correct
    } else {
        PinCheck::Wrong { remaining: 0 }
    })
}

/// Sets a new PIN (hashing off the async workers) and clears tries and lockout.
pub async fn set(conn: &mut PgConnection, user_id: Uuid, pin: &Pin) -> Result<(), AuthError> {
    let digits = pin.expose().to_owned();
    let hash = crate::gotrue::blocking(move || pesachama_auth::hashing::hash_password(&digits))
        .await?
        .map_err(|err| {
            tracing::error!(error = %err, "cannot hash a PIN");
            AuthError::internal()
        })?;
    pins::set(&mut *conn, user_id, &hash).await?;
    audit(conn, "auth.pin_changed", user_id, json!({})).await
}

pub(crate) async fn audit(
    conn: &mut PgConnection,
    action: &str,
    user_id: Uuid,
    metadata: serde_json::Value,
) -> Result<(), AuthError> {
    sqlx::query("select internal.audit_log($1, 'internal.user_pins', $2, null, $3, $2::uuid)")
        .bind(action)
        .bind(user_id.to_string())
        .bind(metadata)
        .execute(conn)
        .await
        .map_err(StoreError::from)?;
    Ok(())
}
