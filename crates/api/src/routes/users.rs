//! Profiles: `GET /users/{id}` and `PATCH /users/me`.
//!
//! Both run inside a transaction with the caller's role and claims set, so RLS decides what is
//! visible: a user sees their own profile and those of people they share an active chama with.
//! The queries below deliberately filter by nothing but the id asked for; RLS does the rest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{invalid, signed_in};
use crate::gotrue::{AuthError, Caller};
use crate::{ApiError, AppState};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: Option<String>,
    /// E.164, `+2547XXXXXXXX`.
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `en` or `sw`.
    pub language: String,
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PROFILE_COLUMNS: &str =
    "id, email, phone, first_name, last_name, language, avatar_url, created_at, updated_at";

/// A profile the caller may see; 404 for any other, so ids cannot be probed.
#[utoipa::path(
    get, path = "/users/{id}", tag = "users",
    params(("id" = Uuid, Path, description = "the user's id")),
    responses((status = 200, body = Profile), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    Path(id): Path<Uuid>,
) -> Result<Json<Profile>, ApiError> {
    let caller = caller?;
    signed_in(&caller)?;
    let mut tx = super::caller_tx(&state, &caller).await?;
    let sql =
        format!("select {PROFILE_COLUMNS} from public.users where id = $1 and deleted_at is null");
    let profile: Option<Profile> = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    profile.map(Json).ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `en` or `sw`.
    pub language: Option<String>,
    pub avatar_url: Option<String>,
    /// The national ID or passport number: 5 to 20 digits or capital letters.
    pub id_number: Option<String>,
    /// Not accepted here (a 422): the profile's phone is the verified phone of the sign-in,
    /// changed through `PUT /auth/v1/user`, which confirms the new number with a code.
    pub phone: Option<String>,
}

/// Updates the caller's own profile.
#[utoipa::path(
    patch, path = "/users/me", tag = "users", request_body = ProfileUpdate,
    responses((status = 200, body = Profile), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_me(
    State(state): State<AppState>,
    caller: Result<Caller, AuthError>,
    body: Bytes,
) -> Result<Json<Profile>, ApiError> {
    let caller = caller?;
    let me = signed_in(&caller)?;
    let update: ProfileUpdate = super::json_body(&body)?;
    if let Some(language) = &update.language
        && language != "en"
        && language != "sw"
    {
        return Err(invalid("language", "language must be \"en\" or \"sw\""));
    }
    for (field, value) in [
        ("first_name", &update.first_name),
        ("last_name", &update.last_name),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.trim().is_empty() || v.chars().count() > 100)
        {
            return Err(invalid(
                field,
                format!("{field} must be 1 to 100 characters"),
            ));
        }
        super::visible_name(field, value.as_deref().map(str::trim))?;
    }
    let id_number = update
        .id_number
        .as_deref()
        .map(|id| id.trim().to_ascii_uppercase());
    if id_number.as_deref().is_some_and(|id| {
        !(5..=20).contains(&id.len())
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    }) {
        return Err(invalid(
            "id_number",
            "id_number must be 5 to 20 digits or letters",
        ));
    }
    if update.phone.is_some() {
        return Err(invalid(
            "phone",
            "a phone number is changed through PUT /auth/v1/user, which verifies it with a code",
        ));
    }

    let mut tx = super::caller_tx(&state, &caller).await?;
    let sql = format!(
        "update public.users set
            first_name = coalesce($2, first_name),
            last_name = coalesce($3, last_name),
            language = coalesce($4, language),
            avatar_url = coalesce($5, avatar_url),
            id_number = coalesce($6, id_number)
         where id = $1
         returning {PROFILE_COLUMNS}"
    );
    let profile: Option<Profile> = sqlx::query_as(&sql)
        .bind(me)
        .bind(update.first_name.as_deref().map(str::trim))
        .bind(update.last_name.as_deref().map(str::trim))
        .bind(&update.language)
        .bind(&update.avatar_url)
        .bind(&id_number)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    profile.map(Json).ok_or(ApiError::NotFound)
}
