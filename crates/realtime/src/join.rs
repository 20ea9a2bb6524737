//! A `phx_join` payload, read and checked against the publication before anything is
//! registered: every `postgres_changes` binding must name a published table (or `*`), a known
//! event, and a filter that parses for that table's columns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::filter::Filter;

/// The published tables: `(schema, table)` → columns `(name, type)`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: BTreeMap<(String, String), Vec<(String, String)>>,
}

impl Catalog {
    pub fn columns(&self, schema: &str, table: &str) -> Option<&[(String, String)]> {
        self.tables
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
    }
}

/// Which operations a binding wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    All,
    Insert,
    Update,
    Delete,
}

impl EventKind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "*" => Self::All,
            "INSERT" => Self::Insert,
            "UPDATE" => Self::Update,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    pub fn wants(self, op: &str) -> bool {
        match self {
            Self::All => true,
            Self::Insert => op == "INSERT",
            Self::Update => op == "UPDATE",
            Self::Delete => op == "DELETE",
        }
    }
}

/// One checked `postgres_changes` subscription.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Unique in this process; the client matches events to its callbacks by it.
    pub id: u64,
    pub event: EventKind,
    /// `None` for `*`.
    pub schema: Option<String>,
    /// `None` for `*` (every published table of the schema).
    pub table: Option<String>,
    pub filter: Option<Filter>,
    /// The binding as the client sent it, echoed in the join reply with the id.
    pub echo: Map<String, Value>,
}

impl Binding {
    pub fn covers(&self, schema: &str, table: &str) -> bool {
        self.schema.as_deref().is_none_or(|s| s == schema)
            && self.table.as_deref().is_none_or(|t| t == table)
    }
}

/// What a join asks for.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub bindings: Vec<Binding>,
    pub broadcast_self: bool,
    pub broadcast_ack: bool,
    pub access_token: Option<String>,
}

static NEXT_BINDING_ID: AtomicU64 = AtomicU64::new(1);

/// At most this many bindings per channel: each costs a check per change.
pub const MAX_BINDINGS: usize = 100;

impl JoinRequest {
    /// Reads and checks a join payload; the error is the reason given to the client.
    pub fn parse(payload: &Value, catalog: &Catalog) -> Result<Self, String> {
        if !payload.is_object() {
            return Err("the phx_join payload must be an object".to_owned());
        }
        let config = payload.get("config").cloned().unwrap_or_else(|| json!({}));
        if config.get("private").and_then(Value::as_bool) == Some(true) {
            return Err(
                "private channels (authorization through realtime.messages) are not supported; join without private: true"
                    .to_owned(),
            );
        }
        let broadcast = config.get("broadcast");
        let flag = |name: &str| {
            broadcast
                .and_then(|b| b.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let access_token = match payload.get("access_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(token)) => Some(token.clone()),
            Some(_) => return Err("access_token must be a string".to_owned()),
        };
        let specs = match config.get("postgres_changes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(specs)) => specs.clone(),
            Some(_) => return Err("config.postgres_changes must be an array".to_owned()),
        };
        if specs.len() > MAX_BINDINGS {
            return Err(format!(
                "at most {MAX_BINDINGS} postgres_changes bindings per channel"
            ));
        }
        let bindings = specs
            .iter()
            .map(|spec| parse_binding(spec, catalog))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            bindings,
            broadcast_self: flag("self"),
            broadcast_ack: flag("ack"),
            access_token,
        })
    }

    /// The join reply's `response`: the bindings with their ids, in the order sent.
    pub fn reply(&self) -> Value {
        let list: Vec<Value> = self
            .bindings
            .iter()
            .map(|binding| {
                let mut echo = binding.echo.clone();
                echo.insert("id".to_owned(), json!(binding.id));
                Value::Object(echo)
            })
            .collect();
        json!({ "postgres_changes": list })
    }
}

fn parse_binding(spec: &Value, catalog: &Catalog) -> Result<Binding, String> {
    let Value::Object(map) = spec else {
        return Err("each postgres_changes binding must be an object".to_owned());
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("postgres_changes {name} must be a string")),
        }
    };
    let event_text = text("event")?
        .ok_or("postgres_changes bindings need an event: *, INSERT, UPDATE or DELETE")?;
    let event = EventKind::parse(&event_text).ok_or_else(|| {
        format!("postgres_changes event {event_text:?} is not *, INSERT, UPDATE or DELETE")
    })?;
    let schema_text =
        text("schema")?.ok_or_else(|| "postgres_changes bindings need a schema".to_owned())?;
    let schema = (schema_text != "*").then_some(schema_text.clone());
    let table = text("table")?.filter(|t| t != "*");
    if let Some(schema) = &schema
        && !catalog.tables.keys().any(|(s, _)| s == schema)
    {
        return Err(format!("schema {schema:?} has no published tables"));
    }
    if let Some(table) = &table {
        let published = catalog
            .tables
            .keys()
            .any(|(s, t)| t == table && schema.as_deref().is_none_or(|want| want == s));
        if !published {
            return Err(format!(
                "table {}.{table} is not published for realtime (published: {})",
                schema.as_deref().unwrap_or("*"),
                catalog
                    .tables
                    .keys()
                    .map(|(s, t)| format!("{s}.{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let filter = match text("filter")?.filter(|f| !f.is_empty()) {
        None => None,
        Some(filter) => {
            let (Some(schema), Some(table)) = (&schema, &table) else {
                return Err(format!("filter {filter:?} needs a schema and table, not *"));
            };
            let columns = catalog.columns(schema, table).unwrap_or(&[]);
            Some(Filter::parse(&filter, columns)?)
        }
    };
    Ok(Binding {
        id: NEXT_BINDING_ID.fetch_add(1, Ordering::Relaxed),
        event,
        schema,
        table,
        filter,
        echo: map.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut catalog = Catalog::default();
        catalog.tables.insert(
            ("public".to_owned(), "transactions".to_owned()),
            vec![
                ("id".to_owned(), "uuid".to_owned()),
                ("chama_id".to_owned(), "uuid".to_owned()),
                ("amount".to_owned(), "int8".to_owned()),
            ],
        );
        catalog
    }

    #[test]
    fn a_join_lists_its_bindings_with_ids_in_order() {
        let payload = json!({"config": {"broadcast": {"self": true},
            "postgres_changes": [
                {"event": "INSERT", "schema": "public", "table": "transactions", "filter": "amount=gt.100"},
                {"event": "*", "schema": "public"}]},
            "access_token": "t"});
        let join = JoinRequest::parse(&payload, &catalog()).unwrap();
        assert!(join.broadcast_self && !join.broadcast_ack);
        assert_eq!(join.access_token.as_deref(), Some("t"));
        let reply = join.reply();
        let list = reply["postgres_changes"].as_array().unwrap();
        assert_eq!(list[0]["filter"], "amount=gt.100");
        assert_eq!(list[0]["table"], "transactions");
        assert!(list[1].get("table").is_none(), "echoed as sent");
        assert!(list[1]["id"].as_u64() > list[0]["id"].as_u64());
        assert!(join.bindings[1].covers("public", "transactions"));
        assert!(!join.bindings[0].covers("public", "meetings"));
    }

    #[test]
    fn unpublished_tables_bad_events_and_bad_filters_are_refused() {
        let err = |spec: Value| {
            JoinRequest::parse(&json!({"config": {"postgres_changes": [spec]}}), &catalog())
                .unwrap_err()
        };
        assert!(
            err(json!({"event": "*", "schema": "public", "table": "users"}))
                .contains("not published")
        );
        assert!(err(json!({"event": "*", "schema": "internal"})).contains("no published"));
        assert!(err(json!({"event": "TRUNCATE", "schema": "public"})).contains("TRUNCATE"));
        assert!(
            err(
                json!({"event": "*", "schema": "public", "table": "transactions",
                           "filter": "secret=eq.1"})
            )
            .contains("does not exist")
        );
        assert!(
            err(json!({"event": "*", "schema": "public", "filter": "amount=eq.1"}))
                .contains("needs a schema and table")
        );
        assert!(err(json!("x")).contains("object"));
        assert!(
            JoinRequest::parse(&json!({"config": {"private": true}}), &catalog())
                .unwrap_err()
                .contains("private")
        );
    }
}
