//! PostgreSQL's COPY text format: tab-separated fields, `\N` for NULL, backslash escapes.
//!
//! Both directions of the copy use it (`COPY ... TO STDOUT` from the legacy database and
//! `COPY ... FROM STDIN` into the target), so rows never pass through per-row statements.

/// One row read from COPY: its fields, `None` for NULL.
pub type Fields = Vec<Option<String>>;

/// Splits a COPY text payload into rows of fields.
pub fn decode(payload: &[u8]) -> Vec<Fields> {
    let text = String::from_utf8_lossy(payload);
    text.split_terminator('\n').map(decode_line).collect()
}

fn decode_line(line: &str) -> Fields {
    line.split('\t')
        .map(|field| {
            if field == "\\N" {
                None
            } else {
                Some(unescape(field))
            }
        })
        .collect()
}

fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `rows` in COPY text format.
pub fn encode_rows(rows: &[Fields]) -> String {
    let mut out = String::with_capacity(rows.iter().map(|row| encoded_len(row)).sum());
    for row in rows {
        encode_row(&mut out, row);
    }
    out
}

/// Appends one row in COPY text format to `out`.
pub fn encode_row(out: &mut String, fields: &[Option<String>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match field {
            None => out.push_str("\\N"),
            Some(value) => escape_into(out, value),
        }
    }
    out.push('\n');
}

/// Copies `value` with COPY's escapes, a run of plain text at a time (the escaped characters
/// are ASCII, so a byte scan never splits a character).
fn escape_into(out: &mut String, value: &str) {
    if !may_need_escapes(value.as_bytes()) {
        out.push_str(value);
        return;
    }
    let mut plain = 0;
    for (i, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            _ => continue,
        };
        out.push_str(&value[plain..i]);
        out.push_str(escaped);
        plain = i + 1;
    }
    out.push_str(&value[plain..]);
}

/// Whether `bytes` holds a backslash or a control character (a superset of what COPY
/// escapes). Written without an early exit within a chunk, so the compiler can check many bytes
/// at a time (the assembly was not inspected; the copy's CPU time fell with it): most
/// fields are plain, and this runs for every byte the copy writes.
fn may_need_escapes(bytes: &[u8]) -> bool {
    bytes.chunks(32).any(|chunk| {
        chunk
            .iter()
            .fold(false, |found, &b| found | (b < 0x20) | (b == b'\\'))
    })
}

/// The size of `row` in COPY text, escapes aside: what to reserve before encoding.
pub fn encoded_len(row: &[Option<String>]) -> usize {
    row.iter()
        .map(|field| field.as_ref().map_or(2, String::len) + 1)
        .sum()
}

/// A field of a row being built: text, or NULL.
pub fn some(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

/// A PostgreSQL array literal of text values (`{push,sms}`), quoting every element.
pub fn text_array<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let escaped = item.as_ref().replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\"")
        })
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// Parses a PostgreSQL array literal of simple values (uuids, identifiers) into its elements.
pub fn parse_simple_array(literal: &str) -> Vec<String> {
    let inner = literal.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.eq_ignore_ascii_case("null"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nulls_tabs_newlines_and_backslashes() {
        let row: Fields = vec![
            Some("plain".into()),
            None,
            Some("tab\there\nnew line \\ slash".into()),
            Some(String::new()),
        ];
        let mut out = String::new();
        encode_row(&mut out, &row);
        assert_eq!(out.matches('\n').count(), 1, "one line per row: {out:?}");
        assert_eq!(decode(out.as_bytes()), vec![row]);
    }

    #[test]
    fn an_escape_anywhere_in_a_long_field_is_found() {
        for position in [0, 31, 32, 33, 63, 64, 99] {
            for special in ['\\', '\n', '\t', '\r'] {
                let mut value: String = "x".repeat(100);
                value.replace_range(position..=position, &special.to_string());
                let row: Fields = vec![Some(value.clone())];
                let mut out = String::with_capacity(encoded_len(&row));
                encode_row(&mut out, &row);
                assert_eq!(
                    out.len(),
                    value.len() + 2,
                    "{special:?} at {position} escaped: {out:?}"
                );
                assert_eq!(decode(out.as_bytes()), vec![row]);
            }
        }
        assert!(!may_need_escapes(
            "plain text, ünïcode and all, longer than one chunk of 32".as_bytes()
        ));
    }

    #[test]
    fn arrays_both_ways() {
        assert_eq!(text_array(&["push", "sms"]), r#"{"push","sms"}"#);
        assert_eq!(text_array::<&str>(&[]), "{}");
        assert_eq!(parse_simple_array("{a,\"b\",NULL}"), vec!["a", "b"]);
        assert!(parse_simple_array("{}").is_empty());
    }
}
