//! What zoomhost's sources hand to its plugin runtime, as plain Rust types.
//!
//! ```text
//!  sources (event WebSocket, webhooks, RTMS, replay, simulator)
//!      │  Event, StreamInfo, AudioFrame, ...   (this crate)
//!      ▼
//!  InputSink ── implemented by the runtime's router, which converts these into the
//!               plugin world's WIT types (moving frame buffers, not copying them)
//! ```
//!
//! Sources depend on this crate and nothing of the runtime; the runtime depends on this
//! crate and nothing of the sources. Frame payloads are [`bytes::Bytes`], so a decoded
//! frame is handed on without a copy.

#![warn(missing_docs)]

mod event;
mod media;
mod sink;

pub use bytes::Bytes;
pub use event::{Event, EventSource};
pub use media::{
    AudioCodec, AudioFormat, AudioFrame, ChatMessage, MediaKind, Participant, SessionKind,
    StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};
pub use sink::{Acceptance, ControlError, EventTap, InputSink, StreamControl, StreamSink};
