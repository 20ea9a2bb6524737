//! `GET/POST /admin/users`, `GET/PUT/DELETE /admin/users/{user_id}`: what supabase-js's
//! `auth.admin.listUsers`, `createUser`, `getUserById`, `updateUserById` and `deleteUser` call.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pesachama_domain::{Email, Phone};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, AuthUser, Contact};
use pesachama_store::auth_admin::{self, AdminNewUser};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::params::{AdminUserParams, check, check_free, conflict, hash, platform_role_change};
use super::{ServiceRole, audit, user_id, user_not_found};
use crate::AppState;
use crate::gotrue::handlers::json_body;
use crate::gotrue::{AuthError, UserJson};

const DEFAULT_PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 1000;

async fn user_json(conn: &mut PgConnection, user: &AuthUser) -> Result<UserJson, AuthError> {
    let identities = auth::identities(&mut *conn, user.id).await?;
    Ok(UserJson::new(user, &identities))
}

async fn load(conn: &mut PgConnection, raw_id: &str) -> Result<AuthUser, AuthError> {
    let id = user_id(raw_id)?;
    auth::find_user_by_id(&mut *conn, id)
        .await?
        .ok_or_else(user_not_found)
}

fn pagination_number(
    query: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<i64>, AuthError> {
    match query.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<u64>()
            .map(|n| Some(i64::try_from(n).unwrap_or(i64::MAX)))
            .map_err(|_| {
                AuthError::validation(format!(
                    "Bad Pagination Parameters: {key} must be a whole number, got {text:?}"
                ))
            }),
    }
}

/// `GET /admin/users?page=&per_page=`: `{users, aud}`, newest first, with GoTrue's
/// `X-Total-Count` and `Link` (`rel="next"`, `rel="last"`) headers, which supabase-js reads.
/// Soft-deleted users are not listed.
pub async fn list(
    State(state): State<AppState>,
    _admin: ServiceRole,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, AuthError> {
    let base = reqwest::Url::parse("http://localhost/")
        .and_then(|root| root.join(&uri.to_string()))
        .map_err(|_| AuthError::validation("Bad Pagination Parameters: unreadable query"))?;
    let mut query: BTreeMap<String, String> = base.query_pairs().into_owned().collect();
    let page = pagination_number(&query, "page")?.unwrap_or(1).max(1);
    let per_page = match pagination_number(&query, "per_page")? {
        None | Some(0) => DEFAULT_PER_PAGE,
        Some(n) => n.min(MAX_PER_PAGE),
    };
    let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
    let (users, total) = auth_admin::list_users(&mut conn, page, per_page).await?;
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let identities = auth_admin::identities_of(&mut *conn, &ids).await?;
    let users: Vec<UserJson> = users
        .iter()
        .map(|user| {
            let own: Vec<_> = identities
                .iter()
                .filter(|i| i.user_id == user.id)
                .cloned()
                .collect();
            UserJson::new(user, &own)
        })
        .collect();

    // GoTrue's links: the same query with `page` replaced, keys in order (Go's `Encode`).
    let last_page = (total + per_page - 1) / per_page;
    let mut link = |to: i64| {
        query.insert("page".to_owned(), to.to_string());
        let mut url = base.clone();
        url.query_pairs_mut().clear().extend_pairs(query.iter());
        format!("<{}?{}>", url.path(), url.query().unwrap_or_default())
    };
    let mut header = String::new();
    if last_page > page {
        header.push_str(&format!("{}; rel=\"next\", ", link(page + 1)));
    }
    header.push_str(&format!("{}; rel=\"last\"", link(last_page)));

    let mut response = Json(json!({ "users": users, "aud": "authenticated" })).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&header) {
        headers.insert(axum::http::header::LINK, value);
    }
    headers.insert("x-total-count", HeaderValue::from(total));
    Ok(response)
}

/// `GET /admin/users/{user_id}`.
pub async fn get(
    State(state): State<AppState>,
    _admin: ServiceRole,
    Path(raw_id): Path<String>,
) -> Result<Json<UserJson>, AuthError> {
    let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
    let user = load(&mut conn, &raw_id).await?;
    Ok(Json(user_json(&mut conn, &user).await?))
}

/// `POST /admin/users`: a user made by the service role. Without `email_confirm` /
/// `phone_confirm` the address is not confirmed (the user confirms it as any other); with it,
/// it is, on the service role's word. Without a password the account gets a random one, as
/// GoTrue does.
pub async fn create(
    State(state): State<AppState>,
    _admin: ServiceRole,
    body: Bytes,
) -> Result<Json<UserJson>, AuthError> {
    let params: AdminUserParams = json_body(&body)?;
    let custom_id = params.id.clone().filter(|s| !s.is_empty());
    let email_confirm = params.email_confirm;
    let phone_confirm = params.phone_confirm;
    let checked = check(params)?;
    if checked.email.is_none() && checked.phone.is_none() {
        return Err(AuthError::validation(
            "Cannot create a user without either an email or phone",
        ));
    }
    let id = match custom_id {
        None => Uuid::new_v4(),
        Some(text) => match Uuid::parse_str(&text) {
            Ok(id) if id.is_nil() => return Err(AuthError::validation("ID cannot be a nil uuid")),
            Ok(id) => id,
            Err(_) => {
                return Err(AuthError::validation(
                    "ID must conform to the uuid v4 format",
                ));
            }
        },
    };
    {
        let mut conn = state.pool.acquire().await.map_err(StoreError::from)?;
        check_free(
            &mut conn,
            id,
            checked.email.as_ref(),
            checked.phone.as_ref(),
        )
        .await?;
    }
    let password_hash = match (&checked.password_hash, &checked.password) {
        (Some(hash), _) => hash.clone(),
        (None, Some(password)) if !password.is_empty() => hash(password.clone()).await?,
        _ => hash(pesachama_auth::random_token(48)).await?,
    };
    let mut providers = Vec::new();
    if checked.email.is_some() {
        providers.push("email");
    }
    if checked.phone.is_some() {
        providers.push("phone");
    }
    let app_metadata = json!({ "provider": providers[0], "providers": providers });
    let empty = json!({});

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    auth_admin::insert_user(
        &mut tx,
        &AdminNewUser {
            id,
            email: checked.email.as_ref().map(Email::as_str),
            phone: checked.phone.as_ref().map(Phone::msisdn),
            password_hash: &password_hash,
            user_metadata: checked.user_metadata.as_ref().unwrap_or(&empty),
            app_metadata: &app_metadata,
        },
    )
    .await
    .map_err(conflict)?;
    if let Some(email) = &checked.email {
        auth_admin::upsert_contact_identity(&mut tx, id, Contact::Email, email.as_str(), false)
            .await?;
    }
    if let Some(phone) = &checked.phone {
        auth_admin::upsert_contact_identity(&mut tx, id, Contact::Phone, phone.msisdn(), false)
            .await?;
    }
    if let Some(patch) = &checked.app_metadata {
        auth_admin::merge_metadata(&mut tx, id, true, patch).await?;
    }
    if email_confirm {
        auth_admin::confirm_contact(&mut tx, id, Contact::Email).await?;
    }
    if phone_confirm {
        auth_admin::confirm_contact(&mut tx, id, Contact::Phone).await?;
    }
    if let Some(seconds) = checked.ban_seconds {
        auth_admin::set_banned(&mut tx, id, seconds).await?;
    }
    auth_admin::sync_profile_contacts(&mut tx, id).await?;
    audit(
        &mut tx,
        "admin.user_created",
        id,
        json!({
            "providers": providers,
            "email_confirmed": email_confirm && checked.email.is_some(),
            "phone_confirmed": phone_confirm && checked.phone.is_some(),
        }),
    )
    .await?;
    if platform_role_change(checked.app_metadata.as_ref()) == Some(true) {
        audit(&mut tx, "admin.granted", id, json!({})).await?;
    }
    let user = auth::find_user_by_id(&mut *tx, id)
        .await?
        .ok_or_else(AuthError::internal)?;
    let answer = user_json(&mut tx, &user).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Json(answer))
}

/// `PUT /admin/users/{user_id}`. A new email or phone is the account's at once, confirmed only
/// with `email_confirm` / `phone_confirm` (otherwise it is unconfirmed, whatever the old one
/// was). A new password ends every session, as GoTrue's does; a ban (`ban_duration`, a Go
/// duration or `"none"`) refuses the user's tokens at their next request.
pub async fn update(
    State(state): State<AppState>,
    _admin: ServiceRole,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<UserJson>, AuthError> {
    let id = user_id(&raw_id)?;
    let params: AdminUserParams = json_body(&body)?;
    if params
        .id
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != id.to_string())
    {
        return Err(AuthError::validation("id cannot be changed"));
    }
    let email_confirm = params.email_confirm;
    let phone_confirm = params.phone_confirm;
    let checked = check(params)?;
    let new_hash = match (&checked.password_hash, &checked.password) {
        (Some(hash), _) => Some(hash.clone()),
        (None, Some(password)) if !password.is_empty() => Some(hash(password.clone()).await?),
        _ => None,
    };

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let user = load(&mut tx, &raw_id).await?;
    check_free(&mut tx, id, checked.email.as_ref(), checked.phone.as_ref()).await?;
    let mut changed: Vec<&str> = Vec::new();
    if let Some(email) = &checked.email {
        let same = user
            .email
            .as_deref()
            .is_some_and(|current| current.eq_ignore_ascii_case(email.as_str()));
        if !same {
            auth_admin::set_contact(&mut tx, id, Contact::Email, email.as_str(), email_confirm)
                .await
                .map_err(conflict)?;
            changed.push("email");
        }
        auth_admin::upsert_contact_identity(
            &mut tx,
            id,
            Contact::Email,
            email.as_str(),
            email_confirm,
        )
        .await?;
    }
    if let Some(phone) = &checked.phone {
        let same = user
            .phone
            .as_deref()
            .is_some_and(|current| current.trim_start_matches('+') == phone.msisdn());
        if !same {
            auth_admin::set_contact(&mut tx, id, Contact::Phone, phone.msisdn(), phone_confirm)
                .await
                .map_err(conflict)?;
            changed.push("phone");
        }
        auth_admin::upsert_contact_identity(
            &mut tx,
            id,
            Contact::Phone,
            phone.msisdn(),
            phone_confirm,
        )
        .await?;
    }
    if email_confirm {
        auth_admin::confirm_contact(&mut tx, id, Contact::Email).await?;
        changed.push("email_confirm");
    }
    if phone_confirm {
        auth_admin::confirm_contact(&mut tx, id, Contact::Phone).await?;
        changed.push("phone_confirm");
    }
    if let Some(hash) = &new_hash {
        auth::update_password(&mut tx, id, hash).await?;
        auth_admin::clear_codes(&mut tx, id).await?;
        auth::delete_sessions(&mut tx, id, None).await?;
        changed.push("password");
    }
    if let Some(patch) = &checked.app_metadata {
        auth_admin::merge_metadata(&mut tx, id, true, patch).await?;
        changed.push("app_metadata");
    }
    if let Some(patch) = &checked.user_metadata {
        auth_admin::merge_metadata(&mut tx, id, false, patch).await?;
        changed.push("user_metadata");
    }
    if let Some(seconds) = checked.ban_seconds {
        auth_admin::set_banned(&mut tx, id, seconds).await?;
        changed.push(if seconds > 0 { "banned" } else { "unbanned" });
    }
    auth_admin::sync_profile_contacts(&mut tx, id).await?;
    audit(
        &mut tx,
        "admin.user_updated",
        id,
        json!({ "changed": changed }),
    )
    .await?;
    match platform_role_change(checked.app_metadata.as_ref()) {
        Some(true) => audit(&mut tx, "admin.granted", id, json!({})).await?,
        Some(false) => audit(&mut tx, "admin.revoked", id, json!({})).await?,
        None => {}
    }
    let user = auth::find_user_by_id(&mut *tx, id)
        .await?
        .ok_or_else(user_not_found)?;
    let answer = user_json(&mut tx, &user).await?;
    tx.commit().await.map_err(StoreError::from)?;
    // This instance sees a ban, a new password or a revoked admin right at once; others within
    // their cache's few seconds.
    state.auth.sessions.forget_user(id);
    Ok(Json(answer))
}

#[derive(Debug, Default, Deserialize)]
struct DeleteParams {
    #[serde(default)]
    should_soft_delete: bool,
}

fn still_referenced(constraint: &str) -> AuthError {
    AuthError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "User has chama history that must be kept (referenced through {constraint}): delete it softly instead (should_soft_delete: true)"
        ),
    )
}

/// `DELETE /admin/users/{user_id}` (`{should_soft_delete}`, default false). Refused (409
/// `conflict`, naming why) while the user is still in a chama or has a withdrawal in
/// progress: no chama loses an official or a member's share that way. A hard delete removes the
/// account and its profile, and is refused while any chama's records (memberships, ledger,
/// transactions) name the user; a soft delete keeps the account's id for that history and
/// frees its email and phone, as GoTrue's does. Either way, every session ends.
pub async fn delete(
    State(state): State<AppState>,
    _admin: ServiceRole,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AuthError> {
    let id = user_id(&raw_id)?;
    let params: DeleteParams = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteParams::default()
    } else {
        json_body(&body)?
    };
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    load(&mut tx, &raw_id).await?;
    if let Some(why) = auth_admin::delete_blocker(&mut tx, id).await? {
        return Err(AuthError::new(StatusCode::CONFLICT, "conflict", why));
    }
    let soft = params.should_soft_delete;
    audit(&mut tx, "admin.user_deleted", id, json!({ "soft": soft })).await?;
    if soft {
        auth_admin::soft_delete(&mut tx, id).await?;
    } else {
        auth_admin::hard_delete(&mut tx, id)
            .await
            .map_err(|err| match err {
                StoreError::RuleViolated { constraint } => still_referenced(&constraint),
                other => other.into(),
            })?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    state.auth.sessions.forget_user(id);
    Ok(Json(json!({})))
}
