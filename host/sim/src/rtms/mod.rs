//! Simulator: Zoom's RTMS servers, signaling and media, server side (see the RTMS notes
//! in the `zoomhost-zoom` crate docs), failing the way Zoom documents it fails.
//!
//! [`RtmsSim`] listens on two loopback ports (two "servers", for failover). Server
//! generation 0 serves `/signaling` (the URL that goes into `*.rtms_started`'s
//! `server_urls`, [`RtmsSim::signaling_url`]) and the media endpoints it offers in the
//! signaling handshake reply: one per media type (`/media/audio`, `/media/video`,
//! `/media/deskshare`, `/media/transcript`, `/media/chat`) plus `/media/all`, or only
//! `/media/all` ([`MediaUrlMode::AllOnly`]). After a failover a stream is served by the
//! next generation: the other port, under `/g{n}` ([`SimStream::signaling_url`]).
//!
//! Streams are registered with [`RtmsSim::add_stream`] before `rtms_started` is
//! announced; each belongs to a [`Product`] (meeting, webinar, Video SDK session, Contact
//! Center engagement, Phone call), which names its lifecycle events and id field. A client
//! then does what Zoom's official RTMS SDK does: signaling handshake (msg 1 → 2, with the
//! id under the product's key or under `meeting_uuid`, signature checked in constant time
//! over the id value sent), media handshake(s) (msg 3 → 4, with the *effective* media
//! params), event subscription (5), `CLIENT_READY_ACK` (7), and answers keep-alives
//! (12 → 13). Media (14 audio, 15 video, 16 share, 17 transcript, 18 chat) flows after the
//! ready ack; JSON goes out in text frames, or binary frames when
//! [`RtmsSimConfig::binary_frames`] is set, and is accepted from the client in either.
//!
//! Handshakes are refused with the status codes of Zoom's current table
//! ([`status`]): 1 wrong message type, 2 unknown stream (or id, or a stream that ended),
//! 3 bad signature, 4 bad payload (not JSON, a field missing, a `protocol_version` other
//! than 1), 7 no media type, 8 a signaling handshake while the stream's older signaling
//! socket is still open, 16 a media handshake for a media type another open socket
//! carries, 17 media params the server cannot serve, 43 a transcript `src_language` that
//! is not one of Zoom's language numbers.
//!
//! **Media is produced in real time from registration on** (the moment Zoom sends
//! `rtms_started`), whether or not a client is connected. Audio, transcript and chat
//! produced while their socket is missing are buffered (up to
//! [`RtmsSimConfig::audio_buffer`], 60 s) and replayed with their original timestamps
//! once a socket carries them again; `buffer_data: false` in the signaling handshake drops
//! only what was produced before the first connection. Video and screen share are never
//! buffered: what falls due while nobody can receive it is dropped. [`Pace::Fast`] streams
//! produce as fast as the socket takes them, so nothing is dropped. Every media item that
//! was written counts as sent ([`SimStream::sent`]); every audio frame is recorded with
//! its SHA-256 and its fate, sent or dropped ([`SimStream::audio_frames`]), so a test can
//! compare what a client received frame for frame; every video message likewise
//! ([`SimStream::video_frames`]: frame, user, timestamp, SHA-256).
//!
//! **Individual video** (`media_params.video.data_opt` 4 in the video handshake; Zoom's
//! single individual stream): no video goes out until the client asks for a participant
//! with `VIDEO_SUBSCRIPTION_REQ` (28) on signaling. The server answers
//! `VIDEO_SUBSCRIPTION_RESP` (29): 0 OK, 44 when that participant already is the
//! subscription, 4 for a participant who is not in the stream (or no usable `user_id` /
//! `subscribe`), 29 when video was negotiated with another `data_opt`. From then on each
//! video item shows that participant (their `user_id`, a payload naming them) while their
//! camera is on ([`StreamSpec::cameras`]); a new request replaces the subscription,
//! `subscribe: false` stops video, and a new signaling session starts without one (the
//! client asks again). Cameras turning on and off are announced with `EVENT_UPDATE` 8/9
//! to a client subscribed to those events (and the cameras on at the moment it subscribes
//! to 8). Active speaker video (`data_opt` 3, the default) is unchanged.
//!
//! **Zoom's failure contract** (its failover and reconnection documentation):
//!
//! - Signaling lost (dropped by [`Fault::DropSignaling`], three unanswered keep-alives,
//!   the client's TCP gone): the server drops every media socket too, sends
//!   `{product}.rtms_interrupted` ([`RtmsSim::notices`]) and waits
//!   [`RtmsSimConfig::resume_window`] (60 s) for a new signaling handshake.
//! - Media lost ([`Fault::DropMedia`], three unanswered keep-alives on a media socket, the
//!   client's media socket gone): `EVENT_UPDATE` 7 (MEDIA_CONNECTION_INTERRUPTED,
//!   `media_type` = the bits of the lost sockets) goes out on signaling, unasked, and the
//!   server waits [`RtmsSimConfig::media_window`] (65 s) for the media handshake(s).
//! - With [`RtmsSimConfig::interrupt_state_updates`] (default on) signaling also carries
//!   `STREAM_STATE_UPDATE` INTERRUPTED (2) with reason 14 (data connection interrupted)
//!   on a media loss, and reason 13 (signal connection interrupted) right before the
//!   server drops a signaling socket itself: clients must not act on a loss twice. Once
//!   the lost media is back, `STREAM_STATE_UPDATE` ACTIVE (1) follows.
//! - A window that runs out ends the stream with stop reason 19
//!   (AWAIT_RECONNECTION_TIMEOUT), the reason Zoom's docs give for both windows, and
//!   `{product}.rtms_stopped`.
//! - Server failover ([`Fault::Failover`]): every socket of the stream is dropped without
//!   a close frame, the stream moves to the next server generation (the old URLs drop
//!   any handshake for it without an answer, as a dead server would), and
//!   `{product}.rtms_started` is sent again with the same ids, the new `server_urls` and
//!   a newer `event_ts`. The client must re-handshake everything within the signaling
//!   window.
//! - [`Fault::Stop`] runs the stop sequence and sends `{product}.rtms_stopped` with the
//!   reason.
//! - `EVENT_UPDATE` 1 (FIRST_PACKET_TIMESTAMP) and 7 go out without a subscription, as
//!   Zoom sends them; every other event type only when subscribed.
//! - `KEEP_ALIVE_REQ` (12) goes out every [`RtmsSimConfig::keepalive_interval`] (10 s)
//!   on signaling, and on a media socket while it is idle (no media written during the
//!   last interval).
//!
//! Chaos mode ([`RtmsSim::set_chaos`], [`RtmsChaos`]) injects these scenarios into every
//! live stream, in turn, at an interval: what `zoomhost dev --chaos` turns on.
//!
//! The end of a stream ([`End::AfterFrames`], [`SimStream::stop`], an injected
//! [`Fault::Stop`], a `STREAM_CLOSE_REQ`, a window that ran out) is Zoom's stop sequence:
//! every media item flushed first, then on signaling `EVENT_UPDATE` participant-left (if
//! subscribed), `STREAM_STATE_UPDATE` TERMINATING then TERMINATED with the stop reason,
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
//!     connection interrupted {media_type}, 8/9 participant video on/off
//!     {participants:[{user_id}]}
//! 8  {msg_type, rtms_stream_id, state, reason, timestamp}
//! 9  {msg_type, rtms_session_id, state, stop_reason, timestamp}
//! 12 {msg_type, sequence, timestamp}
//! 14 {msg_type, content:{user_id, user_name, length, data:base64 L16 LE, timestamp}}
//! 15/16 {msg_type, content:{user_id, user_name, data:base64, timestamp}}
//! 17 {msg_type, content:{user_id, user_name, data:text, timestamp, start_time, end_time,
//!     language: Zoom's language number, src_language or 9 English}}
//! 18 {msg_type, content:{user_id, user_name, data:text, timestamp}}
//! 29 {msg_type, user_id, status_code, reason, timestamp}   (client's 28: {msg_type,
//!     user_id, subscribe, timestamp})
//! ```

mod chaos;
mod conn;
mod notices;
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
use tokio::sync::{broadcast, watch};
use zoomhost_protocol::rtms::media::{bit, key};
use zoomhost_protocol::rtms::msg;
use zoomhost_protocol::rtms::states::stop_reason;

use crate::util::{lock, random_token};

pub use chaos::{ChaosInjection, ChaosScenario, RtmsChaos};
pub use notices::SimNotice;
pub use stream::{
    AudioFrameRecord, FrameFate, SentMedia, SimStream, SimStreamStats, StreamOutcome,
    VideoFrameRecord, VideoRequest,
};
/// The products that stream over RTMS (they name a stream's lifecycle events and id field).
pub use zoomhost_protocol::rtms::product::Product;
/// The handshake signature Zoom expects (see [`zoomhost_protocol::rtms::handshake`]).
pub use zoomhost_protocol::rtms::signature as expected_signature;
/// Zoom's current `status_code` table, which handshake refusals use.
pub use zoomhost_protocol::rtms::status;

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
    /// How often `KEEP_ALIVE_REQ` (12) goes out on signaling, and on a media socket that
    /// wrote no media during the last interval (default 10 s).
    pub keepalive_interval: Duration,
    /// A socket with this many unanswered keep-alives is dropped without a close frame
    /// (signaling: Zoom's signaling-loss reaction; media: its media-loss reaction). 0
    /// never drops. Default 3.
    pub keepalive_max_missed: u32,
    /// Which media URLs the signaling reply offers.
    pub media_urls: MediaUrlMode,
    /// Send the server's JSON in binary frames instead of text frames.
    pub binary_frames: bool,
    /// The signaling window: how long a stream without a ready signaling connection
    /// (signaling lost, a failover, a client still connecting) waits for a signaling
    /// handshake and ready ack before it ends with stop reason 19. Default 60 s, Zoom's.
    pub resume_window: Duration,
    /// The media window: how long a stream whose signaling is fine but a requested media
    /// socket is missing waits for its media handshake before it ends with stop reason
    /// 19. Default 65 s, Zoom's (since March 2026).
    pub media_window: Duration,
    /// How much audio (and transcript and chat) is kept for a client that is not
    /// connected, and replayed when it is. Default 60 s, Zoom's.
    pub audio_buffer: Duration,
    /// Also send `STREAM_STATE_UPDATE` INTERRUPTED with reason 14 on a media loss and
    /// reason 13 before dropping a signaling socket (both paths exist on Zoom; clients
    /// must not react twice). Default true.
    pub interrupt_state_updates: bool,
    /// How long the server stops writing media before it drops or closes a stream's
    /// sockets (a fault, a keep-alive timeout) and before the stop sequence's state
    /// messages, so a client that reads promptly has every frame the server wrote: a
    /// crash that loses frames in flight tells nothing about a client. Media produced
    /// meanwhile is buffered like any other. 0: drop at once. Default 200 ms.
    pub flush_grace: Duration,
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
            media_window: Duration::from_secs(65),
            audio_buffer: Duration::from_secs(60),
            interrupt_state_updates: true,
            flush_grace: Duration::from_millis(200),
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
            .field("media_window", &self.media_window)
            .field("audio_buffer", &self.audio_buffer)
            .field("interrupt_state_updates", &self.interrupt_state_updates)
            .field("flush_grace", &self.flush_grace)
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

/// Which socket of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// The signaling socket.
    Signaling,
    /// Every media socket.
    Media,
}

/// A fault injected after an audio frame ([`StreamSpec::faults`]) or at once
/// ([`SimStream::inject`], chaos mode). Each is followed by Zoom's documented reaction
/// (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Abrupt TCP drop (no close frame) of every media socket of the stream; then
    /// `EVENT_UPDATE` 7 on signaling and the media window.
    DropMedia,
    /// Abrupt TCP drop of the signaling socket, which takes every media socket with it;
    /// then `{product}.rtms_interrupted` and the signaling window.
    DropSignaling,
    /// The stream's server dies: every socket dropped without a close frame, the stream
    /// moves to the next server generation (new URLs; the old ones stop serving it) and
    /// `{product}.rtms_started` is sent again with the new `server_urls` and a newer
    /// `event_ts`; then the signaling window.
    Failover,
    /// The server stops hearing the client's keep-alive answers on these sockets (and
    /// sends keep-alives there even while media flows), so after
    /// [`RtmsSimConfig::keepalive_max_missed`] intervals it reacts as to a lost socket.
    /// Lasts until those sockets are gone.
    MissKeepAlives(SocketKind),
    /// The media pipeline stalls for this long: nothing is written to media sockets
    /// (keep-alives continue), audio is buffered and then replayed at once with its
    /// original timestamps; video produced meanwhile is dropped.
    HoldMedia(Duration),
    /// Close every media socket with this close code (1000: what Zoom does at the end);
    /// a media loss all the same.
    CloseMedia(u16),
    /// Close the signaling socket with this close code; a signaling loss all the same.
    CloseSignaling(u16),
    /// The next handshake (signaling or media) is answered with this status code.
    Reject(u32),
    /// Every socket of the stream neither reads nor writes for this long.
    Stall(Duration),
    /// `STREAM_STATE_UPDATE` paused (5), no media for this long, then resumed (6).
    Pause(Duration),
    /// Run the stop sequence now with this stop reason, and send `{product}.rtms_stopped`.
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
    /// Which product the stream belongs to: names its lifecycle notices and the id key
    /// its handshakes may carry (besides `meeting_uuid`). Default: a meeting.
    pub product: Product,
    /// The id of the meeting (webinar uuid, Video SDK session id, engagement id, call id
    /// per [`StreamSpec::product`]) the handshakes must carry.
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
    /// Real-time streams: where on the shared frame grid this stream's frames fall due,
    /// in ms after the grid's points (taken modulo the frame length, 20 ms). Streams
    /// that Zoom starts at different instants have their frames spread over the frame
    /// period; 0 (default) puts every stream on the same points, so the simulator's
    /// timer wakes all their sockets at once and a client gets them in one burst.
    pub grid_offset_ms: u32,
    /// Whose camera is on, and during which frames: what individual video (`data_opt`
    /// 4) can show, and what `EVENT_UPDATE` 8/9 (participant video on/off) announce.
    /// `None` (default): every participant's camera is on for the whole stream. Active
    /// speaker video (`data_opt` 3) ignores it.
    pub cameras: Option<Vec<CameraOn>>,
}

/// A span of frames during which one participant's camera is on
/// ([`StreamSpec::cameras`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraOn {
    /// Whose camera.
    pub user_id: u32,
    /// The first frame (tick) with the camera on.
    #[serde(default)]
    pub from_frame: u32,
    /// The first frame with the camera off again (`None`: on until the end).
    #[serde(default)]
    pub until_frame: Option<u32>,
}

impl CameraOn {
    /// `user_id`'s camera, on for the whole stream.
    pub fn always(user_id: u32) -> Self {
        Self {
            user_id,
            from_frame: 0,
            until_frame: None,
        }
    }

    /// `user_id`'s camera, on from frame `from` until frame `until` (exclusive).
    pub fn between(user_id: u32, from: u32, until: u32) -> Self {
        Self {
            user_id,
            from_frame: from,
            until_frame: Some(until),
        }
    }
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            product: Product::Meeting,
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
            grid_offset_ms: 0,
            cameras: None,
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

/// How many lifecycle notices a slow [`RtmsSim::notices`] receiver may fall behind.
const NOTICE_BACKLOG: usize = 1024;

/// What the connection tasks share.
pub(crate) struct Server {
    config: Arc<RtmsSimConfig>,
    hub: Arc<notices::Hub>,
    streams: Mutex<HashMap<String, Arc<SimStream>>>,
    rejections: Mutex<Vec<Rejection>>,
    shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
    chaos: Mutex<Option<tokio::task::AbortHandle>>,
    chaos_log: Mutex<Vec<ChaosInjection>>,
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

    fn live_streams(&self) -> Vec<Arc<SimStream>> {
        lock(&self.streams)
            .values()
            .filter(|s| s.is_connected())
            .cloned()
            .collect()
    }
}

/// The running simulated RTMS servers. Stops (listeners, connections, streams, chaos)
/// when the last `Arc` is dropped.
pub struct RtmsSim {
    server: Arc<Server>,
}

impl std::fmt::Debug for RtmsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmsSim")
            .field("addrs", &self.server.hub.addrs)
            .field("streams", &lock(&self.server.streams).len())
            .finish_non_exhaustive()
    }
}

impl Drop for RtmsSim {
    fn drop(&mut self) {
        self.server.shutdown.send_replace(true);
        if let Some(chaos) = lock(&self.server.chaos).take() {
            chaos.abort();
        }
    }
}

impl RtmsSim {
    /// Binds two listeners on `127.0.0.1:0` (server generations alternate between them;
    /// signaling and media endpoints share a port) and starts accepting.
    pub async fn start(config: RtmsSimConfig) -> anyhow::Result<Arc<RtmsSim>> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for n in 0..2 {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .with_context(|| format!("binding simulated RTMS server {n} on 127.0.0.1"))?;
            addrs.push(
                listener
                    .local_addr()
                    .context("local address of the RTMS sim")?,
            );
            listeners.push(listener);
        }
        let (shutdown, _) = watch::channel(false);
        let hub = Arc::new(notices::Hub {
            addrs: [addrs[0], addrs[1]],
            media_urls: config.media_urls,
            notices: broadcast::channel(NOTICE_BACKLOG).0,
        });
        let server = Arc::new(Server {
            config: Arc::new(config),
            hub,
            streams: Mutex::default(),
            rejections: Mutex::default(),
            shutdown,
            next_conn: AtomicU64::new(1),
            chaos: Mutex::default(),
            chaos_log: Mutex::default(),
        });
        for (index, listener) in listeners.into_iter().enumerate() {
            tokio::spawn(conn::accept_loop(listener, index as u32, server.clone()));
        }
        Ok(Arc::new(RtmsSim { server }))
    }

    /// The signaling URL of server generation 0, what goes into the first
    /// `*.rtms_started`'s `server_urls` (after a failover, see
    /// [`SimStream::signaling_url`]).
    pub fn signaling_url(&self) -> String {
        self.server.hub.signaling_url(0)
    }

    /// The generation-0 media URL for `kind` (`None`: the `all` URL). Per-type URLs
    /// answer 404 in [`MediaUrlMode::AllOnly`].
    pub fn media_url(&self, kind: Option<MediaKind>) -> String {
        self.server
            .hub
            .media_url(0, kind.map_or(key::ALL, MediaKind::key))
    }

    /// The address of server generation 0's listener.
    pub fn addr(&self) -> SocketAddr {
        self.server.hub.addrs[0]
    }

    /// Both listeners' addresses (generation `g` listens on `addrs()[g % 2]`).
    pub fn addrs(&self) -> [SocketAddr; 2] {
        self.server.hub.addrs
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RtmsSimConfig {
        &self.server.config
    }

    /// The lifecycle webhooks Zoom would send about the streams from now on
    /// (`{product}.rtms_started` after a failover, `rtms_interrupted`, `rtms_stopped`):
    /// see [`SimNotice`]. [`crate::LocalZoom`] forwards them to its event WebSocket.
    pub fn notices(&self) -> broadcast::Receiver<SimNotice> {
        self.server.hub.notices.subscribe()
    }

    /// Turns chaos mode on (replacing any earlier settings) or off (`None`): see
    /// [`RtmsChaos`]. Must be called inside a Tokio runtime.
    pub fn set_chaos(&self, chaos: Option<RtmsChaos>) {
        let mut slot = lock(&self.server.chaos);
        if let Some(old) = slot.take() {
            old.abort();
        }
        if let Some(chaos) = chaos {
            let server = Arc::downgrade(&self.server);
            *slot = Some(tokio::spawn(chaos::run(server, chaos)).abort_handle());
        }
    }

    /// Every injection chaos mode made so far, in order.
    pub fn chaos_log(&self) -> Vec<ChaosInjection> {
        lock(&self.server.chaos_log).clone()
    }

    /// Registers a stream (before announcing `rtms_started`): from now on it produces
    /// media. A stream with the same id is replaced. A WAV that cannot be used is logged,
    /// and every media handshake of the stream then fails with a reason that says why;
    /// see [`RtmsSim::try_add_stream`] to get the error instead.
    pub fn add_stream(&self, spec: StreamSpec) -> Arc<SimStream> {
        let stream = SimStream::new(spec, self.env(), true);
        self.register(stream)
    }

    /// Like [`RtmsSim::add_stream`], but a WAV source that cannot be read (or is not
    /// 16-bit PCM at 8/16/32/48 kHz, mono or stereo) is an error.
    pub fn try_add_stream(&self, spec: StreamSpec) -> anyhow::Result<Arc<SimStream>> {
        let stream = SimStream::try_new(spec, self.env())?;
        Ok(self.register(stream))
    }

    fn env(&self) -> stream::Env {
        stream::Env {
            config: self.server.config.clone(),
            hub: self.server.hub.clone(),
        }
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
