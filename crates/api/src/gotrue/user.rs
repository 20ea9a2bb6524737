//! GoTrue's `User` object.

use chrono::{DateTime, Utc};
use pesachama_store::auth::{AuthUser, Identity};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct UserJson {
    pub id: Uuid,
    pub aud: String,
    pub role: String,
    pub email: String,
    pub email_confirmed_at: Option<DateTime<Utc>>,
    pub phone: String,
    pub phone_confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub app_metadata: Value,
    pub user_metadata: Value,
    pub identities: Vec<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub is_anonymous: bool,
    /// An email address asked for and waiting for its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_email: Option<String>,
    /// A phone asked for and waiting for its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_phone: Option<String>,
}

impl UserJson {
    pub fn new(user: &AuthUser, identities: &[Identity]) -> Self {
        Self {
            id: user.id,
            aud: user
                .aud
                .clone()
                .unwrap_or_else(|| "authenticated".to_owned()),
            role: user
                .role
                .clone()
                .unwrap_or_else(|| "authenticated".to_owned()),
            email: user.email.clone().unwrap_or_default(),
            email_confirmed_at: user.email_confirmed_at,
            phone: user.phone.clone().unwrap_or_default(),
            phone_confirmed_at: user.phone_confirmed_at,
            confirmed_at: user.confirmed_at,
            last_sign_in_at: user.last_sign_in_at,
            app_metadata: user.raw_app_meta_data.clone().unwrap_or_else(|| json!({})),
            user_metadata: user.raw_user_meta_data.clone().unwrap_or_else(|| json!({})),
            identities: identities.iter().map(identity_json).collect(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            is_anonymous: user.is_anonymous,
            new_email: user.email_change.clone(),
            new_phone: user.phone_change.clone(),
        }
    }
}

fn identity_json(identity: &Identity) -> Value {
    json!({
        "identity_id": identity.id,
        "id": identity.provider_id,
        "user_id": identity.user_id,
        "identity_data": identity.identity_data,
        "provider": identity.provider,
        "last_sign_in_at": identity.last_sign_in_at,
        "created_at": identity.created_at,
        "updated_at": identity.updated_at,
        "email": identity.identity_data.as_ref().and_then(|d| d.get("email")).cloned(),
    })
}
