//! Password rules and USSD PINs. Neither is ever printed: their `Debug` hides them.

use std::fmt;

/// GoTrue-style password rules: a minimum length and a short list of the commonest passwords.
#[derive(Debug, Clone)]
pub struct PasswordRules {
    pub min_length: usize,
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self { min_length: 8 }
    }
}

/// The passwords every cracking list starts with, plus local favourites.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty123",
    "qwertyuiop",
    "11111111",
    "00000000",
    "iloveyou",
    "abc12345",
    "letmein1",
    "welcome1",
    "passw0rd",
    "admin123",
    "football",
    "sunshine",
    "princess",
    "mpesa123",
    "chama123",
    "kenya123",
    "nairobi1",
    "safaricom",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("Password should be at least {0} characters.")]
    TooShort(usize),
    #[error("Password is too common; choose a less guessable one.")]
    TooCommon,
}

impl PasswordRules {
    /// Checks a new password. `password123` is refused here even though the founding plan's
    /// test users have it: existing hashes still log in, new ones cannot choose it.
    pub fn check(&self, password: &str) -> Result<(), WeakPassword> {
        if password.chars().count() < self.min_length {
            return Err(WeakPassword::TooShort(self.min_length));
        }
        if COMMON.contains(&password.to_lowercase().as_str()) {
            return Err(WeakPassword::TooCommon);
        }
        Ok(())
    }
}

/// A 4-digit USSD PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a PIN is exactly 4 digits")]
pub struct InvalidPin;

impl Pin {
    pub fn parse(input: &str) -> Result<Self, InvalidPin> {
        if input.len() == 4 && input.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(input.to_owned()))
        } else {
            Err(InvalidPin)
        }
    }

    /// The digits, for hashing and verifying only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_common_passwords_are_weak() {
        let rules = PasswordRules::default();
        assert_eq!(rules.check("short"), Err(WeakPassword::TooShort(8)));
        assert_eq!(rules.check("Password123"), Err(WeakPassword::TooCommon));
        assert_eq!(rules.check("tembo-na-twiga-42"), Ok(()));
    }

    #[test]
    fn pins_are_four_digits_and_never_printed() {
        assert!(Pin::parse("0420").is_ok());
        for bad in ["042", "04200", "04a0", "", "٠١٢٣"] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Pin::parse("0420").unwrap()), "Pin(****)");
    }
}
