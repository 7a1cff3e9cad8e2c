//! The JSON the simulated servers write: the shared message shapes of
//! [`zoomhost_protocol::rtms`] stamped with the wall clock, and the server's own event
//! and media bodies. (Handshake refusals use Zoom's status table,
//! [`zoomhost_protocol::rtms::status`].)

use serde_json::{json, Value};
use zoomhost_protocol::rtms::control;
use zoomhost_protocol::rtms::msg::event_type;

use super::SimParticipant;
use crate::util::now_ms;

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

/// Participants' video turned on or off (`event_type` 8 or 9) at `ts`.
pub(super) fn participants_video_event(event_type: u32, user_ids: &[u32], ts: u64) -> String {
    let list: Vec<Value> = user_ids.iter().map(|id| json!({"user_id": id})).collect();
    event_update(json!({
        "event_type": event_type,
        "timestamp": ts,
        "participants": list,
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
