//! `ban_duration` is a Go duration string (`"24h"`, `"1h30m"`, `"876000h"`), as GoTrue reads it
//! with `time.ParseDuration`, or `"none"` to lift a ban.

/// Seconds (rounded down) of a Go duration string, or what is wrong with it. A duration of zero
/// (or a negative one) means "not banned".
pub(crate) fn parse_seconds(text: &str) -> Result<i64, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(format!("time: invalid duration {text:?}"));
    }
    // Nanoseconds, in i128 so that a long sum cannot wrap before it is checked.
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {text:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {text:?}")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(format!("time: invalid duration {text:?}"));
        }
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("time: invalid duration {text:?}"))?
        };
        let mut part = whole.saturating_mul(scale);
        let mut divisor: i128 = 1;
        for digit in fraction.bytes().take(18) {
            divisor *= 10;
            part += i128::from(digit - b'0') * scale / divisor;
        }
        total = total.saturating_add(part);
        // Go refuses what does not fit an int64 of nanoseconds (about 292 years).
        if total > i128::from(i64::MAX) {
            return Err(format!("time: invalid duration {text:?}"));
        }
    }
    let seconds = i64::try_from(total / 1_000_000_000).unwrap_or(i64::MAX);
    Ok(if negative { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn go_durations_parse_as_go_reads_them() {
        assert_eq!(parse_seconds("24h"), Ok(86_400));
        assert_eq!(parse_seconds("1h30m"), Ok(5_400));
        assert_eq!(parse_seconds("1.5h"), Ok(5_400));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("876000h"), Ok(876_000 * 3_600));
        assert_eq!(parse_seconds("0"), Ok(0));
        assert_eq!(parse_seconds("-1h"), Ok(-3_600));
        assert_eq!(parse_seconds("1500ms"), Ok(1));
    }

    #[test]
    fn what_go_refuses_is_refused() {
        for bad in [
            "", "h", "24", "1d", "1 h", "1..5h", "3000000h", "forever", "-",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
