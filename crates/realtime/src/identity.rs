//! Who a channel listens as: the role and claims RLS will see, from a verified JWT.
//!
//! supabase-js sends the anon key as `apikey` and the user's access token in the join payload
//! (and again in `access_token` events when it refreshes). Without an access token the channel
//! listens as the API key's role.

use pesachama_auth::{AccessClaims, Role, TokenError, TokenVerifier};
use serde_json::{Value, json};
use uuid::Uuid;

/// A verified identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: Role,
    /// The claims as `request.jwt.claims` carries them (`{"role":"anon"}` for an opaque key).
    pub claims: Value,
    /// Unix seconds after which the channel must close; `None` for opaque API keys.
    pub expires_at: Option<i64>,
    /// The signed-in user: `sub` of an `authenticated` token.
    user: Option<Uuid>,
}

impl Identity {
    /// Verifies `token` (an access token or a JWT API key).
    pub fn verify(verifier: &TokenVerifier, token: &str) -> Result<Self, String> {
        match verifier.verify(token) {
            Ok(claims) => Ok(Self::from_claims(&claims)),
            Err(TokenError::Expired) => Err("Token has expired".to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }

    /// The anonymous identity of an opaque publishable key (`sb_publishable_...`).
    pub fn anonymous() -> Self {
        Self {
            role: Role::Anon,
            claims: json!({ "role": "anon" }),
            expires_at: None,
            user: None,
        }
    }

    fn from_claims(claims: &AccessClaims) -> Self {
        let json = claims.to_json();
        let user = (claims.role == Role::Authenticated)
            .then(|| json.get("sub").and_then(Value::as_str))
            .flatten()
            .and_then(|sub| Uuid::parse_str(sub).ok());
        Self {
            role: claims.role,
            claims: json,
            expires_at: Some(claims.exp),
            user,
        }
    }

    pub fn bypasses_rls(&self) -> bool {
        self.role == Role::ServiceRole
    }

    /// The signed-in user (`sub` of an `authenticated` token); `None` for anon and the service
    /// role.
    pub fn user_id(&self) -> Option<Uuid> {
        self.user
    }

    /// What RLS can tell apart: two identities with the same key see the same rows, so one
    /// check serves both. The claims that change with every token (`exp`, `iat`, `session_id`,
    /// `amr`) are left out: no policy can depend on them without also depending on time.
    pub fn rls_key(&self) -> String {
        let mut claims = self.claims.clone();
        if let Value::Object(map) = &mut claims {
            for volatile in ["exp", "iat", "session_id", "amr"] {
                map.remove(volatile);
            }
        }
        format!("{}:{}", self.role.as_str(), claims)
    }

    /// `{"role", "claims"}`, as `internal.realtime_visible` takes an identity.
    pub fn to_check(&self) -> Value {
        json!({ "role": self.role.as_str(), "claims": self.claims })
    }
}

#[cfg(test)]
mod tests {
    use pesachama_auth::{Jwks, TokenIssuer};

    use super::*;

    const SECRET: &[u8] = b"a-test-secret-with-at-least-32-characters!!";

    fn token(exp_offset: i64, session: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        TokenIssuer::hs256(SECRET, "http://x/auth/v1")
            .sign(&json!({
                "sub": "7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c11", "aud": "authenticated",
                "role": "authenticated", "iat": now, "exp": now + exp_offset,
                "session_id": session, "iss": "http://x/auth/v1",
            }))
            .unwrap()
    }

    #[test]
    fn verified_tokens_give_identities_that_group_by_what_rls_sees() {
        let verifier = TokenVerifier::new(Some(SECRET), Jwks::default(), None);
        let a = Identity::verify(
            &verifier,
            &token(60, "7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c12"),
        )
        .unwrap();
        let b = Identity::verify(
            &verifier,
            &token(90, "7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c13"),
        )
        .unwrap();
        assert_eq!(a.role, Role::Authenticated);
        assert_ne!(a.expires_at, b.expires_at);
        assert_eq!(a.rls_key(), b.rls_key());
        assert_ne!(a.rls_key(), Identity::anonymous().rls_key());
        // The user the audience of a change is matched against.
        assert_eq!(
            a.user_id(),
            Some(Uuid::from_u128(0x7b0e8f3c_50c9_4a43_9d8e_2f1f6f0b9c11))
        );
        assert_eq!(Identity::anonymous().user_id(), None);
    }

    #[test]
    fn expired_and_forged_tokens_are_refused() {
        let verifier = TokenVerifier::new(Some(SECRET), Jwks::default(), None);
        assert_eq!(
            Identity::verify(
                &verifier,
                &token(-10, "7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c12")
            )
            .unwrap_err(),
            "Token has expired"
        );
        let other = TokenVerifier::new(
            Some(b"another-secret-with-at-least-32-characters!"),
            Jwks::default(),
            None,
        );
        assert!(
            Identity::verify(&other, &token(60, "7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c12"))
                .unwrap_err()
                .contains("signature")
        );
        assert!(Identity::verify(&verifier, "not-a-jwt").is_err());
    }
}
