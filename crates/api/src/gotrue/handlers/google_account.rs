//! The account a verified Google identity signs in to, for every way Google sign-in arrives
//! (`grant_type=id_token`, the browser OAuth flow): the user holding the Google identity, or
//! the user with the same email when Google says the email is verified (the identity is linked
//! to them, and an address nobody had confirmed is confirmed, its password dropped), or a new
//! user. An unverified Google email never reaches an existing account: its
//! holder gets a new user without the email.

use axum::http::StatusCode;
use pesachama_store::StoreError;
use pesachama_store::auth::{self, AuthUser, NewUser};
use serde_json::json;
use sqlx::PgConnection;

use crate::gotrue::AuthError;
use crate::gotrue::google::GoogleIdentity;
use crate::gotrue::settings::AuthSettings;

pub(crate) async fn find_or_create(
    tx: &mut PgConnection,
    settings: &AuthSettings,
    google: &GoogleIdentity,
) -> Result<AuthUser, AuthError> {
    let identity_data = json!({
        "sub": google.sub, "email": google.email, "email_verified": google.email_verified,
        "name": google.name, "picture": google.picture, "iss": "https://accounts.google.com",
    });
    let user = match auth::find_identity(&mut *tx, "google", &google.sub).await? {
        Some(identity) => auth::find_user_by_id(&mut *tx, identity.user_id).await?,
        None => {
            let verified_email = google.email.as_deref().filter(|_| google.email_verified);
            let existing = match verified_email {
                Some(email) => auth::find_user_by_email(&mut *tx, email).await?,
                None => None,
            };
            let user = match existing {
                // Google has just proved the address, which the account's own sign-up never
                // did: as GoTrue does, the address is confirmed and the password that whoever
                // signed up set on it is dropped, with its sessions, so a squatter who signed
                // up first with someone's email keeps nothing once its owner arrives.
                Some(user) if user.email_confirmed_at.is_none() => {
                    auth::confirm_email_dropping_password(&mut *tx, user.id).await?;
                    user
                }
                Some(user) => user,
                None => {
                    if settings.disable_signup {
                        return Err(AuthError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "signup_disabled",
                            "Signups not allowed for this instance",
                        ));
                    }
                    let metadata = json!({ "full_name": google.name, "avatar_url": google.picture, "email": google.email });
                    auth::insert_user(
                        &mut *tx,
                        &NewUser {
                            email: verified_email,
                            phone: None,
                            password_hash: None,
                            user_metadata: &metadata,
                            provider: "google",
                            confirmed: verified_email.is_some(),
                        },
                    )
                    .await?
                }
            };
            auth::insert_identity(&mut *tx, user.id, "google", &google.sub, &identity_data).await?;
            sqlx::query(
                "update auth.users set raw_app_meta_data = jsonb_set(coalesce(raw_app_meta_data, '{}'),
                    '{providers}', (select coalesce(jsonb_agg(distinct provider), '[]') from auth.identities where user_id = $1))
                 where id = $1",
            )
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            auth::find_user_by_id(&mut *tx, user.id).await?
        }
    };
    user.ok_or_else(AuthError::invalid_credentials)
}
