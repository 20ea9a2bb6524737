//! `postgres_changes` end to end: real websocket clients (both vsn) on the real app, changes
//! made through the API or straight in the database, RLS deciding who hears of what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn transactions_of(chama: &str) -> Value {
    json!([{ "event": "INSERT", "schema": "public", "table": "transactions",
             "filter": format!("chama_id=eq.{chama}") }])
}

#[tokio::test]
async fn a_contribution_through_the_api_reaches_the_member_and_officials_but_not_other_members() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let nafula = user_token(NAFULA_ID, 600);
    let chebet = app.demo_token(CHEBET_MEMBER).await;

    let mut member = Client::connect(app.address, "1.0.0").await;
    let reply = member
        .join("realtime:umoja", Some(&nafula), transactions_of(UMOJA))
        .await;
    assert_eq!(reply.payload["status"], "ok");
    let bindings = &reply.payload["response"]["postgres_changes"];
    assert_eq!(bindings[0]["event"], "INSERT");
    assert_eq!(bindings[0]["table"], "transactions");
    assert_eq!(bindings[0]["filter"], format!("chama_id=eq.{UMOJA}"));
    let id = bindings[0]["id"].as_u64().unwrap();
    let system = member.expect("system").await;
    assert_eq!(
        system.payload,
        json!({"extension": "postgres_changes", "status": "ok",
               "message": "Subscribed to PostgreSQL", "channel": "umoja"})
    );
    let mut official = Client::connect(app.address, "2.0.0").await;
    let official_ids = official
        .subscribe("realtime:umoja", &treasurer, transactions_of(UMOJA))
        .await;
    let mut other_member = Client::connect(app.address, "2.0.0").await;
    other_member
        .subscribe("realtime:umoja", &chebet, transactions_of(UMOJA))
        .await;

    let recorded = contribute(&app, &treasurer, NAFULA_ID, 123_400, "rt-1").await;

    let got = member.expect("postgres_changes").await;
    assert_eq!(got.topic, "realtime:umoja");
    assert_eq!(got.payload["ids"], json!([id]));
    let data = &got.payload["data"];
    assert_eq!(data["schema"], "public");
    assert_eq!(data["table"], "transactions");
    assert_eq!(data["type"], "INSERT");
    assert_eq!(data["eventType"], "INSERT");
    assert_eq!(data["record"]["id"], recorded["id"]);
    assert_eq!(data["record"]["amount"], 123_400);
    assert_eq!(data["new"]["amount"], 123_400);
    assert_eq!(data["record"]["user_id"], NAFULA_ID);
    assert!(data["commit_timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        data["columns"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "amount", "type": "int8"}))
    );
    assert_eq!(data["errors"], Value::Null);

    let got = official.expect("postgres_changes").await;
    assert_eq!(got.payload["ids"], json!(official_ids));
    assert_eq!(got.payload["data"]["record"]["id"], recorded["id"]);

    // RLS: a member sees only their own contributions, so Chebet hears nothing of Nafula's.
    assert!(
        other_member
            .collect("postgres_changes", QUIET)
            .await
            .is_empty()
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn filters_and_events_pick_the_changes_a_binding_receives() {
    let app = demo_app().await;
    let chair = app.demo_token(WANJIKU_CHAIR).await;
    let mut client = Client::connect(app.address, "2.0.0").await;
    let ids = client
        .subscribe(
            "realtime:meetings",
            &chair,
            json!([
                { "event": "UPDATE", "schema": "public", "table": "meetings", "filter": "duration_minutes=gte.90" },
                { "event": "INSERT", "schema": "public", "table": "meetings", "filter": format!("chama_id=eq.{KISUMU}") },
                { "event": "*", "schema": "public", "table": "meetings", "filter": "title=in.(AGM,Harambee)" },
            ]),
        )
        .await;

    let meeting: uuid::Uuid = sqlx::query_scalar(
        "insert into public.meetings (chama_id, title, scheduled_for, duration_minutes)
         values ($1::uuid, 'Monthly meeting', now() + interval '3 days', 60) returning id",
    )
    .bind(UMOJA)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    // 60 minutes: no binding matches (Umoja, not Kisumu; not gte 90; title not listed).
    sqlx::query("update public.meetings set duration_minutes = 120 where id = $1")
        .bind(meeting)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let got = client.expect("postgres_changes").await;
    assert_eq!(got.payload["ids"], json!([ids[0]]));
    assert_eq!(got.payload["data"]["type"], "UPDATE");
    assert_eq!(got.payload["data"]["record"]["duration_minutes"], 120);
    assert_eq!(got.payload["data"]["old_record"], json!({"id": meeting}));

    sqlx::query("update public.meetings set title = 'AGM', duration_minutes = 100 where id = $1")
        .bind(meeting)
        .execute(&app.db.pool)
        .await
        .unwrap();
    let got = client.expect("postgres_changes").await;
    let mut both: Vec<u64> = serde_json::from_value(got.payload["ids"].clone()).unwrap();
    both.sort_unstable();
    assert_eq!(
        both,
        vec![ids[0], ids[2]],
        "one message for every matching binding"
    );
    assert!(client.collect("postgres_changes", QUIET).await.is_empty());
}

#[tokio::test]
async fn a_delete_carries_only_the_key_and_reaches_only_whose_row_it_was() {
    let app = demo_app().await;
    let nafula = user_token(NAFULA_ID, 600);
    let chebet = app.demo_token(CHEBET_MEMBER).await;
    let deletes = json!([{ "event": "DELETE", "schema": "public", "table": "notifications" }]);
    let mut owner = Client::connect(app.address, "1.0.0").await;
    let ids = owner
        .subscribe("realtime:inbox", &nafula, deletes.clone())
        .await;
    let mut other = Client::connect(app.address, "1.0.0").await;
    other.subscribe("realtime:inbox", &chebet, deletes).await;

    let notification: uuid::Uuid = sqlx::query_scalar(
        "insert into public.notifications (user_id, chama_id, type, title, body)
         values ($1::uuid, $2::uuid, 'system', 'Hello', 'secret body') returning id",
    )
    .bind(NAFULA_ID)
    .bind(UMOJA)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("delete from public.notifications where id = $1")
        .bind(notification)
        .execute(&app.db.pool)
        .await
        .unwrap();

    let got = owner.expect("postgres_changes").await;
    assert_eq!(got.payload["ids"], json!(ids));
    let data = &got.payload["data"];
    assert_eq!(data["type"], "DELETE");
    assert_eq!(data["old_record"], json!({"id": notification}));
    assert_eq!(data["old"], json!({"id": notification}));
    assert!(data.get("record").is_none());
    assert!(!got.payload.to_string().contains("secret body"));
    assert!(other.collect("postgres_changes", QUIET).await.is_empty());
}

#[tokio::test]
async fn an_outsider_subscribed_to_everything_receives_nothing_of_another_chama() {
    let app = demo_app().await;
    let treasurer = app.demo_token(AKINYI_TREASURER).await;
    let chair = app.demo_token(WANJIKU_CHAIR).await;
    let everything = json!([{ "event": "*", "schema": "public" }]);

    // A member of Kisumu only, a user of no chama, and the anon key alone, each on a v1 and a
    // v2 connection, all listening to every published table.
    let njoroge = app.demo_token(NJOROGE_KISUMU).await;
    let stranger = app
        .auth(reqwest::Method::POST, "/signup")
        .json(&json!({ "email": "stranger@example.com", "password": "tembo-na-twiga-42" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut outsiders = Vec::new();
    for (token, vsn) in [
        (Some(njoroge.as_str()), "1.0.0"),
        (Some(stranger.as_str()), "2.0.0"),
        (None, "2.0.0"),
        (None, "1.0.0"),
    ] {
        let mut client = Client::connect(app.address, vsn).await;
        let reply = client.join("realtime:all", token, everything.clone()).await;
        assert_eq!(reply.payload["status"], "ok");
        client.expect("system").await;
        outsiders.push(client);
    }
    // The chair of Umoja, as the control: the same subscription, and she hears it all.
    let mut insider = Client::connect(app.address, "2.0.0").await;
    insider.subscribe("realtime:all", &chair, everything).await;

    contribute(&app, &treasurer, NAFULA_ID, 50_000, "rt-leak-1").await;
    let meeting = app
        .call(
            reqwest::Method::POST,
            &chair,
            &format!("/chamas/{UMOJA}/meetings"),
            Some(json!({ "title": "Secret planning", "scheduled_for": "2030-01-10T10:00:00Z" })),
        )
        .await;
    assert_eq!(meeting.0, 201, "{:?}", meeting.1);
    sqlx::query(
        "insert into public.notifications (user_id, chama_id, type, title)
         values ('5eed0000-0000-4000-8000-000000000001', $1::uuid, 'system', 'For the chair')",
    )
    .bind(UMOJA)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("delete from public.notifications where chama_id = $1::uuid")
        .bind(UMOJA)
        .execute(&app.db.pool)
        .await
        .unwrap();

    let seen = insider.collect("postgres_changes", QUIET * 2).await;
    let tables: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|g| {
            format!(
                "{}:{}",
                g.payload["data"]["table"].as_str().unwrap(),
                g.payload["data"]["type"].as_str().unwrap()
            )
        })
        .collect();
    assert!(tables.contains("transactions:INSERT"), "{tables:?}");
    assert!(tables.contains("meetings:INSERT"), "{tables:?}");
    assert!(tables.contains("notifications:DELETE"), "{tables:?}");
    for outsider in &mut outsiders {
        let leaked = outsider.collect("postgres_changes", QUIET).await;
        assert!(leaked.is_empty(), "{} leaked {:?}", outsider.vsn, leaked);
    }
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn two_server_instances_on_one_database_each_deliver_to_their_own_clients() {
    let first = demo_app().await;
    let (second, stop) = second_instance(&first).await;

    let treasurer = first.demo_token(AKINYI_TREASURER).await;
    let mut on_first = Client::connect(first.address, "1.0.0").await;
    on_first
        .subscribe("realtime:umoja", &treasurer, transactions_of(UMOJA))
        .await;
    let mut on_second = Client::connect(second, "2.0.0").await;
    on_second
        .subscribe("realtime:umoja", &treasurer, transactions_of(UMOJA))
        .await;

    let recorded = contribute(&first, &treasurer, NAFULA_ID, 7_500, "rt-two-1").await;
    for client in [&mut on_first, &mut on_second] {
        let got = client.collect("postgres_changes", QUIET * 2).await;
        assert_eq!(got.len(), 1, "exactly once on {}", client.vsn);
        assert_eq!(got[0].payload["data"]["record"]["id"], recorded["id"]);
    }
    let _ = stop.send(());
    first.db.assert_ledger_balanced().await;
}
