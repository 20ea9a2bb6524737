//! The channel protocol over a real websocket: heartbeats, broadcast between clients of both
//! serializers, access-token refresh and expiry, leaving, and bad input refused while the
//! connection stays healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use pesachama_testkit::TestApp;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn heartbeat_ok(client: &mut Client) {
    let reference = client.push(None, "phoenix", "heartbeat", json!({})).await;
    let reply = client.reply_to(&reference).await;
    assert_eq!(reply.topic, "phoenix");
    assert_eq!(reply.payload, json!({"status": "ok", "response": {}}));
}

#[tokio::test]
async fn heartbeats_are_answered_in_both_serializers() {
    let app = TestApp::spawn().await;
    for vsn in ["1.0.0", "2.0.0"] {
        let mut client = Client::connect(app.address, vsn).await;
        let reference = client.push(None, "phoenix", "heartbeat", json!({})).await;
        let reply = client.reply_to(&reference).await;
        assert_eq!(reply.join_ref, serde_json::Value::Null);
        assert_eq!(reply.event, "phx_reply");
        assert_eq!(reply.payload, json!({"status": "ok", "response": {}}));
    }
}

#[tokio::test]
async fn broadcasts_reach_the_channels_clients_on_every_server_instance_in_order() {
    let app = TestApp::spawn().await;
    let (second, stop) = second_instance(&app).await;
    let mut here = Client::connect(app.address, "2.0.0").await;
    here.join_config("realtime:room", None, json!({"broadcast": {"self": false}}))
        .await;
    let mut there = Client::connect(second, "1.0.0").await;
    there
        .join_config("realtime:room", None, json!({"broadcast": {"self": false}}))
        .await;
    let mut other_room = Client::connect(second, "1.0.0").await;
    other_room
        .join_config("realtime:other-room", None, json!({}))
        .await;

    // Small messages travel in the notification; one over NOTIFY's 8000 bytes through the table.
    let big = "x".repeat(20_000);
    for (n, text) in [(1, "hello"), (2, big.as_str()), (3, "after")] {
        here.push(
            Some("1"),
            "realtime:room",
            "broadcast",
            json!({"type": "broadcast", "event": "say", "payload": {"n": n, "text": text}}),
        )
        .await;
    }
    let mut heard = Vec::new();
    for _ in 0..3 {
        let got = there.expect("broadcast").await;
        assert_eq!(got.topic, "realtime:room");
        assert_eq!(got.payload["event"], "say");
        heard.push((
            got.payload["payload"]["n"].as_i64().unwrap(),
            got.payload["payload"]["text"].as_str().unwrap().len(),
        ));
    }
    assert_eq!(heard, [(1, 5), (2, 20_000), (3, 5)], "each once, in order");
    // Once each: the sending instance does not hear its own back through the database, and
    // another topic hears nothing.
    assert!(there.collect("broadcast", QUIET).await.is_empty());
    assert!(here.collect("broadcast", QUIET).await.is_empty());
    assert!(
        other_room
            .collect("broadcast", Duration::from_millis(300))
            .await
            .is_empty()
    );

    // And back the other way.
    there
        .push(
            Some("1"),
            "realtime:room",
            "broadcast",
            json!({"type": "broadcast", "event": "reply", "payload": {"ok": true}}),
        )
        .await;
    let got = here.expect("broadcast").await;
    assert_eq!(got.payload["event"], "reply");
    let _ = stop.send(());
}

#[tokio::test]
async fn broadcasts_reach_the_other_clients_of_the_channel_in_their_own_serializer() {
    let app = TestApp::spawn().await;
    let mut v1 = Client::connect(app.address, "1.0.0").await;
    let reply = v1
        .join_config(
            "realtime:room",
            None,
            json!({"broadcast": {"self": false, "ack": true}}),
        )
        .await;
    assert_eq!(
        reply.payload,
        json!({"status": "ok", "response": {"postgres_changes": []}})
    );
    let mut v2 = Client::connect(app.address, "2.0.0").await;
    let reply = v2
        .join_config("realtime:room", None, json!({"broadcast": {"self": true}}))
        .await;
    assert_eq!(reply.payload["status"], "ok");
    let mut elsewhere = Client::connect(app.address, "1.0.0").await;
    elsewhere
        .join_config("realtime:other-room", None, json!({}))
        .await;

    // realtime-js 2.x sends its broadcasts as binary kind-3 frames.
    let push = user_broadcast_push(
        "1",
        "9",
        "realtime:room",
        "cursor",
        &json!({"x": 10, "y": 20}),
    );
    v2.send_raw(Message::Binary(push.into())).await;
    let got = v1.expect("broadcast").await;
    assert_eq!(got.topic, "realtime:room");
    assert_eq!(
        got.payload,
        json!({"type": "broadcast", "event": "cursor", "payload": {"x": 10, "y": 20}})
    );
    // self: true, so the sender hears its own, as a binary kind-4 frame.
    let own = v2.expect("broadcast").await;
    assert!(own.binary);
    assert_eq!(own.payload["payload"], json!({"x": 10, "y": 20}));

    // A text broadcast from the v1 client, acknowledged (ack: true), not echoed (self: false).
    let reference = v1
        .push(
            Some("1"),
            "realtime:room",
            "broadcast",
            json!({"type": "broadcast", "event": "typing", "payload": {"who": "amina"}}),
        )
        .await;
    let ack = v1.reply_to(&reference).await;
    assert_eq!(ack.payload["status"], "ok");
    let got = v2.expect("broadcast").await;
    assert!(
        got.binary,
        "2.0.0 clients get user broadcasts as binary frames"
    );
    assert_eq!(got.payload["event"], "typing");
    assert_eq!(got.payload["payload"], json!({"who": "amina"}));
    assert!(v1.collect("broadcast", QUIET).await.is_empty());
    assert!(
        elsewhere
            .collect("broadcast", Duration::from_millis(300))
            .await
            .is_empty()
    );

    // After leaving, the channel hears nothing more.
    let reference = v1
        .push(Some("1"), "realtime:room", "phx_leave", json!({}))
        .await;
    assert_eq!(v1.reply_to(&reference).await.payload["status"], "ok");
    v1.expect("phx_close").await;
    let push = user_broadcast_push("1", "10", "realtime:room", "cursor", &json!({}));
    v2.send_raw(Message::Binary(push.into())).await;
    v2.expect("broadcast").await;
    assert!(v1.collect("broadcast", QUIET).await.is_empty());
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_channel_and_an_expired_one_closes_it() {
    let app = demo_app().await;
    let mut client = Client::connect(app.address, "2.0.0").await;
    let changes = json!([{ "event": "*", "schema": "public", "table": "notifications" }]);
    client
        .subscribe("realtime:inbox", &user_token(NAFULA_ID, 3), changes.clone())
        .await;
    let reference = client
        .push(
            Some("1"),
            "realtime:inbox",
            "access_token",
            json!({"access_token": user_token(NAFULA_ID, 600)}),
        )
        .await;
    assert_eq!(client.reply_to(&reference).await.payload["status"], "ok");
    // The first token's expiry passes: the refreshed channel stays open and still delivers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sqlx::query(
        "insert into public.notifications (user_id, type, title) values ($1::uuid, 'system', 'Still here')",
    )
    .bind(NAFULA_ID)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let got = client.expect("postgres_changes").await;
    assert_eq!(got.payload["data"]["record"]["title"], "Still here");

    // A channel whose token is not refreshed is closed when it expires.
    let mut expiring = Client::connect(app.address, "1.0.0").await;
    expiring
        .subscribe("realtime:inbox", &user_token(NAFULA_ID, 2), changes.clone())
        .await;
    let system = expiring.expect("system").await;
    assert_eq!(system.payload["status"], "error");
    assert_eq!(system.payload["message"], "Token has expired");
    expiring.expect("phx_close").await;
    heartbeat_ok(&mut expiring).await;

    // A forged token in a refresh closes the channel too.
    let forged = pesachama_auth::TokenIssuer::hs256(
        b"some-other-secret-that-is-long-enough!!",
        "http://127.0.0.1:3000/auth/v1",
    )
    .sign(
        &json!({"sub": NAFULA_ID, "aud": "authenticated", "role": "authenticated",
                  "exp": 4_102_444_800_i64, "iss": "http://127.0.0.1:3000/auth/v1"}),
    )
    .unwrap();
    client
        .push(
            Some("1"),
            "realtime:inbox",
            "access_token",
            json!({"access_token": forged}),
        )
        .await;
    let system = client.expect("system").await;
    assert_eq!(system.payload["status"], "error");
    assert!(
        system.payload["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    client.expect("phx_close").await;
}

#[tokio::test]
async fn bad_joins_are_refused_with_the_reason_and_the_connection_stays_healthy() {
    let app = demo_app().await;
    let nafula = user_token(NAFULA_ID, 600);
    let mut client = Client::connect(app.address, "2.0.0").await;
    let refused = [
        (
            Some(user_token(NAFULA_ID, -60)),
            json!([]),
            "Token has expired",
        ),
        (Some("not.a.jwt".to_owned()), json!([]), "invalid JWT"),
        (
            Some(nafula.clone()),
            json!([{"event": "*", "schema": "public", "table": "users"}]),
            "not published",
        ),
        (
            Some(nafula.clone()),
            json!([{"event": "*", "schema": "internal", "table": "outbox"}]),
            "no published tables",
        ),
        (
            Some(nafula.clone()),
            json!([{"event": "*", "schema": "public", "table": "transactions", "filter": "pin=eq.1234"}]),
            "does not exist",
        ),
        (
            Some(nafula.clone()),
            json!([{"event": "*", "schema": "public", "table": "transactions", "filter": "amount=eq.lots"}]),
            "not a valid int8",
        ),
        (
            Some(nafula.clone()),
            json!([{"event": "*", "schema": "public", "table": "transactions", "filter": "amount=like.1"}]),
            "not one of",
        ),
        (
            Some(nafula.clone()),
            json!([{"event": "TRUNCATE", "schema": "public"}]),
            "TRUNCATE",
        ),
    ];
    for (token, changes, reason) in refused {
        let reply = client.join("realtime:x", token.as_deref(), changes).await;
        assert_eq!(reply.payload["status"], "error");
        let said = reply.payload["response"]["reason"].as_str().unwrap();
        assert!(said.contains(reason), "{said:?} should say {reason:?}");
    }
    let reference = client
        .push(Some("1"), "room-without-prefix", "phx_join", json!({}))
        .await;
    assert_eq!(client.reply_to(&reference).await.payload["status"], "error");

    // Malformed and oversize frames: an error naming the problem, and the socket lives on.
    for raw in [
        "not json",
        "{\"topic\": \"phoenix\"}",
        "[null, \"1\", \"phoenix\"]",
    ] {
        client.send_raw(Message::Text(raw.into())).await;
        let error = client.expect("phx_error").await;
        assert!(!error.payload["reason"].as_str().unwrap().is_empty());
    }
    client.send_raw(Message::Binary(vec![9, 9, 9].into())).await;
    assert!(
        client.expect("phx_error").await.payload["reason"]
            .as_str()
            .unwrap()
            .contains("kind 9")
    );
    let big = format!(
        "[null,\"1\",\"phoenix\",\"heartbeat\",{{\"pad\":\"{}\"}}]",
        "x".repeat(1_100_000)
    );
    client.send_raw(Message::Text(big.into())).await;
    assert!(
        client.expect("phx_error").await.payload["reason"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    // Pushes to a topic not joined are refused.
    let reference = client
        .push(
            Some("1"),
            "realtime:never",
            "broadcast",
            json!({"event": "e"}),
        )
        .await;
    assert_eq!(
        client.reply_to(&reference).await.payload["response"]["reason"],
        "unmatched topic"
    );
    heartbeat_ok(&mut client).await;
    // And a good join still works on the same connection.
    client
        .subscribe(
            "realtime:x",
            &nafula,
            json!([{"event": "*", "schema": "public", "table": "transactions"}]),
        )
        .await;
}

#[tokio::test]
async fn connections_without_a_valid_api_key_or_vsn_are_refused_over_http() {
    let app = TestApp::spawn().await;
    let cases = [
        ("vsn=1.0.0".to_owned(), 401, "no_api_key"),
        (
            "apikey=nonsense&vsn=1.0.0".to_owned(),
            401,
            "invalid_api_key",
        ),
        // A user's access token is not an API key.
        (
            format!("apikey={}&vsn=1.0.0", user_token(NAFULA_ID, 600)),
            401,
            "invalid_api_key",
        ),
        (
            format!("apikey={}&vsn=3.0.0", anon_key()),
            400,
            "unsupported_vsn",
        ),
    ];
    for (query, status, code) in cases {
        let url = format!("ws://{}/realtime/v1/websocket?{query}", app.address);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{query}");
                let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
                assert!(body.contains(code), "{query}: {body}");
            }
            other => panic!("{query}: expected a refusal, got {other:?}"),
        }
    }
    // The server is still fine.
    let mut client = Client::connect(app.address, "1.0.0").await;
    heartbeat_ok(&mut client).await;
}

/// A token whose signature is good but whose session no longer speaks for its user — logged
/// out, banned — joins nothing and refreshes nothing (issue 29 #5): realtime asks what every
/// HTTP request asks.
#[tokio::test]
async fn a_logged_out_or_banned_users_token_joins_and_refreshes_nothing() {
    let app = demo_app().await;
    let changes = json!([{ "event": "*", "schema": "public", "table": "notifications" }]);
    let token = app.demo_token(CHEBET_MEMBER).await;
    let mut client = Client::connect(app.address, "2.0.0").await;
    client
        .subscribe("realtime:inbox", &token, changes.clone())
        .await;

    let logout = app
        .auth(reqwest::Method::POST, "/logout")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let refused = client
        .join("realtime:again", Some(&token), changes.clone())
        .await;
    assert_eq!(refused.payload["status"], "error");
    assert_eq!(
        refused.payload["response"]["reason"],
        "Session from session_id claim in JWT does not exist"
    );
    // The open channel that presents the ended session's token again is closed.
    client
        .push(
            Some("1"),
            "realtime:inbox",
            "access_token",
            json!({ "access_token": token }),
        )
        .await;
    let system = client.expect("system").await;
    assert_eq!(system.payload["status"], "error");
    client.expect("phx_close").await;

    // A token without a session is no better.
    let now = chrono::Utc::now().timestamp();
    let sessionless = pesachama_auth::TokenIssuer::hs256(
        pesachama_testkit::TEST_JWT_SECRET.as_bytes(),
        "http://127.0.0.1:3000/auth/v1",
    )
    .sign(
        &json!({"sub": NAFULA_ID, "aud": "authenticated", "role": "authenticated",
                  "iat": now, "exp": now + 600, "iss": "http://127.0.0.1:3000/auth/v1"}),
    )
    .unwrap();
    let refused = client
        .join("realtime:bare", Some(&sessionless), changes.clone())
        .await;
    assert_eq!(refused.payload["status"], "error");

    // A banned member's still-valid token is refused at the join.
    sqlx::query(
        "update auth.users set banned_until = now() + interval '1 day' where id = $1::uuid",
    )
    .bind(NAFULA_ID)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let refused = client
        .join(
            "realtime:banned",
            Some(&user_token(NAFULA_ID, 600)),
            changes,
        )
        .await;
    assert_eq!(refused.payload["status"], "error");
    assert_eq!(refused.payload["response"]["reason"], "User is banned");
    heartbeat_ok(&mut client).await;
}
