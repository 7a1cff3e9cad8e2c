//! The sockets: accept, route by path (and server generation), handshake, then one task
//! per socket that reads the client, runs commands, sends keep-alives and (media) writes
//! what the stream plans.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use zoomhost_protocol::rtms::media::{bit, key};
use zoomhost_protocol::rtms::msg;
use zoomhost_protocol::rtms::{control, handshake};

use super::stream::{Cmd, Exit, Outgoing, Plan, Role, SelfAction, SimStream};
use super::wire;
use super::{status, MediaKind, MediaUrlMode, Server};
use crate::util::now_ms;

type ServerWs = WebSocketStream<TcpStream>;

/// Accepts on listener `index` (it serves the server generations `g` with
/// `g % 2 == index`).
pub(super) async fn accept_loop(listener: TcpListener, index: u32, server: Arc<Server>) {
    let mut shutdown = server.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = super::shut_down(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Small frames every 20 ms: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    let server = server.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(tcp, index, server).await {
                            tracing::debug!("RTMS sim: connection ended: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RTMS sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Which server a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Signaling,
    /// A per-type media URL, or `all` (`None`).
    Media(Option<MediaKind>),
}

/// The server generation and endpoint a path names on listener `listener`: `/g{n}`
/// prefixes every path of generation `n` > 0.
fn endpoint(path: &str, mode: MediaUrlMode, listener: u32) -> Option<(u32, Endpoint)> {
    let mut path = path.trim_end_matches('/');
    let mut generation = 0;
    if let Some(rest) = path.strip_prefix("/g") {
        let (number, tail) = rest.split_at(rest.find('/')?);
        generation = number.parse().ok().filter(|g| *g > 0)?;
        path = tail;
    }
    if generation % 2 != listener {
        return None;
    }
    if path == "/signaling" {
        return Some((generation, Endpoint::Signaling));
    }
    let endpoint = match path.strip_prefix("/media/")? {
        key::ALL => Endpoint::Media(None),
        _ if mode == MediaUrlMode::AllOnly => return None,
        key => Endpoint::Media(Some(MediaKind::from_key(key)?)),
    };
    Some((generation, endpoint))
}

/// The kinds a media socket carries: its `media_type` bits (32: all), else its URL's.
fn kinds_of(media_type: Option<u64>, path_kind: Option<MediaKind>) -> Vec<MediaKind> {
    let bits = media_type.unwrap_or(0);
    if bits & u64::from(bit::ALL) != 0 {
        return MediaKind::ALL.to_vec();
    }
    let kinds: Vec<MediaKind> = MediaKind::ALL
        .into_iter()
        .filter(|k| bits & k.bit() != 0)
        .collect();
    if kinds.is_empty() {
        path_kind.into_iter().collect()
    } else {
        kinds
    }
}

/// Client messages are small. tungstenite zero-fills up to `read_buffer_size` before
/// every read attempt (even one that finds nothing), so its 128 KiB default would cost
/// a 128 KiB memset each time a socket task looks at its input.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

fn frame(json: String, binary: bool) -> Message {
    if binary {
        Message::binary(json.into_bytes())
    } else {
        Message::text(json)
    }
}

enum Read {
    Msg(Value),
    Invalid(String),
    Closed,
}

/// The next JSON message (text or binary frame).
async fn read_json(ws: &mut ServerWs) -> Read {
    loop {
        let bytes = match ws.next().await {
            Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Read::Closed,
            Some(Ok(_)) => continue,
        };
        return match serde_json::from_slice(&bytes) {
            Ok(v) => Read::Msg(v),
            Err(e) => Read::Invalid(e.to_string()),
        };
    }
}

/// Sends a close frame and waits (briefly) for the client's answer.
async fn close(ws: &mut ServerWs, code: u16, reason: &str, stream: Option<&SimStream>) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = ws.next().await {
                if let (Message::Close(Some(f)), Some(stream)) = (message, stream) {
                    stream.client_close_code(f.code.into());
                }
            }
        })
        .await;
    }
}

/// Why a handshake is refused.
struct Refusal {
    status: u32,
    reason: String,
    stream: Option<Arc<SimStream>>,
}

impl Refusal {
    fn new(status: u32, reason: impl Into<String>, stream: Option<Arc<SimStream>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            stream,
        }
    }
}

/// Why a handshake is not accepted.
enum Check {
    /// Answered with a status code and closed.
    Refuse(Refusal),
    /// For a stream another server generation serves now: dropped without an answer, as
    /// the dead server would.
    Stale(Arc<SimStream>),
}

/// Checks a handshake request (msg 1 or 3) that reached server generation `generation`:
/// type, stream, server, version, id, signature.
fn validate(
    server: &Server,
    msg: &Value,
    want: u32,
    generation: u32,
) -> Result<Arc<SimStream>, Check> {
    let stream_id = msg["rtms_stream_id"].as_str();
    let stream = stream_id.and_then(|id| server.stream(id));
    let refuse_with = |status: u32, reason: String, stream: Option<Arc<SimStream>>| {
        Err(Check::Refuse(Refusal::new(status, reason, stream)))
    };
    if msg["msg_type"].as_u64() != Some(u64::from(want)) {
        if let Some(stream) = &stream {
            stream.count_connection();
        }
        let reason = format!("expected msg_type {want} first, got {}", msg["msg_type"]);
        return refuse_with(status::INVALID_MESSAGE_TYPE, reason, stream);
    }
    if stream_id.is_none() {
        let reason = "rtms_stream_id missing".to_string();
        return refuse_with(status::INVALID_PAYLOAD, reason, None);
    }
    let Some(stream) = stream else {
        let reason = "unknown rtms_stream_id".to_string();
        return refuse_with(status::INVALID_RTMS_STREAM_ID, reason, None);
    };
    stream.count_connection();
    if stream.generation() != generation {
        return Err(Check::Stale(stream));
    }
    let refuse = |status: u32, reason: String| refuse_with(status, reason, Some(stream.clone()));
    // "By default, it's 1.0": a request without one speaks version 1.
    match msg.get("protocol_version") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_f64() == Some(1.0) => {}
        Some(v) => {
            let reason = format!(
                "unsupported protocol_version {v}: this server speaks RTMS protocol version {}",
                handshake::PROTOCOL_VERSION
            );
            return refuse(status::INVALID_PAYLOAD, reason);
        }
    }
    // Zoom's samples send the product's key, its C SDK sends `meeting_uuid` whatever the
    // product: either is fine.
    let key = stream.product().id_key();
    let given = [key, "meeting_uuid"]
        .into_iter()
        .find_map(|k| msg.get(k).and_then(Value::as_str).map(|v| (k, v)));
    let Some((given_key, id)) = given else {
        let reason = format!("no session id: expected `{key}` or `meeting_uuid`");
        return refuse(status::INVALID_PAYLOAD, reason);
    };
    if id != stream.meeting_uuid() {
        let reason = format!("`{given_key}` does not name the stream's session");
        return refuse(status::INVALID_RTMS_STREAM_ID, reason);
    }
    let Some(signature) = msg["signature"].as_str() else {
        return refuse(status::INVALID_SIGNATURE, "signature missing".to_string());
    };
    let config = stream.config();
    let expected = handshake::signature(
        &config.client_id,
        &config.client_secret,
        id,
        stream.stream_id(),
    );
    let given = signature.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return refuse(
            status::INVALID_SIGNATURE,
            "signature does not match".to_string(),
        );
    }
    Ok(stream)
}

async fn serve(tcp: TcpStream, listener: u32, server: Arc<Server>) -> anyhow::Result<()> {
    let mode = server.config.media_urls;
    let mut route = None;
    // The callback's signature (and its large error type) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| match endpoint(
        request.uri().path(),
        mode,
        listener,
    ) {
        Some(e) => {
            route = Some(e);
            Ok(response)
        }
        None => {
            let mut refused = ErrorResponse::new(Some("no such RTMS endpoint".to_string()));
            *refused.status_mut() = StatusCode::NOT_FOUND;
            Err(refused)
        }
    };
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(ws_config()))
        .await
        .context("WebSocket upgrade")?;
    let Some((generation, route)) = route else {
        return Ok(());
    };
    let binary = server.config.binary_frames;
    let (want, reply_type) = match route {
        Endpoint::Signaling => (
            msg::SIGNALING_HAND_SHAKE_REQ,
            msg::SIGNALING_HAND_SHAKE_RESP,
        ),
        Endpoint::Media(_) => (msg::DATA_HAND_SHAKE_REQ, msg::DATA_HAND_SHAKE_RESP),
    };
    let msg = match tokio::time::timeout(server.config.handshake_timeout, read_json(&mut ws)).await
    {
        Err(_) => {
            close(&mut ws, 1008, "no handshake", None).await;
            return Ok(());
        }
        Ok(Read::Closed) => return Ok(()),
        Ok(Read::Invalid(e)) => {
            let refusal = Refusal::new(status::INVALID_PAYLOAD, format!("not JSON: {e}"), None);
            return refuse(&mut ws, &server, reply_type, &Value::Null, refusal, binary).await;
        }
        Ok(Read::Msg(v)) => v,
    };
    let sequence = msg.get("sequence").cloned().unwrap_or(Value::Null);
    let stream = match validate(&server, &msg, want, generation) {
        Ok(stream) => stream,
        Err(Check::Refuse(refusal)) => {
            return refuse(&mut ws, &server, reply_type, &msg, refusal, binary).await;
        }
        Err(Check::Stale(stream)) => {
            tracing::debug!(stream = %stream.stream_id(), generation, "RTMS sim: handshake on a server the stream left");
            stream.stale_handshake();
            let _ = ws.get_mut().shutdown().await;
            return Ok(());
        }
    };
    let id = server.next_conn_id();
    let (tx, rx) = mpsc::unbounded_channel();
    let (role, reply) = match route {
        Endpoint::Signaling => {
            let buffer_data = msg.get("buffer_data").and_then(Value::as_bool);
            if let Err((code, reason)) = stream.register_signaling(id, tx, buffer_data) {
                let refusal = Refusal::new(code, reason, Some(stream));
                return refuse(&mut ws, &server, reply_type, &msg, refusal, binary).await;
            }
            let mut reply = handshake::reply(reply_type, &sequence, status::OK, "");
            reply["media_server"] = json!({"server_urls": server.hub.media_urls(generation)});
            (Role::Signaling, reply)
        }
        Endpoint::Media(path_kind) => {
            let kinds = kinds_of(msg["media_type"].as_u64(), path_kind);
            if kinds.is_empty() {
                let reason = format!("media_type {} names no media type", msg["media_type"]);
                let refusal = Refusal::new(status::INVALID_MEDIA_TYPE, reason, Some(stream));
                return refuse(&mut ws, &server, reply_type, &msg, refusal, binary).await;
            }
            let requested = msg.get("media_params").unwrap_or(&Value::Null);
            match stream.register_media(id, tx, &kinds, requested) {
                Ok(params) => {
                    let mut reply = handshake::reply(reply_type, &sequence, status::OK, "");
                    reply["payload_encrypted"] = false.into();
                    reply["media_params"] = params;
                    (Role::Media, reply)
                }
                Err((code, reason)) => {
                    let refusal = Refusal::new(code, reason, Some(stream));
                    return refuse(&mut ws, &server, reply_type, &msg, refusal, binary).await;
                }
            }
        }
    };
    if ws.send(frame(reply.to_string(), binary)).await.is_err() {
        stream.conn_exit(id, Exit::Lost);
        return Ok(());
    }
    let config = stream.config();
    let every = config.keepalive_interval.max(Duration::from_millis(1));
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let task = ConnTask {
        id,
        role,
        ws,
        stream: stream.clone(),
        rx,
        shutdown: server.shutdown.subscribe(),
        epoch: stream.subscribe_epoch(),
        binary,
        keepalive,
        every,
        pending: VecDeque::new(),
        next_seq: 1,
        max_missed: config.keepalive_max_missed as usize,
        missing_keepalives: false,
        last_media: None,
        buf: Vec::new(),
    };
    drop(server);
    let exit = task.run().await;
    tracing::debug!(stream = %stream.stream_id(), conn = id, ?role, ?exit, "RTMS sim: socket ended");
    stream.conn_exit(id, exit);
    Ok(())
}

/// Answers a refused handshake with its status code and reason, then closes (1008).
async fn refuse(
    ws: &mut ServerWs,
    server: &Server,
    reply_type: u32,
    msg: &Value,
    refusal: Refusal,
    binary: bool,
) -> anyhow::Result<()> {
    let stream_id = msg["rtms_stream_id"].as_str().unwrap_or("");
    tracing::info!(
        stream = stream_id,
        status = refusal.status,
        reason = %refusal.reason,
        "RTMS sim: handshake refused"
    );
    server.record_rejection(reply_type.into(), refusal.status, stream_id);
    if let Some(stream) = &refusal.stream {
        stream.record_rejection(reply_type.into(), refusal.status);
    }
    let sequence = msg.get("sequence").cloned().unwrap_or(Value::Null);
    let reply = handshake::reply(reply_type, &sequence, refusal.status, &refusal.reason);
    ws.send(frame(reply.to_string(), binary))
        .await
        .context("handshake refusal")?;
    close(ws, 1008, "handshake refused", refusal.stream.as_deref()).await;
    Ok(())
}

/// One accepted socket.
struct ConnTask {
    id: u64,
    role: Role,
    ws: ServerWs,
    stream: Arc<SimStream>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    shutdown: watch::Receiver<bool>,
    epoch: watch::Receiver<u64>,
    binary: bool,
    keepalive: tokio::time::Interval,
    /// The keep-alive interval.
    every: Duration,
    /// Keep-alive requests not answered yet: (sequence, timestamp).
    pending: VecDeque<(u64, u64)>,
    next_seq: u64,
    max_missed: usize,
    /// [`Cmd::MissKeepAlives`]: answers go unheard, requests go out even while busy.
    missing_keepalives: bool,
    /// When media was last written (media sockets get keep-alives only while idle).
    last_media: Option<Instant>,
    buf: Vec<Outgoing>,
}

impl ConnTask {
    async fn run(mut self) -> Exit {
        loop {
            self.epoch.borrow_and_update();
            let plan = match self.role {
                Role::Media => self.stream.plan(self.id, Instant::now(), &mut self.buf),
                Role::Signaling => Plan::Idle,
            };
            let send_now = matches!(plan, Plan::Send);
            let wake = match plan {
                Plan::WaitUntil(at) => Some(at),
                _ => None,
            };
            let mut write = false;
            tokio::select! {
                biased;
                _ = super::shut_down(&mut self.shutdown) => return self.drop_tcp(Exit::Shutdown).await,
                message = self.ws.next() => match message {
                    None | Some(Err(_)) => return Exit::Lost,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| u16::from(f.code));
                        if let Some(code) = code {
                            self.stream.client_close_code(code);
                        }
                        // Let tungstenite answer the close and finish.
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            while let Some(Ok(_)) = self.ws.next().await {}
                        })
                        .await;
                        return Exit::ClientClosed(code);
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Err(exit) = self.on_message(text.as_str().as_bytes()).await {
                            return exit;
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Err(exit) = self.on_message(&bytes).await {
                            return exit;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                command = self.rx.recv() => match command {
                    None | Some(Cmd::Drop) => return self.drop_tcp(Exit::Dropped).await,
                    Some(Cmd::Send(json)) => {
                        if self.send(json).await.is_err() {
                            return Exit::Lost;
                        }
                    }
                    Some(Cmd::Close(code, reason, ack)) => {
                        close(&mut self.ws, code, &reason, Some(&self.stream)).await;
                        if let Some(ack) = ack {
                            let _ = ack.send(());
                        }
                        return Exit::Closed;
                    }
                    Some(Cmd::Stall(duration)) => tokio::time::sleep(duration).await,
                    Some(Cmd::MissKeepAlives) => self.missing_keepalives = true,
                },
                _ = self.keepalive.tick() => {
                    if let Err(exit) = self.keepalive_tick().await {
                        return exit;
                    }
                }
                _ = self.epoch.changed(), if !send_now => {}
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)),
                    if wake.is_some() && !send_now => {}
                _ = std::future::ready(()), if send_now => write = true,
            }
            if write {
                match self.send_batch().await {
                    Ok(SelfAction::None) => {}
                    Ok(SelfAction::Drop) => return self.drop_tcp(Exit::Dropped).await,
                    Ok(SelfAction::Close(code)) => {
                        close(&mut self.ws, code, "", Some(&self.stream)).await;
                        return Exit::Closed;
                    }
                    Ok(SelfAction::Stall(duration)) => tokio::time::sleep(duration).await,
                    Err(exit) => return exit,
                }
            }
        }
    }

    /// FIN without a close frame: what a crashed proxy looks like.
    async fn drop_tcp(&mut self, exit: Exit) -> Exit {
        let _ = self.ws.get_mut().shutdown().await;
        exit
    }

    async fn send(&mut self, json: String) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws.send(frame(json, self.binary)).await
    }

    /// Writes the planned items with one flush, then commits them.
    async fn send_batch(&mut self) -> Result<SelfAction, Exit> {
        let mut batch = std::mem::take(&mut self.buf);
        let mut written = Ok(());
        for item in &mut batch {
            let json = std::mem::take(&mut item.json);
            written = self.ws.feed(frame(json, self.binary)).await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = self.ws.flush().await;
        }
        let result = match written {
            Ok(()) => {
                self.last_media = Some(Instant::now());
                Ok(self.stream.commit(self.id, &batch))
            }
            Err(_) => Err(Exit::Lost),
        };
        batch.clear();
        self.buf = batch;
        result
    }

    async fn keepalive_tick(&mut self) -> Result<(), Exit> {
        if self.max_missed > 0 && self.pending.len() >= self.max_missed {
            let (msg, grace) = self.stream.keepalive_timeout(self.id);
            tokio::time::sleep(grace).await;
            if let Some(msg) = msg {
                let _ = self.send(msg).await;
            }
            return Err(self.drop_tcp(Exit::KeepaliveTimeout).await);
        }
        // Zoom sends keep-alives on a media socket only while no media flows on it.
        let busy = self.last_media.is_some_and(|at| at.elapsed() < self.every);
        if self.role == Role::Media && busy && !self.missing_keepalives {
            return Ok(());
        }
        let (sequence, timestamp) = (self.next_seq, now_ms());
        self.next_seq += 1;
        self.pending.push_back((sequence, timestamp));
        if self.pending.len() > 64 {
            self.pending.pop_front();
        }
        if self
            .send(wire::keep_alive_req(sequence, timestamp))
            .await
            .is_err()
        {
            return Err(Exit::Lost);
        }
        self.stream.keepalive_sent();
        Ok(())
    }

    async fn on_message(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        let msg: Value = match serde_json::from_slice(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!("RTMS sim: ignoring a message that is not JSON: {e}");
                return Ok(());
            }
        };
        let signaling = self.role == Role::Signaling;
        let msg_type = msg["msg_type"].as_u64().and_then(|t| u32::try_from(t).ok());
        let reply = match msg_type {
            Some(msg::KEEP_ALIVE_RESP) if self.missing_keepalives => None,
            Some(msg::KEEP_ALIVE_RESP) => {
                let (sequence, timestamp) = (msg["sequence"].as_u64(), msg["timestamp"].as_u64());
                // Zoom's docs ask for the timestamp echoed; Zoom's samples send only that.
                // A sequence, when there is one, must match too.
                let answered = self.pending.iter().position(|&(s, t)| {
                    Some(t) == timestamp && sequence.is_none_or(|seq| seq == s)
                });
                if let Some(pos) = answered {
                    self.pending.drain(..=pos);
                    self.stream.keepalive_answered();
                }
                None
            }
            // A client's own keep-alive: echo it.
            Some(msg::KEEP_ALIVE_REQ) => Some(
                control::keep_alive_response(Some(&msg["sequence"]), Some(&msg["timestamp"]))
                    .to_string(),
            ),
            Some(msg::EVENT_SUBSCRIPTION) if signaling => {
                self.stream.subscribe(&msg);
                None
            }
            Some(msg::CLIENT_READY_ACK) if signaling => {
                self.stream.ready_ack(self.id);
                None
            }
            Some(msg::VIDEO_SUBSCRIPTION_REQ) if signaling => {
                Some(self.stream.video_subscription(&msg))
            }
            Some(msg::SESSION_STATE_REQ) => Some(self.stream.session_state_resp()),
            Some(msg::STREAM_STATE_REQ) => Some(self.stream.stream_state_resp()),
            Some(msg::STREAM_CLOSE_REQ) if signaling => {
                let reply = json!({
                    "msg_type": msg::STREAM_CLOSE_RESP,
                    "rtms_stream_id": self.stream.stream_id(),
                    "status_code": status::OK,
                    "reason": "",
                })
                .to_string();
                if self.send(reply).await.is_err() {
                    return Err(Exit::Lost);
                }
                self.stream.request_close();
                None
            }
            other => {
                tracing::debug!(msg_type = ?other, "RTMS sim: ignoring a client message");
                None
            }
        };
        if let Some(reply) = reply {
            if self.send(reply).await.is_err() {
                return Err(Exit::Lost);
            }
        }
        Ok(())
    }
}
