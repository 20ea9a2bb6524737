//! The access-token claims, field for field as Supabase issues them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The database roles a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Anon,
    Authenticated,
    ServiceRole,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anon => "anon",
            Self::Authenticated => "authenticated",
            Self::ServiceRole => "service_role",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmrEntry {
    pub method: String,
    pub timestamp: i64,
}

/// A user's access token. API keys (anon, service_role) carry only `role`, `iss`, `iat`, `exp`,
/// so everything but those is optional when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<AmrEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(default)]
    pub is_anonymous: bool,
    #[serde(default = "empty_object")]
    pub app_metadata: Value,
    #[serde(default = "empty_object")]
    pub user_metadata: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl AccessClaims {
    /// The claims as PostgreSQL's `request.jwt.claims` setting carries them.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| empty_object())
    }

    /// Whether the token names a platform administrator. Read from `app_metadata`, which only
    /// the service role can write; never from `user_metadata`, which users edit themselves.
    pub fn is_platform_admin(&self) -> bool {
        self.app_metadata
            .get("platform_role")
            .and_then(Value::as_str)
            == Some("admin")
    }
}
