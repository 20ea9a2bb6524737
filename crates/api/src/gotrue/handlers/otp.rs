//! One-time codes: `recover` (password reset by email), `otp` (sign-in code by SMS or email),
//! and `verify` (trading a code for a session).
//!
//! Codes are six digits, stored only as a SHA-256 hash, valid for `otp_ttl_seconds`, and used
//! once. The message carrying a code is written to the outbox in the same transaction and sent
//! by the delivery worker (SMS through Africa's Talking, email through the mailer).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use pesachama_store::StoreError;
use pesachama_store::auth::{self, NewUser};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::PgConnection;

use super::{Identifier, audit, ensure_profile, json_body};
use crate::AppState;
use crate::gotrue::session::TokenResponse;
use crate::gotrue::{AuthError, ClientIp, ratelimit, session};

fn new_code() -> String {
    let n: u32 = rand::random_range(0..1_000_000);
    format!("{n:06}")
}

fn digest(code: &str) -> String {
    hex::encode(sha2::Sha256::digest(code.as_bytes()))
}

async fn enqueue(conn: &mut PgConnection, topic: &str, payload: Value) -> Result<(), AuthError> {
    sqlx::query("insert into internal.outbox (topic, payload) values ($1, $2)")
        .bind(topic)
        .bind(payload)
        .execute(conn)
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct RecoverBody {
    email: Option<String>,
}

/// Always `{}`: whether the address has an account is nobody's business.
pub async fn recover(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let body: RecoverBody = json_body(&body)?;
    let identifier = Identifier::from_fields(body.email.as_deref(), None)?;
    let limits = state.auth.settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "recover",
        ip.text().as_deref(),
        Some(&identifier.key()),
        limits.recover,
        limits.window_seconds,
    )
    .await?;
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    if let Some(user) = identifier.find(&mut tx).await? {
        let code = new_code();
        sqlx::query(
            "update auth.users set recovery_token = $2, recovery_sent_at = now() where id = $1",
        )
        .bind(user.id)
        .bind(digest(&code))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        enqueue(
            &mut tx,
            "email",
            json!({ "to": user.email, "template": "recovery", "code": code, "user_id": user.id }),
        )
        .await?;
        audit(&mut tx, "auth.recovery_requested", Some(user.id), json!({})).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct OtpBody {
    email: Option<String>,
    phone: Option<String>,
    create_user: Option<bool>,
    data: Option<Value>,
}

pub async fn otp(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let body: OtpBody = json_body(&body)?;
    let identifier = Identifier::from_fields(body.email.as_deref(), body.phone.as_deref())?;
    let limits = state.auth.settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "otp",
        ip.text().as_deref(),
        Some(&identifier.key()),
        limits.otp,
        limits.window_seconds,
    )
    .await?;

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let user = match identifier.find(&mut tx).await? {
        Some(user) => user,
        None => {
            if !body.create_user.unwrap_or(true) || state.auth.settings.disable_signup {
                return Err(AuthError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "otp_disabled",
                    "Signups not allowed for otp",
                ));
            }
            let data = body.data.unwrap_or_else(|| json!({}));
            let (email, phone, provider) = match &identifier {
                Identifier::Email(email) => (Some(email.as_str()), None, "email"),
                Identifier::Phone(phone) => (None, Some(phone.msisdn()), "phone"),
            };
            let user = auth::insert_user(
                &mut tx,
                &NewUser {
                    email,
                    phone,
                    password_hash: None,
                    user_metadata: &data,
                    provider,
                    confirmed: false,
                },
            )
            .await?;
            let identity = json!({ "sub": user.id.to_string(), "email": email, "phone": phone });
            auth::insert_identity(&mut tx, user.id, provider, &user.id.to_string(), &identity)
                .await?;
            ensure_profile(&mut tx, &user, &data).await?;
            audit(
                &mut tx,
                "auth.signup",
                Some(user.id),
                json!({ "provider": provider, "via": "otp" }),
            )
            .await?;
            user
        }
    };
    let code = new_code();
    sqlx::query(
        "update auth.users set confirmation_token = $2, confirmation_sent_at = now() where id = $1",
    )
    .bind(user.id)
    .bind(digest(&code))
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    match &identifier {
        Identifier::Phone(phone) => {
            enqueue(
                &mut tx,
                "sms",
                json!({ "to": phone.as_e164(), "message": format!("Your PesaChama code is {code}. It expires in 1 hour."), "user_id": user.id }),
            )
            .await?
        }
        Identifier::Email(email) => {
            enqueue(&mut tx, "email", json!({ "to": email.as_str(), "template": "otp", "code": code, "user_id": user.id })).await?
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct VerifyBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    token: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

pub async fn verify(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenResponse>, AuthError> {
    let body: VerifyBody = json_body(&body)?;
    let identifier = Identifier::from_fields(body.email.as_deref(), body.phone.as_deref())?;
    let limits = state.auth.settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "verify",
        ip.text().as_deref(),
        Some(&identifier.key()),
        limits.verify,
        limits.window_seconds,
    )
    .await?;
    let kind = body.kind.as_deref().unwrap_or_default();
    let (token_column, sent_column, confirm_column) = match kind {
        "recovery" | "magiclink" => ("recovery_token", "recovery_sent_at", None),
        "signup" | "email" => (
            "confirmation_token",
            "confirmation_sent_at",
            Some("email_confirmed_at"),
        ),
        "sms" | "phone_change" => (
            "confirmation_token",
            "confirmation_sent_at",
            Some("phone_confirmed_at"),
        ),
        other => {
            return Err(AuthError::validation(format!(
                "Verify requires a verification type, got {other:?}"
            )));
        }
    };
    let code = body.token.unwrap_or_default();
    let invalid = || {
        AuthError::new(
            StatusCode::FORBIDDEN,
            "otp_expired",
            "Token has expired or is invalid",
        )
    };

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let Some(user) = identifier.find(&mut tx).await? else {
        return Err(invalid());
    };
    let sql =
        format!("select {token_column}, {sent_column} from auth.users where id = $1 for update");
    let (stored, sent_at): (Option<String>, Option<chrono::DateTime<Utc>>) = sqlx::query_as(&sql)
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let fresh = sent_at
        .is_some_and(|at| (Utc::now() - at).num_seconds() <= state.auth.settings.otp_ttl_seconds);
    let matches = stored.as_deref().is_some_and(|stored| {
        use subtle_compare::eq;
        !stored.is_empty() && eq(stored.as_bytes(), digest(&code).as_bytes())
    });
    if !(fresh && matches) {
        drop(tx);
        let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
        audit(
            &mut conn,
            "auth.verify_failed",
            Some(user.id),
            json!({ "type": kind }),
        )
        .await?;
        return Err(invalid());
    }
    let confirm = confirm_column
        .map(|c| format!(", {c} = coalesce({c}, now())"))
        .unwrap_or_default();
    sqlx::query(&format!(
        "update auth.users set {token_column} = '', {sent_column} = null{confirm} where id = $1"
    ))
    .bind(user.id)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from)?;
    let user = auth::find_user_by_id(&mut *tx, user.id)
        .await?
        .ok_or_else(invalid)?;
    ensure_profile(
        &mut tx,
        &user,
        user.raw_user_meta_data.as_ref().unwrap_or(&json!({})),
    )
    .await?;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let method = if kind == "recovery" {
        "recovery"
    } else {
        "otp"
    };
    let tokens = session::start(
        &mut tx,
        &state.auth,
        &user,
        method,
        user_agent,
        ip.text().as_deref(),
    )
    .await?;
    audit(
        &mut tx,
        "auth.login",
        Some(user.id),
        json!({ "method": method }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(tokens))
}

/// Constant-time comparison, so the time a wrong code takes says nothing about how wrong it is.
mod subtle_compare {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
