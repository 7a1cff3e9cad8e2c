//! `event-logger`: the smallest useful zoomhost plugin, and the one to copy.
//!
//! * Every Zoom event (`*`) is logged with its name, source, payload size, id and, when
//!   the payload has one, the meeting topic.
//! * Every RTMS stream carrying audio or transcripts gets a [`StreamStats`] that counts
//!   what arrives and logs a one-line summary when the stream ends.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p event-logger`.

use std::collections::BTreeSet;

use zoomhost_sdk::{
    debug, info, AudioFrame, Event, MediaKind, MediaSession, Metadata, Participant, Plugin,
    StreamInfo, TranscriptSegment,
};

/// The plugin itself. It keeps no state between events, so it is an empty type.
struct EventLogger;

impl Plugin for EventLogger {
    /// One of these is created per RTMS stream.
    type Session = StreamStats;

    fn metadata() -> Metadata {
        Metadata::new("event-logger", env!("CARGO_PKG_VERSION"))
            // All events...
            .events(["*"])
            // ...and the audio and transcript of every RTMS stream.
            .media([MediaKind::Audio, MediaKind::Transcript])
    }

    fn handle_event(event: Event) -> Result<(), String> {
        // Meeting and webinar events carry the topic at `payload.object.topic`; other
        // events (and payloads that are not JSON) simply have none.
        let topic = event
            .payload_json()
            .ok()
            .and_then(|payload| payload["object"]["topic"].as_str().map(str::to_owned));

        // `event.id` is derived from the event's content: the same Zoom event has the same
        // id whichever way it came (WebSocket or webhook), so it tells a repeat apart.
        let summary = format!(
            "{} from {} ({} payload bytes, id {})",
            event.name,
            event.source,
            event.payload.len(),
            event.id
        );
        match topic {
            Some(topic) => info!("{summary} topic={topic:?}"),
            None => info!("{summary}"),
        }
        Ok(())
    }

    // `init`, `snapshot` and `restore` keep their defaults: nothing to set up or carry
    // over on hot reload.
}

/// What one RTMS stream delivered so far. Logged when the host drops the session,
/// which is when the stream ends.
struct StreamStats {
    stream_id: String,
    audio_frames: u64,
    audio_bytes: u64,
    transcript_segments: u64,
    participants: BTreeSet<u32>,
}

impl MediaSession for StreamStats {
    fn open(info: StreamInfo) -> Self {
        info!(
            "stream {} opened for {} {} ({} audio, {} Hz, {} ch)",
            info.stream_id,
            info.kind,
            info.meeting_id,
            info.audio.codec,
            info.audio.sample_rate,
            info.audio.channels
        );
        StreamStats {
            stream_id: info.stream_id,
            audio_frames: 0,
            audio_bytes: 0,
            transcript_segments: 0,
            participants: BTreeSet::new(),
        }
    }

    fn on_audio(&mut self, frame: AudioFrame) -> Result<(), String> {
        self.audio_frames += 1;
        self.audio_bytes += frame.data.len() as u64;
        self.participants.insert(frame.user_id);
        Ok(())
    }

    fn on_transcript(&mut self, segment: TranscriptSegment) -> Result<(), String> {
        self.transcript_segments += 1;
        self.participants.insert(segment.user_id);
        // Transcripts are meeting content: only at debug level.
        debug!("{}: {}", segment.user_name, segment.text);
        Ok(())
    }

    fn on_participant_join(&mut self, who: Participant) -> Result<(), String> {
        self.participants.insert(who.user_id);
        Ok(())
    }

    // Every other handler (video, share, chat, leave, speaker, state) keeps its
    // default, which ignores the delivery.
}

/// The stream ended: log the summary.
impl Drop for StreamStats {
    fn drop(&mut self) {
        info!(
            "stream {} ended: {} audio frames ({} bytes), {} transcript segments, {} participants",
            self.stream_id,
            self.audio_frames,
            self.audio_bytes,
            self.transcript_segments,
            self.participants.len()
        );
    }
}

// Export `EventLogger` as this component's `guest` interface.
zoomhost_sdk::export_plugin!(EventLogger);
