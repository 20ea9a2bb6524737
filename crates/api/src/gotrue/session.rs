//! Starting sessions and issuing the token response.

use chrono::Utc;
use pesachama_auth::{AccessClaims, AmrEntry, Role};
use pesachama_store::auth::{self, AuthUser};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{AuthError, AuthRuntime, UserJson};

/// GoTrue's token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub expires_at: i64,
    pub refresh_token: String,
    pub user: UserJson,
    /// The provider's own access token, after a browser OAuth sign-in (as GoTrue answers it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_refresh_token: Option<String>,
}

/// Opens a session for `user` signed in by `method` and answers with fresh tokens.
pub async fn start(
    conn: &mut PgConnection,
    runtime: &AuthRuntime,
    user: &AuthUser,
    method: &str,
    user_agent: Option<&str>,
    ip: Option<&str>,
) -> Result<TokenResponse, AuthError> {
    let session_id = auth::create_session(conn, user.id, user_agent, ip).await?;
    sqlx::query("update auth.sessions set tag = $2 where id = $1")
        .bind(session_id)
        .bind(method)
        .execute(&mut *conn)
        .await
        .map_err(pesachama_store::StoreError::from)?;
    let refresh_token = pesachama_auth::random_token(18);
    auth::insert_refresh_token(conn, user.id, session_id, &refresh_token, None).await?;
    auth::touch_sign_in(conn, user.id).await?;
    respond(conn, runtime, user.id, session_id, method, refresh_token).await
}

/// Answers with a new access token for an existing session and the given refresh token.
pub async fn respond(
    conn: &mut PgConnection,
    runtime: &AuthRuntime,
    user_id: Uuid,
    session_id: Uuid,
    method: &str,
    refresh_token: String,
) -> Result<TokenResponse, AuthError> {
    let user = auth::find_user_by_id(&mut *conn, user_id)
        .await?
        .ok_or_else(|| {
            AuthError::new(
                axum::http::StatusCode::NOT_FOUND,
                "user_not_found",
                "User not found",
            )
        })?;
    let identities = auth::identities(&mut *conn, user_id).await?;
    let now = Utc::now().timestamp();
    let ttl = runtime.settings.access_token_ttl_seconds;
    let claims = claims_for(&user, session_id, method, now, ttl, runtime.issuer.issuer());
    let access_token = runtime.issuer.sign(&claims).map_err(|err| {
        tracing::error!(error = %err, "signing an access token failed");
        AuthError::internal()
    })?;
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in: ttl,
        expires_at: now + ttl,
        refresh_token,
        user: UserJson::new(&user, &identities),
        provider_token: None,
        provider_refresh_token: None,
    })
}

/// Exactly Supabase's access-token claims for `user`.
pub fn claims_for(
    user: &AuthUser,
    session_id: Uuid,
    method: &str,
    now: i64,
    ttl: i64,
    issuer: &str,
) -> AccessClaims {
    AccessClaims {
        sub: Some(user.id),
        aud: Some(Value::String("authenticated".to_owned())),
        exp: now + ttl,
        iat: now,
        iss: Some(issuer.to_owned()),
        email: Some(user.email.clone().unwrap_or_default()),
        phone: Some(user.phone.clone().unwrap_or_default()),
        // Whatever the row says, a signed-in user is `authenticated`: no path through sign-up or
        // sign-in can mint another role.
        role: Role::Authenticated,
        aal: Some("aal1".to_owned()),
        amr: Some(vec![AmrEntry {
            method: method.to_owned(),
            timestamp: now,
        }]),
        session_id: Some(session_id),
        is_anonymous: user.is_anonymous,
        app_metadata: user.raw_app_meta_data.clone().unwrap_or_else(|| json!({})),
        user_metadata: user.raw_user_meta_data.clone().unwrap_or_else(|| json!({})),
    }
}
