//! The messages of a running stream besides media data: the client's event subscription
//! and ready acknowledgement, the server's event, stream-state and session-state updates
//! on signaling, and keep-alives on every socket.
//!
//! After its media handshakes the client sends `EVENT_SUBSCRIPTION` (5),
//! `{events: [{event_type, subscribe}]}`, and `CLIENT_READY_ACK` (7) with its
//! `rtms_stream_id`; the server starts media after the ready acknowledgement. Event
//! updates (6) carry one `event` object with its `event_type` (see
//! [`crate::rtms::msg::event_type`]) and `timestamp`. Stream state updates (8) carry
//! `rtms_stream_id`, `state`, `reason` and `timestamp`; session state updates (9)
//! `rtms_session_id`, `state`, `stop_reason` and `timestamp` (see
//! [`crate::rtms::states`]). The server sends `KEEP_ALIVE_REQ` (12) with a `sequence`
//! and a `timestamp` (ms) on every socket; the client answers each at once with
//! `KEEP_ALIVE_RESP` (13) echoing both exactly as they came, and a socket that stops
//! answering is dropped.

use serde_json::{json, Value};

use super::msg;

/// `CLIENT_READY_ACK`.
pub fn ready_ack(stream_id: &str) -> Value {
    json!({ "msg_type": msg::CLIENT_READY_ACK, "rtms_stream_id": stream_id })
}

/// `EVENT_SUBSCRIPTION` subscribing to `event_types`.
pub fn event_subscription(event_types: &[u32]) -> Value {
    let events: Vec<Value> = event_types
        .iter()
        .map(|t| json!({ "event_type": t, "subscribe": true }))
        .collect();
    json!({ "msg_type": msg::EVENT_SUBSCRIPTION, "events": events })
}

/// The `(event_type, subscribe)` pairs of an `EVENT_SUBSCRIPTION`, in order; an entry
/// without `subscribe` subscribes, one without a numeric `event_type` is skipped.
pub fn subscriptions(message: &Value) -> Vec<(u32, bool)> {
    message["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|entry| {
            let event_type = entry["event_type"].as_u64()? as u32;
            Some((event_type, entry["subscribe"].as_bool().unwrap_or(true)))
        })
        .collect()
}

/// `KEEP_ALIVE_REQ`.
pub fn keep_alive_request(sequence: u64, timestamp: u64) -> Value {
    json!({"msg_type": msg::KEEP_ALIVE_REQ, "sequence": sequence, "timestamp": timestamp})
}

/// `KEEP_ALIVE_RESP` echoing a request's `sequence` and `timestamp` verbatim (a field
/// given as `None` is left out).
pub fn keep_alive_response(sequence: Option<&Value>, timestamp: Option<&Value>) -> Value {
    let mut out = json!({ "msg_type": msg::KEEP_ALIVE_RESP });
    if let Some(seq) = sequence {
        out["sequence"] = seq.clone();
    }
    if let Some(ts) = timestamp {
        out["timestamp"] = ts.clone();
    }
    out
}

/// `EVENT_SUBSCRIPTION` with explicit `(event_type, subscribe)` pairs.
pub fn event_subscription_changes(changes: &[(u32, bool)]) -> Value {
    let events: Vec<Value> = changes
        .iter()
        .map(|(t, on)| json!({ "event_type": t, "subscribe": on }))
        .collect();
    json!({ "msg_type": msg::EVENT_SUBSCRIPTION, "events": events })
}

/// `STREAM_CLOSE_REQ`: the client asks Zoom to end the stream. Zoom answers
/// `STREAM_CLOSE_RESP` (22), then the stream state TERMINATED with stop reason 20
/// (receiver request close).
pub fn stream_close_request(stream_id: &str) -> Value {
    json!({ "msg_type": msg::STREAM_CLOSE_REQ, "rtms_stream_id": stream_id })
}

/// `STREAM_CLOSE_RESP`.
pub fn stream_close_response(
    stream_id: &str,
    status_code: u32,
    reason: &str,
    timestamp: u64,
) -> Value {
    json!({
        "msg_type": msg::STREAM_CLOSE_RESP,
        "rtms_stream_id": stream_id,
        "status_code": status_code,
        "reason": reason,
        "timestamp": timestamp,
    })
}

/// `VIDEO_SUBSCRIPTION_REQ`: the individual video (`data_opt` 4) follows `user_id`
/// (`subscribe` true; one participant at a time, a new request replaces the previous)
/// or stops (`false`).
pub fn video_subscription_request(user_id: u32, subscribe: bool, timestamp: u64) -> Value {
    json!({
        "msg_type": msg::VIDEO_SUBSCRIPTION_REQ,
        "user_id": user_id,
        "subscribe": subscribe,
        "timestamp": timestamp,
    })
}

/// `VIDEO_SUBSCRIPTION_RESP` (status 44: a duplicate subscription, harmless).
pub fn video_subscription_response(
    user_id: u32,
    status_code: u32,
    reason: &str,
    timestamp: u64,
) -> Value {
    json!({
        "msg_type": msg::VIDEO_SUBSCRIPTION_RESP,
        "user_id": user_id,
        "status_code": status_code,
        "reason": reason,
        "timestamp": timestamp,
    })
}

/// `EVENT_UPDATE` carrying `event`.
pub fn event_update(event: Value) -> Value {
    json!({"msg_type": msg::EVENT_UPDATE, "event": event})
}

/// `STREAM_STATE_UPDATE`.
pub fn stream_state_update(stream_id: &str, state: u32, reason: u32, timestamp: u64) -> Value {
    json!({
        "msg_type": msg::STREAM_STATE_UPDATE,
        "rtms_stream_id": stream_id,
        "state": state,
        "reason": reason,
        "timestamp": timestamp,
    })
}

/// `SESSION_STATE_UPDATE`.
pub fn session_state_update(
    session_id: &str,
    state: u32,
    stop_reason: u32,
    timestamp: u64,
) -> Value {
    json!({
        "msg_type": msg::SESSION_STATE_UPDATE,
        "rtms_session_id": session_id,
        "state": state,
        "stop_reason": stop_reason,
        "timestamp": timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtms::msg::event_type;

    #[test]
    fn a_subscription_reads_back_as_built() {
        let types = [
            event_type::ACTIVE_SPEAKER_CHANGE,
            event_type::PARTICIPANT_JOIN,
        ];
        let built = event_subscription(&types);
        assert_eq!(built["msg_type"], 5);
        assert_eq!(subscriptions(&built), vec![(2, true), (3, true)]);
        let loose = json!({"msg_type": 5, "events": [
            {"event_type": 4, "subscribe": false}, {"event_type": "x"}, {"event_type": 7}
        ]});
        assert_eq!(subscriptions(&loose), vec![(4, false), (7, true)]);
        assert!(subscriptions(&json!({"msg_type": 5})).is_empty());
    }

    #[test]
    fn keep_alive_echoes_both_fields_verbatim() {
        let request = keep_alive_request(7, 1752345678901);
        assert_eq!(
            keep_alive_response(request.get("sequence"), request.get("timestamp")),
            json!({"msg_type": 13, "sequence": 7, "timestamp": 1752345678901u64})
        );
        assert_eq!(
            keep_alive_response(Some(&json!("7")), None),
            json!({"msg_type": 13, "sequence": "7"})
        );
    }

    #[test]
    fn state_updates_carry_their_ids() {
        assert_eq!(
            stream_state_update("s", 4, 6, 10),
            json!({"msg_type": 8, "rtms_stream_id": "s", "state": 4, "reason": 6, "timestamp": 10})
        );
        assert_eq!(
            session_state_update("x", 5, 6, 10),
            json!({"msg_type": 9, "rtms_session_id": "x", "state": 5, "stop_reason": 6, "timestamp": 10})
        );
        assert_eq!(
            ready_ack("s"),
            json!({"msg_type": 7, "rtms_stream_id": "s"})
        );
        assert_eq!(
            stream_close_request("s"),
            json!({"msg_type": 21, "rtms_stream_id": "s"})
        );
        assert_eq!(stream_close_response("s", 0, "OK", 5)["msg_type"], 22);
        assert_eq!(
            video_subscription_request(7, true, 5),
            json!({"msg_type": 28, "user_id": 7, "subscribe": true, "timestamp": 5})
        );
        assert_eq!(
            video_subscription_response(7, 44, "dup", 5)["status_code"],
            44
        );
        assert_eq!(
            subscriptions(&event_subscription_changes(&[(8, true), (9, false)])),
            vec![(8, true), (9, false)]
        );
        assert_eq!(
            event_update(json!({"event_type": 1})),
            json!({"msg_type": 6, "event": {"event_type": 1}})
        );
    }
}
