//! `future-world`: a plugin built for `zoomhost:plugin@0.3.0`, a version of the world
//! the host does not serve (it serves 0.2.0 and 0.1.0). The host must refuse it, naming
//! its version and the served ones.
//!
//! `wit/` is a copy of the repository's `wit/` with only the package version changed.
//! It uses `wit-bindgen` directly because the SDK is bound to the served version.

wit_bindgen::generate!({
    world: "plugin",
    path: "wit",
    generate_all,
});

use exports::zoomhost::plugin::guest::{
    AudioFrame, ChatMessage, Event, Guest, GuestMediaSession, Participant, PluginMetadata,
    StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};

struct FutureWorld;

impl Guest for FutureWorld {
    type MediaSession = Session;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "future-world".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            events: vec!["*".to_string()],
            media: Vec::new(),
            wanted_hosts: Vec::new(),
            config_keys: Vec::new(),
        }
    }

    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle_event(_event: Event) -> Result<(), String> {
        Ok(())
    }

    fn snapshot() -> Option<Vec<u8>> {
        None
    }

    fn restore(_state: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

/// Ignores everything.
struct Session;

impl GuestMediaSession for Session {
    fn new(_info: StreamInfo) -> Self {
        Session
    }
    fn on_audio(&self, _frame: AudioFrame) -> Result<(), String> {
        Ok(())
    }
    fn on_transcript(&self, _segment: TranscriptSegment) -> Result<(), String> {
        Ok(())
    }
    fn on_video(&self, _frame: VideoFrame) -> Result<(), String> {
        Ok(())
    }
    fn on_share(&self, _frame: VideoFrame) -> Result<(), String> {
        Ok(())
    }
    fn on_chat(&self, _message: ChatMessage) -> Result<(), String> {
        Ok(())
    }
    fn on_participant_join(&self, _who: Participant) -> Result<(), String> {
        Ok(())
    }
    fn on_participant_leave(&self, _who: Participant) -> Result<(), String> {
        Ok(())
    }
    fn on_active_speaker(&self, _who: Participant) -> Result<(), String> {
        Ok(())
    }
    fn on_stream_state(&self, _state: StreamState) -> Result<(), String> {
        Ok(())
    }
}

export!(FutureWorld);
