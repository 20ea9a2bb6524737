//! `auth.flow_state`: the browser OAuth flow's memory between its redirects, written as GoTrue
//! writes it (its Go model reads the provider tokens, `created_at` and `updated_at` into values
//! that cannot hold NULL, so they are never NULL here).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FlowState {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub auth_code: Option<String>,
    /// `s256` or `plain`; `None` for the implicit flow.
    pub code_challenge_method: Option<String>,
    pub code_challenge: Option<String>,
    pub provider_type: String,
    pub provider_access_token: String,
    pub provider_refresh_token: String,
    pub authentication_method: String,
    pub referrer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub auth_code_issued_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, user_id, auth_code, code_challenge_method::text as code_challenge_method, \
    code_challenge, provider_type, coalesce(provider_access_token, '') as provider_access_token, \
    coalesce(provider_refresh_token, '') as provider_refresh_token, authentication_method, referrer, \
    coalesce(created_at, 'epoch') as created_at, auth_code_issued_at";

/// What `/authorize` remembers.
#[derive(Debug, Clone)]
pub struct NewFlowState<'a> {
    pub provider_type: &'a str,
    /// The PKCE challenge and its method (`s256` or `plain`), with the auth code the callback
    /// will hand out; `None` for the implicit flow.
    pub pkce: Option<(&'a str, &'a str, &'a str)>,
    pub referrer: &'a str,
}

/// Inserts a flow (`authentication_method` `oauth`) and answers its id, the OAuth `state`.
pub async fn insert(
    executor: impl PgExecutor<'_>,
    flow: &NewFlowState<'_>,
) -> Result<Uuid, StoreError> {
    let (challenge, method, auth_code) = match flow.pkce {
        Some((challenge, method, code)) => (Some(challenge), Some(method), Some(code)),
        None => (None, None, None),
    };
    Ok(sqlx::query_scalar(
        "insert into auth.flow_state (id, auth_code, code_challenge_method, code_challenge,
             provider_type, provider_access_token, provider_refresh_token, authentication_method,
             referrer, email_optional, created_at, updated_at)
         values (gen_random_uuid(), $1, $2::text::auth.code_challenge_method, $3, $4, '', '',
             'oauth', $5, false, now(), now())
         returning id",
    )
    .bind(auth_code)
    .bind(method)
    .bind(challenge)
    .bind(flow.provider_type)
    .bind(flow.referrer)
    .fetch_one(executor)
    .await?)
}

/// Takes the OAuth flow of `provider` whose state came back and that has not handed out its
/// auth code yet, so that a state is heard once: the row is deleted and answered (a PKCE flow
/// is written back by [`issue_auth_code`] once the user is known). A row another request is
/// taking at this moment is not waited for: it is not found.
pub async fn take(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    provider: &str,
) -> Result<Option<FlowState>, StoreError> {
    let sql = format!(
        "delete from auth.flow_state where id = (
             select id from auth.flow_state
              where id = $1 and provider_type = $2 and authentication_method = 'oauth'
                and user_id is null
              for update skip locked)
         returning {COLUMNS}"
    );
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .bind(provider)
        .fetch_optional(executor)
        .await?)
}

/// Whether a flow with this state exists and has already handed out its auth code.
pub async fn is_used(executor: impl PgExecutor<'_>, id: Uuid) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "select exists (select from auth.flow_state where id = $1 and user_id is not null)",
    )
    .bind(id)
    .fetch_one(executor)
    .await?)
}

/// Writes back a PKCE flow taken by [`take`], now bound to `user_id`, with the provider's
/// tokens and the time its auth code was handed out (GoTrue's row after its callback).
pub async fn issue_auth_code(
    conn: &mut PgConnection,
    flow: &FlowState,
    user_id: Uuid,
    provider_access_token: &str,
    provider_refresh_token: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into auth.flow_state (id, user_id, auth_code, code_challenge_method, code_challenge,
             provider_type, provider_access_token, provider_refresh_token, authentication_method,
             referrer, email_optional, created_at, updated_at, auth_code_issued_at)
         values ($1, $2, $3, $4::text::auth.code_challenge_method, $5, $6, $7, $8, $9, $10, false,
             $11, now(), now())",
    )
    .bind(flow.id)
    .bind(user_id)
    .bind(&flow.auth_code)
    .bind(&flow.code_challenge_method)
    .bind(&flow.code_challenge)
    .bind(&flow.provider_type)
    .bind(provider_access_token)
    .bind(provider_refresh_token)
    .bind(&flow.authentication_method)
    .bind(&flow.referrer)
    .bind(flow.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The flow holding `auth_code`, locked until the caller's transaction ends, so that two
/// exchanges of one code cannot both succeed.
pub async fn lock_by_auth_code(
    conn: &mut PgConnection,
    auth_code: &str,
) -> Result<Option<FlowState>, StoreError> {
    let sql = format!(
        "select {COLUMNS} from auth.flow_state where auth_code = $1
          order by created_at desc limit 1 for update"
    );
    Ok(sqlx::query_as(&sql)
        .bind(auth_code)
        .fetch_optional(&mut *conn)
        .await?)
}

pub async fn delete(executor: impl PgExecutor<'_>, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("delete from auth.flow_state where id = $1")
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Deletes up to `limit` OAuth flows of `provider` older than `max_age_seconds` (abandoned
/// sign-ins), oldest first.
pub async fn delete_stale(
    executor: impl PgExecutor<'_>,
    provider: &str,
    max_age_seconds: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "delete from auth.flow_state where id in (
             select id from auth.flow_state
              where created_at < now() - make_interval(secs => $2::bigint)
                and provider_type = $1 and authentication_method = 'oauth'
              order by created_at limit $3 for update skip locked)",
    )
    .bind(provider)
    .bind(max_age_seconds)
    .bind(limit)
    .execute(executor)
    .await?
    .rows_affected())
}
