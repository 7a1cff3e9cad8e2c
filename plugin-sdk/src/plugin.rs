//! The traits a plugin implements.

use crate::{
    AudioFrame, ChatMessage, Event, Metadata, Participant, StreamInfo, StreamState,
    TranscriptSegment, VideoFrame,
};

/// A zoomhost plugin. Implement it on a (usually empty) type and export that type with
/// [`export_plugin!`](crate::export_plugin).
///
/// The functions are associated functions, not methods: a plugin instance is the whole
/// component, so plugin-wide state lives in `static`s (`thread_local!`, `RefCell` in a
/// `static`, atomics) and per-stream state in the [`MediaSession`].
pub trait Plugin: 'static {
    /// The per-stream state. Use [`NoMedia`] when [`Metadata::media`] is empty.
    type Session: MediaSession;

    /// The plugin's name, version and subscriptions. Called once per instance.
    fn metadata() -> Metadata;

    /// Called once after instantiation, before any delivery. An error rejects the
    /// instance (on hot reload the old version keeps serving).
    fn init() -> Result<(), String> {
        Ok(())
    }

    /// One event matching the plugin's patterns. An error is counted and logged by the
    /// host; the instance keeps running.
    fn handle_event(event: Event) -> Result<(), String>;

    /// State to hand to the next version on hot reload; `None` (the default) keeps none.
    fn snapshot() -> Option<Vec<u8>> {
        None
    }

    /// State from the previous version's [`snapshot`](Plugin::snapshot), given after
    /// [`init`](Plugin::init). The default ignores it.
    fn restore(state: Vec<u8>) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// The state of one RTMS stream in a plugin.
///
/// [`open`](MediaSession::open) runs when the stream starts; the value is dropped when
/// it ends, so a [`Drop`] impl is the place for end-of-stream work. Every handler
/// defaults to ignoring its input and returning `Ok(())`. An error from a handler is
/// counted and logged by the host; the session keeps receiving.
///
/// In a cluster a stream can move to another node (its worker drained or died): there
/// the stream opens again, with the same stream id, in a new session of another plugin
/// instance, without anything this session kept in memory. The frames continue after
/// the last one delivered here (after a crash, up to about a second of frames may be
/// delivered again). Keep what must survive such a move outside the plugin, keyed by
/// the stream id.
pub trait MediaSession: Sized + 'static {
    /// A stream started.
    fn open(info: StreamInfo) -> Self;

    /// One audio frame.
    fn on_audio(&mut self, frame: AudioFrame) -> Result<(), String> {
        let _ = frame;
        Ok(())
    }

    /// One transcript segment.
    fn on_transcript(&mut self, segment: TranscriptSegment) -> Result<(), String> {
        let _ = segment;
        Ok(())
    }

    /// One video frame.
    fn on_video(&mut self, frame: VideoFrame) -> Result<(), String> {
        let _ = frame;
        Ok(())
    }

    /// One screen-share frame.
    fn on_share(&mut self, frame: VideoFrame) -> Result<(), String> {
        let _ = frame;
        Ok(())
    }

    /// One in-meeting chat message.
    fn on_chat(&mut self, message: ChatMessage) -> Result<(), String> {
        let _ = message;
        Ok(())
    }

    /// A participant joined.
    fn on_participant_join(&mut self, who: Participant) -> Result<(), String> {
        let _ = who;
        Ok(())
    }

    /// A participant left.
    fn on_participant_leave(&mut self, who: Participant) -> Result<(), String> {
        let _ = who;
        Ok(())
    }

    /// The active speaker changed.
    fn on_active_speaker(&mut self, who: Participant) -> Result<(), String> {
        let _ = who;
        Ok(())
    }

    /// The stream changed state.
    fn on_stream_state(&mut self, state: StreamState) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// The session type of a plugin that subscribes to no media: it ignores everything.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoMedia;

impl MediaSession for NoMedia {
    fn open(_info: StreamInfo) -> Self {
        NoMedia
    }
}
