//! The event WebSocket's envelopes.
//!
//! Every server message is `{"module", "success", "content"}`:
//! - `build_connection` comes first: `success: true` when the token in the URL's query was
//!   accepted, else `success: false` with the reason in `content` (e.g. "Invalid Token"),
//!   followed by a close;
//! - `heartbeat` answers the client's `{"module":"heartbeat"}` (sent every 30 s), with
//!   `content: "live"`;
//! - `message` carries one event: its `content` is a JSON *string* holding the
//!   webhook-shaped `{event, event_ts, payload}`, to be parsed a second time.

use serde::Deserialize;
use serde_json::{json, Value};

/// The module of the first message, saying whether the connection was accepted.
pub const BUILD_CONNECTION: &str = "build_connection";
/// The module of heartbeats and their replies.
pub const HEARTBEAT: &str = "heartbeat";
/// The module of an event.
pub const MESSAGE: &str = "message";

/// What the client sends to keep the connection alive.
pub const CLIENT_HEARTBEAT: &str = r#"{"module":"heartbeat"}"#;

/// One envelope, as read.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// `build_connection`, `heartbeat`, `message` (or something newer).
    pub module: String,
    /// Whether the server reports success (absent on some messages).
    #[serde(default)]
    pub success: Option<bool>,
    /// A reason, `"live"`, or (for `message`) the event as a JSON string.
    #[serde(default)]
    pub content: Value,
}

impl Envelope {
    /// Parses one message's text.
    pub fn parse(text: &str) -> Result<Envelope, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// The event a `message` envelope carries.
#[derive(Debug, Clone, Deserialize)]
pub struct EventBody {
    /// The event name.
    pub event: String,
    /// Zoom's `event_ts` (milliseconds; a number, sometimes a string).
    #[serde(default)]
    pub event_ts: Value,
    /// The payload object.
    #[serde(default)]
    pub payload: Value,
}

impl EventBody {
    /// Parses a `message` envelope's `content`: a JSON string parsed a second time, or,
    /// leniently, an object already.
    pub fn from_content(content: &Value) -> Result<EventBody, serde_json::Error> {
        match content {
            Value::String(s) => serde_json::from_str(s),
            other => serde_json::from_value(other.clone()),
        }
    }
}

/// The server's `build_connection` answer: accepted, or refused with `reason`.
pub fn build_connection(accepted: Result<(), &str>) -> String {
    match accepted {
        Ok(()) => json!({"module": BUILD_CONNECTION, "success": true, "content": "connection established"}),
        Err(reason) => json!({"module": BUILD_CONNECTION, "success": false, "content": reason}),
    }
    .to_string()
}

/// The server's reply to a client heartbeat.
pub fn heartbeat_reply() -> String {
    json!({"module": HEARTBEAT, "success": true, "content": "live"}).to_string()
}

/// A `message` envelope carrying `{event, event_ts, payload}` as a JSON string.
pub fn message(event: &str, event_ts: u64, payload: &Value) -> String {
    let body = json!({"event": event, "event_ts": event_ts, "payload": payload});
    json!({"module": MESSAGE, "success": true, "content": body.to_string()}).to_string()
}

/// Whether a client's message is a heartbeat.
pub fn is_heartbeat(text: &str) -> bool {
    Envelope::parse(text).is_ok_and(|e| e.module == HEARTBEAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_its_event_as_a_string_parsed_twice() {
        let text = message("meeting.started", 7, &json!({"id": "a"}));
        let envelope = Envelope::parse(&text).unwrap();
        assert_eq!(envelope.module, MESSAGE);
        assert!(envelope.content.is_string());
        let body = EventBody::from_content(&envelope.content).unwrap();
        assert_eq!(body.event, "meeting.started");
        assert_eq!(body.event_ts, json!(7));
        assert_eq!(body.payload["id"], "a");
    }

    #[test]
    fn build_connection_says_why_it_refused() {
        let refused = Envelope::parse(&build_connection(Err("Invalid Token"))).unwrap();
        assert_eq!(
            (
                refused.module.as_str(),
                refused.success,
                refused.content.as_str()
            ),
            (BUILD_CONNECTION, Some(false), Some("Invalid Token"))
        );
        let ok = Envelope::parse(&build_connection(Ok(()))).unwrap();
        assert_eq!(ok.success, Some(true));
        assert!(is_heartbeat(CLIENT_HEARTBEAT));
        assert!(!is_heartbeat(
            &heartbeat_reply().replace("heartbeat", "other")
        ));
    }
}
