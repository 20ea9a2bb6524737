//! PostgreSQL cannot store a NUL character in `text` or `jsonb`, and a body that carries one
//! (`"\u0000"` in JSON) used to reach the database and come back as a 500. It is refused here,
//! at the edge, naming the field, before anything is written.

use serde_json::Value;

/// The path of the first string (or key) in `body` holding a NUL character, if any: `name`,
/// `data.first_name`, `items[2]`. Bodies without the escape are not parsed twice.
pub(crate) fn field_with_nul(body: &[u8]) -> Option<String> {
    if !might_hold_nul(body) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    find(&value, String::new())
}

/// Whether `\u0000` appears as an escape (after an odd run of backslashes: `\\u0000` is a
/// backslash followed by text).
fn might_hold_nul(body: &[u8]) -> bool {
    body.windows(6).enumerate().any(|(at, window)| {
        window == b"\\u0000"
            && body[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

fn find(value: &Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(text) if text.contains('\0') => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(&key.replace('\0', "\\u0000")))
            } else {
                find(item, join(key))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::field_with_nul;

    #[test]
    fn a_nul_is_found_and_named_wherever_it_is() {
        assert_eq!(
            field_with_nul(br#"{"name": "Umoja\u0000"}"#).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_with_nul(br#"{"data": {"first_name": "\u0000"}}"#).as_deref(),
            Some("data.first_name")
        );
        assert_eq!(
            field_with_nul(br#"{"ids": ["a", "b\u0000"]}"#).as_deref(),
            Some("ids[1]")
        );
        assert_eq!(field_with_nul(br#""\u0000""#).as_deref(), Some("body"));
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_text_not_nul() {
        assert_eq!(field_with_nul(br#"{"reason": "C:\\u0000"}"#), None);
        assert_eq!(
            field_with_nul(br#"{"reason": "C:\\\u0000"}"#).as_deref(),
            Some("reason")
        );
        assert_eq!(field_with_nul(br#"{"reason": "fine"}"#), None);
    }
}
