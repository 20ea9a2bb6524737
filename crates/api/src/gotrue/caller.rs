//! Who is calling, from `Authorization: Bearer <token>`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pesachama_auth::{AccessClaims, Role};
use pesachama_store::rls::DbRole;
use serde_json::Value;
use uuid::Uuid;

use super::AuthError;
use crate::AppState;

/// A verified caller. Anonymous when there is no bearer token.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User { id: Uuid, claims: AccessClaims },
    Service { claims: AccessClaims },
}

impl Caller {
    /// The database role and claims RLS sees for this caller.
    pub fn db_context(&self) -> (DbRole, Value) {
        match self {
            Self::Anonymous => (DbRole::Anon, serde_json::json!({ "role": "anon" })),
            Self::User { claims, .. } => (DbRole::Authenticated, claims.to_json()),
            Self::Service { claims } => (DbRole::ServiceRole, claims.to_json()),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::User { id, .. } => Some(*id),
            _ => None,
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            return Ok(Self::Anonymous);
        };
        let claims = state
            .auth
            .verifier
            .verify(token)
            .map_err(|err| AuthError::bad_jwt(err.to_string()))?;
        match claims.role {
            Role::Anon => Ok(Self::Anonymous),
            Role::ServiceRole => Ok(Self::Service { claims }),
            Role::Authenticated => {
                let id = claims
                    .sub
                    .ok_or_else(|| AuthError::bad_jwt("invalid claim: missing sub claim"))?;
                let claims = live_claims(state, id, claims).await?;
                Ok(Self::User { id, claims })
            }
        }
    }
}

/// The claims of a user token whose session and user are still live (at most
/// `session_check_ttl` stale), with the platform role as the database has it now.
///
/// A user token without `session_id` is refused: Supabase Auth and this server put one in every
/// token they issue, and a token without one could not be ended by logging out. API keys
/// (`anon`, `service_role`) have no session and never reach here.
async fn live_claims(
    state: &AppState,
    id: Uuid,
    mut claims: AccessClaims,
) -> Result<AccessClaims, AuthError> {
    let Some(session) = claims.session_id else {
        return Err(super::live::session_not_found());
    };
    let liveness = state.auth.sessions.check(&state.pool, id, session).await?;
    if let Some(refusal) = liveness.refusal() {
        return Err(refusal);
    }
    let platform_admin = matches!(
        liveness,
        super::live::Liveness::Live {
            platform_admin: true
        }
    );
    // The claims reach RLS as `request.jwt.claims`: they carry the role the database has now,
    // whatever the token said when it was signed.
    if let Value::Object(app_metadata) = &mut claims.app_metadata {
        if platform_admin {
            app_metadata.insert("platform_role".to_owned(), Value::from("admin"));
        } else {
            app_metadata.remove("platform_role");
        }
    } else if platform_admin {
        claims.app_metadata = serde_json::json!({ "platform_role": "admin" });
    }
    Ok(claims)
}

/// A signed-in user, required.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: Uuid,
    pub claims: AccessClaims,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::User { id, claims } => Ok(Self { id, claims }),
            Caller::Anonymous if bearer(parts).is_none() => Err(AuthError::no_authorization()),
            _ => Err(AuthError::bad_jwt("invalid claim: missing sub claim")),
        }
    }
}
