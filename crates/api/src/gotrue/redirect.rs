//! Where a user may be sent back to after signing in: GoTrue's `SITE_URL` and
//! `URI_ALLOW_LIST` rules. A `redirect_to` that is neither on the site nor on the list is
//! ignored and the site URL used instead; an open redirect here would hand a victim's tokens (or
//! PKCE auth code) to whoever chose the address.

use url::{Host, Url};

/// Longest `redirect_to` considered; a longer one is ignored.
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone)]
pub struct RedirectRules {
    /// The app's address (GoTrue's `SITE_URL`): where users land when no `redirect_to` is
    /// given or allowed. Any path on its scheme, host and port is allowed.
    pub site_url: String,
    /// Further allowed addresses (GoTrue's `URI_ALLOW_LIST`), as globs: `*` matches within a
    /// host label or path segment (not across `.` or `/`), `**` across them, `?` one character,
    /// `[a-z]` / `[!a-z]` a class, `{a,b}` alternatives, `\` escapes.
    pub allow_list: Vec<String>,
}

impl RedirectRules {
    pub fn new(site_url: impl Into<String>) -> Self {
        Self {
            site_url: site_url.into(),
            allow_list: Vec::new(),
        }
    }

    /// Where to send the user: `redirect_to` if allowed, else the `Referer` if allowed, else
    /// the site URL (GoTrue's order).
    pub fn referrer(&self, redirect_to: Option<&str>, referer: Option<&str>) -> String {
        [redirect_to, referer]
            .into_iter()
            .flatten()
            .find(|candidate| self.allows(candidate))
            .map_or_else(|| self.site_url.clone(), str::to_owned)
    }

    /// GoTrue's `IsRedirectURLValid`, a little stricter: addresses with a user part
    /// (`https://app.example@evil.example`), a backslash, whitespace or control characters
    /// are never allowed.
    pub fn allows(&self, candidate: &str) -> bool {
        if candidate.is_empty()
            || candidate.len() > MAX_LEN
            || candidate
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        {
            return false;
        }
        let Ok(target) = Url::parse(candidate) else {
            return false;
        };
        if !target.username().is_empty() || target.password().is_some() {
            return false;
        }
        if let Ok(site) = Url::parse(&self.site_url)
            && site.scheme() == target.scheme()
            && site.host_str().is_some()
            && site.host_str() == target.host_str()
            && (site.port_or_known_default() == target.port_or_known_default()
                || is_localhost(target.host()))
        {
            return true;
        }
        match target.host() {
            // An address given as an IP is allowed only on this machine (RFC 8252's loopback
            // redirects for native apps, as GoTrue allows them).
            Some(Host::Ipv4(ip)) => return ip.is_loopback(),
            Some(Host::Ipv6(ip)) => return ip.is_loopback(),
            Some(Host::Domain(domain))
                if matches!(target.scheme(), "http" | "https") && !regular_hostname(domain) =>
            {
                return false;
            }
            _ => {}
        }
        let without_fragment = candidate.split('#').next().unwrap_or_default();
        self.allow_list
            .iter()
            .any(|pattern| Glob::parse(pattern).matches(without_fragment))
    }
}

fn is_localhost(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => false,
    }
}

/// Letters, digits, dots and hyphens, starting and ending with a letter or digit.
fn regular_hostname(host: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    host.starts_with(ok)
        && host.ends_with(ok)
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// A glob with `.` and `/` as separators (the `gobwas/glob` patterns GoTrue compiles its allow
/// list with).
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters but the separators.
    Star,
    /// `**`: any run of characters.
    SuperStar,
    /// `?`: one character but a separator.
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternatives(Vec<Vec<Token>>),
}

#[derive(Debug)]
struct Glob(Vec<Token>);

const SEPARATORS: [char; 2] = ['.', '/'];

impl Glob {
    fn parse(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut at = 0;
        Self(parse_seq(&chars, &mut at, false))
    }

    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        match_seq(&self.0, &text)
    }
}

/// Parses until the end, or (inside `{...}`) until an unescaped `,` or `}`.
fn parse_seq(chars: &[char], at: &mut usize, in_braces: bool) -> Vec<Token> {
    let mut tokens = Vec::new();
    while let Some(&c) = chars.get(*at) {
        if in_braces && (c == ',' || c == '}') {
            break;
        }
        *at += 1;
        match c {
            '\\' => {
                if let Some(&next) = chars.get(*at) {
                    *at += 1;
                    tokens.push(Token::Literal(next));
                } else {
                    tokens.push(Token::Literal('\\'));
                }
            }
            '*' if chars.get(*at) == Some(&'*') => {
                *at += 1;
                tokens.push(Token::SuperStar);
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '[' => match parse_class(chars, *at) {
                Some((token, next)) => {
                    tokens.push(token);
                    *at = next;
                }
                None => tokens.push(Token::Literal('[')),
            },
            '{' => {
                let start = *at;
                let mut alternatives = vec![parse_seq(chars, at, true)];
                while chars.get(*at) == Some(&',') {
                    *at += 1;
                    alternatives.push(parse_seq(chars, at, true));
                }
                if chars.get(*at) == Some(&'}') {
                    *at += 1;
                    tokens.push(Token::Alternatives(alternatives));
                } else {
                    // Unclosed: the brace is a literal.
                    *at = start;
                    tokens.push(Token::Literal('{'));
                }
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    tokens
}

/// `[...]` starting after the `[`: the class and the index after its `]`.
fn parse_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut at = start;
    let negated = chars.get(at) == Some(&'!');
    if negated {
        at += 1;
    }
    let mut ranges = Vec::new();
    while let Some(&c) = chars.get(at) {
        if c == ']' {
            return (!ranges.is_empty()).then_some((Token::Class { negated, ranges }, at + 1));
        }
        if chars.get(at + 1) == Some(&'-')
            && let Some(&end) = chars.get(at + 2)
            && end != ']'
        {
            ranges.push((c, end));
            at += 3;
        } else {
            ranges.push((c, c));
            at += 1;
        }
    }
    None
}

fn match_seq(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Literal(c) => text.first() == Some(c) && match_seq(rest, &text[1..]),
        Token::One => text
            .first()
            .is_some_and(|c| !SEPARATORS.contains(c) && match_seq(rest, &text[1..])),
        Token::Class { negated, ranges } => text.first().is_some_and(|c| {
            let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
            inside != *negated && match_seq(rest, &text[1..])
        }),
        Token::Star => {
            for skip in 0..=text.len() {
                if match_seq(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip).is_none_or(|c| SEPARATORS.contains(c)) {
                    return false;
                }
            }
            false
        }
        Token::SuperStar => (0..=text.len()).any(|skip| match_seq(rest, &text[skip..])),
        Token::Alternatives(alternatives) => alternatives.iter().any(|alternative| {
            let mut joined = alternative.clone();
            joined.extend_from_slice(rest);
            match_seq(&joined, text)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> RedirectRules {
        RedirectRules {
            site_url: "https://app.pesachama.example".to_owned(),
            allow_list: list.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_site_and_its_paths_are_allowed() {
        let rules = rules(&[]);
        assert!(rules.allows("https://app.pesachama.example/welcome?x=1"));
        assert!(rules.allows("https://app.pesachama.example"));
        assert!(!rules.allows("http://app.pesachama.example/"), "scheme");
        assert!(!rules.allows("https://app.pesachama.example:8443/"), "port");
        assert!(!rules.allows("https://evil.example/"));
        assert!(!rules.allows("https://app.pesachama.example.evil.example/"));
    }

    #[test]
    fn tricks_that_point_elsewhere_are_refused() {
        let rules = rules(&["https://*.pesachama.example/**"]);
        for bad in [
            "https://app.pesachama.example@evil.example/",
            "https://evil.example\\@app.pesachama.example/",
            "https://evil.example/ https://app.pesachama.example/",
            "//evil.example/",
            "javascript:alert(1)",
            "https://evil.example/?https://app.pesachama.example/",
            "https://evil.example#.pesachama.example/",
            "https://ev_il.pesachama.example/",
            "https://10.0.0.1/",
            "",
        ] {
            assert!(!rules.allows(bad), "{bad}");
        }
    }

    #[test]
    fn globs_match_as_gotrue_compiles_them() {
        let rules = rules(&[
            "https://*.vercel.app/**",
            "com.pesachama.app://login-callback",
            "https://staging.pesachama.example/auth/*",
            "https://{a,b}.pesachama.example/",
            "https://web-[0-9].pesachama.example/",
        ]);
        assert!(rules.allows("https://pr-12.vercel.app/auth/callback?next=/"));
        assert!(!rules.allows("https://a.b.vercel.app/"), "* stops at a dot");
        assert!(rules.allows("com.pesachama.app://login-callback"));
        assert!(!rules.allows("com.pesachama.app://login-callback/more"));
        assert!(rules.allows("https://staging.pesachama.example/auth/callback"));
        assert!(
            !rules.allows("https://staging.pesachama.example/auth/a/b"),
            "* stops at a slash"
        );
        assert!(rules.allows("https://b.pesachama.example/"));
        assert!(!rules.allows("https://c.pesachama.example/"));
        assert!(rules.allows("https://web-7.pesachama.example/"));
        assert!(!rules.allows("https://web-x.pesachama.example/"));
        assert!(
            rules.allows("https://staging.pesachama.example/auth/callback#frag"),
            "the fragment is not matched"
        );
    }

    #[test]
    fn loopback_addresses_are_allowed_for_native_apps() {
        let rules = rules(&[]);
        assert!(rules.allows("http://127.0.0.1:53682/callback"));
        assert!(rules.allows("http://[::1]:8080/"));
        assert!(!rules.allows("http://192.168.1.10/"));
    }

    #[test]
    fn the_referrer_falls_back_to_the_site() {
        let rules = rules(&["https://partner.example/ok"]);
        assert_eq!(
            rules.referrer(Some("https://evil.example/"), None),
            "https://app.pesachama.example"
        );
        assert_eq!(
            rules.referrer(
                Some("https://evil.example/"),
                Some("https://partner.example/ok")
            ),
            "https://partner.example/ok"
        );
        assert_eq!(
            rules.referrer(Some("https://partner.example/ok"), None),
            "https://partner.example/ok"
        );
    }
}
