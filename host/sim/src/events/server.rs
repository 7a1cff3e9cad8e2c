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
        let envelope = event_socket::message(name, now_ms(), &payload);
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
