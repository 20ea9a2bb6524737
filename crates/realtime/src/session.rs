//! One websocket connection: its channels, its frames in and out, and token expiry.
//!
//! A bad frame never ends the connection: it is answered with an error naming the problem (a
//! `phx_reply` with status `error` when the frame's topic and ref could be read, otherwise a
//! `phx_error` on topic `phoenix`), and the connection goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::hub::{ChannelEntry, Hub};
use crate::identity::Identity;
use crate::join::JoinRequest;
use crate::protocol::{Frame, Vsn, Wire};

/// At most this many channels per connection.
const MAX_CHANNELS: usize = 100;

/// What the connection itself was opened with: the API key's identity, and an access token
/// from the query string, used when a join carries none.
#[derive(Debug, Clone)]
pub struct ConnectionAuth {
    pub api_identity: Identity,
    pub access_token: Option<String>,
}

struct Session {
    hub: Arc<Hub>,
    vsn: Vsn,
    auth: ConnectionAuth,
    channels: HashMap<String, Arc<ChannelEntry>>,
    outbox: mpsc::Sender<Frame>,
}

/// Runs a connection until the client closes it (or is too slow to keep up).
pub async fn run(hub: Arc<Hub>, mut socket: WebSocket, vsn: Vsn, auth: ConnectionAuth) {
    let (outbox, mut inbox) = mpsc::channel::<Frame>(hub.config.send_queue.max(1));
    let mut session = Session {
        hub,
        vsn,
        auth,
        channels: HashMap::new(),
        outbox,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let replies = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(message)) => match session.on_message(message).await {
                    Some(replies) => replies,
                    None => break,
                },
                Some(Err(err)) => {
                    tracing::debug!(%err, "realtime socket ended");
                    break;
                }
                None => break,
            },
            Some(frame) = inbox.recv() => vec![frame],
            _ = tick.tick() => {
                if session.overflowed() {
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: "client too slow: frames were dropped".into(),
                    }))).await;
                    break;
                }
                session.expire_tokens()
            }
        };
        if send_all(&mut socket, session.vsn, replies).await.is_err() {
            break;
        }
    }
    session.leave_all();
}

async fn send_all(socket: &mut WebSocket, vsn: Vsn, frames: Vec<Frame>) -> Result<(), ()> {
    for frame in frames {
        let message = match frame.encode(vsn) {
            Wire::Text(text) => Message::Text(text.into()),
            Wire::Binary(bytes) => Message::Binary(bytes.into()),
        };
        socket.send(message).await.map_err(|_| ())?;
    }
    Ok(())
}

fn phoenix_error(reason: String) -> Frame {
    Frame::new("phoenix", "phx_error", json!({ "reason": reason }))
}

fn error_reply(request: &Frame, reason: impl Into<String>) -> Frame {
    Frame::reply(request, false, json!({ "reason": reason.into() }))
}

/// The channel name of a topic (`realtime:room1` → `room1`), as `system` messages name it.
fn channel_name(topic: &str) -> &str {
    topic.strip_prefix("realtime:").unwrap_or(topic)
}

impl Session {
    /// Handles one websocket message; `None` ends the connection.
    async fn on_message(&mut self, message: Message) -> Option<Vec<Frame>> {
        let limit = self.hub.config.max_frame_bytes;
        let frame = match message {
            Message::Text(text) if text.len() > limit => {
                return Some(vec![phoenix_error(format!(
                    "frame of {} bytes refused: the limit is {limit} bytes",
                    text.len()
                ))]);
            }
            Message::Binary(bytes) if bytes.len() > limit => {
                return Some(vec![phoenix_error(format!(
                    "frame of {} bytes refused: the limit is {limit} bytes",
                    bytes.len()
                ))]);
            }
            Message::Text(text) => Frame::decode_text(self.vsn, text.as_str()),
            Message::Binary(bytes) if self.vsn == Vsn::V2 => Frame::decode_binary(&bytes),
            Message::Binary(_) => Err("binary frames need vsn 2.0.0".to_owned()),
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => return Some(Vec::new()),
        };
        Some(match frame {
            Ok(frame) => self.on_frame(frame).await,
            Err(reason) => vec![phoenix_error(reason)],
        })
    }

    async fn on_frame(&mut self, frame: Frame) -> Vec<Frame> {
        if frame.topic == "phoenix" {
            return if frame.event == "heartbeat" {
                vec![Frame::reply(&frame, true, json!({}))]
            } else {
                vec![error_reply(
                    &frame,
                    format!("unknown event {:?} on topic phoenix", frame.event),
                )]
            };
        }
        if frame.event == "phx_join" {
            return self.join(frame).await;
        }
        let Some(channel) = self.channels.get(&frame.topic).cloned() else {
            return vec![error_reply(&frame, "unmatched topic")];
        };
        match frame.event.as_str() {
            "phx_leave" => {
                self.leave(&frame.topic);
                let mut close = Frame::new(&frame.topic, "phx_close", json!({}));
                close.join_ref = channel.join_ref.clone();
                vec![Frame::reply(&frame, true, json!({})), close]
            }
            "access_token" => self.refresh(&channel, &frame).await,
            "broadcast" => {
                if !frame.payload.is_object() || frame.payload.get("event").is_none() {
                    return vec![error_reply(
                        &frame,
                        "broadcast payloads are {type: \"broadcast\", event, payload}",
                    )];
                }
                self.hub.broadcast(&channel, &frame.payload);
                if channel.broadcast_ack {
                    vec![Frame::reply(&frame, true, json!({}))]
                } else {
                    Vec::new()
                }
            }
            "presence" => vec![error_reply(
                &frame,
                "presence is not supported by this server",
            )],
            other => vec![error_reply(&frame, format!("unknown event {other:?}"))],
        }
    }

    async fn join(&mut self, frame: Frame) -> Vec<Frame> {
        if !frame.topic.starts_with("realtime:") || frame.topic.len() <= "realtime:".len() {
            return vec![error_reply(&frame, "topics are realtime:<channel name>")];
        }
        let catalog = match self.hub.started().await {
            Ok(catalog) => catalog,
            Err(err) => {
                tracing::error!(%err, "realtime is unavailable");
                return vec![error_reply(
                    &frame,
                    "realtime is unavailable: the database cannot be reached",
                )];
            }
        };
        let request = match JoinRequest::parse(&frame.payload, &catalog) {
            Ok(request) => request,
            Err(reason) => return vec![error_reply(&frame, reason)],
        };
        let identity = match request
            .access_token
            .as_deref()
            .or(self.auth.access_token.as_deref())
        {
            Some(token) => match self.verify_live(token).await {
                Ok(identity) => identity,
                Err(reason) => return vec![error_reply(&frame, reason)],
            },
            None => self.auth.api_identity.clone(),
        };
        if !self.channels.contains_key(&frame.topic) && self.channels.len() >= MAX_CHANNELS {
            return vec![error_reply(
                &frame,
                format!("at most {MAX_CHANNELS} channels per connection"),
            )];
        }
        // A second join of the same topic replaces the first, as Phoenix does.
        self.leave(&frame.topic);
        let entry = Arc::new(ChannelEntry {
            key: self.hub.next_key(),
            topic: frame.topic.clone(),
            join_ref: frame.join_ref.clone(),
            bindings: request.bindings.clone(),
            broadcast_self: request.broadcast_self,
            broadcast_ack: request.broadcast_ack,
            identity: RwLock::new(Arc::new(identity)),
            outbox: self.outbox.clone(),
            overflowed: AtomicBool::new(false),
        });
        self.hub.register(entry.clone());
        self.channels.insert(frame.topic.clone(), entry);
        let mut replies = vec![Frame::reply(&frame, true, request.reply())];
        if !request.bindings.is_empty() {
            let mut system = Frame::new(
                &frame.topic,
                "system",
                json!({ "extension": "postgres_changes", "status": "ok",
                        "message": "Subscribed to PostgreSQL",
                        "channel": channel_name(&frame.topic) }),
            );
            system.join_ref = frame.join_ref.clone();
            replies.push(system);
        }
        replies
    }

    /// `access_token`: a valid token replaces the channel's identity; an invalid or expired
    /// one closes the channel, as Supabase does.
    async fn refresh(&mut self, channel: &Arc<ChannelEntry>, frame: &Frame) -> Vec<Frame> {
        let token = frame.payload.get("access_token").and_then(Value::as_str);
        let result = match token {
            Some(token) => self.verify_live(token).await,
            None => Err("access_token events carry {access_token: <jwt>}".to_owned()),
        };
        match result {
            Ok(identity) => {
                if let Ok(mut current) = channel.identity.write() {
                    *current = Arc::new(identity);
                }
                vec![Frame::reply(frame, true, json!({}))]
            }
            Err(reason) => self.close_channel(channel, &reason),
        }
    }

    /// A verified identity whose session, for a signed-in user, still speaks for them: a token
    /// of a logged-out session, a banned or a deleted user is refused as the HTTP API refuses
    /// it, however valid its signature.
    async fn verify_live(&self, token: &str) -> Result<Identity, String> {
        let identity = Identity::verify(&self.hub.config.verifier, token)?;
        let (Some(check), Some(user)) = (&self.hub.config.live_check, identity.user_id()) else {
            return Ok(identity);
        };
        let session = identity
            .claims
            .get("session_id")
            .and_then(Value::as_str)
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
            .ok_or("Session from session_id claim in JWT does not exist")?;
        check.check(user, session).await?;
        Ok(identity)
    }

    /// A `system` error naming the reason, then `phx_close`; the channel is gone.
    fn close_channel(&mut self, channel: &Arc<ChannelEntry>, reason: &str) -> Vec<Frame> {
        self.leave(&channel.topic);
        let mut system = Frame::new(
            &channel.topic,
            "system",
            json!({ "extension": "system", "status": "error", "message": reason,
                    "channel": channel_name(&channel.topic) }),
        );
        system.join_ref = channel.join_ref.clone();
        let mut close = Frame::new(&channel.topic, "phx_close", json!({}));
        close.join_ref = channel.join_ref.clone();
        vec![system, close]
    }

    /// Closes every channel whose token has expired.
    fn expire_tokens(&mut self) -> Vec<Frame> {
        let now = chrono::Utc::now().timestamp();
        let expired: Vec<Arc<ChannelEntry>> = self
            .channels
            .values()
            .filter(|c| c.identity().expires_at.is_some_and(|exp| exp <= now))
            .cloned()
            .collect();
        expired
            .iter()
            .flat_map(|channel| self.close_channel(channel, "Token has expired"))
            .collect()
    }

    fn overflowed(&self) -> bool {
        self.channels
            .values()
            .any(|c| c.overflowed.load(Ordering::Relaxed))
    }

    fn leave(&mut self, topic: &str) {
        if let Some(entry) = self.channels.remove(topic) {
            self.hub.unregister(entry.key);
        }
    }

    fn leave_all(&mut self) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            self.leave(&topic);
        }
    }
}
