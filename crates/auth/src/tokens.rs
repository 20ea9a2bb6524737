//! Signing and verifying access tokens.
//!
//! Verification pins the algorithms it accepts to the kind of key that verifies them: HS256
//! only with the configured secret, asymmetric algorithms only with a key from the JWKS whose
//! `kid` the token names. So `alg: none` is refused, and so is the classic key confusion (an
//! HS256 token "signed" with a public key). `exp` is always checked; `aud` must be
//! `authenticated` for user tokens; `iss` must be ours (or Supabase's, same thing) when set.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

use crate::claims::{AccessClaims, Role};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid JWT: unable to parse or verify signature, token is malformed")]
    Malformed,
    #[error("invalid JWT: unable to parse or verify signature, signing method {0} is not accepted")]
    AlgorithmNotAccepted(String),
    #[error("invalid JWT: unable to parse or verify signature, no key with id {0:?}")]
    UnknownKey(Option<String>),
    #[error("invalid JWT: unable to parse or verify signature, signature is invalid")]
    BadSignature,
    #[error("invalid JWT: unable to parse or verify signature, token has expired")]
    Expired,
    #[error("invalid JWT: unable to parse or verify signature, token is not valid yet")]
    NotYetValid,
    #[error("invalid JWT: unable to parse or verify signature, token has invalid audience")]
    WrongAudience,
    #[error("invalid JWT: unable to parse or verify signature, token has invalid issuer")]
    WrongIssuer,
    #[error("token could not be signed: {0}")]
    Signing(String),
}

/// Issues HS256 tokens with the project's secret, as GoTrue does with a legacy JWT secret.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn hs256(secret: &[u8], issuer: impl Into<String>) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.into(),
        }
    }

    /// `<site>/auth/v1`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &impl Serialize) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|err| TokenError::Signing(err.to_string()))
    }
}

/// Public keys from a JWKS document, by key id.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|(kid, alg, _)| (kid, alg)).collect();
        f.debug_struct("Jwks").field("keys", &ids).finish()
    }
}

/// The asymmetric algorithms a JWKS key may verify.
const ASYMMETRIC: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::EdDSA,
    Algorithm::ES384,
];

impl Jwks {
    /// Reads a JWKS document; symmetric (`oct`) keys and keys without a usable algorithm are
    /// skipped, since a published symmetric key would let anyone sign.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|err| format!("not a JWKS document: {err}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Some(alg) = jwk_algorithm(jwk) else {
                continue;
            };
            if !ASYMMETRIC.contains(&alg) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.push((jwk.common.key_id.clone(), alg, key));
            }
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a token another party signed with one of these keys (an OpenID Connect ID
    /// token, say): signature, `exp`, `aud` among `audiences`, `iss` among `issuers`.
    pub fn verify_external<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audiences: &[String],
        issuers: &[&str],
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAccepted(format!(
                "{:?}",
                header.alg
            )));
        }
        let key = self
            .find(header.kid.as_deref(), header.alg)
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
        let mut validation = Validation::new(header.alg);
        // No grace after `exp` (the library's default is 60 s): an ID token lives an hour.
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(audiences);
        validation.set_issuer(issuers);
        validation.required_spec_claims = ["exp", "aud", "iss"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    _ => TokenError::Malformed,
                }
            })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|(key_id, key_alg, _)| {
                *key_alg == alg && (kid.is_none() || key_id.as_deref() == kid)
            })
            .map(|(_, _, key)| key)
    }
}

fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    if let Some(alg) = jwk.common.key_algorithm {
        return match alg {
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            KeyAlgorithm::PS256 => Some(Algorithm::PS256),
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::ES384 => Some(Algorithm::ES384),
            KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
            _ => None,
        };
    }
    // Google's and some other JWKS documents omit `alg`: infer it from the key type.
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Verifies access tokens and API keys.
#[derive(Clone, Default)]
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    jwks: Jwks,
    issuer: Option<String>,
    leeway_seconds: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(secret: Option<&[u8]>, jwks: Jwks, issuer: Option<String>) -> Self {
        Self {
            secret: secret.map(DecodingKey::from_secret),
            jwks,
            issuer,
            leeway_seconds: 0,
        }
    }

    pub fn with_jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = jwks;
        self
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                TokenError::AlgorithmNotAccepted(algorithm_name(token))
            }
            _ => TokenError::Malformed,
        })?;
        let key = match header.alg {
            Algorithm::HS256 => self
                .secret
                .as_ref()
                .ok_or(TokenError::AlgorithmNotAccepted("HS256".to_owned()))?,
            alg if ASYMMETRIC.contains(&alg) => self
                .jwks
                .find(header.kid.as_deref(), alg)
                .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?,
            alg => return Err(TokenError::AlgorithmNotAccepted(format!("{alg:?}"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_seconds;
        // `nbf`, where a token has one, is honoured as GoTrue and PostgREST do.
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below: API keys carry no audience.
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, key, &validation).map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        if claims.role == Role::Authenticated {
            if !audience_contains(claims.aud.as_ref(), "authenticated") {
                return Err(TokenError::WrongAudience);
            }
            if let (Some(expected), Some(actual)) = (&self.issuer, &claims.iss)
                && expected != actual
            {
                return Err(TokenError::WrongIssuer);
            }
            if claims.sub.is_none() {
                return Err(TokenError::Malformed);
            }
        }
        Ok(claims)
    }
}

fn audience_contains(aud: Option<&serde_json::Value>, wanted: &str) -> bool {
    match aud {
        Some(serde_json::Value::String(aud)) => aud == wanted,
        Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(wanted)),
        _ => false,
    }
}

/// The `alg` a token claims, for the error message when it is one we do not know (`none`).
fn algorithm_name(token: &str) -> String {
    use base64::Engine as _;
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|header| {
            header
                .get("alg")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"super-secret-jwt-token-with-at-least-32-characters-long";
    const ISSUER: &str = "http://127.0.0.1:3000/auth/v1";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn user_claims(exp: i64) -> serde_json::Value {
        json!({
            "sub": "9f0c9a6e-6a3b-4c1e-9d55-4f1f7a0e2b11",
            "aud": "authenticated",
            "exp": exp,
            "iat": exp - 3600,
            "iss": ISSUER,
            "email": "wanjiku@example.co.ke",
            "phone": "",
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": exp - 3600}],
            "session_id": "3f1e9c1a-0b7d-4b8e-a2a4-1c2d3e4f5a6b",
            "is_anonymous": false,
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {}
        })
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(Some(SECRET), Jwks::default(), Some(ISSUER.to_owned()))
    }

    fn encode(header: serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!("{}.{}.{signature}", b64(&header), b64(claims))
    }

    #[test]
    fn a_token_we_sign_verifies_with_supabases_claims() {
        let token = TokenIssuer::hs256(SECRET, ISSUER)
            .sign(&user_claims(now() + 3600))
            .unwrap();
        let claims = verifier().verify(&token).unwrap();
        assert_eq!(claims.role, Role::Authenticated);
        assert_eq!(claims.email.as_deref(), Some("wanjiku@example.co.ke"));
        assert_eq!(claims.amr.unwrap()[0].method, "password");
    }

    #[test]
    fn expired_tampered_and_wrongly_signed_tokens_are_refused() {
        let issuer = TokenIssuer::hs256(SECRET, ISSUER);
        let expired = issuer.sign(&user_claims(now() - 10)).unwrap();
        assert_eq!(verifier().verify(&expired), Err(TokenError::Expired));

        let other = TokenIssuer::hs256(b"another-secret-that-is-also-long-enough-to-use", ISSUER)
            .sign(&user_claims(now() + 3600))
            .unwrap();
        assert_eq!(verifier().verify(&other), Err(TokenError::BadSignature));

        // Promote ourselves to service_role by editing the payload: the signature no longer fits.
        let good = issuer.sign(&user_claims(now() + 3600)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let mut claims = user_claims(now() + 3600);
        claims["role"] = json!("service_role");
        let forged = encode(json!({"alg": "HS256", "typ": "JWT"}), &claims, parts[2]);
        assert_eq!(verifier().verify(&forged), Err(TokenError::BadSignature));

        assert_eq!(verifier().verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(verifier().verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_until_its_nbf() {
        let issuer = TokenIssuer::hs256(SECRET, ISSUER);
        let mut claims = user_claims(now() + 3600);
        claims["nbf"] = json!(now() + 600);
        let early = issuer.sign(&claims).unwrap();
        assert_eq!(verifier().verify(&early), Err(TokenError::NotYetValid));
        claims["nbf"] = json!(now() - 5);
        assert!(verifier().verify(&issuer.sign(&claims).unwrap()).is_ok());
    }

    #[test]
    fn alg_none_is_refused() {
        let token = encode(
            json!({"alg": "none", "typ": "JWT"}),
            &user_claims(now() + 3600),
            "",
        );
        assert!(
            matches!(verifier().verify(&token), Err(TokenError::AlgorithmNotAccepted(alg)) if alg == "none")
        );
    }

    #[test]
    fn wrong_audience_and_wrong_issuer_are_refused() {
        let issuer = TokenIssuer::hs256(SECRET, ISSUER);
        let mut claims = user_claims(now() + 3600);
        claims["aud"] = json!("someone-else");
        assert_eq!(
            verifier().verify(&issuer.sign(&claims).unwrap()),
            Err(TokenError::WrongAudience)
        );
        let mut claims = user_claims(now() + 3600);
        claims["iss"] = json!("https://evil.example/auth/v1");
        assert_eq!(
            verifier().verify(&issuer.sign(&claims).unwrap()),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn api_keys_verify_without_an_audience() {
        let key = TokenIssuer::hs256(SECRET, ISSUER)
            .sign(&json!({"iss": "supabase", "ref": "local", "role": "anon", "iat": now(), "exp": now() + 60}))
            .unwrap();
        assert_eq!(verifier().verify(&key).unwrap().role, Role::Anon);
    }

    fn es256_key() -> (String, serde_json::Value) {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pem = secret.to_pkcs8_pem(Default::default()).unwrap().to_string();
        let point = secret.public_key().to_encoded_point(false);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "supabase-key-1",
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())
        });
        (pem, jwk)
    }

    #[test]
    fn tokens_signed_with_a_published_asymmetric_key_verify() {
        let (pem, jwk) = es256_key();
        let jwks = Jwks::from_json(&json!({"keys": [jwk]}).to_string()).unwrap();
        assert_eq!(jwks.len(), 1);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("supabase-key-1".to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &user_claims(now() + 3600),
            &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let verifier = verifier().with_jwks(jwks);
        assert_eq!(verifier.verify(&token).unwrap().role, Role::Authenticated);

        header.kid = Some("unknown-key".to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &user_claims(now() + 3600),
            &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn key_confusion_an_hs256_token_keyed_with_the_public_key_is_refused() {
        let (_, jwk) = es256_key();
        let jwks = Jwks::from_json(&json!({"keys": [jwk.clone()]}).to_string()).unwrap();
        // The attacker knows the public key and uses it as an HMAC secret.
        let public_as_secret = jwk.to_string();
        let token = TokenIssuer::hs256(public_as_secret.as_bytes(), ISSUER)
            .sign(&user_claims(now() + 3600))
            .unwrap();
        let only_jwks = TokenVerifier::new(None, jwks.clone(), None);
        assert!(matches!(
            only_jwks.verify(&token),
            Err(TokenError::AlgorithmNotAccepted(_))
        ));
        assert_eq!(
            verifier().with_jwks(jwks).verify(&token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn symmetric_keys_in_a_jwks_are_ignored() {
        let jwks =
            Jwks::from_json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#).unwrap();
        assert!(jwks.is_empty());
        assert!(Jwks::from_json("not json").is_err());
    }
}
