//! `GET`/`PUT /auth/v1/user` and `POST /auth/v1/logout`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use pesachama_domain::{Email, PasswordRules, Phone};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, Contact};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::codes::{self, Template};
use super::otp::taken;
use super::{Identifier, audit, blocking, json_body};
use crate::AppState;
use crate::gotrue::caller::SignedIn;
use crate::gotrue::{AuthError, ClientIp, UserJson};

/// A token whose session was ended (logout, reuse detection) is no longer honoured here, even
/// before it expires: the client must drop it.
pub(super) async fn require_live_session(
    conn: &mut PgConnection,
    caller: &SignedIn,
) -> Result<(), AuthError> {
    let live = match caller.claims.session_id {
        Some(session_id) => auth::session_exists(conn, session_id).await?,
        None => false,
    };
    if live {
        Ok(())
    } else {
        Err(AuthError::new(
            StatusCode::FORBIDDEN,
            "session_not_found",
            "Session from session_id claim in JWT does not exist",
        ))
    }
}

async fn user_json(conn: &mut PgConnection, caller: &SignedIn) -> Result<UserJson, AuthError> {
    let user = auth::find_user_by_id(&mut *conn, caller.id)
        .await?
        .ok_or_else(|| {
            AuthError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                "User from sub claim in JWT does not exist",
            )
        })?;
    let identities = auth::identities(&mut *conn, caller.id).await?;
    Ok(UserJson::new(&user, &identities))
}

pub async fn get_user(
    State(state): State<AppState>,
    caller: SignedIn,
) -> Result<Json<UserJson>, AuthError> {
    let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
    require_live_session(&mut conn, &caller).await?;
    Ok(Json(user_json(&mut conn, &caller).await?))
}

#[derive(Debug, Deserialize)]
struct UserUpdate {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    /// The reauthentication nonce, when the project requires one for a password change.
    nonce: Option<String>,
    data: Option<Value>,
}

pub async fn put_user(
    State(state): State<AppState>,
    caller: SignedIn,
    ip: ClientIp,
    body: Bytes,
) -> Result<Json<UserJson>, AuthError> {
    let update: UserUpdate = json_body(&body)?;
    let email = update
        .email
        .as_deref()
        .map(|e| {
            Email::parse(e).map_err(|_| {
                AuthError::validation("Unable to validate email address: invalid format")
            })
        })
        .transpose()?;
    let phone = update
        .phone
        .as_deref()
        .map(|p| Phone::parse(p).map_err(|_| AuthError::validation("Invalid phone number format")))
        .transpose()?;
    if let Some(data) = &update.data
        && !data.is_object()
    {
        return Err(AuthError::validation("data must be a JSON object"));
    }
    let hash = match update.password.clone() {
        Some(password) => {
            PasswordRules::default()
                .check(&password)
                .map_err(|weak| AuthError::weak_password(&weak))?;
            Some(
                blocking(move || pesachama_auth::hashing::hash_password(&password))
                    .await?
                    .map_err(|_| AuthError::internal())?,
            )
        }
        None => None,
    };

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    require_live_session(&mut tx, &caller).await?;
    if hash.is_some() {
        super::reauthenticate::check_for_password_change(
            &mut tx,
            &state,
            &ip,
            &caller,
            update.nonce.as_deref(),
        )
        .await?;
    }
    if let Some(hash) = &hash {
        auth::update_password(&mut tx, caller.id, hash).await?;
        audit(&mut tx, "auth.password_changed", Some(caller.id), json!({})).await?;
    }
    if let Some(data) = &update.data {
        auth::update_user_metadata(&mut tx, caller.id, data).await?;
    }
    let autoconfirm = state.auth.settings.autoconfirm;
    for new in [email.map(Identifier::Email), phone.map(Identifier::Phone)]
        .into_iter()
        .flatten()
    {
        change_contact(&mut tx, caller.id, &new, autoconfirm).await?;
    }
    let user = user_json(&mut tx, &caller).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(user))
}

/// A new email or phone for the account. It belongs to the account only once the code sent to
/// it comes back (`POST /auth/v1/verify` with `email_change` or `phone_change`): until then the
/// account keeps its old address, and nothing that trusts a verified number (invitations, USSD,
/// M-Pesa prompts) sees the new one. Only where confirmation is off (`--demo`) does it change at
/// once, as GoTrue's autoconfirm does.
async fn change_contact(
    tx: &mut PgConnection,
    user_id: uuid::Uuid,
    new: &Identifier,
    autoconfirm: bool,
) -> Result<(), AuthError> {
    let contact = match new {
        Identifier::Email(_) => Contact::Email,
        Identifier::Phone(_) => Contact::Phone,
    };
    let address = codes::stored_address(new);
    if auth::contact_taken(&mut *tx, user_id, contact, address).await? {
        return Err(taken(contact));
    }
    if autoconfirm {
        auth::set_contact_confirmed(tx, user_id, contact, address)
            .await
            .map_err(|err| match err {
                StoreError::Conflict { .. } => taken(contact),
                other => other.into(),
            })?;
        copy_contact_to_profile(tx, user_id, new).await?;
        let action = match contact {
            Contact::Email => "auth.email_changed",
            Contact::Phone => "auth.phone_changed",
        };
        return audit(tx, action, Some(user_id), json!({})).await;
    }
    let code = codes::new_code();
    auth::request_contact_change(
        tx,
        user_id,
        contact,
        address,
        &codes::token_hash(address, &code),
    )
    .await?;
    let template = match contact {
        Contact::Email => Template::EmailChange,
        Contact::Phone => Template::PhoneChange,
    };
    codes::send(tx, new, template, &code, user_id).await?;
    let action = match contact {
        Contact::Email => "auth.email_change_requested",
        Contact::Phone => "auth.phone_change_requested",
    };
    audit(tx, action, Some(user_id), json!({ "to": new.masked() })).await
}

/// The profile (`public.users`) shows the account's confirmed email and phone.
pub(crate) async fn copy_contact_to_profile(
    tx: &mut PgConnection,
    user_id: uuid::Uuid,
    contact: &Identifier,
) -> Result<(), AuthError> {
    let (sql, value) = match contact {
        Identifier::Email(email) => (
            "update public.users set email = $2 where id = $1",
            email.as_str(),
        ),
        Identifier::Phone(phone) => (
            "update public.users set phone = $2 where id = $1",
            phone.as_e164(),
        ),
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

pub async fn logout(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    caller: SignedIn,
) -> Result<StatusCode, AuthError> {
    let scope = query.get("scope").map(String::as_str).unwrap_or("global");
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let current = caller.claims.session_id;
    match (scope, current) {
        ("global", _) => {
            auth::delete_sessions(&mut tx, caller.id, None).await?;
        }
        ("local", Some(session_id)) => auth::delete_session(&mut tx, session_id).await?,
        ("others", Some(session_id)) => {
            auth::delete_sessions(&mut tx, caller.id, Some(session_id)).await?;
        }
        ("local" | "others", None) => {}
        (other, _) => {
            return Err(AuthError::validation(format!(
                "unsupported logout scope {other:?}: global, local or others"
            )));
        }
    }
    audit(
        &mut tx,
        "auth.logout",
        Some(caller.id),
        json!({ "scope": scope }),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    // This instance refuses the ended sessions at once; others within their cache's TTL.
    state.auth.sessions.forget_user(caller.id);
    Ok(StatusCode::NO_CONTENT)
}
