//! The value-level transforms: one legacy value in, the target's value out (or why not).
//!
//! Pure functions, so every quirk of the legacy README has a unit test here and `plan`,
//! `copy` and `verify` all apply exactly the same rules.

use chrono::{Datelike, Duration, NaiveDateTime, Timelike};
use pesachama_domain::{Email, Phone};

/// Nairobi is UTC+3 all year (no daylight saving), and every legacy `timestamp` was written in
/// Nairobi local time without a zone.
const NAIROBI_OFFSET_HOURS: i64 = 3;

/// A legacy `timestamp` (Nairobi local, as PostgreSQL prints it) as a UTC `timestamptz`
/// literal, e.g. `2023-04-01 10:00:00` -> `2023-04-01 07:00:00.000000+00`.
///
/// Every migrated row has two to four of these, so the shape PostgreSQL prints is read and
/// written by hand; anything else (a `T` separator, more than six fraction digits, a year
/// beyond 9999) goes through chrono's formats, with the same result.
pub fn nairobi_to_utc(local: &str) -> Result<String, String> {
    let local = local.trim();
    if let Some(utc) = fast_nairobi_to_utc(local) {
        return Ok(utc);
    }
    let parsed = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S%.f"))
        .map_err(|_| format!("{local:?} is not a timestamp"))?;
    let utc = parsed - Duration::hours(NAIROBI_OFFSET_HOURS);
    Ok(format!("{}+00", utc.format("%Y-%m-%d %H:%M:%S%.6f")))
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` to the UTC literal, or `None` for any other shape (or an
/// impossible date), which the caller hands to chrono.
fn fast_nairobi_to_utc(local: &str) -> Option<String> {
    let b = local.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let micros = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=6).contains(&digits.len()) => {
            let value = number(20..b.len())?;
            value * 10u32.pow(6 - digits.len() as u32)
        }
        _ => return None,
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        micros,
    )?;
    let utc = NaiveDateTime::new(date, time) - Duration::hours(NAIROBI_OFFSET_HOURS);
    let year = utc.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = String::with_capacity(29);
    push_digits(&mut out, year as u32, 4);
    let fields = [
        ('-', utc.month()),
        ('-', utc.day()),
        (' ', utc.hour()),
        (':', utc.minute()),
        (':', utc.second()),
    ];
    for (separator, value) in fields {
        out.push(separator);
        push_digits(&mut out, value, 2);
    }
    out.push('.');
    push_digits(&mut out, utc.nanosecond() / 1_000, 6);
    out.push_str("+00");
    Some(out)
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

/// `updated_at` as the target accepts it: never before `created_at` (the 2021 clock bug left
/// some legacy rows the other way round). Both arguments are UTC literals from
/// [`nairobi_to_utc`], which sort as text. Returns the value and whether it was fixed.
pub fn updated_not_before_created(created: &str, updated: &str) -> (String, bool) {
    if updated < created {
        (created.to_owned(), true)
    } else {
        (updated.to_owned(), false)
    }
}

/// Legacy `numeric(12,2)` KES as printed by PostgreSQL (`1500.00`, `-200.50`) to signed
/// integer cents. No floating point anywhere.
pub fn kes_to_cents(amount: &str) -> Result<i64, String> {
    let text = amount.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let bad = || format!("{amount:?} is not an amount in KES");
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let value = whole
        .checked_mul(100)
        .and_then(|v| v.checked_add(cents))
        .ok_or_else(bad)?;
    Ok(if negative { -value } else { value })
}

/// A phone as typed (`0712 345-678`, `254712345678`, `712345678`, `+254112345678`) in E.164.
pub fn phone(typed: &str) -> Option<Phone> {
    Phone::parse(typed).ok()
}

/// What became of a legacy email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// Absent in legacy (USSD-only members).
    None,
    /// Valid; lowercased.
    Valid(String),
    /// Present but not an address (`jane@`, `none`, `n/a`): not carried over.
    Invalid(String),
}

pub fn email(legacy: Option<&str>) -> EmailOutcome {
    match legacy.map(str::trim) {
        None | Some("") => EmailOutcome::None,
        Some(text) => match Email::parse(text) {
            Ok(email) if target_email_ok(email.as_str()) => {
                EmailOutcome::Valid(email.as_str().to_owned())
            }
            _ => EmailOutcome::Invalid(text.to_owned()),
        },
    }
}

/// The target's `users_email_valid` check, which is a little stricter about the domain than
/// the domain type: labels of letters, digits and dashes.
fn target_email_ok(email: &str) -> bool {
    let Some((_, domain)) = email.split_once('@') else {
        return false;
    };
    domain.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// A free-text legacy enumeration value, normalised for matching: lowercase, trimmed, with
/// spaces and dashes as underscores (`Bi-Weekly ` -> `bi_weekly`).
pub fn enum_key(text: &str) -> String {
    text.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

/// `contribution_frequency`: weekly, biweekly, monthly.
pub fn frequency(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "weekly" | "week" | "wk" | "kila_wiki" => Some("weekly"),
        "biweekly" | "bi_weekly" | "fortnightly" | "every_two_weeks" | "2_weeks" => {
            Some("biweekly")
        }
        "monthly" | "month" | "mo" | "kila_mwezi" => Some("monthly"),
        _ => None,
    }
}

/// `chama_type`: savings, merry_go_round, investment, table_banking.
pub fn chama_type(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "savings" | "saving" => Some("savings"),
        "merry_go_round" | "merrygoround" | "mgr" => Some("merry_go_round"),
        "investment" | "investments" => Some("investment"),
        "table_banking" | "tablebanking" => Some("table_banking"),
        _ => None,
    }
}

pub fn chama_status(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "active" => Some("active"),
        "suspended" => Some("suspended"),
        "closed" | "inactive" | "dissolved" => Some("closed"),
        _ => None,
    }
}

pub fn member_role(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "chairperson" | "chairman" | "chair" | "chairlady" => Some("chairperson"),
        "treasurer" => Some("treasurer"),
        "secretary" => Some("secretary"),
        "member" | "" => Some("member"),
        _ => None,
    }
}

pub fn member_status(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "active" => Some("active"),
        "invited" => Some("invited"),
        "suspended" => Some("suspended"),
        "left" | "exited" | "removed" => Some("left"),
        "pending" => Some("pending"),
        _ => None,
    }
}

pub fn transaction_type(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "contribution" | "deposit" => Some("contribution"),
        "withdrawal" => Some("withdrawal"),
        "disbursement" => Some("disbursement"),
        "loan" => Some("loan"),
        "loan_repayment" | "repayment" => Some("loan_repayment"),
        "fine" | "penalty" => Some("fine"),
        "interest" => Some("interest"),
        "fee" | "charge" => Some("fee"),
        "dividend" => Some("dividend"),
        "reversal" | "refund" => Some("reversal"),
        _ => None,
    }
}

pub fn transaction_status(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "pending" => Some("pending"),
        "completed" | "complete" | "success" | "successful" => Some("completed"),
        "failed" => Some("failed"),
        "reversed" => Some("reversed"),
        "cancelled" | "canceled" => Some("cancelled"),
        _ => None,
    }
}

pub fn payment_method(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "mpesa" | "m_pesa" => Some("mpesa"),
        "cash" => Some("cash"),
        "bank" | "bank_transfer" => Some("bank"),
        _ => None,
    }
}

pub fn meeting_type(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "physical" | "in_person" => Some("physical"),
        "virtual" | "online" => Some("virtual"),
        "hybrid" => Some("hybrid"),
        _ => None,
    }
}

pub fn meeting_status(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "scheduled" | "upcoming" => Some("scheduled"),
        "held" | "done" | "completed" => Some("held"),
        "cancelled" | "canceled" => Some("cancelled"),
        _ => None,
    }
}

pub fn notification_type(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "transaction" | "payment" | "contribution" => Some("transaction"),
        "meeting" => Some("meeting"),
        "approval" | "disbursement" => Some("approval"),
        "membership" | "invitation" => Some("membership"),
        "system" | "" => Some("system"),
        _ => None,
    }
}

pub fn platform(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "android" => Some("android"),
        "ios" | "iphone" => Some("ios"),
        "web" => Some("web"),
        _ => None,
    }
}

/// Legacy disbursement statuses: `disbursed` is the target's `completed`. A legacy `approved`
/// that never paid out has no reserved money behind it, which the target's `approved` means,
/// so it becomes `expired` (the request must be made again) and is reported.
pub fn disbursement_status(text: &str) -> Option<&'static str> {
    match enum_key(text).as_str() {
        "pending" => Some("pending"),
        "approved" => Some("expired"),
        "rejected" | "declined" => Some("rejected"),
        "disbursed" | "paid" | "completed" => Some("completed"),
        "failed" => Some("failed"),
        "cancelled" | "canceled" => Some("cancelled"),
        _ => None,
    }
}

pub fn language(text: &str) -> &'static str {
    match enum_key(text).as_str() {
        "sw" | "swahili" | "kiswahili" => "sw",
        _ => "en",
    }
}

/// A national ID number in the target's shape (`^[0-9A-Z]{5,20}$`), without spaces.
pub fn id_number(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    let ok =
        (5..=20).contains(&cleaned.len()) && cleaned.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(cleaned)
}

/// An M-Pesa receipt in the target's shape (`^[A-Z0-9]{10}$`).
pub fn mpesa_receipt(text: &str) -> Option<String> {
    let cleaned = text.trim().to_ascii_uppercase();
    (cleaned.len() == 10 && cleaned.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(cleaned)
}

/// A name of 1-100 characters, trimmed, without characters that hide or reorder text (the
/// target refuses them); empty means none.
pub fn name(text: Option<&str>) -> Option<String> {
    let visible = pesachama_domain::text::without_hidden(text?);
    let trimmed = visible.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.chars().take(100).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_timestamp_path_agrees_with_chrono() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let chrono_way = |local: &str| {
            let parsed = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f").unwrap();
            let utc = parsed - Duration::hours(NAIROBI_OFFSET_HOURS);
            format!("{}+00", utc.format("%Y-%m-%d %H:%M:%S%.6f"))
        };
        let mut cases: Vec<String> = vec![
            "0000-01-01 03:00:00".into(),
            "2024-03-01 01:00:00".into(),
            "2023-01-01 00:00:00.5".into(),
            "2020-02-29 02:30:00.000001".into(),
            "9999-12-31 23:59:59.999999".into(),
        ];
        for _ in 0..5_000 {
            let fraction = match rng.random_range(0..7) {
                0 => String::new(),
                digits => format!(
                    ".{:0>width$}",
                    rng.random_range(0..10u32.pow(digits)),
                    width = digits as usize
                ),
            };
            cases.push(format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{fraction}",
                rng.random_range(1990..2040),
                rng.random_range(1..13),
                rng.random_range(1..29),
                rng.random_range(0..24),
                rng.random_range(0..60),
                rng.random_range(0..60),
            ));
        }
        for local in &cases {
            assert_eq!(
                fast_nairobi_to_utc(local).as_deref(),
                Some(chrono_way(local).as_str()),
                "{local}"
            );
        }
        // Shapes the fast path leaves to chrono, with the same answers.
        assert_eq!(fast_nairobi_to_utc("2023-04-01T10:00:00"), None);
        assert_eq!(
            nairobi_to_utc("2023-04-01T10:00:00").unwrap(),
            "2023-04-01 07:00:00.000000+00"
        );
        assert_eq!(fast_nairobi_to_utc("2023-04-01 10:00:00.1234567"), None);
        assert_eq!(
            nairobi_to_utc("2023-04-01 10:00:00.1234567").unwrap(),
            "2023-04-01 07:00:00.123456+00"
        );
        assert_eq!(
            fast_nairobi_to_utc("0000-01-01 02:00:00"),
            None,
            "a year before 0 in UTC"
        );
        assert!(
            nairobi_to_utc("2023-02-30 10:00:00").is_err(),
            "no such day"
        );
        assert!(nairobi_to_utc("2023-04-01 24:00:00").is_err());
        assert!(nairobi_to_utc("2023-04-01 10:00:0x").is_err());
    }

    #[test]
    fn nairobi_local_time_becomes_utc() {
        assert_eq!(
            nairobi_to_utc("2023-04-01 10:00:00").unwrap(),
            "2023-04-01 07:00:00.000000+00"
        );
        assert_eq!(
            nairobi_to_utc("2021-01-01 01:30:00.25").unwrap(),
            "2020-12-31 22:30:00.250000+00",
            "crosses midnight and the year"
        );
        assert!(nairobi_to_utc("yesterday").is_err());
    }

    #[test]
    fn updated_before_created_is_moved_up_to_created() {
        let created = nairobi_to_utc("2021-05-01 12:00:00").unwrap();
        let earlier = nairobi_to_utc("2021-04-30 12:00:00").unwrap();
        let later = nairobi_to_utc("2021-05-02 12:00:00").unwrap();
        assert_eq!(
            updated_not_before_created(&created, &earlier),
            (created.clone(), true)
        );
        assert_eq!(updated_not_before_created(&created, &later), (later, false));
    }

    #[test]
    fn kes_numeric_becomes_integer_cents() {
        assert_eq!(kes_to_cents("1500.00").unwrap(), 150_000);
        assert_eq!(kes_to_cents("0.05").unwrap(), 5);
        assert_eq!(kes_to_cents("-200.5").unwrap(), -20_050);
        assert_eq!(kes_to_cents("0.00").unwrap(), 0);
        assert_eq!(kes_to_cents("12").unwrap(), 1_200);
        assert!(kes_to_cents("1.234").is_err());
        assert!(kes_to_cents("abc").is_err());
    }

    #[test]
    fn every_legacy_phone_spelling_is_one_e164_number() {
        for typed in [
            "0712345678",
            "+254712345678",
            "254712345678",
            "712345678",
            "0712 345 678",
            "0712-345-678",
        ] {
            assert_eq!(phone(typed).unwrap().as_e164(), "+254712345678", "{typed}");
        }
        assert_eq!(phone("0112345678").unwrap().as_e164(), "+254112345678");
        assert!(phone("12345").is_none());
        assert!(phone("0812345678").is_none());
    }

    #[test]
    fn emails_are_lowercased_and_junk_is_refused() {
        assert_eq!(
            email(Some("Jane.Doe@Example.CO.KE")),
            EmailOutcome::Valid("jane.doe@example.co.ke".into())
        );
        assert_eq!(email(None), EmailOutcome::None);
        assert_eq!(email(Some("  ")), EmailOutcome::None);
        for junk in ["jane@", "none", "n/a", "a@b", "x@exa_mple.com"] {
            assert!(
                matches!(email(Some(junk)), EmailOutcome::Invalid(_)),
                "{junk}"
            );
        }
    }

    #[test]
    fn free_text_enumerations_map_to_the_targets() {
        assert_eq!(frequency("Monthly"), Some("monthly"));
        assert_eq!(frequency(" BI-WEEKLY"), Some("biweekly"));
        assert_eq!(frequency("bi weekly"), Some("biweekly"));
        assert_eq!(frequency("fortnightly"), Some("biweekly"));
        assert_eq!(frequency("WEEKLY "), Some("weekly"));
        assert_eq!(frequency("yearly"), None);
        assert_eq!(chama_type("Merry-Go-Round"), Some("merry_go_round"));
        assert_eq!(chama_type("table banking"), Some("table_banking"));
        assert_eq!(member_role("Chairman"), Some("chairperson"));
        assert_eq!(transaction_status("COMPLETED"), Some("completed"));
        assert_eq!(payment_method("M-Pesa"), Some("mpesa"));
        assert_eq!(disbursement_status("disbursed"), Some("completed"));
        assert_eq!(disbursement_status("approved"), Some("expired"));
        assert_eq!(platform("iOS"), Some("ios"));
        assert_eq!(language("SW"), "sw");
        assert_eq!(language("fr"), "en");
    }

    #[test]
    fn id_numbers_and_receipts_take_the_targets_shape() {
        assert_eq!(id_number("12 345-678").as_deref(), Some("12345678"));
        assert_eq!(id_number("12"), None);
        assert_eq!(mpesa_receipt("qk12ab34cd").as_deref(), Some("QK12AB34CD"));
        assert_eq!(mpesa_receipt("SHORT"), None);
        assert_eq!(name(Some("  Wanjiku ")).as_deref(), Some("Wanjiku"));
        assert_eq!(name(Some("  ")), None);
    }
}
