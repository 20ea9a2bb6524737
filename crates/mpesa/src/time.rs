//! Daraja's clock: `YYYYMMDDHHmmss` in Nairobi time (UTC+3 all year; Kenya has no daylight
//! saving), and the STK password made from the very timestamp the request body carries.

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset as _, TimeZone as _, Utc};

/// East Africa Time.
pub fn nairobi() -> FixedOffset {
    // 3 hours east is always in range; the fallback is never taken.
    FixedOffset::east_opt(3 * 3600).unwrap_or_else(|| Utc.fix())
}

/// The timestamp of `at` as Daraja wants it.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&nairobi())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// `base64(shortcode + passkey + timestamp)`.
pub fn stk_password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

/// A Daraja `YYYYMMDDHHmmss` (Nairobi time) as an instant.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%S").ok()?;
    nairobi()
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_nairobi_time_and_round_trip() {
        let at = Utc.with_ymd_and_hms(2023, 12, 10, 10, 34, 16).unwrap();
        assert_eq!(timestamp(at), "20231210133416");
        assert_eq!(parse_timestamp("20231210133416"), Some(at));
        assert_eq!(parse_timestamp("2023121013341"), None);
    }

    #[test]
    fn the_password_is_base64_of_shortcode_passkey_and_timestamp() {
        let password = stk_password("174379", "key", "20231210133416");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(password)
            .unwrap();
        assert_eq!(decoded, b"174379key20231210133416");
    }
}
