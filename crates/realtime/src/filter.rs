//! `postgres_changes` filters: `column=op.value` with `eq, neq, lt, lte, gt, gte, in`
//! (`in.(a,b,c)`), checked against the table's columns when a client subscribes, and evaluated
//! against a changed row (its `to_jsonb`) for every change.
//!
//! Values compare by the column's type, as PostgreSQL would: numbers as numbers, timestamps as
//! instants, booleans as booleans, everything else as text. A NULL column matches nothing
//! (SQL's three-valued logic: `NULL = x` and `NULL <> x` are both not true).

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

impl Op {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "in" => Self::In,
            _ => return None,
        })
    }
}

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Bool,
    Timestamp,
    Date,
    Text,
}

impl Kind {
    /// From the column's type name (`pg_type.typname`); `None` for types a filter cannot
    /// compare (JSON, arrays, binary).
    fn of(type_name: &str) -> Option<Self> {
        Some(match type_name {
            "int2" | "int4" | "int8" | "numeric" | "float4" | "float8" | "oid" => Self::Number,
            "bool" => Self::Bool,
            "timestamptz" | "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "json" | "jsonb" | "bytea" => return None,
            array if array.starts_with('_') => return None,
            _ => Self::Text,
        })
    }
}

/// A parsed filter, valid for its table.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: Op,
    kind: Kind,
    values: Vec<Scalar>,
}

#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Number(f64),
    Bool(bool),
    Timestamp(DateTime<FixedOffset>),
    Date(NaiveDate),
    Text(String),
}

impl Filter {
    /// Parses `column=op.value` for a table with `columns` (`(name, type)`); the error names
    /// what is wrong.
    pub fn parse(text: &str, columns: &[(String, String)]) -> Result<Self, String> {
        let (column, rest) = text.split_once('=').ok_or_else(|| {
            format!("filter {text:?} is not of the form column=op.value (e.g. chama_id=eq.<uuid>)")
        })?;
        let column = column.trim();
        let (op_text, value) = rest
            .split_once('.')
            .ok_or_else(|| format!("filter {text:?} has no operator: use column=op.value"))?;
        let op = Op::parse(op_text).ok_or_else(|| {
            format!("filter operator {op_text:?} is not one of eq, neq, lt, lte, gt, gte, in")
        })?;
        let type_name = columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, ty)| ty.as_str())
            .ok_or_else(|| format!("filter column {column:?} does not exist in this table"))?;
        let kind = Kind::of(type_name).ok_or_else(|| {
            format!("filter column {column:?} has type {type_name}, which filters cannot compare")
        })?;
        let raw: Vec<&str> = if op == Op::In {
            let inner = value
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("the in filter on {column:?} needs a list: in.(a,b,c)"))?;
            inner.split(',').map(str::trim).collect()
        } else {
            vec![value]
        };
        if raw.len() > 100 {
            return Err(format!(
                "the in filter on {column:?} lists more than 100 values"
            ));
        }
        let values = raw
            .into_iter()
            .map(|v| parse_scalar(kind, unquote(v)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!("filter value {value:?} is not a valid {type_name} for column {column:?}")
            })?;
        Ok(Self {
            column: column.to_owned(),
            op,
            kind,
            values,
        })
    }

    /// Whether `record` (a row as JSON) passes. A missing or NULL column never passes.
    pub fn matches(&self, record: &Value) -> bool {
        let Some(actual) = record
            .get(&self.column)
            .and_then(|v| scalar_of(self.kind, v))
        else {
            return false;
        };
        let compare = |wanted: &Scalar| compare(&actual, wanted);
        match self.op {
            Op::Eq => self.values.first().and_then(compare) == Some(Ordering::Equal),
            Op::Neq => self
                .values
                .first()
                .and_then(compare)
                .is_some_and(|o| o != Ordering::Equal),
            Op::Lt => self.values.first().and_then(compare) == Some(Ordering::Less),
            Op::Lte => self
                .values
                .first()
                .and_then(compare)
                .is_some_and(|o| o != Ordering::Greater),
            Op::Gt => self.values.first().and_then(compare) == Some(Ordering::Greater),
            Op::Gte => self
                .values
                .first()
                .and_then(compare)
                .is_some_and(|o| o != Ordering::Less),
            Op::In => self
                .values
                .iter()
                .any(|wanted| compare(wanted) == Some(Ordering::Equal)),
        }
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn parse_scalar(kind: Kind, text: &str) -> Option<Scalar> {
    Some(match kind {
        Kind::Number => Scalar::Number(text.parse::<f64>().ok().filter(|n| n.is_finite())?),
        Kind::Bool => Scalar::Bool(match text {
            "true" | "t" => true,
            "false" | "f" => false,
            _ => return None,
        }),
        Kind::Timestamp => Scalar::Timestamp(parse_timestamp(text)?),
        Kind::Date => Scalar::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?),
        Kind::Text => Scalar::Text(text.to_owned()),
    })
}

/// RFC 3339, PostgreSQL's `2026-01-04 10:00:00+03`, or a time without zone (taken as UTC).
fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at);
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at);
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc().fixed_offset());
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().fixed_offset())
}

/// A row's JSON value as a scalar of the column's kind; `None` for NULL.
fn scalar_of(kind: Kind, value: &Value) -> Option<Scalar> {
    match value {
        Value::Null => None,
        Value::Number(n) if kind == Kind::Number => n.as_f64().map(Scalar::Number),
        Value::Bool(b) if kind == Kind::Bool => Some(Scalar::Bool(*b)),
        Value::String(s) => parse_scalar(kind, s),
        other => parse_scalar(kind, &other.to_string()),
    }
}

fn compare(actual: &Scalar, wanted: &Scalar) -> Option<Ordering> {
    match (actual, wanted) {
        (Scalar::Number(a), Scalar::Number(b)) => a.partial_cmp(b),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Timestamp(a), Scalar::Timestamp(b)) => Some(a.cmp(b)),
        (Scalar::Date(a), Scalar::Date(b)) => Some(a.cmp(b)),
        (Scalar::Text(a), Scalar::Text(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn columns() -> Vec<(String, String)> {
        [
            ("id", "uuid"),
            ("amount", "int8"),
            ("status", "text"),
            ("created_at", "timestamptz"),
            ("metadata", "jsonb"),
            ("paid", "bool"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
    }

    fn passes(filter: &str, record: Value) -> bool {
        Filter::parse(filter, &columns()).unwrap().matches(&record)
    }

    #[test]
    fn every_operator_compares_by_the_columns_type() {
        let row = json!({"amount": 150000, "status": "completed", "paid": true,
                         "created_at": "2026-01-04T10:00:00.5+00:00"});
        assert!(passes("amount=eq.150000", row.clone()));
        assert!(!passes("amount=eq.15000", row.clone()));
        assert!(passes("amount=neq.1", row.clone()));
        assert!(passes("amount=gt.99999", row.clone()));
        assert!(!passes("amount=gt.150000", row.clone()));
        assert!(passes("amount=gte.150000", row.clone()));
        assert!(passes("amount=lt.1000000", row.clone()));
        assert!(passes("amount=lte.150000", row.clone()));
        // 9 < 10 as numbers, though "9" > "10" as text.
        assert!(passes("amount=lt.1000000000", json!({"amount": 9})));
        assert!(passes("status=in.(pending,completed)", row.clone()));
        assert!(passes("status=in.(\"completed\")", row.clone()));
        assert!(!passes("status=in.(pending, failed)", row.clone()));
        assert!(passes("paid=eq.true", row.clone()));
        assert!(passes("created_at=gt.2026-01-04T09:00:00Z", row.clone()));
        assert!(!passes("created_at=lt.2026-01-04 13:00:00+03", row.clone()));
        assert!(passes("created_at=lte.2026-01-04 13:00:01+03", row));
    }

    #[test]
    fn null_and_missing_columns_match_nothing() {
        assert!(!passes("status=eq.x", json!({"status": null})));
        assert!(!passes("status=neq.x", json!({"status": null})));
        assert!(!passes("status=neq.x", json!({})));
    }

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        let cols = columns();
        let err = |f: &str| Filter::parse(f, &cols).unwrap_err();
        assert!(err("amount").contains("column=op.value"));
        assert!(err("amount=150").contains("no operator"));
        assert!(err("amount=like.1").contains("not one of"));
        assert!(err("nope=eq.1").contains("does not exist"));
        assert!(err("amount=eq.abc").contains("not a valid int8"));
        assert!(err("metadata=eq.1").contains("cannot compare"));
        assert!(err("status=in.a,b").contains("needs a list"));
        assert!(err("created_at=gt.yesterday").contains("timestamptz"));
    }
}
