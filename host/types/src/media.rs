//! RTMS streams and what flows on them.

use bytes::Bytes;

/// A kind of media a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// Audio frames.
    Audio,
    /// Transcript segments.
    Transcript,
    /// Video frames.
    Video,
    /// Screen-share frames.
    Share,
    /// Chat messages.
    Chat,
}

impl MediaKind {
    /// Every media kind.
    pub const ALL: [MediaKind; 5] = [
        MediaKind::Audio,
        MediaKind::Transcript,
        MediaKind::Video,
        MediaKind::Share,
        MediaKind::Chat,
    ];

    /// The name in the plugin world and in config (`audio`, `transcript`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Transcript => "transcript",
            MediaKind::Video => "video",
            MediaKind::Share => "share",
            MediaKind::Chat => "chat",
        }
    }

    /// Parses a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// 16-bit linear PCM.
    L16,
    /// G.711.
    G711,
    /// G.722.
    G722,
    /// Opus.
    Opus,
}

/// How a stream's audio is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// The codec.
    pub codec: AudioCodec,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u8,
    /// Milliseconds of audio per frame.
    pub frame_ms: u32,
}

/// What kind of Zoom session a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// A meeting.
    Meeting,
    /// A webinar.
    Webinar,
    /// A Video SDK session.
    VideoSdk,
    /// A Contact Center engagement.
    ContactCenter,
    /// A Zoom Phone call.
    Phone,
}

/// One RTMS stream, as it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Zoom's `rtms_stream_id`.
    pub stream_id: String,
    /// The meeting (webinar, session, engagement) UUID.
    pub meeting_id: String,
    /// The session kind.
    pub kind: SessionKind,
    /// The media kinds the stream carries.
    pub media: Vec<MediaKind>,
    /// Its audio format.
    pub audio: AudioFormat,
}

/// One audio frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// The speaker (0: the mixed stream).
    pub user_id: u32,
    /// The speaker's name.
    pub user_name: String,
    /// Zoom's timestamp, in milliseconds.
    pub timestamp: u64,
    /// The encoded audio.
    pub data: Bytes,
}

/// One transcript segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptSegment {
    /// The speaker.
    pub user_id: u32,
    /// The speaker's name.
    pub user_name: String,
    /// When the segment starts, in milliseconds.
    pub timestamp: u64,
    /// When it ends, when Zoom says.
    pub end_timestamp: Option<u64>,
    /// The text.
    pub text: String,
    /// Its language, when Zoom says.
    pub language: Option<String>,
}

/// One video or screen-share frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Whose video.
    pub user_id: u32,
    /// Their name.
    pub user_name: String,
    /// Zoom's timestamp, in milliseconds.
    pub timestamp: u64,
    /// The encoded frame.
    pub data: Bytes,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The sender.
    pub user_id: u32,
    /// The sender's name.
    pub user_name: String,
    /// Zoom's timestamp, in milliseconds.
    pub timestamp: u64,
    /// The text.
    pub text: String,
    /// Zoom's `message_id`, when the message came as structured (JSON) chat content.
    pub message_id: Option<String>,
    /// The whole structured chat content as JSON text (chat session, operation, sender,
    /// receiver, files), when Zoom sent it as JSON rather than plain text.
    pub details: Option<String>,
}

/// A participant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    /// Zoom's user id.
    pub user_id: u32,
    /// Their name.
    pub user_name: String,
}

/// A stream's state, as Zoom reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// Not started.
    Inactive,
    /// Flowing.
    Active,
    /// Interrupted; may resume.
    Interrupted,
    /// Ending.
    Terminating,
    /// Ended.
    Terminated,
    /// Paused by the host.
    Paused,
    /// Resumed after a pause.
    Resumed,
}
