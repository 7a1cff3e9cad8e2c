//! One simulated stream: which socket carries which media kind, the clock, the per-kind
//! cursors (what was written), faults, the stop sequence, and what was recorded.
//!
//! Connection tasks ([`super::conn`]) own the sockets. A media socket asks
//! [`SimStream::plan`] what to write next, writes it, then reports it with
//! [`SimStream::commit`]: only then does an item count as sent and the cursor move, so
//! a socket that dies mid-write loses nothing. One supervisor task per stream
//! ([`supervise`]) runs the stop sequence, ends pauses and gives up streams that were
//! not resumed in time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::source::{self, AudioInput, AudioPlan, WavAudio};
use super::wire::{self, event, session_state, status, stop_reason, stream_state};
use super::{
    AudioSource, DataOpt, End, ExtraMedia, Fault, MediaKind, Pace, RtmsSimConfig, SimParticipant,
    StreamSpec,
};

/// Most items written between two flushes (and two looks at the socket's input).
const MAX_BATCH: usize = 64;
/// Frames per active-speaker turn when there are no transcripts.
const DEFAULT_SPEAKER_TICKS: u32 = 100;
/// The origin of the real-time frame grid shared by every stream.
static CLOCK_GRID: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// How long the stop sequence waits for a socket to finish closing.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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

impl Exit {
    fn abrupt(self) -> bool {
        matches!(self, Exit::Lost | Exit::Dropped | Exit::KeepaliveTimeout)
    }
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
    /// Not resumed within the resume window: the stop sequence ran with reason 19.
    TimedOut,
    /// The client closed the signaling socket with 1000 while the stream was live.
    ClientClosed,
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

/// One media item written to a client socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMedia {
    /// What kind of item.
    pub kind: MediaKind,
    /// Its position among the stream's items of this kind (0-based; audio counts every
    /// source).
    pub index: u64,
    /// The audio frame (tick) it belongs to.
    pub frame: u32,
    /// `user_id` (0: mixed audio).
    pub user_id: u32,
    /// `user_name`.
    pub user_name: String,
    /// `timestamp` (ms).
    pub timestamp: u64,
    /// Decoded audio (L16 LE), the fake video/share payload, or the UTF-8 text of a
    /// transcript or chat message.
    pub data: Bytes,
    /// When the write completed.
    pub sent_at: std::time::Instant,
    /// A repeat after a resumed handshake ([`StreamSpec::resend_on_resume`]).
    pub resent: bool,
}

impl SentMedia {
    /// The text of a transcript or chat item.
    pub fn text(&self) -> Option<&str> {
        match self.kind {
            MediaKind::Transcript | MediaKind::Chat => std::str::from_utf8(&self.data).ok(),
            _ => None,
        }
    }
}

/// Counters of one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStreamStats {
    /// Connections that named this stream in a handshake (accepted or not).
    pub connections: u32,
    /// Accepted signaling handshakes.
    pub signaling_handshakes: u32,
    /// Accepted media handshakes.
    pub media_handshakes: u32,
    /// Refused handshakes: (reply `msg_type` 2 or 4, `status_code`).
    pub rejections: Vec<(u64, u32)>,
    /// `CLIENT_READY_ACK`s from the current signaling connection.
    pub ready_acks: u32,
    /// Event types currently subscribed, ascending.
    pub subscriptions: Vec<u32>,
    /// `KEEP_ALIVE_REQ`s written, over every socket.
    pub keepalives_sent: u64,
    /// `KEEP_ALIVE_RESP`s that echoed a pending request's sequence and timestamp.
    pub keepalives_answered: u64,
    /// Sockets dropped for unanswered keep-alives.
    pub dropped_for_keepalive: u32,
    /// Close codes of the close frames the client sent (initiated or answered).
    pub client_close_codes: Vec<u16>,
    /// Audio messages sent (first sends).
    pub audio_frames_sent: u64,
    /// Video messages sent.
    pub video_sent: u64,
    /// Share messages sent.
    pub share_sent: u64,
    /// Transcript messages sent.
    pub transcripts_sent: u64,
    /// Chat messages sent.
    pub chat_sent: u64,
    /// Items sent again after a resumed handshake.
    pub resent: u64,
    /// The audio params confirmed in msg 4, once an audio handshake succeeded.
    pub confirmed_audio: Option<Value>,
    /// How the stream ended, once it did.
    pub outcome: Option<StreamOutcome>,
}

/// Everything about a stream that does not change after it was added.
pub(super) struct Timeline {
    pub meeting_uuid: String,
    pub stream_id: String,
    pub session_id: String,
    pub participants: Vec<SimParticipant>,
    pub frames: u32,
    pub pace: Pace,
    pub input: AudioInput,
    pub data_opt: DataOpt,
    pub transcript_every: u32,
    pub confirm_audio: Option<Value>,
    pub resend_on_resume: u32,
    pub end: End,
    pub stop_reason: u32,
    pub extra: ExtraMedia,
    pub record: bool,
    pub created_wall_ms: u64,
}

impl Timeline {
    fn count(&self, kind: MediaKind, sources: u32) -> u64 {
        let frames = u64::from(self.frames);
        match kind {
            MediaKind::Audio => frames * u64::from(sources),
            MediaKind::Transcript if self.transcript_every > 0 => {
                frames / u64::from(self.transcript_every)
            }
            MediaKind::Transcript => 0,
            MediaKind::Video => self.extra.video.into(),
            MediaKind::Share => self.extra.share.into(),
            MediaKind::Chat => self.extra.chat.into(),
        }
    }

    /// The frame (tick) item `n` of `kind` belongs to.
    fn tick_of(&self, kind: MediaKind, n: u64, sources: u32) -> u32 {
        match kind {
            MediaKind::Audio => (n / u64::from(sources.max(1))) as u32,
            MediaKind::Transcript => ((n + 1) * u64::from(self.transcript_every.max(1)) - 1) as u32,
            _ => match self.count(kind, sources) {
                0 => 0,
                c => (n * u64::from(self.frames) / c) as u32,
            },
        }
    }

    /// The participant speaking during `tick`.
    fn speaker(&self, tick: u32) -> Option<usize> {
        if self.participants.is_empty() {
            return None;
        }
        let period = if self.transcript_every > 0 {
            self.transcript_every
        } else {
            DEFAULT_SPEAKER_TICKS
        };
        Some((tick / period) as usize % self.participants.len())
    }

    fn speaker_user(&self, tick: u32) -> (u32, &str) {
        self.speaker(tick).map_or((0, ""), |i| {
            let p = &self.participants[i];
            (p.user_id, p.user_name.as_str())
        })
    }
}

/// Where the clock restarted: frame `from` was due at `at` / wall clock `wall_ms`.
struct Segment {
    from: u32,
    wall_ms: u64,
    at: Instant,
}

/// One item a media socket is about to write.
pub(super) struct Outgoing {
    pub kind: MediaKind,
    pub index: u64,
    pub tick: u32,
    pub resent: bool,
    /// Last audio source of its frame (faults fire after it).
    pub last_of_tick: bool,
    pub json: String,
}

/// What a media socket should do next.
pub(super) enum Plan {
    /// Nothing to send until the stream's state changes.
    Idle,
    /// Nothing due before this instant.
    WaitUntil(Instant),
    /// Write the items put in the buffer, then commit them.
    Send,
}

/// What a fault asks of the socket that committed the frame it fired after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SelfAction {
    None,
    Drop,
    Close(u16),
    Stall(Duration),
}

impl SelfAction {
    fn rank(self) -> u8 {
        match self {
            SelfAction::None => 0,
            SelfAction::Stall(_) => 1,
            SelfAction::Close(_) => 2,
            SelfAction::Drop => 3,
        }
    }

    fn raise(&mut self, to: SelfAction) {
        if to.rank() > self.rank() {
            *self = to;
        }
    }
}

struct Core {
    phase: Phase,
    audio: Option<Arc<AudioPlan>>,
    /// Effective params of the non-audio kinds, fixed at their first handshake.
    other_params: [Option<Value>; 5],
    language: String,
    conns: HashMap<u64, ConnEntry>,
    signaling: Option<u64>,
    owners: [Option<u64>; 5],
    /// Kinds a client asked for that have items.
    wanted: [bool; 5],
    cursors: [u64; 5],
    resend: HashMap<u64, VecDeque<u64>>,
    /// One past the highest frame any item was sent for.
    high_tick: u32,
    ready: bool,
    ever_ready: bool,
    paused: bool,
    pause_until: Option<Instant>,
    clock_running: bool,
    frame_ms: u64,
    segments: Vec<Segment>,
    subscriptions: BTreeSet<u32>,
    first_packet: Option<u64>,
    last_speaker: Option<usize>,
    faults: VecDeque<(u32, Fault)>,
    reject_next: VecDeque<u32>,
    stop_request: Option<u32>,
    interrupted_since: Option<Instant>,
    stats: SimStreamStats,
}

/// A simulated RTMS stream (see the module docs).
pub struct SimStream {
    tl: Timeline,
    config: Arc<RtmsSimConfig>,
    core: Mutex<Core>,
    sent: Mutex<Vec<SentMedia>>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimStream {
    /// A stream; a WAV that cannot be used makes every audio handshake fail (logged
    /// when `log` is set).
    pub(super) fn new(spec: StreamSpec, config: Arc<RtmsSimConfig>, log: bool) -> Arc<SimStream> {
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
        Self::build(spec, config, input)
    }

    /// A stream, or the error of its WAV source.
    pub(super) fn try_new(
        spec: StreamSpec,
        config: Arc<RtmsSimConfig>,
    ) -> anyhow::Result<Arc<SimStream>> {
        let input = match &spec.audio {
            AudioSource::Tone => AudioInput::Tone,
            AudioSource::Wav(path) => AudioInput::Wav(WavAudio::load(path)?),
        };
        Ok(Self::build(spec, config, input))
    }

    fn build(spec: StreamSpec, config: Arc<RtmsSimConfig>, input: AudioInput) -> Arc<SimStream> {
        let frames = match (&input, spec.frames) {
            (AudioInput::Wav(wav), 0) => wav.frames_20ms(),
            (_, frames) => frames,
        };
        let mut faults = spec.faults;
        faults.sort_by_key(|(n, _)| *n);
        let tl = Timeline {
            meeting_uuid: spec.meeting_uuid,
            stream_id: spec.stream_id,
            session_id: wire::random_token(32).to_lowercase(),
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
            created_wall_ms: wire::now_ms(),
        };
        let core = Core {
            phase: Phase::Waiting,
            audio: None,
            other_params: Default::default(),
            language: "en-US".to_string(),
            conns: HashMap::new(),
            signaling: None,
            owners: [None; 5],
            wanted: [false; 5],
            cursors: [0; 5],
            resend: HashMap::new(),
            high_tick: 0,
            ready: false,
            ever_ready: false,
            paused: false,
            pause_until: None,
            clock_running: false,
            frame_ms: 20,
            segments: Vec::new(),
            subscriptions: BTreeSet::new(),
            first_packet: None,
            last_speaker: None,
            faults: faults.into(),
            reject_next: VecDeque::new(),
            stop_request: None,
            interrupted_since: None,
            stats: SimStreamStats::default(),
        };
        Arc::new(SimStream {
            tl,
            config,
            core: Mutex::new(core),
            sent: Mutex::default(),
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

    /// The meeting uuid handshakes must carry.
    pub fn meeting_uuid(&self) -> &str {
        &self.tl.meeting_uuid
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

    /// Audio frames per source (resolved: a WAV with `frames = 0` gives its length).
    pub fn frames(&self) -> u32 {
        self.tl.frames
    }

    /// Every media item written to a client socket, in order (empty when recording is
    /// off).
    pub fn sent(&self) -> Vec<SentMedia> {
        lock(&self.sent).clone()
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

    // --- Handshakes -------------------------------------------------------------------

    pub(super) fn count_connection(&self) {
        self.lock().stats.connections += 1;
    }

    pub(super) fn record_rejection(&self, msg_type: u64, status_code: u32) {
        self.lock().stats.rejections.push((msg_type, status_code));
    }

    /// Accepts a signaling connection (an older one is dropped: Zoom allows one).
    pub(super) fn register_signaling(
        &self,
        id: u64,
        tx: mpsc::UnboundedSender<Cmd>,
    ) -> Result<(), (u32, String)> {
        {
            let mut core = self.lock();
            core.admission()?;
            if let Some(old) = core.signaling.replace(id) {
                core.send_to(old, Cmd::Drop);
            }
            core.conns.insert(
                id,
                ConnEntry {
                    tx,
                    role: Role::Signaling,
                },
            );
            core.ready = false;
            core.phase = Phase::Live;
            core.stats.signaling_handshakes += 1;
            core.update(&self.tl, Instant::now());
        }
        self.bump();
        Ok(())
    }

    /// Accepts a media connection for `kinds` and returns the effective `media_params`.
    /// Kinds another socket carried move to this one (a socket left with none is
    /// dropped).
    pub(super) fn register_media(
        &self,
        id: u64,
        tx: mpsc::UnboundedSender<Cmd>,
        kinds: &[MediaKind],
        requested: &Value,
    ) -> Result<Value, (u32, String)> {
        let tl = &self.tl;
        let params = {
            let mut core = self.lock();
            core.admission()?;
            let mut params = Map::new();
            for &kind in kinds {
                let asked = requested.get(kind.key());
                let effective = if kind == MediaKind::Audio {
                    if core.audio.is_none() {
                        let plan = AudioPlan::new(
                            &tl.input,
                            &tl.participants,
                            tl.data_opt,
                            tl.confirm_audio.as_ref(),
                            asked.unwrap_or(&Value::Null),
                        )
                        .map_err(|reason| (status::INVALID_MEDIA_PARAMS, reason))?;
                        core.audio = Some(Arc::new(plan));
                    }
                    core.audio.as_ref().map(|a| a.params.clone())
                } else {
                    let slot = &mut core.other_params[kind.index()];
                    Some(
                        slot.get_or_insert_with(|| source::other_params(kind.key(), asked))
                            .clone(),
                    )
                };
                if kind == MediaKind::Transcript {
                    if let Some(lang) = effective
                        .as_ref()
                        .and_then(|p| p.get("src_language"))
                        .and_then(Value::as_str)
                    {
                        core.language = lang.to_string();
                    }
                }
                if let Some(effective) = effective {
                    params.insert(kind.key().to_string(), effective);
                }
            }
            let sources = core.sources();
            let mut losers = Vec::new();
            for &kind in kinds {
                let k = kind.index();
                if let Some(old) = core.owners[k].replace(id) {
                    if old != id {
                        losers.push(old);
                    }
                }
                if tl.count(kind, sources) > 0 {
                    core.wanted[k] = true;
                }
            }
            for old in losers {
                if !core.owners.contains(&Some(old)) {
                    core.send_to(old, Cmd::Drop);
                }
            }
            let audio = MediaKind::Audio.index();
            if kinds.contains(&MediaKind::Audio)
                && tl.resend_on_resume > 0
                && core.cursors[audio] > 0
            {
                let to = core.cursors[audio];
                let from = to.saturating_sub(u64::from(tl.resend_on_resume) * u64::from(sources));
                core.resend.insert(id, (from..to).collect());
            }
            core.conns.insert(
                id,
                ConnEntry {
                    tx,
                    role: Role::Media,
                },
            );
            core.stats.media_handshakes += 1;
            core.update(tl, Instant::now());
            Value::Object(params)
        };
        self.bump();
        Ok(params)
    }

    // --- Signaling requests -----------------------------------------------------------

    /// `EVENT_SUBSCRIPTION`: records the event types; sends what is already known for
    /// newly subscribed ones (participants, first packet, current speaker).
    pub(super) fn subscribe(&self, msg: &Value) {
        let mut core = self.lock();
        let mut added = BTreeSet::new();
        for entry in msg["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let Some(event_type) = entry["event_type"].as_u64() else {
                continue;
            };
            let event_type = event_type as u32;
            if entry["subscribe"].as_bool().unwrap_or(true) {
                if core.subscriptions.insert(event_type) {
                    added.insert(event_type);
                }
            } else {
                core.subscriptions.remove(&event_type);
            }
        }
        if added.contains(&event::PARTICIPANT_JOIN) && !self.tl.participants.is_empty() {
            let msg = wire::participants_event(event::PARTICIPANT_JOIN, &self.tl.participants);
            core.send_signaling(msg);
        }
        if let (true, Some(ts)) = (
            added.contains(&event::FIRST_PACKET_TIMESTAMP),
            core.first_packet,
        ) {
            core.send_signaling(first_packet_event(ts));
        }
        if let (true, Some(speaker)) = (
            added.contains(&event::ACTIVE_SPEAKER_CHANGE),
            core.last_speaker,
        ) {
            core.send_signaling(speaker_event(&self.tl.participants[speaker]));
        }
    }

    /// `CLIENT_READY_ACK` on signaling connection `id`.
    pub(super) fn ready_ack(&self, id: u64) {
        {
            let mut core = self.lock();
            if core.signaling != Some(id) || core.phase != Phase::Live {
                return;
            }
            core.stats.ready_acks += 1;
            if !core.ready {
                core.ready = true;
                if !core.ever_ready {
                    core.ever_ready = true;
                    let msg =
                        wire::session_state_update(&self.tl.session_id, session_state::STARTED, 0);
                    core.send_signaling(msg);
                }
                let msg = wire::stream_state_update(&self.tl.stream_id, stream_state::ACTIVE, 0);
                core.send_signaling(msg);
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }

    /// `SESSION_STATE_RESP` for a `SESSION_STATE_REQ`.
    pub(super) fn session_state_resp(&self) -> String {
        let core = self.lock();
        let state = match core.phase {
            Phase::Waiting => session_state::INACTIVE,
            Phase::Live if core.paused => session_state::PAUSED,
            Phase::Live if core.ever_ready => session_state::STARTED,
            Phase::Live => session_state::INACTIVE,
            Phase::Stopping | Phase::Done(_) => session_state::STOPPED,
        };
        json!({
            "msg_type": wire::SESSION_STATE_RESP,
            "rtms_session_id": self.tl.session_id,
            "state": state,
            "timestamp": wire::now_ms(),
        })
        .to_string()
    }

    /// `STREAM_STATE_RESP` for a `STREAM_STATE_REQ`.
    pub(super) fn stream_state_resp(&self) -> String {
        let core = self.lock();
        let state = match core.phase {
            Phase::Waiting => stream_state::INACTIVE,
            Phase::Live if core.paused => stream_state::PAUSED,
            Phase::Live if core.ever_ready && core.interrupted_since.is_some() => {
                stream_state::INTERRUPTED
            }
            Phase::Live if core.ever_ready => stream_state::ACTIVE,
            Phase::Live => stream_state::INACTIVE,
            Phase::Stopping => stream_state::TERMINATING,
            Phase::Done(_) => stream_state::TERMINATED,
        };
        json!({
            "msg_type": wire::STREAM_STATE_RESP,
            "rtms_stream_id": self.tl.stream_id,
            "state": state,
            "timestamp": wire::now_ms(),
        })
        .to_string()
    }

    /// `STREAM_CLOSE_REQ`: the stop sequence with reason 20 (receiver request close).
    pub(super) fn request_close(&self) {
        {
            let mut core = self.lock();
            if core.phase == Phase::Live {
                core.stop_request
                    .get_or_insert(stop_reason::RECEIVER_REQUEST_CLOSE);
            }
        }
        self.bump();
    }

    // --- Keep-alive and connection ends -----------------------------------------------

    pub(super) fn keepalive_sent(&self) {
        self.lock().stats.keepalives_sent += 1;
    }

    pub(super) fn keepalive_answered(&self) {
        self.lock().stats.keepalives_answered += 1;
    }

    /// Connection `id` is about to be dropped for unanswered keep-alives: tells the
    /// signaling connection (if it is another one) that the stream is interrupted.
    pub(super) fn keepalive_timeout(&self, id: u64) {
        let mut core = self.lock();
        core.stats.dropped_for_keepalive += 1;
        if core.signaling.is_some_and(|s| s != id) && core.phase == Phase::Live {
            let msg = wire::stream_state_update(
                &self.tl.stream_id,
                stream_state::INTERRUPTED,
                stop_reason::KEEP_ALIVE_TIMEOUT,
            );
            core.send_signaling(msg);
        }
    }

    pub(super) fn client_close_code(&self, code: u16) {
        self.lock().stats.client_close_codes.push(code);
    }

    /// Connection `id` ended.
    pub(super) fn conn_exit(&self, id: u64, exit: Exit) {
        {
            let mut core = self.lock();
            if core.conns.remove(&id).is_none() {
                return;
            }
            let live = core.phase == Phase::Live;
            if core.signaling == Some(id) && live && exit == Exit::ClientClosed(Some(1000)) {
                core.phase = Phase::Done(StreamOutcome::ClientClosed);
                for conn in core.conns.values() {
                    let _ = conn.tx.send(Cmd::Close(1000, String::new(), None));
                }
            }
            let lost = core.detach(id);
            if live
                && lost != 0
                && exit.abrupt()
                && core
                    .subscriptions
                    .contains(&event::MEDIA_CONNECTION_INTERRUPTED)
            {
                core.send_signaling(media_interrupted_event(lost));
            }
            core.update(&self.tl, Instant::now());
        }
        self.bump();
    }

    // --- Media ------------------------------------------------------------------------

    /// What media connection `id` should write now; items go into `buf`.
    pub(super) fn plan(&self, id: u64, now: Instant, buf: &mut Vec<Outgoing>) -> Plan {
        buf.clear();
        let tl = &self.tl;
        let mut core = self.lock();
        if !core.playing(tl) {
            return Plan::Idle;
        }
        let mut owned = [false; 5];
        for k in MediaKind::ALL {
            owned[k.index()] = core.owners[k.index()] == Some(id) && core.wanted[k.index()];
        }
        if !owned.contains(&true) {
            return Plan::Idle;
        }
        if let Some(queue) = core.resend.get_mut(&id) {
            let take = queue.len().min(MAX_BATCH);
            let again: Vec<u64> = queue.drain(..take).collect();
            if queue.is_empty() {
                core.resend.remove(&id);
            }
            buf.extend(
                again
                    .into_iter()
                    .filter_map(|n| core.item(tl, MediaKind::Audio, n, true)),
            );
        }
        let sources = core.sources();
        let mut cursors = core.cursors;
        while buf.len() < MAX_BATCH {
            let mut next: Option<(u32, MediaKind)> = None;
            for kind in MediaKind::ALL {
                let k = kind.index();
                if owned[k] && cursors[k] < tl.count(kind, sources) {
                    let tick = tl.tick_of(kind, cursors[k], sources);
                    if next.is_none_or(|(t, _)| tick < t) {
                        next = Some((tick, kind));
                    }
                }
            }
            let Some((tick, kind)) = next else { break };
            if tl.pace == Pace::RealTime {
                let due = core.due_at(tick);
                if due > now {
                    if buf.is_empty() {
                        return Plan::WaitUntil(due);
                    }
                    break;
                }
            }
            let Some(item) = core.item(tl, kind, cursors[kind.index()], false) else {
                break;
            };
            let boundary =
                item.last_of_tick && core.faults.front().is_some_and(|(n, _)| *n <= tick);
            buf.push(item);
            cursors[kind.index()] += 1;
            if boundary {
                break;
            }
        }
        if buf.is_empty() {
            Plan::Idle
        } else {
            Plan::Send
        }
    }

    /// Items of `batch` were written by connection `id`: they count as sent now.
    /// Returns what a fault asks of that connection.
    pub(super) fn commit(&self, id: u64, batch: &[Outgoing]) -> SelfAction {
        let tl = &self.tl;
        let now = Instant::now();
        let sent_at = now.into_std();
        let mut action = SelfAction::None;
        let mut changed = false;
        {
            let mut core = self.lock();
            let mut fired = Vec::new();
            let mut records = Vec::new();
            for item in batch {
                let k = item.kind.index();
                if item.resent {
                    core.stats.resent += 1;
                } else {
                    if core.owners[k] != Some(id) || core.cursors[k] != item.index {
                        break;
                    }
                    core.cursors[k] += 1;
                    core.high_tick = core.high_tick.max(item.tick + 1);
                    let counter = match item.kind {
                        MediaKind::Audio => &mut core.stats.audio_frames_sent,
                        MediaKind::Video => &mut core.stats.video_sent,
                        MediaKind::Share => &mut core.stats.share_sent,
                        MediaKind::Transcript => &mut core.stats.transcripts_sent,
                        MediaKind::Chat => &mut core.stats.chat_sent,
                    };
                    *counter += 1;
                    if item.kind == MediaKind::Audio {
                        core.after_audio(tl, item, &mut fired);
                    }
                }
                if tl.record {
                    records.push(core.record(tl, item, sent_at));
                }
            }
            if !records.is_empty() {
                lock(&self.sent).extend(records);
            }
            for fault in fired {
                changed = true;
                core.apply_fault(tl, id, fault, now, &mut action);
            }
            if tl.end == End::AfterFrames
                && core.phase == Phase::Live
                && core.stop_request.is_none()
                && core.all_sent(tl)
            {
                core.stop_request = Some(tl.stop_reason);
                changed = true;
            }
            if changed {
                core.update(tl, now);
            }
        }
        if changed {
            self.bump();
        }
        action
    }

    // --- Supervisor -------------------------------------------------------------------

    /// The stop sequence: media flushed already; on signaling participant-left (if
    /// subscribed), TERMINATING, TERMINATED, STOPPED; then close 1000 on every socket.
    async fn run_stop(&self, reason: u32, outcome: StreamOutcome) {
        let (signaling, media) = {
            let mut core = self.lock();
            core.phase = Phase::Stopping;
            core.update(&self.tl, Instant::now());
            let signaling = core
                .signaling
                .and_then(|id| core.conns.get(&id))
                .map(|c| c.tx.clone());
            let media: Vec<_> = core
                .conns
                .values()
                .filter(|c| c.role == Role::Media)
                .map(|c| c.tx.clone())
                .collect();
            if let Some(signaling) = &signaling {
                let mut messages = Vec::new();
                if core.subscriptions.contains(&event::PARTICIPANT_LEAVE)
                    && !self.tl.participants.is_empty()
                {
                    messages.push(wire::participants_event(
                        event::PARTICIPANT_LEAVE,
                        &self.tl.participants,
                    ));
                }
                let id = &self.tl.stream_id;
                messages.push(wire::stream_state_update(
                    id,
                    stream_state::TERMINATING,
                    reason,
                ));
                messages.push(wire::stream_state_update(
                    id,
                    stream_state::TERMINATED,
                    reason,
                ));
                messages.push(wire::session_state_update(
                    &self.tl.session_id,
                    session_state::STOPPED,
                    reason,
                ));
                for msg in messages {
                    let _ = signaling.send(Cmd::Send(msg));
                }
            }
            (signaling, media)
        };
        self.bump();
        let close = |tx: mpsc::UnboundedSender<Cmd>| async move {
            let (ack, done) = oneshot::channel();
            if tx.send(Cmd::Close(1000, String::new(), Some(ack))).is_ok() {
                let _ = tokio::time::timeout(CLOSE_WAIT, done).await;
            }
        };
        futures_util::future::join_all(media.into_iter().map(close)).await;
        if let Some(signaling) = signaling {
            close(signaling).await;
        }
        {
            let mut core = self.lock();
            if core.phase == Phase::Stopping {
                core.phase = Phase::Done(outcome);
            }
            core.update(&self.tl, Instant::now());
        }
        tracing::debug!(stream = %self.tl.stream_id, ?outcome, "RTMS sim: stream ended");
        self.bump();
    }
}

/// What the supervisor does next.
enum Step {
    Stop(u32, StreamOutcome),
    Wait(Option<Instant>),
    Exit,
}

/// One per stream: stop sequence, pause ends, resume-window expiry.
pub(super) async fn supervise(stream: Arc<SimStream>, mut shutdown: watch::Receiver<bool>) {
    let mut epoch = stream.epoch.subscribe();
    let window = stream.config.resume_window;
    loop {
        epoch.borrow_and_update();
        let (step, resumed) = stream.lock().supervise(&stream.tl, Instant::now(), window);
        if resumed {
            stream.bump();
            continue;
        }
        match step {
            Step::Exit => return,
            Step::Stop(reason, outcome) => {
                stream.run_stop(reason, outcome).await;
                return;
            }
            Step::Wait(deadline) => {
                tokio::select! {
                    _ = super::shut_down(&mut shutdown) => {
                        stream.abandon();
                        return;
                    }
                    _ = epoch.changed() => {}
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                        if deadline.is_some() => {}
                }
            }
        }
    }
}

fn first_packet_event(ts: u64) -> String {
    wire::event_update(json!({"event_type": event::FIRST_PACKET_TIMESTAMP, "timestamp": ts}))
}

fn media_interrupted_event(media_type: u64) -> String {
    wire::event_update(json!({
        "event_type": event::MEDIA_CONNECTION_INTERRUPTED,
        "timestamp": wire::now_ms(),
        "media_type": media_type,
    }))
}

fn speaker_event(p: &SimParticipant) -> String {
    wire::event_update(json!({
        "event_type": event::ACTIVE_SPEAKER_CHANGE,
        "timestamp": wire::now_ms(),
        "user_id": p.user_id,
        "user_name": p.user_name,
    }))
}

impl Core {
    /// Refusals that do not depend on the message: a finished stream, an injected fault.
    fn admission(&mut self) -> Result<(), (u32, String)> {
        if matches!(self.phase, Phase::Stopping | Phase::Done(_)) {
            return Err((status::STREAM_ENDED, "the stream has ended".to_string()));
        }
        if let Some(code) = self.reject_next.pop_front() {
            return Err((code, "rejected by an injected fault".to_string()));
        }
        Ok(())
    }

    /// Takes away what connection `id` carries (signaling, media kinds) without
    /// forgetting the connection; returns the media bits it carried.
    fn detach(&mut self, id: u64) -> u64 {
        if self.signaling == Some(id) {
            self.signaling = None;
            self.ready = false;
        }
        let mut lost = 0;
        for (k, owner) in self.owners.iter_mut().enumerate() {
            if *owner == Some(id) {
                *owner = None;
                lost |= MediaKind::ALL[k].bit();
            }
        }
        self.resend.remove(&id);
        lost
    }

    fn send_to(&self, id: u64, cmd: Cmd) {
        if let Some(conn) = self.conns.get(&id) {
            let _ = conn.tx.send(cmd);
        }
    }

    fn send_signaling(&self, msg: String) {
        if let Some(id) = self.signaling {
            self.send_to(id, Cmd::Send(msg));
        }
    }

    fn sources(&self) -> u32 {
        self.audio.as_ref().map_or(0, |a| a.sources())
    }

    fn complete(&self, tl: &Timeline, kind: MediaKind) -> bool {
        self.cursors[kind.index()] >= tl.count(kind, self.sources())
    }

    /// Every kind the client asked for was sent in full (and it asked for one).
    fn all_sent(&self, tl: &Timeline) -> bool {
        self.wanted.iter().any(|w| *w)
            && MediaKind::ALL
                .into_iter()
                .all(|k| !self.wanted[k.index()] || self.complete(tl, k))
    }

    /// Every requested kind with items left has a socket.
    fn media_connected(&self, tl: &Timeline) -> bool {
        MediaKind::ALL.into_iter().all(|k| {
            !self.wanted[k.index()] || self.complete(tl, k) || self.owners[k.index()].is_some()
        })
    }

    fn playing(&self, tl: &Timeline) -> bool {
        self.phase == Phase::Live
            && !self.paused
            && self.ready
            && self.signaling.is_some()
            && self.wanted.iter().any(|w| *w)
            && self.media_connected(tl)
    }

    /// Recomputes the derived state after any change: the clock, the interruption.
    fn update(&mut self, tl: &Timeline, now: Instant) {
        let playing = self.playing(tl);
        if playing && !self.clock_running {
            self.start_segment(tl, now);
        }
        self.clock_running = playing;
        let connected = self.signaling.is_some() && self.ready && self.media_connected(tl);
        if self.phase == Phase::Live && !connected {
            self.interrupted_since.get_or_insert(now);
        } else {
            self.interrupted_since = None;
        }
    }

    fn start_segment(&mut self, tl: &Timeline, now: Instant) {
        if self.segments.is_empty() {
            self.frame_ms = self
                .audio
                .as_ref()
                .map_or(20, |a| u64::from(a.format.send_rate));
        }
        match tl.pace {
            Pace::Fast => {
                if self.segments.is_empty() {
                    self.segments.push(Segment {
                        from: 0,
                        wall_ms: tl.created_wall_ms,
                        at: now,
                    });
                }
            }
            Pace::RealTime => {
                // Frames of every stream fall due on one shared grid, so the timer
                // wakes many sockets per turn instead of one at a time.
                let base = *CLOCK_GRID.get_or_init(Instant::now);
                let frame = self.frame_ms.max(1);
                let since = now.saturating_duration_since(base).as_millis() as u64;
                let at = base + Duration::from_millis(since.div_ceil(frame) * frame);
                let segment = Segment {
                    from: self.high_tick,
                    wall_ms: wire::now_ms() + at.saturating_duration_since(now).as_millis() as u64,
                    at,
                };
                // Nothing was sent since the last restart: its timestamps were unused.
                if self.segments.last().is_some_and(|s| s.from == segment.from) {
                    self.segments.pop();
                }
                self.segments.push(segment);
            }
        }
    }

    /// When frame `tick` is due (real time).
    fn due_at(&self, tick: u32) -> Instant {
        match self.segments.last() {
            Some(s) if tick > s.from => {
                s.at + Duration::from_millis(u64::from(tick - s.from) * self.frame_ms)
            }
            Some(s) => s.at,
            None => Instant::now(),
        }
    }

    /// Frame `tick`'s timestamp; stable once assigned, so repeats carry the same one.
    fn timestamp(&self, tl: &Timeline, tick: u32) -> u64 {
        match self.segments.iter().rev().find(|s| s.from <= tick) {
            Some(s) => s.wall_ms + u64::from(tick - s.from) * self.frame_ms,
            None => tl.created_wall_ms + u64::from(tick) * self.frame_ms,
        }
    }

    /// Item `n` of `kind`, ready to write.
    fn item(&self, tl: &Timeline, kind: MediaKind, n: u64, resent: bool) -> Option<Outgoing> {
        let sources = self.sources();
        let tick = tl.tick_of(kind, n, sources);
        let ts = self.timestamp(tl, tick);
        let mut last_of_tick = false;
        let json = match kind {
            MediaKind::Audio => {
                let plan = self.audio.as_ref()?;
                let source = (n % u64::from(sources.max(1))) as usize;
                last_of_tick = source as u32 + 1 == sources;
                plan.message(source, tick, ts)
            }
            MediaKind::Transcript => {
                let (user_id, user_name) = tl.speaker_user(tick);
                let first = tick + 1 - tl.transcript_every.max(1);
                wire::media_message(
                    kind.msg_type(),
                    json!({
                        "user_id": user_id,
                        "user_name": user_name,
                        "data": source::sentence(n),
                        "timestamp": ts,
                        "start_time": self.timestamp(tl, first),
                        "end_time": ts + self.frame_ms,
                        "language": self.language,
                    }),
                )
            }
            MediaKind::Video | MediaKind::Share => {
                let (user_id, user_name) = tl.speaker_user(tick);
                let data = base64::engine::general_purpose::STANDARD
                    .encode(source::fake_frame(kind.key(), n));
                wire::media_message(
                    kind.msg_type(),
                    json!({"user_id": user_id, "user_name": user_name, "data": data, "timestamp": ts}),
                )
            }
            MediaKind::Chat => {
                let (user_id, user_name) = tl.speaker_user(tick);
                wire::media_message(
                    kind.msg_type(),
                    json!({
                        "user_id": user_id,
                        "user_name": user_name,
                        "data": source::chat_text(n, user_name),
                        "timestamp": ts,
                    }),
                )
            }
        };
        Some(Outgoing {
            kind,
            index: n,
            tick,
            resent,
            last_of_tick,
            json,
        })
    }

    fn record(&self, tl: &Timeline, item: &Outgoing, sent_at: std::time::Instant) -> SentMedia {
        let (user_id, user_name, data) = match item.kind {
            MediaKind::Audio => match &self.audio {
                Some(plan) => {
                    let source = (item.index % u64::from(plan.sources().max(1))) as usize;
                    let (id, name) = plan.user(source);
                    (id, name, plan.frame(source, item.tick))
                }
                None => (0, "", Bytes::new()),
            },
            kind => {
                let (id, name) = tl.speaker_user(item.tick);
                let data = match kind {
                    MediaKind::Transcript => {
                        Bytes::from_static(source::sentence(item.index).as_bytes())
                    }
                    MediaKind::Chat => Bytes::from(source::chat_text(item.index, name)),
                    _ => source::fake_frame(kind.key(), item.index),
                };
                (id, name, data)
            }
        };
        SentMedia {
            kind: item.kind,
            index: item.index,
            frame: item.tick,
            user_id,
            user_name: user_name.to_string(),
            timestamp: self.timestamp(tl, item.tick),
            data,
            sent_at,
            resent: item.resent,
        }
    }

    /// Events and faults that follow a committed audio item.
    fn after_audio(&mut self, tl: &Timeline, item: &Outgoing, fired: &mut Vec<Fault>) {
        if self.first_packet.is_none() {
            let ts = self.timestamp(tl, item.tick);
            self.first_packet = Some(ts);
            if self.subscriptions.contains(&event::FIRST_PACKET_TIMESTAMP) {
                self.send_signaling(first_packet_event(ts));
            }
        }
        if let Some(speaker) = tl.speaker(item.tick) {
            if self.last_speaker != Some(speaker) {
                self.last_speaker = Some(speaker);
                if self.subscriptions.contains(&event::ACTIVE_SPEAKER_CHANGE) {
                    self.send_signaling(speaker_event(&tl.participants[speaker]));
                }
            }
        }
        if item.last_of_tick {
            while self.faults.front().is_some_and(|(n, _)| *n <= item.tick) {
                if let Some((_, fault)) = self.faults.pop_front() {
                    fired.push(fault);
                }
            }
        }
    }

    fn apply_fault(
        &mut self,
        tl: &Timeline,
        me: u64,
        fault: Fault,
        now: Instant,
        action: &mut SelfAction,
    ) {
        tracing::info!(stream = %tl.stream_id, "RTMS sim: fault {fault:?}");
        let media: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.role == Role::Media)
            .map(|(id, _)| *id)
            .collect();
        match fault {
            Fault::DropMedia | Fault::CloseMedia(_) => {
                // Detached now, so nothing more is planned for them before they are gone.
                let mut lost = 0;
                for &id in &media {
                    lost |= self.detach(id);
                    let (own, cmd) = match fault {
                        Fault::CloseMedia(code) => (
                            SelfAction::Close(code),
                            Cmd::Close(code, String::new(), None),
                        ),
                        _ => (SelfAction::Drop, Cmd::Drop),
                    };
                    if id == me {
                        action.raise(own);
                    } else {
                        self.send_to(id, cmd);
                    }
                }
                if fault == Fault::DropMedia
                    && lost != 0
                    && self
                        .subscriptions
                        .contains(&event::MEDIA_CONNECTION_INTERRUPTED)
                {
                    self.send_signaling(media_interrupted_event(lost));
                }
            }
            Fault::DropSignaling | Fault::CloseSignaling(_) => {
                if let Some(id) = self.signaling {
                    self.detach(id);
                    let cmd = match fault {
                        Fault::CloseSignaling(code) => Cmd::Close(code, String::new(), None),
                        _ => Cmd::Drop,
                    };
                    self.send_to(id, cmd);
                }
            }
            Fault::Reject(code) => self.reject_next.push_back(code),
            Fault::Stall(duration) => {
                for (&id, conn) in &self.conns {
                    if id == me {
                        action.raise(SelfAction::Stall(duration));
                    } else {
                        let _ = conn.tx.send(Cmd::Stall(duration));
                    }
                }
            }
            Fault::Pause(duration) => {
                self.paused = true;
                self.pause_until = Some(now + duration);
                let msg = wire::stream_state_update(&tl.stream_id, stream_state::PAUSED, 0);
                self.send_signaling(msg);
            }
            Fault::Stop(reason) => {
                self.stop_request.get_or_insert(reason);
            }
        }
    }

    /// The supervisor's next step; `true` when a pause just ended (state changed).
    fn supervise(&mut self, tl: &Timeline, now: Instant, window: Duration) -> (Step, bool) {
        match self.phase {
            Phase::Done(_) | Phase::Stopping => return (Step::Exit, false),
            Phase::Waiting | Phase::Live => {}
        }
        if let Some(reason) = self.stop_request.take() {
            return (
                Step::Stop(reason, StreamOutcome::Completed { reason }),
                false,
            );
        }
        if self.pause_until.is_some_and(|until| until <= now) {
            self.pause_until = None;
            self.paused = false;
            let msg = wire::stream_state_update(&tl.stream_id, stream_state::RESUMED, 0);
            self.send_signaling(msg);
            self.update(tl, now);
            return (Step::Wait(None), true);
        }
        let expiry = self.interrupted_since.map(|since| since + window);
        if expiry.is_some_and(|at| at <= now) {
            return (
                Step::Stop(
                    stop_reason::AWAIT_RECONNECTION_TIMEOUT,
                    StreamOutcome::TimedOut,
                ),
                false,
            );
        }
        let deadline = match (expiry, self.pause_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (Step::Wait(deadline), false)
    }
}
