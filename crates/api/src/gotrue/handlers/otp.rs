//! One-time codes: `recover` (password reset by email), `otp` (sign-in code by SMS or email),
//! and `verify` (trading a code for a session).
//!
//! Codes are six digits, stored only as a hash salted with the address ([`codes`]), valid for
//! `otp_ttl_seconds`, and used once. The message carrying a code is written to the outbox in
//! the same transaction and sent by the delivery worker (SMS through Africa's Talking, email
//! through the mailer). A change of email or phone (`PUT /auth/v1/user`) is confirmed here too,
//! with the code sent to the new address (`email_change`, `phone_change`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, CodePurpose, Contact, NewUser};
use serde::Deserialize;
use serde_json::{Value, json};

use super::codes::{self, Template};
use super::{Identifier, audit, ensure_profile, json_body};
use crate::AppState;
use crate::gotrue::session::TokenResponse;
use crate::gotrue::{AuthError, ClientIp, ratelimit};

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
        let code = codes::new_code();
        let hash = codes::token_hash(codes::stored_address(&identifier), &code);
        auth::store_code(&mut tx, user.id, CodePurpose::Recovery, &hash).await?;
        codes::send(&mut tx, &identifier, Template::Recovery, &code, user.id).await?;
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
            ensure_profile(&mut tx, &user).await?;
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
    let code = codes::new_code();
    let hash = codes::token_hash(codes::stored_address(&identifier), &code);
    auth::store_code(&mut tx, user.id, CodePurpose::Confirmation, &hash).await?;
    codes::send(&mut tx, &identifier, Template::SignIn, &code, user.id).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct VerifyBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    token: Option<String>,
    /// supabase-js's `verifyOtp({ token_hash, type })`: the code's hash, from an emailed link.
    token_hash: Option<String>,
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
    if let Some(token_hash) = body.token_hash.as_deref().filter(|t| !t.is_empty()) {
        let kind = body.kind.as_deref().unwrap_or_default();
        return super::link::verify_hash(&state, &ip, &headers, kind, token_hash)
            .await
            .map(Json);
    }
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
    let check = match kind {
        "recovery" | "magiclink" => Check::Code(CodePurpose::Recovery, None),
        "signup" | "email" | "invite" => {
            Check::Code(CodePurpose::Confirmation, Some(Contact::Email))
        }
        "sms" => Check::Code(CodePurpose::Confirmation, Some(Contact::Phone)),
        "email_change" => Check::Change(Contact::Email),
        "phone_change" => Check::Change(Contact::Phone),
        other => {
            return Err(AuthError::validation(format!(
                "Verify requires a verification type, got {other:?}"
            )));
        }
    };
    let code = body.token.unwrap_or_default();
    let address = codes::stored_address(&identifier);

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let (user_id, stored, sent_at) = match check {
        Check::Code(purpose, _) => {
            let Some(user) = identifier.find(&mut tx).await? else {
                return Err(invalid_code());
            };
            let (stored, sent_at) = auth::lock_code(&mut tx, user.id, purpose).await?;
            (user.id, stored, sent_at)
        }
        Check::Change(contact) => match auth::lock_pending_change(&mut tx, contact, address).await?
        {
            Some(pending) => pending,
            None => return Err(invalid_code()),
        },
    };
    let fresh = sent_at.is_some_and(|at: DateTime<Utc>| {
        (Utc::now() - at).num_seconds() <= state.auth.settings.otp_ttl_seconds
    });
    if !(fresh && codes::matches(stored.as_deref(), address, &code)) {
        drop(tx);
        let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
        audit(
            &mut conn,
            "auth.verify_failed",
            Some(user_id),
            json!({ "type": kind }),
        )
        .await?;
        return Err(invalid_code());
    }
    match check {
        Check::Code(purpose, confirm) => {
            auth::spend_code(&mut tx, user_id, purpose, confirm).await?;
            if confirm.is_some() {
                super::user::copy_contact_to_profile(&mut tx, user_id, &identifier).await?;
            }
        }
        Check::Change(contact) => {
            // Someone may have taken the address since the code was sent.
            if auth::contact_taken(&mut *tx, user_id, contact, address).await? {
                return Err(taken(contact));
            }
            auth::apply_contact_change(&mut tx, user_id, contact).await?;
            super::user::copy_contact_to_profile(&mut tx, user_id, &identifier).await?;
            let action = match contact {
                Contact::Email => "auth.email_changed",
                Contact::Phone => "auth.phone_changed",
            };
            audit(&mut tx, action, Some(user_id), json!({})).await?;
        }
    }
    let user = auth::find_user_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(invalid_code)?;
    ensure_profile(&mut tx, &user).await?;
    let method = if kind == "recovery" {
        "recovery"
    } else {
        "otp"
    };
    let tokens = super::sign_in(&mut tx, &state, &user, method, (&headers, &ip), json!({})).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(tokens))
}

/// What a `verify` call checks.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// A code kept on the user row; with a contact, it confirms that contact.
    Code(CodePurpose, Option<Contact>),
    /// A pending change of email or phone, named by the new address.
    Change(Contact),
}

fn invalid_code() -> AuthError {
    AuthError::new(
        StatusCode::FORBIDDEN,
        "otp_expired",
        "Token has expired or is invalid",
    )
}

pub(crate) fn taken(contact: Contact) -> AuthError {
    match contact {
        Contact::Email => AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "email_exists",
            "A user with this email address has already been registered",
        ),
        Contact::Phone => AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_exists",
            "Phone number already registered by another user",
        ),
    }
}
