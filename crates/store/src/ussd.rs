//! USSD sessions (`public.ussd_sessions`), held PINs, the member's facts for the menus, and the
//! member-side reads and writes the menus lead to.
//!
//! The handler runs one transaction per hop on the pool's own role (a system path), locks the
//! session row first, and switches to the member's role and claims ([`become_member`]) inside a
//! savepoint for whatever the member does, so RLS and the database functions apply exactly as
//! they do for the app.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub phone_number: String,
    pub language: String,
    pub state: Value,
    pub hops: i32,
    pub status: String,
    /// Past the telco's 180 seconds, by the database's clock.
    pub expired: bool,
}

/// The session, locked until the hop's transaction ends: two hops of one session (a gateway
/// retry racing the original) run one after the other.
pub async fn lock_session(
    conn: &mut PgConnection,
    session_id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(sqlx::query_as(
        "select phone_number, language, state, hops, status, expires_at <= now() as expired
           from public.ussd_sessions where session_id = $1 for update",
    )
    .bind(session_id)
    .fetch_optional(conn)
    .await?)
}

/// Creates the session (if a concurrent first hop did not) and locks it.
pub async fn open_session(
    conn: &mut PgConnection,
    session_id: &str,
    phone: &str,
    service_code: Option<&str>,
    language: &str,
) -> Result<Option<SessionRow>, StoreError> {
    sqlx::query(
        "insert into public.ussd_sessions (session_id, phone_number, service_code, language)
         values ($1, $2, $3, $4) on conflict (session_id) do nothing",
    )
    .bind(session_id)
    .bind(phone)
    .bind(service_code)
    .bind(language)
    .execute(&mut *conn)
    .await?;
    lock_session(conn, session_id).await
}

/// Stores the state after a hop. The user is whoever owns the phone now (a hop may have
/// registered them).
pub async fn save_session(
    conn: &mut PgConnection,
    session_id: &str,
    language: &str,
    state: &Value,
    status: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "update public.ussd_sessions s set
            language = $2, state = $3, status = $4, hops = hops + 1,
            last_activity_at = greatest(now(), created_at),
            user_id = (select u.id from public.users u
                        where u.phone = s.phone_number and u.deleted_at is null)
          where session_id = $1",
    )
    .bind(session_id)
    .bind(language)
    .bind(state)
    .bind(status)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_session(
    conn: &mut PgConnection,
    session_id: &str,
    status: &str,
) -> Result<(), StoreError> {
    sqlx::query("update public.ussd_sessions set status = $2 where session_id = $1")
        .bind(session_id)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps a newly chosen PIN's hash until it is typed again (see the migration's comment).
pub async fn hold_pin(
    conn: &mut PgConnection,
    session_id: &str,
    pin_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into internal.ussd_pending_pins (session_id, pin_hash) values ($1, $2)
         on conflict (session_id) do update
           set pin_hash = excluded.pin_hash, expires_at = now() + interval '180 seconds'",
    )
    .bind(session_id)
    .bind(pin_hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// The held PIN hash, removed: it is compared once.
pub async fn take_held_pin(
    conn: &mut PgConnection,
    session_id: &str,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "delete from internal.ussd_pending_pins where session_id = $1
         returning pin_hash, expires_at > now()",
    )
    .bind(session_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(hash, live)| live.then_some(hash)))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: Uuid,
    pub first_name: String,
    pub language: String,
    /// Suspended by a platform administrator (banned in `auth.users`).
    pub banned: bool,
}

/// Whoever owns this E.164 phone, if anyone. An account that confirmed the number but has no
/// profile yet (Supabase Auth made it; it never signed in through us) gets its profile first, so
/// its owner is a member here on their first call, not a stranger asked to register.
pub async fn member_by_phone(
    conn: &mut PgConnection,
    phone: &str,
) -> Result<Option<MemberRow>, StoreError> {
    sqlx::query("select internal.ensure_profile(internal.user_with_confirmed_phone($1))")
        .bind(phone)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "select u.id, coalesce(u.first_name, '') as first_name, u.language,
                coalesce(a.banned_until > now(), false) as banned
           from public.users u join auth.users a on a.id = u.id
          where u.phone = $1 and u.deleted_at is null",
    )
    .bind(phone)
    .fetch_optional(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub chama_id: Uuid,
    pub name: String,
    pub balance: i64,
    pub contributed: i64,
    pub contribution: i64,
    pub frequency: String,
    pub official: bool,
}

/// The member's active memberships of active chamas, by name (a stable order for menus).
pub async fn memberships(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<MembershipRow>, StoreError> {
    Ok(sqlx::query_as(
        "select c.id as chama_id, c.name, c.balance, m.contributed_total as contributed,
                c.contribution_amount as contribution, c.contribution_frequency as frequency,
                m.role in ('chairperson', 'treasurer', 'secretary') as official
           from public.chama_members m join public.chamas c on c.id = m.chama_id
          where m.user_id = $1 and m.status = 'active' and c.status = 'active'
            and c.deleted_at is null
          order by c.name, c.id
          limit 100",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?)
}

/// The profile of a USSD registration, audited as a sign-up. Made over an account nobody
/// confirmed (`took_over`), the name, language and number given now replace whatever the
/// unconfirmed sign-up wrote.
pub async fn save_profile(
    conn: &mut PgConnection,
    user_id: Uuid,
    phone: &str,
    (first_name, last_name): (&str, Option<&str>),
    language: &str,
    took_over: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into public.users (id, phone, first_name, last_name, language)
         values ($1, $2, $3, $4, $5)
         on conflict (id) do update set phone = excluded.phone, first_name = excluded.first_name,
             last_name = excluded.last_name, language = excluded.language",
    )
    .bind(user_id)
    .bind(phone)
    .bind(first_name)
    .bind(last_name)
    .bind(language)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "select internal.audit_log('auth.signup', 'auth.users', $1::text, null,
                                   jsonb_build_object('provider', 'ussd', 'took_over_unconfirmed', $2::boolean), $1)",
    )
    .bind(user_id)
    .bind(took_over)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_language(
    conn: &mut PgConnection,
    user_id: Uuid,
    language: &str,
) -> Result<(), StoreError> {
    sqlx::query("update public.users set language = $2 where id = $1")
        .bind(user_id)
        .bind(language)
        .execute(conn)
        .await?;
    Ok(())
}

/// The STK push request and its outbox job (`internal.ussd_start_contribution`).
pub async fn start_contribution(
    conn: &mut PgConnection,
    chama_id: Uuid,
    user_id: Uuid,
    phone: &str,
    amount: i64,
) -> Result<Uuid, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.ussd_start_contribution($1, $2, $3::text, $4)")
            .bind(chama_id)
            .bind(user_id)
            .bind(phone)
            .bind(amount)
            .fetch_one(conn)
            .await?,
    )
}

/// From here to the end of the transaction (or of the savepoint), queries run as the member.
pub async fn become_member(conn: &mut PgConnection, claims: &Value) -> Result<(), StoreError> {
    sqlx::query(
        "select set_config('role', 'authenticated', true),
                set_config('request.jwt.claims', $1, true)",
    )
    .bind(claims.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Back to the pool's own role, without the member's claims.
pub async fn become_system(conn: &mut PgConnection) -> Result<(), StoreError> {
    // `role` set to `none` is `SET LOCAL ROLE NONE`: the session's own role again.
    sqlx::query(
        "select set_config('role', 'none', true), set_config('request.jwt.claims', '', true)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingRow {
    pub id: Uuid,
    pub chama_name: String,
    pub requester: String,
    pub amount: i64,
    pub reason: String,
    pub approvals: i32,
    pub required: i32,
}

/// As the member: pending withdrawals of their chamas where they are an official, that they
/// did not ask for and have not decided on yet.
pub async fn pending_for_official(
    conn: &mut PgConnection,
    me: Uuid,
) -> Result<Vec<PendingRow>, StoreError> {
    Ok(sqlx::query_as(
        "select r.id, c.name as chama_name, coalesce(u.first_name, '') as requester, r.amount,
                r.reason, r.approvals_count as approvals, r.required_approvals as required
           from public.disbursement_requests r
           join public.chamas c on c.id = r.chama_id
           left join public.users u on u.id = r.requested_by
          where r.status = 'pending' and r.expires_at > now() and r.requested_by <> $1
            and public.is_chama_official(r.chama_id)
            and not exists (select 1 from public.disbursement_approvals a
                             where a.request_id = r.id and a.approver_id = $1)
          order by r.created_at, r.id
          limit 30",
    )
    .bind(me)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MeetingRow {
    pub title: String,
    pub scheduled_for: DateTime<Utc>,
    pub venue: Option<String>,
}

/// As the member: the chama's next scheduled meeting.
pub async fn next_meeting(
    conn: &mut PgConnection,
    chama_id: Uuid,
) -> Result<Option<MeetingRow>, StoreError> {
    Ok(sqlx::query_as(
        "select title, scheduled_for, venue from public.meetings
          where chama_id = $1 and status = 'scheduled' and scheduled_for > now()
          order by scheduled_for limit 1",
    )
    .bind(chama_id)
    .fetch_optional(conn)
    .await?)
}

/// As the member: their whole statement in the chama (`public.member_statement`).
pub async fn member_statement(
    conn: &mut PgConnection,
    chama_id: Uuid,
    me: Uuid,
) -> Result<Value, StoreError> {
    Ok(sqlx::query_scalar(
        "select public.member_statement($1, $2, '-infinity', now() + interval '1 second')",
    )
    .bind(chama_id)
    .bind(me)
    .fetch_one(conn)
    .await?)
}

/// As the member: `public.request_disbursement` for themselves.
pub async fn request_disbursement(
    conn: &mut PgConnection,
    chama_id: Uuid,
    amount: i64,
    reason: &str,
    idempotency_key: &str,
    request_hash: &str,
) -> Result<Value, StoreError> {
    Ok(
        sqlx::query_scalar("select public.request_disbursement($1, $2, $3, null, $4, $5)")
            .bind(chama_id)
            .bind(amount)
            .bind(reason)
            .bind(idempotency_key)
            .bind(request_hash)
            .fetch_one(conn)
            .await?,
    )
}

/// As the official: `public.decide_disbursement`.
pub async fn decide_disbursement(
    conn: &mut PgConnection,
    request_id: Uuid,
    approve: bool,
) -> Result<Value, StoreError> {
    Ok(
        sqlx::query_scalar("select public.decide_disbursement($1, $2, 'via USSD')")
            .bind(request_id)
            .bind(if approve { "approve" } else { "reject" })
            .fetch_one(conn)
            .await?,
    )
}
