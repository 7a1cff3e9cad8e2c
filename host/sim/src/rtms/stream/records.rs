//! What a stream recorded: every media item written to a socket, every audio frame's
//! hash and fate, every video frame's hash, the video subscription requests, and its
//! counters.

use bytes::Bytes;
use serde_json::Value;

use super::StreamOutcome;
use crate::rtms::MediaKind;

/// One media item written to a client socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMedia {
    /// What kind of item.
    pub kind: MediaKind,
    /// Its position among the stream's items of this kind (0-based; audio counts every
    /// source).
    pub index: u64,
    /// The audio frame (tick) it belongs to.
    pub frame: u32,
    /// `user_id` (0: mixed audio).
    pub user_id: u32,
    /// `user_name`.
    pub user_name: String,
    /// `timestamp` (ms).
    pub timestamp: u64,
    /// Decoded audio (L16 LE), the fake video/share payload, or the UTF-8 text of a
    /// transcript or chat message.
    pub data: Bytes,
    /// When the write completed.
    pub sent_at: std::time::Instant,
    /// A repeat after a resumed handshake ([`crate::rtms::StreamSpec::resend_on_resume`]).
    pub resent: bool,
}

impl SentMedia {
    /// The text of a transcript or chat item.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            MediaKind::Transcript | MediaKind::Chat => std::str::from_utf8(&self.data).ok(),
            _ => None,
        }
    }
}

/// What became of a produced audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFate {
    /// Written to a client socket (once; resends are not counted).
    Sent,
    /// Never sent: it waited longer than the audio buffer holds, or it was produced
    /// before the first connection of a client that asked for `buffer_data: false`.
    Dropped,
}

/// One produced audio frame ([`super::SimStream::audio_frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrameRecord {
    /// Its position among the stream's audio items (0-based; every source counts).
    pub index: u64,
    /// The frame (tick) it belongs to.
    pub frame: u32,
    /// `user_id` (0: mixed audio).
    pub user_id: u32,
    /// `timestamp` (ms), the one it carried or would have carried.
    pub timestamp: u64,
    /// SHA-256 of the decoded payload (L16 LE), the bytes a client hands its consumer.
    pub sha256: [u8; 32],
    /// Sent or dropped.
    pub fate: FrameFate,
}

/// One video message written to a client socket ([`super::SimStream::video_frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrameRecord {
    /// Its position among the stream's video items (0-based).
    pub index: u64,
    /// The frame (tick) it belongs to.
    pub frame: u32,
    /// Whose video: the active speaker (`data_opt` 3) or the subscribed participant
    /// (`data_opt` 4).
    pub user_id: u32,
    /// `timestamp` (ms).
    pub timestamp: u64,
    /// SHA-256 of the decoded payload.
    pub sha256: [u8; 32],
}

/// A `VIDEO_SUBSCRIPTION_REQ` (28) and the status its `VIDEO_SUBSCRIPTION_RESP` (29)
/// carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoRequest {
    /// The participant asked for (0 when the request named none).
    pub user_id: u32,
    /// `subscribe`: start (true) or stop (false).
    pub subscribe: bool,
    /// The answer's `status_code` (0 OK, 44 already the subscription, ...).
    pub status_code: u32,
}

/// Counters of one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStreamStats {
    /// Connections that named this stream in a handshake (accepted or not).
    pub connections: u32,
    /// Accepted signaling handshakes.
    pub signaling_handshakes: u32,
    /// Accepted media handshakes.
    pub media_handshakes: u32,
    /// Refused handshakes: (reply `msg_type` 2 or 4, `status_code`).
    pub rejections: Vec<(u64, u32)>,
    /// `CLIENT_READY_ACK`s from the current signaling connection.
    pub ready_acks: u32,
    /// Event types currently subscribed, ascending.
    pub subscriptions: Vec<u32>,
    /// `KEEP_ALIVE_REQ`s written, over every socket.
    pub keepalives_sent: u64,
    /// `KEEP_ALIVE_RESP`s that echoed a pending request's sequence and timestamp.
    pub keepalives_answered: u64,
    /// Sockets dropped for unanswered keep-alives.
    pub dropped_for_keepalive: u32,
    /// Close codes of the close frames the client sent (initiated or answered).
    pub client_close_codes: Vec<u16>,
    /// Audio messages sent (first sends).
    pub audio_frames_sent: u64,
    /// Video messages sent.
    pub video_sent: u64,
    /// Share messages sent.
    pub share_sent: u64,
    /// Transcript messages sent.
    pub transcripts_sent: u64,
    /// Chat messages sent.
    pub chat_sent: u64,
    /// Items sent again after a resumed handshake.
    pub resent: u64,
    /// Audio frames dropped (too old for the buffer, or before the first connection with
    /// `buffer_data: false`).
    pub audio_dropped: u64,
    /// Transcript and chat messages dropped for the same reasons.
    pub text_dropped: u64,
    /// Video and share messages dropped because nobody could receive them when they were
    /// produced (they are never buffered).
    pub video_dropped: u64,
    /// Individual video (`data_opt` 4) items not sent because nobody was subscribed or
    /// the subscribed participant's camera was off at their frame.
    pub video_unwatched: u64,
    /// Every `VIDEO_SUBSCRIPTION_REQ` and its answer, in order.
    pub video_requests: Vec<VideoRequest>,
    /// Whose individual video the stream sends now (the last accepted subscription).
    pub video_subscription: Option<u32>,
    /// Failovers (the stream moved to the next server generation).
    pub failovers: u32,
    /// Signaling losses (each followed by `rtms_interrupted`).
    pub signaling_interruptions: u32,
    /// Media losses (each followed by `EVENT_UPDATE` 7).
    pub media_interruptions: u32,
    /// Handshakes for the stream that reached a server generation it had left (dropped
    /// without an answer, as by a dead server).
    pub stale_handshakes: u32,
    /// The audio params confirmed in msg 4, once an audio handshake succeeded.
    pub confirmed_audio: Option<Value>,
    /// How the stream ended, once it did.
    pub outcome: Option<StreamOutcome>,
}
