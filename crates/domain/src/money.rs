//! Money: an integer number of minor units (cents) and a currency. Never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "KES")]
    Kes,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Self::Kes => "KES",
        }
    }
}

/// A positive amount of money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

/// The largest amount any input may name: KES 10 billion. Anything above is a typo or an attack.
pub const MAX_MINOR: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAmount {
    #[error("the amount must be greater than zero")]
    NotPositive,
    #[error("the amount is larger than the largest allowed (KES 10,000,000,000)")]
    TooLarge,
    #[error("the amount has more than two decimal places")]
    FractionalCents,
    #[error(
        "{0:?} is not an amount (expected digits, optionally with two decimals: 1500 or 1500.50)"
    )]
    Malformed(String),
}

impl Money {
    /// From minor units (cents).
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Self, InvalidAmount> {
        if minor <= 0 {
            return Err(InvalidAmount::NotPositive);
        }
        if minor > MAX_MINOR {
            return Err(InvalidAmount::TooLarge);
        }
        Ok(Self { minor, currency })
    }

    /// From text in major units as people write it: `1500`, `1500.5`, `1,500.50`.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Self, InvalidAmount> {
        let malformed = || InvalidAmount::Malformed(text.chars().take(32).collect());
        let cleaned: String = text.trim().chars().filter(|c| *c != ',').collect();
        let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit())
            || (cleaned.contains('.') && fraction.is_empty())
        {
            return Err(malformed());
        }
        if fraction.len() > 2 {
            return Err(InvalidAmount::FractionalCents);
        }
        let whole: i64 = whole.parse().map_err(|_| InvalidAmount::TooLarge)?;
        let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| malformed())?;
        let minor = whole
            .checked_mul(100)
            .and_then(|m| m.checked_add(cents))
            .ok_or(InvalidAmount::TooLarge)?;
        Self::from_minor(minor, currency)
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    /// Whole shillings, for Daraja (which takes no cents); `None` when there are cents.
    pub fn whole_major(self) -> Option<i64> {
        (self.minor % 100 == 0).then_some(self.minor / 100)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{:02}",
            self.currency.code(),
            self.minor / 100,
            self.minor % 100
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_amounts_as_people_write_them() {
        let kes = |text| Money::parse_major(text, Currency::Kes).map(Money::minor);
        assert_eq!(kes("1500"), Ok(150_000));
        assert_eq!(kes("1500.5"), Ok(150_050));
        assert_eq!(kes("1,500.50"), Ok(150_050));
        assert_eq!(kes(" 0.01 "), Ok(1));
    }

    #[test]
    fn refuses_zero_negative_fractional_cents_absurd_and_malformed() {
        let kes = |text| Money::parse_major(text, Currency::Kes);
        assert_eq!(kes("0"), Err(InvalidAmount::NotPositive));
        assert_eq!(kes("0.00"), Err(InvalidAmount::NotPositive));
        assert_eq!(kes("1.005"), Err(InvalidAmount::FractionalCents));
        assert_eq!(kes("99999999999999999999"), Err(InvalidAmount::TooLarge));
        assert_eq!(kes("10000000001"), Err(InvalidAmount::TooLarge));
        for bad in ["-5", "1e3", "", ".5", "5.", "KES 5", "NaN", "1.2.3"] {
            assert!(
                matches!(kes(bad), Err(InvalidAmount::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Money::from_minor(-1, Currency::Kes),
            Err(InvalidAmount::NotPositive)
        );
    }

    #[test]
    fn displays_in_major_units() {
        assert_eq!(
            Money::from_minor(150_005, Currency::Kes)
                .unwrap()
                .to_string(),
            "KES 1500.05"
        );
        assert_eq!(
            Money::from_minor(150_000, Currency::Kes)
                .unwrap()
                .whole_major(),
            Some(1500)
        );
        assert_eq!(
            Money::from_minor(150_005, Currency::Kes)
                .unwrap()
                .whole_major(),
            None
        );
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(minor in 1i64..=MAX_MINOR) {
            let money = Money::from_minor(minor, Currency::Kes).unwrap();
            let text = money.to_string();
            let parsed = Money::parse_major(text.trim_start_matches("KES "), Currency::Kes).unwrap();
            prop_assert_eq!(parsed, money);
        }
    }
}
