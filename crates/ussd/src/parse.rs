//! Reading what members type: menu choices, amounts, names.

use pesachama_domain::{Currency, Money};

use crate::gsm;
use crate::model::Language;
use crate::text::phrases;

/// The smallest contribution or withdrawal: KES 10.
pub const MIN_AMOUNT: i64 = 1_000;
/// M-Pesa's largest single transaction: KES 250,000.
pub const MAX_AMOUNT: i64 = 25_000_000;

/// A menu choice: `1`..`count`.
pub(crate) fn choice(input: &str, count: usize) -> Option<usize> {
    if input.is_empty() || input.len() > 2 || !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = input.parse().ok()?;
    (1..=count).contains(&n).then_some(n)
}

/// An amount in whole shillings, within M-Pesa's range; the error is the notice to show.
pub(crate) fn amount(input: &str, language: Language) -> Result<i64, &'static str> {
    let p = phrases(language);
    let digits: String = input.chars().filter(|c| *c != ',').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(p.digits_only);
    }
    let money = Money::parse_major(&digits, Currency::Kes).map_err(|err| match err {
        pesachama_domain::money::InvalidAmount::TooLarge => p.amount_high,
        pesachama_domain::money::InvalidAmount::NotPositive => p.amount_low,
        _ => p.digits_only,
    })?;
    in_range(money.minor(), language)
}

pub(crate) fn in_range(cents: i64, language: Language) -> Result<i64, &'static str> {
    let p = phrases(language);
    if cents < MIN_AMOUNT {
        Err(p.amount_low)
    } else if cents > MAX_AMOUNT {
        Err(p.amount_high)
    } else {
        Ok(cents)
    }
}

/// A full name: 2 to 40 letters, spaces, apostrophes, dashes, dots; split at the first space.
pub(crate) fn full_name(input: &str) -> Option<(String, Option<String>)> {
    let name = input.split_whitespace().collect::<Vec<_>>().join(" ");
    let letters = name.chars().filter(|c| c.is_alphabetic()).count();
    let allowed = name
        .chars()
        .all(|c| (c.is_alphabetic() && gsm::is_basic(c)) || " '-.".contains(c));
    if !allowed || letters < 2 || name.chars().count() > 40 {
        return None;
    }
    match name.split_once(' ') {
        Some((first, last)) => Some((first.to_owned(), Some(last.to_owned()))),
        None => Some((name, None)),
    }
}

pub(crate) fn money(cents: i64) -> Option<Money> {
    Money::from_minor(cents, Currency::Kes).ok()
}
