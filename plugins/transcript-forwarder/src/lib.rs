//! `transcript-forwarder`: sends the transcript of every RTMS stream to an HTTP endpoint
//! of yours, in batches, with retries and bounded memory, and can transcribe the
//! stream's audio itself with an OpenAI-compatible speech-to-text service.
//!
//! * Zoom's RTMS transcript segments are forwarded with origin `"zoom"`.
//! * With `stt_url` set, the plugin also subscribes to audio: each speaker's audio is cut
//!   into `stt_chunk_seconds` chunks, each sent as a WAV file to the service, and the
//!   text that comes back is forwarded like a Zoom segment, with origin `"stt"`.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p transcript-forwarder`.
//!
//! # Host config
//!
//! The plugin is configured only through the host config; every value is a string.
//!
//! ```toml
//! [limits]
//! # Sends happen inside media calls (see "Deadlines" below): give them time.
//! media_deadline_ms = 1000
//!
//! [plugins.transcript-forwarder]
//! allow_http = ["https://transcripts.example.com", "https://api.openai.com"]
//!
//! [plugins.transcript-forwarder.config]
//! sink_url = "https://transcripts.example.com/zoom/segments"
//! sink_token = "${TRANSCRIPT_SINK_TOKEN}"
//! batch_max = "10"
//! batch_ms = "2000"
//! # optional speech-to-text
//! stt_url = "https://api.openai.com/v1/audio/transcriptions"
//! stt_api_key = "${OPENAI_API_KEY}"
//! stt_model = "whisper-1"
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `sink_url` | required | `http(s)://` URL the batches are POSTed to (grant its origin in `allow_http`) |
//! | `sink_token` | none | sent as `authorization: Bearer <token>`; secret, never logged |
//! | `batch_max` | `10` | a batch is sent as soon as this many segments wait |
//! | `batch_ms` | `2000` | ...or once the oldest waiting segment is this old (checked on every delivery: plugins have no timer) |
//! | `max_pending` | `1000` | segments kept per stream while the sink fails; beyond it the oldest are dropped and counted |
//! | `retry_min_ms` / `retry_max_ms` | `1000` / `30000` | backoff after a failed request (doubling); `0` retries on every delivery |
//! | `min_send_ms` | `20` | a request starts only when at least this much of the call's deadline is left |
//! | `http_timeout_ms` | `10000` | upper bound of each request timeout (the time left in the call bounds it further) |
//! | `flush_events` | `meeting.rtms_stopped,webinar.rtms_stopped,session.rtms_stopped,meeting.ended,webinar.ended` | events (comma-separated, `none` for none) that flush what waits, with the event deadline |
//! | `stt_url` | none | OpenAI-compatible `.../v1/audio/transcriptions` URL; enables speech-to-text and the audio subscription |
//! | `stt_model` | `whisper-1` | the `model` form field |
//! | `stt_api_key` | none | sent as `authorization: Bearer <key>`; secret, never logged |
//! | `stt_language` | none | the `language` form field (e.g. `en`), also put on `"stt"` segments |
//! | `stt_chunk_seconds` | `5` | seconds of one speaker's audio per request |
//! | `stt_max_buffered_seconds` | `60` | audio a stream may hold (partial and untranscribed chunks together); beyond it the oldest is dropped and counted |
//! | `stt_min_final_ms` | `1000` | at stream end, a partial chunk at least this long is still transcribed |
//!
//! A missing `sink_url` or a malformed value fails `init` with an error naming the key
//! (on a config reload the running version keeps serving). Unknown keys are logged as
//! likely typos.
//!
//! # What the sink receives
//!
//! `POST sink_url` with `content-type: application/json` and this body:
//!
//! ```json
//! {
//!   "meeting_id": "4tM3lz2ZQeqJwh0e2ni3Eg==",
//!   "stream_id": "03db704592624398931a588dd78200cb",
//!   "session_kind": "meeting",
//!   "final": false,
//!   "dropped": 0,
//!   "segments": [
//!     {
//!       "seq": 0,
//!       "origin": "zoom",
//!       "speaker_id": 16778240,
//!       "speaker_name": "Ada Lovelace",
//!       "text": "Let's start with the roadmap.",
//!       "start_ms": 1700000000000,
//!       "end_ms": 1700000002400,
//!       "language": "en"
//!     }
//!   ]
//! }
//! ```
//!
//! * `session_kind`: `meeting`, `webinar`, `video-sdk` or `contact-center`.
//! * `seq` counts a stream's segments from 0, in the order they reached the plugin
//!   (`"stt"` segments when their transcription came back). Batches arrive in order;
//!   a gap in `seq` means segments were dropped, and `dropped` is the stream's total.
//! * `start_ms` / `end_ms` are milliseconds since the Unix epoch; `end_ms` and
//!   `language` are `null` when unknown. For `"stt"` segments they span the chunk's
//!   audio, from its first frame's timestamp.
//! * `final` is `true` on the last batch of a stream, sent when the stream ends, even
//!   with no segments, so the receiver knows the stream is complete.
//! * Any 2xx answer accepts the batch. 5xx, 408, 429, 401, 403 and network errors are
//!   retried (the batch stays at the front of the queue, so order is kept); other
//!   answers refuse the batch for good: it is logged and discarded. Delivery is at least
//!   once: a batch whose answer was lost is sent again, so deduplicate on
//!   `(stream_id, seq)`.
//!
//! # Deadlines
//!
//! Every plugin call has a deadline (`[limits]`: `media_deadline_ms`, default 50 ms, for
//! every media call **including the session close**; `event_deadline_ms`, default
//! 1000 ms, for events), and the host kills an instance that overruns it. This plugin
//! sends from inside those calls, so before every request it checks the time left
//! (`zoomhost_sdk::config::time_left`): it starts a request only when at least
//! `min_send_ms` are left, and caps the request's timeouts to two fifths of the time
//! left. What cannot be sent in time simply stays queued for a later delivery.
//!
//! So: with a sink on the same network, the default 50 ms works. For a sink across the
//! internet, and always for speech-to-text (a transcription takes seconds), raise
//! `media_deadline_ms` (it applies to every plugin, but only costs time when a plugin
//! uses it), e.g. 1000 for a remote sink and 10000 for speech-to-text. A long call
//! holds up this plugin's mailbox meanwhile; RTMS audio frames waiting longer than
//! `audio_queue_frames` allows are dropped by the host, oldest first. The plugin warns
//! once when its media calls are too short to send anything.
//!
//! What a stream's close could not send (no time left, or the sink failing) is kept,
//! still bounded by `max_pending`, and sent on a later call: any delivery of another
//! stream, or one of the `flush_events`, which get the longer event deadline. On a hot
//! reload or a config change the pending segments of every stream are handed to the
//! new instance (`snapshot`/`restore`); buffered audio is not. An instance the host
//! kills (a trap, a blown deadline or memory cap) loses what it held: the receiver sees
//! the stream's `seq` start again from 0 on the fresh instance's session.
//!
//! # Speech-to-text
//!
//! Only L16 audio (16-bit PCM, little-endian, as RTMS delivers it) is transcribed; a
//! stream with another codec logs that once and forwards only Zoom's transcript. Each
//! request is `multipart/form-data` with the parts `model`, `response_format=json`,
//! `language` (when set) and `file` (`chunk.wav`, `audio/wav`: a RIFF/WAVE file, PCM
//! 16-bit, the stream's sample rate and channels). The answer must be `{"text": "..."}`;
//! an empty text (silence) gives no segment.

mod net;
mod settings;
mod sink;
mod stt;
mod wav;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use zoomhost_sdk::serde_json;
use zoomhost_sdk::{
    config, error, info, warn, AudioCodec, AudioFrame, ChatMessage, Event, MediaKind, MediaSession,
    Metadata, Participant, Plugin, StreamInfo, StreamState, TranscriptSegment, VideoFrame,
};

use net::Redactor;
use settings::{origin, Settings, KEYS};
use sink::{NewSegment, Origin, Outbox, SavedOutbox, Stop, StreamId};
use stt::Transcriber;
use wav::PcmFormat;

/// `user-agent` of every request.
pub(crate) const USER_AGENT: &str =
    concat!("zoomhost-transcript-forwarder/", env!("CARGO_PKG_VERSION"));

/// Closed streams whose final batch still waits; beyond this the oldest is given up.
const MAX_LEFTOVER_STREAMS: usize = 256;

/// Version of the `snapshot` format.
const STATE_VERSION: u32 = 1;

/// The plugin.
struct TranscriptForwarder;

/// What an instance was configured with, fixed for its life.
struct Ctx {
    settings: Settings,
    redact: Redactor,
}

/// Plugin-wide state (a component instance is single-threaded; nothing here is held
/// across a request, so no borrow is ever re-entered).
#[derive(Default)]
struct Global {
    ctx: Option<Rc<Ctx>>,
    /// Open streams, for `snapshot` and for flushing on events.
    live: Vec<Weak<RefCell<Stream>>>,
    /// Outboxes of open streams handed over by the previous version, claimed when the
    /// host re-opens their sessions.
    carried: Vec<Outbox>,
    /// Outboxes of ended streams with something still to send.
    leftovers: VecDeque<Outbox>,
    /// Whether the "media calls are too short" warning was given.
    warned_short_calls: bool,
}

thread_local! {
    static GLOBAL: RefCell<Global> = RefCell::new(Global::default());
}

fn ctx() -> Option<Rc<Ctx>> {
    GLOBAL.with_borrow(|g| g.ctx.clone())
}

impl Plugin for TranscriptForwarder {
    type Session = Session;

    fn metadata() -> Metadata {
        let mut media = vec![MediaKind::Transcript];
        if settings::stt_configured(config::get) {
            media.push(MediaKind::Audio);
        }
        let wanted: Vec<String> = ["sink_url", "stt_url"]
            .into_iter()
            .filter_map(config::get)
            .map(|url| origin(url.trim()))
            .collect();
        Metadata::new("transcript-forwarder", env!("CARGO_PKG_VERSION"))
            .events(settings::flush_events(config::get("flush_events")))
            .media(media)
            .wanted_hosts(wanted)
            .config_keys(KEYS.iter().copied())
    }

    fn init() -> Result<(), String> {
        let settings = settings::load(config::get)?;
        for key in config::keys() {
            if !KEYS.contains(&key.as_str()) {
                warn!("config key `{key}` is not one this plugin reads (a typo?); ignored");
            }
        }
        let stt = match &settings.stt {
            Some(stt) => format!(
                "{} model={} chunk={}s",
                origin(&stt.url),
                stt.model,
                stt.chunk_seconds
            ),
            None => "off".to_string(),
        };
        info!(
            "forwarding transcripts to {} (batch_max={} batch_ms={} max_pending={}); \
             speech-to-text: {stt}",
            origin(&settings.sink_url),
            settings.batch_max,
            settings.batch_wait.as_millis(),
            settings.max_pending,
        );
        let ctx = Ctx {
            redact: Redactor::new(&settings),
            settings,
        };
        GLOBAL.with_borrow_mut(|g| g.ctx = Some(Rc::new(ctx)));
        Ok(())
    }

    /// One of the `flush_events`: a call with the event deadline, used to send what
    /// waits in every stream, and what closed streams left behind.
    fn handle_event(_event: Event) -> Result<(), String> {
        let live: Vec<_> =
            GLOBAL.with_borrow(|g| g.live.iter().filter_map(Weak::upgrade).collect());
        for stream in live {
            if let Ok(mut stream) = stream.try_borrow_mut() {
                stream.pump(false);
            }
        }
        pump_leftovers();
        Ok(())
    }

    fn snapshot() -> Option<Vec<u8>> {
        let now = Instant::now();
        let outboxes = GLOBAL.with_borrow(|g| {
            let live = g
                .live
                .iter()
                .filter_map(Weak::upgrade)
                .filter_map(|s| s.try_borrow().ok().map(|s| s.outbox.save(now, false)));
            let carried = g.carried.iter().map(|o| o.save(now, false));
            let left = g.leftovers.iter().map(|o| o.save(now, true));
            live.chain(carried).chain(left).collect::<Vec<_>>()
        });
        if outboxes.is_empty() {
            return None;
        }
        let state = State {
            version: STATE_VERSION,
            outboxes,
        };
        match serde_json::to_vec(&state) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                error!("could not save pending segments for the next version: {err}");
                None
            }
        }
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let state: State = serde_json::from_slice(&state)
            .map_err(|err| format!("state from the previous version is unreadable: {err}"))?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "state from the previous version has format {}, this version reads {STATE_VERSION}",
                state.version
            ));
        }
        let ctx = ctx().ok_or("restore called before init")?;
        let now = Instant::now();
        let (mut streams, mut segments) = (0, 0);
        GLOBAL.with_borrow_mut(|g| {
            for saved in state.outboxes {
                let (mut outbox, closed) = Outbox::restore(saved, now, &ctx.settings);
                // The new config may allow fewer.
                outbox.trim(ctx.settings.max_pending);
                streams += 1;
                segments += outbox.len();
                if closed {
                    g.leftovers.push_back(outbox);
                } else {
                    g.carried.push(outbox);
                }
            }
            bound_leftovers(g, ctx.settings.max_pending);
        });
        info!(
            "took over {segments} pending segments of {streams} streams from the previous version"
        );
        Ok(())
    }
}

/// What `snapshot` hands to the next version.
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    outboxes: Vec<SavedOutbox>,
}

/// One RTMS stream. Its state is shared with the plugin-wide registry (weakly) so
/// events and `snapshot` can reach it.
pub struct Session(Option<Rc<RefCell<Stream>>>);

impl Session {
    fn with(&mut self, f: impl FnOnce(&mut Stream)) -> Result<(), String> {
        if let Some(stream) = &self.0 {
            let mut stream = stream
                .try_borrow_mut()
                .map_err(|_| "media session re-entered while busy".to_string())?;
            warn_if_calls_too_short(&stream.ctx.settings);
            f(&mut stream);
        }
        pump_leftovers();
        Ok(())
    }
}

impl MediaSession for Session {
    fn open(info: StreamInfo) -> Self {
        let Some(ctx) = ctx() else {
            error!("stream {} opened before init; ignoring it", info.stream_id);
            return Session(None);
        };
        let stream = Rc::new(RefCell::new(Stream::open(info, ctx)));
        GLOBAL.with_borrow_mut(|g| {
            g.live.retain(|w| w.strong_count() > 0);
            g.live.push(Rc::downgrade(&stream));
        });
        Session(Some(stream))
    }

    fn on_transcript(&mut self, segment: TranscriptSegment) -> Result<(), String> {
        self.with(|s| s.on_transcript(segment))
    }

    fn on_audio(&mut self, frame: AudioFrame) -> Result<(), String> {
        self.with(|s| s.on_audio(&frame))
    }

    // Every other delivery is a chance to send a batch that has waited `batch_ms`.

    fn on_video(&mut self, _frame: VideoFrame) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_share(&mut self, _frame: VideoFrame) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_chat(&mut self, _message: ChatMessage) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_participant_join(&mut self, _who: Participant) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_participant_leave(&mut self, _who: Participant) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_active_speaker(&mut self, _who: Participant) -> Result<(), String> {
        self.with(Stream::tick)
    }

    fn on_stream_state(&mut self, _state: StreamState) -> Result<(), String> {
        self.with(Stream::tick)
    }
}

/// The stream ended: final flush, summary, and whatever could not be sent is kept for
/// a later call.
impl Drop for Session {
    fn drop(&mut self) {
        let Some(stream) = self.0.take() else {
            return;
        };
        let leftover = match stream.try_borrow_mut() {
            Ok(mut stream) => stream.close(),
            Err(_) => None,
        };
        drop(stream);
        GLOBAL.with_borrow_mut(|g| {
            g.live.retain(|w| w.strong_count() > 0);
            if let Some(outbox) = leftover {
                let max = g
                    .ctx
                    .as_ref()
                    .map_or(usize::MAX, |c| c.settings.max_pending);
                g.leftovers.push_back(outbox);
                bound_leftovers(g, max);
            }
        });
        pump_leftovers();
    }
}

/// The state of one stream.
struct Stream {
    ctx: Rc<Ctx>,
    outbox: Outbox,
    stt: Option<Transcriber>,
    misaligned_logged: bool,
}

impl Stream {
    fn open(info: StreamInfo, ctx: Rc<Ctx>) -> Self {
        let id = StreamId {
            meeting_id: info.meeting_id.clone(),
            stream_id: info.stream_id.clone(),
            session_kind: info.kind.to_string(),
        };
        let carried = GLOBAL.with_borrow_mut(|g| {
            let at = g
                .carried
                .iter()
                .position(|o| o.id.stream_id == id.stream_id)?;
            Some(g.carried.swap_remove(at))
        });
        let outbox = match carried {
            Some(mut outbox) => {
                outbox.id = id;
                outbox
            }
            None => Outbox::new(id, &ctx.settings),
        };
        let sid = &info.stream_id;
        let audio = info.audio;
        let stt = match &ctx.settings.stt {
            Some(stt) if info.media.contains(&MediaKind::Audio) => match audio.codec {
                AudioCodec::L16 if audio.sample_rate > 0 && audio.channels > 0 => {
                    let format = PcmFormat {
                        sample_rate: audio.sample_rate,
                        channels: u16::from(audio.channels),
                    };
                    Some(Transcriber::new(format, stt, &ctx.settings))
                }
                AudioCodec::L16 => {
                    warn!(
                        "stream {sid}: audio format {} Hz x {} channels is not usable; \
                         speech-to-text is off for this stream",
                        audio.sample_rate, audio.channels
                    );
                    None
                }
                other => {
                    warn!(
                        "stream {sid}: {other} audio cannot be transcribed (only L16 is \
                         supported); speech-to-text is off for this stream"
                    );
                    None
                }
            },
            _ => None,
        };
        let with_stt = if stt.is_some() {
            format!(
                " and speech-to-text of its L16 audio ({} Hz x {})",
                audio.sample_rate, audio.channels
            )
        } else {
            String::new()
        };
        info!(
            "stream {sid} opened ({} {}): forwarding its transcript{with_stt}",
            info.kind, info.meeting_id
        );
        Stream {
            ctx,
            outbox,
            stt,
            misaligned_logged: false,
        }
    }

    /// A delivery with nothing to add: only a chance to send what is due.
    fn tick(&mut self) {
        self.pump(false);
    }

    fn on_transcript(&mut self, segment: TranscriptSegment) {
        let segment = NewSegment {
            origin: Origin::Zoom,
            speaker_id: segment.user_id,
            speaker_name: segment.user_name,
            text: segment.text,
            start_ms: segment.timestamp,
            end_ms: segment.end_timestamp,
            language: segment.language,
        };
        let pushed = self
            .outbox
            .push(segment, Instant::now(), self.ctx.settings.max_pending);
        note_drops(&self.outbox.id.stream_id, pushed, &self.ctx.settings);
        self.pump(false);
    }

    fn on_audio(&mut self, frame: &AudioFrame) {
        if let Some(stt) = &mut self.stt {
            let (added, misaligned) = stt.add(frame);
            let sid = &self.outbox.id.stream_id;
            if misaligned && !self.misaligned_logged {
                self.misaligned_logged = true;
                warn!(
                    "stream {sid}: audio frames do not hold whole samples; the partial \
                     sample at their end is ignored"
                );
            }
            if added.first_drops {
                let max = self
                    .ctx
                    .settings
                    .stt
                    .as_ref()
                    .map_or(0, |s| s.max_buffered_seconds);
                warn!(
                    "stream {sid}: speech-to-text is behind; dropping the oldest audio to stay \
                     within stt_max_buffered_seconds={max}"
                );
            }
        }
        self.pump(false);
    }

    /// Transcribes waiting audio, then sends due batches, as far as the call's deadline
    /// allows. `closing`: the stream's last call, which sends everything it can.
    fn pump(&mut self, closing: bool) -> Stop {
        let ctx = self.ctx.clone();
        if let (Some(transcriber), Some(stt)) = (&mut self.stt, &ctx.settings.stt) {
            let outbox = &mut self.outbox;
            let sid = outbox.id.stream_id.clone();
            transcriber.pump(&sid, &ctx.settings, stt, &ctx.redact, closing, |segment| {
                let pushed = outbox.push(segment, Instant::now(), ctx.settings.max_pending);
                note_drops(&sid, pushed, &ctx.settings);
            });
        }
        sink::pump(
            &mut self.outbox,
            &ctx.settings,
            &ctx.redact,
            closing,
            closing,
        )
    }

    /// The stream ended. Returns the outbox when something is still to be sent.
    fn close(&mut self) -> Option<Outbox> {
        if let Some(stt) = &mut self.stt {
            stt.finish();
        }
        let stop = self.pump(true);
        let sid = self.outbox.id.stream_id.clone();
        let mut stt_summary = String::new();
        if let Some(stt) = &mut self.stt {
            let waiting = stt.waiting();
            let lost_ms = stt.abandon();
            if waiting > 0 {
                warn!(
                    "stream {sid}: {waiting} audio chunks ({:.1} s) were not transcribed before \
                     the stream ended",
                    lost_ms as f64 / 1000.0
                );
            }
            let s = stt.stats;
            stt_summary = format!(
                " stt_chunks={} stt_rejected={} stt_dropped_ms={} stt_lost_ms={lost_ms}",
                s.transcribed, s.rejected, s.dropped_ms
            );
        }
        let s = self.outbox.stats;
        info!(
            "stream {sid} closed: sent={} batches={} dropped={} rejected={} left={}{stt_summary}",
            s.sent,
            s.batches,
            s.dropped,
            s.rejected,
            self.outbox.len()
        );
        if self.outbox.is_done() {
            return None;
        }
        let why = match stop {
            Stop::NoTime => {
                "too little of the call's deadline was left (raise [limits] media_deadline_ms)"
            }
            _ => "the sink is failing",
        };
        warn!(
            "stream {sid}: {} segments and the final batch could not be sent before the stream \
             ended ({why}); kept for a later call",
            self.outbox.len()
        );
        Some(self.outbox.clone())
    }
}

/// Logs the start of a run of drops (the count is reported when the sink catches up
/// and in the stream's closing summary).
fn note_drops(stream: &str, pushed: sink::Pushed, settings: &Settings) {
    if pushed.first_drops {
        warn!(
            "stream {stream}: more than max_pending={} segments wait for the sink; dropping \
             the oldest until it catches up",
            settings.max_pending
        );
    }
}

/// Warns once per instance when media calls are too short to ever send a request.
fn warn_if_calls_too_short(settings: &Settings) {
    let Some(left) = config::time_left() else {
        return;
    };
    if left >= settings.min_send || GLOBAL.with_borrow(|g| g.warned_short_calls) {
        return;
    }
    GLOBAL.with_borrow_mut(|g| g.warned_short_calls = true);
    warn!(
        "media calls get only {} ms, less than min_send_ms={}: segments wait for a flush \
         event; raise [limits] media_deadline_ms",
        left.as_millis(),
        settings.min_send.as_millis()
    );
}

/// Sends what ended streams left behind, oldest first, while the call's deadline allows.
/// Outboxes handed over by a previous version that no stream re-claimed are treated as
/// ended too.
fn pump_leftovers() {
    let Some(ctx) = ctx() else {
        return;
    };
    let mut work = GLOBAL.with_borrow_mut(|g| {
        if !g.carried.is_empty() {
            let carried: Vec<_> = g.carried.drain(..).collect();
            g.leftovers.extend(carried);
            bound_leftovers(g, ctx.settings.max_pending);
        }
        std::mem::take(&mut g.leftovers)
    });
    while let Some(outbox) = work.front_mut() {
        let stop = sink::pump(outbox, &ctx.settings, &ctx.redact, true, false);
        if stop != Stop::Idle {
            break;
        }
        let s = outbox.stats;
        info!(
            "stream {}: delivered what was left after it ended: sent={} batches={} dropped={} rejected={}",
            outbox.id.stream_id, s.sent, s.batches, s.dropped, s.rejected
        );
        work.pop_front();
    }
    GLOBAL.with_borrow_mut(|g| {
        work.append(&mut g.leftovers);
        g.leftovers = work;
    });
}

/// Keeps what ended streams left within `max_pending` segments and
/// [`MAX_LEFTOVER_STREAMS`] streams, giving up on the oldest first.
fn bound_leftovers(g: &mut Global, max_pending: usize) {
    while g.leftovers.len() > MAX_LEFTOVER_STREAMS {
        if let Some(mut oldest) = g.leftovers.pop_front() {
            let n = oldest.abandon();
            warn!(
                "stream {}: gave up on its last {n} segments: more than {MAX_LEFTOVER_STREAMS} \
                 ended streams wait for the sink",
                oldest.id.stream_id
            );
        }
    }
    let mut total: usize = g.leftovers.iter().map(Outbox::len).sum();
    for outbox in g.leftovers.iter_mut() {
        if total <= max_pending {
            break;
        }
        let dropped = outbox.drop_oldest(total - max_pending);
        if dropped > 0 {
            total -= dropped;
            warn!(
                "stream {}: dropped its {dropped} oldest unsent segments: more than \
                 max_pending={max_pending} wait for the sink across ended streams",
                outbox.id.stream_id
            );
        }
    }
}

zoomhost_sdk::export_plugin!(TranscriptForwarder);
