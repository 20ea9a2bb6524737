//! Email addresses, stored lowercase.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid email address")]
pub struct InvalidEmail(pub String);

impl Email {
    /// Accepts `local@domain.tld` (the shape the database's check and the founding plan's
    /// integrity test agree on) and lowercases it, so `Jane@X.com` and `jane@x.com` are one user.
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let invalid = || InvalidEmail(input.chars().take(64).collect());
        let email = input.trim().to_ascii_lowercase();
        if email.len() > 254 {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
        let (host, tld) = domain.rsplit_once('.').ok_or_else(invalid)?;
        let domain_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-'])
            && !host.contains("..")
            && tld.len() >= 2
            && tld.bytes().all(|b| b.is_ascii_alphabetic());
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_valid_addresses() {
        assert_eq!(
            Email::parse(" Jane.Wanjiku@Example.CO.KE ")
                .unwrap()
                .as_str(),
            "jane.wanjiku@example.co.ke"
        );
        assert!(Email::parse("a+tag@x.io").is_ok());
    }

    #[test]
    fn refuses_the_legacy_databases_junk() {
        for bad in [
            "jane@",
            "none",
            "n/a",
            "",
            "@x.com",
            "a@b",
            "a b@x.com",
            "a@x..com",
            "a@-x.com",
            "a@x.c0m",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
