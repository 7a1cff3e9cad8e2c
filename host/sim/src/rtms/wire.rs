//! The JSON the simulated servers write: the shared message shapes of
//! [`zoomhost_protocol::rtms`] stamped with the wall clock, the server's own event and
//! media bodies, and the status codes it answers handshakes with.

use serde_json::{json, Value};
use zoomhost_protocol::rtms::control;
use zoomhost_protocol::rtms::msg::event_type;

use super::SimParticipant;
use crate::util::now_ms;

/// The `status_code`s the simulator puts in handshake replies (0 is success).
///
/// Zoom's published tables disagree with each other, so these are the simulator's own
/// choice (they are not the numbers of `zoomhost_protocol::rtms::status`); the `reason`
/// text always says what was wrong. An injected [`Fault::Reject`](super::Fault::Reject)
/// uses whatever code it names.
pub mod status {
    /// Success.
    pub const OK: u32 = zoomhost_protocol::rtms::status::OK;
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

/// `EVENT_UPDATE` with `event`.
pub(super) fn event_update(event: Value) -> String {
    control::event_update(event).to_string()
}

/// Participants joined or left (`event_type` 3 or 4).
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

/// The first media packet went out at `ts`.
pub(super) fn first_packet_event(ts: u64) -> String {
    event_update(json!({"event_type": event_type::FIRST_PACKET_TIMESTAMP, "timestamp": ts}))
}

/// The media connection(s) carrying `media_type` (bits) were interrupted.
pub(super) fn media_interrupted_event(media_type: u64) -> String {
    event_update(json!({
        "event_type": event_type::MEDIA_CONNECTION_INTERRUPTED,
        "timestamp": now_ms(),
        "media_type": media_type,
    }))
}

/// `p` is the active speaker now.
pub(super) fn speaker_event(p: &SimParticipant) -> String {
    event_update(json!({
        "event_type": event_type::ACTIVE_SPEAKER_CHANGE,
        "timestamp": now_ms(),
        "user_id": p.user_id,
        "user_name": p.user_name,
    }))
}

/// `STREAM_STATE_UPDATE`, stamped now.
pub(super) fn stream_state_update(stream_id: &str, state: u32, reason: u32) -> String {
    control::stream_state_update(stream_id, state, reason, now_ms()).to_string()
}

/// `SESSION_STATE_UPDATE`, stamped now.
pub(super) fn session_state_update(session_id: &str, state: u32, stop_reason: u32) -> String {
    control::session_state_update(session_id, state, stop_reason, now_ms()).to_string()
}

/// `KEEP_ALIVE_REQ`.
pub(super) fn keep_alive_req(sequence: u64, timestamp: u64) -> String {
    control::keep_alive_request(sequence, timestamp).to_string()
}

/// A data message whose `data` is text (transcript, chat) or base64 (video, share).
pub(super) fn media_message(msg_type: u64, content: Value) -> String {
    json!({"msg_type": msg_type, "content": content}).to_string()
}
