//! A small Phoenix client over a real websocket (tokio-tungstenite), speaking vsn 1.0.0 or
//! 2.0.0 exactly as realtime-js does, for the realtime integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pesachama_testkit::{TEST_JWT_SECRET, TestApp};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
pub const KISUMU: &str = "c4a3a000-0000-4000-8000-000000000002";
pub const WANJIKU_CHAIR: &str = "wanjiku.kamau@example.co.ke";
pub const AKINYI_TREASURER: &str = "akinyi.achieng@example.co.ke";
pub const NAFULA_ID: &str = "5eed0000-0000-4000-8000-000000000007";
pub const CHEBET_MEMBER: &str = "chebet.langat@example.co.ke";
/// Njoroge is a member of Kisumu only.
pub const NJOROGE_KISUMU: &str = "njoroge.mwangi@example.co.ke";

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(1500);

/// A decoded server frame, whatever the serializer.
#[derive(Debug, Clone)]
pub struct Got {
    pub join_ref: Value,
    pub reference: Value,
    pub topic: String,
    pub event: String,
    pub payload: Value,
    /// Whether it came as a binary frame (a 2.0.0 user broadcast).
    pub binary: bool,
}

pub struct Client {
    pub vsn: &'static str,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
}

/// The demo data, with a live session for every demo user: the one [`user_token`] names.
pub async fn demo_app() -> TestApp {
    let app = TestApp::spawn().await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    sqlx::query(
        "insert into auth.sessions (id, user_id, created_at, updated_at)
         select ('5e5510' || substr(id::text, 7))::uuid, id, now(), now() from auth.users",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    app
}

/// A second server instance on the first one's database: another app with its own pool and
/// LISTEN connection. It stops when the sender is dropped or sent to.
pub async fn second_instance(first: &TestApp) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let pool = pesachama_store::connect(&first.db.url, 5).await.unwrap();
    let state = pesachama_api::AppState::new(pool, TestApp::config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pesachama_api::serve(
        listener,
        pesachama_api::app(state),
        async {
            let _ = stopped.await;
        },
    ));
    (address, stop)
}

pub fn anon_key() -> String {
    TestApp::api_key("anon")
}

/// A token for `sub` signed with the test secret, expiring `ttl` seconds from now, in the
/// session [`demo_app`] opened for `sub`.
pub fn user_token(sub: &str, ttl: i64) -> String {
    let now = chrono_now();
    let session = format!("5e5510{}", &sub[6..]);
    pesachama_auth::TokenIssuer::hs256(TEST_JWT_SECRET.as_bytes(), "http://127.0.0.1:3000/auth/v1")
        .sign(&json!({
            "sub": sub, "aud": "authenticated", "role": "authenticated", "session_id": session,
            "iat": now, "exp": now + ttl, "iss": "http://127.0.0.1:3000/auth/v1",
            "app_metadata": {}, "user_metadata": {},
        }))
        .unwrap()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Client {
    pub async fn connect(address: SocketAddr, vsn: &'static str) -> Self {
        Self::connect_with(address, vsn, &anon_key()).await
    }

    pub async fn connect_with(address: SocketAddr, vsn: &'static str, apikey: &str) -> Self {
        let url = format!("ws://{address}/realtime/v1/websocket?apikey={apikey}&vsn={vsn}");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Self {
            vsn,
            socket,
            next_ref: 1,
        }
    }

    /// Sends a frame; answers its ref.
    pub async fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> String {
        let reference = self.next_ref.to_string();
        self.next_ref += 1;
        let text = if self.vsn == "2.0.0" {
            json!([join_ref, reference, topic, event, payload]).to_string()
        } else {
            json!({"join_ref": join_ref, "ref": reference, "topic": topic, "event": event, "payload": payload})
                .to_string()
        };
        self.socket.send(Message::Text(text.into())).await.unwrap();
        reference
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// The next frame, or `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Got> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => return Some(self.decode_text(&text)),
                Message::Binary(bytes) => return Some(decode_user_broadcast(&bytes)),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    fn decode_text(&self, text: &str) -> Got {
        let value: Value = serde_json::from_str(text).unwrap();
        if self.vsn == "2.0.0" {
            let items = value.as_array().expect("2.0.0 frames are arrays");
            assert_eq!(items.len(), 5, "{text}");
            Got {
                join_ref: items[0].clone(),
                reference: items[1].clone(),
                topic: items[2].as_str().unwrap().to_owned(),
                event: items[3].as_str().unwrap().to_owned(),
                payload: items[4].clone(),
                binary: false,
            }
        } else {
            assert!(value.is_object(), "1.0.0 frames are objects: {text}");
            Got {
                join_ref: value["join_ref"].clone(),
                reference: value["ref"].clone(),
                topic: value["topic"].as_str().unwrap().to_owned(),
                event: value["event"].as_str().unwrap().to_owned(),
                payload: value["payload"].clone(),
                binary: false,
            }
        }
    }

    /// The next frame with `event`, skipping others; panics after [`WAIT`].
    pub async fn expect(&mut self, event: &str) -> Got {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(got) if got.event == event => return got,
                Some(_) => continue,
                None => panic!("no {event} frame arrived"),
            }
        }
    }

    /// Every frame with `event` in the next `wait`.
    pub async fn collect(&mut self, event: &str, wait: Duration) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left).await {
                Some(got) if got.event == event => out.push(got),
                Some(_) => continue,
                None => return out,
            }
        }
    }

    /// The reply to `reference`.
    pub async fn reply_to(&mut self, reference: &str) -> Got {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self.next(left).await.expect("a reply arrives");
            if got.event == "phx_reply" && got.reference == json!(reference) {
                return got;
            }
        }
    }

    /// Joins `topic` with `postgres_changes` bindings; answers the reply.
    pub async fn join(&mut self, topic: &str, token: Option<&str>, changes: Value) -> Got {
        self.join_config(
            topic,
            token,
            json!({"broadcast": {"self": false, "ack": false},
            "presence": {"key": ""}, "postgres_changes": changes, "private": false}),
        )
        .await
    }

    pub async fn join_config(&mut self, topic: &str, token: Option<&str>, config: Value) -> Got {
        let join_ref = self.next_ref.to_string();
        let mut payload = json!({ "config": config });
        if let Some(token) = token {
            payload["access_token"] = json!(token);
        }
        let reference = self.push(Some(&join_ref), topic, "phx_join", payload).await;
        self.reply_to(&reference).await
    }

    /// Joins and expects success: the binding ids in the order sent, after the `system` message.
    pub async fn subscribe(&mut self, topic: &str, token: &str, changes: Value) -> Vec<u64> {
        let reply = self.join(topic, Some(token), changes).await;
        assert_eq!(reply.payload["status"], "ok", "{:?}", reply.payload);
        let ids = reply.payload["response"]["postgres_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_u64().unwrap())
            .collect();
        let system = self.expect("system").await;
        assert_eq!(system.payload["status"], "ok");
        assert_eq!(system.payload["extension"], "postgres_changes");
        ids
    }
}

/// A kind-4 binary frame: kind, topic length, event length, metadata length, encoding, then
/// topic, event, metadata, payload.
fn decode_user_broadcast(bytes: &[u8]) -> Got {
    assert_eq!(bytes[0], 4, "server binary frames are user broadcasts");
    let (topic_len, event_len, meta_len) =
        (bytes[1] as usize, bytes[2] as usize, bytes[3] as usize);
    assert_eq!(bytes[4], 1, "JSON encoding");
    let mut at = 5;
    let topic = std::str::from_utf8(&bytes[at..at + topic_len])
        .unwrap()
        .to_owned();
    at += topic_len;
    let event = std::str::from_utf8(&bytes[at..at + event_len])
        .unwrap()
        .to_owned();
    at += event_len + meta_len;
    let payload: Value = serde_json::from_slice(&bytes[at..]).unwrap();
    Got {
        join_ref: Value::Null,
        reference: Value::Null,
        topic,
        event: "broadcast".to_owned(),
        payload: json!({"type": "broadcast", "event": event, "payload": payload}),
        binary: true,
    }
}

/// A kind-3 binary frame as realtime-js 2.x sends a broadcast.
pub fn user_broadcast_push(
    join_ref: &str,
    reference: &str,
    topic: &str,
    event: &str,
    payload: &Value,
) -> Vec<u8> {
    let body = payload.to_string();
    let mut bytes = vec![
        3,
        join_ref.len() as u8,
        reference.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        1,
    ];
    for part in [join_ref, reference, topic, event] {
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Records a cash contribution through the API as the treasurer of Umoja.
pub async fn contribute(app: &TestApp, token: &str, member: &str, amount: i64, key: &str) -> Value {
    let response = app
        .client
        .post(app.url("/transactions"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({ "chama_id": UMOJA, "member_id": member, "amount": amount, "payment_method": "cash" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}
