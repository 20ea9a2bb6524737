//! The body of `createUser` and `updateUserById`, checked before anything is written: what is
//! wrong is a 4xx naming it.

use axum::http::StatusCode;
use pesachama_domain::{Email, PasswordRules, Phone};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, Contact};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{duration, email_exists, phone_exists};
use crate::gotrue::AuthError;
use crate::gotrue::handlers::blocking;

/// The body of `createUser` and `updateUserById` (GoTrue's `AdminUserParams`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AdminUserParams {
    pub(super) id: Option<String>,
    pub(super) aud: Option<String>,
    pub(super) role: Option<String>,
    pub(super) email: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_hash: Option<String>,
    #[serde(default)]
    pub(super) email_confirm: bool,
    #[serde(default)]
    pub(super) phone_confirm: bool,
    pub(super) user_metadata: Option<Value>,
    pub(super) app_metadata: Option<Value>,
    pub(super) ban_duration: Option<String>,
}

/// The parameters, checked: what is wrong is a 4xx naming it, before anything is written.
pub(super) struct Checked {
    pub(super) email: Option<Email>,
    pub(super) phone: Option<Phone>,
    pub(super) password: Option<String>,
    pub(super) password_hash: Option<String>,
    pub(super) ban_seconds: Option<i64>,
    pub(super) user_metadata: Option<Value>,
    pub(super) app_metadata: Option<Value>,
}

pub(super) fn check(params: AdminUserParams) -> Result<Checked, AuthError> {
    let blank = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let email = blank(params.email)
        .map(|e| {
            Email::parse(e.trim()).map_err(|_| {
                AuthError::validation("Unable to validate email address: invalid format")
            })
        })
        .transpose()?;
    let phone = blank(params.phone)
        .map(|p| {
            Phone::parse(p.trim()).map_err(|_| {
                AuthError::validation(
                    "Invalid phone number format: expected a Kenyan mobile number (07XXXXXXXX or +2547XXXXXXXX)",
                )
            })
        })
        .transpose()?;
    // Every token this server signs for a user says `authenticated`, and Supabase Auth would
    // sign a user whose row says `service_role` as the service role: no other role is set here.
    if let Some(role) = blank(params.role)
        && role.trim() != "authenticated"
    {
        return Err(AuthError::validation(format!(
            "role must be \"authenticated\" (got {role:?}): users are never given another database role"
        )));
    }
    if let Some(aud) = blank(params.aud)
        && aud.trim() != "authenticated"
    {
        return Err(AuthError::validation(format!(
            "aud must be \"authenticated\" (got {aud:?})"
        )));
    }
    for (name, value) in [
        ("user_metadata", &params.user_metadata),
        ("app_metadata", &params.app_metadata),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            return Err(AuthError::validation(format!(
                "{name} must be a JSON object"
            )));
        }
    }
    let password = params.password;
    let password_hash = blank(params.password_hash);
    if password.is_some() && password_hash.is_some() {
        return Err(AuthError::validation(
            "Only a password or a password hash should be provided",
        ));
    }
    if let Some(password) = password.as_deref() {
        PasswordRules::default().check(password).map_err(|weak| {
            AuthError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "weak_password",
                weak.to_string(),
            )
        })?;
    }
    if let Some(hash) = password_hash.as_deref() {
        let bcrypt =
            ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60;
        if !(bcrypt || hash.starts_with("$argon2id$")) {
            return Err(AuthError::validation(
                "password_hash must be a bcrypt ($2a$, $2b$, $2y$) or argon2id hash",
            ));
        }
    }
    let ban_seconds = blank(params.ban_duration)
        .map(|text| {
            if text == "none" {
                Ok(0)
            } else {
                duration::parse_seconds(&text).map_err(|err| {
                    AuthError::validation(format!("invalid format for ban duration: {err}"))
                })
            }
        })
        .transpose()?;
    Ok(Checked {
        email,
        phone,
        password,
        password_hash,
        ban_seconds,
        user_metadata: params.user_metadata.filter(Value::is_object),
        app_metadata: params.app_metadata.filter(Value::is_object),
    })
}

pub(super) async fn hash(password: String) -> Result<String, AuthError> {
    blocking(move || pesachama_auth::hashing::hash_password(&password))
        .await?
        .map_err(|err| {
            tracing::error!(error = %err, "hashing failed");
            AuthError::internal()
        })
}

/// Which of `email`/`phone` another live account already holds: 422 `email_exists` /
/// `phone_exists`.
pub(super) async fn check_free(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: Option<&Email>,
    phone: Option<&Phone>,
) -> Result<(), AuthError> {
    if let Some(email) = email
        && auth::contact_taken(&mut *conn, user_id, Contact::Email, email.as_str()).await?
    {
        return Err(email_exists());
    }
    if let Some(phone) = phone
        && auth::contact_taken(&mut *conn, user_id, Contact::Phone, phone.msisdn()).await?
    {
        return Err(phone_exists());
    }
    Ok(())
}

/// A unique index that refused the write: someone took the address in between.
pub(super) fn conflict(err: StoreError) -> AuthError {
    match &err {
        StoreError::Conflict { constraint } if constraint.contains("phone") => phone_exists(),
        StoreError::Conflict { constraint } if constraint.contains("email") => email_exists(),
        StoreError::Conflict { constraint } if constraint.contains("pkey") => AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_already_exists",
            "A user with this ID already exists",
        ),
        _ => err.into(),
    }
}

/// The platform role an `app_metadata` patch sets (`Some(true)`), removes (`Some(false)`), or
/// leaves alone (`None`).
pub(super) fn platform_role_change(patch: Option<&Value>) -> Option<bool> {
    match patch?.get("platform_role")? {
        Value::String(role) => Some(role == "admin"),
        _ => Some(false),
    }
}
