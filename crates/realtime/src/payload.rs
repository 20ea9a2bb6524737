//! The `postgres_changes` message body, in Supabase Realtime's shape.
//!
//! Supabase's server sends `data: {schema, table, commit_timestamp, type, columns, record,
//! old_record, errors}`; realtime-js turns `record`/`old_record` into `new`/`old` (converting
//! values by column type) and `type` into `eventType`. We send the server's fields and, for
//! clients that read the raw message, `eventType`, `new` and `old` already built.
//! `old_record` holds only the primary key (Supabase without `REPLICA IDENTITY FULL` does the
//! same), and a DELETE's `record` is empty: the row is gone.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One change as it is sent.
#[derive(Debug, Clone, Copy)]
pub struct ChangeView<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub op: &'a str,
    pub id: Uuid,
    /// The trigger's timestamp (RFC 3339).
    pub at: &'a str,
    /// The row now (INSERT, UPDATE); `None` for a DELETE.
    pub record: Option<&'a Value>,
    pub columns: &'a [(String, String)],
}

/// The `payload` of a `postgres_changes` message for the subscriptions `ids`.
pub fn postgres_changes(ids: &[u64], change: &ChangeView<'_>) -> Value {
    let columns: Vec<Value> = change
        .columns
        .iter()
        .map(|(name, ty)| json!({ "name": name, "type": ty }))
        .collect();
    let key = json!({ "id": change.id });
    let mut data = Map::new();
    data.insert("schema".into(), json!(change.schema));
    data.insert("table".into(), json!(change.table));
    data.insert(
        "commit_timestamp".into(),
        json!(commit_timestamp(change.at)),
    );
    data.insert("type".into(), json!(change.op));
    data.insert("eventType".into(), json!(change.op));
    data.insert("columns".into(), Value::Array(columns));
    let record = change.record.cloned().unwrap_or_else(|| json!({}));
    let old = if change.op == "INSERT" {
        json!({})
    } else {
        key
    };
    if change.op != "DELETE" {
        data.insert("record".into(), record.clone());
    }
    if change.op != "INSERT" {
        data.insert("old_record".into(), old.clone());
    }
    data.insert("new".into(), record);
    data.insert("old".into(), old);
    data.insert("errors".into(), Value::Null);
    json!({ "ids": ids, "data": data })
}

/// `2026-01-04T10:00:00.123Z`, as Supabase formats commit timestamps; the input as it is when
/// it does not parse.
fn commit_timestamp(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|_| at.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<(String, String)> {
        vec![
            ("id".to_owned(), "uuid".to_owned()),
            ("amount".to_owned(), "int8".to_owned()),
        ]
    }

    #[test]
    fn inserts_carry_the_row_and_no_old_record() {
        let id = Uuid::new_v4();
        let row = json!({"id": id, "amount": 5});
        let cols = columns();
        let payload = postgres_changes(
            &[3, 9],
            &ChangeView {
                schema: "public",
                table: "transactions",
                op: "INSERT",
                id,
                at: "2026-01-04T13:00:00.123456+03:00",
                record: Some(&row),
                columns: &cols,
            },
        );
        assert_eq!(payload["ids"], json!([3, 9]));
        let data = &payload["data"];
        assert_eq!(data["commit_timestamp"], "2026-01-04T10:00:00.123Z");
        assert_eq!(data["type"], "INSERT");
        assert_eq!(data["eventType"], "INSERT");
        assert_eq!(data["record"], row);
        assert_eq!(data["new"], row);
        assert!(data.get("old_record").is_none());
        assert_eq!(data["old"], json!({}));
        assert_eq!(
            data["columns"][1],
            json!({"name": "amount", "type": "int8"})
        );
        assert_eq!(data["errors"], Value::Null);
    }

    #[test]
    fn deletes_carry_only_the_key() {
        let id = Uuid::new_v4();
        let cols = columns();
        let payload = postgres_changes(
            &[1],
            &ChangeView {
                schema: "public",
                table: "notifications",
                op: "DELETE",
                id,
                at: "garbage",
                record: None,
                columns: &cols,
            },
        );
        let data = &payload["data"];
        assert_eq!(data["old_record"], json!({"id": id}));
        assert_eq!(data["old"], json!({"id": id}));
        assert!(data.get("record").is_none());
        assert_eq!(data["new"], json!({}));
        assert_eq!(data["commit_timestamp"], "garbage");
    }
}
