//! `GET`/`PUT /auth/v1/user` and `POST /auth/v1/logout`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use pesachama_domain::{Email, PasswordRules, Phone};
use pesachama_store::StoreError;
use pesachama_store::auth;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::{audit, blocking, json_body};
use crate::AppState;
use crate::gotrue::caller::SignedIn;
use crate::gotrue::{AuthError, UserJson};

/// A token whose session was ended (logout, reuse detection) is no longer honoured here, even
/// before it expires: the client must drop it.
async fn require_live_session(conn: &mut PgConnection, caller: &SignedIn) -> Result<(), AuthError> {
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
    data: Option<Value>,
}

pub async fn put_user(
    State(state): State<AppState>,
    caller: SignedIn,
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
            PasswordRules::default().check(&password).map_err(|weak| {
                AuthError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "weak_password",
                    weak.to_string(),
                )
            })?;
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
    if let Some(hash) = &hash {
        auth::update_password(&mut tx, caller.id, hash).await?;
        audit(&mut tx, "auth.password_changed", Some(caller.id), json!({})).await?;
    }
    if let Some(data) = &update.data {
        auth::update_user_metadata(&mut tx, caller.id, data).await?;
    }
    if let Some(email) = &email {
        change_contact(&mut tx, caller.id, "email", email.as_str(), "email_exists").await?;
        sqlx::query("update public.users set email = $2 where id = $1")
            .bind(caller.id)
            .bind(email.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
    }
    if let Some(phone) = &phone {
        change_contact(&mut tx, caller.id, "phone", phone.msisdn(), "phone_exists").await?;
        sqlx::query("update public.users set phone = $2 where id = $1")
            .bind(caller.id)
            .bind(phone.as_e164())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
    }
    let user = user_json(&mut tx, &caller).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(user))
}

/// Changes the email or phone of an account, refusing one another account already has.
async fn change_contact(
    tx: &mut PgConnection,
    user_id: uuid::Uuid,
    column: &str,
    value: &str,
    taken_code: &'static str,
) -> Result<(), AuthError> {
    let sql = format!(
        "update auth.users set {column} = $2, {column}_confirmed_at = now(), updated_at = now() where id = $1 \
         and not exists (select from auth.users other where other.id <> $1 and lower(other.{column}) = lower($2) and other.deleted_at is null)"
    );
    let changed = sqlx::query(&sql)
        .bind(user_id)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(|err| match StoreError::from(err) {
            StoreError::Conflict { .. } => AuthError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                taken_code,
                "already registered by another user",
            ),
            other => other.into(),
        })?;
    if changed.rows_affected() == 0 {
        return Err(AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            taken_code,
            "already registered by another user",
        ));
    }
    audit(
        tx,
        &format!("auth.{column}_changed"),
        Some(user_id),
        json!({}),
    )
    .await
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
    Ok(StatusCode::NO_CONTENT)
}
