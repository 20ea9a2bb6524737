//! Sign-up: `POST /auth/v1/signup` (GoTrue) and `POST /auth/register` (the app's own).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pesachama_domain::PasswordRules;
use pesachama_store::StoreError;
use pesachama_store::auth::{self, CodePurpose, NewUser};
use serde::Deserialize;
use serde_json::{Value, json};

use super::codes::{self, Template};
use super::{Identifier, audit, blocking, ensure_profile, json_body};
use crate::gotrue::{AuthError, ClientIp, UserJson, ratelimit, session};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
struct SignupBody {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Value>,
}

pub async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthError> {
    let body: SignupBody = json_body(&body)?;
    // No email and no phone is supabase-js's `signInAnonymously()`: not offered, as GoTrue
    // answers when anonymous sign-ins are off.
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    if blank(&body.email) && blank(&body.phone) {
        return Err(AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "anonymous_provider_disabled",
            "Anonymous sign-ins are disabled",
        ));
    }
    let data = body.data.unwrap_or_else(|| json!({}));
    sign_up(
        &state,
        ip,
        &headers,
        body.email.as_deref(),
        body.phone.as_deref(),
        body.password.as_deref(),
        data,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    language: Option<String>,
}

/// `POST /auth/register`: sign-up with the profile's fields at the top level; the same token
/// response, errors in the API's own format.
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RegisterBody = json_body(&body)?;
    if let Some(language) = &body.language
        && language != "en"
        && language != "sw"
    {
        return Err(ApiError::Validation {
            message: "language must be \"en\" or \"sw\"".to_owned(),
            details: Some(json!({ "field": "language" })),
        });
    }
    let data = json!({ "first_name": body.first_name, "last_name": body.last_name, "language": body.language });
    Ok(sign_up(
        &state,
        ip,
        &headers,
        body.email.as_deref(),
        body.phone.as_deref(),
        body.password.as_deref(),
        data,
    )
    .await?)
}

async fn sign_up(
    state: &AppState,
    ip: ClientIp,
    headers: &HeaderMap,
    email: Option<&str>,
    phone: Option<&str>,
    password: Option<&str>,
    data: Value,
) -> Result<Response, AuthError> {
    let settings = &state.auth.settings;
    let identifier = Identifier::from_fields(email, phone)?;
    let limits = settings.rate_limits;
    ratelimit::hit_both(
        &state.pool,
        "signup",
        ip.text().as_deref(),
        Some(&identifier.key()),
        limits.signup,
        limits.window_seconds,
    )
    .await?;
    if settings.disable_signup {
        return Err(AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signup_disabled",
            "Signups not allowed for this instance",
        ));
    }
    let password = password.filter(|p| !p.is_empty()).ok_or_else(|| {
        AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Signup requires a valid password",
        )
    })?;
    PasswordRules::default()
        .check(password)
        .map_err(|weak| AuthError::weak_password(&weak))?;
    if !data.is_object() {
        return Err(AuthError::validation("data must be a JSON object"));
    }

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let existing = identifier.find(&mut tx).await?;
    let owned = password.to_owned();
    let hash = blocking(move || pesachama_auth::hashing::hash_password(&owned))
        .await?
        .map_err(|err| {
            tracing::error!(error = %err, "hashing failed");
            AuthError::internal()
        })?;
    if let Some(existing) = existing {
        // An account whose address nobody ever confirmed proves nothing: as GoTrue does, a new
        // sign-up takes it over and gets a new code, so signing up with somebody else's number
        // neither blocks them nor gives the number to the one who typed it.
        if settings.autoconfirm {
            return Err(already_exists(&identifier));
        }
        if existing.confirmed_at.is_some() {
            // Where sign-ups must be confirmed, GoTrue does not say "already registered": it
            // answers as for a new sign-up, with a made-up user whose identities are empty, and
            // sends nothing. The real owner's account is untouched.
            audit(
                &mut tx,
                "auth.signup_repeated",
                Some(existing.id),
                json!({ "identifier": identifier.masked(), "confirmed": true }),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(Json(stand_in(&identifier, data)).into_response());
        }
        auth::replace_unconfirmed(&mut tx, existing.id, &hash, &data).await?;
        send_confirmation(&mut tx, &identifier, existing.id).await?;
        audit(
            &mut tx,
            "auth.signup_repeated",
            Some(existing.id),
            json!({ "identifier": identifier.masked() }),
        )
        .await?;
        let user = auth::find_user_by_id(&mut *tx, existing.id)
            .await?
            .ok_or_else(AuthError::internal)?;
        let identities = auth::identities(&mut *tx, user.id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        return Ok(Json(UserJson::new(&user, &identities)).into_response());
    }
    let (email, phone, provider) = match &identifier {
        Identifier::Email(email) => (Some(email.as_str()), None, "email"),
        Identifier::Phone(phone) => (None, Some(phone.msisdn()), "phone"),
    };
    let user = auth::insert_user(
        &mut tx,
        &NewUser {
            email,
            phone,
            password_hash: Some(&hash),
            user_metadata: &data,
            provider,
            confirmed: settings.autoconfirm,
        },
    )
    .await
    .map_err(|err| match err {
        // Someone signed up with the same address between our check and our insert.
        StoreError::Conflict { .. } => already_exists(&identifier),
        other => other.into(),
    })?;
    let identity_data = json!({
        "sub": user.id.to_string(),
        "email": email,
        "phone": phone,
        "email_verified": false,
        "phone_verified": false,
    });
    auth::insert_identity(
        &mut tx,
        user.id,
        provider,
        &user.id.to_string(),
        &identity_data,
    )
    .await?;
    ensure_profile(&mut tx, &user).await?;
    audit(
        &mut tx,
        "auth.signup",
        Some(user.id),
        json!({ "provider": provider, "identifier": identifier.masked() }),
    )
    .await?;

    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    if !settings.autoconfirm {
        send_confirmation(&mut tx, &identifier, user.id).await?;
    }
    let answer = if settings.autoconfirm {
        let tokens = session::start(
            &mut tx,
            &state.auth,
            &user,
            "password",
            user_agent,
            ip.text().as_deref(),
        )
        .await?;
        Json(tokens).into_response()
    } else {
        let identities = auth::identities(&mut *tx, user.id).await?;
        Json(UserJson::new(&user, &identities)).into_response()
    };
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(user_id = %user.id, provider, "signed up");
    Ok(answer)
}

/// The code that confirms a sign-up, to the address signed up with.
async fn send_confirmation(
    tx: &mut sqlx::PgConnection,
    identifier: &Identifier,
    user_id: uuid::Uuid,
) -> Result<(), AuthError> {
    let code = codes::new_code();
    let hash = codes::token_hash(codes::stored_address(identifier), &code);
    auth::store_code(tx, user_id, CodePurpose::Confirmation, &hash).await?;
    codes::send(tx, identifier, Template::Confirmation, &code, user_id).await
}

/// What GoTrue answers a sign-up on an address already confirmed by its owner, when sign-ups
/// must be confirmed: a user that does not exist (a fresh id, no identities, nothing confirmed)
/// carrying back only what the caller sent.
fn stand_in(identifier: &Identifier, user_metadata: Value) -> UserJson {
    let now = chrono::Utc::now();
    let (email, phone, provider) = match identifier {
        Identifier::Email(email) => (email.as_str().to_owned(), String::new(), "email"),
        Identifier::Phone(phone) => (String::new(), phone.msisdn().to_owned(), "phone"),
    };
    UserJson {
        id: uuid::Uuid::new_v4(),
        aud: "authenticated".to_owned(),
        role: String::new(),
        email,
        email_confirmed_at: None,
        phone,
        phone_confirmed_at: None,
        confirmed_at: None,
        last_sign_in_at: None,
        app_metadata: json!({ "provider": provider, "providers": [provider] }),
        user_metadata,
        identities: Vec::new(),
        created_at: Some(now),
        updated_at: Some(now),
        is_anonymous: false,
        new_email: None,
        new_phone: None,
    }
}

fn already_exists(identifier: &Identifier) -> AuthError {
    match identifier {
        Identifier::Email(_) => AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_already_exists",
            "User already registered",
        ),
        Identifier::Phone(_) => AuthError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "phone_exists",
            "Phone number already registered by another user",
        ),
    }
}
