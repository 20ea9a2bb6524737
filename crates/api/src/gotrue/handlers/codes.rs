//! One-time codes: made, stored as GoTrue stores them, sent through the outbox, checked.
//!
//! A code is six digits. The row keeps only `hex(SHA-224(address || code))`, as GoTrue's
//! `GenerateTokenHash` does: salting with the address means two users who happen to hold the
//! same code store different hashes (GoTrue's token columns have unique indexes), and a stolen
//! hash cannot be looked up in a table of the million possible codes without also knowing
//! whose it is. The address is the form kept in `auth.users`: a lower-case email, or a phone
//! as digits without `+`.

use serde_json::json;
use sha2::Digest as _;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Identifier;
use crate::gotrue::AuthError;

pub(crate) fn new_code() -> String {
    let n: u32 = rand::random_range(0..1_000_000);
    format!("{n:06}")
}

/// The address as `auth.users` keeps it, which is also what the hash is salted with.
pub(crate) fn stored_address(identifier: &Identifier) -> &str {
    match identifier {
        Identifier::Email(email) => email.as_str(),
        Identifier::Phone(phone) => phone.msisdn(),
    }
}

pub(crate) fn token_hash(address: &str, code: &str) -> String {
    hex::encode(sha2::Sha224::digest(format!("{address}{code}").as_bytes()))
}

/// Whether `code` for `address` is the one whose hash is `stored`, in constant time (the time a
/// wrong code takes says nothing about how wrong it is).
pub(crate) fn matches(stored: Option<&str>, address: &str, code: &str) -> bool {
    let Some(stored) = stored.filter(|s| !s.is_empty()) else {
        return false;
    };
    let expected = token_hash(address, code);
    stored.len() == expected.len()
        && stored
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a code is for, which decides the words of the message carrying it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Template {
    Confirmation,
    SignIn,
    Recovery,
    EmailChange,
    PhoneChange,
    /// The nonce of `GET /reauthenticate`, to the account's own address.
    Reauthentication,
}

/// Queues the message carrying `code` to `to`, in the caller's transaction.
pub(crate) async fn send(
    conn: &mut PgConnection,
    to: &Identifier,
    template: Template,
    code: &str,
    user_id: Uuid,
) -> Result<(), AuthError> {
    let (topic, payload) = match to {
        Identifier::Email(email) => {
            let template = match template {
                Template::Confirmation => "signup",
                Template::SignIn => "otp",
                Template::Recovery => "recovery",
                Template::EmailChange | Template::PhoneChange => "email_change",
                Template::Reauthentication => "reauthentication",
            };
            (
                "email",
                json!({ "to": email.as_str(), "template": template, "code": code, "user_id": user_id }),
            )
        }
        Identifier::Phone(phone) => {
            let purpose = match template {
                Template::PhoneChange => " to confirm this number",
                Template::Reauthentication => " to change your password",
                _ => "",
            };
            let message = format!(
                "Your PesaChama code{purpose} is {code}. It expires in 1 hour. Never share it."
            );
            (
                "sms",
                json!({ "to": phone.as_e164(), "message": message, "user_id": user_id }),
            )
        }
    };
    sqlx::query("insert into internal.outbox (topic, payload) values ($1, $2)")
        .bind(topic)
        .bind(payload)
        .execute(conn)
        .await
        .map_err(pesachama_store::StoreError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_hashes_differently_for_two_addresses() {
        assert_ne!(
            token_hash("254712345001", "123456"),
            token_hash("254712345002", "123456")
        );
    }

    #[test]
    fn a_code_matches_only_its_own_address() {
        let stored = token_hash("a@example.com", "042042");
        assert!(matches(Some(&stored), "a@example.com", "042042"));
        assert!(!matches(Some(&stored), "b@example.com", "042042"));
        assert!(!matches(Some(&stored), "a@example.com", "042043"));
        assert!(!matches(Some(""), "a@example.com", "042042"));
        assert!(!matches(None, "a@example.com", "042042"));
    }

    #[test]
    fn the_hash_is_gotrue_s_sha224_of_address_and_code() {
        // SHA-224("254712345001123456"), computed independently with Python's hashlib.
        assert_eq!(
            token_hash("254712345001", "123456"),
            "9260026b36879fcece211a105764d8e4274439d0638e536cc2f2fadb"
        );
    }
}
