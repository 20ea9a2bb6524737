//! The database half of realtime: the announce trigger on every published table, small NOTIFY
//! payloads whatever the row's size, and `internal.realtime_visible` answering exactly what RLS
//! lets each identity SELECT (and who may hear of a DELETE).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pesachama_store::realtime::{self, Change, ChangeListener};
use pesachama_testkit::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

const UMOJA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000001);
/// Akinyi: treasurer of Umoja (and a member of Kisumu).
const AKINYI: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000003);
/// Nafula and Chebet: members of Umoja.
const NAFULA: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000007);
const CHEBET: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000009);
/// Njoroge: a member of Kisumu only.
const NJOROGE: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000006);

async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    db
}

fn user(id: Uuid) -> Value {
    json!({"role": "authenticated", "w": [0, 1, 2, 3],
           "claims": {"sub": id, "role": "authenticated", "aud": "authenticated", "app_metadata": {}}})
}

async fn next(listener: &mut ChangeListener) -> Change {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("a change is announced")
        .unwrap()
}

#[tokio::test]
async fn every_published_table_is_listed_with_its_columns() {
    let db = TestDb::new().await;
    let tables = realtime::published_tables(&db.pool).await.unwrap();
    let names: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    assert_eq!(
        names,
        [
            "public.chama_members",
            "public.disbursement_requests",
            "public.meetings",
            "public.notifications",
            "public.transactions"
        ]
    );
    let transactions = tables.iter().find(|t| t.table == "transactions").unwrap();
    assert!(
        transactions
            .columns
            .contains(&("amount".into(), "int8".into()))
    );
    // A domain reports its base type.
    assert!(
        transactions
            .columns
            .contains(&("phone".into(), "text".into()))
    );
}

#[tokio::test]
async fn changes_are_announced_at_commit_with_the_key_only_however_big_the_row() {
    let db = seeded().await;
    let mut listener = ChangeListener::connect(&db.pool).await.unwrap();

    // Rolled back: never announced.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "insert into public.notifications (user_id, type, title) values ($1, 'system', 'x')",
    )
    .bind(NAFULA)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    let body = "m".repeat(50_000);
    let id: Uuid = sqlx::query_scalar(
        "insert into public.notifications (user_id, chama_id, type, title, body)
         values ($1, $2, 'system', 'Big', $3) returning id",
    )
    .bind(NAFULA)
    .bind(UMOJA)
    .bind(&body)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let change = next(&mut listener).await;
    assert_eq!(
        (change.table.as_str(), change.op.as_str(), change.id),
        ("notifications", "INSERT", id)
    );
    assert_eq!(change.chama_id, None, "only a DELETE says whose row it was");

    sqlx::query("delete from public.notifications where id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let change = next(&mut listener).await;
    assert_eq!(change.op, "DELETE");
    assert_eq!(change.user_id, Some(NAFULA));
    assert_eq!(change.chama_id, Some(UMOJA));
    let rows = realtime::current_rows(&db.pool, "public", "notifications", &[id])
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn visibility_is_what_rls_lets_each_identity_select() {
    let db = seeded().await;
    // Nafula's contribution (user_id = Nafula) and a Kisumu meeting.
    let nafula_tx: Uuid = sqlx::query_scalar(
        "select id from public.transactions where chama_id = $1 and user_id = $2 limit 1",
    )
    .bind(UMOJA)
    .bind(NAFULA)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let kisumu_meeting: Uuid = sqlx::query_scalar(
        "insert into public.meetings (chama_id, title, scheduled_for)
         values ('c4a3a000-0000-4000-8000-000000000002', 'Boda AGM', now() + interval '1 day') returning id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let changes = json!([
        {"s": "public", "t": "transactions", "op": "INSERT", "id": nafula_tx},
        {"s": "public", "t": "meetings", "op": "UPDATE", "id": kisumu_meeting},
        {"s": "public", "t": "meetings", "op": "DELETE", "id": Uuid::new_v4(), "c": UMOJA, "u": null},
        {"s": "public", "t": "notifications", "op": "DELETE", "id": Uuid::new_v4(), "c": UMOJA, "u": NAFULA},
    ]);
    let identities = json!([
        user(NAFULA), user(CHEBET), user(AKINYI), user(NJOROGE),
        {"role": "anon", "claims": {"role": "anon"}, "w": [0, 1, 2, 3]},
        // Akinyi again, wanting only the meeting: checked against nothing else.
        {"role": "authenticated", "w": [1],
         "claims": {"sub": AKINYI, "role": "authenticated", "aud": "authenticated", "app_metadata": {}}},
    ]);
    let mut pairs = realtime::visible(&db.pool, &identities, &changes)
        .await
        .unwrap();
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        vec![
            (0, 0), // Nafula: her own contribution
            (0, 2), // ... an Umoja row's delete
            (0, 3), // ... her notification's delete
            (1, 2), // Chebet: not Nafula's contribution, not her notification; Umoja's delete
            (2, 0), // Akinyi, treasurer: the contribution
            (2, 1), // ... the Kisumu meeting (she is a member there too)
            (2, 2), // ... Umoja's delete
            (3, 1), // Njoroge: only the Kisumu meeting
            (5, 1), // Akinyi, asking about the meeting only
        ]
    );
    // In a caller's transaction, the check hands the connection back as the server's role.
    let mut tx = db.pool.begin().await.unwrap();
    let before: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("select * from internal.realtime_visible($1, $2)")
        .bind(&identities)
        .bind(&changes)
        .execute(&mut *tx)
        .await
        .unwrap();
    let after: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(after, before);
    tx.rollback().await.unwrap();
    // The service role never goes through this check: it bypasses RLS.
    let refused = realtime::visible(
        &db.pool,
        &json!([{"role": "service_role", "claims": {}}]),
        &changes,
    )
    .await;
    assert!(refused.is_err());
}

/// The audience of a change (`internal.realtime_audience`) is who the server asks RLS about;
/// anyone RLS would admit but the audience leaves out would silently miss the change. So for
/// every row of every published table in the demo data, and every user, RLS must admit no one
/// outside the audience.
#[tokio::test]
async fn the_audience_of_every_published_row_holds_everyone_rls_admits() {
    let db = seeded().await;
    // A notification, so that table surely has a row.
    sqlx::query(
        "insert into public.notifications (user_id, chama_id, type, title, body)
         values ($1, $2, 'transaction', 'Asante', 'Received')",
    )
    .bind(NAFULA)
    .bind(UMOJA)
    .execute(&db.pool)
    .await
    .unwrap();
    let mut changes = Vec::new();
    for table in realtime::published_tables(&db.pool).await.unwrap() {
        let sql = format!(
            "select id, to_jsonb(r) ->> 'chama_id' as c, to_jsonb(r) ->> 'user_id' as u
               from {}.{} r",
            table.schema, table.table
        );
        let rows: Vec<(Uuid, Option<String>, Option<String>)> =
            sqlx::query_as(&sql).fetch_all(&db.pool).await.unwrap();
        assert!(
            !rows.is_empty(),
            "the demo data has rows in {}",
            table.table
        );
        for (id, chama, user) in rows {
            changes.push(json!({"s": table.schema, "t": table.table, "op": "UPDATE",
                                "id": id, "c": chama, "u": user}));
        }
    }
    let users: Vec<Uuid> = sqlx::query_scalar("select id from auth.users order by id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let every: Vec<usize> = (0..changes.len()).collect();
    let identities: Vec<Value> = users
        .iter()
        .map(|id| {
            json!({"role": "authenticated", "w": every,
                   "claims": {"sub": id, "role": "authenticated", "aud": "authenticated",
                              "app_metadata": {}}})
        })
        .collect();
    let changes = Value::Array(changes);
    let visible = realtime::visible(&db.pool, &Value::Array(identities), &changes)
        .await
        .unwrap();
    let audience: std::collections::HashSet<(usize, Uuid)> = realtime::audience(&db.pool, &changes)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let outside: Vec<(Uuid, &Value)> = visible
        .iter()
        .filter(|(user, change)| !audience.contains(&(*change, users[*user])))
        .map(|(user, change)| (users[*user], &changes[*change]))
        .collect();
    assert!(
        outside.is_empty(),
        "RLS admits users outside the audience: {outside:?}"
    );
    // Not vacuous: RLS admits many, and the audience leaves many users out.
    assert!(visible.len() > 50, "only {} visible pairs", visible.len());
    let all_pairs = users.len() * changes.as_array().unwrap().len();
    assert!(
        audience.len() * 2 < all_pairs,
        "the audience ({}) prunes little of {all_pairs}",
        audience.len()
    );
}
