//! The event WebSocket server: connections, the token check, heartbeats, faults, and the
//! record of what was sent.

use crate::oauth::OAuthSim;
use crate::util::lock;
use crate::util::now_ms;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use zoomhost_protocol::event_socket;

/// How the server closes a connection whose token expired. Zoom publishes no close
/// codes for this socket; the simulator uses a policy-violation close naming the token.
pub const TOKEN_EXPIRED_CLOSE: (u16, &str) = (1008, "Token has expired");

/// Who decides whether a token is good, and how token faults are injected.
pub trait TokenAuthority: Send + Sync + 'static {
    /// Whether `token` is currently valid.
    fn is_valid(&self, token: &str) -> bool;
    /// Makes every issued token invalid.
    fn invalidate_all(&self);
    /// Makes the next `requests` token requests fail with `status`.
    fn outage(&self, requests: usize, status: u16);
    /// When `token` expires (a connection using it is closed then); `None` when unknown.
    fn expires_at(&self, _token: &str) -> Option<Instant> {
        None
    }
    /// Makes `token` expire now.
    fn expire(&self, _token: &str) {}
    /// Every token request fails with `status` for `duration`.
    fn outage_for(&self, _duration: Duration, _status: u16) {
        tracing::warn!("event sim: a timed OAuth outage needs an OAuth sim; ignored");
    }
    /// Tokens issued from now on live `seconds`.
    fn set_token_lifetime(&self, _seconds: u64) {
        tracing::warn!("event sim: token lifetimes need an OAuth sim; ignored");
    }
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

    fn expires_at(&self, token: &str) -> Option<Instant> {
        OAuthSim::expires_at(self, token)
    }

    fn expire(&self, token: &str) {
        OAuthSim::expire(self, token);
    }

    fn outage_for(&self, duration: Duration, status: u16) {
        self.fail_for(duration, status);
    }

    fn set_token_lifetime(&self, seconds: u64) {
        self.set_expires_in(seconds);
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
    /// Close a connection when its token expires ([`TOKEN_EXPIRED_CLOSE`]); needs a
    /// [`TokenAuthority`] that knows expiries (the [`OAuthSim`]).
    pub close_at_token_expiry: bool,
}

impl Default for EventSimConfig {
    fn default() -> Self {
        Self {
            subscription_id: None,
            silence_timeout: Duration::from_secs(90),
            close_at_token_expiry: true,
        }
    }
}

/// One event the simulator delivered (on the WebSocket, or as a webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEvent {
    /// The payload's top-level `"id"`, or `-`.
    pub id: String,
    /// The event name.
    pub name: String,
    /// The content-derived identity a receiver computes for it
    /// (`zoomhost_protocol::event_id` over name, `event_ts` and payload).
    pub event_id: String,
    /// Its `event_ts`, in milliseconds.
    pub event_ts: u64,
}

/// Why a connection ended, as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client sent a close frame.
    ClientClosed,
    /// The client went away without a close frame.
    ClientGone,
    /// Dropped by a fault (no close frame).
    Dropped,
    /// Closed by a fault with this code.
    Closed(u16),
    /// Closed because its token expired ([`TOKEN_EXPIRED_CLOSE`]).
    TokenExpired,
    /// Closed because the client was silent too long.
    SilenceTimeout,
    /// Closed because a newer connection for the subscription arrived.
    Replaced,
}

/// One accepted connection (`build_connection` succeeded), from open to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Its number, from 1.
    pub id: u64,
    /// Which token it used: `t1`, `t2`, ... in order of first use (not the secret).
    pub token: String,
    /// When it was accepted.
    pub opened: Instant,
    /// When it ended (`None` while open).
    pub closed: Option<Instant>,
    /// Why it ended (`None` while open).
    pub ended: Option<ConnectionEnd>,
    /// Whether it was stalled at some point.
    pub stalled: bool,
}

enum Command {
    Send(String, oneshot::Sender<bool>),
    Drop(oneshot::Sender<()>),
    Close(u16, String, ConnectionEnd, oneshot::Sender<()>),
    Stall(Duration),
}

#[derive(Clone)]
struct Client {
    id: u64,
    token: String,
    commands: mpsc::UnboundedSender<Command>,
    stalled: Arc<AtomicBool>,
}

struct Inner {
    config: EventSimConfig,
    authority: Arc<dyn TokenAuthority>,
    current: Mutex<Option<Client>>,
    sent: Mutex<Vec<SentEvent>>,
    missed: Mutex<Vec<SentEvent>>,
    webhooked: Mutex<Vec<SentEvent>>,
    webhook: Mutex<Option<crate::webhook::WebhookSender>>,
    log: Mutex<Vec<ConnectionRecord>>,
    token_labels: Mutex<HashMap<String, usize>>,
    attempts: Mutex<Vec<Instant>>,
    refusing: AtomicBool,
    heartbeats: AtomicU64,
    connections: AtomicU64,
    next_id: AtomicU64,
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
            webhooked: Mutex::default(),
            webhook: Mutex::default(),
            log: Mutex::default(),
            token_labels: Mutex::default(),
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

    /// Events also delivered as webhooks ([`EventSim::mirror_to_webhook`]) and answered
    /// 2xx, in order.
    pub fn webhooked(&self) -> Vec<SentEvent> {
        lock(&self.inner.webhooked).clone()
    }

    /// Every accepted connection so far, in order, with why it ended.
    pub fn connection_log(&self) -> Vec<ConnectionRecord> {
        lock(&self.inner.log).clone()
    }

    /// From now on, every pushed event is also posted as a webhook through `sender`
    /// (the same `{event, event_ts, payload}`, whether or not a client is connected), as
    /// Zoom does for an app subscribed both ways; `None` stops it.
    pub fn mirror_to_webhook(&self, sender: Option<crate::webhook::WebhookSender>) {
        *lock(&self.inner.webhook) = sender;
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
        self.push_event_at(name, now_ms(), payload).await
    }

    /// [`EventSim::push_event`] with a given `event_ts` (milliseconds). With a webhook
    /// mirror set, the same event is then posted as a webhook too.
    pub async fn push_event_at(&self, name: &str, event_ts: u64, payload: Value) -> bool {
        let envelope = event_socket::message(name, event_ts, &payload);
        let record = SentEvent {
            id: payload["id"].as_str().unwrap_or("-").to_string(),
            name: name.to_string(),
            event_id: zoomhost_protocol::event_id(name, event_ts, &payload),
            event_ts,
        };
        let written = self.push_raw(envelope.to_string()).await;
        let list = if written {
            &self.inner.sent
        } else {
            &self.inner.missed
        };
        lock(list).push(record.clone());
        let mirror = lock(&self.inner.webhook).clone();
        if let Some(sender) = mirror {
            let body = crate::webhook::WebhookSender::event_body(name, event_ts, &payload);
            let options = crate::webhook::SendOptions::default();
            match sender.send_raw(body, &options).await {
                Ok(sent) if (200..300).contains(&sent.status) => {
                    lock(&self.inner.webhooked).push(record);
                }
                Ok(sent) => tracing::warn!(
                    status = sent.status,
                    "event sim: webhook copy of {name} not accepted"
                ),
                Err(e) => tracing::warn!("event sim: webhook copy of {name} failed: {e:#}"),
            }
        }
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
        self.command(|tx| Command::Close(code, reason, ConnectionEnd::Closed(code), tx))
            .await;
    }

    /// Expires the live connection's token now and closes the connection as at expiry
    /// ([`TOKEN_EXPIRED_CLOSE`]); other tokens (a fresh one the client fetched ahead)
    /// stay valid.
    pub async fn expire_token(&self) {
        let Some(client) = lock(&self.inner.current).clone() else {
            return;
        };
        self.inner.authority.expire(&client.token);
        let (code, reason) = TOKEN_EXPIRED_CLOSE;
        self.command(|tx| Command::Close(code, reason.into(), ConnectionEnd::TokenExpired, tx))
            .await;
    }

    /// Every OAuth token request fails with `status` for `duration`.
    pub fn oauth_outage_for(&self, duration: Duration, status: u16) {
        self.inner.authority.outage_for(duration, status);
    }

    /// Tokens issued from now on live `seconds` (e.g. 2 s tokens for a storm).
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.inner.authority.set_token_lifetime(seconds);
    }

    /// Stops reading and writing on the client's connection for `duration` (returns at
    /// once; the connection counts as not connected meanwhile).
    pub fn stall(&self, duration: Duration) {
        if let Some(client) = self.live_client() {
            client.stalled.store(true, Ordering::Relaxed);
            if let Some(record) = lock(&self.inner.log).iter_mut().find(|r| r.id == client.id) {
                record.stalled = true;
            }
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
        ws.send(Message::text(event_socket::build_connection(Err(reason))))
            .await?;
        close(&mut ws, 1000, "").await;
        return Ok(());
    }
    ws.send(Message::text(event_socket::build_connection(Ok(()))))
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let token = params.get("access_token").cloned().unwrap_or_default();
    let client = Client {
        id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        token,
        commands: tx,
        stalled: Arc::new(AtomicBool::new(false)),
    };
    let label = {
        let mut labels = lock(&inner.token_labels);
        let next = labels.len() + 1;
        format!("t{}", *labels.entry(client.token.clone()).or_insert(next))
    };
    lock(&inner.log).push(ConnectionRecord {
        id: client.id,
        token: label,
        opened: Instant::now(),
        closed: None,
        ended: None,
        stalled: false,
    });
    let previous = lock(&inner.current).replace(client.clone());
    inner.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(previous) = previous {
        let (done, _) = oneshot::channel();
        let reason = "replaced by a newer connection".to_string();
        let _ = previous
            .commands
            .send(Command::Close(1000, reason, ConnectionEnd::Replaced, done));
    }
    let result = connection_loop(&mut ws, &inner, &client, rx).await;
    let end = match &result {
        Ok(end) => *end,
        Err(_) => ConnectionEnd::ClientGone,
    };
    if let Some(record) = lock(&inner.log).iter_mut().find(|r| r.id == client.id) {
        record.closed = Some(Instant::now());
        record.ended = Some(end);
    }
    let mut current = lock(&inner.current);
    if current.as_ref().is_some_and(|c| c.id == client.id) {
        *current = None;
    }
    result.map(|_| ())
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
) -> anyhow::Result<ConnectionEnd> {
    let silence = inner.config.silence_timeout;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        // Looked up each time: a token can be expired early (`expire_token`).
        let expiry = inner
            .config
            .close_at_token_expiry
            .then(|| inner.authority.expires_at(&client.token))
            .flatten()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            // Reads first: a client that already left must not be counted as reached.
            biased;
            message = ws.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    _ => return Ok(ConnectionEnd::ClientGone),
                };
                last_heard = tokio::time::Instant::now();
                match message {
                    Message::Text(text) => on_client_text(ws, inner, text.as_str()).await?,
                    Message::Close(_) => return Ok(ConnectionEnd::ClientClosed),
                    _ => {}
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ok(ConnectionEnd::ClientGone) };
                match command {
                    Command::Send(text, done) => {
                        let ok = ws.send(Message::text(text)).await.is_ok();
                        let _ = done.send(ok);
                    }
                    Command::Drop(done) => {
                        // FIN without a close frame: what a crashed proxy looks like.
                        let _ = ws.get_mut().shutdown().await;
                        let _ = done.send(());
                        return Ok(ConnectionEnd::Dropped);
                    }
                    Command::Close(code, reason, end, done) => {
                        close(ws, code, &reason).await;
                        let _ = done.send(());
                        return Ok(end);
                    }
                    Command::Stall(duration) => {
                        tokio::time::sleep(duration).await;
                        client.stalled.store(false, Ordering::Relaxed);
                    }
                }
            }
            _ = tokio::time::sleep_until(last_heard + silence) => {
                close(ws, 1001, "no heartbeat").await;
                return Ok(ConnectionEnd::SilenceTimeout);
            }
            _ = sleep_until_some(expiry) => {
                let (code, reason) = TOKEN_EXPIRED_CLOSE;
                close(ws, code, reason).await;
                return Ok(ConnectionEnd::TokenExpired);
            }
        }
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn on_client_text(ws: &mut ServerWs, inner: &Inner, text: &str) -> anyhow::Result<()> {
    if event_socket::is_heartbeat(text) {
        inner.heartbeats.fetch_add(1, Ordering::Relaxed);
        ws.send(Message::text(event_socket::heartbeat_reply()))
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
