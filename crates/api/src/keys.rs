//! Supabase API keys: JWTs signed with the project's secret, `{iss:"supabase", ref, role, iat, exp}`.

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct ApiKeyClaims<'a> {
    iss: &'a str,
    #[serde(rename = "ref")]
    project_ref: &'a str,
    role: &'a str,
    iat: i64,
    exp: i64,
}

/// Ten years, as Supabase's own keys.
const KEY_LIFETIME_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// An API key for `role` (`anon` or `service_role`), HS256 with `secret`.
pub fn api_key(
    secret: &[u8],
    project_ref: &str,
    role: &str,
    issued_at: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = ApiKeyClaims {
        iss: "supabase",
        project_ref,
        role,
        iat: issued_at,
        exp: issued_at + KEY_LIFETIME_SECONDS,
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// Fetches the public keys of a JWKS URL (a Supabase project's
/// `<project>/auth/v1/.well-known/jwks.json`), so access tokens signed with them verify.
/// Symmetric keys in the set are ignored: the HS256 secret is configured, never downloaded.
pub async fn fetch_jwks(url: &str) -> Result<pesachama_auth::Jwks, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|err| err.to_string())?;
    let body = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|err| format!("cannot fetch {url}: {err}"))?
        .text()
        .await
        .map_err(|err| format!("cannot read {url}: {err}"))?;
    pesachama_auth::Jwks::from_json(&body).map_err(|err| format!("{url} is not a JWKS: {err}"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    #[test]
    fn api_keys_carry_supabases_claims_and_verify_with_the_secret() {
        let key = api_key(
            b"super-secret-jwt-token-with-at-least-32-characters",
            "local",
            "anon",
            1_700_000_000,
        )
        .unwrap();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &key,
            &DecodingKey::from_secret(b"super-secret-jwt-token-with-at-least-32-characters"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["role"], "anon");
        assert_eq!(data.claims["iss"], "supabase");
        assert_eq!(data.claims["ref"], "local");
        assert_eq!(
            data.claims["exp"].as_i64().unwrap() - data.claims["iat"].as_i64().unwrap(),
            KEY_LIFETIME_SECONDS
        );
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &key,
                &DecodingKey::from_secret(b"another secret of enough length......"),
                &validation
            )
            .is_err()
        );
    }
}
