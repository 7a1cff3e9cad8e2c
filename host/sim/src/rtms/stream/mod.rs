//! One simulated stream: which socket carries which media kind, the clock, the per-kind
//! cursors (what was written or dropped), faults and Zoom's reactions to them, the stop
//! sequence, and what was recorded.
//!
//! Connection tasks ([`super::conn`]) own the sockets. A media socket asks
//! [`SimStream::plan`] what to write next (dropping what is too old to replay or never
//! buffered), writes it, then reports it with [`SimStream::commit`]: only then does an
//! item count as sent and the cursor move, so a socket that dies mid-write loses
//! nothing. One supervisor task per stream ([`supervise`]) runs the stop sequence, ends
//! pauses and holds, and ends streams whose signaling or media window ran out.
//!
//! This module holds the stream itself, the types connection tasks exchange with it, and
//! its public API. The rest is split by concern:
//!
//! - [`state`]: the mutable state behind one lock (connections, owners of each media
//!   kind, cursors, readiness, pauses, subscriptions) and the derived state;
//! - [`timeline`]: what a stream sends and when: items per kind, their frames, speakers,
//!   and the clock segments timestamps are computed from;
//! - [`connections`]: what connection tasks report (handshakes, signaling requests,
//!   keep-alives, connection ends);
//! - [`media`]: planning and committing the media a socket writes;
//! - [`faults`]: injected faults;
//! - [`video`]: individual video: the subscription (28/29), cameras on and off (events
//!   8/9), who each video item shows;
//! - [`supervisor`]: the per-stream task and the stop sequence;
//! - [`records`]: what was sent, and the counters.

mod connections;
mod faults;
mod media;
mod records;
mod state;
mod supervisor;
mod timeline;
mod video;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::notices::Hub;
use super::source::{AudioInput, WavAudio};
use super::{AudioSource, Fault, Product, RtmsSimConfig, SimParticipant, StreamSpec};
use crate::util::{lock, now_ms, random_token};

pub(super) use faults::SelfAction;
pub(super) use media::{Outgoing, Plan};
pub use records::{
    AudioFrameRecord, FrameFate, SentMedia, SimStreamStats, VideoFrameRecord, VideoRequest,
};
use state::Core;
pub(super) use supervisor::supervise;
use timeline::Timeline;

/// A command for a connection task.
pub(super) enum Cmd {
    /// Write this JSON (text or binary frame per the config).
    Send(String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Close with a code and reason; the sender is told when done.
    Close(u16, String, Option<oneshot::Sender<()>>),
    /// Neither read nor write for this long.
    Stall(Duration),
    /// Stop hearing keep-alive answers, and send keep-alives even while media flows.
    MissKeepAlives,
}

/// What every stream of one simulator shares.
pub(in crate::rtms) struct Env {
    pub config: Arc<RtmsSimConfig>,
    pub hub: Arc<Hub>,
}

/// What a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Signaling,
    Media,
}

/// How a connection task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// The client sent a close frame (with this code).
    ClientClosed(Option<u16>),
    /// Read or write failed, or EOF without a close frame.
    Lost,
    /// Dropped by the server (fault, takeover) without a close frame.
    Dropped,
    /// Closed by the server with a close frame.
    Closed,
    /// Dropped for unanswered keep-alives.
    KeepaliveTimeout,
    /// The simulator shut down.
    Shutdown,
}

struct ConnEntry {
    tx: mpsc::UnboundedSender<Cmd>,
    role: Role,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The stop sequence ran with this stop reason.
    Completed {
        /// The stop reason sent in TERMINATED / STOPPED.
        reason: u32,
    },
    /// Not reconnected within the signaling or the media window: the stop sequence ran
    /// with reason 19.
    TimedOut,
    /// Replaced by a stream with the same id, or the simulator shut down.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No signaling handshake yet.
    Waiting,
    Live,
    Stopping,
    Done(StreamOutcome),
}

/// A simulated RTMS stream (see the module docs).
pub struct SimStream {
    tl: Timeline,
    config: Arc<RtmsSimConfig>,
    core: Mutex<Core>,
    sent: Mutex<Vec<SentMedia>>,
    frames: Mutex<Vec<AudioFrameRecord>>,
    video_frames: Mutex<Vec<VideoFrameRecord>>,
    epoch: watch::Sender<u64>,
}

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStream")
            .field("stream_id", &self.tl.stream_id)
            .field("meeting_uuid", &self.tl.meeting_uuid)
            .field("phase", &self.lock().phase)
            .finish_non_exhaustive()
    }
}

impl SimStream {
    /// A stream; a WAV that cannot be used makes every audio handshake fail (logged
    /// when `log` is set).
    pub(super) fn new(spec: StreamSpec, env: Env, log: bool) -> Arc<SimStream> {
        let input = match &spec.audio {
            AudioSource::Tone => AudioInput::Tone,
            AudioSource::Wav(path) => match WavAudio::load(path) {
                Ok(wav) => AudioInput::Wav(wav),
                Err(e) => {
                    if log {
                        tracing::error!(stream = %spec.stream_id, "RTMS sim: {e:#}");
                    }
                    AudioInput::Broken(format!("{e:#}"))
                }
            },
        };
        Self::build(spec, env, input)
    }

    /// A stream, or the error of its WAV source.
    pub(super) fn try_new(spec: StreamSpec, env: Env) -> anyhow::Result<Arc<SimStream>> {
        let input = match &spec.audio {
            AudioSource::Tone => AudioInput::Tone,
            AudioSource::Wav(path) => AudioInput::Wav(WavAudio::load(path)?),
        };
        Ok(Self::build(spec, env, input))
    }

    fn build(spec: StreamSpec, env: Env, input: AudioInput) -> Arc<SimStream> {
        let Env { config, hub } = env;
        let frames = match (&input, spec.frames) {
            (AudioInput::Wav(wav), 0) => wav.frames_20ms(),
            (_, frames) => frames,
        };
        let mut faults = spec.faults;
        faults.sort_by_key(|(n, _)| *n);
        let created_wall_ms = now_ms();
        let now = Instant::now();
        let cameras = video::cameras(spec.cameras, &spec.participants);
        let tl = Timeline {
            product: spec.product,
            hub,
            state_updates: config.interrupt_state_updates,
            audio_buffer: config.audio_buffer,
            flush_grace: config.flush_grace,
            meeting_uuid: spec.meeting_uuid,
            stream_id: spec.stream_id,
            session_id: random_token(32).to_lowercase(),
            participants: spec.participants,
            frames,
            pace: spec.pace,
            input,
            data_opt: spec.data_opt,
            transcript_every: spec.transcript_every,
            confirm_audio: spec.confirm_audio,
            resend_on_resume: spec.resend_on_resume,
            end: spec.end,
            stop_reason: spec.stop_reason,
            extra: spec.extra,
            record: spec.record,
            grid_offset_ms: spec.grid_offset_ms.into(),
            created_wall_ms,
            camera_toggles: video::toggles(&cameras),
            cameras,
        };
        let core = Core {
            phase: Phase::Waiting,
            audio: None,
            other_params: Default::default(),
            language: serde_json::Value::from(zoomhost_protocol::rtms::language::ENGLISH),
            conns: HashMap::new(),
            signaling: None,
            owners: [None; 5],
            wanted: [false; 5],
            cursors: [0; 5],
            resend: HashMap::new(),
            ready: false,
            ever_ready: false,
            paused: false,
            pause_until: None,
            pause_tick: 0,
            hold_until: None,
            flow_since: [None; 5],
            first_flow: None,
            buffer_data: true,
            generation: 0,
            last_event_ts: created_wall_ms,
            frame_ms: 20,
            segments: vec![timeline::first_segment(
                spec.pace,
                created_wall_ms,
                spec.grid_offset_ms.into(),
                now,
            )],
            subscriptions: BTreeSet::new(),
            first_packet: None,
            last_speaker: None,
            faults: faults.into(),
            deferred: VecDeque::new(),
            missing_keepalives: false,
            reject_next: VecDeque::new(),
            stop_request: None,
            notify_stop: false,
            signaling_lost_since: None,
            media_lost_since: None,
            video_subscription: None,
            camera_cursor: 0,
            stats: SimStreamStats::default(),
        };
        Arc::new(SimStream {
            tl,
            config,
            core: Mutex::new(core),
            sent: Mutex::default(),
            frames: Mutex::default(),
            video_frames: Mutex::default(),
            epoch: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Wakes every task watching the stream's state.
    fn bump(&self) {
        self.epoch.send_modify(|e| *e = e.wrapping_add(1));
    }

    pub(super) fn subscribe_epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    pub(super) fn config(&self) -> &RtmsSimConfig {
        &self.config
    }

    /// The meeting uuid (or the id of the stream's other [`Product`]) handshakes must
    /// carry.
    pub fn meeting_uuid(&self) -> &str {
        &self.tl.meeting_uuid
    }

    /// The product the stream belongs to.
    pub fn product(&self) -> Product {
        self.tl.product
    }

    /// The server generation serving the stream now (0, one more per failover).
    pub fn generation(&self) -> u32 {
        self.lock().generation
    }

    /// The signaling URL of the server serving the stream now (what the latest
    /// `rtms_started` carried as `server_urls`).
    pub fn signaling_url(&self) -> String {
        let generation = self.generation();
        self.tl.hub.signaling_url(generation)
    }

    /// Whether a client is fully connected to the live stream (signaling ready, every
    /// requested media kind on a socket) and no fault is still playing out (a hold, a
    /// pending drop, keep-alives going unheard): what chaos mode injects into.
    pub fn is_connected(&self) -> bool {
        let core = self.lock();
        core.phase == Phase::Live
            && core.ready
            && core.signaling.is_some()
            && core.media_connected(&self.tl)
            && core.hold_until.is_none()
            && core.deferred.is_empty()
            && !core.missing_keepalives
    }

    /// Injects `fault` now (what [`crate::rtms::StreamSpec::faults`] does after a frame,
    /// and chaos mode does at its interval), followed by Zoom's reaction to it.
    pub fn inject(&self, fault: Fault) {
        {
            let mut core = self.lock();
            if matches!(core.phase, Phase::Stopping | Phase::Done(_)) {
                return;
            }
            let now = Instant::now();
            let mut ignored = SelfAction::None;
            core.fire_fault(&self.tl, 0, fault, now, &mut ignored);
            core.update(&self.tl, now);
        }
        self.bump();
    }

    /// The RTMS stream id.
    pub fn stream_id(&self) -> &str {
        &self.tl.stream_id
    }

    /// The `rtms_session_id` of its state messages.
    pub fn session_id(&self) -> &str {
        &self.tl.session_id
    }

    /// Its participants.
    pub fn participants(&self) -> &[SimParticipant] {
        &self.tl.participants
    }

    /// Whose camera is on, and when (resolved: every participant's, always, when the
    /// spec did not say).
    pub fn cameras(&self) -> &[super::CameraOn] {
        &self.tl.cameras
    }

    /// Audio frames per source (resolved: a WAV with `frames = 0` gives its length).
    pub fn frames(&self) -> u32 {
        self.tl.frames
    }

    /// Every media item written to a client socket, in order (empty when recording is
    /// off).
    pub fn sent(&self) -> Vec<SentMedia> {
        lock(&self.sent).clone()
    }

    /// Every audio frame the stream produced and disposed of so far, in order: its
    /// SHA-256 and whether it was written to a socket or dropped (too old to replay, or
    /// produced before the first connection with `buffer_data: false`). Empty when
    /// recording is off. Resends are not repeated here.
    pub fn audio_frames(&self) -> Vec<AudioFrameRecord> {
        lock(&self.frames).clone()
    }

    /// The SHA-256 of every audio frame written to a socket, in order: what a client
    /// that received every frame exactly once has, frame for frame.
    pub fn audio_hashes_sent(&self) -> Vec<[u8; 32]> {
        lock(&self.frames)
            .iter()
            .filter(|f| f.fate == FrameFate::Sent)
            .map(|f| f.sha256)
            .collect()
    }

    /// Every video message written to a socket, in order: its frame, whose video it
    /// is, its timestamp and the SHA-256 of its payload. Empty when recording is off.
    pub fn video_frames(&self) -> Vec<VideoFrameRecord> {
        lock(&self.video_frames).clone()
    }

    /// Audio messages sent so far (first sends).
    pub fn audio_frames_sent(&self) -> u64 {
        self.lock().stats.audio_frames_sent
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStreamStats {
        let core = self.lock();
        let mut stats = core.stats.clone();
        stats.subscriptions = core.subscriptions.iter().copied().collect();
        stats.video_subscription = core.video_subscription;
        stats.confirmed_audio = core.audio.as_ref().map(|a| a.params.clone());
        stats.outcome = match core.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        };
        stats
    }

    /// Whether every frame was sent and the stop sequence ran, or the stream was given
    /// up.
    pub fn is_done(&self) -> bool {
        matches!(self.lock().phase, Phase::Done(_))
    }

    /// Runs the stop sequence now with `reason` (unless the stream already ends) and
    /// waits (up to 15 s) until it is done.
    pub async fn stop(&self, reason: u32) {
        {
            let mut core = self.lock();
            if matches!(core.phase, Phase::Waiting | Phase::Live) {
                core.stop_request.get_or_insert(reason);
            }
        }
        self.bump();
        self.wait_done(Duration::from_secs(15)).await;
    }

    /// Waits until the stream is done ([`SimStream::is_done`]); false after `timeout`.
    pub async fn wait_done(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |core| matches!(core.phase, Phase::Done(_)))
            .await
    }

    /// Waits until the client sent `CLIENT_READY_ACK`; false after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |core| core.stats.ready_acks > 0)
            .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Core) -> bool) -> bool {
        let mut epoch = self.epoch.subscribe();
        let wait = async {
            loop {
                if done(&self.lock()) {
                    return true;
                }
                if epoch.changed().await.is_err() {
                    return done(&self.lock());
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Ends the stream at once: replaced by another with the same id, or shut down.
    pub(super) fn abandon(&self) {
        {
            let mut core = self.lock();
            if !matches!(core.phase, Phase::Done(_)) {
                core.phase = Phase::Done(StreamOutcome::Abandoned);
            }
            for conn in core.conns.values() {
                let _ = conn.tx.send(Cmd::Drop);
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }
}
