//! One RTMS stream: signaling and media sockets, from handshake to a clean stop.
//!
//! The stream task runs *sessions*. A session connects signaling (msg 1 → 2), connects
//! every media socket at once (msg 3 → 4), opens the media stream in the router with the
//! format the server confirmed (first session only), sends CLIENT_READY_ACK (7) and the
//! event subscription (5), then reads: signaling in the stream task, each media socket in
//! a task of its own that answers keep-alives immediately and pushes frames straight into
//! the router.
//!
//! A media socket that drops without a close frame re-handshakes on its own, with growing
//! delays, while signaling and the other sockets carry on. A lost signaling socket ends
//! the session (media sockets are dropped, not closed, so the stream stays resumable) and
//! a new one starts with growing delays, within the resume window. Frames a server sends
//! again after a resume are recognised (per kind and user: an older timestamp, or the
//! same timestamp and content) and not delivered twice.
//!
//! A close frame from the server, a TERMINATED stream state, `*.rtms_stopped` or host
//! shutdown ends the stream: every socket is closed with 1000 and the plugins' sessions
//! are closed. A non-zero `status_code` gives the stream up, reported with its number.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::protocol::{self, Incoming};
use super::{RtmsConfig, RtmsNotice, RtmsStats, StopCause, StreamStart};
use zoomhost_protocol::rtms::media::key;
use zoomhost_protocol::rtms::msg::{self, event_type};
use zoomhost_protocol::rtms::states::{stop_reason, stream_state};
use zoomhost_protocol::rtms::{control, handshake, status};
use zoomhost_types::{
    AudioFormat, AudioFrame, ChatMessage, MediaKind, Participant, StreamInfo, StreamState,
    TranscriptSegment, VideoFrame,
};
use zoomhost_types::{InputSink, StreamSink};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// When signaling is lost, media sockets deliver what they hold until quiet this long...
const DRAIN_QUIET: Duration = Duration::from_millis(150);
/// ...or at most this long.
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// Read buffer of every RTMS socket (bigger messages are still read, in more steps).
const READ_BUFFER: usize = 16 * 1024;

/// How long a closing media socket is read for what the server sent before its close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long signaling is still read after the server closed a media socket.
const SIGNALING_GRACE: Duration = Duration::from_secs(1);

/// Why a session or a socket ended.
#[derive(Debug)]
enum End {
    /// The stream is over (stop event, TERMINATED, server close frame, shutdown).
    Stopped(String),
    /// The connection was lost; a new handshake may resume the stream.
    Lost(String),
    /// The server refused us or answered nonsense: give the stream up.
    Fatal(String),
}

/// Everything a stream task needs.
pub(super) struct StreamCtx {
    pub start: StreamStart,
    pub config: Arc<RtmsConfig>,
    pub sink: Arc<dyn InputSink>,
    pub stats: Arc<RtmsStats>,
    pub stop: watch::Receiver<Option<StopCause>>,
    pub notices: tokio::sync::broadcast::Sender<RtmsNotice>,
}

impl StreamCtx {
    fn signature(&self) -> String {
        handshake::signature(
            &self.config.client_id,
            self.config.client_secret.expose(),
            &self.start.meeting_uuid,
            &self.start.stream_id,
        )
    }

    fn notice(&self, notice: RtmsNotice) {
        let _ = self.notices.send(notice);
    }

    fn stop_cause(&self) -> Option<StopCause> {
        self.stop.borrow().clone()
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.config.reconnect_min)
            .with_max_delay(self.config.reconnect_max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }
}

/// Sequence numbers of handshakes: new for every attempt.
fn next_sequence() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = rand::random::<u32>() as u64;
    base.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Runs the stream to its end and closes it in the plugins.
pub(super) async fn run(ctx: StreamCtx) {
    let id = ctx.start.stream_id.clone();
    let dedupe = Arc::new(Dedupe::default());
    let mut media: Option<Arc<dyn StreamSink>> = None;
    let mut backoff = ctx.backoff();
    let mut lost_since: Option<Instant> = None;
    let outcome = loop {
        let (end, streamed) = session(&ctx, &mut media, &dedupe).await;
        match end {
            End::Stopped(why) => break Ok(why),
            End::Fatal(error) => break Err(error),
            End::Lost(error) => {
                if streamed {
                    backoff = ctx.backoff();
                    lost_since = None;
                }
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ctx.config.resume_window {
                    break Err(format!(
                        "could not resume within {:?}: {error}",
                        ctx.config.resume_window
                    ));
                }
                let delay = backoff.next().unwrap_or(ctx.config.reconnect_max);
                tracing::warn!(stream = %id, "RTMS signaling lost ({error}); re-handshaking in {delay:?}");
                ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                ctx.notice(RtmsNotice::Reconnecting {
                    stream_id: id.clone(),
                    socket: "signaling".into(),
                    delay,
                    error,
                });
                let mut stop = ctx.stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(Option::is_some) => {
                        break Ok(stop_text(ctx.stop_cause()));
                    }
                }
            }
        }
    };
    // Every socket task has ended: this is the last handle, and dropping it closes the
    // stream in the plugins after everything already pushed.
    drop(media);
    match outcome {
        Ok(why) => {
            tracing::info!(stream = %id, "RTMS stream ended: {why}");
            ctx.stats.stopped.fetch_add(1, Ordering::Relaxed);
            ctx.notice(RtmsNotice::Closed {
                stream_id: id,
                reason: why,
            });
        }
        Err(error) => {
            tracing::error!(stream = %id, meeting = %ctx.start.meeting_uuid, "RTMS stream given up: {error}");
            ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
            ctx.notice(RtmsNotice::Failed {
                stream_id: id,
                error,
            });
        }
    }
}

fn stop_text(cause: Option<StopCause>) -> String {
    match cause {
        Some(StopCause::Event(reason)) => format!(
            "rtms_stopped (stop_reason {reason}: {})",
            stop_reason::name(reason)
        ),
        Some(StopCause::Shutdown) | None => "host shutdown".into(),
    }
}

/// Media sockets whose handshakes succeeded: the kinds each carries, its URL, the socket.
type MediaSockets = Vec<(Vec<MediaKind>, String, Ws)>;

/// One session: the signaling handshake, the media handshakes, the stream opened in the
/// plugins (first session only), the ready acknowledgement, then streaming until the
/// session ends. Returns how it ended and whether media got flowing.
async fn session(
    ctx: &StreamCtx,
    media: &mut Option<Arc<dyn StreamSink>>,
    dedupe: &Arc<Dedupe>,
) -> (End, bool) {
    if ctx.stop_cause().is_some() {
        return (End::Stopped(stop_text(ctx.stop_cause())), false);
    }
    let signature = ctx.signature();
    let (mut sig, plan) = match signaling_handshake(ctx, &signature).await {
        Ok(ok) => ok,
        Err(end) => return (end, false),
    };
    let (sockets, format) = match media_handshakes(ctx, &signature, plan, &mut sig).await {
        Ok(ok) => ok,
        Err(end) => return (end, false),
    };
    let stream = open_stream(ctx, media, format);
    if let Err(end) = send_ready(ctx, &mut sig).await {
        return (end, false);
    }
    let end = stream_media(ctx, &mut sig, stream, sockets, dedupe, &signature).await;
    (end, true)
}

/// Connects signaling (trying each URL in turn), shakes hands, and plans the media
/// sockets from the reply. A refusal closes the socket.
async fn signaling_handshake(
    ctx: &StreamCtx,
    signature: &str,
) -> Result<(Ws, Vec<(Vec<MediaKind>, String)>), End> {
    let binary = ctx.config.binary_frames;
    let (mut sig, url) = connect_any(&ctx.start.server_urls, ctx.config.connect_timeout)
        .await
        .map_err(End::Lost)?;
    let hello = handshake::signaling_request(
        next_sequence(),
        &ctx.start.meeting_uuid,
        &ctx.start.stream_id,
        signature,
        protocol::CLIENT_AGENT,
    );
    if let Err(e) = send(&mut sig, &hello, binary).await {
        return Err(End::Lost(format!("signaling {url}: {e}")));
    }
    let limit = ctx.config.connect_timeout;
    let reply = match await_reply(&mut sig, msg::SIGNALING_HAND_SHAKE_RESP, limit, binary).await {
        Ok(r) => r,
        Err(End::Fatal(e)) => {
            close(&mut sig).await;
            return Err(End::Fatal(format!("signaling handshake: {e}")));
        }
        Err(e) => return Err(e),
    };
    if let Some(code) = reply.status_code.filter(|c| *c != 0) {
        close(&mut sig).await;
        return Err(End::Fatal(format!(
            "signaling handshake refused: {}",
            status::describe(code, reply.reason.as_deref())
        )));
    }
    match plan_media(reply.media_server.as_ref(), &ctx.config) {
        Ok(plan) => Ok((sig, plan)),
        Err(e) => {
            close(&mut sig).await;
            Err(End::Fatal(e))
        }
    }
}

/// Runs every media handshake at once; returns the sockets and the audio format the
/// server confirmed (when audio was asked for). When one fails fatally, every socket and
/// signaling are closed; when one was merely lost, they are dropped (still resumable).
async fn media_handshakes(
    ctx: &StreamCtx,
    signature: &str,
    plan: Vec<(Vec<MediaKind>, String)>,
    sig: &mut Ws,
) -> Result<(MediaSockets, Option<AudioFormat>), End> {
    let shake = Handshake {
        config: &ctx.config,
        meeting_uuid: &ctx.start.meeting_uuid,
        stream_id: &ctx.start.stream_id,
        signature,
    };
    let handshakes = plan
        .iter()
        .map(|(kinds, url)| media_handshake(&shake, kinds, url));
    let results = futures_util::future::join_all(handshakes).await;
    let mut sockets = Vec::new();
    let mut format: Option<AudioFormat> = None;
    let mut failure: Option<End> = None;
    for ((kinds, url), result) in plan.into_iter().zip(results) {
        match result {
            Ok((ws, confirmed)) => {
                if kinds.contains(&MediaKind::Audio) {
                    format = Some(confirmed);
                }
                sockets.push((kinds, url, ws));
            }
            Err(e) => {
                if !matches!(failure, Some(End::Fatal(_))) {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(failure) = failure {
        if matches!(failure, End::Fatal(_)) {
            for (_, _, ws) in &mut sockets {
                close(ws).await;
            }
            close(sig).await;
        }
        return Err(failure);
    }
    Ok((sockets, format))
}

/// The stream in the plugins: opened once, by the first session, with the confirmed
/// format; later sessions reuse it.
fn open_stream(
    ctx: &StreamCtx,
    media: &mut Option<Arc<dyn StreamSink>>,
    format: Option<AudioFormat>,
) -> Arc<dyn StreamSink> {
    if let Some(stream) = media {
        return stream.clone();
    }
    let audio = format.unwrap_or_else(|| ctx.config.audio.format());
    if audio.sample_rate != ctx.config.audio.sample_rate
        || audio.channels != ctx.config.audio.channels
        || audio.codec != ctx.config.audio.codec
        || audio.frame_ms != ctx.config.audio.frame_ms
    {
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
    ctx.stats.opened.fetch_add(1, Ordering::Relaxed);
    ctx.notice(RtmsNotice::Opened {
        stream_id: ctx.start.stream_id.clone(),
        meeting_id: ctx.start.meeting_uuid.clone(),
        plugins: opened.consumers(),
        format: (audio.sample_rate, audio.channels, audio.frame_ms),
    });
    *media = Some(opened.clone());
    opened
}

/// The event subscription, then CLIENT_READY_ACK: subscribing first means the server's
/// first join updates are already wanted when media starts.
async fn send_ready(ctx: &StreamCtx, sig: &mut Ws) -> Result<(), End> {
    let binary = ctx.config.binary_frames;
    for message in [
        control::event_subscription(&protocol::SUBSCRIBED_EVENTS),
        control::ready_ack(&ctx.start.stream_id),
    ] {
        if let Err(e) = send(sig, &message, binary).await {
            return Err(End::Lost(format!("signaling: {e}")));
        }
    }
    Ok(())
}

/// Streaming: one task per media socket, signaling read here, until signaling or a
/// media socket ends the session or the stream is stopped; then the session ends
/// ([`end_session`]).
async fn stream_media(
    ctx: &StreamCtx,
    sig: &mut Ws,
    stream: Arc<dyn StreamSink>,
    sockets: MediaSockets,
    dedupe: &Arc<Dedupe>,
    signature: &str,
) -> End {
    let (close_tx, close_rx) = watch::channel(Order::Run);
    let (end_tx, mut end_rx) = mpsc::channel::<End>(8);
    let mut tasks = tokio::task::JoinSet::new();
    for (kinds, url, ws) in sockets {
        let socket = MediaSocket {
            kinds,
            url,
            stream: stream.clone(),
            dedupe: dedupe.clone(),
            config: ctx.config.clone(),
            stats: ctx.stats.clone(),
            notices: ctx.notices.clone(),
            stream_id: ctx.start.stream_id.clone(),
            meeting_uuid: ctx.start.meeting_uuid.clone(),
            signature: signature.to_string(),
        };
        tasks.spawn(socket.run(ws, close_rx.clone(), end_tx.clone()));
    }
    drop(end_tx);
    let mut stop = ctx.stop.clone();
    let (end, from_media) = tokio::select! {
        end = signaling_loop(sig, stream.as_ref(), ctx) => (end, false),
        Some(end) = end_rx.recv() => (end, true),
        _ = stop.wait_for(Option::is_some) => (End::Stopped(stop_text(ctx.stop_cause())), false),
    };
    if from_media && matches!(end, End::Stopped(_)) {
        // The server closed a media socket at the end of the stream: what it said on
        // signaling before (states, last updates, TERMINATED) still reaches the plugins.
        let _ =
            tokio::time::timeout(SIGNALING_GRACE, signaling_loop(sig, stream.as_ref(), ctx)).await;
    }
    end_session(&end, &close_tx, tasks, sig).await;
    end
}

/// Ends a session's sockets as `end` requires, and waits for every media task.
async fn end_session(
    end: &End,
    close_tx: &watch::Sender<Order>,
    mut tasks: tokio::task::JoinSet<()>,
    sig: &mut Ws,
) {
    match end {
        End::Lost(_) => {
            // Deliver what the media sockets already hold, then drop them without a
            // close frame: the server keeps the stream resumable and resumes after what
            // it wrote, so discarding buffered frames would lose them.
            let _ = close_tx.send(Order::Drain);
            let wait = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(DRAIN_MAX + Duration::from_secs(1), wait)
                .await
                .is_err()
            {
                tasks.abort_all();
            }
        }
        End::Stopped(_) | End::Fatal(_) => {
            let _ = close_tx.send(Order::Close);
            let wait = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(3), wait)
                .await
                .is_err()
            {
                tasks.abort_all();
            }
            close(sig).await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The handshake reply fields the client reads, owned.
struct Reply {
    status_code: Option<i64>,
    reason: Option<String>,
    media_server: Option<Value>,
    media_params: Option<Value>,
}

/// Reads until the message `want` arrives (within `limit`), answering keep-alives
/// meanwhile.
async fn await_reply(ws: &mut Ws, want: u32, limit: Duration, binary: bool) -> Result<Reply, End> {
    let deadline = Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let message = match next {
            Err(_) => return Err(End::Lost(format!("no reply (msg_type {want}) in time"))),
            Ok(None) => return Err(End::Lost("connection closed during the handshake".into())),
            Ok(Some(Err(e))) => return Err(End::Lost(format!("during the handshake: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match frame(&message) {
            Frame::Data(bytes) => bytes,
            Frame::Close(f) => {
                return Err(End::Fatal(format!(
                    "the server closed the socket during the handshake{}",
                    close_text(f)
                )))
            }
            Frame::Other => continue,
        };
        let incoming = protocol::parse(bytes).map_err(End::Fatal)?;
        if incoming.msg_type == msg::KEEP_ALIVE_REQ {
            let reply = protocol::keep_alive_response(&incoming);
            send(ws, &reply, binary).await.map_err(End::Lost)?;
            continue;
        }
        if incoming.msg_type == want {
            return Ok(Reply {
                status_code: incoming.status_code,
                reason: incoming.reason.as_ref().map(value_text),
                media_server: incoming.media_server,
                media_params: incoming.media_params,
            });
        }
        tracing::debug!(
            msg_type = incoming.msg_type,
            "RTMS message before the handshake reply; ignored"
        );
    }
}

/// What a WebSocket message carries for the RTMS client.
enum Frame<'a> {
    /// JSON, from a text or a binary frame.
    Data(&'a [u8]),
    /// The peer's close frame.
    Close(Option<&'a CloseFrame>),
    /// Ping, pong, raw frames.
    Other,
}

fn frame(message: &Message) -> Frame<'_> {
    match message {
        Message::Text(t) => Frame::Data(t.as_bytes()),
        Message::Binary(b) => Frame::Data(&b[..]),
        Message::Close(f) => Frame::Close(f.as_ref()),
        _ => Frame::Other,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn close_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!(" (close {})", u16::from(f.code)),
        Some(f) => format!(" (close {}: {})", u16::from(f.code), f.reason),
        None => String::new(),
    }
}

/// Which media sockets to open: one per kind using the per-kind URL (as Zoom's client
/// does), or one `all` socket when the server offers nothing else or config asks for it.
fn plan_media(
    media_server: Option<&Value>,
    config: &RtmsConfig,
) -> Result<Vec<(Vec<MediaKind>, String)>, String> {
    let urls = media_server
        .and_then(|m| m.get("server_urls"))
        .ok_or("the signaling reply has no media_server.server_urls")?;
    let url_of = |key: &str| -> Option<String> {
        match urls {
            Value::Object(map) => map.get(key).and_then(Value::as_str).map(str::to_string),
            // Some servers give one URL for everything.
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
        .filter(|u| !u.is_empty())
    };
    let per_kind: Option<Vec<(Vec<MediaKind>, String)>> = config
        .media
        .iter()
        .map(|k| url_of(protocol::url_key(*k)).map(|u| (vec![*k], u)))
        .collect();
    match (config.single_socket, per_kind, url_of(key::ALL)) {
        (false, Some(plan), _) => Ok(plan),
        (_, _, Some(all)) => Ok(vec![(config.media.clone(), all)]),
        (true, Some(plan), None) => Ok(plan),
        (_, None, None) => Err(format!(
            "the signaling reply has no media server URL for {:?} (and no `all`): {urls}",
            config
                .media
                .iter()
                .map(|k| protocol::url_key(*k))
                .collect::<Vec<_>>()
        )),
    }
}

/// Who is shaking hands: what every media handshake of a stream needs.
struct Handshake<'a> {
    config: &'a RtmsConfig,
    meeting_uuid: &'a str,
    stream_id: &'a str,
    signature: &'a str,
}

/// Connects a media socket for `kinds` and runs its handshake; returns the socket and the
/// audio format the server confirmed.
async fn media_handshake(
    h: &Handshake<'_>,
    kinds: &[MediaKind],
    url: &str,
) -> Result<(Ws, AudioFormat), End> {
    let config = h.config;
    let mut ws = connect(url, config.connect_timeout)
        .await
        .map_err(End::Lost)?;
    let media_type = kinds
        .iter()
        .map(|k| protocol::media_bit(*k))
        .fold(0, |a, b| a | b);
    let request = handshake::data_request(
        next_sequence(),
        h.meeting_uuid,
        h.stream_id,
        h.signature,
        media_type,
        protocol::media_params(kinds, &config.audio, config.transcript_language.as_deref()),
    );
    send(&mut ws, &request, config.binary_frames)
        .await
        .map_err(|e| End::Lost(format!("media {url}: {e}")))?;
    let reply = match await_reply(
        &mut ws,
        msg::DATA_HAND_SHAKE_RESP,
        config.connect_timeout,
        config.binary_frames,
    )
    .await
    {
        Ok(r) => r,
        Err(End::Fatal(e)) => {
            close(&mut ws).await;
            return Err(End::Fatal(format!("media handshake ({url}): {e}")));
        }
        Err(e) => return Err(e),
    };
    if let Some(code) = reply.status_code.filter(|c| *c != 0) {
        close(&mut ws).await;
        return Err(End::Fatal(format!(
            "media handshake ({}) refused: {}",
            kinds_label(kinds),
            status::describe(code, reply.reason.as_deref())
        )));
    }
    Ok((
        ws,
        protocol::confirmed_audio(reply.media_params.as_ref(), &config.audio),
    ))
}

/// `audio+transcript`.
fn kinds_label(kinds: &[MediaKind]) -> String {
    kinds
        .iter()
        .map(|k| protocol::url_key(*k))
        .collect::<Vec<_>>()
        .join("+")
}

/// Reads the signaling socket until the stream stops or the socket is lost.
async fn signaling_loop(sig: &mut Ws, stream: &dyn StreamSink, ctx: &StreamCtx) -> End {
    loop {
        let message = match tokio::time::timeout(ctx.config.idle_timeout, sig.next()).await {
            Err(_) => {
                return End::Lost(format!(
                    "signaling silent for {:?}",
                    ctx.config.idle_timeout
                ))
            }
            Ok(None) => return End::Lost("signaling connection dropped".into()),
            Ok(Some(Err(e))) => return End::Lost(format!("signaling: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match frame(&message) {
            Frame::Data(bytes) => bytes,
            Frame::Close(f) => {
                return End::Stopped(format!("the server closed signaling{}", close_text(f)))
            }
            Frame::Other => continue,
        };
        let incoming = match protocol::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                ctx.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stream = %ctx.start.stream_id, "skipping a malformed signaling message: {e}");
                continue;
            }
        };
        match incoming.msg_type {
            msg::KEEP_ALIVE_REQ => {
                let reply = protocol::keep_alive_response(&incoming);
                if let Err(e) = send(sig, &reply, ctx.config.binary_frames).await {
                    return End::Lost(format!("signaling: {e}"));
                }
                ctx.stats.keepalives.fetch_add(1, Ordering::Relaxed);
            }
            msg::EVENT_UPDATE => {
                if let Some(event) = &incoming.event {
                    on_event_update(event, stream);
                }
            }
            msg::STREAM_STATE_UPDATE => {
                let state = incoming.state.unwrap_or(-1);
                let reason = incoming
                    .reason
                    .as_ref()
                    .and_then(protocol::lenient_value_u64)
                    .map(|r| r as i64)
                    .or(incoming.stop_reason);
                if let Some(s) = stream_state(state) {
                    stream.state(s);
                }
                if state == i64::from(stream_state::TERMINATED) {
                    return End::Stopped(match reason {
                        Some(r) => {
                            format!("stream TERMINATED (reason {r}: {})", stop_reason::name(r))
                        }
                        None => "stream TERMINATED".into(),
                    });
                }
            }
            msg::SESSION_STATE_UPDATE => {
                // "Stopped" alone does not end the stream; TERMINATED does.
                tracing::info!(
                    stream = %ctx.start.stream_id,
                    state = incoming.state,
                    reason = incoming.stop_reason.or_else(|| incoming.reason.as_ref().and_then(protocol::lenient_value_u64).map(|r| r as i64)),
                    "RTMS session state"
                );
            }
            other => {
                tracing::debug!(stream = %ctx.start.stream_id, msg_type = other, "RTMS signaling message ignored");
            }
        }
    }
}

fn on_event_update(event: &Value, stream: &dyn StreamSink) {
    let kind = event
        .get("event_type")
        .and_then(protocol::lenient_value_u64);
    let people = || protocol::participants(event);
    let participant = |(user_id, user_name)| Participant { user_id, user_name };
    match kind.map(|k| k as u32) {
        Some(event_type::ACTIVE_SPEAKER_CHANGE) => {
            if let Some(p) = people().into_iter().next() {
                stream.active_speaker(participant(p));
            }
        }
        Some(event_type::PARTICIPANT_JOIN) => {
            for p in people() {
                stream.participant_join(participant(p));
            }
        }
        Some(event_type::PARTICIPANT_LEAVE) => {
            for p in people() {
                stream.participant_leave(participant(p));
            }
        }
        _ => tracing::debug!(event = %event, "RTMS event update"),
    }
}

fn stream_state(state: i64) -> Option<StreamState> {
    Some(match u32::try_from(state).ok()? {
        stream_state::INACTIVE => StreamState::Inactive,
        stream_state::ACTIVE => StreamState::Active,
        stream_state::INTERRUPTED => StreamState::Interrupted,
        stream_state::TERMINATING => StreamState::Terminating,
        stream_state::TERMINATED => StreamState::Terminated,
        stream_state::PAUSED => StreamState::Paused,
        stream_state::RESUMED => StreamState::Resumed,
        _ => return None,
    })
}

/// One media socket: reads frames into the router and re-handshakes when dropped.
struct MediaSocket {
    kinds: Vec<MediaKind>,
    url: String,
    stream: Arc<dyn StreamSink>,
    dedupe: Arc<Dedupe>,
    config: Arc<RtmsConfig>,
    stats: Arc<RtmsStats>,
    notices: tokio::sync::broadcast::Sender<RtmsNotice>,
    stream_id: String,
    meeting_uuid: String,
    signature: String,
}

impl MediaSocket {
    fn label(&self) -> String {
        kinds_label(&self.kinds)
    }

    async fn run(
        self,
        mut ws: Ws,
        mut close_rx: watch::Receiver<Order>,
        end_tx: mpsc::Sender<End>,
    ) {
        loop {
            let end = tokio::select! {
                end = self.read(&mut ws) => end,
                order = ordered(&mut close_rx) => {
                    match order {
                        Order::Drain => self.deliver_rest(&mut ws, DRAIN_QUIET, DRAIN_MAX).await,
                        _ => self.close_and_drain(&mut ws).await,
                    }
                    return;
                }
            };
            let error = match end {
                End::Lost(error) => error,
                other => {
                    let _ = end_tx.send(other).await;
                    return;
                }
            };
            // Re-handshake this socket with growing delays, within the resume window.
            let lost_at = Instant::now();
            let mut backoff = ExponentialBuilder::default()
                .with_min_delay(self.config.reconnect_min)
                .with_max_delay(self.config.reconnect_max)
                .with_factor(2.0)
                .without_max_times()
                .build();
            let mut last_error = error;
            ws = loop {
                if lost_at.elapsed() >= self.config.resume_window {
                    let _ = end_tx
                        .send(End::Fatal(format!(
                            "media socket ({}) could not resume within {:?}: {last_error}",
                            self.label(),
                            self.config.resume_window
                        )))
                        .await;
                    return;
                }
                let delay = backoff.next().unwrap_or(self.config.reconnect_max);
                tracing::warn!(stream = %self.stream_id, socket = %self.label(), "RTMS media lost ({last_error}); re-handshaking in {delay:?}");
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                let _ = self.notices.send(RtmsNotice::Reconnecting {
                    stream_id: self.stream_id.clone(),
                    socket: self.label(),
                    delay,
                    error: last_error.clone(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ordered(&mut close_rx) => return,
                }
                match self.handshake().await {
                    Ok(ws) => break ws,
                    Err(End::Lost(e)) => last_error = e,
                    Err(other) => {
                        let _ = end_tx.send(other).await;
                        return;
                    }
                }
            };
            tracing::info!(stream = %self.stream_id, socket = %self.label(), "RTMS media resumed");
        }
    }

    async fn handshake(&self) -> Result<Ws, End> {
        let shake = Handshake {
            config: &self.config,
            meeting_uuid: &self.meeting_uuid,
            stream_id: &self.stream_id,
            signature: &self.signature,
        };
        media_handshake(&shake, &self.kinds, &self.url)
            .await
            .map(|(ws, _)| ws)
    }

    /// Sends close 1000, then keeps delivering what the server sent before it saw the
    /// close, until its close frame arrives (bounded).
    async fn close_and_drain(&self, ws: &mut Ws) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if ws.close(Some(frame)).await.is_ok() {
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
            let bytes = match frame(&message) {
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

    /// Reads until the socket ends.
    async fn read(&self, ws: &mut Ws) -> End {
        loop {
            let message = match tokio::time::timeout(self.config.idle_timeout, ws.next()).await {
                Err(_) => return End::Lost(format!("silent for {:?}", self.config.idle_timeout)),
                Ok(None) => return End::Lost("connection dropped".into()),
                Ok(Some(Err(e))) => return End::Lost(e.to_string()),
                Ok(Some(Ok(m))) => m,
            };
            let bytes = match frame(&message) {
                Frame::Data(bytes) => bytes,
                Frame::Close(f) => {
                    return End::Stopped(format!(
                        "the server closed the {} media socket{}",
                        self.label(),
                        close_text(f)
                    ))
                }
                Frame::Other => continue,
            };
            let incoming = match protocol::parse(bytes) {
                Ok(m) => m,
                Err(e) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %self.stream_id, "skipping a malformed media message: {e}");
                    continue;
                }
            };
            if incoming.msg_type == msg::KEEP_ALIVE_REQ {
                let reply = protocol::keep_alive_response(&incoming);
                if let Err(e) = send(ws, &reply, self.config.binary_frames).await {
                    return End::Lost(e);
                }
                self.stats.keepalives.fetch_add(1, Ordering::Relaxed);
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
            self.stats.unsubscribed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(content) = incoming.content else {
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
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
            match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
                Ok(b) => b,
                Err(e) => {
                    self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream = %self.stream_id, "skipping {} data that is not base64: {e}", protocol::url_key(kind));
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let fresh = if binary {
            self.dedupe.accept(kind, user_id, content.timestamp, &bytes)
        } else {
            self.dedupe
                .accept(kind, user_id, content.timestamp, data.as_bytes())
        };
        if !fresh {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
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
                language: content.language.as_ref().map(value_text),
            }),
            MediaKind::Chat => self.stream.chat(ChatMessage {
                user_id,
                user_name,
                timestamp,
                text: data.into_owned(),
                message_id: None,
                details: None,
            }),
        }
    }
}

/// What the session asks of its media sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Keep reading.
    Run,
    /// Close with 1000 (the stream is over).
    Close,
    /// Deliver what is buffered, then drop without a close frame (signaling was lost).
    Drain,
}

/// Resolves with the first order other than `Run` (`Close` when the session is gone).
async fn ordered(rx: &mut watch::Receiver<Order>) -> Order {
    match rx.wait_for(|o| *o != Order::Run).await {
        Ok(order) => *order,
        Err(_) => Order::Close,
    }
}

/// Remembers the newest frame per kind and user, so frames a server sends again after a
/// resume are not delivered twice.
#[derive(Default)]
pub(super) struct Dedupe {
    last: Mutex<HashMap<(u8, u32), (u64, u64)>>,
}

impl Dedupe {
    /// Whether a frame is new: a newer timestamp, or the same timestamp with different
    /// content. Frames without a timestamp are always new.
    pub(super) fn accept(&self, kind: MediaKind, user: u32, ts: Option<u64>, data: &[u8]) -> bool {
        let Some(ts) = ts else { return true };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut hasher);
        let digest = hasher.finish();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind as u8, user);
        match last.get(&key) {
            Some(&(last_ts, _)) if ts < last_ts => false,
            Some(&(last_ts, last_digest)) if ts == last_ts && digest == last_digest => false,
            _ => {
                last.insert(key, (ts, digest));
                true
            }
        }
    }
}

async fn connect(url: &str, timeout: Duration) -> Result<Ws, String> {
    crate::oauth::ensure_tls_provider();
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every
    // read; RTMS messages are a few KiB at most (48 kHz stereo: about 5 KiB), and at
    // real-time rates the default buffer costs more CPU than everything else together.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(format!("connecting to {url}: timed out after {timeout:?}")),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// Tries each signaling URL in turn.
async fn connect_any(urls: &[String], timeout: Duration) -> Result<(Ws, String), String> {
    let mut errors = Vec::new();
    for url in urls {
        match connect(url, timeout).await {
            Ok(ws) => return Ok((ws, url.clone())),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

async fn send(ws: &mut Ws, message: &Value, binary: bool) -> Result<(), String> {
    let text = message.to_string();
    let frame = if binary {
        Message::binary(text.into_bytes())
    } else {
        Message::text(text)
    };
    ws.send(frame).await.map_err(|e| e.to_string())
}

/// Sends close 1000 and waits briefly for the server's close.
async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_drops_replays_and_keeps_new_frames() {
        let d = Dedupe::default();
        assert!(d.accept(MediaKind::Audio, 0, Some(100), b"a"));
        assert!(d.accept(MediaKind::Audio, 0, Some(120), b"b"));
        assert!(!d.accept(MediaKind::Audio, 0, Some(100), b"a"));
        assert!(!d.accept(MediaKind::Audio, 0, Some(120), b"b"));
        assert!(d.accept(MediaKind::Audio, 0, Some(120), b"c"));
        assert!(d.accept(MediaKind::Audio, 7, Some(100), b"a"));
        assert!(d.accept(MediaKind::Transcript, 0, Some(100), b"a"));
        assert!(d.accept(MediaKind::Audio, 0, None, b"a"));
    }
}
