//! One media socket: reads frames into the plugins' stream and recovers on its own.
//!
//! A socket recovers when Zoom says its connection was interrupted (the session hands it
//! the event 7 or stream-state 2/14 as [`MediaOrder::Interrupted`]), and, as a fallback,
//! when it closes or drops and no such word came within the grace period. Either way it
//! drops the old connection, waits its backoff delay, re-handshakes against the same URL
//! (within the media window, 65 s), and acknowledges again on signaling
//! (`CLIENT_READY_ACK`). A refusal as a duplicate media connection (16) gets one more
//! delayed attempt; any other refusal ends the stream.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use base64::Engine as _;
use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use zoomhost_protocol::rtms::status::{self, Retry};
use zoomhost_protocol::rtms::{control, language, msg};
use zoomhost_types::{AudioFrame, MediaKind, StreamSink, TranscriptSegment, VideoFrame};

use super::dedupe::{Dedupe, Speaker};
use super::handshake::{self, kinds_label, Failure, Who};
use super::recovery::{resume_at, Backoff};
use super::wire::{self, Frame, Ws};
use crate::rtms::protocol::{self, Incoming};
use crate::rtms::{RtmsConfig, RtmsNotice, RtmsStats};

/// When signaling is lost, media sockets deliver what they hold until quiet this long...
const DRAIN_QUIET: Duration = Duration::from_millis(150);
/// ...or at most this long.
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Periods of a media socket's silence timer (each `idle_timeout / SILENT_CHECKS`) that
/// must pass without a message before the socket counts as silent.
const SILENT_CHECKS: u32 = 4;
/// How long a closing media socket is read for what the server sent before its close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Base64 for media data, with AVX2 where the CPU has it (detected once, else the scalar
/// engine): a 640-byte audio frame decodes in about 0.1 µs instead of 0.4 µs.
static BASE64: LazyLock<base64::engine::Simd> =
    LazyLock::new(|| base64::engine::Simd::standard(base64::engine::general_purpose::PAD));

/// What the session asks of all its media sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Keep reading.
    Run,
    /// Close with 1000 (the stream is over).
    Close,
    /// Deliver what is buffered, then drop without a close frame (signaling was lost).
    Drain,
}

/// What the session tells one media socket.
#[derive(Debug, Clone, Copy)]
pub(super) enum MediaOrder {
    /// Zoom reports the socket's connection interrupted (its timestamp, ms): a socket
    /// connected after that instant already recovered and ignores it.
    Interrupted(u64),
}

/// Resolves with the first order other than `Run` (`Close` when the session is gone).
async fn ordered(rx: &mut watch::Receiver<Order>) -> Order {
    match rx.wait_for(|o| *o != Order::Run).await {
        Ok(order) => *order,
        Err(_) => Order::Close,
    }
}

/// What a media socket hears besides its socket.
enum Rare {
    /// An order from the session (`None`: the session is gone).
    Order(Option<MediaOrder>),
    /// The session's order for all sockets.
    Session(Order),
}

/// Polls a media socket's rare inputs (its orders, the session's order) only after they
/// woke the task, not on each of the socket's wake-ups (one per frame): they are polled
/// with a waker of their own that raises a flag before waking the task. At 500 streams,
/// polling the order channel on every wake-up cost about 3% of the host's CPU.
struct RareInputs {
    flag: Arc<RareFlag>,
    waker: Waker,
    /// The task's waker last given to the flag (a tokio task keeps its waker: the flag
    /// is told again only if it changes).
    task: Option<Waker>,
}

/// Raised when a rare input wakes the task.
struct RareFlag {
    raised: AtomicBool,
    task: AtomicWaker,
}

impl Wake for RareFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl RareInputs {
    fn new() -> Self {
        let flag = Arc::new(RareFlag {
            raised: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(flag.clone());
        Self {
            flag,
            waker,
            task: None,
        }
    }

    /// Makes the next [`Self::poll`] poll the inputs (new input futures must be polled
    /// once to register their waker).
    fn rearm(&self) {
        self.flag.raised.store(true, Ordering::Release);
    }

    /// Runs `poll` with the flag's waker if the flag is raised, else stays pending.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            self.flag.task.register(cx.waker());
            self.task = Some(cx.waker().clone());
        }
        if !self.flag.raised.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Lowered before polling: a wake-up during or after the poll raises it again.
        self.flag.raised.store(false, Ordering::Release);
        let result = poll(&mut Context::from_waker(&self.waker));
        if result.is_ready() {
            // More may be queued: poll again next time.
            self.rearm();
        }
        result
    }
}

/// One media socket of a session.
pub(super) struct MediaSocket {
    pub kinds: Vec<MediaKind>,
    pub url: String,
    pub stream: Arc<dyn StreamSink>,
    pub dedupe: Arc<Dedupe>,
    pub config: Arc<RtmsConfig>,
    pub stats: Arc<RtmsStats>,
    pub notices: broadcast::Sender<RtmsNotice>,
    pub stream_id: String,
    pub who: Who,
    /// Whether the socket is connected now (the session picks unhealthy sockets for
    /// interruptions that name none).
    pub healthy: Arc<AtomicBool>,
    /// Messages for the signaling socket (`CLIENT_READY_ACK` after a re-handshake).
    pub to_signaling: mpsc::UnboundedSender<Value>,
    /// When the current connection's handshake succeeded (ms since the epoch).
    pub connected_ms: u64,
}

impl MediaSocket {
    fn label(&self) -> String {
        kinds_label(&self.kinds)
    }

    /// Runs until the session ends it, or until it cannot recover (the reason goes to
    /// `end_tx`).
    pub(super) async fn run(
        mut self,
        ws: Ws,
        mut orders: mpsc::UnboundedReceiver<MediaOrder>,
        mut session: watch::Receiver<Order>,
        end_tx: mpsc::Sender<String>,
    ) {
        let mut ws = ws;
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        let mut rare = RareInputs::new();
        loop {
            // Streaming, until the connection is lost or Zoom says it was.
            let (error, signaled) = loop {
                let mut ended = std::pin::pin!(ordered(&mut session));
                // New futures: polled once, then only after they wake the task.
                rare.rearm();
                let input = std::future::poll_fn(|cx| {
                    rare.poll(cx, |cx| match orders.poll_recv(cx) {
                        Poll::Ready(order) => Poll::Ready(Rare::Order(order)),
                        Poll::Pending => ended.as_mut().poll(cx).map(Rare::Session),
                    })
                });
                tokio::select! {
                    biased;
                    error = self.read(&mut ws) => break (error, false),
                    input = input => match input {
                        Rare::Order(Some(MediaOrder::Interrupted(at))) if at >= self.connected_ms => {
                            break ("Zoom reported the media connection interrupted".to_string(), true)
                        }
                        Rare::Order(Some(MediaOrder::Interrupted(_))) => {
                            tracing::debug!(stream = %self.stream_id, socket = %self.label(), "media interruption from before this connection: ignored");
                        }
                        Rare::Order(None) => return,
                        Rare::Session(order) => {
                            match order {
                                Order::Drain => self.deliver_rest(&mut ws, DRAIN_QUIET, DRAIN_MAX).await,
                                _ => self.close_and_drain(&mut ws).await,
                            }
                            return;
                        }
                    },
                }
            };
            self.healthy.store(false, Ordering::Relaxed);
            if signaled {
                // Zoom's word on signaling may overtake what the socket still holds:
                // deliver that first (Zoom resumes after what it wrote).
                self.deliver_rest(&mut ws, DRAIN_QUIET, DRAIN_MAX).await;
            }
            // The old connection goes now: two media connections for one socket would
            // be refused as a duplicate.
            drop(ws);
            ws = match self
                .recover(error, signaled, &mut backoff, &mut orders, &mut session)
                .await
            {
                Ok(ws) => ws,
                Err(Some(error)) => {
                    let _ = end_tx.send(error).await;
                    return;
                }
                Err(None) => return,
            };
            backoff.reset();
            self.connected_ms = wire::now_ms();
            self.healthy.store(true, Ordering::Relaxed);
            let _ = self.to_signaling.send(control::ready_ack(&self.stream_id));
            tracing::info!(stream = %self.stream_id, socket = %self.label(), "RTMS media resumed");
        }
    }

    /// Waits for the moment to re-handshake and re-handshakes, within the media window.
    /// `Err(None)`: the session ended meanwhile; `Err(Some(why))`: given up.
    async fn recover(
        &self,
        mut error: String,
        mut signaled: bool,
        backoff: &mut Backoff,
        orders: &mut mpsc::UnboundedReceiver<MediaOrder>,
        session: &mut watch::Receiver<Order>,
    ) -> Result<Ws, Option<String>> {
        let config = &self.config;
        let lost_at = Instant::now();
        if signaled {
            RtmsStats::bump(&self.stats.media_interruptions);
        }
        let mut first = true;
        let mut retried_duplicate = false;
        loop {
            let delay = backoff.next_delay();
            let mut at = if first {
                resume_at(lost_at, delay, signaled, config.close_grace)
            } else {
                Instant::now() + delay
            };
            if signaled || !first {
                self.reconnecting(&error, at);
            } else {
                // A bare close is often the stream's end overtaking its TERMINATED:
                // nothing is reported until the grace period passes without Zoom's word.
                tracing::debug!(stream = %self.stream_id, socket = %self.label(), "RTMS media closed ({error}); waiting up to {:?} for Zoom's word", config.close_grace);
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => break,
                    order = orders.recv() => match order {
                        Some(MediaOrder::Interrupted(_)) => {
                            if !signaled {
                                signaled = true;
                                RtmsStats::bump(&self.stats.media_interruptions);
                                if first {
                                    at = resume_at(lost_at, delay, true, config.close_grace);
                                    self.reconnecting(&error, at);
                                }
                            }
                        }
                        None => return Err(None),
                    },
                    _ = ordered(session) => return Err(None),
                }
            }
            if first && !signaled {
                RtmsStats::bump(&self.stats.close_fallbacks);
                tracing::warn!(stream = %self.stream_id, socket = %self.label(), "no word from Zoom within {:?} of the media socket's loss: re-handshaking on the close alone", config.close_grace);
                self.reconnecting(&error, Instant::now());
            }
            first = false;
            if lost_at.elapsed() >= config.media_resume_window {
                return Err(Some(format!(
                    "media socket ({}) could not resume within {:?}: {error}",
                    self.label(),
                    config.media_resume_window
                )));
            }
            let attempt = handshake::media(config, &self.who, &self.kinds, &self.url);
            let result = tokio::select! {
                r = attempt => r,
                _ = ordered(session) => return Err(None),
            };
            match result {
                Ok((ws, _)) => return Ok(ws),
                Err(Failure::Lost(e)) => error = e,
                Err(Failure::Refused(Some(code), text))
                    if status::retry(code) == Retry::OnceAfterMediaDrop && !retried_duplicate =>
                {
                    // The server may still hold the old connection: once more, later.
                    retried_duplicate = true;
                    RtmsStats::bump(&self.stats.status16_retries);
                    error = text;
                }
                Err(Failure::Refused(_, text)) => return Err(Some(text)),
            }
        }
    }

    /// Logs, counts and announces a re-handshake of this socket due at `at`.
    fn reconnecting(&self, error: &str, at: Instant) {
        let delay = at.saturating_duration_since(Instant::now());
        tracing::warn!(stream = %self.stream_id, socket = %self.label(), "RTMS media lost ({error}); re-handshaking in {delay:?}");
        RtmsStats::bump(&self.stats.reconnects);
        let _ = self.notices.send(RtmsNotice::Reconnecting {
            stream_id: self.stream_id.clone(),
            socket: self.label(),
            delay,
            error: error.to_string(),
        });
    }

    /// Sends close 1000, then keeps delivering what the server sent before it saw the
    /// close, until its close frame arrives (bounded).
    async fn close_and_drain(&self, ws: &mut Ws) {
        if wire::send_close(ws).await.is_ok() {
            self.deliver_rest(ws, CLOSE_WAIT, CLOSE_WAIT).await;
        }
    }

    /// Delivers what the socket holds until it has been quiet for `quiet`, closes, or
    /// `max` passes; media keeps flowing to the plugins, keep-alives are not answered.
    async fn deliver_rest(&self, ws: &mut Ws, quiet: Duration, max: Duration) {
        let until = Instant::now() + max;
        while let Ok(Some(Ok(message))) = tokio::time::timeout(
            quiet.min(until.saturating_duration_since(Instant::now())),
            ws.next(),
        )
        .await
        {
            let bytes = match wire::frame(&message) {
                Frame::Data(bytes) => bytes,
                Frame::Close(_) => return,
                Frame::Other => continue,
            };
            if let Ok(incoming) = protocol::parse(bytes) {
                if incoming.msg_type != msg::KEEP_ALIVE_REQ {
                    self.on_data(incoming);
                }
            }
        }
    }

    /// Reads until the connection ends; returns why.
    ///
    /// The socket counts as silent once no message came for [`SILENT_CHECKS`] whole
    /// periods of its silence timer, each a quarter of `idle_timeout`. The timer is not
    /// re-armed per message (reading the clock per message cost more than a tenth of the
    /// read path): messages only mark the period they came in. So a silent socket is
    /// given up between `idle` and `1.25 * idle` after its last message, well inside
    /// Zoom's media window (65 s) with the default 35 s.
    async fn read(&self, ws: &mut Ws) -> String {
        let idle = self.config.idle_timeout;
        let period = idle / SILENT_CHECKS;
        let mut heard = false;
        let mut silent = 0;
        let silence = tokio::time::sleep(period);
        tokio::pin!(silence);
        loop {
            let next = tokio::select! {
                biased;
                next = ws.next() => next,
                () = &mut silence => {
                    silent = if std::mem::take(&mut heard) { 0 } else { silent + 1 };
                    if silent >= SILENT_CHECKS {
                        return format!("silent for {idle:?}");
                    }
                    silence.as_mut().reset(Instant::now() + period);
                    continue;
                }
            };
            heard = true;
            let message = match next {
                None => return "connection dropped".into(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(m)) => m,
            };
            let bytes = match wire::frame(&message) {
                Frame::Data(bytes) => bytes,
                Frame::Close(f) => {
                    return format!(
                        "the server closed the {} media socket{}",
                        self.label(),
                        wire::close_text(f)
                    )
                }
                Frame::Other => continue,
            };
            let incoming = match protocol::parse(bytes) {
                Ok(m) => m,
                Err(e) => {
                    RtmsStats::bump(&self.stats.malformed);
                    tracing::warn!(stream = %self.stream_id, "skipping a malformed media message: {e}");
                    continue;
                }
            };
            if incoming.msg_type == msg::KEEP_ALIVE_REQ {
                let reply = protocol::keep_alive_response(&incoming);
                if let Err(e) = wire::send(ws, &reply, self.config.binary_frames).await {
                    return e;
                }
                RtmsStats::bump(&self.stats.keepalives);
                continue;
            }
            self.on_data(incoming);
        }
    }

    fn on_data(&self, incoming: Incoming<'_>) {
        let kind = match incoming.msg_type {
            msg::MEDIA_DATA_AUDIO => MediaKind::Audio,
            msg::MEDIA_DATA_VIDEO => MediaKind::Video,
            msg::MEDIA_DATA_SHARE => MediaKind::Share,
            msg::MEDIA_DATA_TRANSCRIPT => MediaKind::Transcript,
            msg::MEDIA_DATA_CHAT => MediaKind::Chat,
            other => {
                tracing::debug!(stream = %self.stream_id, msg_type = other, "RTMS media message ignored");
                return;
            }
        };
        if !self.stream.wants(kind) {
            RtmsStats::bump(&self.stats.unsubscribed);
            return;
        }
        let Some(content) = incoming.content else {
            RtmsStats::bump(&self.stats.malformed);
            return;
        };
        let user_id = content.user_id.unwrap_or(0) as u32;
        let user_name = content
            .user_name
            .map(|n| n.into_owned())
            .unwrap_or_default();
        let timestamp = content.timestamp.or(content.start_time).unwrap_or(0);
        let data = content.data.unwrap_or_default();
        let binary = matches!(kind, MediaKind::Audio | MediaKind::Video | MediaKind::Share);
        let bytes = if binary {
            match BASE64.decode(data.as_bytes()) {
                Ok(b) => b,
                Err(e) => {
                    RtmsStats::bump(&self.stats.malformed);
                    tracing::warn!(stream = %self.stream_id, "skipping {} data that is not base64: {e}", protocol::url_key(kind));
                    return;
                }
            }
        } else {
            Vec::new()
        };
        // A channel id is text, borrowed from the message (any other JSON value as its text).
        let channel = content.channel_id.as_ref().map(wire::value_text);
        let speaker = match &channel {
            Some(channel) => Speaker::Channel(channel),
            None => Speaker::User(user_id),
        };
        let ts = content.timestamp.or(content.start_time);
        let fresh = if binary {
            self.dedupe.accept(kind, speaker, ts, &bytes)
        } else {
            self.dedupe.accept(kind, speaker, ts, data.as_bytes())
        };
        if !fresh {
            RtmsStats::bump(&self.stats.duplicates);
            return;
        }
        RtmsStats::bump(&self.stats.frames);
        match kind {
            MediaKind::Audio => self.stream.audio(AudioFrame {
                user_id,
                user_name,
                timestamp,
                data: bytes.into(),
            }),
            MediaKind::Video | MediaKind::Share => {
                let frame = VideoFrame {
                    user_id,
                    user_name,
                    timestamp,
                    data: bytes.into(),
                };
                if kind == MediaKind::Video {
                    self.stream.video(frame)
                } else {
                    self.stream.share(frame)
                }
            }
            MediaKind::Transcript => self.stream.transcript(TranscriptSegment {
                user_id,
                user_name,
                timestamp: content.start_time.unwrap_or(timestamp),
                end_timestamp: content.end_time,
                text: data.into_owned(),
                // Zoom's language number as its tag (9 is "en"); text passes through.
                language: content.language.as_ref().and_then(language::text_of),
            }),
            MediaKind::Chat => self
                .stream
                .chat(protocol::chat_message(&data, user_id, user_name, timestamp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its wake-ups.
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn media_base64_decodes_as_the_standard_engine_does() {
        let standard = base64::engine::general_purpose::STANDARD;
        for len in [0, 1, 2, 3, 47, 48, 64, 100, 640, 1920] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let text = standard.encode(&bytes);
            assert_eq!(BASE64.decode(&text).unwrap(), bytes, "{len} bytes");
            // A bad byte anywhere, in the vector part or the tail, is refused by both.
            for at in [0, text.len() / 2, text.len().saturating_sub(5)] {
                if at < text.len() {
                    let mut bad = text.clone().into_bytes();
                    bad[at] = b'*';
                    assert!(standard.decode(&bad).is_err());
                    assert!(BASE64.decode(&bad).is_err(), "{len} bytes, '*' at {at}");
                }
            }
        }
        // Unpadded text is refused, as by the standard engine.
        assert!(BASE64.decode("QUJD").is_ok());
        assert!(BASE64.decode("QUI").is_err());
        assert!(standard.decode("QUI").is_err());
    }

    #[test]
    fn rare_inputs_are_polled_only_after_they_woke_the_task() {
        let task = Arc::new(Task(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        let mut rare = RareInputs::new();
        let mut polls = 0;
        let mut poll = |rare: &mut RareInputs, cx: &mut Context<'_>| {
            rare.poll(cx, |cx| {
                polls += 1;
                rx.poll_recv(cx)
            })
        };
        // The first poll registers the input; the socket's wake-ups do not poll it.
        assert!(poll(&mut rare, &mut cx).is_pending());
        assert!(poll(&mut rare, &mut cx).is_pending());
        assert!(poll(&mut rare, &mut cx).is_pending());
        // The input's wake-up reaches the task and gets it polled.
        tx.send(7).unwrap();
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
        assert_eq!(poll(&mut rare, &mut cx), Poll::Ready(Some(7)));
        // After a message it is polled again (more may be queued), then rests.
        tx.send(8).unwrap();
        assert_eq!(poll(&mut rare, &mut cx), Poll::Ready(Some(8)));
        assert!(poll(&mut rare, &mut cx).is_pending());
        assert!(poll(&mut rare, &mut cx).is_pending());
        assert_eq!(polls, 4);
        // New futures after `rearm`: polled at once.
        rare.rearm();
        let mut polled = false;
        let _ = rare.poll(&mut cx, |_| {
            polled = true;
            Poll::<()>::Pending
        });
        assert!(polled);
    }
}
