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
    /// An email address asked for and not yet confirmed by its code (GoTrue's `new_email`).
    pub email_change: Option<String>,
    /// A phone asked for and not yet confirmed by its code (GoTrue's `new_phone`), digits only.
    pub phone_change: Option<String>,
}

pub(crate) const USER_COLUMNS: &str = "id, aud, role, email, phone, encrypted_password, email_confirmed_at, \
    phone_confirmed_at, confirmed_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data, \
    case when banned_until = 'infinity' then '9999-12-31T00:00:00Z'::timestamptz else banned_until end as banned_until, coalesce(is_anonymous, false) as is_anonymous, created_at, updated_at, \
    nullif(email_change, '') as email_change, nullif(phone_change, '') as phone_change";

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

/// Inserts a user the way GoTrue does: the id is ours to choose (Supabase's `auth.users.id`
/// has no default), and every token column GoTrue reads into a Go string is `''`, never NULL
/// (a NULL there makes Supabase Auth answer 500 for every lookup of the row).
pub async fn insert_user(
    conn: &mut PgConnection,
    user: &NewUser<'_>,
) -> Result<AuthUser, StoreError> {
    let providers = serde_json::json!({ "provider": user.provider, "providers": [user.provider] });
    let sql = format!(
        "insert into auth.users (instance_id, id, aud, role, email, phone, encrypted_password,
             email_confirmed_at, phone_confirmed_at, raw_app_meta_data, raw_user_meta_data,
             confirmation_token, recovery_token, email_change_token_new, email_change,
             created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
             'authenticated', $1, $2, $3,
             case when $4 and $1 is not null then now() end,
             case when $4 and $2 is not null then now() end,
             $5, $6, '', '', '', '', now(), now())
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
        "insert into auth.refresh_tokens (instance_id, token, user_id, session_id, parent, revoked, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, $2::text, $3, $4, false, now(), now())",
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

/// When the session began, if it exists.
pub async fn session_created_at(
    conn: &mut PgConnection,
    session_id: Uuid,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(
        sqlx::query_scalar("select created_at from auth.sessions where id = $1")
            .bind(session_id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten(),
    )
}

/// The hash of the user's reauthentication nonce (`''` when none) and when it was sent
/// (GoTrue's `reauthentication_token`, `reauthentication_sent_at`), the row locked.
pub async fn lock_reauthentication(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(String, Option<DateTime<Utc>>), StoreError> {
    Ok(sqlx::query_as(
        "select coalesce(reauthentication_token, ''), reauthentication_sent_at
           from auth.users where id = $1 for update",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Keeps a new nonce's hash, sent now.
pub async fn store_reauthentication(
    conn: &mut PgConnection,
    user_id: Uuid,
    token_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users set reauthentication_token = $2, reauthentication_sent_at = now(),
                updated_at = now()
          where id = $1",
    )
    .bind(user_id)
    .bind(token_hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Spends the nonce, as GoTrue does: the token becomes `''` (never NULL: GoTrue scans it into a
/// string); the time it was sent stays, for the resend limit.
pub async fn spend_reauthentication(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users set reauthentication_token = '', updated_at = now() where id = $1",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
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

/// Which contact of an account a one-time code proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    Email,
    Phone,
}

impl Contact {
    /// The column of `auth.users` holding the contact.
    fn column(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }

    /// GoTrue's columns for a pending change: the new value, the hash of its code, when sent.
    fn change_columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Email => (
                "email_change",
                "email_change_token_new",
                "email_change_sent_at",
            ),
            Self::Phone => ("phone_change", "phone_change_token", "phone_change_sent_at"),
        }
    }
}

/// Whether another live account already holds `value` as its email or phone.
pub async fn contact_taken(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
    contact: Contact,
    value: &str,
) -> Result<bool, StoreError> {
    let column = contact.column();
    let sql = format!(
        "select exists (select from auth.users where id <> $1 and deleted_at is null \
           and lower({column}) in (lower($2), '+' || lower($2)))"
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(user_id)
        .bind(value)
        .fetch_one(executor)
        .await?)
}

/// Records a change of email or phone that waits for its code (GoTrue's `email_change` /
/// `phone_change` flow): the account keeps its current contact until the code comes back.
pub async fn request_contact_change(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
    value: &str,
    token_hash: &str,
) -> Result<(), StoreError> {
    let (new, token, sent) = contact.change_columns();
    let sql = format!(
        "update auth.users set {new} = $2, {token} = $3, {sent} = now(), updated_at = now() where id = $1"
    );
    sqlx::query(&sql)
        .bind(user_id)
        .bind(value)
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A pending change to `value`, locked: the user, the hash of the code sent, and when.
pub async fn lock_pending_change(
    conn: &mut PgConnection,
    contact: Contact,
    value: &str,
) -> Result<Option<(Uuid, Option<String>, Option<DateTime<Utc>>)>, StoreError> {
    let (new, token, sent) = contact.change_columns();
    let sql = format!(
        "select id, {token}, {sent} from auth.users \
          where lower({new}) = lower($1) and deleted_at is null and coalesce({token}, '') <> '' \
          order by {sent} desc nulls last limit 1 for update"
    );
    Ok(sqlx::query_as(&sql)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Makes a pending change the account's contact, confirmed now, and clears the request.
pub async fn apply_contact_change(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
) -> Result<(), StoreError> {
    let column = contact.column();
    let (new, token, sent) = contact.change_columns();
    let sql = format!(
        "update auth.users set {column} = {new}, {column}_confirmed_at = now(), {new} = '', \
           {token} = '', {sent} = null, updated_at = now() where id = $1"
    );
    sqlx::query(&sql).bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

/// Sets the email or phone of an account at once, confirmed (only where confirmation is off,
/// as GoTrue's autoconfirm does).
pub async fn set_contact_confirmed(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
    value: &str,
) -> Result<(), StoreError> {
    let column = contact.column();
    let sql = format!(
        "update auth.users set {column} = $2, {column}_confirmed_at = now(), updated_at = now() where id = $1"
    );
    sqlx::query(&sql)
        .bind(user_id)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores the hash of a confirmation (sign-up, OTP sign-in) or recovery code.
pub async fn store_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    purpose: CodePurpose,
    token_hash: &str,
) -> Result<(), StoreError> {
    let (token, sent) = purpose.columns();
    let sql = format!(
        "update auth.users set {token} = $2, {sent} = now(), updated_at = now() where id = $1"
    );
    sqlx::query(&sql)
        .bind(user_id)
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What a code stored on the user row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    /// Sign-up confirmation or a sign-in code (`confirmation_token`).
    Confirmation,
    /// Password recovery (`recovery_token`).
    Recovery,
}

impl CodePurpose {
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            Self::Confirmation => ("confirmation_token", "confirmation_sent_at"),
            Self::Recovery => ("recovery_token", "recovery_sent_at"),
        }
    }
}

/// The stored code hash and when it was sent, the row locked.
pub async fn lock_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    purpose: CodePurpose,
) -> Result<(Option<String>, Option<DateTime<Utc>>), StoreError> {
    let (token, sent) = purpose.columns();
    let sql = format!("select {token}, {sent} from auth.users where id = $1 for update");
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?)
}

/// Marks `token_hash` as the code of a link (`auth.admin.generateLink`), which may then be spent
/// by its hash alone; links older than a day are forgotten.
pub async fn remember_link_token(
    conn: &mut PgConnection,
    user_id: Uuid,
    token_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "delete from internal.link_tokens where user_id = $1 and created_at < now() - interval '1 day'",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "insert into internal.link_tokens (token_hash, user_id) values ($1, $2)
         on conflict (token_hash) do update set user_id = excluded.user_id, created_at = now()",
    )
    .bind(token_hash)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets a link's code once spent.
pub async fn forget_link_token(
    conn: &mut PgConnection,
    token_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("delete from internal.link_tokens where token_hash = $1")
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The user holding the code whose stored hash is `token_hash` (the `token` of an emailed
/// link, GoTrue's `token_hash`), the row locked: their id and when the code was sent. Only a
/// code made for a link counts (`internal.link_tokens`, see [`remember_link_token`]).
pub async fn lock_code_by_hash(
    conn: &mut PgConnection,
    purpose: CodePurpose,
    token_hash: &str,
) -> Result<Option<(Uuid, Option<DateTime<Utc>>)>, StoreError> {
    let (token, sent) = purpose.columns();
    let sql = format!(
        "select id, {sent} from auth.users u \
          where {token} = $1 and $1 <> '' and deleted_at is null \
            and exists (select from internal.link_tokens l where l.token_hash = $1 and l.user_id = u.id) \
          limit 1 for update of u"
    );
    Ok(sqlx::query_as(&sql)
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The user whose pending change of email has the code whose hash is `token_hash`, locked:
/// their id, the new address, and when the code was sent.
pub async fn lock_email_change_by_hash(
    conn: &mut PgConnection,
    token_hash: &str,
) -> Result<Option<(Uuid, String, Option<DateTime<Utc>>)>, StoreError> {
    Ok(sqlx::query_as(
        "select id, email_change, email_change_sent_at from auth.users u
          where email_change_token_new = $1 and $1 <> '' and coalesce(email_change, '') <> ''
            and deleted_at is null
            and exists (select from internal.link_tokens l where l.token_hash = $1 and l.user_id = u.id)
          limit 1 for update of u",
    )
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Spends a code: it cannot be used again. `confirm` also marks the email or phone confirmed.
pub async fn spend_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    purpose: CodePurpose,
    confirm: Option<Contact>,
) -> Result<(), StoreError> {
    let (token, sent) = purpose.columns();
    let confirm = confirm
        .map(|c| {
            let column = c.column();
            format!(", {column}_confirmed_at = coalesce({column}_confirmed_at, now())")
        })
        .unwrap_or_default();
    let sql = format!(
        "update auth.users set {token} = '', {sent} = null{confirm}, updated_at = now() where id = $1"
    );
    sqlx::query(&sql).bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

/// Sign-up again on an account nobody has confirmed: GoTrue lets the new sign-up take it over
/// (new password and metadata), since the first one never proved the address was theirs.
pub async fn replace_unconfirmed(
    conn: &mut PgConnection,
    user_id: Uuid,
    password_hash: &str,
    user_metadata: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users set encrypted_password = $2, raw_user_meta_data = $3, updated_at = now()
          where id = $1 and confirmed_at is null",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(user_metadata)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Gives an account nobody confirmed to whoever now proves the number by other means (a USSD
/// registration from it): no password, the new metadata, every session and refresh token ended.
/// Does nothing to an account someone confirmed.
pub async fn take_over_unconfirmed(
    conn: &mut PgConnection,
    user_id: Uuid,
    user_metadata: &Value,
) -> Result<(), StoreError> {
    let taken = sqlx::query(
        "update auth.users set encrypted_password = null, raw_user_meta_data = $2, updated_at = now()
          where id = $1 and confirmed_at is null",
    )
    .bind(user_id)
    .bind(user_metadata)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if taken == 1 {
        sqlx::query("delete from auth.sessions where user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// An address proved by another provider (Google) on an account whose own sign-up never
/// confirmed it: the address is confirmed, and the password set by whoever signed up, with
/// every session and refresh token, is gone.
pub async fn confirm_email_dropping_password(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), StoreError> {
    let confirmed = sqlx::query(
        "update auth.users set email_confirmed_at = now(), encrypted_password = null,
                confirmation_token = '', updated_at = now()
          where id = $1 and email_confirmed_at is null",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if confirmed == 1 {
        sqlx::query("delete from auth.sessions where user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Makes the user's profile (`public.users`) if they have none: `internal.ensure_profile`.
pub async fn ensure_profile(
    executor: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query("select internal.ensure_profile($1)")
        .bind(user_id)
        .execute(executor)
        .await?;
    Ok(())
}
