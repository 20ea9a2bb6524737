//! The Phoenix channel frames Supabase Realtime speaks, in both serializers.
//!
//! - vsn 1.0.0: text frames holding a JSON object `{topic, event, payload, ref, join_ref}`.
//! - vsn 2.0.0: text frames holding a JSON array `[join_ref, ref, topic, event, payload]`, and
//!   binary frames for user broadcasts: kind 3 (client push) and kind 4 (server broadcast).
//!
//! Pure code: no I/O, so every shape is unit-tested here.

use serde_json::{Value, json};

/// The serializer a connection asked for with `?vsn=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// `1.0.0` (also the default when `vsn` is absent, as Phoenix does) or `2.0.0`.
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        match text {
            None | Some("1.0.0") => Ok(Self::V1),
            Some("2.0.0") => Ok(Self::V2),
            Some(other) => Err(format!(
                "unsupported vsn {other:?}: this server speaks 1.0.0 and 2.0.0"
            )),
        }
    }
}

/// One Phoenix message.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// A frame as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    Text(String),
    Binary(Vec<u8>),
}

/// Binary message kinds of the 2.0.0 serializer.
const KIND_USER_BROADCAST_PUSH: u8 = 3;
const KIND_USER_BROADCAST: u8 = 4;
const ENCODING_BINARY: u8 = 0;
const ENCODING_JSON: u8 = 1;

impl Frame {
    pub fn new(topic: impl Into<String>, event: impl Into<String>, payload: Value) -> Self {
        Self {
            join_ref: None,
            reference: None,
            topic: topic.into(),
            event: event.into(),
            payload,
        }
    }

    /// A `phx_reply` to `request`: `{status, response}` with the request's refs and topic.
    pub fn reply(request: &Frame, ok: bool, response: Value) -> Self {
        Self {
            join_ref: request.join_ref.clone(),
            reference: request.reference.clone(),
            topic: request.topic.clone(),
            event: "phx_reply".to_owned(),
            payload: json!({ "status": if ok { "ok" } else { "error" }, "response": response }),
        }
    }

    /// Decodes a text frame.
    pub fn decode_text(vsn: Vsn, text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| format!("the frame is not JSON: {err}"))?;
        match vsn {
            Vsn::V1 => {
                let Value::Object(map) = value else {
                    return Err(
                        "vsn 1.0.0 frames are JSON objects {topic, event, payload, ref, join_ref}"
                            .to_owned(),
                    );
                };
                Ok(Self {
                    join_ref: optional_ref(map.get("join_ref"), "join_ref")?,
                    reference: optional_ref(map.get("ref"), "ref")?,
                    topic: required_string(map.get("topic"), "topic")?,
                    event: required_string(map.get("event"), "event")?,
                    payload: map.get("payload").cloned().unwrap_or_else(|| json!({})),
                })
            }
            Vsn::V2 => {
                let Value::Array(items) = value else {
                    return Err(
                        "vsn 2.0.0 frames are JSON arrays [join_ref, ref, topic, event, payload]"
                            .to_owned(),
                    );
                };
                if items.len() != 5 {
                    return Err(format!(
                        "vsn 2.0.0 frames have 5 elements [join_ref, ref, topic, event, payload], not {}",
                        items.len()
                    ));
                }
                Ok(Self {
                    join_ref: optional_ref(items.first(), "join_ref")?,
                    reference: optional_ref(items.get(1), "ref")?,
                    topic: required_string(items.get(2), "topic")?,
                    event: required_string(items.get(3), "event")?,
                    payload: items.get(4).cloned().unwrap_or_else(|| json!({})),
                })
            }
        }
    }

    /// Decodes a 2.0.0 binary frame. Only kind 3 (a client's user broadcast) is accepted; it
    /// becomes the same `broadcast` frame a text push makes: `{type, event, payload}`.
    pub fn decode_binary(bytes: &[u8]) -> Result<Self, String> {
        let (&kind, rest) = bytes
            .split_first()
            .ok_or_else(|| "empty binary frame".to_owned())?;
        if kind != KIND_USER_BROADCAST_PUSH {
            return Err(format!(
                "binary frames of kind {kind} are not accepted (only 3, a user broadcast push)"
            ));
        }
        if rest.len() < 6 {
            return Err("binary broadcast frame shorter than its header".to_owned());
        }
        let lengths: Vec<usize> = rest[..5].iter().map(|&b| usize::from(b)).collect();
        let encoding = rest[5];
        let mut cursor = &rest[6..];
        let mut strings = Vec::with_capacity(5);
        for (length, name) in lengths
            .iter()
            .zip(["join_ref", "ref", "topic", "event", "metadata"])
        {
            if cursor.len() < *length {
                return Err(format!("binary broadcast frame ends inside its {name}"));
            }
            let (head, tail) = cursor.split_at(*length);
            let text = std::str::from_utf8(head)
                .map_err(|_| format!("the {name} of a binary broadcast frame is not UTF-8"))?;
            strings.push(text.to_owned());
            cursor = tail;
        }
        let payload = match encoding {
            ENCODING_JSON => serde_json::from_slice(cursor).map_err(|err| {
                format!("the JSON payload of a binary broadcast is invalid: {err}")
            })?,
            ENCODING_BINARY => Value::String(
                String::from_utf8(cursor.to_vec())
                    .map_err(|_| "binary broadcast payloads must be UTF-8 here".to_owned())?,
            ),
            other => return Err(format!("unknown payload encoding {other}")),
        };
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        let mut broadcast = json!({ "type": "broadcast", "event": strings[3], "payload": payload });
        if !strings[4].is_empty()
            && let Ok(meta) = serde_json::from_str::<Value>(&strings[4])
        {
            broadcast["meta"] = meta;
        }
        Ok(Self {
            join_ref: non_empty(&strings[0]),
            reference: non_empty(&strings[1]),
            topic: strings[2].clone(),
            event: "broadcast".to_owned(),
            payload: broadcast,
        })
    }

    /// Encodes for a connection. A user broadcast to a 2.0.0 client is a binary kind-4 frame
    /// when its topic and event fit the one-byte lengths; everything else is text.
    pub fn encode(&self, vsn: Vsn) -> Wire {
        match vsn {
            Vsn::V1 => Wire::Text(
                json!({
                    "topic": self.topic,
                    "event": self.event,
                    "payload": self.payload,
                    "ref": self.reference,
                    "join_ref": self.join_ref,
                })
                .to_string(),
            ),
            Vsn::V2 => {
                if self.event == "broadcast"
                    && let Some(binary) = self.encode_user_broadcast()
                {
                    return Wire::Binary(binary);
                }
                Wire::Text(
                    json!([
                        self.join_ref,
                        self.reference,
                        self.topic,
                        self.event,
                        self.payload
                    ])
                    .to_string(),
                )
            }
        }
    }

    fn encode_user_broadcast(&self) -> Option<Vec<u8>> {
        let event = self.payload.get("event")?.as_str()?;
        let payload = self.payload.get("payload")?;
        let topic = u8::try_from(self.topic.len()).ok()?;
        let event_len = u8::try_from(event.len()).ok()?;
        let body = payload.to_string();
        let mut out = Vec::with_capacity(5 + self.topic.len() + event.len() + body.len());
        out.extend_from_slice(&[KIND_USER_BROADCAST, topic, event_len, 0, ENCODING_JSON]);
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(body.as_bytes());
        Some(out)
    }
}

fn required_string(value: Option<&Value>, name: &str) -> Result<String, String> {
    match value {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        _ => Err(format!("the frame's {name} must be a non-empty string")),
    }
}

/// Refs are strings in Phoenix; numbers are tolerated (some clients send them).
fn optional_ref(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(format!("the frame's {name} must be a string or null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_frames_are_objects_both_ways() {
        let frame = Frame::decode_text(
            Vsn::V1,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3","join_ref":null}"#,
        )
        .unwrap();
        assert_eq!(frame.topic, "phoenix");
        assert_eq!(frame.reference.as_deref(), Some("3"));
        let Wire::Text(text) = Frame::reply(&frame, true, json!({})).encode(Vsn::V1) else {
            panic!("text expected");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"topic":"phoenix","event":"phx_reply","ref":"3","join_ref":null,
                   "payload":{"status":"ok","response":{}}})
        );
    }

    #[test]
    fn v2_frames_are_arrays_both_ways() {
        let frame = Frame::decode_text(Vsn::V2, r#"[null,"7","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(frame.join_ref, None);
        let Wire::Text(text) = Frame::reply(&frame, true, json!({})).encode(Vsn::V2) else {
            panic!("text expected");
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!([null, "7", "phoenix", "phx_reply", {"status":"ok","response":{}}])
        );
    }

    #[test]
    fn malformed_frames_say_what_is_wrong() {
        assert!(
            Frame::decode_text(Vsn::V1, "not json")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            Frame::decode_text(Vsn::V1, "[1,2]")
                .unwrap_err()
                .contains("objects")
        );
        assert!(
            Frame::decode_text(Vsn::V2, r#"{"topic":"x"}"#)
                .unwrap_err()
                .contains("arrays")
        );
        assert!(
            Frame::decode_text(Vsn::V2, r#"[null,"1","t"]"#)
                .unwrap_err()
                .contains("5 elements")
        );
        assert!(
            Frame::decode_text(Vsn::V2, r#"[null,"1","","e",{}]"#)
                .unwrap_err()
                .contains("topic")
        );
        assert!(
            Frame::decode_text(Vsn::V2, r#"[{},"1","t","e",{}]"#)
                .unwrap_err()
                .contains("join_ref")
        );
    }

    #[test]
    fn binary_user_broadcast_push_decodes_to_a_broadcast() {
        let (join_ref, reference, topic, event, meta) = ("1", "2", "realtime:room", "cursor", "");
        let payload = br#"{"x":1}"#;
        let mut bytes = vec![
            3,
            join_ref.len() as u8,
            reference.len() as u8,
            topic.len() as u8,
            event.len() as u8,
            meta.len() as u8,
            1,
        ];
        for part in [join_ref, reference, topic, event, meta] {
            bytes.extend_from_slice(part.as_bytes());
        }
        bytes.extend_from_slice(payload);
        let frame = Frame::decode_binary(&bytes).unwrap();
        assert_eq!(frame.topic, "realtime:room");
        assert_eq!(frame.event, "broadcast");
        assert_eq!(frame.reference.as_deref(), Some("2"));
        assert_eq!(
            frame.payload,
            json!({"type":"broadcast","event":"cursor","payload":{"x":1}})
        );
        assert!(
            Frame::decode_binary(&bytes[..9])
                .unwrap_err()
                .contains("ends inside")
        );
        assert!(
            Frame::decode_binary(&[0, 1])
                .unwrap_err()
                .contains("kind 0")
        );
        assert!(Frame::decode_binary(&[]).is_err());
    }

    #[test]
    fn broadcasts_to_v2_clients_are_binary_kind_4() {
        let frame = Frame::new(
            "realtime:room",
            "broadcast",
            json!({"type":"broadcast","event":"cursor","payload":{"x":1}}),
        );
        let Wire::Binary(bytes) = frame.encode(Vsn::V2) else {
            panic!("binary expected");
        };
        assert_eq!(&bytes[..5], &[4, 13, 6, 0, 1]);
        assert_eq!(&bytes[5..18], b"realtime:room");
        assert_eq!(&bytes[18..24], b"cursor");
        assert_eq!(&bytes[24..], br#"{"x":1}"#);
        // v1 clients get the same broadcast as a JSON object.
        assert!(matches!(frame.encode(Vsn::V1), Wire::Text(_)));
    }

    #[test]
    fn vsn_defaults_to_1_and_refuses_others() {
        assert_eq!(Vsn::parse(None).unwrap(), Vsn::V1);
        assert_eq!(Vsn::parse(Some("2.0.0")).unwrap(), Vsn::V2);
        assert!(Vsn::parse(Some("3.0.0")).unwrap_err().contains("3.0.0"));
    }
}
