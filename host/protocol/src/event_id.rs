//! The content-derived identity of a Zoom event.
//!
//! Zoom may deliver one event more than once: on the event WebSocket *and* as a webhook
//! when both are enabled, and again as a webhook retry (after 5, 20 and 60 minutes when
//! the first delivery was not acknowledged in time). Neither delivery carries an id that
//! the other shares, so the identity is derived from what they do share: the event
//! name, `event_ts`, and the `payload` object. The payload is hashed in a canonical form
//! (object keys sorted, no whitespace), so key order and formatting do not matter.
//!
//! The id is 32 hex digits (the first 128 bits of a SHA-256).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The identity of the event `name` with `event_ts` and `payload`.
pub fn event_id(name: &str, event_ts: u64, payload: &Value) -> String {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(event_ts.to_be_bytes());
    canonical(payload, &mut hash);
    hex::encode(&hash.finalize()[..16])
}

/// [`event_id`] for a payload given as JSON text; text that is not JSON is hashed as it
/// is.
pub fn event_id_of_text(name: &str, event_ts: u64, payload: &str) -> String {
    match serde_json::from_str::<Value>(payload) {
        Ok(value) => event_id(name, event_ts, &value),
        Err(_) => event_id(name, event_ts, &Value::String(payload.to_owned())),
    }
}

/// Feeds `value` to `hash` with object keys in sorted order.
fn canonical(value: &Value, hash: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hash.update(b"{");
            for key in keys {
                hash.update(Value::String(key.clone()).to_string().as_bytes());
                hash.update(b":");
                canonical(&map[key], hash);
                hash.update(b",");
            }
            hash.update(b"}");
        }
        Value::Array(items) => {
            hash.update(b"[");
            for item in items {
                canonical(item, hash);
                hash.update(b",");
            }
            hash.update(b"]");
        }
        scalar => hash.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_formatting_do_not_change_the_id() {
        let a = event_id_of_text("meeting.started", 7, r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#);
        let b = event_id_of_text(
            "meeting.started",
            7,
            "{ \"b\": {\"y\":\"z\", \"x\":[1, 2]},\n \"a\": 1 }",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn name_time_and_payload_each_change_the_id() {
        let base = event_id("meeting.started", 7, &json!({"a": 1}));
        assert_ne!(base, event_id("meeting.ended", 7, &json!({"a": 1})));
        assert_ne!(base, event_id("meeting.started", 8, &json!({"a": 1})));
        assert_ne!(base, event_id("meeting.started", 7, &json!({"a": 2})));
        assert_ne!(base, event_id("meeting.started", 7, &json!({"a": [1]})));
    }

    #[test]
    fn text_that_is_not_json_still_has_an_id() {
        assert_eq!(
            event_id_of_text("x", 1, "not json"),
            event_id_of_text("x", 1, "not json")
        );
    }
}
