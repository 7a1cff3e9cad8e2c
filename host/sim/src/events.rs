//! Simulator: the event WebSocket, server side (see the event WebSocket notes in `zoomhost::zoom` (the client's protocol notes)).
//!
//! [`EventSim`] listens on `127.0.0.1:0` and speaks Zoom's envelope: it checks the
//! `access_token` query parameter with a [`TokenAuthority`] (the [`OAuthSim`], or any
//! closure), answers `build_connection` (success, or failure with `"token is empty"` /
//! `"Invalid Token"` and a close), replies to heartbeats with `content:"live"`, drops
//! clients that stay silent too long, and closes the older connection when a new one for
//! the same subscription arrives. Events are pushed as `message` envelopes whose `content`
//! is the JSON *string* of `{event, event_ts, payload}`.
//!
//! Faults: abrupt TCP drop (no close frame), close with a code, stall (neither read nor
//! write for a while), refusing connections, token invalidation and OAuth outages (through
//! the [`TokenAuthority`]). Every event written to a connected client is recorded with its
//! id ([`EventSim::sent`]), so tests can check exactly-once delivery; events pushed while
//! no client was connected are recorded apart ([`EventSim::missed`]): Zoom does not replay
//! them either.
//!
//! Scenarios ([`Scenario`], TOML or JSON) describe a meeting timeline with realistic
//! payloads ([`MeetingGen`]) and fault steps; see `host/samples/scenario.toml`. When
//! `tag_ids` is on (the default) every payload carries a top-level string `"id"`
//! (`evt-0001`, ...) that the test recorder plugin reports. Real Zoom payloads have no
//! such field.
//!
//! With an [`RtmsSim`] attached ([`Scenario::run_with`]), `rtms_start` steps register a
//! media stream for the meeting and announce it with `meeting.rtms_started` (its
//! `server_urls` is the simulator's signaling URL), `rtms_wait` waits for the client, and
//! `rtms_stop` runs the stream's stop sequence and pushes `meeting.rtms_stopped`; see
//! `host/samples/rtms-meeting.toml`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::oauth::OAuthSim;
use crate::rtms::{self, RtmsSim, SimParticipant, SimStream, StreamSpec};

/// Who decides whether a token is good, and how token faults are injected.
pub trait TokenAuthority: Send + Sync + 'static {
    /// Whether `token` is currently valid.
    fn is_valid(&self, token: &str) -> bool;
    /// Makes every issued token invalid.
    fn invalidate_all(&self);
    /// Makes the next `requests` token requests fail with `status`.
    fn outage(&self, requests: usize, status: u16);
}

impl TokenAuthority for OAuthSim {
    fn is_valid(&self, token: &str) -> bool {
        OAuthSim::is_valid(self, token)
    }

    fn invalidate_all(&self) {
        OAuthSim::invalidate_all(self);
    }

    fn outage(&self, requests: usize, status: u16) {
        self.fail_next(requests, status, None);
    }
}

/// A [`TokenAuthority`] from a closure, for tests without an OAuth endpoint; token
/// invalidation and outages are no-ops.
pub struct TokenCheck<F>(pub F);

impl<F: Fn(&str) -> bool + Send + Sync + 'static> TokenAuthority for TokenCheck<F> {
    fn is_valid(&self, token: &str) -> bool {
        (self.0)(token)
    }

    fn invalidate_all(&self) {
        tracing::warn!("event sim: token invalidation needs an OAuth sim; ignored");
    }

    fn outage(&self, _requests: usize, _status: u16) {
        tracing::warn!("event sim: OAuth outage needs an OAuth sim; ignored");
    }
}

/// Settings of the simulated event WebSocket.
#[derive(Debug, Clone)]
pub struct EventSimConfig {
    /// The subscription id clients must use; any when `None`.
    pub subscription_id: Option<String>,
    /// A client silent (no heartbeat, no message) this long is dropped.
    pub silence_timeout: Duration,
}

impl Default for EventSimConfig {
    fn default() -> Self {
        Self {
            subscription_id: None,
            silence_timeout: Duration::from_secs(90),
        }
    }
}

/// One event written to a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    /// The payload's top-level `"id"`, or `-`.
    pub id: String,
    /// The event name.
    pub name: String,
}

enum Command {
    Send(String, oneshot::Sender<bool>),
    Drop(oneshot::Sender<()>),
    Close(u16, String, oneshot::Sender<()>),
    Stall(Duration),
}

#[derive(Clone)]
struct Client {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    stalled: Arc<AtomicBool>,
}

struct Inner {
    config: EventSimConfig,
    authority: Arc<dyn TokenAuthority>,
    current: Mutex<Option<Client>>,
    sent: Mutex<Vec<SentEvent>>,
    missed: Mutex<Vec<SentEvent>>,
    attempts: Mutex<Vec<Instant>>,
    refusing: AtomicBool,
    heartbeats: AtomicU64,
    connections: AtomicU64,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulated event WebSocket. Cheap to clone; the listener stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct EventSim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for EventSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSim")
            .field("addr", &self.addr)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl EventSim {
    /// Binds `127.0.0.1:0` and starts accepting; tokens are checked by `authority`.
    pub async fn start(
        config: EventSimConfig,
        authority: Arc<dyn TokenAuthority>,
    ) -> anyhow::Result<EventSim> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the simulated event WebSocket on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("local address of the event sim")?;
        let inner = Arc::new(Inner {
            config,
            authority,
            current: Mutex::new(None),
            sent: Mutex::default(),
            missed: Mutex::default(),
            attempts: Mutex::default(),
            refusing: AtomicBool::new(false),
            heartbeats: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::downgrade(&inner)));
        Ok(EventSim {
            inner,
            addr,
            _stop: Arc::new(StopOnDrop(task.abort_handle())),
        })
    }

    /// The endpoint, e.g. `ws://127.0.0.1:PORT/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Whether a client is connected (accepted and not stalled).
    pub fn is_connected(&self) -> bool {
        self.live_client().is_some()
    }

    /// Waits until a client is connected; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.is_connected() {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Events written to a connected client, in order.
    pub fn sent(&self) -> Vec<SentEvent> {
        lock(&self.inner.sent).clone()
    }

    /// Events pushed while no client was connected (not delivered, as on Zoom).
    pub fn missed(&self) -> Vec<SentEvent> {
        lock(&self.inner.missed).clone()
    }

    /// When each connection attempt (TCP accept) happened.
    pub fn attempts(&self) -> Vec<Instant> {
        lock(&self.inner.attempts).clone()
    }

    /// Successful `build_connection`s so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Heartbeats received so far.
    pub fn heartbeats(&self) -> u64 {
        self.inner.heartbeats.load(Ordering::Relaxed)
    }

    /// While true, every connection is dropped right after the TCP accept.
    pub fn set_refusing(&self, refusing: bool) {
        self.inner.refusing.store(refusing, Ordering::Relaxed);
    }

    fn live_client(&self) -> Option<Client> {
        lock(&self.inner.current)
            .clone()
            .filter(|c| !c.stalled.load(Ordering::Relaxed))
    }

    /// Pushes `{event, event_ts, payload}` to the connected client; true if it was
    /// written (and recorded in [`EventSim::sent`]).
    pub async fn push_event(&self, name: &str, payload: Value) -> bool {
        let body = json!({"event": name, "event_ts": now_ms(), "payload": payload});
        let envelope = json!({"module": "message", "success": true, "content": body.to_string()});
        let record = SentEvent {
            id: payload["id"].as_str().unwrap_or("-").to_string(),
            name: name.to_string(),
        };
        let written = self.push_raw(envelope.to_string()).await;
        let list = if written {
            &self.inner.sent
        } else {
            &self.inner.missed
        };
        lock(list).push(record);
        written
    }

    /// Writes any text frame to the connected client (e.g. a malformed message); true
    /// if written.
    pub async fn push_raw(&self, text: String) -> bool {
        let Some(client) = self.live_client() else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        if client.commands.send(Command::Send(text, tx)).is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(5), rx).await,
            Ok(Ok(true))
        )
    }

    /// Drops the client's TCP connection without a close frame.
    pub async fn drop_connection(&self) {
        self.command(Command::Drop).await;
    }

    /// Closes the client's connection with `code`.
    pub async fn close_connection(&self, code: u16, reason: &str) {
        let reason = reason.to_string();
        self.command(|tx| Command::Close(code, reason, tx)).await;
    }

    /// Stops reading and writing on the client's connection for `duration` (returns at
    /// once; the connection counts as not connected meanwhile).
    pub fn stall(&self, duration: Duration) {
        if let Some(client) = self.live_client() {
            client.stalled.store(true, Ordering::Relaxed);
            let _ = client.commands.send(Command::Stall(duration));
        }
    }

    /// Invalidates every token and closes the live connection as Zoom would for a bad
    /// token (1008 "Token is invalid").
    pub async fn invalidate_token(&self) {
        self.inner.authority.invalidate_all();
        self.close_connection(1008, "Token is invalid").await;
    }

    /// Makes the next `requests` OAuth token requests fail with `status`.
    pub fn oauth_outage(&self, requests: usize, status: u16) {
        self.inner.authority.outage(requests, status);
    }

    async fn command(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let Some(client) = lock(&self.inner.current).clone() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if client.commands.send(make(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        // The connection is gone once the command is done, even if its task has not
        // unregistered it yet.
        let mut current = lock(&self.inner.current);
        if current.as_ref().is_some_and(|c| c.id == client.id) {
            *current = None;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn accept_loop(listener: TcpListener, inner: std::sync::Weak<Inner>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "event sim: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        lock(&inner.attempts).push(Instant::now());
        if inner.refusing.load(Ordering::Relaxed) {
            drop(stream);
            continue;
        }
        tokio::spawn(async move {
            if let Err(e) = serve(stream, inner).await {
                tracing::debug!("event sim: connection ended: {e:#}");
            }
        });
    }
}

type ServerWs = WebSocketStream<TcpStream>;

/// `subscriptionId` and `access_token` from the upgrade request's query.
fn query_params(query: Option<&str>) -> HashMap<String, String> {
    let Some(query) = query else {
        return HashMap::new();
    };
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn serve(stream: TcpStream, inner: Arc<Inner>) -> anyhow::Result<()> {
    let mut query = None;
    // The callback's signature (and its large error type) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        query = request.uri().query().map(str::to_owned);
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .context("WebSocket upgrade")?;
    let params = query_params(query.as_deref());
    if let Some(reason) = rejection(&inner, &params) {
        let envelope = json!({"module": "build_connection", "success": false, "content": reason});
        ws.send(Message::text(envelope.to_string())).await?;
        close(&mut ws, 1000, "").await;
        return Ok(());
    }
    let envelope =
        json!({"module": "build_connection", "success": true, "content": "connection established"});
    ws.send(Message::text(envelope.to_string())).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Client {
        id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        commands: tx,
        stalled: Arc::new(AtomicBool::new(false)),
    };
    let previous = lock(&inner.current).replace(client.clone());
    inner.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(previous) = previous {
        let (done, _) = oneshot::channel();
        let reason = "replaced by a newer connection".to_string();
        let _ = previous.commands.send(Command::Close(1000, reason, done));
    }
    let result = connection_loop(&mut ws, &inner, &client, rx).await;
    let mut current = lock(&inner.current);
    if current.as_ref().is_some_and(|c| c.id == client.id) {
        *current = None;
    }
    result
}

/// Why a connection is refused, as Zoom words it; `None` when it is accepted.
fn rejection(inner: &Inner, params: &HashMap<String, String>) -> Option<&'static str> {
    let token = params.get("access_token").map(String::as_str).unwrap_or("");
    if token.is_empty() {
        return Some("token is empty");
    }
    if !inner.authority.is_valid(token) {
        return Some("Invalid Token");
    }
    let wanted = inner.config.subscription_id.as_deref();
    if wanted.is_some_and(|w| params.get("subscriptionId").map(String::as_str) != Some(w)) {
        return Some("Invalid subscriptionId");
    }
    None
}

async fn connection_loop(
    ws: &mut ServerWs,
    inner: &Inner,
    client: &Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<()> {
    let silence = inner.config.silence_timeout;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            // Reads first: a client that already left must not be counted as reached.
            biased;
            message = ws.next() => {
                let Some(Ok(message)) = message else { return Ok(()) };
                last_heard = tokio::time::Instant::now();
                match message {
                    Message::Text(text) => on_client_text(ws, inner, text.as_str()).await?,
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(()) };
                match command {
                    Command::Send(text, done) => {
                        let ok = ws.send(Message::text(text)).await.is_ok();
                        let _ = done.send(ok);
                    }
                    Command::Drop(done) => {
                        // FIN without a close frame: what a crashed proxy looks like.
                        let _ = ws.get_mut().shutdown().await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    Command::Close(code, reason, done) => {
                        close(ws, code, &reason).await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    Command::Stall(duration) => {
                        tokio::time::sleep(duration).await;
                        client.stalled.store(false, Ordering::Relaxed);
                    }
                }
            }
            _ = tokio::time::sleep_until(last_heard + silence) => {
                close(ws, 1001, "no heartbeat").await;
                return Ok(());
            }
        }
    }
}

async fn on_client_text(ws: &mut ServerWs, inner: &Inner, text: &str) -> anyhow::Result<()> {
    let module = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["module"].as_str().map(str::to_owned));
    if module.as_deref() == Some("heartbeat") {
        inner.heartbeats.fetch_add(1, Ordering::Relaxed);
        let reply = json!({"module": "heartbeat", "success": true, "content": "live"});
        ws.send(Message::text(reply.to_string()))
            .await
            .context("heartbeat reply")?;
    }
    Ok(())
}

/// Sends a close frame and waits (briefly) for the client's answer.
async fn close(ws: &mut ServerWs, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// Payloads and scenarios.

/// Generates realistic Zoom payloads for one meeting (shapes as in the event notes of `zoomhost::zoom` (the client's protocol notes)).
#[derive(Debug, Clone)]
pub struct MeetingGen {
    /// Account id.
    pub account_id: String,
    /// Numeric meeting id.
    pub meeting_id: u64,
    /// Meeting UUID (base64-like, ends with `==`).
    pub uuid: String,
    /// Host user id.
    pub host_id: String,
    /// Meeting topic.
    pub topic: String,
    /// The RTMS stream id used by `meeting.rtms_*`.
    pub rtms_stream_id: String,
    /// `server_urls` of `meeting.rtms_started`.
    pub rtms_server_urls: String,
    /// Whether an `rtms_start` step used `rtms_stream_id` already (the next one gets a
    /// new id).
    rtms_started: bool,
    start_ms: u64,
    participants: HashMap<String, Value>,
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `ms` since the epoch as RFC 3339 UTC with seconds (`2024-05-01T12:00:00Z`).
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

impl MeetingGen {
    /// A meeting with random ids and the given topic.
    pub fn new(topic: &str) -> Self {
        let mut rng = rand::rng();
        Self {
            account_id: random_token(22),
            meeting_id: rng.random_range(80_000_000_000..99_999_999_999),
            uuid: format!("{}==", random_token(22)),
            host_id: random_token(22),
            topic: topic.to_string(),
            rtms_stream_id: random_token(32).to_lowercase(),
            rtms_server_urls: "wss://rtms.zoom.us".to_string(),
            rtms_started: false,
            start_ms: now_ms(),
            participants: HashMap::new(),
        }
    }

    fn object(&self) -> Value {
        json!({
            "id": self.meeting_id,
            "uuid": self.uuid,
            "host_id": self.host_id,
            "topic": self.topic,
            "type": 2,
            "start_time": rfc3339(self.start_ms),
            "timezone": "UTC",
            "duration": 60,
        })
    }

    fn wrap(&self, object: Value) -> Value {
        json!({"account_id": self.account_id, "object": object})
    }

    /// The participant called `name`, created on first use.
    fn participant(&mut self, name: &str) -> Value {
        self.participants
            .entry(name.to_string())
            .or_insert_with(|| {
                let mut rng = rand::rng();
                let email = format!(
                    "{}@example.com",
                    name.to_lowercase().replace(char::is_whitespace, ".")
                );
                json!({
                    "user_id": rng.random_range(16_000_000u32..17_000_000).to_string(),
                    "user_name": name,
                    "participant_user_id": random_token(22),
                    "participant_uuid": random_token(32),
                    "id": random_token(22),
                    "email": email,
                })
            })
            .clone()
    }

    /// The payload of `event` (`participant` names who joins or leaves). Unknown event
    /// names get the meeting object.
    pub fn payload(&mut self, event: &str, participant: Option<&str>) -> Value {
        let now = rfc3339(now_ms());
        match event {
            "meeting.started" => self.wrap(self.object()),
            "meeting.ended" => {
                let mut object = self.object();
                object["end_time"] = json!(now);
                self.wrap(object)
            }
            "meeting.participant_joined" | "meeting.participant_left" => {
                let mut who = self.participant(participant.unwrap_or("Ada Lovelace"));
                if event.ends_with("joined") {
                    who["join_time"] = json!(now);
                } else {
                    who["leave_time"] = json!(now);
                    who["leave_reason"] = json!("left the meeting");
                }
                let mut object = self.object();
                object["participant"] = who;
                self.wrap(object)
            }
            "recording.completed" => self.recording(),
            "meeting.rtms_started" => json!({
                "meeting_uuid": self.uuid,
                "rtms_stream_id": self.rtms_stream_id,
                "server_urls": self.rtms_server_urls,
                "operator_id": self.host_id,
                "account_id": self.account_id,
                "meeting_id": self.meeting_id,
            }),
            "meeting.rtms_stopped" => json!({
                "meeting_uuid": self.uuid,
                "rtms_stream_id": self.rtms_stream_id,
                "stop_reason": 6,
            }),
            _ => self.wrap(self.object()),
        }
    }

    fn recording(&self) -> Value {
        let file_id = random_token(36).to_lowercase();
        let share = format!("https://zoom.us/rec/share/{}", random_token(40));
        let mut object = self.object();
        object["account_id"] = json!(self.account_id);
        object["total_size"] = json!(52_428_800);
        object["recording_count"] = json!(1);
        object["share_url"] = json!(share);
        object["recording_files"] = json!([{
            "id": file_id,
            "meeting_id": self.uuid,
            "recording_start": rfc3339(self.start_ms),
            "recording_end": rfc3339(now_ms()),
            "file_type": "MP4",
            "file_extension": "MP4",
            "file_size": 52_428_800,
            "play_url": format!("https://zoom.us/rec/play/{file_id}"),
            "download_url": format!("https://zoom.us/rec/download/{file_id}"),
            "status": "completed",
            "recording_type": "shared_screen_with_speaker_view",
        }]);
        self.wrap(object)
    }
}

/// A meeting timeline with faults, loaded from TOML or JSON.
///
/// ```toml
/// topic = "Weekly sync"
/// tag_ids = true
/// [[steps]]
/// at_ms = 0
/// kind = "event"
/// event = "meeting.started"
/// [[steps]]
/// at_ms = 500
/// kind = "drop"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The meeting topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Whether each payload carries a unique top-level `"id"` (default true).
    #[serde(default = "default_true")]
    pub tag_ids: bool,
    /// `server_urls` for `meeting.rtms_started`.
    #[serde(default)]
    pub rtms_server_urls: Option<String>,
    /// The timeline, in order.
    pub steps: Vec<Step>,
    /// Where relative paths (`rtms_start`'s `wav`) are resolved: the scenario file's
    /// folder when loaded from a file.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

fn default_topic() -> String {
    "Weekly sync".to_string()
}

fn default_true() -> bool {
    true
}

/// One timeline entry: when (milliseconds after the start) and what.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// Offset from the scenario start; a step never runs before the previous one.
    #[serde(default)]
    pub at_ms: u64,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Push an event with a generated payload.
    Event {
        /// Zoom event name, e.g. `meeting.participant_joined`.
        event: String,
        /// Who joins or leaves (participant events).
        #[serde(default)]
        participant: Option<String>,
    },
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Close with a WebSocket close code.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        #[serde(default)]
        reason: String,
    },
    /// Invalidate every token and close the connection (1008).
    InvalidateToken,
    /// Make the next `requests` OAuth token requests fail.
    OauthOutage {
        /// How many requests fail.
        requests: usize,
        /// Status they get (default 503).
        #[serde(default = "default_outage_status")]
        status: u16,
    },
    /// Neither read nor write for `ms`.
    Stall {
        /// Stall length.
        ms: u64,
    },
    /// Wait (up to `timeout_ms`) until a client is connected again.
    WaitConnected {
        /// Longest wait (default 10 s).
        #[serde(default = "default_wait_ms")]
        timeout_ms: u64,
    },
    /// Register an RTMS stream for the meeting in the attached [`RtmsSim`] and push
    /// `meeting.rtms_started` (flat payload: `meeting_uuid`, `rtms_stream_id`,
    /// `server_urls` = the signaling URL, `operator_id`, `account_id`, `meeting_id`).
    RtmsStart(RtmsStartStep),
    /// Run the current RTMS stream's stop sequence (if it still runs) and push
    /// `meeting.rtms_stopped` with `stop_reason`.
    RtmsStop {
        /// The stop reason (default 6, meeting ended).
        #[serde(default = "default_stop_reason")]
        stop_reason: u32,
    },
    /// Wait until the current RTMS stream's client is ready, or the stream is done.
    RtmsWait {
        /// What to wait for (default `done`).
        #[serde(default)]
        until: RtmsWaitFor,
        /// Longest wait (default 60 s).
        #[serde(default = "default_rtms_wait_ms")]
        timeout_ms: u64,
    },
}

/// What `rtms_wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtmsWaitFor {
    /// The client sent `CLIENT_READY_ACK`.
    Ready,
    /// Every frame was sent and the stop sequence ran (or the stream was given up).
    #[default]
    Done,
}

/// The stream an `rtms_start` step registers (see [`StreamSpec`] for the meaning of
/// each field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmsStartStep {
    /// Who is in the stream: names (the meeting's people, with the user ids their
    /// participant events carry) or a count. Default: everyone the scenario has named so
    /// far, or two people.
    #[serde(default)]
    pub participants: Option<RtmsParticipants>,
    /// Audio frames per source (default 500: 10 s at 20 ms).
    #[serde(default = "default_rtms_frames")]
    pub frames: u32,
    /// `real_time` (default) or `fast`.
    #[serde(default)]
    pub pace: rtms::Pace,
    /// A transcript segment every N frames (0: none).
    #[serde(default)]
    pub transcript_every: u32,
    /// `as_requested` (default), `mixed` or `per_speaker`.
    #[serde(default)]
    pub data_opt: rtms::DataOpt,
    /// A 16-bit PCM WAV to stream instead of tones (relative to the scenario file).
    #[serde(default)]
    pub wav: Option<PathBuf>,
    /// `after_frames` (default: stop sequence when every frame was sent) or `hold`.
    #[serde(default)]
    pub end: rtms::End,
    /// Stop reason of `after_frames` (default 6).
    #[serde(default = "default_stop_reason")]
    pub stop_reason: u32,
    /// Re-send the last N frames after a resumed media handshake.
    #[serde(default)]
    pub resend_on_resume: u32,
    /// Video messages to interleave.
    #[serde(default)]
    pub video: u32,
    /// Share messages to interleave.
    #[serde(default)]
    pub share: u32,
    /// Chat messages to interleave.
    #[serde(default)]
    pub chat: u32,
    /// Fields merged over the confirmed audio params, e.g. `{ sample_rate = 3 }`.
    #[serde(default)]
    pub confirm_audio: Option<Value>,
    /// Faults after given audio frames.
    #[serde(default)]
    pub faults: Vec<RtmsFaultStep>,
    /// Record every sent item (default true).
    #[serde(default = "default_true")]
    pub record: bool,
}

/// `participants` of `rtms_start`: names, or how many.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RtmsParticipants {
    /// That many people (canned names).
    Count(u32),
    /// These people.
    Names(Vec<String>),
}

/// One fault of `rtms_start`: `{ after_frame = N, fault = "drop_media" }`.
#[derive(Debug, Clone, Deserialize)]
pub struct RtmsFaultStep {
    /// The audio frame (0-based) after which it fires.
    pub after_frame: u32,
    /// What happens.
    #[serde(flatten)]
    pub fault: RtmsFaultSpec,
}

/// The faults of [`rtms::Fault`], as scenario files write them.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum RtmsFaultSpec {
    /// Abrupt drop of the media sockets.
    DropMedia,
    /// Abrupt drop of the signaling socket.
    DropSignaling,
    /// Close the media sockets with `code` (default 1000).
    CloseMedia {
        /// Close code.
        #[serde(default = "default_close_code")]
        code: u16,
    },
    /// Close the signaling socket with `code` (default 1000).
    CloseSignaling {
        /// Close code.
        #[serde(default = "default_close_code")]
        code: u16,
    },
    /// Refuse the next handshake with `status`.
    Reject {
        /// The status code.
        status: u32,
    },
    /// Neither read nor write for `ms`.
    Stall {
        /// Stall length.
        ms: u64,
    },
    /// Paused for `ms`, then resumed.
    Pause {
        /// Pause length.
        ms: u64,
    },
    /// Stop sequence with `reason`.
    Stop {
        /// Stop reason.
        reason: u32,
    },
}

impl From<&RtmsFaultSpec> for rtms::Fault {
    fn from(spec: &RtmsFaultSpec) -> Self {
        match *spec {
            RtmsFaultSpec::DropMedia => rtms::Fault::DropMedia,
            RtmsFaultSpec::DropSignaling => rtms::Fault::DropSignaling,
            RtmsFaultSpec::CloseMedia { code } => rtms::Fault::CloseMedia(code),
            RtmsFaultSpec::CloseSignaling { code } => rtms::Fault::CloseSignaling(code),
            RtmsFaultSpec::Reject { status } => rtms::Fault::Reject(status),
            RtmsFaultSpec::Stall { ms } => rtms::Fault::Stall(Duration::from_millis(ms)),
            RtmsFaultSpec::Pause { ms } => rtms::Fault::Pause(Duration::from_millis(ms)),
            RtmsFaultSpec::Stop { reason } => rtms::Fault::Stop(reason),
        }
    }
}

fn default_stop_reason() -> u32 {
    6
}

fn default_rtms_wait_ms() -> u64 {
    60_000
}

fn default_rtms_frames() -> u32 {
    500
}

fn default_close_code() -> u16 {
    1000
}

/// Names for `participants = N`.
const CANNED_NAMES: [&str; 8] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
];

fn default_outage_status() -> u16 {
    503
}

fn default_wait_ms() -> u64 {
    10_000
}

/// What a scenario run did.
#[derive(Debug, Clone, Default)]
pub struct ScenarioReport {
    /// Events written to a connected client.
    pub sent: Vec<SentEvent>,
    /// Events pushed while nobody was connected.
    pub missed: Vec<SentEvent>,
    /// Fault steps run.
    pub faults: usize,
    /// RTMS streams registered by `rtms_start` steps, in order.
    pub rtms_streams: Vec<Arc<SimStream>>,
}

/// The RTMS side of a scenario run.
struct RtmsRun<'a> {
    sim: Option<&'a RtmsSim>,
    current: Option<Arc<SimStream>>,
    started: Vec<Arc<SimStream>>,
}

impl Scenario {
    /// Parses TOML, or JSON when the text starts with `{`.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).context("scenario JSON")
        } else {
            toml::from_str(text).context("scenario TOML")
        }
    }

    /// Loads a scenario file (`.json` or TOML).
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let mut scenario =
            Self::parse(&text).with_context(|| format!("scenario {}", path.display()))?;
        scenario.base_dir = path.parent().map(Path::to_path_buf);
        Ok(scenario)
    }

    /// Whether a step needs an [`RtmsSim`] ([`Scenario::run_with`]).
    pub fn uses_rtms(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.action,
                Action::RtmsStart(_) | Action::RtmsStop { .. } | Action::RtmsWait { .. }
            )
        })
    }

    /// Plays the timeline against `sim` (no RTMS: `rtms_*` steps fail).
    pub async fn run(&self, sim: &EventSim) -> anyhow::Result<ScenarioReport> {
        self.run_with(sim, None).await
    }

    /// Plays the timeline against `sim`, with `rtms` serving the `rtms_*` steps.
    pub async fn run_with(
        &self,
        sim: &EventSim,
        rtms: Option<&RtmsSim>,
    ) -> anyhow::Result<ScenarioReport> {
        let mut rtms = RtmsRun {
            sim: rtms,
            current: None,
            started: Vec::new(),
        };
        let mut meeting = MeetingGen::new(&self.topic);
        if let Some(urls) = &self.rtms_server_urls {
            meeting.rtms_server_urls.clone_from(urls);
        }
        let start = tokio::time::Instant::now();
        let mut report = ScenarioReport::default();
        let mut sent_before = sim.sent().len();
        let mut missed_before = sim.missed().len();
        for (n, step) in self.steps.iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
            if self
                .play(sim, &mut meeting, &mut rtms, &step.action, n)
                .await?
            {
                report.faults += 1;
            }
        }
        report.rtms_streams = rtms.started;
        let sent = sim.sent();
        let missed = sim.missed();
        sent_before = sent_before.min(sent.len());
        missed_before = missed_before.min(missed.len());
        report.sent = sent[sent_before..].to_vec();
        report.missed = missed[missed_before..].to_vec();
        Ok(report)
    }

    /// Runs one step; true if it was a fault.
    async fn play(
        &self,
        sim: &EventSim,
        meeting: &mut MeetingGen,
        rtms: &mut RtmsRun<'_>,
        action: &Action,
        n: usize,
    ) -> anyhow::Result<bool> {
        match action {
            Action::Event { event, participant } => {
                let mut payload = meeting.payload(event, participant.as_deref());
                self.tag(&mut payload, n);
                sim.push_event(event, payload).await;
                return Ok(false);
            }
            Action::Drop => sim.drop_connection().await,
            Action::Close { code, reason } => sim.close_connection(*code, reason).await,
            Action::InvalidateToken => sim.invalidate_token().await,
            Action::OauthOutage { requests, status } => sim.oauth_outage(*requests, *status),
            Action::Stall { ms } => sim.stall(Duration::from_millis(*ms)),
            Action::WaitConnected { timeout_ms } => {
                let timeout = Duration::from_millis(*timeout_ms);
                anyhow::ensure!(
                    sim.wait_connected(timeout).await,
                    "step {}: no client connected within {timeout_ms} ms",
                    n + 1
                );
                return Ok(false);
            }
            Action::RtmsStart(start) => {
                let Some(rtms_sim) = rtms.sim else {
                    anyhow::bail!(
                        "step {}: rtms_start needs an RTMS simulator (Scenario::run_with)",
                        n + 1
                    );
                };
                let stream = self
                    .rtms_start(rtms_sim, meeting, start)
                    .with_context(|| format!("step {}: rtms_start", n + 1))?;
                let mut payload = meeting.payload("meeting.rtms_started", None);
                self.tag(&mut payload, n);
                sim.push_event("meeting.rtms_started", payload).await;
                rtms.current = Some(stream.clone());
                rtms.started.push(stream);
                return Ok(false);
            }
            Action::RtmsStop { stop_reason } => {
                let stream = rtms
                    .current
                    .as_ref()
                    .with_context(|| format!("step {}: rtms_stop before any rtms_start", n + 1))?;
                stream.stop(*stop_reason).await;
                let mut payload = meeting.payload("meeting.rtms_stopped", None);
                payload["stop_reason"] = json!(stop_reason);
                self.tag(&mut payload, n);
                sim.push_event("meeting.rtms_stopped", payload).await;
                return Ok(false);
            }
            Action::RtmsWait { until, timeout_ms } => {
                let stream = rtms
                    .current
                    .as_ref()
                    .with_context(|| format!("step {}: rtms_wait before any rtms_start", n + 1))?;
                let timeout = Duration::from_millis(*timeout_ms);
                let reached = match until {
                    RtmsWaitFor::Ready => stream.wait_ready(timeout).await,
                    RtmsWaitFor::Done => stream.wait_done(timeout).await,
                };
                anyhow::ensure!(
                    reached,
                    "step {}: RTMS stream {} not {until:?} within {timeout_ms} ms",
                    n + 1,
                    stream.stream_id()
                );
                return Ok(false);
            }
        }
        tracing::info!("event sim: fault {action:?}");
        Ok(true)
    }

    fn tag(&self, payload: &mut Value, n: usize) {
        if self.tag_ids {
            payload["id"] = json!(format!("evt-{:04}", n + 1));
        }
    }

    /// Registers the stream of an `rtms_start` step for the meeting; the meeting's
    /// `rtms_*` payloads then name it.
    fn rtms_start(
        &self,
        rtms: &RtmsSim,
        meeting: &mut MeetingGen,
        start: &RtmsStartStep,
    ) -> anyhow::Result<Arc<SimStream>> {
        if meeting.rtms_started {
            meeting.rtms_stream_id = random_token(32).to_lowercase();
        }
        meeting.rtms_started = true;
        meeting.rtms_server_urls = rtms.signaling_url();
        let names: Vec<String> = match &start.participants {
            Some(RtmsParticipants::Names(names)) => names.clone(),
            Some(RtmsParticipants::Count(count)) => (0..*count as usize)
                .map(|i| match CANNED_NAMES.get(i) {
                    Some(name) => name.to_string(),
                    None => format!("Participant {}", i + 1),
                })
                .collect(),
            None => {
                let mut known: Vec<String> = meeting.participants.keys().cloned().collect();
                known.sort();
                if known.is_empty() {
                    known = CANNED_NAMES[..2].iter().map(|s| s.to_string()).collect();
                }
                known
            }
        };
        let participants = names
            .iter()
            .map(|name| {
                let who = meeting.participant(name);
                let user_id = who["user_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or(16_000_000);
                SimParticipant::new(user_id, name.clone())
            })
            .collect();
        let audio = match &start.wav {
            Some(path) => {
                let path = match &self.base_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path.clone(),
                };
                rtms::AudioSource::Wav(path)
            }
            None => rtms::AudioSource::Tone,
        };
        let spec = StreamSpec {
            meeting_uuid: meeting.uuid.clone(),
            stream_id: meeting.rtms_stream_id.clone(),
            participants,
            frames: start.frames,
            pace: start.pace,
            audio,
            data_opt: start.data_opt,
            transcript_every: start.transcript_every,
            confirm_audio: start.confirm_audio.clone(),
            faults: start
                .faults
                .iter()
                .map(|f| (f.after_frame, (&f.fault).into()))
                .collect(),
            resend_on_resume: start.resend_on_resume,
            end: start.end,
            stop_reason: start.stop_reason,
            extra: rtms::ExtraMedia {
                video: start.video,
                share: start.share,
                chat: start.chat,
            },
            record: start.record,
        };
        rtms.try_add_stream(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_sample_scenario_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/scenario.toml");
        let scenario = Scenario::load(&path).unwrap();
        assert!(scenario.steps.len() > 5);
        assert!(!scenario.uses_rtms());
    }

    #[test]
    fn the_rtms_sample_scenario_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rtms-meeting.toml");
        let scenario = Scenario::load(&path).unwrap();
        assert!(scenario.uses_rtms());
        assert_eq!(scenario.base_dir.as_deref(), path.parent());
        let start = scenario
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::RtmsStart(start) => Some(start),
                _ => None,
            })
            .unwrap();
        assert_eq!(start.frames, 1000);
        assert_eq!(start.transcript_every, 100);
        assert_eq!(start.pace, rtms::Pace::RealTime);
        // Faults and WAV sources parse too.
        let scenario = Scenario::parse(
            r#"
            [[steps]]
            kind = "rtms_start"
            participants = 2
            wav = "rtms-chime.wav"
            faults = [{ after_frame = 3, fault = "reject", status = 42 },
                      { after_frame = 5, fault = "close_media" },
                      { after_frame = 9, fault = "stall", ms = 20 }]
            "#,
        )
        .unwrap();
        let Action::RtmsStart(start) = &scenario.steps[0].action else {
            panic!("rtms_start");
        };
        let faults: Vec<rtms::Fault> = start.faults.iter().map(|f| (&f.fault).into()).collect();
        assert_eq!(
            faults,
            vec![
                rtms::Fault::Reject(42),
                rtms::Fault::CloseMedia(1000),
                rtms::Fault::Stall(Duration::from_millis(20))
            ]
        );
        assert!(Scenario::parse("[[steps]]\nkind = \"rtms_start\"\nframez = 3").is_err());
    }

    /// The next event pushed to a raw event WebSocket client: (name, payload).
    async fn next_event(ws: &mut crate::rtms::tests::Ws) -> (String, Value) {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an event in time")
                .expect("open")
                .expect("a frame");
            let Message::Text(text) = message else {
                continue;
            };
            let envelope: Value = serde_json::from_str(text.as_str()).unwrap();
            if envelope["module"] != "message" {
                continue;
            }
            let body: Value = serde_json::from_str(envelope["content"].as_str().unwrap()).unwrap();
            return (
                body["event"].as_str().unwrap().to_string(),
                body["payload"].clone(),
            );
        }
    }

    #[tokio::test]
    async fn an_rtms_scenario_announces_streams_a_client_can_join() {
        use crate::rtms::tests as client;
        let authority = Arc::new(TokenCheck(|t: &str| t == "tok"));
        let sim = EventSim::start(EventSimConfig::default(), authority)
            .await
            .unwrap();
        let rtms = client::sim(|_| {}).await;
        let scenario = Scenario::parse(
            r#"
            topic = "RTMS test"
            [[steps]]
            kind = "wait_connected"
            [[steps]]
            kind = "event"
            event = "meeting.participant_joined"
            participant = "Grace Hopper"
            [[steps]]
            kind = "rtms_start"
            participants = ["Ada Lovelace", "Grace Hopper"]
            frames = 10
            pace = "fast"
            transcript_every = 5
            faults = [{ after_frame = 4, fault = "drop_media" }]
            [[steps]]
            kind = "rtms_wait"
            [[steps]]
            kind = "rtms_stop"
            "#,
        )
        .unwrap();
        let alone = Scenario::parse("[[steps]]\nkind = \"rtms_start\"").unwrap();
        let err = alone
            .run(&sim)
            .await
            .expect_err("no RTMS simulator attached");
        assert!(
            format!("{err:#}").contains("needs an RTMS simulator"),
            "{err:#}"
        );
        let url = format!("{}?subscriptionId=s&access_token=tok", sim.url());
        let (mut events, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let run = {
            let (sim, rtms) = (sim.clone(), rtms.clone());
            tokio::spawn(async move { scenario.run_with(&sim, Some(&rtms)).await })
        };
        let (name, joined) = next_event(&mut events).await;
        assert_eq!(name, "meeting.participant_joined");
        let (name, started) = next_event(&mut events).await;
        assert_eq!(name, "meeting.rtms_started");
        assert_eq!(started["meeting_uuid"], joined["object"]["uuid"]);
        assert_eq!(started["server_urls"], rtms.signaling_url());
        assert_eq!(started["meeting_id"], joined["object"]["id"]);
        assert_eq!(started["account_id"], joined["account_id"]);
        assert!(started["operator_id"].is_string());
        let stream_id = started["rtms_stream_id"].as_str().unwrap();
        let stream = rtms.stream(stream_id).unwrap();
        assert_eq!(stream.meeting_uuid(), started["meeting_uuid"]);
        let grace = joined["object"]["participant"]["user_id"].as_str().unwrap();
        assert_eq!(stream.participants()[1].user_id.to_string(), grace);

        let (mut sig, reply) = client::signaling(&rtms, &stream, true).await;
        let url = client::url_of(&reply, "audio");
        let params = json!({"audio": client::audio_params()});
        let (audio, _) = client::media(&url, &rtms, &stream, 1, params, true).await;
        sig.send(json!({"msg_type": 7})).await;
        let sig_reader = tokio::spawn(sig.drain());
        let (frames, _, ended) = client::read_with_resume(&rtms, &stream, &url, 1, audio).await;
        assert_eq!(ended, Some(client::Ended::Close(Some(1000))));
        assert_eq!(frames.len(), 10);
        sig_reader.await.unwrap();

        let report = run.await.unwrap().unwrap();
        assert_eq!(report.rtms_streams.len(), 1);
        assert_eq!(report.rtms_streams[0].stream_id(), stream_id);
        let (name, stopped) = next_event(&mut events).await;
        assert_eq!(name, "meeting.rtms_stopped");
        assert_eq!(stopped["rtms_stream_id"], stream_id);
        assert_eq!(stopped["stop_reason"], 6);
        assert_eq!(
            stream.stats().outcome,
            Some(rtms::StreamOutcome::Completed { reason: 6 })
        );
    }
}
