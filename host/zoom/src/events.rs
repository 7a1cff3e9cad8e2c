//! The Zoom event WebSocket client (see the event WebSocket notes in the crate docs).
//!
//! One connection at a time to `{ws_url}?subscriptionId=SUB&access_token=TOKEN`. Every
//! server message is an envelope `{module, success, content, header}`:
//! `build_connection` says whether the token was accepted, `heartbeat` answers our
//! `{"module":"heartbeat"}`, and `message` carries an event whose `content` is a JSON
//! *string* holding `{event, event_ts, payload}`. Events go to the input sink as
//! [`EventSource::Websocket`] events with the payload as JSON text.
//!
//! The connection is declared dead after `silence_timeout` without any message from the
//! server, and re-opened with capped exponential backoff plus jitter (reset after a
//! healthy period). A rejected token (failed `build_connection`, an auth-related close, or
//! an HTTP 401/403 on the upgrade) is invalidated so the next attempt fetches a fresh one.
//! Before the token expires the client closes the connection (1000) and opens a new one
//! with a fresh token: never two at once, because Zoom closes the older connection anyway.
//!
//! Secrets: the URL carrying the token is only ever logged as `access_token=<redacted>`,
//! and error texts are scrubbed of the token before they are logged.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use backon::BackoffBuilder;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zoomhost_protocol::event_socket::{self, Envelope, EventBody};

use crate::{AccessToken, TokenSource};
use zoomhost_types::InputSink;
use zoomhost_types::{Event, EventSource};

/// The longest excerpt of a malformed message that is logged.
const EXCERPT_CHARS: usize = 120;

/// How long a closing connection is read for messages still in flight.
const CLOSE_DRAIN_MAX: Duration = Duration::from_secs(1);

/// Settings of the event WebSocket client. Every timing is configurable so tests can
/// run with short ones.
#[derive(Debug, Clone, PartialEq)]
pub struct EventStreamConfig {
    /// Endpoint without query, e.g. `wss://ws.zoom.us/ws`.
    pub ws_url: String,
    /// The event subscription id (`subscriptionId` in the query).
    pub subscription_id: String,
    /// How often `{"module":"heartbeat"}` is sent (Zoom: 30 s).
    pub heartbeat: Duration,
    /// Silence from the server after which the connection is declared dead (45 s).
    pub silence_timeout: Duration,
    /// First reconnect delay (before jitter).
    pub backoff_min: Duration,
    /// Longest reconnect delay, jitter included.
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub healthy_after: Duration,
    /// How long before the token expires the connection is renewed with a fresh token
    /// (clamped to half the token's remaining lifetime).
    pub token_refresh_margin: Duration,
    /// Limit for the TCP/TLS/WebSocket handshake.
    pub connect_timeout: Duration,
}

impl EventStreamConfig {
    /// Production defaults for `subscription_id` on `ws_url`.
    pub fn new(ws_url: impl Into<String>, subscription_id: impl Into<String>) -> Self {
        Self {
            ws_url: ws_url.into(),
            subscription_id: subscription_id.into(),
            heartbeat: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(45),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            token_refresh_margin: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// A fresh reconnect schedule: doubling from `backoff_min`, jitter adding up to 100%,
    /// never above `backoff_max`.
    fn backoff(&self) -> impl Iterator<Item = Duration> + Send {
        let max = self.backoff_max.max(self.backoff_min);
        let base_cap = (max / 2).max(self.backoff_min);
        let cap = max;
        crate::retry::doubling(self.backoff_min, base_cap)
            .with_jitter()
            .build()
            .map(move |d| d.min(cap))
    }
}

/// Where the client is, published on a watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started yet.
    Idle,
    /// Fetching a token / opening the socket.
    Connecting,
    /// `build_connection` succeeded; events flow.
    Connected,
    /// Waiting before the next attempt.
    Reconnecting {
        /// How long until the next attempt.
        delay: Duration,
        /// Why the previous connection ended.
        reason: String,
    },
    /// Shut down.
    Stopped,
}

/// Counters of one client, readable while it runs.
#[derive(Debug, Default)]
pub struct EventStreamStats {
    attempts: AtomicU64,
    connects: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeat_replies: AtomicU64,
    events: AtomicU64,
    malformed: AtomicU64,
    token_refreshes: AtomicU64,
    rejected: AtomicU64,
    delays: Mutex<Vec<Duration>>,
}

/// A copy of [`EventStreamStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventStreamStatsSnapshot {
    /// Connection attempts (socket opens tried).
    pub attempts: u64,
    /// Successful `build_connection`s.
    pub connects: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeat replies received.
    pub heartbeat_replies: u64,
    /// Events handed to the input sink.
    pub events: u64,
    /// Messages skipped as malformed.
    pub malformed: u64,
    /// Tokens obtained after the first one.
    pub token_refreshes: u64,
    /// Connections whose token the server rejected.
    pub rejected: u64,
    /// Every reconnect delay waited, in order.
    pub reconnect_delays: Vec<Duration>,
}

impl EventStreamStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> EventStreamStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventStreamStatsSnapshot {
            attempts: get(&self.attempts),
            connects: get(&self.connects),
            heartbeats_sent: get(&self.heartbeats_sent),
            heartbeat_replies: get(&self.heartbeat_replies),
            events: get(&self.events),
            malformed: get(&self.malformed),
            token_refreshes: get(&self.token_refreshes),
            rejected: get(&self.rejected),
            reconnect_delays: self.delays.lock().map(|d| d.clone()).unwrap_or_default(),
        }
    }
}

/// One server message, understood.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// `build_connection` with `success: true`.
    Connected,
    /// `build_connection` with `success: false`, and the server's reason.
    Rejected(String),
    /// The server's answer to a heartbeat.
    HeartbeatReply,
    /// An event from a `message` envelope.
    Event(Event),
}

/// Why a server message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not a JSON envelope.
    #[error("not a JSON envelope: {0}")]
    Envelope(String),
    /// A module this client does not know.
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    /// A `message` whose content is not an event.
    #[error("message content is not an event: {0}")]
    Content(String),
}

/// Parses one server message: the envelope, then (for `message`) its `content` string
/// a second time. A content that is already an object is accepted too.
pub fn parse_envelope(text: &str) -> Result<Inbound, Malformed> {
    let envelope = Envelope::parse(text).map_err(|e| Malformed::Envelope(e.to_string()))?;
    match envelope.module.as_str() {
        event_socket::BUILD_CONNECTION => Ok(if envelope.success.unwrap_or(false) {
            Inbound::Connected
        } else {
            Inbound::Rejected(content_text(&envelope.content))
        }),
        event_socket::HEARTBEAT => Ok(Inbound::HeartbeatReply),
        event_socket::MESSAGE => parse_event(&envelope.content).map(Inbound::Event),
        other => Err(Malformed::UnknownModule(excerpt(other))),
    }
}

fn parse_event(content: &serde_json::Value) -> Result<Event, Malformed> {
    let body = EventBody::from_content(content).map_err(|e| Malformed::Content(e.to_string()))?;
    if body.event.is_empty() {
        return Err(Malformed::Content("empty event name".to_string()));
    }
    let payload = match body.payload {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        p => p,
    };
    let timestamp = timestamp_ms(&body.event_ts);
    let id = zoomhost_protocol::event_id(&body.event, timestamp, &payload);
    let payload = payload.to_string();
    Ok(Event {
        id,
        name: body.event,
        timestamp,
        payload,
        source: EventSource::Websocket,
    })
}

/// `event_ts` as milliseconds: a number or a numeric string; now when missing.
fn timestamp_ms(value: &serde_json::Value) -> u64 {
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => excerpt(s),
        serde_json::Value::Null => "no reason given".to_string(),
        other => excerpt(&other.to_string()),
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    crate::text::excerpt(text, EXCERPT_CHARS)
}

/// `text` with every occurrence of `secret` replaced.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "<redacted>")
    }
}

/// The URL to connect to, and the same URL safe to log.
fn connect_urls(config: &EventStreamConfig, token: &str) -> anyhow::Result<(String, String)> {
    let mut url = url::Url::parse(&config.ws_url)
        .with_context(|| format!("event WebSocket URL {:?} is not a URL", config.ws_url))?;
    url.query_pairs_mut()
        .append_pair("subscriptionId", &config.subscription_id);
    let safe = format!("{url}&access_token=<redacted>");
    url.query_pairs_mut().append_pair("access_token", token);
    Ok((url.to_string(), safe))
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How one connection ended.
#[derive(Debug)]
enum Outcome {
    Shutdown,
    /// The server rejected the token (build_connection failure, auth close, 401/403).
    Rejected(String),
    /// Any other end: close frame, drop, silence, handshake failure.
    Lost(String),
    /// The token is about to expire.
    Renew,
}

/// Resolves when `shutdown` turns true; never if its sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The event WebSocket client. Build with [`EventStream::new`], watch it with
/// [`EventStream::state`] / [`EventStream::stats`], drive it with [`EventStream::run`].
pub struct EventStream {
    config: EventStreamConfig,
    tokens: Arc<dyn TokenSource>,
    sink: Arc<dyn InputSink>,
    state: watch::Sender<ConnectionState>,
    stats: Arc<EventStreamStats>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("config", &self.config)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// A client that will deliver events from `config.ws_url` to `sink`.
    pub fn new(
        config: EventStreamConfig,
        tokens: Arc<dyn TokenSource>,
        sink: Arc<dyn InputSink>,
    ) -> Self {
        let (state, _) = watch::channel(ConnectionState::Idle);
        Self {
            config,
            tokens,
            sink,
            state,
            stats: Arc::default(),
        }
    }

    /// The connection state, updated as it changes.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<EventStreamStats> {
        self.stats.clone()
    }

    /// Keeps the connection open until `shutdown` turns true, then closes it with 1000.
    /// Returns an error only for a configuration that can never work (a bad URL).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        // Checked once up front so a typo fails fast instead of retrying forever.
        connect_urls(&self.config, "")?;
        crate::oauth::ensure_tls_provider();
        let mut backoff = self.config.backoff();
        let mut last_secret: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.state.send_replace(ConnectionState::Connecting);
            let token = tokio::select! {
                _ = shutdown_requested(&mut shutdown) => break,
                token = self.tokens.token() => token,
            };
            let (outcome, healthy) = match token {
                Ok(token) => {
                    self.note_token(&token, &mut last_secret);
                    let started = Instant::now();
                    let (outcome, connected) = self.connection(&token, &mut shutdown).await;
                    if matches!(outcome, Outcome::Rejected(_) | Outcome::Renew) {
                        self.tokens.invalidate(&token);
                    }
                    let healthy = connected && started.elapsed() >= self.config.healthy_after;
                    (outcome, healthy)
                }
                Err(e) => (Outcome::Lost(format!("no access token: {e:#}")), false),
            };
            let reason = match outcome {
                Outcome::Shutdown => break,
                Outcome::Renew => {
                    tracing::info!("access token about to expire: reconnecting with a fresh one");
                    continue;
                }
                Outcome::Rejected(reason) => {
                    EventStreamStats::bump(&self.stats.rejected);
                    format!("token rejected ({reason}); fetching a new one")
                }
                Outcome::Lost(reason) => reason,
            };
            if healthy {
                backoff = self.config.backoff();
            }
            let delay = backoff.next().unwrap_or(self.config.backoff_max);
            if self.wait_before_retry(delay, reason, &mut shutdown).await {
                break;
            }
        }
        self.state.send_replace(ConnectionState::Stopped);
        tracing::info!("event WebSocket stopped");
        Ok(())
    }

    fn note_token(&self, token: &AccessToken, last: &mut Option<String>) {
        match last {
            Some(previous) if *previous == token.secret => {}
            Some(_) => {
                EventStreamStats::bump(&self.stats.token_refreshes);
                tracing::info!("token refreshed");
            }
            None => tracing::debug!("access token obtained"),
        }
        *last = Some(token.secret.clone());
    }

    /// Logs and publishes the wait, then sleeps; true if shutdown came first.
    async fn wait_before_retry(
        &self,
        delay: Duration,
        reason: String,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        tracing::info!(
            "event WebSocket reconnecting in {:.2} s: {reason}",
            delay.as_secs_f64()
        );
        if let Ok(mut delays) = self.stats.delays.lock() {
            delays.push(delay);
        }
        self.state
            .send_replace(ConnectionState::Reconnecting { delay, reason });
        tokio::select! {
            _ = shutdown_requested(shutdown) => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    /// One connection from open to end; also says whether `build_connection` succeeded.
    async fn connection(
        &self,
        token: &AccessToken,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (Outcome, bool) {
        EventStreamStats::bump(&self.stats.attempts);
        let (url, safe_url) = match connect_urls(&self.config, &token.secret) {
            Ok(urls) => urls,
            Err(e) => return (Outcome::Lost(format!("{e:#}")), false),
        };
        tracing::info!(url = %safe_url, "event WebSocket connecting");
        let opened = tokio::select! {
            _ = shutdown_requested(shutdown) => return (Outcome::Shutdown, false),
            opened = tokio::time::timeout(
                self.config.connect_timeout,
                tokio_tungstenite::connect_async(url.as_str()),
            ) => opened,
        };
        let mut ws = match opened {
            Err(_) => return (Outcome::Lost("connect timed out".to_string()), false),
            Ok(Err(e)) => return (handshake_outcome(&e, &token.secret), false),
            Ok(Ok((ws, _response))) => ws,
        };
        let mut session = Session {
            stream: self,
            token,
            connected: false,
        };
        let outcome = session.serve(&mut ws, shutdown).await;
        (outcome, session.connected)
    }
}

/// What a failed upgrade means: 401/403 are auth problems, the rest are connection ones.
fn handshake_outcome(error: &tungstenite::Error, secret: &str) -> Outcome {
    if let tungstenite::Error::Http(response) = error {
        let status = response.status();
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Outcome::Rejected(format!("HTTP {status} on upgrade"));
        }
    }
    Outcome::Lost(format!(
        "connect failed: {}",
        redact(&error.to_string(), secret)
    ))
}

/// Whether a close frame from the server is about the token.
fn auth_close(frame: Option<&CloseFrame>) -> bool {
    frame.is_some_and(|f| {
        let reason = f.reason.to_ascii_lowercase();
        matches!(u16::from(f.code), 1008 | 4001 | 4003)
            || reason.contains("token")
            || reason.contains("auth")
    })
}

/// One open socket.
struct Session<'a> {
    stream: &'a EventStream,
    token: &'a AccessToken,
    connected: bool,
}

enum Step {
    Continue,
    End(Outcome),
}

impl Session<'_> {
    async fn serve(&mut self, ws: &mut Ws, shutdown: &mut watch::Receiver<bool>) -> Outcome {
        let config = &self.stream.config;
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + config.heartbeat,
            config.heartbeat.max(Duration::from_millis(1)),
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let renew_at = self.renew_at();
        let mut last_heard = Instant::now();
        loop {
            let silent_at = last_heard + config.silence_timeout;
            let step = tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => {
                    self.close(ws, "shutting down").await;
                    Step::End(Outcome::Shutdown)
                }
                message = ws.next() => {
                    last_heard = Instant::now();
                    self.on_message(message)
                }
                _ = heartbeat.tick() => self.send_heartbeat(ws).await,
                _ = tokio::time::sleep_until(silent_at) => {
                    self.close(ws, "silent").await;
                    Step::End(Outcome::Lost(format!(
                        "no message from the server for {:.1} s",
                        config.silence_timeout.as_secs_f64()
                    )))
                }
                _ = tokio::time::sleep_until(renew_at) => {
                    self.close(ws, "renewing the access token").await;
                    Step::End(Outcome::Renew)
                }
            };
            if let Step::End(outcome) = step {
                return outcome;
            }
        }
    }

    /// When to renew: `token_refresh_margin` before expiry, at most half the remaining
    /// lifetime from now.
    fn renew_at(&self) -> Instant {
        let now = std::time::Instant::now();
        let remaining = self.token.expires_at.saturating_duration_since(now);
        let margin = self.stream.config.token_refresh_margin.min(remaining / 2);
        Instant::now() + (remaining - margin).max(Duration::from_secs(1))
    }

    async fn send_heartbeat(&self, ws: &mut Ws) -> Step {
        match ws.send(Message::text(event_socket::CLIENT_HEARTBEAT)).await {
            Ok(()) => {
                EventStreamStats::bump(&self.stream.stats.heartbeats_sent);
                Step::Continue
            }
            Err(e) => Step::End(Outcome::Lost(format!(
                "sending a heartbeat failed: {}",
                redact(&e.to_string(), &self.token.secret)
            ))),
        }
    }

    fn on_message(&mut self, message: Option<Result<Message, tungstenite::Error>>) -> Step {
        let message = match message {
            None => return Step::End(Outcome::Lost("connection ended".to_string())),
            Some(Err(e)) => {
                let e = redact(&e.to_string(), &self.token.secret);
                return Step::End(Outcome::Lost(format!("connection lost: {e}")));
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Text(text) => self.on_text(text.as_str()),
            Message::Binary(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.on_text(text),
                Err(_) => {
                    self.malformed("binary frame that is not UTF-8", "");
                    Step::Continue
                }
            },
            Message::Close(frame) => {
                let (code, reason) = frame
                    .as_ref()
                    .map(|f| (u16::from(f.code), excerpt(&f.reason)))
                    .unwrap_or((1005, String::new()));
                let what = format!("server closed the connection ({code} {reason:?})");
                Step::End(if auth_close(frame.as_ref()) {
                    Outcome::Rejected(what)
                } else {
                    Outcome::Lost(what)
                })
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Step::Continue,
        }
    }

    fn on_text(&mut self, text: &str) -> Step {
        match parse_envelope(text) {
            Ok(Inbound::Connected) => {
                self.connected = true;
                EventStreamStats::bump(&self.stream.stats.connects);
                self.stream.state.send_replace(ConnectionState::Connected);
                tracing::info!("event WebSocket connected");
                Step::Continue
            }
            Ok(Inbound::Rejected(reason)) => {
                Step::End(Outcome::Rejected(redact(&reason, &self.token.secret)))
            }
            Ok(Inbound::HeartbeatReply) => {
                EventStreamStats::bump(&self.stream.stats.heartbeat_replies);
                Step::Continue
            }
            Ok(Inbound::Event(event)) => {
                self.dispatch(event);
                Step::Continue
            }
            Err(e) => {
                self.malformed(&e.to_string(), text);
                Step::Continue
            }
        }
    }

    fn dispatch(&self, event: Event) {
        EventStreamStats::bump(&self.stream.stats.events);
        tracing::debug!(event = %event.name, "event from the WebSocket");
        self.stream.sink.event(event);
    }

    fn malformed(&self, what: &str, text: &str) {
        EventStreamStats::bump(&self.stream.stats.malformed);
        let secret = &self.token.secret;
        tracing::warn!(
            excerpt = %excerpt(&redact(text, secret)),
            "skipping a malformed event WebSocket message: {}",
            excerpt(&redact(what, secret))
        );
    }

    /// Sends close 1000, then keeps reading (bounded) so events the server sent before
    /// it saw the close still reach the input sink.
    async fn close(&mut self, ws: &mut Ws, why: &str) {
        tracing::debug!("closing the event WebSocket: {why}");
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        let drain = self.stream.config.silence_timeout.min(CLOSE_DRAIN_MAX);
        let _ = tokio::time::timeout(drain, self.drain(ws)).await;
    }

    async fn drain(&mut self, ws: &mut Ws) {
        while let Some(Ok(message)) = ws.next().await {
            let text = match &message {
                Message::Text(text) => text.as_str(),
                Message::Close(_) => return,
                _ => continue,
            };
            if let Ok(Inbound::Event(event)) = parse_envelope(text) {
                self.dispatch(event);
            }
        }
    }
}

/// Runs an [`EventStream`] until `shutdown` turns true.
pub fn run(
    config: EventStreamConfig,
    tokens: Arc<dyn TokenSource>,
    sink: Arc<dyn InputSink>,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = anyhow::Result<()>> + Send {
    EventStream::new(config, tokens, sink).run(shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_content_is_parsed_twice() {
        let inner = r#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"id":"e-1","object":{"topic":"T"}}}"#;
        let envelope = serde_json::json!({"module":"message","success":true,"content":inner});
        let Ok(Inbound::Event(event)) = parse_envelope(&envelope.to_string()) else {
            panic!("not an event");
        };
        assert_eq!(event.name, "meeting.started");
        assert_eq!(event.timestamp, 1_700_000_000_123);
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["object"]["topic"], "T");
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        assert!(matches!(parse_envelope("{"), Err(Malformed::Envelope(_))));
        assert!(matches!(
            parse_envelope(r#"{"module":"weird"}"#),
            Err(Malformed::UnknownModule(_))
        ));
        assert!(matches!(
            parse_envelope(r#"{"module":"message","content":"not json"}"#),
            Err(Malformed::Content(_))
        ));
        let rejected = r#"{"module":"build_connection","success":false,"content":"Invalid Token"}"#;
        assert!(
            matches!(parse_envelope(rejected), Ok(Inbound::Rejected(r)) if r == "Invalid Token")
        );
    }

    #[test]
    fn logged_url_hides_the_token() {
        let config = EventStreamConfig::new("wss://ws.zoom.us/ws", "sub1");
        let (url, safe) = connect_urls(&config, "s3cr3t").unwrap();
        assert!(url.contains("access_token=s3cr3t"));
        assert!(!safe.contains("s3cr3t"));
        assert!(safe.ends_with("access_token=<redacted>"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut config = EventStreamConfig::new("ws://x", "s");
        config.backoff_min = Duration::from_millis(50);
        config.backoff_max = Duration::from_millis(400);
        let delays: Vec<_> = config.backoff().take(10).collect();
        assert!(delays.iter().all(|d| *d <= config.backoff_max));
        assert!(delays[0] >= config.backoff_min);
        assert!(delays[2] > delays[0]);
    }
}
