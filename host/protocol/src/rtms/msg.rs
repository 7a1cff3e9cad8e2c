//! `msg_type` numbers, and the `event_type` numbers of event updates.
//!
//! Handshakes (1 to 4) open each socket. Signaling then carries the client's event
//! subscription (5) and ready acknowledgement (7) and the server's event, stream and
//! session updates (6, 8, 9); state requests (10, 19) and the close request (21) may be
//! sent on it at any time and are answered with 11, 20 and 22. Keep-alives (12, answered
//! with 13) run on every socket. Media data (14 to 18) flows on the media sockets only,
//! one `msg_type` per media type.

/// Client → signaling: handshake request.
pub const SIGNALING_HAND_SHAKE_REQ: u32 = 1;
/// Signaling → client: handshake response with the media server URLs.
pub const SIGNALING_HAND_SHAKE_RESP: u32 = 2;
/// Client → media: handshake request.
pub const DATA_HAND_SHAKE_REQ: u32 = 3;
/// Media → client: handshake response with the effective media params.
pub const DATA_HAND_SHAKE_RESP: u32 = 4;
/// Client → signaling: event subscription.
pub const EVENT_SUBSCRIPTION: u32 = 5;
/// Signaling → client: an event (active speaker, join, leave, ...).
pub const EVENT_UPDATE: u32 = 6;
/// Client → signaling: media handshakes done, start sending.
pub const CLIENT_READY_ACK: u32 = 7;
/// Signaling → client: stream state.
pub const STREAM_STATE_UPDATE: u32 = 8;
/// Signaling → client: session state.
pub const SESSION_STATE_UPDATE: u32 = 9;
/// Session state request.
pub const SESSION_STATE_REQ: u32 = 10;
/// Session state response.
pub const SESSION_STATE_RESP: u32 = 11;
/// Server → client on every socket: keep-alive request.
pub const KEEP_ALIVE_REQ: u32 = 12;
/// Client → server on the same socket: keep-alive response.
pub const KEEP_ALIVE_RESP: u32 = 13;
/// Audio data.
pub const MEDIA_DATA_AUDIO: u32 = 14;
/// Video data.
pub const MEDIA_DATA_VIDEO: u32 = 15;
/// Screen-share data.
pub const MEDIA_DATA_SHARE: u32 = 16;
/// Transcript data.
pub const MEDIA_DATA_TRANSCRIPT: u32 = 17;
/// Chat data.
pub const MEDIA_DATA_CHAT: u32 = 18;
/// Stream state request.
pub const STREAM_STATE_REQ: u32 = 19;
/// Stream state response.
pub const STREAM_STATE_RESP: u32 = 20;
/// Stream close request.
pub const STREAM_CLOSE_REQ: u32 = 21;
/// Stream close response.
pub const STREAM_CLOSE_RESP: u32 = 22;

/// `event_type` values of `EVENT_UPDATE` (6) and `EVENT_SUBSCRIPTION` (5).
pub mod event_type {
    /// The timestamp of the stream's first media packet (`timestamp`).
    pub const FIRST_PACKET_TIMESTAMP: u32 = 1;
    /// Active speaker changed (`user_id`, `user_name`).
    pub const ACTIVE_SPEAKER_CHANGE: u32 = 2;
    /// Participants joined (`participants: [{user_id, user_name}]`).
    pub const PARTICIPANT_JOIN: u32 = 3;
    /// Participants left (`participants: [{user_id, user_name}]`).
    pub const PARTICIPANT_LEAVE: u32 = 4;
    /// A media connection was interrupted (`media_type`: the bits of the media types it
    /// carried).
    pub const MEDIA_CONNECTION_INTERRUPTED: u32 = 7;
}
