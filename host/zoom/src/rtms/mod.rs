//! The RTMS client (Realtime Media Streams; see the RTMS notes in the crate docs).
//!
//! [`RtmsManager`] sees every event the sources deliver (the host taps its input path), whatever its source. A
//! `*.rtms_started` event (`meeting.`, `webinar.`, `session.`, `contact_center.voice_`)
//! starts a stream task (see [`stream`]); `*.rtms_stopped` stops it. The same start seen
//! twice (webhook *and* WebSocket deliver it) opens one stream. Streams are isolated: each
//! has its own task and sockets, and one stream's failure never touches another.
//!
//! Signatures use the credentials of the app that owns the RTMS scope
//! (`ZOOM_RTMS_CLIENT_ID` / `ZOOM_RTMS_CLIENT_SECRET`, falling back to the S2S app's
//! `ZOOM_CLIENT_ID` / `ZOOM_CLIENT_SECRET`); the client id is never sent and the secret
//! never logged.

pub mod protocol;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use zoomhost_protocol::Secret;
use zoomhost_types::InputSink;
use zoomhost_types::{Event, MediaKind, SessionKind};

pub use protocol::AudioRequest;

/// RTMS client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RtmsConfig {
    /// Client id of the app that owns the RTMS scope (signs handshakes; never sent).
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// Media kinds requested from Zoom (default audio and transcript).
    pub media: Vec<MediaKind>,
    /// The audio requested.
    pub audio: AudioRequest,
    /// Transcript source language (Zoom's language id); `None` asks for detection.
    pub transcript_language: Option<String>,
    /// One media socket for every kind (`all`) instead of one per kind.
    pub single_socket: bool,
    /// Send JSON in binary frames, as Zoom's own client does (default true).
    pub binary_frames: bool,
    /// Limit for connecting a socket and for each handshake reply.
    pub connect_timeout: Duration,
    /// A socket silent this long (no keep-alive, no data) is treated as dropped.
    pub idle_timeout: Duration,
    /// How long after a drop the stream may still be resumed (Zoom: about 60 s).
    pub resume_window: Duration,
    /// First re-handshake delay (doubles up to `reconnect_max`).
    pub reconnect_min: Duration,
    /// Longest re-handshake delay.
    pub reconnect_max: Duration,
}

impl RtmsConfig {
    /// Production defaults for an app's credentials.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            media: vec![MediaKind::Audio, MediaKind::Transcript],
            audio: AudioRequest::default(),
            transcript_language: None,
            single_socket: false,
            binary_frames: true,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            resume_window: Duration::from_secs(60),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(8),
        }
    }
}

/// What `*.rtms_started` says about a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    /// Meeting, webinar, Video SDK session or Contact Center engagement.
    pub kind: SessionKind,
    /// The id that goes in the handshakes' `meeting_uuid` (whatever its kind).
    pub meeting_uuid: String,
    /// `rtms_stream_id`.
    pub stream_id: String,
    /// Signaling URLs, in the order to try.
    pub server_urls: Vec<String>,
}

impl StreamStart {
    /// Reads a `*.rtms_started` payload (fields flat under `payload`; an `object` wrapper
    /// is tolerated). The error names the missing field.
    pub fn from_event(name: &str, payload: &Value) -> Result<StreamStart, String> {
        let kind = session_kind(name);
        let body = match payload.get("object") {
            Some(o) if o.get("rtms_stream_id").is_some() => o,
            _ => payload,
        };
        let text = |key: &str| -> Option<String> {
            match body.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            }
        };
        let id_keys: &[&str] = match kind {
            SessionKind::Meeting => &["meeting_uuid"],
            SessionKind::Webinar => &["webinar_uuid", "meeting_uuid"],
            SessionKind::VideoSdk => &["session_id", "meeting_uuid"],
            SessionKind::ContactCenter => &["engagement_id", "meeting_uuid"],
            SessionKind::Phone => &["call_id"],
        };
        let meeting_uuid = id_keys
            .iter()
            .find_map(|k| text(k))
            .ok_or_else(|| format!("{name}: payload has no {}", id_keys[0]))?;
        let stream_id = text("rtms_stream_id")
            .ok_or_else(|| format!("{name}: payload has no rtms_stream_id"))?;
        let server_urls: Vec<String> = match body.get("server_urls") {
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if server_urls.is_empty() {
            return Err(format!("{name}: payload has no server_urls"));
        }
        for url in &server_urls {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "ws" | "wss") => {}
                _ => {
                    return Err(format!(
                        "{name}: server_urls entry {url:?} is not a ws(s) URL"
                    ))
                }
            }
        }
        Ok(StreamStart {
            kind,
            meeting_uuid,
            stream_id,
            server_urls,
        })
    }
}

/// The session kind an RTMS event name belongs to.
fn session_kind(name: &str) -> SessionKind {
    if name.starts_with("webinar.") {
        SessionKind::Webinar
    } else if name.starts_with("session.") {
        SessionKind::VideoSdk
    } else if name.starts_with("contact_center.") {
        SessionKind::ContactCenter
    } else {
        SessionKind::Meeting
    }
}

/// Why a stream is being stopped from outside.
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// `*.rtms_stopped` with its `stop_reason`.
    Event(i64),
    /// The host is shutting down.
    Shutdown,
}

/// What happens to streams, for live views and tests.
#[derive(Debug, Clone)]
pub enum RtmsNotice {
    /// The stream opened in the plugins.
    Opened {
        /// Stream id.
        stream_id: String,
        /// Meeting id.
        meeting_id: String,
        /// Plugins with a session.
        plugins: Vec<Arc<str>>,
        /// Confirmed audio: Hz, channels, ms per frame.
        format: (u32, u8, u32),
    },
    /// A socket was lost and is being re-handshaken.
    Reconnecting {
        /// Stream id.
        stream_id: String,
        /// `signaling` or the media kinds of the socket.
        socket: String,
        /// Delay before the attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// The stream ended cleanly.
    Closed {
        /// Stream id.
        stream_id: String,
        /// Why.
        reason: String,
    },
    /// The stream was given up.
    Failed {
        /// Stream id.
        stream_id: String,
        /// Why, with the status code when the server gave one.
        error: String,
    },
}

/// Counters over every stream.
#[derive(Debug, Default)]
pub struct RtmsStats {
    /// Streams opened in the plugins.
    pub opened: AtomicU64,
    /// Streams that ended cleanly.
    pub stopped: AtomicU64,
    /// Streams given up.
    pub failed: AtomicU64,
    /// Frames and segments handed to the input sink.
    pub frames: AtomicU64,
    /// Frames of kinds no plugin subscribed to (counted, dropped).
    pub unsubscribed: AtomicU64,
    /// Frames sent again by the server after a resume (dropped).
    pub duplicates: AtomicU64,
    /// Malformed messages skipped.
    pub malformed: AtomicU64,
    /// Re-handshakes after a drop.
    pub reconnects: AtomicU64,
    /// Keep-alive requests answered.
    pub keepalives: AtomicU64,
}

/// A snapshot of [`RtmsStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtmsStatsSnapshot {
    /// See [`RtmsStats::opened`].
    pub opened: u64,
    /// See [`RtmsStats::stopped`].
    pub stopped: u64,
    /// See [`RtmsStats::failed`].
    pub failed: u64,
    /// See [`RtmsStats::frames`].
    pub frames: u64,
    /// See [`RtmsStats::unsubscribed`].
    pub unsubscribed: u64,
    /// See [`RtmsStats::duplicates`].
    pub duplicates: u64,
    /// See [`RtmsStats::malformed`].
    pub malformed: u64,
    /// See [`RtmsStats::reconnects`].
    pub reconnects: u64,
    /// See [`RtmsStats::keepalives`].
    pub keepalives: u64,
}

impl RtmsStats {
    /// The counters now.
    pub fn snapshot(&self) -> RtmsStatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RtmsStatsSnapshot {
            opened: g(&self.opened),
            stopped: g(&self.stopped),
            failed: g(&self.failed),
            frames: g(&self.frames),
            unsubscribed: g(&self.unsubscribed),
            duplicates: g(&self.duplicates),
            malformed: g(&self.malformed),
            reconnects: g(&self.reconnects),
            keepalives: g(&self.keepalives),
        }
    }
}

struct Running {
    stop: watch::Sender<Option<StopCause>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts and stops RTMS streams from the events the host hands it.
pub struct RtmsManager {
    config: Arc<RtmsConfig>,
    sink: Arc<dyn InputSink>,
    runtime: tokio::runtime::Handle,
    streams: Arc<Mutex<HashMap<String, Running>>>,
    stats: Arc<RtmsStats>,
    notices: broadcast::Sender<RtmsNotice>,
}

impl std::fmt::Debug for RtmsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsManager")
            .field("streams", &self.active())
            .finish()
    }
}

impl RtmsManager {
    /// A manager feeding `sink`. Call from within a tokio runtime. It acts on the events
    /// given to [`RtmsManager::on_event`]; the host wires the sources' events to it (see
    /// [`RtmsManager::event_tap`]).
    pub fn new(config: RtmsConfig, sink: Arc<dyn InputSink>) -> Arc<Self> {
        let (notices, _) = broadcast::channel(1024);
        Arc::new(Self {
            config: Arc::new(config),
            sink,
            runtime: tokio::runtime::Handle::current(),
            streams: Arc::default(),
            stats: Arc::default(),
            notices,
        })
    }

    /// A tap for the host's input path: every event passed to it reaches
    /// [`RtmsManager::on_event`], so RTMS starts and stops from every source open and close
    /// streams. The tap holds only a weak reference.
    pub fn event_tap(self: &Arc<Self>) -> zoomhost_types::EventTap {
        let weak = Arc::downgrade(self);
        Arc::new(move |event: &Event| {
            if let Some(manager) = weak.upgrade() {
                manager.on_event(event);
            }
        })
    }

    /// Counters over every stream.
    pub fn stats(&self) -> RtmsStatsSnapshot {
        self.stats.snapshot()
    }

    /// Stream notices (opened, reconnecting, closed, failed).
    pub fn subscribe(&self) -> broadcast::Receiver<RtmsNotice> {
        self.notices.subscribe()
    }

    /// Ids of the streams running now.
    pub fn active(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Looks at one event: starts or stops a stream when it is an RTMS lifecycle event.
    /// Never blocks.
    pub fn on_event(&self, event: &Event) {
        let name = event.name.as_str();
        let is = |suffix: &str| name.ends_with(suffix) && name.contains('.');
        if !(is("rtms_started") || is("rtms_stopped") || is("rtms_interrupted")) {
            return;
        }
        let payload: Value = match serde_json::from_str(&event.payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(event = name, "RTMS event payload is not JSON: {e}");
                return;
            }
        };
        if is("rtms_started") {
            match StreamStart::from_event(name, &payload) {
                Ok(start) => self.start(start),
                Err(e) => tracing::error!(event = name, "cannot start an RTMS stream: {e}"),
            }
        } else {
            let body = payload.get("object").unwrap_or(&payload);
            let Some(stream_id) = body
                .get("rtms_stream_id")
                .or_else(|| payload.get("rtms_stream_id"))
                .and_then(Value::as_str)
            else {
                tracing::error!(event = name, "RTMS event has no rtms_stream_id");
                return;
            };
            if is("rtms_stopped") {
                let reason = body
                    .get("stop_reason")
                    .and_then(protocol::lenient_value_u64)
                    .map_or(0, |r| r as i64);
                self.stop(stream_id, StopCause::Event(reason));
            } else {
                tracing::info!(
                    stream = stream_id,
                    "Zoom reports the RTMS stream interrupted; the client re-handshakes on its own"
                );
            }
        }
    }

    /// Starts a stream unless it is already running.
    pub fn start(&self, start: StreamStart) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.contains_key(&start.stream_id) {
            tracing::debug!(stream = %start.stream_id, "RTMS stream already running; duplicate start ignored");
            return;
        }
        tracing::info!(
            stream = %start.stream_id,
            meeting = %start.meeting_uuid,
            "RTMS stream starting ({} signaling URL(s))",
            start.server_urls.len()
        );
        let (stop, stop_rx) = watch::channel(None);
        let id = start.stream_id.clone();
        let ctx = stream::StreamCtx {
            start,
            config: self.config.clone(),
            sink: self.sink.clone(),
            stats: self.stats.clone(),
            stop: stop_rx,
            notices: self.notices.clone(),
        };
        let registry = self.streams.clone();
        let key = id.clone();
        let task = self.runtime.spawn(async move {
            stream::run(ctx).await;
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
        streams.insert(id, Running { stop, task });
    }

    /// Stops a stream (no-op when it is not running).
    pub fn stop(&self, stream_id: &str, cause: StopCause) {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        match streams.get(stream_id) {
            Some(running) => {
                let _ = running.stop.send(Some(cause));
            }
            None => tracing::debug!(
                stream = stream_id,
                "stop for an RTMS stream that is not running"
            ),
        }
    }

    /// Stops every stream and waits (up to `timeout`) for their sockets to close.
    pub async fn shutdown(&self, timeout: Duration) {
        let tasks: Vec<tokio::task::JoinHandle<()>> = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams
                .drain()
                .map(|(_, running)| {
                    let _ = running.stop.send(Some(StopCause::Shutdown));
                    running.task
                })
                .collect()
        };
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("RTMS streams did not close within {timeout:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn starts_parse_every_variant() {
        let p = json!({"meeting_uuid":"m==","rtms_stream_id":"s1","server_urls":"wss://a/x, wss://b/y","operator_id":"o"});
        let s = StreamStart::from_event("meeting.rtms_started", &p).unwrap();
        assert_eq!(s.server_urls, vec!["wss://a/x", "wss://b/y"]);
        assert_eq!(s.kind, SessionKind::Meeting);
        let w = json!({"webinar_uuid":"w","rtms_stream_id":"s","server_urls":"wss://a"});
        assert_eq!(
            StreamStart::from_event("webinar.rtms_started", &w)
                .unwrap()
                .meeting_uuid,
            "w"
        );
        let v = json!({"session_id":"v","rtms_stream_id":"s","server_urls":"wss://a"});
        assert_eq!(
            StreamStart::from_event("session.rtms_started", &v)
                .unwrap()
                .kind,
            SessionKind::VideoSdk
        );
        let c = json!({"engagement_id":"e","rtms_stream_id":"s","server_urls":"wss://a"});
        assert_eq!(
            StreamStart::from_event("contact_center.voice_rtms_started", &c)
                .unwrap()
                .kind,
            SessionKind::ContactCenter
        );
    }

    #[test]
    fn bad_starts_name_the_field() {
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"rtms_stream_id":"s","server_urls":"wss://a"}),
        )
        .unwrap_err();
        assert!(e.contains("meeting_uuid"), "{e}");
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"meeting_uuid":"m","server_urls":"wss://a"}),
        )
        .unwrap_err();
        assert!(e.contains("rtms_stream_id"), "{e}");
        let e = StreamStart::from_event(
            "meeting.rtms_started",
            &json!({"meeting_uuid":"m","rtms_stream_id":"s","server_urls":"http://a"}),
        )
        .unwrap_err();
        assert!(e.contains("not a ws"), "{e}");
    }
}
