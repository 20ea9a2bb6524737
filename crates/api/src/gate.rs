//! The two defences of a callback that its sender does not sign (Daraja's, Africa's
//! Talking's): a secret token in the path, compared in constant time, and an allow-list of the
//! sender's addresses, read through the trusted-proxy setting ([`ClientIp`]). Both M-Pesa and
//! USSD use these; neither writes its own.

use std::net::IpAddr;

use subtle::ConstantTimeEq as _;

use crate::gotrue::ClientIp;

/// Whether `given` is the secret `expected`, without a timing difference on the content (a
/// length difference answers at once, which gives away only the length).
pub fn token_matches(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Whether a configured path token is strong and URL-safe: 32 or more letters, digits, `-`
/// or `_`; the error names `setting`.
pub fn check_token_setting(setting: &str, token: &str) -> Result<(), String> {
    let url_safe = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if token.len() < 32 || !url_safe {
        return Err(format!(
            "{setting} must be 32 or more letters, digits, '-' or '_' (it is the secret part of the callback URL)"
        ));
    }
    Ok(())
}

/// The ranges a sender's requests may come from; empty admits any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<ipnet::IpNet>);

impl AllowList {
    /// Parses a setting's entries (CIDRs or single addresses; blanks skipped); the error names
    /// `setting` and the entry that is wrong.
    pub fn parse<S: AsRef<str>>(setting: &str, entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{setting}: {s:?} is not an address or a CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn of(ranges: Vec<ipnet::IpNet>) -> Self {
        Self(ranges)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request from `client` may pass: any address when the list is empty, else only
    /// an address inside one of its ranges (an unknown address never).
    pub fn admits(&self, client: &ClientIp) -> bool {
        self.0.is_empty()
            || client
                .0
                .is_some_and(|addr| self.0.iter().any(|net| net.contains(&addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_addresses_are_read_and_checked() {
        let list = AllowList::parse("X", &["196.201.212.0/24", " 10.0.0.7 ", ""]).unwrap();
        let ip = |s: &str| ClientIp(Some(s.parse().unwrap()));
        assert!(list.admits(&ip("196.201.212.9")));
        assert!(list.admits(&ip("10.0.0.7")));
        assert!(!list.admits(&ip("10.0.0.8")));
        assert!(!list.admits(&ClientIp(None)));
        assert!(AllowList::default().admits(&ClientIp(None)));
        let err = AllowList::parse("USSD_ALLOWED_IPS", &["nonsense"]).unwrap_err();
        assert!(
            err.contains("USSD_ALLOWED_IPS") && err.contains("nonsense"),
            "{err}"
        );
    }

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
    }
}
