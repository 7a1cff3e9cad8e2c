//! The Zoom event WebSocket client (see the event WebSocket notes in the crate docs).
//!
//! One connection at a time to `{ws_url}?subscriptionId=SUB&access_token=TOKEN`. Every
//! server message is an envelope `{module, success, content, header}`:
//! `build_connection` says whether the token was accepted, `heartbeat` answers our
//! `{"module":"heartbeat"}`, and `message` carries an event whose `content` is a JSON
//! *string* holding `{event, event_ts, payload}`. Events go to the input sink as
//! [`EventSource::Websocket`] events with the payload as JSON text.
//!
//! Zoom does not replay events sent while no connection is up, so the client never sits
//! out ([`reconnect`]):
//! * after a connection that `build_connection` accepted ends, for any reason (a drop, a
//!   close such as 1001, the server closing when the token expires, `silence_timeout`
//!   without a message), it reconnects at once, after a jitter below
//!   [`EventStreamConfig::reconnect_jitter`];
//! * only consecutive *failed* attempts back off (doubling, capped at
//!   [`EventStreamConfig::backoff_max`], 15 s), and the schedule starts over after a
//!   connection that stayed up [`EventStreamConfig::healthy_after`] (10 s);
//! * it never closes a live connection to renew its token: a background task fetches a
//!   fresh token [`EventStreamConfig::token_refresh_margin`] before the current one
//!   expires (retrying OAuth failures with backoff while the connection stays open), so
//!   when the server closes the connection at expiry the next one opens at once.
//!
//! A rejected token (failed `build_connection`, an auth-related close, or an HTTP 401/403
//! on the upgrade) is invalidated so the next attempt fetches a fresh one. Every outage
//! (from the end of an accepted connection to the next accepted one) is logged when it
//! ends, with its cause, duration and attempts, and counted in [`EventStreamStats`].
//!
//! Secrets: the URL carrying the token is only ever logged as `access_token=<redacted>`,
//! and error texts are scrubbed of the token before they are logged.

pub mod reconnect;
mod stats;

use std::future::Future;
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
pub use reconnect::ReconnectPolicy;
pub use stats::{EventStreamStats, EventStreamStatsSnapshot, Outage, Reconnect};
use zoomhost_types::InputSink;
use zoomhost_types::{Event, EventSource};

/// The longest excerpt of a malformed message that is logged.
const EXCERPT_CHARS: usize = 120;

/// How long a closing connection is read for messages still in flight.
const CLOSE_DRAIN_MAX: Duration = Duration::from_secs(1);

/// How long sending the close frame to a silent server may take.
const ABANDON_SEND_MAX: Duration = Duration::from_millis(100);

/// Settings of the event WebSocket client. Every timing is configurable so tests can
/// run with short ones; the defaults are Zoom's.
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
    /// Reconnecting after an established connection waits a random jitter below this
    /// (1 s), never a backoff.
    pub reconnect_jitter: Duration,
    /// First delay after a failed attempt (1 s, before jitter).
    pub backoff_min: Duration,
    /// Longest delay after failed attempts, jitter included (15 s).
    pub backoff_max: Duration,
    /// A connection that stayed up this long starts the failure backoff over (10 s).
    pub healthy_after: Duration,
    /// How long before the token expires a fresh one is fetched in the background
    /// (5 min, at most half the token's remaining lifetime). The live connection is never
    /// closed for it.
    pub token_refresh_margin: Duration,
    /// First delay before retrying a failed background token refresh (doubling).
    pub token_retry_min: Duration,
    /// Longest delay between background token refresh retries.
    pub token_retry_max: Duration,
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
            reconnect_jitter: Duration::from_secs(1),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15),
            healthy_after: Duration::from_secs(10),
            token_refresh_margin: Duration::from_secs(300),
            token_retry_min: Duration::from_secs(1),
            token_retry_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// Every duration divided by `factor` (at least 1 ms each): the same behaviour,
    /// faster, for tests and demos.
    pub fn scaled_down(mut self, factor: u32) -> Self {
        let factor = factor.max(1);
        let scale = |d: &mut Duration| *d = (*d / factor).max(Duration::from_millis(1));
        for d in [
            &mut self.heartbeat,
            &mut self.silence_timeout,
            &mut self.reconnect_jitter,
            &mut self.backoff_min,
            &mut self.backoff_max,
            &mut self.healthy_after,
            &mut self.token_refresh_margin,
            &mut self.token_retry_min,
            &mut self.token_retry_max,
            &mut self.connect_timeout,
        ] {
            scale(d);
        }
        self
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
        /// Why the previous connection (or attempt) ended.
        reason: String,
    },
    /// Shut down.
    Stopped,
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

/// `event_ts` in milliseconds, read the same way for the WebSocket and webhooks (so both
/// give one event the same id): a number, or a numeric string.
pub(crate) fn event_ts_ms(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `event_ts` as milliseconds ([`event_ts_ms`]); now when missing.
fn timestamp_ms(value: &serde_json::Value) -> u64 {
    event_ts_ms(value).unwrap_or_else(|| {
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
}

/// Resolves when `shutdown` turns true; never if its sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// An outage in progress: since when, why, and the attempts made so far.
#[derive(Debug)]
struct OpenOutage {
    since: Instant,
    cause: String,
    attempts: u32,
}

/// The event WebSocket client. Build with [`EventStream::new`], watch it with
/// [`EventStream::state`] / [`EventStream::stats`], drive it with [`EventStream::run`].
pub struct EventStream {
    config: EventStreamConfig,
    tokens: Arc<dyn TokenSource>,
    sink: Arc<dyn InputSink>,
    state: watch::Sender<ConnectionState>,
    stats: Arc<EventStreamStats>,
    outage: Mutex<Option<OpenOutage>>,
    /// The last token secret seen, to count refreshes.
    last_secret: Mutex<Option<String>>,
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
            outage: Mutex::new(None),
            last_secret: Mutex::new(None),
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
        tokio::select! {
            _ = self.connect_loop(&mut shutdown) => {}
            // Never ends on its own.
            _ = self.keep_token_fresh() => {}
        }
        self.state.send_replace(ConnectionState::Stopped);
        tracing::info!("event WebSocket stopped");
        Ok(())
    }

    /// Connects, and reconnects as [`ReconnectPolicy`] says, until shutdown.
    async fn connect_loop(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut policy = ReconnectPolicy::new(&self.config);
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.state.send_replace(ConnectionState::Connecting);
            let token = tokio::select! {
                _ = shutdown_requested(shutdown) => return,
                token = self.tokens.token() => token,
            };
            let (outcome, up_for) = match token {
                Ok(token) => {
                    self.note_token(&token);
                    let (outcome, up_for) = self.connection(&token, shutdown).await;
                    if matches!(outcome, Outcome::Rejected(_)) {
                        self.tokens.invalidate(&token);
                    }
                    (outcome, up_for)
                }
                Err(e) => {
                    self.count_attempt();
                    (Outcome::Lost(format!("no access token: {e:#}")), None)
                }
            };
            let reason = match outcome {
                Outcome::Shutdown => return,
                Outcome::Rejected(reason) if up_for.is_some() => {
                    EventStreamStats::bump(&self.stats.rejected);
                    format!("{reason}: the token is no longer valid")
                }
                Outcome::Rejected(reason) => {
                    EventStreamStats::bump(&self.stats.rejected);
                    format!("token rejected ({reason}); fetching a new one")
                }
                Outcome::Lost(reason) => reason,
            };
            let delay = match up_for {
                Some(up_for) => {
                    self.begin_outage(&reason);
                    policy.after_connection(up_for)
                }
                None => policy.after_failure(),
            };
            self.stats.record_reconnect(Reconnect {
                failures: policy.failures(),
                delay,
            });
            if self.wait_before_retry(delay, reason, shutdown).await {
                return;
            }
        }
    }

    /// Fetches a fresh token `token_refresh_margin` before the newest one expires, so a
    /// reconnect never waits for OAuth; failures are retried with backoff, and the live
    /// connection is left alone meanwhile. Never returns.
    async fn keep_token_fresh(&self) {
        let config = &self.config;
        let retry_schedule = || {
            crate::retry::doubling(config.token_retry_min, config.token_retry_max)
                .with_jitter()
                .build()
        };
        let mut retry = retry_schedule();
        let mut due: Option<AccessToken> = None;
        loop {
            let current = match due.take() {
                Some(token) => token,
                None => match self.tokens.token().await {
                    Ok(token) => token,
                    Err(e) => {
                        self.refresh_failed(&e, &mut retry).await;
                        continue;
                    }
                },
            };
            let now = std::time::Instant::now();
            let remaining = current.expires_at.saturating_duration_since(now);
            let ahead = config.token_refresh_margin.min(remaining / 2);
            tokio::time::sleep(remaining - ahead).await;
            // Only drops the cache if it still holds this token; a token fetched
            // meanwhile (after a rejection) is kept.
            self.tokens.invalidate(&current);
            match self.tokens.token().await {
                Ok(same) if same.secret == current.secret => {
                    // The source has nothing fresher yet: ask again later, backing off.
                    let delay = retry.next().unwrap_or(config.token_retry_max);
                    tokio::time::sleep(delay).await;
                    due = Some(same);
                }
                Ok(fresh) => {
                    retry = retry_schedule();
                    self.note_token(&fresh);
                    tracing::debug!(
                        "fresh access token ready (expires in {:.1} s)",
                        fresh
                            .expires_at
                            .saturating_duration_since(std::time::Instant::now())
                            .as_secs_f64()
                    );
                    due = Some(fresh);
                }
                Err(e) => self.refresh_failed(&e, &mut retry).await,
            }
        }
    }

    async fn refresh_failed(
        &self,
        error: &anyhow::Error,
        retry: &mut impl Iterator<Item = Duration>,
    ) {
        EventStreamStats::bump(&self.stats.token_refresh_failures);
        let delay = retry.next().unwrap_or(self.config.token_retry_max);
        tracing::warn!(
            "fetching a fresh access token failed ({error:#}); retrying in {:.2} s \
             (the event WebSocket stays connected)",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
    }

    /// Counts a token the first time it is seen (after the first one, as a refresh).
    fn note_token(&self, token: &AccessToken) {
        let mut last = self.last_secret.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_deref() {
            Some(previous) if previous == token.secret => return,
            Some(_) => EventStreamStats::bump(&self.stats.token_refreshes),
            None => tracing::debug!("access token obtained"),
        }
        *last = Some(token.secret.clone());
    }

    /// A connection attempt: counted, and counted against the open outage if any.
    fn count_attempt(&self) {
        EventStreamStats::bump(&self.stats.attempts);
        if let Some(outage) = self
            .outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            outage.attempts += 1;
            EventStreamStats::bump(&self.stats.reconnect_attempts);
        }
    }

    /// An accepted connection ended: the outage starts now.
    fn begin_outage(&self, cause: &str) {
        tracing::warn!("event WebSocket lost: {cause}");
        let since = Instant::now();
        self.stats.outage_began(since.into_std());
        *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = Some(OpenOutage {
            since,
            cause: cause.to_string(),
            attempts: 0,
        });
    }

    /// A connection was accepted: the open outage (if any) ends, logged and counted.
    fn end_outage(&self) {
        let Some(open) = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let outage = Outage {
            cause: open.cause,
            duration: open.since.elapsed(),
            attempts: open.attempts,
        };
        tracing::info!(
            outage_ms = outage.duration.as_millis() as u64,
            attempts = outage.attempts,
            "event WebSocket back after an outage of {:.3} s ({} attempt{}; cause: {})",
            outage.duration.as_secs_f64(),
            outage.attempts,
            if outage.attempts == 1 { "" } else { "s" },
            outage.cause
        );
        self.stats.record_outage(outage);
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
        self.state
            .send_replace(ConnectionState::Reconnecting { delay, reason });
        tokio::select! {
            _ = shutdown_requested(shutdown) => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    /// One connection from open to end; also says how long it was up when
    /// `build_connection` accepted it (`None`: never accepted).
    async fn connection(
        &self,
        token: &AccessToken,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (Outcome, Option<Duration>) {
        self.count_attempt();
        let (url, safe_url) = match connect_urls(&self.config, &token.secret) {
            Ok(urls) => urls,
            Err(e) => return (Outcome::Lost(format!("{e:#}")), None),
        };
        tracing::info!(url = %safe_url, "event WebSocket connecting");
        let opened = tokio::select! {
            _ = shutdown_requested(shutdown) => return (Outcome::Shutdown, None),
            opened = tokio::time::timeout(
                self.config.connect_timeout,
                tokio_tungstenite::connect_async(url.as_str()),
            ) => opened,
        };
        let mut ws = match opened {
            Err(_) => return (Outcome::Lost("connect timed out".to_string()), None),
            Ok(Err(e)) => return (handshake_outcome(&e, &token.secret), None),
            Ok(Ok((ws, _response))) => ws,
        };
        let mut session = Session {
            stream: self,
            token,
            connected_at: None,
        };
        let outcome = session.serve(&mut ws, shutdown).await;
        (outcome, session.connected_at.map(|at| at.elapsed()))
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
    /// When `build_connection` accepted it.
    connected_at: Option<Instant>,
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
                    self.abandon(ws).await;
                    Step::End(Outcome::Lost(format!(
                        "no message from the server for {:.1} s",
                        config.silence_timeout.as_secs_f64()
                    )))
                }
            };
            if let Step::End(outcome) = step {
                return outcome;
            }
        }
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
                self.connected_at = Some(Instant::now());
                EventStreamStats::bump(&self.stream.stats.connects);
                self.stream.state.send_replace(ConnectionState::Connected);
                tracing::info!("event WebSocket connected");
                self.stream.end_outage();
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
    /// Gives up a silent connection: a close frame if it goes out at once, no waiting for
    /// the server's answer (it is silent; every moment waited is a moment without
    /// events).
    async fn abandon(&mut self, ws: &mut Ws) {
        tracing::debug!("abandoning the silent event WebSocket");
        EventStreamStats::bump(&self.stream.stats.client_closes);
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(ABANDON_SEND_MAX, ws.close(Some(frame))).await;
    }

    async fn close(&mut self, ws: &mut Ws, why: &str) {
        tracing::debug!("closing the event WebSocket: {why}");
        EventStreamStats::bump(&self.stream.stats.client_closes);
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
}
