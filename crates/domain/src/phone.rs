//! Kenyan mobile numbers in E.164 (`+2547XXXXXXXX`, `+2541XXXXXXXX`).
//!
//! People type numbers every way: `0712 345 678`, `712345678`, `254712345678`, `+254-712-345-678`.
//! All of them parse to the one E.164 form, so a member is one member however they typed it,
//! including the trunk zero kept after the country code (`+254 0712 345 678`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kenyan mobile number (expected 07XXXXXXXX, 01XXXXXXXX or +2547XXXXXXXX)")]
pub struct InvalidPhone(pub String);

impl Phone {
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let invalid = || InvalidPhone(input.chars().take(32).collect());
        let trimmed = input.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        // Spaces, dashes, dots and brackets are how people group digits; nothing else is allowed.
        let mut digits = String::with_capacity(12);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(invalid()),
            }
        }
        let subscriber = match (plus, digits.len()) {
            (_, 12) if digits.starts_with("254") => &digits[3..],
            // The trunk zero kept after the country code (`+254 0712 345 678`), as people type
            // a number they know as `0712...`.
            (_, 13) if digits.starts_with("2540") => &digits[4..],
            (false, 10) if digits.starts_with('0') => &digits[1..],
            (false, 9) => &digits[..],
            _ => return Err(invalid()),
        };
        // Mobile ranges: 7XX XXX XXX (Safaricom, Airtel, Telkom) and the newer 1XX XXX XXX.
        if !(subscriber.starts_with('7') || subscriber.starts_with('1')) {
            return Err(invalid());
        }
        Ok(Self(format!("+254{subscriber}")))
    }

    /// `+2547XXXXXXXX`.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// `2547XXXXXXXX`, as Daraja wants it (PartyA, PhoneNumber).
    pub fn msisdn(&self) -> &str {
        &self.0[1..]
    }

    /// `+2547******78`, for logs: never log a full number.
    pub fn masked(&self) -> String {
        format!("{}******{}", &self.0[..5], &self.0[11..])
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Phone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_kenyan_spelling_parses_to_the_same_number() {
        for input in [
            "0712345678",
            "712345678",
            "254712345678",
            "+254712345678",
            "+254 712 345 678",
            "0712-345-678",
            " (0712) 345.678 ",
            "+254 0712 345 678",
            "+2540712345678",
            "254 0712-345-678",
        ] {
            assert_eq!(
                Phone::parse(input).unwrap().as_e164(),
                "+254712345678",
                "{input}"
            );
        }
        assert_eq!(
            Phone::parse("0110345678").unwrap().as_e164(),
            "+254110345678"
        );
    }

    #[test]
    fn non_kenyan_and_non_mobile_numbers_are_refused() {
        for input in [
            "",
            "+255712345678",
            "0202345678",
            "+254202345678",
            "07123456",
            "07123456789",
            "+0712345678",
            "0712a45678",
            "254-712",
            "+1 415 555 0100",
            "+254 0812 345 678",
            "+254 00712 345 678",
            "25407123456789",
            "712345678\u{0}",
        ] {
            assert!(Phone::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn masked_numbers_keep_only_the_country_code_and_the_last_two_digits() {
        assert_eq!(
            Phone::parse("0712345678").unwrap().masked(),
            "+2547******78"
        );
    }

    proptest! {
        #[test]
        fn the_spellings_of_any_mobile_number_agree(first in prop::sample::select(vec!['7', '1']), rest in "[0-9]{8}") {
            let subscriber = format!("{first}{rest}");
            let e164 = format!("+254{subscriber}");
            for input in [format!("0{subscriber}"), subscriber.clone(), format!("254{subscriber}"), e164.clone()] {
                let parsed = Phone::parse(&input).unwrap();
                prop_assert_eq!(parsed.as_e164(), e164.as_str());
            }
        }

        #[test]
        fn parsing_never_panics(input in ".{0,40}") {
            let _ = Phone::parse(&input);
        }
    }
}
