//! `recorder`: a test plugin that reports exactly what it receives.
//!
//! Every delivery becomes one info-level host log line in a fixed, space-separated
//! format that host tests parse. Free text is JSON-encoded and comes last.
//!
//! ```text
//! rec init restored=<n|none>
//! rec restore n=<n>
//! rec event n=<running count> name=<event name> id=<payload "id" or -> ts=<event_ts> eid=<event.id>
//! rec open stream=<stream-id> meeting=<meeting-id> rate=<sample-rate> ch=<channels> kind=<session kind>
//! rec audio stream=<id> n=<count> user=<user-id> ts=<ts> len=<bytes> sum=<fnv1a-64, 16 hex>
//! rec video stream=<id> n=<count> user=<user-id> ts=<ts> len=<bytes> sum=<fnv1a-64, 16 hex>
//! rec share stream=<id> n=<count> user=<user-id> ts=<ts> len=<bytes> sum=<fnv1a-64, 16 hex>
//! rec transcript stream=<id> n=<count> user=<user-id> ts=<ts> text=<JSON string>
//! rec chat stream=<id> n=<count> user=<user-id> ts=<ts> mid=<message-id or -> details=<JSON string or -> text=<JSON string>
//! rec join stream=<id> user=<user-id>
//! rec leave stream=<id> user=<user-id>
//! rec speaker stream=<id> user=<user-id>
//! rec state stream=<id> state=<WIT case name, e.g. active>
//! rec close stream=<id> audio=<count> transcript=<count>
//! rec control op=<close|video> stream=<id> result=<ok|JSON string of the error>
//! ```
//!
//! Stream control: an event named `test.close_stream` (payload `{"stream": ...}`) makes
//! the plugin call `stream_control::close_stream`, and `test.subscribe_video` (payload
//! `{"stream": ..., "user": n, "on": bool}`) `stream_control::subscribe_video`; the
//! outcome is a `rec control` line, logged after the event's `rec event` line.
//!
//! Per-stream counts (`n=` of media lines) start at 1 for each kind. The event count
//! is instance-wide, is what `snapshot` saves (u64 little-endian) and what `restore`
//! sets, so numbering continues across hot reloads.
//!
//! Config: `events` (comma-separated patterns, default `*`) and `media` (comma-separated
//! media kinds, default all; empty for none).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zoomhost_sdk::serde_json;
use zoomhost_sdk::{
    config, info, stream_control, AudioFrame, ChatMessage, Event, MediaKind, MediaSession,
    Metadata, Participant, Plugin, StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};

/// Events seen by this instance (plus any count restored from a previous one).
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Whether `restore` has set `EVENTS`.
static RESTORED: AtomicBool = AtomicBool::new(false);

struct Recorder;

impl Plugin for Recorder {
    type Session = Recording;

    fn metadata() -> Metadata {
        let events = config::get("events").map_or_else(|| vec!["*".to_string()], |v| list(&v));
        let media = config::get("media").map_or_else(
            || MediaKind::ALL.to_vec(),
            |v| {
                list(&v)
                    .iter()
                    .map(|kind| kind.parse().expect("config `media`"))
                    .collect()
            },
        );
        Metadata::new("recorder", env!("CARGO_PKG_VERSION"))
            .events(events)
            .media(media)
            .config_keys(["events", "media"])
    }

    fn init() -> Result<(), String> {
        let restored = if RESTORED.load(Ordering::Relaxed) {
            EVENTS.load(Ordering::Relaxed).to_string()
        } else {
            "none".to_string()
        };
        info!("rec init restored={restored}");
        Ok(())
    }

    fn handle_event(event: Event) -> Result<(), String> {
        let n = EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
        let id = event
            .payload_json()
            .ok()
            .and_then(|payload| match &payload["id"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "-".to_string());
        info!(
            "rec event n={n} name={} id={id} ts={} eid={}",
            event.name, event.timestamp, event.id
        );
        control(&event);
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
        info!("rec restore n={n}");
        Ok(())
    }
}

/// Makes the stream-control call a `test.*` event asks for, and logs its outcome.
fn control(event: &Event) {
    let op = match event.name.as_str() {
        "test.close_stream" => "close",
        "test.subscribe_video" => "video",
        _ => return,
    };
    let payload = event.payload_json().unwrap_or_default();
    let stream = payload["stream"].as_str().unwrap_or_default();
    let result = if op == "close" {
        stream_control::close_stream(stream)
    } else {
        let user = payload["user"].as_u64().unwrap_or(0) as u32;
        let on = payload["on"].as_bool().unwrap_or(true);
        stream_control::subscribe_video(stream, user, on)
    };
    let result = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => json(&e),
    };
    info!("rec control op={op} stream={stream} result={result}");
}

/// Splits a comma-separated config value, dropping blanks.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// One stream: its id and how many of each delivery it got.
struct Recording {
    stream: String,
    audio: u64,
    transcript: u64,
    video: u64,
    share: u64,
    chat: u64,
}

impl MediaSession for Recording {
    fn open(info: StreamInfo) -> Self {
        info!(
            "rec open stream={} meeting={} rate={} ch={} kind={}",
            info.stream_id, info.meeting_id, info.audio.sample_rate, info.audio.channels, info.kind
        );
        Recording {
            stream: info.stream_id,
            audio: 0,
            transcript: 0,
            video: 0,
            share: 0,
            chat: 0,
        }
    }

    fn on_audio(&mut self, frame: AudioFrame) -> Result<(), String> {
        self.audio += 1;
        info!(
            "rec audio stream={} n={} {}",
            self.stream,
            self.audio,
            frame_fields(&frame)
        );
        Ok(())
    }

    fn on_transcript(&mut self, segment: TranscriptSegment) -> Result<(), String> {
        self.transcript += 1;
        info!(
            "rec transcript stream={} n={} user={} ts={} text={}",
            self.stream,
            self.transcript,
            segment.user_id,
            segment.timestamp,
            json(&segment.text)
        );
        Ok(())
    }

    fn on_video(&mut self, frame: VideoFrame) -> Result<(), String> {
        self.video += 1;
        info!(
            "rec video stream={} n={} {}",
            self.stream,
            self.video,
            frame_fields(&frame)
        );
        Ok(())
    }

    fn on_share(&mut self, frame: VideoFrame) -> Result<(), String> {
        self.share += 1;
        info!(
            "rec share stream={} n={} {}",
            self.stream,
            self.share,
            frame_fields(&frame)
        );
        Ok(())
    }

    fn on_chat(&mut self, message: ChatMessage) -> Result<(), String> {
        self.chat += 1;
        info!(
            "rec chat stream={} n={} user={} ts={} mid={} details={} text={}",
            self.stream,
            self.chat,
            message.user_id,
            message.timestamp,
            message.message_id.as_deref().unwrap_or("-"),
            message
                .details
                .as_deref()
                .map_or_else(|| "-".to_string(), json),
            json(&message.text)
        );
        Ok(())
    }

    fn on_participant_join(&mut self, who: Participant) -> Result<(), String> {
        info!("rec join stream={} user={}", self.stream, who.user_id);
        Ok(())
    }

    fn on_participant_leave(&mut self, who: Participant) -> Result<(), String> {
        info!("rec leave stream={} user={}", self.stream, who.user_id);
        Ok(())
    }

    fn on_active_speaker(&mut self, who: Participant) -> Result<(), String> {
        info!("rec speaker stream={} user={}", self.stream, who.user_id);
        Ok(())
    }

    fn on_stream_state(&mut self, state: StreamState) -> Result<(), String> {
        info!("rec state stream={} state={state}", self.stream);
        Ok(())
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        info!(
            "rec close stream={} audio={} transcript={}",
            self.stream, self.audio, self.transcript
        );
    }
}

/// A binary frame: audio or video.
trait BinaryFrame {
    fn parts(&self) -> (u32, u64, &[u8]);
}

impl BinaryFrame for AudioFrame {
    fn parts(&self) -> (u32, u64, &[u8]) {
        (self.user_id, self.timestamp, &self.data)
    }
}

impl BinaryFrame for VideoFrame {
    fn parts(&self) -> (u32, u64, &[u8]) {
        (self.user_id, self.timestamp, &self.data)
    }
}

/// `user=<id> ts=<ts> len=<bytes> sum=<fnv1a-64>` for a binary frame.
fn frame_fields(frame: &impl BinaryFrame) -> String {
    let (user, ts, data) = frame.parts();
    format!(
        "user={user} ts={ts} len={} sum={:016x}",
        data.len(),
        fnv1a64(data)
    )
}

/// 64-bit FNV-1a.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `text` as a JSON string literal.
fn json(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

zoomhost_sdk::export_plugin!(Recorder);
