//! `POST /admin/generate_link`: supabase-js's `auth.admin.generateLink`. Nothing is sent: the
//! service role gets the code (`email_otp`), its hash and the link, and delivers them itself.
//! The code is stored as every other code here (hashed with the address, GoTrue's
//! `GenerateTokenHash`) and is spent once by `POST /auth/v1/verify` with the same `type`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use pesachama_domain::{Email, PasswordRules};
use pesachama_store::StoreError;
use pesachama_store::auth::{self, CodePurpose, Contact, NewUser};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ServiceRole, audit, email_exists, user_not_found};
use crate::AppState;
use crate::gotrue::handlers::codes;
use crate::gotrue::handlers::link::redirect_target;
use crate::gotrue::handlers::{Identifier, blocking, json_body};
use crate::gotrue::{AuthError, UserJson};

#[derive(Debug, Deserialize)]
struct GenerateLinkParams {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    new_email: String,
    password: Option<String>,
    data: Option<Value>,
    #[serde(default)]
    redirect_to: String,
}

/// GoTrue's answer: the user, and beside its fields the link's properties.
#[derive(Debug, Serialize)]
pub struct GenerateLinkResponse {
    #[serde(flatten)]
    user: UserJson,
    action_link: String,
    email_otp: String,
    hashed_token: String,
    verification_type: String,
    redirect_to: String,
}

fn parse_email(text: &str) -> Result<Email, AuthError> {
    if text.trim().is_empty() {
        return Err(AuthError::validation("An email address is required"));
    }
    Email::parse(text.trim())
        .map_err(|_| AuthError::validation("Unable to validate email address: invalid format"))
}

pub async fn generate(
    State(state): State<AppState>,
    _admin: ServiceRole,
    body: Bytes,
) -> Result<Json<GenerateLinkResponse>, AuthError> {
    let params: GenerateLinkParams = json_body(&body)?;
    let email = parse_email(&params.email)?;
    let settings = &state.auth.settings;
    let redirect_to = redirect_target(settings, &params.redirect_to);
    if let Some(data) = &params.data
        && !data.is_object()
    {
        return Err(AuthError::validation("data must be a JSON object"));
    }
    let mut kind = params.kind.clone();
    let address = email.as_str().to_owned();

    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let existing = auth::find_user_by_email(&mut *tx, &address).await?;
    let mut password = params.password.clone().filter(|p| !p.is_empty());
    if existing.is_none() {
        match kind.as_str() {
            // A magic link for nobody is a sign-up, with a password nobody knows.
            "magiclink" => {
                kind = "signup".to_owned();
                password = Some(pesachama_auth::random_token(48));
            }
            "recovery" | "email_change_current" | "email_change_new" => {
                return Err(AuthError::new(
                    StatusCode::NOT_FOUND,
                    "user_not_found",
                    "User with this email not found",
                ));
            }
            _ => {}
        }
    }
    let code = codes::new_code();
    let hashed_token = codes::token_hash(&address, &code);
    let data = params.data.clone().unwrap_or_else(|| json!({}));

    // The link carries the hash the database keeps for the code: for a change of email, the
    // one salted with the new address (GoTrue's `GetEmailActionLink`).
    let mut link_token = hashed_token.clone();
    let user_id = match kind.as_str() {
        "magiclink" | "recovery" => {
            let user = existing.ok_or_else(user_not_found)?;
            auth::store_code(&mut tx, user.id, CodePurpose::Recovery, &hashed_token).await?;
            user.id
        }
        "signup" | "invite" => {
            let id = match existing {
                Some(user) if user.email_confirmed_at.is_some() => return Err(email_exists()),
                Some(user) => {
                    if kind == "signup" {
                        auth::update_user_metadata(&mut tx, user.id, &data).await?;
                    }
                    user.id
                }
                None => {
                    let hash = match (kind.as_str(), password) {
                        ("signup", None) => {
                            return Err(AuthError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "validation_failed",
                                "Signup requires a valid password",
                            ));
                        }
                        (_, Some(password)) => {
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
                        (_, None) => None,
                    };
                    let user = auth::insert_user(
                        &mut tx,
                        &NewUser {
                            email: Some(&address),
                            phone: None,
                            password_hash: hash.as_deref(),
                            user_metadata: &data,
                            provider: "email",
                            confirmed: false,
                        },
                    )
                    .await
                    .map_err(|err| match err {
                        StoreError::Conflict { .. } => email_exists(),
                        other => other.into(),
                    })?;
                    let identity = json!({
                        "sub": user.id.to_string(),
                        "email": address,
                        "email_verified": false,
                        "phone_verified": false,
                    });
                    auth::insert_identity(
                        &mut tx,
                        user.id,
                        "email",
                        &user.id.to_string(),
                        &identity,
                    )
                    .await?;
                    auth::ensure_profile(&mut *tx, user.id).await?;
                    user.id
                }
            };
            auth::store_code(&mut tx, id, CodePurpose::Confirmation, &hashed_token).await?;
            if kind == "invite" {
                sqlx::query("update auth.users set invited_at = now() where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            }
            id
        }
        "email_change_new" => {
            let user = existing.ok_or_else(user_not_found)?;
            let new_email = parse_email(&params.new_email)?;
            if auth::contact_taken(&mut *tx, user.id, Contact::Email, new_email.as_str()).await? {
                return Err(email_exists());
            }
            let new_hash = codes::token_hash(new_email.as_str(), &code);
            auth::request_contact_change(
                &mut tx,
                user.id,
                Contact::Email,
                new_email.as_str(),
                &new_hash,
            )
            .await?;
            link_token = new_hash;
            user.id
        }
        // Here a change of email is confirmed by the new address alone (GoTrue's "secure
        // email change" off), so there is no code for the current one.
        "email_change_current" => {
            return Err(AuthError::validation(
                "Enable secure email change to generate link for current email",
            ));
        }
        other => {
            return Err(AuthError::validation(format!(
                "Invalid email action link type requested: {other}"
            )));
        }
    };
    auth::remember_link_token(&mut tx, user_id, &link_token).await?;
    audit(
        &mut tx,
        "admin.link_generated",
        user_id,
        json!({ "type": kind, "email": Identifier::Email(email.clone()).masked() }),
    )
    .await?;
    let user = auth::find_user_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(AuthError::internal)?;
    let identities = auth::identities(&mut *tx, user_id).await?;
    tx.commit().await.map_err(StoreError::from)?;

    let action_link = reqwest::Url::parse_with_params(
        &format!("{}/verify", settings.issuer()),
        [
            ("token", link_token.as_str()),
            (
                "type",
                if kind == "email_change_new" {
                    "email_change"
                } else {
                    kind.as_str()
                },
            ),
            ("redirect_to", redirect_to.as_str()),
        ],
    )
    .map(String::from)
    .map_err(|_| AuthError::internal())?;
    Ok(Json(GenerateLinkResponse {
        user: UserJson::new(&user, &identities),
        action_link,
        email_otp: code,
        hashed_token,
        verification_type: kind,
        redirect_to,
    }))
}
