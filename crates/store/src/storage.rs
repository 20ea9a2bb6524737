//! `storage.buckets` and `storage.objects`, Supabase Storage's tables (CONTRACTS §4).
//!
//! Object queries run on the caller's transaction, so the policies on `storage.objects`
//! decide exactly as they do for Supabase's own storage server: an insert needs the INSERT
//! policy, an upsert also SELECT and UPDATE, a read SELECT, a delete DELETE. Bucket settings
//! (limits, MIME types, public) are read on the pool, as Supabase's server reads them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Bucket {
    pub id: String,
    pub name: String,
    pub owner: Option<Uuid>,
    pub public: bool,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Option<Vec<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

const BUCKET_COLUMNS: &str = "id, name, owner, coalesce(public, false) as public,
    file_size_limit, allowed_mime_types, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ObjectRow {
    pub id: Uuid,
    pub bucket_id: String,
    pub name: String,
    pub owner: Option<Uuid>,
    pub version: Option<String>,
    pub metadata: Option<Value>,
    pub user_metadata: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

const OBJECT_COLUMNS: &str = "id, bucket_id, name, owner, version, metadata, user_metadata,
    created_at, updated_at, last_accessed_at";

/// One bucket, read past RLS (the server needs its limits whoever calls).
pub async fn bucket(executor: impl PgExecutor<'_>, id: &str) -> Result<Option<Bucket>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {BUCKET_COLUMNS} from storage.buckets where id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?)
}

/// The buckets the executor's role may see, by name.
pub async fn buckets(executor: impl PgExecutor<'_>) -> Result<Vec<Bucket>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {BUCKET_COLUMNS} from storage.buckets order by name"
    ))
    .fetch_all(executor)
    .await?)
}

/// What an upload writes into its row.
#[derive(Debug, Clone)]
pub struct NewObject<'a> {
    pub id: Uuid,
    pub bucket_id: &'a str,
    pub name: &'a str,
    pub owner: Option<Uuid>,
    pub version: String,
    pub metadata: Value,
    pub user_metadata: Option<Value>,
}

/// A written row and, for a replaced object, the version it had before.
#[derive(Debug, Clone)]
pub struct Written {
    pub row: ObjectRow,
    pub previous_version: Option<String>,
}

/// Inserts the row (a duplicate name is a [`StoreError::Conflict`]); with `upsert`, replaces
/// the existing row's version and metadata instead, keeping its id.
pub async fn write_object(
    conn: &mut PgConnection,
    object: &NewObject<'_>,
    upsert: bool,
) -> Result<Written, StoreError> {
    // For an upsert, writers of one name take turns (a transaction-level advisory lock, also
    // when the row does not exist yet): a concurrent upsert waits, then reads the version the
    // first one committed, so the bytes it replaces are the ones it removes. Rows RLS hides
    // are not returned; the upsert below then fails on them.
    let previous_version = if upsert {
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
            .bind(object.bucket_id)
            .bind(object.name)
            .execute(&mut *conn)
            .await?;
        sqlx::query_scalar::<_, Option<String>>(
            "select version from storage.objects where bucket_id = $1 and name = $2",
        )
        .bind(object.bucket_id)
        .bind(object.name)
        .fetch_optional(&mut *conn)
        .await?
        .flatten()
    } else {
        None
    };
    let on_conflict = if upsert {
        "on conflict (bucket_id, name) do update set
           version = excluded.version, metadata = excluded.metadata,
           user_metadata = excluded.user_metadata, owner = excluded.owner,
           owner_id = excluded.owner_id, updated_at = now(), last_accessed_at = now()"
    } else {
        ""
    };
    let sql = format!(
        "insert into storage.objects (id, bucket_id, name, owner, owner_id, version, metadata, user_metadata)
         values ($1, $2, $3, $4, $4::text, $5, $6, $7)
         {on_conflict}
         returning {OBJECT_COLUMNS}"
    );
    let row = sqlx::query_as(&sql)
        .bind(object.id)
        .bind(object.bucket_id)
        .bind(object.name)
        .bind(object.owner)
        .bind(&object.version)
        .bind(&object.metadata)
        .bind(&object.user_metadata)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Written {
        row,
        previous_version,
    })
}

/// The row if the executor's role may SELECT it.
pub async fn find_object(
    executor: impl PgExecutor<'_>,
    bucket_id: &str,
    name: &str,
) -> Result<Option<ObjectRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {OBJECT_COLUMNS} from storage.objects where bucket_id = $1 and name = $2"
    ))
    .bind(bucket_id)
    .bind(name)
    .fetch_optional(executor)
    .await?)
}

/// Of `names`, those the executor's role may SELECT.
pub async fn find_objects(
    executor: impl PgExecutor<'_>,
    bucket_id: &str,
    names: &[String],
) -> Result<Vec<ObjectRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "select {OBJECT_COLUMNS} from storage.objects where bucket_id = $1 and name = any($2)"
    ))
    .bind(bucket_id)
    .bind(names)
    .fetch_all(executor)
    .await?)
}

/// Deletes those of `names` the DELETE policy allows; answers the rows deleted.
///
/// Supabase's `storage.objects` refuses deletes (a statement trigger of storage-api's) unless
/// `storage.allow_delete_query` is set in the transaction, as storage-api sets it: a delete from
/// the Data API would orphan the stored bytes. This is the one place that deletes, knowing it
/// removes the bytes too; the setting lasts until the caller's transaction ends.
pub async fn delete_objects(
    conn: &mut PgConnection,
    bucket_id: &str,
    names: &[String],
) -> Result<Vec<ObjectRow>, StoreError> {
    sqlx::query("select set_config('storage.allow_delete_query', 'true', true)")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(&format!(
        "delete from storage.objects where bucket_id = $1 and name = any($2)
         returning {OBJECT_COLUMNS}"
    ))
    .bind(bucket_id)
    .bind(names)
    .fetch_all(&mut *conn)
    .await?)
}

/// Renames an object (UPDATE policy on the old row, its check on the new name). `None` when
/// the source is missing or hidden.
pub async fn rename_object(
    executor: impl PgExecutor<'_>,
    bucket_id: &str,
    from: &str,
    to: &str,
) -> Result<Option<ObjectRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "update storage.objects set name = $3, updated_at = now()
          where bucket_id = $1 and name = $2
          returning {OBJECT_COLUMNS}"
    ))
    .bind(bucket_id)
    .bind(from)
    .bind(to)
    .fetch_optional(executor)
    .await?)
}

/// Sort keys a listing accepts (a closed set: the column reaches the SQL text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    CreatedAt,
    UpdatedAt,
    LastAccessedAt,
}

impl SortColumn {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "name" => Self::Name,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "last_accessed_at" => Self::LastAccessedAt,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::LastAccessedAt => "last_accessed_at",
        }
    }
}

/// One folder level of a bucket, as Supabase's `list` shows it.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub bucket_id: &'a str,
    /// `""` for the top, else a folder path ending in `/`.
    pub prefix: &'a str,
    /// Entries whose name at this level starts with this (case-insensitive).
    pub search: &'a str,
    pub limit: i64,
    pub offset: i64,
    pub sort: SortColumn,
    pub descending: bool,
}

/// A file (with its row's fields) or a folder (only a name) at the listed level.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListEntry {
    pub name: String,
    pub id: Option<Uuid>,
    pub metadata: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(raw: &str) -> String {
    raw.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The entries of one level, among the rows the executor's role may SELECT: folders first
/// (as Supabase lists them), then files, each in the order asked.
pub async fn list_objects(
    executor: impl PgExecutor<'_>,
    query: &ListQuery<'_>,
) -> Result<Vec<ListEntry>, StoreError> {
    let order = if query.descending { "desc" } else { "asc" };
    let sort = query.sort.sql();
    let sql = format!(
        "with visible as (
           select o.*, substr(o.name, char_length($2) + 1) as rest
             from storage.objects o
            where o.bucket_id = $1 and o.name like $3 escape '\\'
         ), entries as (
           select split_part(rest, '/', 1) as name, null::uuid as id, null::jsonb as metadata,
                  null::timestamptz as created_at, null::timestamptz as updated_at,
                  null::timestamptz as last_accessed_at, 0 as kind
             from visible where position('/' in rest) > 0
            group by split_part(rest, '/', 1)
           union all
           select rest, id, metadata, created_at, updated_at, last_accessed_at, 1
             from visible where position('/' in rest) = 0
         )
         select name, id, metadata, created_at, updated_at, last_accessed_at
           from entries
          where name ilike $4 escape '\\'
          order by kind, {sort} {order} nulls last, name {order}
          limit $5 offset $6"
    );
    Ok(sqlx::query_as(&sql)
        .bind(query.bucket_id)
        .bind(query.prefix)
        .bind(format!("{}%", like_escape(query.prefix)))
        .bind(format!("{}%", like_escape(query.search)))
        .bind(query.limit)
        .bind(query.offset)
        .fetch_all(executor)
        .await?)
}

/// The objects a meeting links to, as far as the executor's role may see them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MeetingObjects {
    pub meeting_id: Uuid,
    pub chama_id: Uuid,
    pub minutes_id: Option<Uuid>,
    pub minutes_name: Option<String>,
    pub recording_id: Option<Uuid>,
    pub recording_name: Option<String>,
}

/// `None` when the meeting is missing or hidden by RLS.
pub async fn meeting_objects(
    executor: impl PgExecutor<'_>,
    meeting_id: Uuid,
) -> Result<Option<MeetingObjects>, StoreError> {
    Ok(sqlx::query_as(
        "select m.id as meeting_id, m.chama_id,
                mo.id as minutes_id, mo.name as minutes_name,
                ro.id as recording_id, ro.name as recording_name
           from public.meetings m
           left join storage.objects mo on mo.id = m.minutes_object_id
           left join storage.objects ro on ro.id = m.recording_object_id
          where m.id = $1",
    )
    .bind(meeting_id)
    .fetch_optional(executor)
    .await?)
}

/// A change of one link: leave it, clear it, or point it at an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Keep,
    Clear,
    To(Uuid),
}

impl Link {
    fn parts(self) -> (bool, Option<Uuid>) {
        match self {
            Self::Keep => (false, None),
            Self::Clear => (true, None),
            Self::To(id) => (true, Some(id)),
        }
    }
}

/// Sets the meeting's links (the UPDATE policy: officials). `false` when no row was updated.
pub async fn link_meeting_objects(
    executor: impl PgExecutor<'_>,
    meeting_id: Uuid,
    minutes: Link,
    recording: Link,
) -> Result<bool, StoreError> {
    let (set_minutes, minutes) = minutes.parts();
    let (set_recording, recording) = recording.parts();
    let updated = sqlx::query(
        "update public.meetings set
            minutes_object_id = case when $2 then $3 else minutes_object_id end,
            recording_object_id = case when $4 then $5 else recording_object_id end
          where id = $1",
    )
    .bind(meeting_id)
    .bind(set_minutes)
    .bind(minutes)
    .bind(set_recording)
    .bind(recording)
    .execute(executor)
    .await?;
    Ok(updated.rows_affected() == 1)
}
