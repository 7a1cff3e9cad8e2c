//! `recorder-v0-1`: a plugin built for the released world `zoomhost:plugin@0.1.0`
//! (`wit/v0.1/plugin.wit`), to show that the host still serves such components. It
//! reports what it receives in the `recorder` plugin's line format (the fields 0.1.0
//! has), so the same tests read both:
//!
//! ```text
//! rec init restored=<n|none>
//! rec restore n=<n>
//! rec event n=<running count> name=<event name> id=<payload "id" or -> ts=<event_ts>
//! rec open stream=<stream-id> meeting=<meeting-id> rate=<sample-rate> ch=<channels> kind=<session kind>
//! rec audio stream=<id> n=<count> user=<user-id> ts=<ts> len=<bytes> sum=<fnv1a-64, 16 hex>
//! rec transcript stream=<id> n=<count> user=<user-id> ts=<ts> len=<text bytes>
//! rec chat stream=<id> n=<count> user=<user-id> ts=<ts> len=<text bytes>
//! rec close stream=<id> audio=<count> transcript=<count>
//! ```
//!
//! Like `recorder`, its event count is what `snapshot` saves (u64 little-endian) and
//! `restore` sets, so numbering continues across a hot reload to or from `recorder`.
//! It subscribes to every event and to audio, transcript and chat.

wit_bindgen::generate!({
    // The 0.1.0 package resolves beside the current one, which brings the WASI packages
    // (`wit/deps`) both use.
    path: ["../../../wit", "../../../wit/v0.1/plugin.wit"],
    world: "zoomhost:plugin/plugin@0.1.0",
    generate_all,
});

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use exports::zoomhost::plugin0_1_0::guest::{
    AudioFrame, ChatMessage, Event, Guest, GuestMediaSession, Participant, PluginMetadata,
    StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};
use zoomhost::plugin0_1_0::host::{log, LogLevel};
use zoomhost::plugin0_1_0::types::{MediaKind, SessionKind};

/// Events seen by this instance (plus any count restored from a previous one).
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Whether `restore` has set `EVENTS`.
static RESTORED: AtomicBool = AtomicBool::new(false);

fn info(line: String) {
    log(LogLevel::Info, &line);
}

struct RecorderV01;

impl Guest for RecorderV01 {
    type MediaSession = Recording;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "recorder-v0-1".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            events: vec!["*".to_string()],
            media: vec![MediaKind::Audio, MediaKind::Transcript, MediaKind::Chat],
            wanted_hosts: Vec::new(),
            config_keys: Vec::new(),
        }
    }

    fn init() -> Result<(), String> {
        let restored = if RESTORED.load(Ordering::Relaxed) {
            EVENTS.load(Ordering::Relaxed).to_string()
        } else {
            "none".to_string()
        };
        info(format!("rec init restored={restored}"));
        Ok(())
    }

    fn handle_event(event: Event) -> Result<(), String> {
        let n = EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
        info(format!(
            "rec event n={n} name={} id={} ts={}",
            event.name,
            payload_id(&event.payload),
            event.timestamp
        ));
        Ok(())
    }

    fn snapshot() -> Option<Vec<u8>> {
        Some(EVENTS.load(Ordering::Relaxed).to_le_bytes().to_vec())
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|state: Vec<u8>| format!("expected 8 bytes of state, got {}", state.len()))?;
        let n = u64::from_le_bytes(bytes);
        EVENTS.store(n, Ordering::Relaxed);
        RESTORED.store(true, Ordering::Relaxed);
        info(format!("rec restore n={n}"));
        Ok(())
    }
}

/// The payload's `"id":"..."` string value, found without a JSON parser (this crate has
/// no dependencies but wit-bindgen), or `-`.
fn payload_id(payload: &str) -> String {
    payload
        .split_once(r#""id":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| "-".to_string(), |(id, _)| id.to_string())
}

fn kind_name(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Meeting => "meeting",
        SessionKind::Webinar => "webinar",
        SessionKind::VideoSdk => "video-sdk",
        SessionKind::ContactCenter => "contact-center",
    }
}

/// One stream: its id and how many of each delivery it got.
struct Recording {
    stream: String,
    audio: Cell<u64>,
    transcript: Cell<u64>,
    chat: Cell<u64>,
}

fn bump(counter: &Cell<u64>) -> u64 {
    counter.set(counter.get() + 1);
    counter.get()
}

impl GuestMediaSession for Recording {
    fn new(info: StreamInfo) -> Self {
        self::info(format!(
            "rec open stream={} meeting={} rate={} ch={} kind={}",
            info.stream_id,
            info.meeting_id,
            info.audio.sample_rate,
            info.audio.channels,
            kind_name(info.kind)
        ));
        Recording {
            stream: info.stream_id,
            audio: Cell::new(0),
            transcript: Cell::new(0),
            chat: Cell::new(0),
        }
    }

    fn on_audio(&self, frame: AudioFrame) -> Result<(), String> {
        let n = bump(&self.audio);
        info(format!(
            "rec audio stream={} n={n} user={} ts={} len={} sum={:016x}",
            self.stream,
            frame.user_id,
            frame.timestamp,
            frame.data.len(),
            fnv1a64(&frame.data)
        ));
        Ok(())
    }

    fn on_transcript(&self, segment: TranscriptSegment) -> Result<(), String> {
        let n = bump(&self.transcript);
        info(format!(
            "rec transcript stream={} n={n} user={} ts={} len={}",
            self.stream,
            segment.user_id,
            segment.timestamp,
            segment.text.len()
        ));
        Ok(())
    }

    fn on_video(&self, _frame: VideoFrame) -> Result<(), String> {
        Ok(())
    }

    fn on_share(&self, _frame: VideoFrame) -> Result<(), String> {
        Ok(())
    }

    fn on_chat(&self, message: ChatMessage) -> Result<(), String> {
        let n = bump(&self.chat);
        info(format!(
            "rec chat stream={} n={n} user={} ts={} len={}",
            self.stream,
            message.user_id,
            message.timestamp,
            message.text.len()
        ));
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

impl Drop for Recording {
    fn drop(&mut self) {
        info(format!(
            "rec close stream={} audio={} transcript={}",
            self.stream,
            self.audio.get(),
            self.transcript.get()
        ));
    }
}

/// 64-bit FNV-1a, as `recorder` computes it.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

export!(RecorderV01);
