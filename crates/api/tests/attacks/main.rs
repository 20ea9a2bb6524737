//! Attacks, each performed as an attacker would send it (over HTTP, or as the Data API runs a
//! request), and each refused. `docs/security.md` lists them by threat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../mpesa_common/mod.rs"]
mod mpesa_common;
#[path = "../ussd_common/mod.rs"]
mod ussd_common;

mod callback_dates;
mod input;
mod metrics;
mod mpesa;
mod passwords;
mod phone_ownership;
mod sessions;
mod stk_prompts;
mod tokens;
mod ussd;

/// A session row for `user`, as a sign-in makes: a token the tests sign themselves names it, so
/// the server, which checks every token's session, honours the token.
pub async fn live_session(pool: &sqlx::PgPool, user: &str) -> uuid::Uuid {
    let session = uuid::Uuid::new_v4();
    sqlx::query("insert into auth.sessions (id, user_id, created_at, updated_at) values ($1, $2::uuid, now(), now())")
        .bind(session)
        .bind(user)
        .execute(pool)
        .await
        .expect("a session row");
    session
}
