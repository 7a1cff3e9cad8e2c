//! One RTMS stream, from its first handshake to its end, across Zoom's failures.
//!
//! The stream task runs *sessions*. A session connects signaling (msg 1 → 2, retried
//! when refused as a duplicate, status 8), connects every media socket at once (msg 3 →
//! 4), opens the stream in the plugins with the format the server confirmed (first
//! session only: one plugin session for the stream's whole life), sends the event
//! subscription (5) and CLIENT_READY_ACK (7), then streams ([`signaling`]): signaling in
//! the stream task, each media socket in a task of its own ([`media`]).
//!
//! Zoom's four failure scenarios:
//! 1. **Failover**: the manager hands over a newer `*.rtms_started` with new URLs. The
//!    session drops its sockets and the next one starts at once against the new URLs.
//! 2. **Signaling interrupted** (`*.rtms_interrupted`): the session drops its sockets
//!    and the next starts after the backoff delay, with the saved URLs.
//! 3. **Media interrupted** (event 7, or stream state INTERRUPTED with reason 14): only
//!    the sockets concerned re-handshake, then acknowledge again on signaling.
//! 4. **Stopped for a connection failure** (stop reasons 10 to 19 and 24, on
//!    `*.rtms_stopped` or TERMINATED): the stream ends as failed, named and counted.
//!
//! A socket that closes or drops without a word from Zoom waits the grace period for one
//! (`close_grace`), then recovers anyway. Signaling is re-handshaken within the
//! signaling window (60 s), media within the media window (65 s), with delays from
//! 3 s doubling to 30 s, back to 3 s after every successful handshake. One stream never
//! holds two signaling sockets: a session's sockets are gone before the next connects.
//! Frames are delivered once and in order across all of it ([`dedupe`]).
//!
//! A plugin's close request sends STREAM_CLOSE_REQ (21) and the stream ends with Zoom's
//! TERMINATED (reason 20); host shutdown only closes the sockets. A hand-over (a cluster
//! worker giving the meeting's partition to another node) delivers what the media
//! sockets already hold, then drops every socket without a close frame, as a lost
//! connection would: the next owner resumes the stream on the saved URLs (scenario 2).

mod dedupe;
mod handshake;
mod media;
mod recovery;
mod signaling;
mod wire;

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use zoomhost_types::{AudioFormat, InputSink, MediaKind, StreamInfo, StreamSink};

use super::{Request, RtmsConfig, RtmsNotice, RtmsStats, StopCause, StreamStart};
pub(crate) use dedupe::Dedupe;
pub use dedupe::Progress;
use handshake::{Failure, Who};
pub(crate) use recovery::Outcome;
use recovery::{resume_at, stop_outcome, Backoff};
use wire::Ws;

/// Everything a stream task needs.
pub(super) struct StreamCtx {
    pub start: StreamStart,
    pub config: Arc<RtmsConfig>,
    pub sink: Arc<dyn InputSink>,
    pub stats: Arc<RtmsStats>,
    pub stop: watch::Receiver<Option<StopCause>>,
    pub notices: broadcast::Sender<RtmsNotice>,
    /// What was delivered so far (restored when the stream is resumed from saved state).
    pub dedupe: Arc<Dedupe>,
}

impl StreamCtx {
    fn notice(&self, notice: RtmsNotice) {
        let _ = self.notices.send(notice);
    }

    /// The end a stop asks for, when one was asked for; connection-failure stop reasons
    /// are counted.
    fn stopped(&self) -> Option<Outcome> {
        let cause = self.stop.borrow().clone();
        let Some(cause) = cause else {
            // The manager is gone: nobody can stop the stream any more.
            return self
                .stop
                .has_changed()
                .is_err()
                .then(|| Outcome::Closed("the RTMS client was dropped".into()));
        };
        Some(match cause {
            StopCause::Event(reason) => self.stop_reason_outcome("rtms_stopped", Some(reason)),
            StopCause::Shutdown => Outcome::Closed("host shutdown".into()),
            StopCause::Handover => Outcome::HandedOver,
        })
    }

    /// [`stop_outcome`], counting connection failures.
    fn stop_reason_outcome(&self, what: &str, reason: Option<i64>) -> Outcome {
        let outcome = stop_outcome(what, reason);
        if let (Outcome::Failed(_), Some(r)) = (&outcome, reason) {
            self.stats.failed_stop(r);
        }
        outcome
    }
}

/// What lasts the stream's whole life, across sessions.
struct Life {
    /// The latest start (its URLs change on failover).
    start: StreamStart,
    /// The stream in the plugins: opened by the first session, closed at the end.
    media: Option<Arc<dyn StreamSink>>,
    dedupe: Arc<Dedupe>,
    backoff: Backoff,
    requests: mpsc::UnboundedReceiver<Request>,
    requests_open: bool,
    /// A plugin asked for the stream's end: STREAM_CLOSE_REQ goes out (again) on the
    /// next session.
    close_requested: bool,
    /// The plugins' video subscription, sent again on every session.
    video: Option<(u32, bool)>,
}

impl Life {
    /// Applies a request that does not end a session.
    fn keep(&mut self, request: Request) {
        match request {
            Request::Close => self.close_requested = true,
            Request::SubscribeVideo { user_id, subscribe } => {
                self.video = Some((user_id, subscribe))
            }
            Request::Failover(_) | Request::Interrupted(_) => {}
        }
    }
}

/// How a session ended.
enum End {
    /// The stream is over.
    Over(Outcome),
    /// The connection was lost; a new session may resume the stream.
    Lost {
        /// What happened.
        error: String,
        /// Zoom's word on it, if any came.
        signal: Option<Signal>,
    },
}

/// Zoom's word on a loss.
enum Signal {
    /// `*.rtms_interrupted`.
    Interrupted,
    /// `*.rtms_started` again: the stream moved to these URLs.
    Failover(StreamStart),
}

/// Runs the stream to its end and closes it in the plugins; returns how it ended.
pub(super) async fn run(ctx: StreamCtx, requests: mpsc::UnboundedReceiver<Request>) -> Outcome {
    let id = ctx.start.stream_id.clone();
    let mut life = Life {
        start: ctx.start.clone(),
        media: None,
        dedupe: ctx.dedupe.clone(),
        backoff: Backoff::new(ctx.config.reconnect_min, ctx.config.reconnect_max),
        requests,
        requests_open: true,
        close_requested: false,
        video: None,
    };
    let mut lost_since: Option<Instant> = None;
    let outcome = loop {
        let (end, streamed) = session(&ctx, &mut life).await;
        if streamed {
            lost_since = None;
        }
        let (error, signal) = match end {
            End::Over(outcome) => break outcome,
            End::Lost { error, signal } => (error, signal),
        };
        let since = *lost_since.get_or_insert_with(Instant::now);
        if let Some(outcome) = wait_to_resume(&ctx, &mut life, error, signal, since).await {
            break outcome;
        }
    };
    // Every socket task has ended: this is the last handle, and dropping it closes the
    // stream in the plugins after everything already pushed.
    drop(life.media.take());
    match &outcome {
        Outcome::Closed(why) => {
            tracing::info!(stream = %id, "RTMS stream ended: {why}");
            RtmsStats::bump(&ctx.stats.stopped);
            ctx.notice(RtmsNotice::Closed {
                stream_id: id,
                reason: why.clone(),
            });
        }
        Outcome::HandedOver => {
            tracing::info!(stream = %id, "RTMS stream handed over: sockets dropped, the stream stays resumable for the next owner");
            ctx.notice(RtmsNotice::Closed {
                stream_id: id,
                reason: "handed over to another node".into(),
            });
        }
        Outcome::Failed(error) => {
            tracing::error!(stream = %id, meeting = %ctx.start.meeting_uuid, "RTMS stream failed: {error}");
            RtmsStats::bump(&ctx.stats.failed);
            ctx.notice(RtmsNotice::Failed {
                stream_id: id,
                error: error.clone(),
            });
        }
    }
    outcome
}

/// After a lost session: waits until the next may start (at once on failover; after
/// the backoff delay when Zoom said the stream was interrupted; not before the grace
/// period for Zoom's word when only the socket closed), within the signaling window.
/// Returns the stream's end when it must not resume.
async fn wait_to_resume(
    ctx: &StreamCtx,
    life: &mut Life,
    error: String,
    signal: Option<Signal>,
    since: Instant,
) -> Option<Outcome> {
    let id = &ctx.start.stream_id;
    let lost_at = Instant::now();
    let mut signaled = false;
    match signal {
        Some(Signal::Failover(start)) => return failover(ctx, life, start, &error),
        Some(Signal::Interrupted) => signaled = true,
        None => {}
    }
    let delay = life.backoff.next_delay();
    let mut at = resume_at(lost_at, delay, signaled, ctx.config.close_grace);
    if signaled {
        reconnecting(ctx, &error, at);
    } else {
        // A bare close is often the stream's end overtaking its TERMINATED: nothing is
        // reported until the grace period passes without Zoom's word.
        tracing::debug!(stream = %id, "RTMS signaling closed ({error}); waiting up to {:?} for Zoom's word", ctx.config.close_grace);
    }
    let mut stop = ctx.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => break,
            request = life.requests.recv(), if life.requests_open => match request {
                None => life.requests_open = false,
                Some(Request::Failover(start)) => return failover(ctx, life, start, &error),
                Some(Request::Interrupted(_)) => {
                    if !signaled {
                        signaled = true;
                        RtmsStats::bump(&ctx.stats.interruptions);
                        at = resume_at(lost_at, delay, true, ctx.config.close_grace);
                        reconnecting(ctx, &error, at);
                    }
                }
                Some(other) => life.keep(other),
            },
            _ = stop_asked(&mut stop) => return ctx.stopped(),
        }
    }
    if !signaled {
        RtmsStats::bump(&ctx.stats.close_fallbacks);
        tracing::warn!(stream = %id, "no word from Zoom within {:?} of losing signaling: re-handshaking on the close alone", ctx.config.close_grace);
        reconnecting(ctx, &error, Instant::now());
    }
    if since.elapsed() >= ctx.config.resume_window {
        return Some(Outcome::Failed(format!(
            "could not resume within {:?}: {error}",
            ctx.config.resume_window
        )));
    }
    None
}

/// Logs, counts and announces a signaling re-handshake due at `at`.
fn reconnecting(ctx: &StreamCtx, error: &str, at: Instant) {
    let wait = at.saturating_duration_since(Instant::now());
    tracing::warn!(stream = %ctx.start.stream_id, "RTMS signaling lost ({error}); re-handshaking in {wait:?}");
    RtmsStats::bump(&ctx.stats.reconnects);
    ctx.notice(RtmsNotice::Reconnecting {
        stream_id: ctx.start.stream_id.clone(),
        socket: "signaling".into(),
        delay: wait,
        error: error.to_string(),
    });
}

/// Scenario 1: the next session starts at once against the new URLs.
fn failover(ctx: &StreamCtx, life: &mut Life, start: StreamStart, error: &str) -> Option<Outcome> {
    tracing::warn!(stream = %ctx.start.stream_id, "RTMS failover ({error}): re-handshaking at once with {:?}", start.server_urls);
    ctx.notice(RtmsNotice::Reconnecting {
        stream_id: ctx.start.stream_id.clone(),
        socket: "signaling (failover)".into(),
        delay: std::time::Duration::ZERO,
        error: error.to_string(),
    });
    life.start = start;
    life.backoff.reset();
    None
}

/// Media sockets whose handshakes succeeded: the kinds each carries, its URL, the socket.
type MediaSockets = Vec<(Vec<MediaKind>, String, Ws)>;

/// One session: the handshakes (interrupted by Zoom's signals and stops), the stream
/// opened in the plugins (first session only), then streaming until the session ends.
/// Returns how it ended and whether it got to streaming.
async fn session(ctx: &StreamCtx, life: &mut Life) -> (End, bool) {
    if let Some(outcome) = ctx.stopped() {
        return (End::Over(outcome), false);
    }
    let who = Who::new(&ctx.config, &life.start);
    let attempt_ms = wire::now_ms();
    let start = life.start.clone();
    let setup = connect(ctx, &start, &who);
    tokio::pin!(setup);
    let mut stop = ctx.stop.clone();
    let (sig, sockets, format) = loop {
        tokio::select! {
            result = &mut setup => match result {
                Ok(connected) => break connected,
                Err(Failure::Lost(error)) => return (End::Lost { error, signal: None }, false),
                Err(Failure::Refused(_, error)) => return (End::Over(Outcome::Failed(error)), false),
            },
            request = life.requests.recv(), if life.requests_open => match request {
                None => life.requests_open = false,
                Some(Request::Failover(start)) => {
                    let error = "Zoom moved the stream during the handshakes".to_string();
                    return (End::Lost { error, signal: Some(Signal::Failover(start)) }, false);
                }
                Some(Request::Interrupted(at)) if at >= attempt_ms => {
                    RtmsStats::bump(&ctx.stats.interruptions);
                    let error = "Zoom reported the stream interrupted during the handshakes".to_string();
                    return (End::Lost { error, signal: Some(Signal::Interrupted) }, false);
                }
                Some(Request::Interrupted(_)) => {
                    tracing::debug!(stream = %start.stream_id, "rtms_interrupted from before this attempt: ignored");
                }
                Some(other) => life.keep(other),
            },
            _ = stop_asked(&mut stop) => {
                let outcome = ctx.stopped().unwrap_or(Outcome::Closed("stopped".into()));
                return (End::Over(outcome), false);
            }
        }
    };
    life.backoff.reset();
    let stream = open_stream(ctx, life, format);
    let end = signaling::stream(ctx, life, sig, stream, sockets, who.clone(), attempt_ms).await;
    (end, true)
}

/// The signaling handshake, then every media handshake at once. A refused media
/// handshake closes every socket; a lost one drops them (the stream stays resumable).
/// Media refused as a duplicate (16: the server still holds the previous connection) is
/// tried once more after a delay.
async fn connect(
    ctx: &StreamCtx,
    start: &StreamStart,
    who: &Who,
) -> Result<(Ws, MediaSockets, Option<AudioFormat>), Failure> {
    let config = &ctx.config;
    let (mut sig, plan) = handshake::signaling(config, &ctx.stats, start, who).await?;
    let shake = |kinds: Vec<MediaKind>, url: String| async move {
        let first = handshake::media(config, who, &kinds, &url).await;
        let result = match first {
            Err(Failure::Refused(Some(code), _))
                if zoomhost_protocol::rtms::status::retry(code)
                    == zoomhost_protocol::rtms::status::Retry::OnceAfterMediaDrop =>
            {
                RtmsStats::bump(&ctx.stats.status16_retries);
                tokio::time::sleep(config.duplicate_retry).await;
                handshake::media(config, who, &kinds, &url).await
            }
            other => other,
        };
        (kinds, url, result)
    };
    let results = futures_util::future::join_all(plan.into_iter().map(|(k, u)| shake(k, u))).await;
    let mut sockets = Vec::new();
    let mut format: Option<AudioFormat> = None;
    let mut failure: Option<Failure> = None;
    for (kinds, url, result) in results {
        match result {
            Ok((ws, confirmed)) => {
                if kinds.contains(&MediaKind::Audio) {
                    format = Some(confirmed);
                }
                sockets.push((kinds, url, ws));
            }
            Err(e) => {
                if !matches!(failure, Some(Failure::Refused(..))) {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(failure) = failure {
        if matches!(failure, Failure::Refused(..)) {
            for (_, _, ws) in &mut sockets {
                wire::close(ws).await;
            }
            wire::close(&mut sig).await;
        }
        return Err(failure);
    }
    Ok((sig, sockets, format))
}

/// The stream in the plugins: opened once, by the first session, with the confirmed
/// format; later sessions (after any recovery) reuse it.
fn open_stream(
    ctx: &StreamCtx,
    life: &mut Life,
    format: Option<AudioFormat>,
) -> Arc<dyn StreamSink> {
    if let Some(stream) = &life.media {
        return stream.clone();
    }
    let requested = &ctx.config.audio;
    let audio = format.unwrap_or_else(|| requested.format());
    if audio != requested.format() {
        tracing::info!(
            stream = %ctx.start.stream_id,
            "server confirmed a different audio format than requested: {:?} {} Hz, {} ch, {} ms",
            audio.codec, audio.sample_rate, audio.channels, audio.frame_ms
        );
    }
    let info = StreamInfo {
        stream_id: ctx.start.stream_id.clone(),
        meeting_id: ctx.start.meeting_uuid.clone(),
        kind: ctx.start.kind,
        media: ctx.config.media.clone(),
        audio,
    };
    let opened: Arc<dyn StreamSink> = Arc::from(ctx.sink.open_stream(info));
    tracing::info!(
        stream = %ctx.start.stream_id,
        meeting = %ctx.start.meeting_uuid,
        plugins = ?opened.consumers(),
        "RTMS stream open: {} Hz, {} ch, {} ms frames",
        audio.sample_rate, audio.channels, audio.frame_ms
    );
    RtmsStats::bump(&ctx.stats.opened);
    ctx.notice(RtmsNotice::Opened {
        stream_id: ctx.start.stream_id.clone(),
        meeting_id: ctx.start.meeting_uuid.clone(),
        plugins: opened.consumers(),
        format: (audio.sample_rate, audio.channels, audio.frame_ms),
    });
    life.media = Some(opened.clone());
    opened
}

/// Resolves once a stop was asked for, or the manager is gone.
async fn stop_asked(stop: &mut watch::Receiver<Option<StopCause>>) {
    let _ = stop.wait_for(Option::is_some).await;
}
