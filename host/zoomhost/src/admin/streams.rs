//! The RTMS streams this host holds, as the admin API shows them: a thin [`InputSink`]
//! between the RTMS client and the router that remembers each open stream (its info and
//! the plugins it reaches) and counts its frames by kind.
//!
//! Each stream counts into its own counters (one relaxed add per frame, on a cache line
//! no other stream writes), so streams on different threads never contend; a scrape adds
//! up the open streams and the totals of the closed ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use zoomhost_types::{
    AudioFrame, ChatMessage, Event, InputSink, MediaKind, Participant, StreamInfo, StreamSink,
    StreamState, TranscriptSegment, VideoFrame,
};

/// Frame kinds as counted: the media kinds, in [`MediaKind::ALL`]'s order.
const KINDS: usize = MediaKind::ALL.len();

fn slot(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Transcript => 1,
        MediaKind::Video => 2,
        MediaKind::Share => 3,
        MediaKind::Chat => 4,
    }
}

/// One open stream's record.
struct Open {
    info: StreamInfo,
    plugins: Vec<Arc<str>>,
    opened_at: SystemTime,
    frames: Arc<FrameCounts>,
}

/// Frames by kind.
#[derive(Debug, Default)]
struct FrameCounts([AtomicU64; KINDS]);

impl FrameCounts {
    fn load(&self) -> [u64; KINDS] {
        std::array::from_fn(|i| self.0[i].load(Relaxed))
    }
}

/// The open streams and the frames of the closed ones.
#[derive(Default)]
pub struct StreamRegistry {
    /// Open streams by a registry-wide number (a stream id may reopen after a failover).
    open: Mutex<BTreeMap<u64, Open>>,
    next: AtomicU64,
    /// Frames of the streams that closed.
    closed: Mutex<[u64; KINDS]>,
}

impl std::fmt::Debug for StreamRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRegistry")
            .field("open", &self.open_count())
            .finish()
    }
}

/// An open stream, as `/v1/streams` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    /// The RTMS stream id.
    pub stream_id: String,
    /// The meeting (or webinar, session...) it belongs to.
    pub meeting_id: String,
    /// The product: meeting, webinar, ...
    pub kind: String,
    /// The media kinds it carries.
    pub media: Vec<String>,
    /// The plugins its media reaches.
    pub plugins: Vec<String>,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// Frames delivered so far, by kind.
    pub frames: BTreeMap<String, u64>,
}

impl StreamRegistry {
    /// A sink for the RTMS client: everything goes to `inner` (the router), streams are
    /// recorded here.
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn InputSink>) -> Arc<dyn InputSink> {
        Arc::new(CountingSink {
            inner,
            registry: self.clone(),
        })
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Frames delivered so far by kind (open and closed streams), by kind name.
    pub fn frames(&self) -> Vec<(&'static str, u64)> {
        let mut total = *self.closed.lock().unwrap_or_else(|p| p.into_inner());
        for open in self.open.lock().unwrap_or_else(|p| p.into_inner()).values() {
            for (t, n) in total.iter_mut().zip(open.frames.load()) {
                *t += n;
            }
        }
        MediaKind::ALL
            .iter()
            .map(|k| (k.as_str(), total[slot(*k)]))
            .collect()
    }

    /// The open streams, by stream id.
    pub fn list(&self) -> Vec<StreamView> {
        let mut out: Vec<StreamView> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|o| {
                let counts = o.frames.load();
                StreamView {
                    stream_id: o.info.stream_id.clone(),
                    meeting_id: o.info.meeting_id.clone(),
                    kind: format!("{:?}", o.info.kind).to_lowercase(),
                    media: o
                        .info
                        .media
                        .iter()
                        .map(|k| k.as_str().to_string())
                        .collect(),
                    plugins: o.plugins.iter().map(|p| p.to_string()).collect(),
                    opened_at_ms: o
                        .opened_at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                    frames: MediaKind::ALL
                        .iter()
                        .filter(|k| counts[slot(**k)] > 0 || o.info.media.contains(k))
                        .map(|k| (k.as_str().to_string(), counts[slot(*k)]))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        out
    }

    fn register(&self, info: StreamInfo, plugins: Vec<Arc<str>>) -> (u64, Arc<FrameCounts>) {
        let key = self.next.fetch_add(1, Relaxed);
        let frames = Arc::new(FrameCounts::default());
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            Open {
                info,
                plugins,
                opened_at: SystemTime::now(),
                frames: frames.clone(),
            },
        );
        (key, frames)
    }

    fn retire(&self, key: u64) {
        let Some(open) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
        else {
            return;
        };
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        for (t, n) in closed.iter_mut().zip(open.frames.load()) {
            *t += n;
        }
    }
}

struct CountingSink {
    inner: Arc<dyn InputSink>,
    registry: Arc<StreamRegistry>,
}

impl InputSink for CountingSink {
    fn event(&self, event: Event) -> usize {
        self.inner.event(event)
    }

    fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink> {
        let inner = self.inner.open_stream(info.clone());
        let (key, frames) = self.registry.register(info, inner.consumers());
        let mut wanted = [false; KINDS];
        for kind in MediaKind::ALL {
            wanted[slot(kind)] = inner.wants(kind);
        }
        Box::new(CountingStream {
            wanted,
            inner: Some(inner),
            frames,
            key,
            registry: self.registry.clone(),
        })
    }
}

/// One stream's sink: counts, then passes on.
struct CountingStream {
    /// The inner stream's answers to `wants`, by kind (fixed when a stream opens): asked
    /// on every frame.
    wanted: [bool; KINDS],
    inner: Option<Box<dyn StreamSink>>,
    frames: Arc<FrameCounts>,
    key: u64,
    registry: Arc<StreamRegistry>,
}

impl CountingStream {
    #[inline]
    fn count(&self, kind: MediaKind) {
        self.frames.0[slot(kind)].fetch_add(1, Relaxed);
    }

    #[inline]
    fn inner(&self) -> Option<&dyn StreamSink> {
        self.inner.as_deref()
    }
}

impl Drop for CountingStream {
    fn drop(&mut self) {
        self.registry.retire(self.key);
    }
}

impl StreamSink for CountingStream {
    fn id(&self) -> &str {
        self.inner().map_or("", |s| s.id())
    }

    fn wants(&self, kind: MediaKind) -> bool {
        self.wanted[slot(kind)]
    }

    fn consumers(&self) -> Vec<Arc<str>> {
        self.inner().map(|s| s.consumers()).unwrap_or_default()
    }

    fn audio(&self, frame: AudioFrame) {
        self.count(MediaKind::Audio);
        if let Some(s) = self.inner() {
            s.audio(frame);
        }
    }

    fn transcript(&self, segment: TranscriptSegment) {
        self.count(MediaKind::Transcript);
        if let Some(s) = self.inner() {
            s.transcript(segment);
        }
    }

    fn video(&self, frame: VideoFrame) {
        self.count(MediaKind::Video);
        if let Some(s) = self.inner() {
            s.video(frame);
        }
    }

    fn share(&self, frame: VideoFrame) {
        self.count(MediaKind::Share);
        if let Some(s) = self.inner() {
            s.share(frame);
        }
    }

    fn chat(&self, message: ChatMessage) {
        self.count(MediaKind::Chat);
        if let Some(s) = self.inner() {
            s.chat(message);
        }
    }

    fn participant_join(&self, who: Participant) {
        if let Some(s) = self.inner() {
            s.participant_join(who);
        }
    }

    fn participant_leave(&self, who: Participant) {
        if let Some(s) = self.inner() {
            s.participant_leave(who);
        }
    }

    fn active_speaker(&self, who: Participant) {
        if let Some(s) = self.inner() {
            s.active_speaker(who);
        }
    }

    fn state(&self, state: StreamState) {
        if let Some(s) = self.inner() {
            s.state(state);
        }
    }

    fn close(mut self: Box<Self>) {
        if let Some(inner) = self.inner.take() {
            inner.close();
        }
        // Dropping `self` retires the stream's record.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Null;
    struct NullStream(String);

    impl InputSink for Null {
        fn event(&self, _: Event) -> usize {
            0
        }
        fn open_stream(&self, info: StreamInfo) -> Box<dyn StreamSink> {
            Box::new(NullStream(info.stream_id))
        }
    }

    impl StreamSink for NullStream {
        fn id(&self) -> &str {
            &self.0
        }
        fn wants(&self, _: MediaKind) -> bool {
            true
        }
        fn consumers(&self) -> Vec<Arc<str>> {
            vec![Arc::from("rec")]
        }
        fn audio(&self, _: AudioFrame) {}
        fn transcript(&self, _: TranscriptSegment) {}
        fn video(&self, _: VideoFrame) {}
        fn share(&self, _: VideoFrame) {}
        fn chat(&self, _: ChatMessage) {}
        fn participant_join(&self, _: Participant) {}
        fn participant_leave(&self, _: Participant) {}
        fn active_speaker(&self, _: Participant) {}
        fn state(&self, _: StreamState) {}
        fn close(self: Box<Self>) {}
    }

    fn info(id: &str) -> StreamInfo {
        StreamInfo {
            stream_id: id.into(),
            meeting_id: "m".into(),
            kind: zoomhost_types::SessionKind::Meeting,
            media: vec![MediaKind::Audio],
            audio: zoomhost_types::AudioFormat {
                codec: zoomhost_types::AudioCodec::L16,
                sample_rate: 16_000,
                channels: 1,
                frame_ms: 20,
            },
        }
    }

    fn frame() -> AudioFrame {
        AudioFrame {
            user_id: 1,
            user_name: "a".into(),
            timestamp: 0,
            data: bytes::Bytes::new(),
        }
    }

    #[test]
    fn streams_are_listed_while_open_and_their_frames_kept_after() {
        let registry = Arc::new(StreamRegistry::default());
        let sink = registry.sink(Arc::new(Null));
        let a = sink.open_stream(info("a"));
        let b = sink.open_stream(info("b"));
        a.audio(frame());
        a.audio(frame());
        b.audio(frame());
        let listed = registry.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].plugins, vec!["rec".to_string()]);
        assert_eq!(listed[0].frames["audio"], 2);
        a.close();
        drop(b);
        assert_eq!(registry.open_count(), 0);
        assert_eq!(registry.frames()[0], ("audio", 3));
    }
}
