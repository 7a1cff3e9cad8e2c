//! Where sources deliver what they receive.

use crate::{
    AudioFrame, ChatMessage, Event, MediaKind, Participant, StreamInfo, StreamState,
    TranscriptSegment, VideoFrame,
};

/// Something that sees events on their way in (the binary taps its input path with the
/// RTMS client and views). Called on the delivering thread: it must not block.
pub type EventTap = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

/// Takes every input of the sources. The runtime's router implements it; the binary may
/// wrap it (e.g. to let the RTMS client see the events that start streams). A sink never
/// blocks its caller.
pub trait InputSink: Send + Sync {
    /// One event; returns how many consumers it was queued for.
    fn event(&self, event: Event) -> usize;

    /// A media stream opened; its inputs go to the returned handle, which ends the stream
    /// when closed or dropped.
    fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink>;

    /// One event from a source that can tell its sender whether it was kept (a webhook
    /// answers Zoom with 200 only then, 5xx otherwise so Zoom retries it). The default
    /// takes it through [`InputSink::event`] and reports it kept at once; a sink that
    /// stores events durably first (cluster mode) returns [`Acceptance::Pending`], which
    /// resolves within a bounded time.
    fn accept(&self, event: Event) -> Acceptance {
        Acceptance::Now(self.event(event))
    }
}

/// Whether an event handed to [`InputSink::accept`] was kept.
pub enum Acceptance {
    /// Kept at once (queued for this many consumers).
    Now(usize),
    /// Kept once this resolves `Ok`; an `Err` says why it was not (the sender should be
    /// told to deliver it again).
    Pending(std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>),
}

impl std::fmt::Debug for Acceptance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acceptance::Now(n) => f.debug_tuple("Now").field(n).finish(),
            Acceptance::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// One open stream's inputs, in order.
pub trait StreamSink: Send + Sync {
    /// The stream id.
    fn id(&self) -> &str;
    /// Whether anyone takes `kind` (frames nobody wants need not be decoded). The answer
    /// is fixed for the stream's life, so a wrapper may ask once and keep it.
    fn wants(&self, kind: MediaKind) -> bool;
    /// The consumers (plugins) that have the stream open, by name.
    fn consumers(&self) -> Vec<std::sync::Arc<str>>;
    /// An audio frame.
    fn audio(&self, frame: AudioFrame);
    /// A transcript segment.
    fn transcript(&self, segment: TranscriptSegment);
    /// A video frame.
    fn video(&self, frame: VideoFrame);
    /// A screen-share frame.
    fn share(&self, frame: VideoFrame);
    /// A chat message.
    fn chat(&self, message: ChatMessage);
    /// A participant joined.
    fn participant_join(&self, who: Participant);
    /// A participant left.
    fn participant_leave(&self, who: Participant);
    /// The active speaker changed.
    fn active_speaker(&self, who: Participant);
    /// The stream changed state.
    fn state(&self, state: StreamState);
    /// Ends the stream.
    fn close(self: Box<Self>);
}

/// Why a [`StreamControl`] request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No open stream has this id.
    UnknownStream(String),
    /// The stream cannot do this now (e.g. not connected, or not carrying video).
    Unavailable(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::UnknownStream(id) => write!(f, "no open RTMS stream {id}"),
            ControlError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ControlError {}

/// Actions on open RTMS streams that plugins may ask for (when the operator grants it).
/// The RTMS client implements it; the runtime calls it for a plugin's host-interface
/// calls. A request only queues the action: it never blocks the caller.
pub trait StreamControl: Send + Sync {
    /// Asks Zoom to close the stream (`STREAM_CLOSE_REQ`); the stream then ends as every
    /// stream does, for every plugin.
    fn close_stream(&self, stream_id: &str) -> Result<(), ControlError>;

    /// Subscribes the stream's individual video to one participant (`subscribe` true), or
    /// stops it (`false`). One subscription per stream: a new one replaces the previous.
    fn subscribe_video(
        &self,
        stream_id: &str,
        user_id: u32,
        subscribe: bool,
    ) -> Result<(), ControlError>;
}
