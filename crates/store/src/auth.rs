//! `auth.users`, `auth.identities`, `auth.sessions`, `auth.refresh_tokens`: the tables Supabase
//! Auth (GoTrue) keeps, read and written the way GoTrue does, so a database can move between
//! PesaChama's auth and Supabase's and every user keeps logging in.
//!
//! GoTrue stores phones without the leading `+` (`254712345678`); so do we, in `auth.users`.
//! The profile (`public.users`) keeps E.164 with the `+`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthUser {
    pub id: Uuid,
    pub aud: Option<String>,
    pub role: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub encrypted_password: Option<String>,
    pub email_confirmed_at: Option<DateTime<Utc>>,
    pub phone_confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub raw_app_meta_data: Option<Value>,
    pub raw_user_meta_data: Option<Value>,
    pub banned_until: Option<DateTime<Utc>>,
    pub is_anonymous: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

const USER_COLUMNS: &str = "id, aud, role, email, phone, encrypted_password, email_confirmed_at, \
    phone_confirmed_at, confirmed_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data, \
    case when banned_until = 'infinity' then '9999-12-31T00:00:00Z'::timestamptz else banned_until end as banned_until, coalesce(is_anonymous, false) as is_anonymous, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Identity {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub provider_id: String,
    pub identity_data: Option<Value>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Who signs up.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub email: Option<&'a str>,
    /// Digits only, GoTrue's form (`254712345678`).
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub user_metadata: &'a Value,
    pub provider: &'a str,
    /// Mark the email or phone confirmed now (confirmation off, or a verified provider).
    pub confirmed: bool,
}

pub async fn find_user_by_id(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<AuthUser>, StoreError> {
    let sql = format!("select {USER_COLUMNS} from auth.users where id = $1 and deleted_at is null");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(executor)
        .await?)
}

pub async fn find_user_by_email(
    executor: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<AuthUser>, StoreError> {
    let sql = format!(
        "select {USER_COLUMNS} from auth.users where lower(email) = lower($1) and deleted_at is null \
         order by created_at limit 1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(email)
        .fetch_optional(executor)
        .await?)
}

/// Finds a user by phone, written with or without the `+` (rows made by hand or by the
/// founding plan's scripts may have either).
pub async fn find_user_by_phone(
    executor: impl PgExecutor<'_>,
    digits: &str,
) -> Result<Option<AuthUser>, StoreError> {
    let sql = format!(
        "select {USER_COLUMNS} from auth.users where phone in ($1, '+' || $1) and deleted_at is null \
         order by created_at limit 1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(digits)
        .fetch_optional(executor)
        .await?)
}

pub async fn insert_user(
    conn: &mut PgConnection,
    user: &NewUser<'_>,
) -> Result<AuthUser, StoreError> {
    let providers = serde_json::json!({ "provider": user.provider, "providers": [user.provider] });
    let sql = format!(
        "insert into auth.users (instance_id, aud, role, email, phone, encrypted_password,
             email_confirmed_at, phone_confirmed_at, raw_app_meta_data, raw_user_meta_data,
             created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', 'authenticated', 'authenticated', $1, $2, $3,
             case when $4 and $1 is not null then now() end,
             case when $4 and $2 is not null then now() end,
             $5, $6, now(), now())
         returning {USER_COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user.email)
        .bind(user.phone)
        .bind(user.password_hash)
        .bind(user.confirmed)
        .bind(&providers)
        .bind(user.user_metadata)
        .fetch_one(&mut *conn)
        .await?)
}

pub async fn insert_identity(
    conn: &mut PgConnection,
    user_id: Uuid,
    provider: &str,
    provider_id: &str,
    identity_data: &Value,
) -> Result<Identity, StoreError> {
    Ok(sqlx::query_as(
        "insert into auth.identities (id, user_id, provider, provider_id, identity_data, last_sign_in_at, created_at, updated_at)
         values (gen_random_uuid(), $1, $2, $3, $4, now(), now(), now())
         returning id, user_id, provider, provider_id, identity_data, last_sign_in_at, created_at, updated_at",
    )
    .bind(user_id)
    .bind(provider)
    .bind(provider_id)
    .bind(identity_data)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn identities(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<Identity>, StoreError> {
    Ok(sqlx::query_as(
        "select id, user_id, provider, provider_id, identity_data, last_sign_in_at, created_at, updated_at
         from auth.identities where user_id = $1 order by created_at",
    )
    .bind(user_id)
    .fetch_all(executor)
    .await?)
}

pub async fn find_identity(
    executor: impl PgExecutor<'_>,
    provider: &str,
    provider_id: &str,
) -> Result<Option<Identity>, StoreError> {
    Ok(sqlx::query_as(
        "select id, user_id, provider, provider_id, identity_data, last_sign_in_at, created_at, updated_at
         from auth.identities where provider = $1 and provider_id = $2",
    )
    .bind(provider)
    .bind(provider_id)
    .fetch_optional(executor)
    .await?)
}

/// Records a successful sign-in.
pub async fn touch_sign_in(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("update auth.users set last_sign_in_at = now(), updated_at = now() where id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn update_password(
    conn: &mut PgConnection,
    user_id: Uuid,
    hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("update auth.users set encrypted_password = $2, updated_at = now() where id = $1")
        .bind(user_id)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn update_user_metadata(
    conn: &mut PgConnection,
    user_id: Uuid,
    patch: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users set raw_user_meta_data = coalesce(raw_user_meta_data, '{}'::jsonb) || $2, updated_at = now()
         where id = $1",
    )
    .bind(user_id)
    .bind(patch)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn create_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    user_agent: Option<&str>,
    ip: Option<&str>,
) -> Result<Uuid, StoreError> {
    Ok(sqlx::query_scalar(
        "insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip, refreshed_at)
         values (gen_random_uuid(), $1, now(), now(), 'aal1', $2, $3::inet, now())
         returning id",
    )
    .bind(user_id)
    .bind(user_agent)
    .bind(ip)
    .fetch_one(&mut *conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshToken {
    pub id: i64,
    pub token: String,
    pub user_id: String,
    pub session_id: Option<Uuid>,
    pub parent: Option<String>,
    pub revoked: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn insert_refresh_token(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
    token: &str,
    parent: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into auth.refresh_tokens (token, user_id, session_id, parent, revoked, created_at, updated_at)
         values ($1, $2::text, $3, $4, false, now(), now())",
    )
    .bind(token)
    .bind(user_id)
    .bind(session_id)
    .bind(parent)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The token row, locked for the rest of the transaction so two refreshes of one token are
/// decided one after the other.
pub async fn lock_refresh_token(
    conn: &mut PgConnection,
    token: &str,
) -> Result<Option<RefreshToken>, StoreError> {
    Ok(sqlx::query_as(
        "select id, token, user_id, session_id, parent, coalesce(revoked, false) as revoked, updated_at
         from auth.refresh_tokens where token = $1 for update",
    )
    .bind(token)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The newest token issued from `parent` that is still valid: what a client that lost the
/// answer to its refresh should be given again.
pub async fn active_child(
    conn: &mut PgConnection,
    parent: &str,
) -> Result<Option<RefreshToken>, StoreError> {
    Ok(sqlx::query_as(
        "select id, token, user_id, session_id, parent, coalesce(revoked, false) as revoked, updated_at
         from auth.refresh_tokens where parent = $1 and not coalesce(revoked, false)
         order by id desc limit 1",
    )
    .bind(parent)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn revoke_refresh_token(conn: &mut PgConnection, id: i64) -> Result<(), StoreError> {
    sqlx::query("update auth.refresh_tokens set revoked = true, updated_at = now() where id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn session_exists(conn: &mut PgConnection, session_id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("select exists (select from auth.sessions where id = $1)")
            .bind(session_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

pub async fn touch_session(conn: &mut PgConnection, session_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("update auth.sessions set refreshed_at = now(), updated_at = now() where id = $1")
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends one session; its refresh tokens go with it (`on delete cascade`).
pub async fn delete_session(conn: &mut PgConnection, session_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("delete from auth.sessions where id = $1")
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends every session of a user, or every one but `keep`.
pub async fn delete_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "delete from auth.sessions where user_id = $1 and ($2::uuid is null or id <> $2)",
    )
    .bind(user_id)
    .bind(keep)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
