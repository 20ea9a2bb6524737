//! Whether a signed token still speaks for a live account.
//!
//! A signature proves that we (or Supabase Auth) issued the token, not that its session still
//! exists: after a logout, a suspension, a deletion or a revoked admin right the token would
//! otherwise work until it expires (an hour). So every authenticated request asks the database
//! whether the token's session (`session_id`) exists and its user is neither banned nor deleted,
//! and reads the platform role from `auth.users` rather than from the token.
//!
//! The answer is kept in a small in-process cache for a few seconds (`session_check_ttl`),
//! keyed by (user, session), so a busy client pays one primary-key lookup per few seconds, not
//! one per request. Every instance keeps its own cache: a logout elsewhere takes effect here
//! within the TTL at the latest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use sqlx::PgPool;
use uuid::Uuid;

use super::AuthError;

/// At most this many (user, session) answers are kept; when full, expired ones are dropped,
/// and if that frees nothing the cache starts over (a miss only costs one query).
const CAPACITY: usize = 10_000;

/// What the database says about a token's account and session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Session exists, user neither banned nor deleted; whether they are a platform admin.
    Live {
        platform_admin: bool,
    },
    SessionEnded,
    Banned,
    Gone,
}

impl Liveness {
    /// The refusal for a token that no longer speaks for anyone, as GoTrue answers on `/user`.
    pub fn refusal(self) -> Option<AuthError> {
        let (code, message) = match self {
            Self::Live { .. } => return None,
            Self::SessionEnded => return Some(session_not_found()),
            Self::Banned => ("user_banned", "User is banned"),
            Self::Gone => (
                "user_not_found",
                "User from sub claim in JWT does not exist",
            ),
        };
        Some(AuthError::new(StatusCode::FORBIDDEN, code, message))
    }
}

/// GoTrue's answer to a token whose session was ended (or that names none).
pub fn session_not_found() -> AuthError {
    AuthError::new(
        StatusCode::FORBIDDEN,
        "session_not_found",
        "Session from session_id claim in JWT does not exist",
    )
}

/// The per-process cache of [`Liveness`] answers.
#[derive(Debug)]
pub struct SessionCheck {
    ttl: Duration,
    entries: Mutex<HashMap<(Uuid, Uuid), (Instant, Liveness)>>,
}

impl SessionCheck {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The state of `session` of `user`, at most `ttl` old.
    pub async fn check(
        &self,
        pool: &PgPool,
        user: Uuid,
        session: Uuid,
    ) -> Result<Liveness, AuthError> {
        if let Some(cached) = self.cached(user, session) {
            return Ok(cached);
        }
        let liveness = query(pool, user, session).await?;
        self.remember(user, session, liveness);
        Ok(liveness)
    }

    /// Forgets what is known of `user` (after a logout or suspension on this instance).
    pub fn forget_user(&self, user: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(u, _), _| *u != user);
        }
    }

    fn cached(&self, user: Uuid, session: Uuid) -> Option<Liveness> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (at, liveness) = entries.get(&(user, session))?;
        (at.elapsed() < self.ttl).then_some(*liveness)
    }

    fn remember(&self, user: Uuid, session: Uuid, liveness: Liveness) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert((user, session), (Instant::now(), liveness));
    }
}

/// One round trip: two primary-key lookups.
async fn query(pool: &PgPool, user: Uuid, session: Uuid) -> Result<Liveness, AuthError> {
    let row: Option<(bool, bool, bool, bool)> = sqlx::query_as(
        "select u.deleted_at is not null,
                coalesce(u.banned_until > now(), false),
                exists (select from auth.sessions s where s.id = $2 and s.user_id = u.id
                                 and (s.not_after is null or s.not_after > now())),
                coalesce(u.raw_app_meta_data->>'platform_role', '') = 'admin'
           from auth.users u where u.id = $1",
    )
    .bind(user)
    .bind(session)
    .fetch_optional(pool)
    .await
    .map_err(pesachama_store::StoreError::from)?;
    Ok(match row {
        None | Some((true, _, _, _)) => Liveness::Gone,
        Some((_, true, _, _)) => Liveness::Banned,
        Some((_, _, false, _)) => Liveness::SessionEnded,
        Some((_, _, true, platform_admin)) => Liveness::Live { platform_admin },
    })
}
