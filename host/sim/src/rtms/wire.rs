//! RTMS wire messages, server side: message types, status codes, the handshake
//! signature, and the JSON the servers write.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{json, Value};

use super::SimParticipant;

pub(super) const SIGNALING_HAND_SHAKE_REQ: u64 = 1;
pub(super) const SIGNALING_HAND_SHAKE_RESP: u64 = 2;
pub(super) const DATA_HAND_SHAKE_REQ: u64 = 3;
pub(super) const DATA_HAND_SHAKE_RESP: u64 = 4;
pub(super) const EVENT_SUBSCRIPTION: u64 = 5;
pub(super) const EVENT_UPDATE: u64 = 6;
pub(super) const CLIENT_READY_ACK: u64 = 7;
pub(super) const STREAM_STATE_UPDATE: u64 = 8;
pub(super) const SESSION_STATE_UPDATE: u64 = 9;
pub(super) const SESSION_STATE_REQ: u64 = 10;
pub(super) const SESSION_STATE_RESP: u64 = 11;
pub(super) const KEEP_ALIVE_REQ: u64 = 12;
pub(super) const KEEP_ALIVE_RESP: u64 = 13;
pub(super) const STREAM_STATE_REQ: u64 = 19;
pub(super) const STREAM_STATE_RESP: u64 = 20;
pub(super) const STREAM_CLOSE_REQ: u64 = 21;
pub(super) const STREAM_CLOSE_RESP: u64 = 22;

/// `EVENT_UPDATE` event types.
pub(super) mod event {
    pub const FIRST_PACKET_TIMESTAMP: u32 = 1;
    pub const ACTIVE_SPEAKER_CHANGE: u32 = 2;
    pub const PARTICIPANT_JOIN: u32 = 3;
    pub const PARTICIPANT_LEAVE: u32 = 4;
    pub const MEDIA_CONNECTION_INTERRUPTED: u32 = 7;
}

/// Stream states (`STREAM_STATE_UPDATE`).
pub(super) mod stream_state {
    pub const INACTIVE: u32 = 0;
    pub const ACTIVE: u32 = 1;
    pub const INTERRUPTED: u32 = 2;
    pub const TERMINATING: u32 = 3;
    pub const TERMINATED: u32 = 4;
    pub const PAUSED: u32 = 5;
    pub const RESUMED: u32 = 6;
}

/// Session states (`SESSION_STATE_UPDATE`).
pub(super) mod session_state {
    pub const INACTIVE: u32 = 0;
    pub const STARTED: u32 = 2;
    pub const PAUSED: u32 = 3;
    pub const STOPPED: u32 = 5;
}

/// Stop reasons the simulator uses by itself.
pub(super) mod stop_reason {
    /// The stream was not resumed within the resume window.
    pub const AWAIT_RECONNECTION_TIMEOUT: u32 = 19;
    /// The client asked to close the stream (`STREAM_CLOSE_REQ`).
    pub const RECEIVER_REQUEST_CLOSE: u32 = 20;
    /// A socket stopped answering keep-alives.
    pub const KEEP_ALIVE_TIMEOUT: u32 = 24;
}

/// The `status_code`s the simulator puts in handshake replies (0 is success).
///
/// Zoom's published tables disagree with each other, so these are the simulator's own
/// choice; the `reason` text always says what was wrong. An injected
/// [`Fault::Reject`](super::Fault::Reject) uses whatever code it names.
pub mod status {
    /// Success.
    pub const OK: u32 = 0;
    /// `protocol_version` missing or not 1.
    pub const UNSUPPORTED_PROTOCOL_VERSION: u32 = 2;
    /// Not JSON, not the expected `msg_type`, or a required field missing.
    pub const INVALID_MESSAGE: u32 = 3;
    /// Unknown `rtms_stream_id`, or a `meeting_uuid` that is not the stream's.
    pub const STREAM_NOT_FOUND: u32 = 7;
    /// The signature does not match.
    pub const INVALID_SIGNATURE: u32 = 9;
    /// Media params the server cannot serve (e.g. a WAV source in another format).
    pub const INVALID_MEDIA_PARAMS: u32 = 14;
    /// The stream already ended.
    pub const STREAM_ENDED: u32 = 15;
}

/// The handshake signature Zoom expects (see `zoomhost_protocol::rtms`).
pub use zoomhost_protocol::rtms::signature as expected_signature;

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

pub(super) fn handshake_reply(
    msg_type: u64,
    sequence: &Value,
    status_code: u32,
    reason: &str,
) -> Value {
    json!({
        "msg_type": msg_type,
        "protocol_version": 1,
        "sequence": sequence,
        "status_code": status_code,
        "reason": reason,
    })
}

pub(super) fn event_update(event: Value) -> String {
    json!({"msg_type": EVENT_UPDATE, "event": event}).to_string()
}

pub(super) fn participants_event(event_type: u32, participants: &[SimParticipant]) -> String {
    let list: Vec<Value> = participants
        .iter()
        .map(|p| json!({"user_id": p.user_id, "user_name": p.user_name}))
        .collect();
    event_update(json!({
        "event_type": event_type,
        "timestamp": now_ms(),
        "participants": list,
    }))
}

pub(super) fn stream_state_update(stream_id: &str, state: u32, reason: u32) -> String {
    json!({
        "msg_type": STREAM_STATE_UPDATE,
        "rtms_stream_id": stream_id,
        "state": state,
        "reason": reason,
        "timestamp": now_ms(),
    })
    .to_string()
}

pub(super) fn session_state_update(session_id: &str, state: u32, stop_reason: u32) -> String {
    json!({
        "msg_type": SESSION_STATE_UPDATE,
        "rtms_session_id": session_id,
        "state": state,
        "stop_reason": stop_reason,
        "timestamp": now_ms(),
    })
    .to_string()
}

pub(super) fn keep_alive_req(sequence: u64, timestamp: u64) -> String {
    json!({"msg_type": KEEP_ALIVE_REQ, "sequence": sequence, "timestamp": timestamp}).to_string()
}

/// A data message whose `data` is text (transcript, chat) or base64 (video, share).
pub(super) fn media_message(msg_type: u64, content: Value) -> String {
    json!({"msg_type": msg_type, "content": content}).to_string()
}
