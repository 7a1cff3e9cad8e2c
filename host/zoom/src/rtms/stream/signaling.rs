//! A session's streaming phase: the signaling socket read here, each media socket in a
//! task of its own, until the session ends.
//!
//! Signaling carries keep-alives (answered at once), event updates (participants and the
//! active speaker go to the plugins; event 7, media interrupted, goes to the media
//! sockets it names), stream states (INTERRUPTED with reason 14 is the other form of
//! media interrupted; TERMINATED ends the stream), and the answers to the client's close
//! request (22) and video subscription (29). The client's own messages (ready
//! acknowledgements after media re-handshakes, close requests, video subscriptions) are
//! sent from here too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use zoomhost_protocol::rtms::msg::{self, event_type};
use zoomhost_protocol::rtms::product::Product;
use zoomhost_protocol::rtms::states::{stop_reason, stream_state};
use zoomhost_protocol::rtms::{control, status};
use zoomhost_types::{Participant, StreamSink, StreamState};

use super::handshake::Who;
use super::media::{MediaOrder, MediaSocket, Order, DRAIN_MAX};
use super::recovery::{interrupted_sockets, Outcome};
use super::wire::{self, Frame, Ws};
use super::{stop_asked, End, Life, MediaSockets, Signal, StreamCtx};
use crate::rtms::protocol::{self, Incoming};
use crate::rtms::{Request, RtmsStats};

/// A media socket as the session sees it.
struct Handle {
    bits: u32,
    healthy: Arc<AtomicBool>,
    orders: mpsc::UnboundedSender<MediaOrder>,
}

/// The session's streaming state.
struct Streaming<'a> {
    ctx: &'a StreamCtx,
    stream: Arc<dyn StreamSink>,
    product: Product,
    sockets: Vec<Handle>,
    /// When the last media interruption that named no media type was handled: Zoom may
    /// report one interruption twice (event 7 and stream state 2/14).
    last_unnamed: Option<Instant>,
}

/// Streams until the session ends, then ends its sockets as the end requires.
pub(super) async fn stream(
    ctx: &StreamCtx,
    life: &mut Life,
    mut sig: Ws,
    stream: Arc<dyn StreamSink>,
    sockets: MediaSockets,
    who: Who,
    attempt_ms: u64,
) -> End {
    let (close_tx, close_rx) = watch::channel(Order::Run);
    let (end_tx, mut end_rx) = mpsc::channel::<String>(8);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let mut tasks = tokio::task::JoinSet::new();
    let mut handles = Vec::new();
    let connected_ms = wire::now_ms();
    for (kinds, url, ws) in sockets {
        let healthy = Arc::new(AtomicBool::new(true));
        let (orders_tx, orders_rx) = mpsc::unbounded_channel();
        handles.push(Handle {
            bits: kinds
                .iter()
                .map(|k| protocol::media_bit(*k))
                .fold(0, |a, b| a | b),
            healthy: healthy.clone(),
            orders: orders_tx,
        });
        let socket = MediaSocket {
            kinds,
            url,
            stream: stream.clone(),
            dedupe: life.dedupe.clone(),
            config: ctx.config.clone(),
            stats: ctx.stats.clone(),
            notices: ctx.notices.clone(),
            stream_id: ctx.start.stream_id.clone(),
            who: who.clone(),
            healthy,
            to_signaling: out_tx.clone(),
            connected_ms,
        };
        tasks.spawn(socket.run(ws, orders_rx, close_rx.clone(), end_tx.clone()));
    }
    drop(end_tx);
    let mut state = Streaming {
        ctx,
        stream,
        product: life.start.product(),
        sockets: handles,
        last_unnamed: None,
    };
    let end = match state.ready(&mut sig, life).await {
        Err(end) => end,
        Ok(()) => {
            state
                .run(&mut sig, life, &mut out_rx, &mut end_rx, attempt_ms)
                .await
        }
    };
    end_session(&end, &close_tx, tasks, &mut sig).await;
    end
}

impl Streaming<'_> {
    fn id(&self) -> &str {
        &self.ctx.start.stream_id
    }

    async fn send(&self, sig: &mut Ws, message: &Value) -> Result<(), End> {
        wire::send(sig, message, self.ctx.config.binary_frames)
            .await
            .map_err(|e| End::Lost {
                error: format!("signaling: {e}"),
                signal: None,
            })
    }

    /// The event subscription, then CLIENT_READY_ACK (subscribing first means the
    /// server's first join updates are already wanted when media starts); then what
    /// plugins asked for before this session: the video subscription, the close request.
    async fn ready(&self, sig: &mut Ws, life: &Life) -> Result<(), End> {
        let events = protocol::subscribed_events(&self.ctx.config, self.product);
        self.send(sig, &control::event_subscription(&events))
            .await?;
        self.send(sig, &control::ready_ack(self.id())).await?;
        if let Some((user_id, subscribe)) = life.video {
            self.subscribe_video(sig, user_id, subscribe).await?;
        }
        if life.close_requested {
            self.close_request(sig).await?;
        }
        Ok(())
    }

    async fn subscribe_video(
        &self,
        sig: &mut Ws,
        user_id: u32,
        subscribe: bool,
    ) -> Result<(), End> {
        RtmsStats::bump(&self.ctx.stats.video_subscriptions);
        tracing::info!(stream = %self.id(), user_id, subscribe, "RTMS individual video subscription");
        let request = control::video_subscription_request(user_id, subscribe, wire::now_ms());
        self.send(sig, &request).await
    }

    async fn close_request(&self, sig: &mut Ws) -> Result<(), End> {
        RtmsStats::bump(&self.ctx.stats.close_requests);
        tracing::info!(stream = %self.id(), "asking Zoom to close the RTMS stream (STREAM_CLOSE_REQ) at a plugin's request");
        self.send(sig, &control::stream_close_request(self.id()))
            .await
    }

    /// Reads signaling and serves requests until the session ends.
    async fn run(
        &mut self,
        sig: &mut Ws,
        life: &mut Life,
        out_rx: &mut mpsc::UnboundedReceiver<Value>,
        end_rx: &mut mpsc::Receiver<String>,
        attempt_ms: u64,
    ) -> End {
        let ctx = self.ctx;
        let idle = ctx.config.idle_timeout;
        let mut last_read = Instant::now();
        let mut stop = ctx.stop.clone();
        loop {
            tokio::select! {
                message = sig.next() => {
                    last_read = Instant::now();
                    let message = match message {
                        None => return lost("signaling connection dropped".into()),
                        Some(Err(e)) => return lost(format!("signaling: {e}")),
                        Some(Ok(m)) => m,
                    };
                    let bytes = match wire::frame(&message) {
                        Frame::Data(bytes) => bytes,
                        Frame::Close(f) => {
                            return lost(format!("the server closed signaling{}", wire::close_text(f)))
                        }
                        Frame::Other => continue,
                    };
                    let incoming = match protocol::parse(bytes) {
                        Ok(m) => m,
                        Err(e) => {
                            RtmsStats::bump(&ctx.stats.malformed);
                            tracing::warn!(stream = %self.id(), "skipping a malformed signaling message: {e}");
                            continue;
                        }
                    };
                    if let Err(end) = self.on_message(sig, incoming).await {
                        return end;
                    }
                }
                _ = tokio::time::sleep_until(last_read + idle) => {
                    return lost(format!("signaling silent for {idle:?}"));
                }
                Some(message) = out_rx.recv() => {
                    if let Err(end) = self.send(sig, &message).await {
                        return end;
                    }
                }
                request = life.requests.recv(), if life.requests_open => {
                    let result = match request {
                        None => {
                            life.requests_open = false;
                            Ok(())
                        }
                        Some(request) => self.on_request(sig, life, request, attempt_ms).await,
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                Some(error) = end_rx.recv() => return End::Over(Outcome::Failed(error)),
                _ = stop_asked(&mut stop) => {
                    return End::Over(ctx.stopped().unwrap_or(Outcome::Closed("stopped".into())));
                }
            }
        }
    }

    async fn on_request(
        &self,
        sig: &mut Ws,
        life: &mut Life,
        request: Request,
        attempt_ms: u64,
    ) -> Result<(), End> {
        match request {
            Request::Failover(start) => Err(End::Lost {
                error: "Zoom moved the stream to another server".into(),
                signal: Some(Signal::Failover(start)),
            }),
            Request::Interrupted(at) if at >= attempt_ms => {
                RtmsStats::bump(&self.ctx.stats.interruptions);
                Err(End::Lost {
                    error: "Zoom reported the stream interrupted".into(),
                    signal: Some(Signal::Interrupted),
                })
            }
            Request::Interrupted(_) => {
                tracing::debug!(stream = %self.id(), "rtms_interrupted from before this session: ignored");
                Ok(())
            }
            Request::Close => {
                life.close_requested = true;
                self.close_request(sig).await
            }
            Request::SubscribeVideo { user_id, subscribe } => {
                life.video = Some((user_id, subscribe));
                self.subscribe_video(sig, user_id, subscribe).await
            }
        }
    }

    async fn on_message(&mut self, sig: &mut Ws, incoming: Incoming<'_>) -> Result<(), End> {
        let ctx = self.ctx;
        match incoming.msg_type {
            msg::KEEP_ALIVE_REQ => {
                self.send(sig, &protocol::keep_alive_response(&incoming))
                    .await?;
                RtmsStats::bump(&ctx.stats.keepalives);
            }
            msg::EVENT_UPDATE => {
                if let Some(event) = &incoming.event {
                    self.on_event_update(event);
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
                if let Some(s) = plugin_state(state) {
                    self.stream.state(s);
                }
                if state == i64::from(stream_state::TERMINATED) {
                    return Err(End::Over(
                        ctx.stop_reason_outcome("stream TERMINATED", reason),
                    ));
                }
                if state == i64::from(stream_state::INTERRUPTED) {
                    let at = timestamp(incoming.timestamp.as_ref());
                    match reason.map(|r| r as u32) {
                        Some(stop_reason::DATA_CONNECTION_INTERRUPTED) => {
                            self.media_interrupted(None, at)
                        }
                        Some(stop_reason::SIGNAL_CONNECTION_INTERRUPTED) => tracing::info!(
                            stream = %self.id(),
                            "Zoom reports signaling interrupted: expecting rtms_interrupted"
                        ),
                        _ => {}
                    }
                }
            }
            msg::SESSION_STATE_UPDATE => {
                // "Stopped" alone does not end the stream; TERMINATED does.
                tracing::info!(
                    stream = %self.id(),
                    state = incoming.state,
                    reason = incoming.stop_reason.or_else(|| incoming.reason.as_ref().and_then(protocol::lenient_value_u64).map(|r| r as i64)),
                    "RTMS session state"
                );
            }
            msg::STREAM_CLOSE_RESP => match incoming.status_code.filter(|c| *c != 0) {
                None => tracing::info!(stream = %self.id(), "Zoom accepted the close request"),
                Some(code) => tracing::warn!(
                    stream = %self.id(),
                    "Zoom refused the close request: {}",
                    status::describe(code, incoming.reason.as_ref().map(wire::value_text).as_deref())
                ),
            },
            msg::VIDEO_SUBSCRIPTION_RESP => match incoming.status_code.unwrap_or(0) {
                0 => tracing::info!(stream = %self.id(), "video subscription accepted"),
                code if code == i64::from(status::DUPLICATE_VIDEO_SUBSCRIPTION) => {
                    tracing::debug!(stream = %self.id(), "video subscription already in place")
                }
                code => tracing::warn!(
                    stream = %self.id(),
                    "video subscription refused: {}",
                    status::describe(code, incoming.reason.as_ref().map(wire::value_text).as_deref())
                ),
            },
            other => {
                tracing::debug!(stream = %self.id(), msg_type = other, "RTMS signaling message ignored");
            }
        }
        Ok(())
    }

    fn on_event_update(&mut self, event: &Value) {
        let Some(kind) = event
            .get("event_type")
            .and_then(protocol::lenient_value_u64)
            .map(|k| k as u32)
        else {
            return;
        };
        if kind == event_type::MEDIA_CONNECTION_INTERRUPTED {
            let mask = event
                .get("media_type")
                .and_then(protocol::lenient_value_u64)
                .map(|m| m as u32);
            let at = timestamp(event.get("timestamp"));
            self.media_interrupted(mask, at);
            return;
        }
        if self.product == Product::ContactCenter && kind >= 8 {
            tracing::info!(
                stream = %self.id(),
                event = msg::event_name(self.product, kind).unwrap_or("unknown"),
                "Contact Center event: {event}"
            );
            return;
        }
        let people = || protocol::participants(event);
        let participant = |(user_id, user_name)| Participant { user_id, user_name };
        match kind {
            event_type::ACTIVE_SPEAKER_CHANGE => {
                if let Some(p) = people().into_iter().next() {
                    self.stream.active_speaker(participant(p));
                }
            }
            event_type::PARTICIPANT_JOIN => {
                for p in people() {
                    self.stream.participant_join(participant(p));
                }
            }
            event_type::PARTICIPANT_LEAVE => {
                for p in people() {
                    self.stream.participant_leave(participant(p));
                }
            }
            _ => tracing::debug!(
                stream = %self.id(),
                event = msg::event_name(self.product, kind).unwrap_or("unknown"),
                "RTMS event update: {event}"
            ),
        }
    }

    /// Scenario 3: hands Zoom's word to the media sockets it names (every unhealthy one
    /// when it names none). A second unnamed report right after one is the same
    /// interruption reported twice.
    fn media_interrupted(&mut self, mask: Option<u32>, at: u64) {
        let named = mask.filter(|m| *m != 0);
        if named.is_none() {
            let grace = self.ctx.config.close_grace;
            if self.last_unnamed.is_some_and(|t| t.elapsed() < grace) {
                return;
            }
            self.last_unnamed = Some(Instant::now());
        }
        let view: Vec<(u32, bool)> = self
            .sockets
            .iter()
            .map(|s| (s.bits, s.healthy.load(Ordering::Relaxed)))
            .collect();
        let targets = interrupted_sockets(named, &view);
        tracing::warn!(
            stream = %self.id(),
            media_type = ?named,
            sockets = targets.len(),
            "Zoom reports a media connection interrupted: re-handshaking it"
        );
        for i in targets {
            let _ = self.sockets[i].orders.send(MediaOrder::Interrupted(at));
        }
    }
}

fn lost(error: String) -> End {
    End::Lost {
        error,
        signal: None,
    }
}

/// A message's `timestamp` (ms), or now.
fn timestamp(value: Option<&Value>) -> u64 {
    value
        .and_then(protocol::lenient_value_u64)
        .unwrap_or_else(wire::now_ms)
}

/// Ends a session's sockets as `end` requires, and waits for every media task.
async fn end_session(
    end: &End,
    close_tx: &watch::Sender<Order>,
    mut tasks: tokio::task::JoinSet<()>,
    sig: &mut Ws,
) {
    if matches!(end, End::Over(Outcome::HandedOver)) {
        // A hand-over: signaling goes first (no STREAM_CLOSE_REQ), so the server stops
        // writing media and keeps the stream for the next owner; the media sockets then
        // deliver everything it wrote before they are dropped.
        wire::close(sig).await;
    }
    match end {
        End::Lost { .. } | End::Over(Outcome::HandedOver) => {
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
        End::Over(_) => {
            let _ = close_tx.send(Order::Close);
            let wait = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(3), wait)
                .await
                .is_err()
            {
                tasks.abort_all();
            }
            wire::close(sig).await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn plugin_state(state: i64) -> Option<StreamState> {
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
