//! The RTMS client (Realtime Media Streams; see the RTMS notes in the crate docs).
//!
//! [`RtmsManager`] sees every event the sources deliver (the host taps its input path),
//! whatever its source, and acts on the RTMS lifecycle of every product (`meeting.`,
//! `webinar.`, `session.`, `contact_center.voice_`, `phone.`):
//!
//! - `*.rtms_started` starts a stream task (the `stream` module). For a stream that is already
//!   running it is Zoom's **failover** signal when its `event_ts` is newer than the last
//!   start's: the stream drops its sockets and re-handshakes at once against the new
//!   `server_urls`. The same or an older `event_ts` is a duplicate (webhook *and*
//!   WebSocket deliver it) or a late webhook retry carrying a dead server's URLs: dropped,
//!   also for streams that ended not long ago.
//! - `*.rtms_interrupted` re-handshakes the stream's signaling and media with the saved
//!   URLs (the event carries none).
//! - `*.rtms_stopped` stops it; stop reasons 10 to 19 and 24 end it as failed.
//! - `rtms.concurrency_limited` / `rtms.concurrency_near_limit` are logged and counted
//!   (they reach plugins like any event, through the router).
//!
//! Streams are isolated: each has its own task and sockets, and one stream's failure
//! never touches another. Plugins may ask for a stream's end or for one participant's
//! video through [`StreamControl`], which only queues the request.
//!
//! **Saved streams** (for a cluster, without this crate knowing about one): given a
//! [`StreamStateSink`] ([`RtmsManager::set_state_sink`]), the manager reports each
//! stream's [`SavedStream`] (ids, product, signaling URLs, the start's `event_ts`, and
//! its progress: the newest timestamp delivered per media kind and speaker) when it
//! starts, at once when Zoom moves it (failover), every `progress_every` while frames
//! flow, and once more when it is handed over; and reports its end when it really ended
//! (closed, stopped by Zoom, given up), never on a hand-over, a shutdown or an
//! [`RtmsManager::abort`]. Another node's manager [`RtmsManager::resume`]s a saved
//! stream: it re-handshakes at once against the saved URLs, as after Zoom's
//! `*.rtms_interrupted` (scenario 2: Zoom keeps the stream 60 s and replays the audio it
//! buffered), and drops the replay of what the previous node already delivered. The
//! plugins' media session opens anew on the resuming node. [`RtmsManager::hand_over`]
//! ends streams on this node so that another can resume them: what the sockets hold is
//! delivered, then they are dropped without a close frame or `STREAM_CLOSE_REQ`.
//!
//! Signatures use the credentials of the app that owns the RTMS scope
//! (`ZOOM_RTMS_CLIENT_ID` / `ZOOM_RTMS_CLIENT_SECRET`, falling back to the S2S app's
//! `ZOOM_CLIENT_ID` / `ZOOM_CLIENT_SECRET`); the client id is never sent and the secret
//! never logged.

pub mod protocol;
mod start;
mod stats;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

use zoomhost_protocol::rtms::product::{lifecycle, Lifecycle};
use zoomhost_protocol::Secret;
use zoomhost_types::{ControlError, Event, InputSink, MediaKind, StreamControl};

pub use protocol::AudioRequest;
pub use start::StreamStart;
pub use stats::{RtmsStats, RtmsStatsSnapshot, STOP_REASONS};
pub use stream::Progress;

/// Which id field the handshakes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeId {
    /// The product's own key (`meeting_uuid`, `webinar_uuid`, `session_id`,
    /// `engagement_id`, `call_id`), as Zoom's 2026 samples and its Contact Center docs
    /// send it.
    #[default]
    Product,
    /// Always `meeting_uuid`, whatever the product, as Zoom's C SDK was seen sending it.
    MeetingUuid,
}

/// RTMS client settings. Every timer is here so tests can run Zoom's windows scaled down;
/// the defaults are Zoom's documented values.
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
    /// Transcript source language (`src_language`: Zoom's language number, e.g. 9
    /// English; `zoomhost_protocol::rtms::language`); `None` sends none.
    pub transcript_language: Option<i32>,
    /// Transcript language detection (`enable_lid`); `None` leaves Zoom's default (on).
    pub enable_lid: Option<bool>,
    /// `buffer_data` of the signaling handshake; `None` leaves Zoom's default (true:
    /// audio from before the connection is replayed).
    pub buffer_data: Option<bool>,
    /// Which id field the handshakes carry (the signature is over the same value).
    pub handshake_id: HandshakeId,
    /// Ask for one participant's video (`data_opt` 4), chosen by plugins through
    /// [`StreamControl::subscribe_video`], instead of the active speaker's (needs video
    /// in `media`).
    pub individual_video: bool,
    /// One media socket for every kind (`all`) instead of one per kind.
    pub single_socket: bool,
    /// Send JSON in binary frames, as Zoom's own client does (default true).
    pub binary_frames: bool,
    /// Limit for connecting a socket and for each handshake reply.
    pub connect_timeout: Duration,
    /// A socket silent this long (no keep-alive, no data) is treated as dropped (Zoom
    /// sends keep-alives every 10 s while idle: 35 s is three missed ones and slack). A
    /// media socket checks in quarters of it, so it gives up within 1.25 times it.
    pub idle_timeout: Duration,
    /// How long Zoom keeps a stream resumable after its signaling was lost (60 s).
    pub resume_window: Duration,
    /// How long Zoom keeps a lost media connection resumable (65 s).
    pub media_resume_window: Duration,
    /// First re-handshake delay (3 s), doubling up to `reconnect_max`; back to the first
    /// after every successful handshake.
    pub reconnect_min: Duration,
    /// Longest re-handshake delay (30 s).
    pub reconnect_max: Duration,
    /// After a socket closes without a word from Zoom (no `*.rtms_interrupted`, no media
    /// interrupted event), how long to wait for one before reconnecting anyway (5 s).
    pub close_grace: Duration,
    /// First delay after a status 8 (duplicate signal request) refusal (1.5 s), doubling.
    pub duplicate_retry: Duration,
    /// How many times a status 8 refusal is retried (3).
    pub duplicate_retries: u32,
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
            enable_lid: None,
            buffer_data: None,
            handshake_id: HandshakeId::Product,
            individual_video: false,
            single_socket: false,
            binary_frames: true,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(35),
            resume_window: Duration::from_secs(60),
            media_resume_window: Duration::from_secs(65),
            reconnect_min: Duration::from_secs(3),
            reconnect_max: Duration::from_secs(30),
            close_grace: Duration::from_secs(5),
            duplicate_retry: Duration::from_millis(1500),
            duplicate_retries: 3,
        }
    }
}

/// Why a stream is being stopped from outside.
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// `*.rtms_stopped` with its `stop_reason`.
    Event(i64),
    /// The host is shutting down (or draining): the sockets close, but no
    /// `STREAM_CLOSE_REQ` is sent, so another node may take the stream over.
    Shutdown,
    /// Another node takes the stream over: what the media sockets hold is delivered,
    /// then every socket is dropped without a close frame (a lost connection, for Zoom).
    Handover,
}

/// What another node needs to resume a stream: everything of its `*.rtms_started` that
/// is not a secret, and how far it got. The handshake signature is recomputed from these
/// ids and the resuming node's own credentials.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedStream {
    /// `rtms_stream_id`.
    pub stream_id: String,
    /// The session's id (`meeting_uuid`, `webinar_uuid`, `session_id`, `engagement_id`
    /// or `call_id`), which the handshakes carry.
    pub meeting_uuid: String,
    /// The name of the `*.rtms_started` event that started it, which names the product
    /// (e.g. `meeting.rtms_started`, `contact_center.voice_rtms_started`).
    pub started_event: String,
    /// The signaling URLs of the newest start (they change on failover).
    pub server_urls: Vec<String>,
    /// `event_ts` of the newest start acted on: a redelivered start with the same or an
    /// older one is a duplicate, a newer one a failover.
    pub event_ts: u64,
    /// The newest frame delivered per media kind and speaker.
    #[serde(default)]
    pub progress: Vec<Progress>,
}

impl SavedStream {
    /// What its `*.rtms_started` said.
    pub fn start(&self) -> StreamStart {
        StreamStart {
            kind: start::session_kind(&self.started_event),
            meeting_uuid: self.meeting_uuid.clone(),
            stream_id: self.stream_id.clone(),
            server_urls: self.server_urls.clone(),
        }
    }
}

/// Where a manager reports its streams' [`SavedStream`]s (a cluster's key-value store).
/// Both calls come from the stream's task or the event path and must not block: queue
/// the write.
pub trait StreamStateSink: Send + Sync {
    /// The stream started, moved, progressed or was handed over: `state` is current.
    fn saved(&self, state: &SavedStream);
    /// The stream ended for good (closed, stopped, failed): forget it.
    fn ended(&self, state: &SavedStream);
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
    /// A socket was lost (or Zoom moved the stream) and is being re-handshaken.
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
    /// The stream was given up, or Zoom stopped it for a connection failure.
    Failed {
        /// Stream id.
        stream_id: String,
        /// Why, with the status code or the stop reason (number and name).
        error: String,
    },
}

/// What the manager asks of a running stream.
#[derive(Debug)]
pub(crate) enum Request {
    /// Zoom moved the stream: re-handshake at once against these URLs.
    Failover(StreamStart),
    /// `*.rtms_interrupted` with its `event_ts`.
    Interrupted(u64),
    /// A plugin asks for the stream's end (`STREAM_CLOSE_REQ`).
    Close,
    /// A plugin asks for one participant's video.
    SubscribeVideo {
        /// The participant.
        user_id: u32,
        /// On or off.
        subscribe: bool,
    },
}

struct Running {
    stop: watch::Sender<Option<StopCause>>,
    requests: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
    /// `event_ts` of the newest `*.rtms_started` acted on.
    started_ts: u64,
    /// What it saves (its progress read from `dedupe`).
    saved: Arc<Mutex<SavedStream>>,
    dedupe: Arc<stream::Dedupe>,
}

impl Running {
    fn state(&self) -> SavedStream {
        let mut state = lock(&self.saved).clone();
        state.progress = self.dedupe.snapshot();
        state
    }
}

/// A [`StreamStateSink`] and how often progress is saved.
#[derive(Clone)]
struct Saver {
    sink: Arc<dyn StreamStateSink>,
    every: Duration,
}

/// How long an ended stream's last start is remembered, so that Zoom's webhook retries
/// (after 5, 20 and 60 minutes) of its `rtms_started` do not open it again.
const REMEMBER_ENDED: Duration = Duration::from_secs(65 * 60);
/// At most this many ended streams are remembered.
const REMEMBER_ENDED_MAX: usize = 10_000;

/// Starts and stops RTMS streams from the events the host hands it.
pub struct RtmsManager {
    config: Arc<RtmsConfig>,
    sink: Arc<dyn InputSink>,
    runtime: tokio::runtime::Handle,
    streams: Arc<Mutex<HashMap<String, Running>>>,
    ended: Arc<Mutex<HashMap<String, (u64, Instant)>>>,
    stats: Arc<RtmsStats>,
    notices: broadcast::Sender<RtmsNotice>,
    saver: Mutex<Option<Saver>>,
}

impl std::fmt::Debug for RtmsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsManager")
            .field("streams", &self.active())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            ended: Arc::default(),
            stats: Arc::default(),
            notices,
            saver: Mutex::default(),
        })
    }

    /// Reports every stream's [`SavedStream`] to `sink` from now on (streams already
    /// running are reported at once): at start, on failover, every `progress_every`
    /// while it delivers, when handed over; [`StreamStateSink::ended`] when it ended.
    pub fn set_state_sink(&self, sink: Arc<dyn StreamStateSink>, progress_every: Duration) {
        for running in lock(&self.streams).values() {
            sink.saved(&running.state());
        }
        *lock(&self.saver) = Some(Saver {
            sink,
            every: progress_every.max(Duration::from_millis(10)),
        });
    }

    /// The current state of every running stream, sorted by stream id.
    pub fn saved_streams(&self) -> Vec<SavedStream> {
        let mut out: Vec<SavedStream> = lock(&self.streams).values().map(Running::state).collect();
        out.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        out
    }

    /// Resumes a stream another node ran (saved by its [`StreamStateSink`]): re-handshakes
    /// at once against the saved URLs, as after Zoom's `*.rtms_interrupted`, and drops
    /// Zoom's replay of what was delivered before. A stream already running here is left
    /// alone. Returns whether it started.
    pub fn resume(&self, saved: SavedStream) -> bool {
        if lock(&self.streams).contains_key(&saved.stream_id) {
            tracing::debug!(stream = %saved.stream_id, "resume: the RTMS stream already runs here");
            return false;
        }
        RtmsStats::bump(&self.stats.resumed);
        tracing::info!(
            stream = %saved.stream_id,
            meeting = %saved.meeting_uuid,
            "RTMS stream resumed from saved state: re-handshaking with {} saved URL(s)",
            saved.server_urls.len()
        );
        let dedupe = Arc::new(stream::Dedupe::restored(&saved.progress));
        self.launch(saved.start(), saved.event_ts, dedupe)
    }

    /// Hands the running streams `which` selects over to another node: each delivers
    /// what its media sockets hold, saves its final progress, and drops its sockets
    /// without a close frame or `STREAM_CLOSE_REQ` (for Zoom, a lost connection it keeps
    /// resumable). Waits up to `within` for them; returns how many were handed over.
    pub async fn hand_over(&self, which: impl Fn(&SavedStream) -> bool, within: Duration) -> usize {
        let tasks: Vec<tokio::task::JoinHandle<()>> = {
            let mut streams = lock(&self.streams);
            let chosen: Vec<String> = streams
                .iter()
                .filter(|(_, r)| which(&lock(&r.saved)))
                .map(|(id, _)| id.clone())
                .collect();
            chosen
                .into_iter()
                .filter_map(|id| streams.remove(&id))
                .map(|running| {
                    let _ = running.stop.send(Some(StopCause::Handover));
                    running.task
                })
                .collect()
        };
        let count = tasks.len();
        if count > 0 {
            RtmsStats::add(&self.stats.handed_over, count as u64);
            let all = futures_util::future::join_all(tasks);
            if tokio::time::timeout(within, all).await.is_err() {
                tracing::warn!("RTMS streams did not finish their hand-over within {within:?}");
            }
        }
        count
    }

    /// Kills every stream at once, as a crash would: tasks aborted, sockets dropped,
    /// nothing delivered, saved or reported any more (for crash tests and a host that
    /// must stop now).
    pub fn abort(&self) {
        *lock(&self.saver) = None;
        for (_, running) in lock(&self.streams).drain() {
            running.task.abort();
        }
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
        let mut ids: Vec<String> = lock(&self.streams).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Looks at one event: acts on RTMS lifecycle events and the account's concurrency
    /// notices. Never blocks.
    pub fn on_event(&self, event: &Event) {
        let name = event.name.as_str();
        let concurrency = matches!(
            name,
            "rtms.concurrency_limited" | "rtms.concurrency_near_limit"
        );
        let Some(step) = lifecycle(name).map(|(_, step)| step) else {
            if concurrency {
                self.on_concurrency(event);
            }
            return;
        };
        let payload: Value = match serde_json::from_str(&event.payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(event = name, "RTMS event payload is not JSON: {e}");
                return;
            }
        };
        if step == Lifecycle::Started {
            match StreamStart::from_event(name, &payload) {
                Ok(start) => self.start_at(start, event.timestamp),
                Err(e) => tracing::error!(event = name, "cannot start an RTMS stream: {e}"),
            }
            return;
        }
        let body = payload.get("object").unwrap_or(&payload);
        let Some(stream_id) = body
            .get("rtms_stream_id")
            .or_else(|| payload.get("rtms_stream_id"))
            .and_then(Value::as_str)
        else {
            tracing::error!(event = name, "RTMS event has no rtms_stream_id");
            return;
        };
        if step == Lifecycle::Stopped {
            let reason = body
                .get("stop_reason")
                .and_then(protocol::lenient_value_u64)
                .map_or(0, |r| r as i64);
            self.stop(stream_id, StopCause::Event(reason));
        } else {
            self.interrupted(stream_id, event.timestamp);
        }
    }

    fn on_concurrency(&self, event: &Event) {
        let payload: Value = serde_json::from_str(&event.payload).unwrap_or(Value::Null);
        let body = payload.get("object").unwrap_or(&payload);
        let number = |key: &str| body.get(key).map(Value::to_string).unwrap_or_default();
        if event.name == "rtms.concurrency_limited" {
            RtmsStats::bump(&self.stats.concurrency_limited);
            tracing::warn!(
                concurrency_number = %number("concurrency_number"),
                "Zoom reports the account's RTMS concurrency limit reached: no new streams \
                 start until some end"
            );
        } else {
            RtmsStats::bump(&self.stats.concurrency_near_limit);
            tracing::warn!(
                concurrency_number = %number("concurrency_number"),
                concurrency_limit = %number("concurrency_limit"),
                percentage = %number("percentage"),
                "Zoom reports the account's RTMS streams near the concurrency limit"
            );
        }
    }

    /// Starts a stream unless it is already running (a start without an `event_ts`).
    pub fn start(&self, start: StreamStart) {
        self.start_at(start, 0);
    }

    /// Acts on `*.rtms_started` sent at `event_ts`: starts the stream, or, when it is
    /// running, fails it over to the new URLs if `event_ts` is newer than the last
    /// start's; drops it otherwise (a duplicate, or a retry of an old start).
    pub fn start_at(&self, start: StreamStart, event_ts: u64) {
        let mut streams = lock(&self.streams);
        if let Some(running) = streams.get_mut(&start.stream_id) {
            if event_ts > running.started_ts {
                tracing::warn!(
                    stream = %start.stream_id,
                    event_ts,
                    previous = running.started_ts,
                    "Zoom moved the RTMS stream to another server (rtms_started again with a newer \
                     event_ts): re-handshaking at once with {} URL(s)",
                    start.server_urls.len()
                );
                running.started_ts = event_ts;
                RtmsStats::bump(&self.stats.failovers);
                {
                    let mut saved = lock(&running.saved);
                    saved.server_urls = start.server_urls.clone();
                    saved.event_ts = event_ts;
                }
                if let Some(saver) = lock(&self.saver).clone() {
                    saver.sink.saved(&running.state());
                }
                let _ = running.requests.send(Request::Failover(start));
            } else {
                RtmsStats::bump(&self.stats.duplicate_starts);
                tracing::debug!(
                    stream = %start.stream_id,
                    event_ts,
                    "RTMS stream already running; start with the same or an older event_ts dropped"
                );
            }
            return;
        }
        {
            let mut ended = lock(&self.ended);
            ended.retain(|_, (_, at)| at.elapsed() < REMEMBER_ENDED);
            if let Some((last_ts, _)) = ended.get(&start.stream_id) {
                if event_ts <= *last_ts {
                    RtmsStats::bump(&self.stats.duplicate_starts);
                    tracing::info!(
                        stream = %start.stream_id,
                        event_ts,
                        "rtms_started for a stream that already ended (a late retry): dropped"
                    );
                    return;
                }
            }
        }
        tracing::info!(
            stream = %start.stream_id,
            meeting = %start.meeting_uuid,
            "RTMS stream starting ({} signaling URL(s))",
            start.server_urls.len()
        );
        drop(streams);
        self.launch(start, event_ts, Arc::default());
    }

    /// Starts a stream task (unless one runs for the id), registered before it runs.
    fn launch(&self, start: StreamStart, event_ts: u64, dedupe: Arc<stream::Dedupe>) -> bool {
        let mut streams = lock(&self.streams);
        if streams.contains_key(&start.stream_id) {
            return false;
        }
        let saved = Arc::new(Mutex::new(SavedStream {
            stream_id: start.stream_id.clone(),
            meeting_uuid: start.meeting_uuid.clone(),
            started_event: start
                .product()
                .event_name(zoomhost_protocol::rtms::product::Lifecycle::Started),
            server_urls: start.server_urls.clone(),
            event_ts,
            progress: dedupe.snapshot(),
        }));
        let saver = lock(&self.saver).clone();
        if let Some(saver) = &saver {
            saver.sink.saved(&lock(&saved));
        }
        let (stop, stop_rx) = watch::channel(None);
        let stop_rx_seen = stop_rx.clone();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let id = start.stream_id.clone();
        let ctx = stream::StreamCtx {
            start,
            config: self.config.clone(),
            sink: self.sink.clone(),
            stats: self.stats.clone(),
            stop: stop_rx,
            notices: self.notices.clone(),
            dedupe: dedupe.clone(),
        };
        let cause = stop_rx_seen;
        let registry = self.streams.clone();
        let ended = self.ended.clone();
        let key = id.clone();
        let (saved_task, dedupe_task) = (saved.clone(), dedupe.clone());
        let current = move || {
            let mut state = lock(&saved_task).clone();
            state.progress = dedupe_task.snapshot();
            state
        };
        let task = self.runtime.spawn(async move {
            let run = stream::run(ctx, requests_rx);
            let outcome = match &saver {
                None => run.await,
                Some(saver) => {
                    // Progress saved at most every `every`, and only when it moved.
                    tokio::pin!(run);
                    let mut last = current().progress;
                    loop {
                        tokio::select! {
                            outcome = &mut run => break outcome,
                            _ = tokio::time::sleep(saver.every) => {
                                let state = current();
                                if state.progress != last {
                                    last = state.progress.clone();
                                    saver.sink.saved(&state);
                                }
                            }
                        }
                    }
                }
            };
            // Handed over or shut down: still open on Zoom's side, for another node.
            let handed_over = outcome == stream::Outcome::HandedOver
                || matches!(*cause.borrow(), Some(StopCause::Shutdown));
            if let Some(saver) = &saver {
                let state = current();
                if handed_over {
                    saver.sink.saved(&state);
                } else {
                    saver.sink.ended(&state);
                }
            }
            let last = lock(&registry).remove(&key);
            if let (Some(running), false) = (last, handed_over) {
                let mut ended = lock(&ended);
                if ended.len() >= REMEMBER_ENDED_MAX {
                    ended.clear();
                }
                ended.insert(key, (running.started_ts, Instant::now()));
            }
        });
        streams.insert(
            id,
            Running {
                stop,
                requests,
                task,
                started_ts: event_ts,
                saved,
                dedupe,
            },
        );
        true
    }

    /// `*.rtms_interrupted`: the stream re-handshakes signaling and media. A stream
    /// ignores a notice whose `event_ts` is older than its current connection (it was
    /// about a connection already replaced); one without `event_ts` counts as new.
    fn interrupted(&self, stream_id: &str, event_ts: u64) {
        let event_ts = if event_ts == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(u64::MAX, |d| d.as_millis() as u64)
        } else {
            event_ts
        };
        match lock(&self.streams).get(stream_id) {
            Some(running) => {
                tracing::warn!(
                    stream = stream_id,
                    "Zoom reports the RTMS stream interrupted: re-handshaking signaling and media"
                );
                let _ = running.requests.send(Request::Interrupted(event_ts));
            }
            None => tracing::debug!(
                stream = stream_id,
                "rtms_interrupted for an RTMS stream that is not running"
            ),
        }
    }

    /// Stops a stream (no-op when it is not running).
    pub fn stop(&self, stream_id: &str, cause: StopCause) {
        match lock(&self.streams).get(stream_id) {
            Some(running) => {
                let _ = running.stop.send(Some(cause));
            }
            None => tracing::debug!(
                stream = stream_id,
                "stop for an RTMS stream that is not running"
            ),
        }
    }

    fn request(&self, stream_id: &str, request: Request) -> Result<(), ControlError> {
        match lock(&self.streams).get(stream_id) {
            Some(running) => running
                .requests
                .send(request)
                .map_err(|_| ControlError::UnknownStream(stream_id.to_string())),
            None => Err(ControlError::UnknownStream(stream_id.to_string())),
        }
    }

    /// Closes every stream's sockets and waits (up to `timeout`) for them to close. No
    /// `STREAM_CLOSE_REQ` is sent: on Zoom's side the streams stay open, for another node
    /// to take over.
    pub async fn shutdown(&self, timeout: Duration) {
        let tasks: Vec<tokio::task::JoinHandle<()>> = {
            let mut streams = lock(&self.streams);
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

impl StreamControl for RtmsManager {
    /// Queues `STREAM_CLOSE_REQ` on the stream's signaling socket (sent when it is next
    /// connected if it is reconnecting). Zoom answers 22 and TERMINATED (reason 20), and
    /// the stream ends normally for every plugin.
    fn close_stream(&self, stream_id: &str) -> Result<(), ControlError> {
        self.request(stream_id, Request::Close)
    }

    /// Queues `VIDEO_SUBSCRIPTION_REQ` for `user_id`; the subscription is sent again after
    /// every re-handshake. Needs individual video (`individual_video` and video in
    /// `media`).
    fn subscribe_video(
        &self,
        stream_id: &str,
        user_id: u32,
        subscribe: bool,
    ) -> Result<(), ControlError> {
        if !lock(&self.streams).contains_key(stream_id) {
            return Err(ControlError::UnknownStream(stream_id.to_string()));
        }
        if !protocol::wants_individual_video(&self.config) {
            return Err(ControlError::Unavailable(format!(
                "RTMS stream {stream_id} does not carry individual video (zoom.rtms: \
                 individual_video = true and \"video\" in media)"
            )));
        }
        self.request(stream_id, Request::SubscribeVideo { user_id, subscribe })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_stream_reads_back_as_its_start() {
        let saved = SavedStream {
            stream_id: "s1".into(),
            meeting_uuid: "e-1".into(),
            started_event: "contact_center.voice_rtms_started".into(),
            server_urls: vec!["wss://a/x".into(), "wss://b/y".into()],
            event_ts: 42,
            progress: vec![Progress {
                kind: 0,
                speaker: 7,
                ts: 1000,
                digest: 0,
            }],
        };
        let json = serde_json::to_string(&saved).unwrap();
        assert!(!json.contains("secret"), "{json}");
        let back: SavedStream = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);
        let start = back.start();
        assert_eq!(start.kind, zoomhost_types::SessionKind::ContactCenter);
        assert_eq!(start.server_urls, saved.server_urls);
        assert_eq!(
            (start.stream_id.as_str(), start.meeting_uuid.as_str()),
            ("s1", "e-1")
        );
        // An older state without progress still reads.
        let old: SavedStream = serde_json::from_str(
            r#"{"stream_id":"s","meeting_uuid":"m","started_event":"meeting.rtms_started","server_urls":[],"event_ts":1}"#,
        )
        .unwrap();
        assert!(old.progress.is_empty());
    }

    #[test]
    fn defaults_are_zooms_documented_values() {
        let c = RtmsConfig::new("id", Secret::new("s"));
        assert_eq!(c.reconnect_min, Duration::from_secs(3));
        assert_eq!(c.reconnect_max, Duration::from_secs(30));
        assert_eq!(c.resume_window, Duration::from_secs(60));
        assert_eq!(c.media_resume_window, Duration::from_secs(65));
        assert!(c.idle_timeout <= Duration::from_secs(65));
        assert_eq!(c.duplicate_retries, 3);
        assert_eq!(c.buffer_data, None);
        assert_eq!(c.handshake_id, HandshakeId::Product);
    }
}
