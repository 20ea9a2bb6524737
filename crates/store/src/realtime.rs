//! The SQL behind realtime: the LISTEN connection, the publication, the changed rows, and the
//! visibility check (`internal.realtime_visible`, migration `20260104000000_realtime.sql`).
//!
//! A trigger on every published table (once per statement, migration
//! `20260112000000_contribution_batches.sql`) NOTIFYs `pesachama_realtime` once per changed row
//! with the table, the operation and the key (payloads are capped at 8000 bytes, so never the
//! row). Every server
//! process listens on a connection of its own and reads the rows once per batch.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::db::quote_ident;

/// The NOTIFY channel the triggers announce changes on.
pub const CHANNEL: &str = "pesachama_realtime";

/// The NOTIFY channel server processes pass clients' broadcasts to each other on.
pub const BROADCAST_CHANNEL: &str = "pesachama_broadcast";

/// Broadcast messages up to this size (serialized) travel in the NOTIFY payload itself; larger
/// ones through `internal.realtime_broadcasts` (NOTIFY payloads are capped at 8000 bytes).
const INLINE_BROADCAST_BYTES: usize = 7000;

/// One announced row change, as the trigger writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    #[serde(rename = "s")]
    pub schema: String,
    #[serde(rename = "t")]
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    pub id: Uuid,
    /// When the row changed (the trigger's clock), RFC 3339.
    pub ts: String,
    /// For a DELETE: the chama the row belonged to (decides who may hear of it).
    #[serde(rename = "c", default)]
    pub chama_id: Option<Uuid>,
    /// For a DELETE: the user the row named.
    #[serde(rename = "u", default)]
    pub user_id: Option<Uuid>,
}

impl Change {
    /// Parses a notification payload.
    pub fn parse(payload: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload)
    }
}

/// A client's broadcast passed on by another server process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Broadcast {
    /// The process that sent it (it has delivered to its own clients already).
    #[serde(rename = "o")]
    pub origin: Uuid,
    #[serde(rename = "t")]
    pub topic: String,
    /// The message (`{type, event, payload}`), unless it was too large to travel inline.
    #[serde(rename = "p", default)]
    pub payload: Option<Value>,
    /// Where a large message waits, in `internal.realtime_broadcasts`.
    #[serde(rename = "id", default)]
    pub stored: Option<i64>,
}

/// What a [`ChangeListener`] hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Change(Change),
    Broadcast(Broadcast),
}

/// Passes a broadcast to every server process of the database (each LISTENs on
/// [`BROADCAST_CHANNEL`]); `origin` is the sending process, which skips its own.
pub async fn publish_broadcast(
    pool: &PgPool,
    origin: Uuid,
    topic: &str,
    payload: &Value,
) -> Result<(), StoreError> {
    let inline = serde_json::json!({ "o": origin, "t": topic, "p": payload }).to_string();
    if inline.len() <= INLINE_BROADCAST_BYTES {
        sqlx::query("select pg_notify($1, $2)")
            .bind(BROADCAST_CHANNEL)
            .bind(inline)
            .execute(pool)
            .await?;
        return Ok(());
    }
    // Kept a minute: long enough for every listener, and old ones go with each new one.
    sqlx::query(
        "with gone as (delete from internal.realtime_broadcasts
                        where created_at < now() - interval '1 minute'),
              kept as (insert into internal.realtime_broadcasts (topic, payload)
                       values ($3, $4) returning id)
         select pg_notify($1, jsonb_build_object('o', $2::uuid, 't', $3::text, 'id', kept.id)::text)
           from kept",
    )
    .bind(BROADCAST_CHANNEL)
    .bind(origin)
    .bind(topic)
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(())
}

/// The message of a large broadcast, kept by [`publish_broadcast`]; `None` once swept.
pub async fn stored_broadcast(pool: &PgPool, id: i64) -> Result<Option<Value>, StoreError> {
    Ok(
        sqlx::query_scalar("select payload from internal.realtime_broadcasts where id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A published table and its columns (name and type, as Supabase reports them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTable {
    pub schema: String,
    pub table: String,
    /// `(name, type)` in column order; a domain reports its base type (`e164_phone` is `text`).
    pub columns: Vec<(String, String)>,
}

/// The tables in `internal.realtime_publication`, with their columns.
pub async fn published_tables(pool: &PgPool) -> Result<Vec<PublishedTable>, StoreError> {
    let rows = sqlx::query(
        "select p.schema_name, p.table_name,
                coalesce(array_agg(a.attname::text order by a.attnum)
                           filter (where a.attname is not null), '{}') as names,
                coalesce(array_agg(coalesce(b.typname, t.typname)::text order by a.attnum)
                           filter (where a.attname is not null), '{}') as types
           from internal.realtime_publication p
           join pg_catalog.pg_namespace n on n.nspname = p.schema_name
           join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = p.table_name
           left join pg_catalog.pg_attribute a
                  on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
           left join pg_catalog.pg_type t on t.oid = a.atttypid
           left join pg_catalog.pg_type b on t.typtype = 'd' and b.oid = t.typbasetype
          group by p.schema_name, p.table_name
          order by p.schema_name, p.table_name",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            let names: Vec<String> = row.try_get("names")?;
            let types: Vec<String> = row.try_get("types")?;
            Ok(PublishedTable {
                schema: row.try_get("schema_name")?,
                table: row.try_get("table_name")?,
                columns: names.into_iter().zip(types).collect(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// The current rows of `ids` in a published table, read as the server (no RLS: visibility is
/// checked per subscriber afterwards). Rows deleted since the change are simply absent.
/// `schema` and `table` must come from [`published_tables`], never from a client.
pub async fn current_rows(
    pool: &PgPool,
    schema: &str,
    table: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Value>, StoreError> {
    let sql = format!(
        "select r.id, to_jsonb(r) as record from {}.{} r where r.id = any($1)",
        quote_ident(schema),
        quote_ident(table)
    );
    let rows = sqlx::query(&sql).bind(ids).fetch_all(pool).await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("record")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Which changes each identity may see: `(identity index, change index)` pairs.
///
/// `identities` is `[{"role": "anon"|"authenticated", "claims": {...}}, ...]`; `changes` is the
/// batch as JSON objects with the trigger's keys (`s`, `t`, `op`, `id`, `c`, `u`). One round
/// trip for the whole batch: the function takes each identity's role and claims in turn, exactly
/// as a request does, and lets RLS answer.
pub async fn visible(
    pool: &PgPool,
    identities: &Value,
    changes: &Value,
) -> Result<Vec<(usize, usize)>, StoreError> {
    let pairs: Vec<(i32, i32)> = sqlx::query_as(
        "select identity_index, change_index from internal.realtime_visible($1, $2)",
    )
    .bind(identities)
    .bind(changes)
    .fetch_all(pool)
    .await?;
    Ok(pairs
        .into_iter()
        .filter_map(|(i, c)| Some((usize::try_from(i).ok()?, usize::try_from(c).ok()?)))
        .collect())
}

/// Who each change of a batch can concern: `(change index, user)` pairs, from the table's
/// scope in the publication (`internal.realtime_audience`). `changes` is the batch as JSON
/// objects with `s`, `t` and the row's chama (`c`) and user (`u`). Only these users need the
/// RLS check of [`visible`]; RLS admits no one else to a published row.
pub async fn audience(pool: &PgPool, changes: &Value) -> Result<Vec<(usize, Uuid)>, StoreError> {
    let pairs: Vec<(i32, Uuid)> =
        sqlx::query_as("select change_index, user_id from internal.realtime_audience($1)")
            .bind(changes)
            .fetch_all(pool)
            .await?;
    Ok(pairs
        .into_iter()
        .filter_map(|(i, user)| Some((usize::try_from(i).ok()?, user)))
        .collect())
}

/// A LISTEN connection on [`CHANNEL`] and [`BROADCAST_CHANNEL`], on a one-connection pool of its own so it never takes a
/// connection the requests need. sqlx reconnects it after a lost connection (and LISTENs
/// again); notifications sent while it was away are lost, which subscribers learn of by the
/// `system` message the realtime server sends when it reconnects.
#[derive(Debug)]
pub struct ChangeListener {
    listener: PgListener,
}

impl ChangeListener {
    pub async fn connect(pool: &PgPool) -> Result<Self, StoreError> {
        let options = (*pool.connect_options()).clone();
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&own).await?;
        listener.listen_all([CHANNEL, BROADCAST_CHANNEL]).await?;
        Ok(Self { listener })
    }

    /// The next change or broadcast. Payloads that do not parse are skipped and logged.
    /// Cancelling this future is not safe (sqlx may be halfway through a message): run it in a
    /// task of its own and batch on the receiving side of a channel.
    pub async fn next_notice(&mut self) -> Result<Notice, StoreError> {
        loop {
            let notification = self.listener.recv().await?;
            let notice = if notification.channel() == BROADCAST_CHANNEL {
                serde_json::from_str(notification.payload()).map(Notice::Broadcast)
            } else {
                Change::parse(notification.payload()).map(Notice::Change)
            };
            match notice {
                Ok(notice) => return Ok(notice),
                Err(err) => {
                    tracing::warn!(%err, channel = notification.channel(),
                                   "ignoring a realtime notification that does not parse");
                }
            }
        }
    }

    /// The next change, passing over broadcasts (see [`Self::next_notice`]).
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        loop {
            if let Notice::Change(change) = self.next_notice().await? {
                return Ok(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn parses_what_the_trigger_writes() {
        let change = Change::parse(
            r#"{"s":"public","t":"notifications","op":"DELETE","id":"7b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c11",
                "ts":"2026-01-04T10:00:00.123456+00:00","c":null,"u":"1b0e8f3c-50c9-4a43-9d8e-2f1f6f0b9c11"}"#,
        )
        .unwrap();
        assert_eq!(change.op, "DELETE");
        assert_eq!(change.chama_id, None);
        assert!(change.user_id.is_some());
        assert!(Change::parse(r#"{"s":"public"}"#).is_err());
    }
}
