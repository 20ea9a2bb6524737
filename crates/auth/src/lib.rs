//! Tokens and credentials the way Supabase Auth (GoTrue) makes them, so tokens flow both ways:
//! a token Supabase issued is accepted here, and one issued here is accepted by Supabase.

pub mod agora;
pub mod claims;
pub mod hashing;
pub mod tokens;

pub use claims::{AccessClaims, AmrEntry, Role};
pub use tokens::{Jwks, TokenError, TokenIssuer, TokenVerifier};

/// A random, URL-safe opaque token (refresh tokens, recovery tokens).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine as _;
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
