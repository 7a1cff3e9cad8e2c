//! Glue between the [`Plugin`] / [`MediaSession`] traits and the generated `guest`
//! bindings. Used by [`export_plugin!`](crate::export_plugin); not a public API.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::zoomhost::plugin::guest::{Guest, GuestMediaSession};
use crate::{
    AudioFrame, ChatMessage, Event, MediaSession, Metadata, Participant, Plugin, StreamInfo,
    StreamState, TranscriptSegment, VideoFrame,
};

/// Implements the generated `Guest` trait for any [`Plugin`].
pub struct PluginExport<P>(PhantomData<P>);

impl<P: Plugin> Guest for PluginExport<P> {
    type MediaSession = SessionExport<P::Session>;

    fn metadata() -> Metadata {
        P::metadata()
    }

    fn init() -> Result<(), String> {
        P::init()
    }

    fn handle_event(event: Event) -> Result<(), String> {
        P::handle_event(event)
    }

    fn snapshot() -> Option<Vec<u8>> {
        P::snapshot()
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        P::restore(state)
    }
}

/// Implements the generated `GuestMediaSession` trait for any [`MediaSession`].
///
/// Resource methods get `&self`; the cell gives the session `&mut self`. The component
/// model never re-enters an instance, so the borrow cannot fail in practice; if it
/// did, the call returns an error instead of trapping.
pub struct SessionExport<S>(RefCell<S>);

impl<S: MediaSession> SessionExport<S> {
    fn with(&self, f: impl FnOnce(&mut S) -> Result<(), String>) -> Result<(), String> {
        match self.0.try_borrow_mut() {
            Ok(mut session) => f(&mut session),
            Err(_) => Err("media session re-entered while busy".to_string()),
        }
    }
}

impl<S: MediaSession> GuestMediaSession for SessionExport<S> {
    fn new(info: StreamInfo) -> Self {
        SessionExport(RefCell::new(S::open(info)))
    }

    fn on_audio(&self, frame: AudioFrame) -> Result<(), String> {
        self.with(|s| s.on_audio(frame))
    }

    fn on_transcript(&self, segment: TranscriptSegment) -> Result<(), String> {
        self.with(|s| s.on_transcript(segment))
    }

    fn on_video(&self, frame: VideoFrame) -> Result<(), String> {
        self.with(|s| s.on_video(frame))
    }

    fn on_share(&self, frame: VideoFrame) -> Result<(), String> {
        self.with(|s| s.on_share(frame))
    }

    fn on_chat(&self, message: ChatMessage) -> Result<(), String> {
        self.with(|s| s.on_chat(message))
    }

    fn on_participant_join(&self, who: Participant) -> Result<(), String> {
        self.with(|s| s.on_participant_join(who))
    }

    fn on_participant_leave(&self, who: Participant) -> Result<(), String> {
        self.with(|s| s.on_participant_leave(who))
    }

    fn on_active_speaker(&self, who: Participant) -> Result<(), String> {
        self.with(|s| s.on_active_speaker(who))
    }

    fn on_stream_state(&self, state: StreamState) -> Result<(), String> {
        self.with(|s| s.on_stream_state(state))
    }
}
