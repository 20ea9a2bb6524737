//! Password and PIN hashes.
//!
//! New hashes are bcrypt cost 10, GoTrue's format. Verification accepts any bcrypt variant at any
//! cost (`$2a$` from pgcrypto's `crypt(.., gen_salt('bf'))`, `$2b$` from node bcrypt, `$2y$`
//! from PHP) and imported `$argon2id$` hashes. These are slow on purpose: call them from a
//! blocking thread, never on the async workers.

use argon2::PasswordVerifier as _;

/// GoTrue's cost: about 50-80 ms a hash on a server core.
pub const BCRYPT_COST: u32 = 10;

#[derive(Debug, thiserror::Error)]
#[error("hashing failed: {0}")]
pub struct HashError(String);

pub fn hash_password(password: &str) -> Result<String, HashError> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|err| HashError(err.to_string()))
}

/// Whether `password` matches `hash`. An unknown or malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$2a$")
        || hash.starts_with("$2b$")
        || hash.starts_with("$2y$")
        || hash.starts_with("$2x$")
    {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else if hash.starts_with("$argon2") {
        argon2::PasswordHash::new(hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    } else {
        false
    }
}

/// A hash that takes as long to check as a real one, for unknown users: a login for an
/// unknown email costs the same time as one with a wrong password, so timing reveals nothing.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut password = [0u8; 16];
        rand::fill(&mut password);
        hash_password(&format!("{password:?}")).unwrap_or_default()
    });
    &DECOY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_hashes_are_bcrypt_cost_10_and_verify() {
        let hash = hash_password("tembo-na-twiga-42").unwrap();
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert!(verify_password("tembo-na-twiga-42", &hash));
        assert!(!verify_password("tembo-na-twiga-43", &hash));
    }

    #[test]
    fn accepts_every_bcrypt_variant_at_any_cost_and_argon2id() {
        // pgcrypto's crypt('password123', gen_salt('bf')): $2a$ at cost 6.
        let pgcrypto = bcrypt::hash_with_result("password123", 6)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        assert!(pgcrypto.starts_with("$2a$06$"));
        assert!(verify_password("password123", &pgcrypto));
        let y = pgcrypto.replacen("$2a$", "$2y$", 1);
        assert!(verify_password("password123", &y));

        use argon2::PasswordHasher as _;
        let salt = argon2::password_hash::SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let argon = argon2::Argon2::default()
            .hash_password(b"password123", &salt)
            .unwrap()
            .to_string();
        assert!(argon.starts_with("$argon2id$v=19$"));
        assert!(verify_password("password123", &argon));
        assert!(!verify_password("password124", &argon));
    }

    #[test]
    fn unknown_and_malformed_hashes_never_match() {
        for hash in [
            "",
            "password123",
            "$1$abc",
            "$2a$10$short",
            "$argon2id$garbage",
        ] {
            assert!(!verify_password("password123", hash), "{hash}");
        }
        assert!(!verify_password("anything", decoy_hash()));
    }
}
