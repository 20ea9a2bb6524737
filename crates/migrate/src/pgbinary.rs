//! PostgreSQL's binary COPY format, for the rows the toolkit writes.
//!
//! The row builders produce text, as COPY's text format wants it. Loading that text costs
//! PostgreSQL more than loading the same values in binary: it splits and unescapes every line,
//! then runs each column's input function, and for a uuid that is sixteen calls of `strtoul`.
//! Measured on the largest tables of a loaded target (BENCHMARKS.md, 2026-12-03, later), COPY
//! FROM took about 40 % less time in binary.
//!
//! So each batch is encoded in binary when every column's type is one this module knows and
//! every value is in the plain shape the row builders write (a hyphenated uuid, a decimal
//! integer, a timestamp with its offset, ...). When anything is not, the batch goes as text
//! instead, so PostgreSQL reads it exactly as before: the binary path is only ever a faster way
//! to say what the text would have said, never a second parser of everything PostgreSQL accepts.

use std::net::IpAddr;

use sqlx::PgConnection;

use crate::pgtext::Fields;

/// How a column's values are written in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// text, varchar, char, json and enums: the UTF-8 bytes.
    Text,
    /// jsonb: a version byte, then the JSON text.
    Jsonb,
    Uuid,
    Int2,
    Int4,
    Int8,
    Bool,
    /// timestamptz: microseconds since 2000-01-01 00:00 UTC.
    Timestamptz,
    Inet,
    /// text[] of one dimension (or empty).
    TextArray,
}

impl Kind {
    /// The kind for a type (a domain already resolved to its base type), or `None` when this
    /// module does not write it.
    fn of(oid: i64, typtype: &str, element: i64) -> Option<Kind> {
        Some(match oid {
            25 | 1043 | 1042 | 114 => Kind::Text,
            3802 => Kind::Jsonb,
            2950 => Kind::Uuid,
            21 => Kind::Int2,
            23 => Kind::Int4,
            20 => Kind::Int8,
            16 => Kind::Bool,
            1184 => Kind::Timestamptz,
            869 => Kind::Inet,
            1009 if element == 25 => Kind::TextArray,
            _ if typtype == "e" => Kind::Text,
            _ => return None,
        })
    }
}

/// The binary layout of each target table a connection writes, read from its catalog once.
#[derive(Debug, Default)]
pub struct Layouts {
    known: Vec<(&'static str, Option<Vec<Kind>>)>,
}

impl Layouts {
    /// The kinds of `table`'s `columns`, in order, or `None` if any of them has a type this
    /// module does not write (the table then always goes as text).
    pub async fn of(
        &mut self,
        conn: &mut PgConnection,
        table: &'static str,
        columns: &[&str],
    ) -> anyhow::Result<Option<&[Kind]>> {
        if let Some(i) = self.known.iter().position(|(name, _)| *name == table) {
            return Ok(self.known[i].1.as_deref());
        }
        // Each column's type, domains followed down to their base type.
        let types: Vec<(i64, String, i64)> = sqlx::query_as(
            "with recursive col as (
               select c.ord, a.atttypid as oid, 0 as depth
                 from unnest($2::text[]) with ordinality as c(name, ord)
                 join pg_attribute a
                   on a.attrelid = $1::regclass and a.attname = c.name and not a.attisdropped
               union all
               select col.ord, t.typbasetype, col.depth + 1
                 from col join pg_type t on t.oid = col.oid
                where t.typtype = 'd' and col.depth < 16
             )
             select t.oid::int8, t.typtype::text, t.typelem::int8
               from col join pg_type t on t.oid = col.oid
              where t.typtype <> 'd'
              order by col.ord",
        )
        .bind(table)
        .bind(columns)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| anyhow::anyhow!("reading the column types of {table}: {e}"))?;
        let kinds = (types.len() == columns.len())
            .then(|| {
                types
                    .iter()
                    .map(|(oid, typtype, element)| Kind::of(*oid, typtype, *element))
                    .collect::<Option<Vec<Kind>>>()
            })
            .flatten();
        if kinds.is_none() {
            tracing::debug!(table, "a column type has no binary writer: COPY in text");
        }
        self.known.push((table, kinds));
        Ok(self.known.last().and_then(|(_, kinds)| kinds.as_deref()))
    }
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// `rows` as a binary COPY payload, or the column and value that has no plain binary form.
pub fn encode(kinds: &[Kind], rows: &[Fields]) -> Result<Vec<u8>, Unwritable> {
    let fields = u16::try_from(kinds.len()).map_err(|_| Unwritable { column: usize::MAX })?;
    let size: usize = rows
        .iter()
        .map(|row| {
            2 + row
                .iter()
                .map(|f| 4 + f.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(SIGNATURE.len() + 8 + size + 2);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    for row in rows {
        if row.len() != kinds.len() {
            return Err(Unwritable { column: row.len() });
        }
        out.extend_from_slice(&fields.to_be_bytes());
        for (column, (kind, field)) in kinds.iter().zip(row).enumerate() {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(value) => {
                    let start = out.len();
                    out.extend_from_slice(&[0; 4]);
                    if write_value(&mut out, *kind, value).is_none() {
                        return Err(Unwritable { column });
                    }
                    let len =
                        i32::try_from(out.len() - start - 4).map_err(|_| Unwritable { column })?;
                    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(out)
}

/// A value `encode` leaves to PostgreSQL's text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwritable {
    /// The column's position in the row.
    pub column: usize,
}

fn write_value(out: &mut Vec<u8>, kind: Kind, value: &str) -> Option<()> {
    match kind {
        Kind::Text => out.extend_from_slice(value.as_bytes()),
        Kind::Jsonb => {
            out.push(1);
            out.extend_from_slice(value.as_bytes());
        }
        Kind::Uuid => out.extend_from_slice(&uuid(value)?),
        Kind::Int2 => out.extend_from_slice(&i16::try_from(integer(value)?).ok()?.to_be_bytes()),
        Kind::Int4 => out.extend_from_slice(&i32::try_from(integer(value)?).ok()?.to_be_bytes()),
        Kind::Int8 => out.extend_from_slice(&integer(value)?.to_be_bytes()),
        Kind::Bool => out.push(match value {
            "t" | "true" => 1,
            "f" | "false" => 0,
            _ => return None,
        }),
        Kind::Timestamptz => out.extend_from_slice(&timestamptz(value)?.to_be_bytes()),
        Kind::Inet => inet(out, value)?,
        Kind::TextArray => text_array(out, value)?,
    }
    Some(())
}

/// A hyphenated uuid (`8-4-4-4-12` hex digits, either case); PostgreSQL's other spellings
/// (braces, no hyphens) are left to it.
fn uuid(value: &str) -> Option<[u8; 16]> {
    let b: &[u8; 36] = value.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // Where each byte's two digits start, and every digit's value (or 0xff) at once.
    const STARTS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [0u8; 16];
    let mut bad = 0u8;
    for (byte, &at) in out.iter_mut().zip(&STARTS) {
        let (hi, lo) = (HEX[usize::from(b[at])], HEX[usize::from(b[at + 1])]);
        bad |= hi | lo;
        *byte = hi << 4 | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// Each byte's value as a hex digit, or 0xff.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// `-?[0-9]+` within an i64; PostgreSQL's leading `+`, spaces and underscores are left to it.
fn integer(value: &str) -> Option<i64> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    let magnitude: i128 = digits
        .bytes()
        .fold(0i128, |n, d| n * 10 + i128::from(d - b'0'));
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (or `T` between date and time) followed by an offset
/// (`Z`, `+HH`, `+HH:MM`, `+HHMM`, or the same with `-`), as microseconds since
/// 2000-01-01 00:00 UTC. Without an offset the session's time zone would decide, so such
/// values, like `infinity`, years outside 1 to 9999, leap seconds and `24:00:00`, are left to
/// PostgreSQL.
fn timestamptz(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        b.get(range)?.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0;
    if b[at] == b'.' {
        let digits = b[at + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if !(1..=6).contains(&digits) {
            return None;
        }
        micros = number(at + 1..at + 1 + digits)? * 10i64.pow(6 - digits as u32);
        at += 1 + digits;
    }
    let offset = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hours, minutes) = match rest.len() {
                2 => (number(at + 1..at + 3)?, 0),
                4 => (number(at + 1..at + 3)?, number(at + 3..at + 5)?),
                5 if rest[2] == b':' => (number(at + 1..at + 3)?, number(at + 4..at + 6)?),
                _ => return None,
            };
            if hours > 15 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day) - days_from_civil(2000, 1, 1);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An address with an optional `/bits`, as `inet` stores it: family, bits, not-a-cidr, the
/// address's length, the address.
fn inet(out: &mut Vec<u8>, value: &str) -> Option<()> {
    let (address, bits) = match value.split_once('/') {
        Some((address, bits)) if !bits.is_empty() && bits.bytes().all(|d| d.is_ascii_digit()) => {
            (address, Some(bits.parse::<u8>().ok()?))
        }
        Some(_) => return None,
        None => (value, None),
    };
    let (family, max, bytes): (u8, u8, Vec<u8>) = match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => (2, 32, v4.octets().to_vec()),
        IpAddr::V6(v6) => (3, 128, v6.octets().to_vec()),
    };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    out.extend_from_slice(&[family, bits, 0, bytes.len() as u8]);
    out.extend_from_slice(&bytes);
    Some(())
}

/// A one-dimensional text array literal (`{}`, `{a,b}`, `{"a b","c\"d"}`) as an array of
/// text; NULL elements, nested arrays, bounds and spaces around elements are left to
/// PostgreSQL.
fn text_array(out: &mut Vec<u8>, value: &str) -> Option<()> {
    let inner = value.strip_prefix('{')?.strip_suffix('}')?;
    let mut elements: Vec<String> = Vec::new();
    let mut rest = inner.as_bytes();
    while !rest.is_empty() {
        let element;
        if rest[0] == b'"' {
            let mut text = Vec::new();
            let mut i = 1;
            loop {
                match *rest.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        text.push(*rest.get(i + 1)?);
                        i += 2;
                    }
                    c => {
                        text.push(c);
                        i += 1;
                    }
                }
            }
            element = String::from_utf8(text).ok()?;
            rest = &rest[i + 1..];
        } else {
            let end = rest.iter().position(|&c| c == b',').unwrap_or(rest.len());
            let word = std::str::from_utf8(&rest[..end]).ok()?;
            let plain = |c: char| !c.is_whitespace() && !matches!(c, '{' | '}' | '"' | '\\');
            if word.is_empty() || !word.chars().all(plain) || word.eq_ignore_ascii_case("null") {
                return None;
            }
            element = word.to_owned();
            rest = &rest[end..];
        }
        elements.push(element);
        match rest {
            [] => {}
            [b',', more @ ..] if !more.is_empty() => rest = more,
            _ => return None,
        }
    }
    let count = i32::try_from(elements.len()).ok()?;
    out.extend_from_slice(&i32::from(count > 0).to_be_bytes()); // dimensions
    out.extend_from_slice(&0i32.to_be_bytes()); // no NULL elements
    out.extend_from_slice(&25i32.to_be_bytes()); // element type: text
    if count > 0 {
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
    }
    for element in &elements {
        out.extend_from_slice(&i32::try_from(element.len()).ok()?.to_be_bytes());
        out.extend_from_slice(element.as_bytes());
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: Kind, text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        write_value(&mut out, kind, text).map(|()| out)
    }

    #[test]
    fn plain_values_are_written_and_the_rest_left_to_postgres() {
        assert_eq!(
            value(Kind::Uuid, "00112233-4455-6677-8899-AABBccddeeff").unwrap(),
            (0..16u8).map(|i| i * 0x11).collect::<Vec<_>>()
        );
        for other in [
            "{00112233-4455-6677-8899-aabbccddeeff}",
            "00112233445566778899aabbccddeeff",
            "00112233-4455-6677-8899-aabbccddeefg",
        ] {
            assert_eq!(value(Kind::Uuid, other), None, "{other}");
        }
        assert_eq!(value(Kind::Int8, "-42").unwrap(), (-42i64).to_be_bytes());
        assert_eq!(
            value(Kind::Int4, "2147483647").unwrap(),
            i32::MAX.to_be_bytes()
        );
        for other in ["2147483648", "+1", " 1", "", "-", "1_000"] {
            assert_eq!(value(Kind::Int4, other), None, "{other:?}");
        }
        assert_eq!(
            value(Kind::Int8, "-9223372036854775808").unwrap(),
            i64::MIN.to_be_bytes()
        );
        assert_eq!(value(Kind::Int8, "9223372036854775808"), None);
        assert_eq!(value(Kind::Bool, "t").unwrap(), [1]);
        assert_eq!(value(Kind::Bool, "yes"), None);
        assert_eq!(value(Kind::Jsonb, "{}").unwrap(), b"\x01{}");
    }

    #[test]
    fn timestamps_count_microseconds_from_2000_in_utc() {
        let at = |text| timestamptz(text);
        assert_eq!(at("2000-01-01 00:00:00+00"), Some(0));
        assert_eq!(at("2000-01-01 03:00:00+03"), Some(0));
        assert_eq!(at("1999-12-31 21:30:00-02:30"), Some(0));
        assert_eq!(at("2000-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(at("2000-01-01 00:00:00.000001+0000"), Some(1));
        assert_eq!(at("1970-01-01 00:00:00+00"), Some(-946_684_800_000_000));
        assert_eq!(
            at("2024-02-29 12:34:56.789012+00"),
            Some(((8825 * 86_400 + 12 * 3600 + 34 * 60 + 56) * 1_000_000) + 789_012)
        );
        for other in [
            "2024-02-30 00:00:00+00",
            "2023-02-29 00:00:00+00",
            "2024-01-01 24:00:00+00",
            "2024-01-01 00:00:60+00",
            "2024-01-01 00:00:00",
            "2024-01-01 00:00:00.1234567+00",
            "2024-01-01 00:00:00.+00",
            "2024-01-01 00:00:00 +00",
            "2024-01-01 00:00:00+3",
            "0000-01-01 00:00:00+00",
            "infinity",
        ] {
            assert_eq!(at(other), None, "{other}");
        }
    }

    #[test]
    fn addresses_and_arrays() {
        assert_eq!(
            value(Kind::Inet, "10.1.2.3").unwrap(),
            [2, 32, 0, 4, 10, 1, 2, 3]
        );
        assert_eq!(
            value(Kind::Inet, "10.1.2.0/24").unwrap(),
            [2, 24, 0, 4, 10, 1, 2, 0]
        );
        let v6 = value(Kind::Inet, "::1").unwrap();
        assert_eq!(&v6[..4], [3, 128, 0, 16]);
        assert_eq!(v6[19], 1);
        for other in ["10.1.2.3/33", "10.1/8", "fe80::1%eth0", "10.1.2.3/"] {
            assert_eq!(value(Kind::Inet, other), None, "{other}");
        }

        let empty = value(Kind::TextArray, "{}").unwrap();
        assert_eq!(empty, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
        let two = value(Kind::TextArray, r#"{"push",sms}"#).unwrap();
        assert_eq!(
            &two[..20],
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 2, 0, 0, 0, 1]
        );
        assert_eq!(&two[20..], b"\0\0\0\x04push\0\0\0\x03sms");
        let quoted = value(Kind::TextArray, r#"{"a \"b\" \\ c"}"#).unwrap();
        assert_eq!(&quoted[24..], br#"a "b" \ c"#);
        for other in [
            "{NULL}",
            "{a, b}",
            "{{a}}",
            "{a,}",
            "{,a}",
            "[1:1]={a}",
            "{\"a}",
            "a",
        ] {
            assert_eq!(value(Kind::TextArray, other), None, "{other}");
        }
    }

    #[test]
    fn a_payload_names_the_column_it_cannot_write() {
        let rows: Vec<Fields> = vec![
            vec![Some("7".into()), None],
            vec![Some("8".into()), Some("not a uuid".into())],
        ];
        assert_eq!(
            encode(&[Kind::Int4, Kind::Uuid], &rows),
            Err(Unwritable { column: 1 })
        );
        let payload = encode(&[Kind::Int4, Kind::Uuid], &rows[..1]).unwrap();
        let mut expected = SIGNATURE.to_vec();
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(payload, expected);
    }
}
