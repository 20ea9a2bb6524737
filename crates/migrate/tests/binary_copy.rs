#![allow(clippy::unwrap_used)]

//! The binary COPY path on real PostgreSQL: the same rows written in binary and in text are the
//! same rows, a value without a plain binary form sends its batch as text, and every table the
//! toolkit writes has a binary layout (so a new column type cannot quietly slow the copy down).

use pesachama_migrate::copy::copy_rows;
use pesachama_migrate::pgbinary::{self, Kind, Layouts};
use pesachama_migrate::pgtext::{self, Fields};
use pesachama_migrate::{source, target};
use pesachama_testkit::TestDb;
use sqlx::PgConnection;

const COLUMNS: &[&str] = &[
    "id", "u", "n", "s", "i", "b", "ts", "j", "js", "ip", "arr", "t", "v", "phone", "mood",
];

const BINARY: target::Table = target::Table {
    name: "public.kinds_binary",
    columns: COLUMNS,
    key: "id",
};

async fn setup(db: &TestDb) -> PgConnection {
    let mut conn = source::connect(&db.url, "target").await.unwrap();
    sqlx::raw_sql(
        "set timezone = 'Africa/Nairobi';
         create domain public.phone as text check (value ~ '^\\+[0-9]+$');
         create type public.mood as enum ('calm', 'busy');
         create table public.kinds_binary (
           id integer, u uuid, n bigint, s smallint, i integer, b boolean, ts timestamptz,
           j jsonb, js json, ip inet, arr text[], t text, v varchar(20), phone public.phone,
           mood public.mood);
         create table public.kinds_text (like public.kinds_binary);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

fn row(values: &[Option<&str>]) -> Fields {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

/// Each table's rows as PostgreSQL prints them, sorted.
async fn printed(conn: &mut PgConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("select k::text from {table} k order by id"))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
}

async fn copy_text(conn: &mut PgConnection, rows: &[Fields]) {
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY public.kinds_text ({}) FROM STDIN",
            pesachama_migrate::copy::columns(&BINARY)
        ))
        .await
        .unwrap();
    copy.send(pgtext::encode_rows(rows).into_bytes())
        .await
        .unwrap();
    copy.finish().await.unwrap();
}

#[tokio::test]
async fn binary_and_text_copies_of_the_same_rows_are_the_same_rows() {
    let db = TestDb::empty().await;
    let mut conn = setup(&db).await;
    let rows = vec![
        row(&[
            Some("1"),
            Some("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"),
            Some("-9223372036854775808"),
            Some("-32768"),
            Some("2147483647"),
            Some("t"),
            Some("2024-02-29 23:59:59.999999+00"),
            Some(r#"{"b": [1, 2.50, null], "a": "ü\n\t\\"}"#),
            Some(r#"{"kept":   "as written"}"#),
            Some("192.168.1.7"),
            Some(r#"{"push","sms"}"#),
            Some("tab\there, new line\nand a \\ backslash"),
            Some("twenty characters.."),
            Some("+254700000001"),
            Some("busy"),
        ]),
        row(&[
            Some("2"),
            Some("00000000-0000-0000-0000-000000000000"),
            Some("0"),
            Some("0"),
            Some("-1"),
            Some("false"),
            Some("1970-01-01 03:00:00.5+03"),
            Some("[]"),
            Some("1"),
            Some("2001:db8::1/64"),
            Some("{}"),
            Some(""),
            Some("x"),
            Some("+1"),
            Some("calm"),
        ]),
        row(&[
            Some("3"),
            Some("ffffffff-ffff-ffff-ffff-ffffffffffff"),
            Some("9223372036854775807"),
            Some("32767"),
            Some("0"),
            Some("f"),
            Some("1999-12-31T21:30:00-02:30"),
            Some("\"text\""),
            Some("null"),
            Some("::ffff:10.0.0.1"),
            Some(r#"{plain,"with \"quotes\" and \\","with space"}"#),
            Some("ünïcödé ✓"),
            Some(""),
            None,
            None,
        ]),
        row(&[
            Some("4"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ]),
    ];
    let kinds = Layouts::default()
        .of(&mut conn, BINARY.name, BINARY.columns)
        .await
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(
        kinds,
        [
            Kind::Int4,
            Kind::Uuid,
            Kind::Int8,
            Kind::Int2,
            Kind::Int4,
            Kind::Bool,
            Kind::Timestamptz,
            Kind::Jsonb,
            Kind::Text,
            Kind::Inet,
            Kind::TextArray,
            Kind::Text,
            Kind::Text,
            Kind::Text,
            Kind::Text,
        ]
    );
    // These rows take the binary path (the test would prove nothing if they fell back).
    assert!(pgbinary::encode(&kinds, &rows).is_ok());

    copy_rows(
        &mut conn,
        BINARY.name,
        &BINARY,
        &rows,
        &mut Layouts::default(),
    )
    .await
    .unwrap();
    copy_text(&mut conn, &rows).await;
    let binary = printed(&mut conn, "public.kinds_binary").await;
    assert_eq!(binary.len(), rows.len());
    assert_eq!(binary, printed(&mut conn, "public.kinds_text").await);
    let ts: Vec<String> = sqlx::query_scalar(
        "select coalesce(to_char(ts at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '-') from public.kinds_binary order by id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        ts,
        [
            "2024-02-29 23:59:59.999999",
            "1970-01-01 00:00:00.500000",
            "2000-01-01 00:00:00.000000",
            "-"
        ]
    );
}

#[tokio::test]
async fn a_value_without_a_plain_binary_form_sends_its_batch_as_text() {
    let db = TestDb::empty().await;
    let mut conn = setup(&db).await;
    let mut rows = vec![row(&[Some("1"); 1]); 1];
    rows[0].resize(COLUMNS.len(), None);
    let mut braces = rows[0].clone();
    braces[0] = Some("2".into());
    braces[1] = Some("{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0}".into());
    braces[6] = Some("2024-01-01 12:00:00".into()); // the session's zone decides
    rows.push(braces);
    let mut layouts = Layouts::default();
    let kinds = layouts
        .of(&mut conn, BINARY.name, BINARY.columns)
        .await
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(
        pgbinary::encode(&kinds, &rows),
        Err(pgbinary::Unwritable { column: 1 })
    );
    copy_rows(&mut conn, BINARY.name, &BINARY, &rows, &mut layouts)
        .await
        .unwrap();
    let (u, ts): (String, String) = sqlx::query_as(
        "select u::text, to_char(ts at time zone 'UTC', 'HH24:MI') from public.kinds_binary where id = 2",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(u, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    assert_eq!(ts, "09:00", "read in the session's zone, Africa/Nairobi");

    // A value PostgreSQL refuses is refused with its message, in either format.
    let mut bad = rows[..1].to_vec();
    bad[0][13] = Some("0700 not e164".into());
    let err = copy_rows(&mut conn, BINARY.name, &BINARY, &bad, &mut layouts)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("phone_check"), "{err:#}");
}

#[tokio::test]
async fn every_table_the_toolkit_writes_has_a_binary_layout() {
    let db = TestDb::new().await;
    let mut conn = source::connect(&db.url, "target").await.unwrap();
    let mut layouts = Layouts::default();
    for table in target::ALL {
        let kinds = layouts
            .of(&mut conn, table.name, table.columns)
            .await
            .unwrap();
        assert!(
            kinds.is_some_and(|k| k.len() == table.columns.len()),
            "{} has a column type pgbinary does not write: its batches would go as text",
            table.name
        );
    }
}
