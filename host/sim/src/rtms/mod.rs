//! Simulator: Zoom's RTMS servers, signaling and media, server side (see
//! the RTMS notes in the `zoomhost-zoom` crate docs).
//!
//! [`RtmsSim`] listens on `127.0.0.1:0` and serves one signaling endpoint
//! (`/signaling`, the URL that goes into `meeting.rtms_started`'s `server_urls`) and the
//! media endpoints it offers in the signaling handshake reply: one per media type
//! (`/media/audio`, `/media/video`, `/media/deskshare`, `/media/transcript`,
//! `/media/chat`) plus `/media/all`, or only `/media/all` ([`MediaUrlMode::AllOnly`]).
//!
//! Streams are registered with [`RtmsSim::add_stream`] before `rtms_started` is
//! announced. A client then does what Zoom's official RTMS SDK does: signaling handshake
//! (msg 1 → 2, signature checked in constant time), media handshake(s) (msg 3 → 4, with
//! the *effective* media params), event subscription (5), `CLIENT_READY_ACK` (7), and
//! answers keep-alives (12 → 13) on every socket. Media (14 audio, 15 video, 16 share,
//! 17 transcript, 18 chat) flows after the ready ack, paced in real time or as fast as
//! the socket takes it; JSON goes out in text frames, or binary frames when
//! [`RtmsSimConfig::binary_frames`] is set, and is accepted from the client in either.
//!
//! Nothing is lost across an interruption: a media item counts as sent
//! ([`SimStream::sent`]) only once it was written to a socket. When a socket drops
//! without a close frame the stream stays resumable for
//! [`RtmsSimConfig::resume_window`]; media pauses while a requested media type has no
//! socket (or the signaling connection is gone or not ready again), and resumes where it
//! stopped after a new handshake (plus a new ready ack when signaling was re-done).
//! Faults ([`Fault`]) fire after a given audio frame: abrupt drops, close frames,
//! rejected handshakes, stalls, pauses, stops.
//!
//! The end of a stream ([`End::AfterFrames`], [`SimStream::stop`], an injected
//! [`Fault::Stop`], a `STREAM_CLOSE_REQ`) is Zoom's stop sequence: every media item
//! flushed first, then on signaling `EVENT_UPDATE` participant-left (if subscribed),
//! `STREAM_STATE_UPDATE` TERMINATING then TERMINATED with the stop reason,
//! `SESSION_STATE_UPDATE` STOPPED, then close frames 1000 on the media sockets and on
//! signaling.
//!
//! Wire shapes (all JSON objects with `msg_type`; the numbers, the handshake and
//! keep-alive messages and the state updates are those of [`zoomhost_protocol::rtms`]):
//!
//! ```text
//! 2  {msg_type, protocol_version:1, sequence, status_code, reason,
//!     media_server:{server_urls:{audio, video, deskshare, transcript, chat, all}}}
//! 4  {msg_type, protocol_version:1, sequence, status_code, reason, payload_encrypted:false,
//!     media_params:{audio:{content_type, codec, sample_rate, channel, data_opt, send_rate},
//!                   transcript:{content_type:5, src_language?, enable_lid}, video:{..}, ...}}
//! 6  {msg_type, event:{event_type, timestamp, ...}}   1 first packet, 2 active speaker
//!     {user_id, user_name}, 3/4 join/leave {participants:[{user_id, user_name}]}, 7 media
//!     connection interrupted {media_type}
//! 8  {msg_type, rtms_stream_id, state, reason, timestamp}
//! 9  {msg_type, rtms_session_id, state, stop_reason, timestamp}
//! 12 {msg_type, sequence, timestamp}
//! 14 {msg_type, content:{user_id, user_name, length, data:base64 L16 LE, timestamp}}
//! 15/16 {msg_type, content:{user_id, user_name, data:base64, timestamp}}
//! 17 {msg_type, content:{user_id, user_name, data:text, timestamp, start_time, end_time, language}}
//! 18 {msg_type, content:{user_id, user_name, data:text, timestamp}}
//! ```

mod conn;
mod source;
mod stream;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zoomhost_protocol::rtms::media::{bit, key};
use zoomhost_protocol::rtms::msg;
use zoomhost_protocol::rtms::states::stop_reason;

use crate::util::{lock, random_token};

pub use stream::{SentMedia, SimStream, SimStreamStats, StreamOutcome};
pub use wire::status;
/// The handshake signature Zoom expects (see [`zoomhost_protocol::rtms::handshake`]).
pub use zoomhost_protocol::rtms::signature as expected_signature;

/// Which media URLs the signaling handshake reply offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaUrlMode {
    /// One URL per media type (`audio`, `video`, `deskshare`, `transcript`, `chat`) and
    /// `all`, as Zoom does; the official client opens one socket per type.
    #[default]
    PerType,
    /// Only `all`: one media socket carries every type.
    AllOnly,
}

/// Settings of the simulated RTMS servers.
#[derive(Clone)]
pub struct RtmsSimConfig {
    /// The app's client id: part of the signed handshake message (never sent).
    pub client_id: String,
    /// The app's client secret: the handshake signature's HMAC key.
    pub client_secret: String,
    /// How often `KEEP_ALIVE_REQ` (12) goes out on every socket (default 10 s).
    pub keepalive_interval: Duration,
    /// A socket with this many unanswered keep-alives is dropped without a close frame
    /// (stream interrupted, reason 24). 0 never drops. Default 3.
    pub keepalive_max_missed: u32,
    /// Which media URLs the signaling reply offers.
    pub media_urls: MediaUrlMode,
    /// Send the server's JSON in binary frames instead of text frames.
    pub binary_frames: bool,
    /// How long an interrupted stream (a socket dropped, or not ready again) waits for
    /// the client to come back before it is given up (stop reason 19). Default 60 s.
    pub resume_window: Duration,
    /// How long a new connection may take to send its handshake. Default 10 s.
    pub handshake_timeout: Duration,
}

impl Default for RtmsSimConfig {
    fn default() -> Self {
        Self {
            client_id: "sim-client-id".to_string(),
            client_secret: "sim-client-secret".to_string(),
            keepalive_interval: Duration::from_secs(10),
            keepalive_max_missed: 3,
            media_urls: MediaUrlMode::PerType,
            binary_frames: false,
            resume_window: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for RtmsSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsSimConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("keepalive_interval", &self.keepalive_interval)
            .field("keepalive_max_missed", &self.keepalive_max_missed)
            .field("media_urls", &self.media_urls)
            .field("binary_frames", &self.binary_frames)
            .field("resume_window", &self.resume_window)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// A meeting participant as RTMS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimParticipant {
    /// Zoom's numeric user id (never 0: 0 is the mixed stream).
    pub user_id: u32,
    /// Display name.
    pub user_name: String,
}

impl SimParticipant {
    /// A participant.
    pub fn new(user_id: u32, user_name: impl Into<String>) -> Self {
        Self {
            user_id,
            user_name: user_name.into(),
        }
    }
}

/// How fast media goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// One audio frame per `send_rate` ms of wall clock; timestamps are the wall clock
    /// (ms) at which each frame was due. Frames of every stream fall due on one shared
    /// grid (so a stream's first frame may wait up to one frame), which lets the timer
    /// wake many sockets per turn.
    #[default]
    RealTime,
    /// As fast as the socket takes it; timestamps are synthetic: the stream's creation
    /// time plus `send_rate` ms per frame.
    Fast,
}

/// Where the audio comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AudioSource {
    /// A distinct sine per participant (the mixed stream: all of them), L16
    /// little-endian at the confirmed rate and channels. Every frame of a source is the
    /// same bytes, so payloads are computed once.
    #[default]
    Tone,
    /// A 16-bit PCM WAV file, looped to fill `frames` (with `frames = 0`: played once,
    /// in 20 ms frames). Its sample rate (8/16/32/48 kHz) and channels (1/2) become the
    /// confirmed params; no resampling, so a `confirm_audio` override that disagrees
    /// with the file fails the media handshake with a reason that names both.
    Wav(PathBuf),
}

/// Mixed or per-speaker audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataOpt {
    /// Whatever the client asked for in its media handshake (mixed when it did not say).
    #[default]
    AsRequested,
    /// One mixed stream, `user_id` 0.
    Mixed,
    /// One stream per participant, each with its own frames.
    PerSpeaker,
}

/// What happens when every frame was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Run the stop sequence with [`StreamSpec::stop_reason`].
    #[default]
    AfterFrames,
    /// Keep the stream open until [`SimStream::stop`] (or a fault) ends it.
    Hold,
}

/// A fault injected after an audio frame (see [`StreamSpec::faults`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Abrupt TCP drop (no close frame) of every media socket of the stream.
    DropMedia,
    /// Abrupt TCP drop of the signaling socket.
    DropSignaling,
    /// Close every media socket with this close code (1000: what Zoom does at the end).
    CloseMedia(u16),
    /// Close the signaling socket with this close code.
    CloseSignaling(u16),
    /// The next handshake (signaling or media) is answered with this status code.
    Reject(u32),
    /// Every socket of the stream neither reads nor writes for this long.
    Stall(Duration),
    /// `STREAM_STATE_UPDATE` paused (5), no media for this long, then resumed (6).
    Pause(Duration),
    /// Run the stop sequence now with this stop reason.
    Stop(u32),
}

/// Counts of the other media kinds to interleave with audio (small fake payloads), so
/// a client's routing of them can be tested. Spread evenly over the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtraMedia {
    /// `MEDIA_DATA_VIDEO` (15) messages.
    pub video: u32,
    /// `MEDIA_DATA_SHARE` (16) messages.
    pub share: u32,
    /// `MEDIA_DATA_CHAT` (18) messages.
    pub chat: u32,
}

/// One simulated RTMS stream: who is in it and what it sends.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The meeting (or webinar, session ...) id the handshakes must carry.
    pub meeting_uuid: String,
    /// The RTMS stream id.
    pub stream_id: String,
    /// Participants: audio sources (per speaker), speakers, join/leave events.
    pub participants: Vec<SimParticipant>,
    /// Audio frames per audio source (`send_rate` ms each: 20 ms by default).
    pub frames: u32,
    /// Real time or fast.
    pub pace: Pace,
    /// Tones or a WAV file.
    pub audio: AudioSource,
    /// Mixed or per speaker.
    pub data_opt: DataOpt,
    /// A transcript segment (msg 17) every this many audio frames (0: none), rotating
    /// speakers, canned sentences. The active speaker rotates with it (every 100 frames
    /// when 0).
    pub transcript_every: u32,
    /// Fields merged over the audio params the server confirms in msg 4 (e.g.
    /// `{"sample_rate": 3, "channel": 2}`); frames are then generated in that format.
    /// The payload is always L16, whatever `codec` says.
    pub confirm_audio: Option<serde_json::Value>,
    /// `(N, fault)`: the fault fires once audio frame index N (0-based, every source)
    /// was sent. In list order for equal N.
    pub faults: Vec<(u32, Fault)>,
    /// After a resumed media handshake, send the last N audio frames (per source) again,
    /// marked `resent` (Zoom may; clients must dedupe). Default 0.
    pub resend_on_resume: u32,
    /// What happens when every frame was sent.
    pub end: End,
    /// The stop reason of [`End::AfterFrames`] (default 6, meeting ended).
    pub stop_reason: u32,
    /// Video, share and chat messages to interleave.
    pub extra: ExtraMedia,
    /// Record every sent item for [`SimStream::sent`] (default true; turn off for load
    /// runs, counters are kept either way).
    pub record: bool,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            meeting_uuid: format!("{}==", random_token(22)),
            stream_id: random_token(32).to_lowercase(),
            participants: vec![
                SimParticipant::new(16_778_240, "Ada Lovelace"),
                SimParticipant::new(16_779_264, "Grace Hopper"),
            ],
            frames: 250,
            pace: Pace::RealTime,
            audio: AudioSource::Tone,
            data_opt: DataOpt::AsRequested,
            transcript_every: 0,
            confirm_audio: None,
            faults: Vec::new(),
            resend_on_resume: 0,
            end: End::AfterFrames,
            stop_reason: stop_reason::MEETING_ENDED,
            extra: ExtraMedia::default(),
            record: true,
        }
    }
}

impl StreamSpec {
    /// Defaults with the given ids.
    pub fn new(meeting_uuid: impl Into<String>, stream_id: impl Into<String>) -> Self {
        Self {
            meeting_uuid: meeting_uuid.into(),
            stream_id: stream_id.into(),
            ..Self::default()
        }
    }
}

/// The media kinds RTMS carries, with their `media_type` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// Audio (bit 1, msg 14).
    Audio,
    /// Video (bit 2, msg 15).
    Video,
    /// Screen share (bit 4, msg 16; URL key `deskshare`).
    Share,
    /// Transcript (bit 8, msg 17).
    Transcript,
    /// Chat (bit 16, msg 18).
    Chat,
}

impl MediaKind {
    /// Every kind, in the order items of one frame go out.
    pub const ALL: [MediaKind; 5] = [
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Share,
        MediaKind::Transcript,
        MediaKind::Chat,
    ];

    /// The `media_type` bit.
    pub fn bit(self) -> u64 {
        u64::from(match self {
            MediaKind::Audio => bit::AUDIO,
            MediaKind::Video => bit::VIDEO,
            MediaKind::Share => bit::DESKSHARE,
            MediaKind::Transcript => bit::TRANSCRIPT,
            MediaKind::Chat => bit::CHAT,
        })
    }

    /// The key of `media_server.server_urls` (and of `media_params`).
    pub fn key(self) -> &'static str {
        match self {
            MediaKind::Audio => key::AUDIO,
            MediaKind::Video => key::VIDEO,
            MediaKind::Share => key::DESKSHARE,
            MediaKind::Transcript => key::TRANSCRIPT,
            MediaKind::Chat => key::CHAT,
        }
    }

    /// The `msg_type` of its data messages.
    pub fn msg_type(self) -> u64 {
        u64::from(match self {
            MediaKind::Audio => msg::MEDIA_DATA_AUDIO,
            MediaKind::Video => msg::MEDIA_DATA_VIDEO,
            MediaKind::Share => msg::MEDIA_DATA_SHARE,
            MediaKind::Transcript => msg::MEDIA_DATA_TRANSCRIPT,
            MediaKind::Chat => msg::MEDIA_DATA_CHAT,
        })
    }

    fn from_key(key: &str) -> Option<MediaKind> {
        MediaKind::ALL.into_iter().find(|k| k.key() == key)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A handshake the server refused, for streams it could not even identify too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reply's `msg_type` (2 signaling, 4 media).
    pub msg_type: u64,
    /// Its `status_code`.
    pub status_code: u32,
    /// The `rtms_stream_id` the request named (may be empty).
    pub stream_id: String,
}

/// What the connection tasks share.
pub(crate) struct Server {
    config: Arc<RtmsSimConfig>,
    addr: SocketAddr,
    streams: Mutex<HashMap<String, Arc<SimStream>>>,
    rejections: Mutex<Vec<Rejection>>,
    shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
}

/// Resolves once the simulator shuts down (or is gone).
pub(crate) async fn shut_down(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Server {
    fn signaling_url(&self) -> String {
        format!("ws://{}/signaling", self.addr)
    }

    fn media_url(&self, key: &str) -> String {
        format!("ws://{}/media/{key}", self.addr)
    }

    /// `media_server.server_urls` of the signaling reply.
    fn media_urls(&self) -> serde_json::Value {
        let mut urls = serde_json::Map::new();
        if self.config.media_urls == MediaUrlMode::PerType {
            for kind in MediaKind::ALL {
                urls.insert(kind.key().into(), self.media_url(kind.key()).into());
            }
        }
        urls.insert(key::ALL.into(), self.media_url(key::ALL).into());
        urls.into()
    }

    fn stream(&self, id: &str) -> Option<Arc<SimStream>> {
        lock(&self.streams).get(id).cloned()
    }

    fn record_rejection(&self, msg_type: u64, status_code: u32, stream_id: &str) {
        lock(&self.rejections).push(Rejection {
            msg_type,
            status_code,
            stream_id: stream_id.to_string(),
        });
    }

    fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// The running simulated RTMS servers. Stops (listener, connections, streams) when the
/// last `Arc` is dropped.
pub struct RtmsSim {
    server: Arc<Server>,
}

impl std::fmt::Debug for RtmsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsSim")
            .field("addr", &self.server.addr)
            .field("streams", &lock(&self.server.streams).len())
            .finish_non_exhaustive()
    }
}

impl Drop for RtmsSim {
    fn drop(&mut self) {
        self.server.shutdown.send_replace(true);
    }
}

impl RtmsSim {
    /// Binds `127.0.0.1:0` (signaling and media endpoints on one port) and starts
    /// accepting.
    pub async fn start(config: RtmsSimConfig) -> anyhow::Result<Arc<RtmsSim>> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the simulated RTMS servers on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("local address of the RTMS sim")?;
        let (shutdown, _) = watch::channel(false);
        let server = Arc::new(Server {
            config: Arc::new(config),
            addr,
            streams: Mutex::default(),
            rejections: Mutex::default(),
            shutdown,
            next_conn: AtomicU64::new(1),
        });
        tokio::spawn(conn::accept_loop(listener, server.clone()));
        Ok(Arc::new(RtmsSim { server }))
    }

    /// The signaling URL, what goes into `meeting.rtms_started`'s `server_urls`.
    pub fn signaling_url(&self) -> String {
        self.server.signaling_url()
    }

    /// The media URL for `kind` (`None`: the `all` URL). Per-type URLs answer 404 in
    /// [`MediaUrlMode::AllOnly`].
    pub fn media_url(&self, kind: Option<MediaKind>) -> String {
        self.server.media_url(kind.map_or(key::ALL, MediaKind::key))
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RtmsSimConfig {
        &self.server.config
    }

    /// Registers a stream (before announcing `rtms_started`). A stream with the same id
    /// is replaced. A WAV that cannot be used is logged, and every media handshake of
    /// the stream then fails with a reason that says why; see
    /// [`RtmsSim::try_add_stream`] to get the error instead.
    pub fn add_stream(&self, spec: StreamSpec) -> Arc<SimStream> {
        let stream = SimStream::new(spec, self.server.config.clone(), true);
        self.register(stream)
    }

    /// Like [`RtmsSim::add_stream`], but a WAV source that cannot be read (or is not
    /// 16-bit PCM at 8/16/32/48 kHz, mono or stereo) is an error.
    pub fn try_add_stream(&self, spec: StreamSpec) -> anyhow::Result<Arc<SimStream>> {
        let stream = SimStream::try_new(spec, self.server.config.clone())?;
        Ok(self.register(stream))
    }

    fn register(&self, stream: Arc<SimStream>) -> Arc<SimStream> {
        let previous =
            lock(&self.server.streams).insert(stream.stream_id().to_string(), stream.clone());
        if let Some(previous) = previous {
            previous.abandon();
        }
        tokio::spawn(stream::supervise(
            stream.clone(),
            self.server.shutdown.subscribe(),
        ));
        stream
    }

    /// The stream with this id.
    pub fn stream(&self, stream_id: &str) -> Option<Arc<SimStream>> {
        self.server.stream(stream_id)
    }

    /// Forgets a stream (ending it at once, without the stop sequence, if it still
    /// runs); `None` if there was none with that id.
    pub fn remove_stream(&self, stream_id: &str) -> Option<Arc<SimStream>> {
        let stream = lock(&self.server.streams).remove(stream_id)?;
        stream.abandon();
        Some(stream)
    }

    /// Every registered stream (in no particular order).
    pub fn streams(&self) -> Vec<Arc<SimStream>> {
        lock(&self.server.streams).values().cloned().collect()
    }

    /// Every refused handshake, including those for unknown streams.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.server.rejections).clone()
    }

    /// Audio messages sent so far over every stream (first sends; resends apart).
    pub fn audio_frames_sent(&self) -> u64 {
        self.streams().iter().map(|s| s.audio_frames_sent()).sum()
    }
}
