//! The Zoom webhook receiver (see the webhook notes in the crate docs).
//!
//! An axum endpoint that
//! * checks the size first (413 above [`WebhookConfig::max_body_bytes`]),
//! * requires `x-zm-request-timestamp` (epoch seconds, within
//!   [`WebhookConfig::timestamp_window`], else 401) and `x-zm-signature: v0=HEX`, the
//!   HMAC-SHA256 of `"v0:{timestamp}:{raw body}"` under the webhook secret token, verified
//!   over the raw bytes in constant time (401 when it does not match),
//! * answers `endpoint.url_validation` with `{"plainToken","encryptedToken"}`,
//! * hands an event to its sink ([`InputSink::accept`]) in arrival order and answers 200
//!   once the sink kept it: at once for the host's router; after the durable store
//!   acknowledged it when the sink stores first (cluster mode). A sink that reports it
//!   could not keep the event gets a 503 and the delivery is forgotten here, so Zoom's
//!   retry (after 5, 20, 60 minutes) is taken again,
//! * drops Zoom's retries of an already accepted delivery (same `x-zm-request-id`, or the
//!   same body within [`WebhookConfig::dedupe_window`]) with a 200 so Zoom stops retrying.
//!
//! Each event gets the same content-derived id as on the event WebSocket (name,
//! `event_ts` read the same way, canonical payload), so the host's input path delivers an
//! event that came both ways, or as a retry later than this receiver's window, once.
//!
//! Every rejection (400, 401, 413) gets one `warn` line with the reason; nothing is
//! dispatched for it. Log lines never carry the secret and at most a short excerpt of a body.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use zoomhost_protocol::webhook::{self as signature, SignatureError};
use zoomhost_protocol::Secret;
use zoomhost_types::{Acceptance, InputSink};
use zoomhost_types::{Event, EventSource};

/// The webhook receiver's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Path Zoom posts to, e.g. `/zoom/webhook`.
    pub path: String,
    /// The app's webhook secret token.
    pub secret: Secret,
    /// Largest accepted body; bigger requests get 413.
    pub max_body_bytes: usize,
    /// How far `x-zm-request-timestamp` may be from now (either way).
    pub timestamp_window: Duration,
    /// How long an accepted delivery is remembered for de-duplication.
    pub dedupe_window: Duration,
    /// Most deliveries remembered for de-duplication (oldest forgotten first).
    pub dedupe_capacity: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            path: "/zoom/webhook".into(),
            secret: Secret::default(),
            max_body_bytes: 1024 * 1024,
            timestamp_window: Duration::from_secs(300),
            dedupe_window: Duration::from_secs(600),
            dedupe_capacity: 100_000,
        }
    }
}

/// Counters of what the receiver did, readable while it runs.
#[derive(Debug, Default)]
pub struct WebhookStats {
    accepted: AtomicU64,
    rejected: AtomicU64,
    duplicates: AtomicU64,
    validations: AtomicU64,
    /// Answers by status, in the order of [`WebhookStats::STATUSES`] (the last slot is
    /// every other status).
    answers: [AtomicU64; 6],
}

impl WebhookStats {
    /// Events accepted and queued for dispatch.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Requests rejected (400, 401, 413).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::SeqCst)
    }
    /// Retries of an already accepted delivery, answered 200 and dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::SeqCst)
    }
    /// `endpoint.url_validation` challenges answered.
    pub fn validations(&self) -> u64 {
        self.validations.load(Ordering::SeqCst)
    }

    /// The statuses answered by name; any other is counted as `other`.
    pub const STATUSES: [&'static str; 6] = ["200", "400", "401", "413", "503", "other"];

    fn count_answer(&self, status: StatusCode) {
        let slot = Self::STATUSES
            .iter()
            .position(|s| *s == status.as_str())
            .unwrap_or(Self::STATUSES.len() - 1);
        self.answers[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered so far, by status (`200`, `400`, `401`, `413`, `503`, `other`).
    pub fn answers(&self) -> [(&'static str, u64); 6] {
        std::array::from_fn(|i| (Self::STATUSES[i], self.answers[i].load(Ordering::Relaxed)))
    }
}

/// Remembers accepted deliveries (request ids and body hashes) for a window, with bounded
/// memory: a map plus a time-ordered queue; the oldest entries are forgotten first.
#[derive(Debug)]
struct DeliveryDedupe {
    window: Duration,
    capacity: usize,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl DeliveryDedupe {
    fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            let expired = now.duration_since(*at) > self.window;
            if !expired && self.order.len() <= self.capacity {
                break;
            }
            if let Some((at, key)) = self.order.pop_front() {
                // Only forget the key if this queue entry is its latest sighting.
                if self.seen.get(&key) == Some(&at) {
                    self.seen.remove(&key);
                }
            }
        }
    }

    /// Whether any key was seen within the window; if none was, remembers all of them.
    fn check_and_insert(&mut self, keys: &[String]) -> bool {
        let now = Instant::now();
        self.prune(now);
        if keys.iter().any(|k| self.seen.contains_key(k)) {
            return true;
        }
        for k in keys {
            self.seen.insert(k.clone(), now);
            self.order.push_back((now, k.clone()));
        }
        self.prune(now);
        false
    }
}

/// The receiver's shared state: config, counters, de-duplication, and the sink events
/// go to.
pub struct WebhookReceiver {
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
    dedupe: Mutex<DeliveryDedupe>,
    sink: Arc<dyn InputSink>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish()
    }
}

impl WebhookReceiver {
    /// A receiver handing events to `sink` (which must not block; see
    /// [`InputSink::accept`]).
    pub fn new(config: WebhookConfig, sink: Arc<dyn InputSink>) -> Arc<Self> {
        let dedupe = DeliveryDedupe::new(config.dedupe_window, config.dedupe_capacity);
        Arc::new(Self {
            config,
            stats: Arc::new(WebhookStats::default()),
            dedupe: Mutex::new(dedupe),
            sink,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    fn reject(&self, status: StatusCode, reason: &str) -> Response {
        self.stats.rejected.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            status = status.as_u16(),
            "webhook request rejected: {reason}"
        );
        (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
    }

    /// Handles one request (already routed to the webhook path): read the body within
    /// its limit, verify the timestamp and signature over the raw bytes, parse, dedupe,
    /// queue. Every refusal is counted and logged with its reason.
    async fn handle(&self, headers: HeaderMap, body: Body) -> Response {
        let response = match self.accept(&headers, body).await {
            Ok(response) => response,
            Err(Refusal(status, reason)) => self.reject(status, &reason),
        };
        self.stats.count_answer(response.status());
        response
    }

    async fn accept(&self, headers: &HeaderMap, body: Body) -> Result<Response, Refusal> {
        let body = self.read_body(headers, body).await?;
        let ts = self.verify(headers, &body)?;
        let event = match parse(&body, ts)? {
            Delivery::UrlValidation { plain_token } => {
                let encrypted = signature::sign_hex(&self.config.secret, plain_token.as_bytes());
                self.stats.validations.fetch_add(1, Ordering::SeqCst);
                tracing::info!("answered endpoint.url_validation");
                return Ok(axum::Json(serde_json::json!({
                    "plainToken": plain_token,
                    "encryptedToken": encrypted,
                }))
                .into_response());
            }
            Delivery::Event(event) => event,
        };
        let keys = delivery_keys(headers, &body);
        if self.is_duplicate(&keys) {
            self.stats.duplicates.fetch_add(1, Ordering::SeqCst);
            tracing::info!(event = %event.name, "duplicate webhook delivery dropped (Zoom retry)");
            return Ok(StatusCode::OK.into_response());
        }
        let name = event.name.clone();
        match self.sink.accept(event) {
            Acceptance::Now(queued) => {
                tracing::debug!(event = %name, plugins = queued, "webhook event dispatched");
            }
            Acceptance::Pending(kept) => {
                if let Err(reason) = kept.await {
                    // Not kept: forget the delivery so Zoom's retry is taken again.
                    self.forget(&keys);
                    tracing::warn!(event = %name, "webhook event not kept, answering 503 so Zoom retries: {reason}");
                    return Ok(StatusCode::SERVICE_UNAVAILABLE.into_response());
                }
            }
        }
        self.stats.accepted.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(event = %name, "webhook event accepted");
        Ok(StatusCode::OK.into_response())
    }

    /// The raw body, refused past `max_body_bytes` (declared or received).
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Refusal> {
        let limit = self.config.max_body_bytes;
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {limit} bytes"),
            ));
        }
        axum::body::to_bytes(body, limit).await.map_err(|_| {
            Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {limit} bytes or not fully received"),
            )
        })
    }

    /// Checks the timestamp window and the signature over the raw bytes (constant time);
    /// returns the request's timestamp, in epoch seconds.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<i64, Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(ts_text), Some(sig_text)) =
            (header("x-zm-request-timestamp"), header("x-zm-signature"))
        else {
            return Err(Refusal::bad_request(
                "missing x-zm-request-timestamp or x-zm-signature header",
            ));
        };
        let Ok(ts) = ts_text.trim().parse::<i64>() else {
            return Err(Refusal::bad_request(
                "x-zm-request-timestamp is not epoch seconds",
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let skew = now.abs_diff(ts);
        let window = self.config.timestamp_window.as_secs();
        if skew > window {
            return Err(Refusal(
                StatusCode::UNAUTHORIZED,
                format!("stale x-zm-request-timestamp ({skew} s from now, window {window} s)"),
            ));
        }
        match signature::verify(&self.config.secret, ts_text, body, sig_text) {
            Ok(()) => Ok(ts),
            Err(SignatureError::Malformed) => Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "x-zm-signature is not of the form v0=HEX".into(),
            )),
            Err(SignatureError::Mismatch) => Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "x-zm-signature does not match".into(),
            )),
        }
    }

    /// Whether this delivery was seen within the dedupe window: Zoom retries with the
    /// same request id; the body hash catches retries that arrive without one.
    fn is_duplicate(&self, keys: &[String]) -> bool {
        self.dedupe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_and_insert(keys)
    }

    /// Forgets a delivery that was not kept.
    fn forget(&self, keys: &[String]) {
        let mut dedupe = self.dedupe.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            dedupe.seen.remove(key);
        }
    }
}

/// The de-duplication keys of a delivery: its body hash and, when given, its request id.
fn delivery_keys(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut keys = vec![format!("body:{}", hex::encode(Sha256::digest(body)))];
    if let Some(id) = headers
        .get("x-zm-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
    {
        keys.push(format!("id:{id}"));
    }
    keys
}

/// A refused request: the status to answer and why.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad_request(reason: &str) -> Self {
        Self(StatusCode::BAD_REQUEST, reason.to_string())
    }
}

/// What a verified body is.
enum Delivery {
    /// `endpoint.url_validation`, to be answered with the encrypted token.
    UrlValidation {
        /// `payload.plainToken`.
        plain_token: String,
    },
    /// An event for the plugins.
    Event(Event),
}

/// Parses a verified body sent at `ts` (epoch seconds, the fallback for `event_ts`).
fn parse(body: &[u8], ts: i64) -> Result<Delivery, Refusal> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let excerpt = excerpt(body, 64);
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("body is not JSON ({e}); starts with {excerpt:?}"),
        )
    })?;
    let Some(name) = json.get("event").and_then(|v| v.as_str()) else {
        return Err(Refusal::bad_request(
            "body is not a Zoom event (no \"event\" string)",
        ));
    };
    let payload = json.get("payload");
    if name == "endpoint.url_validation" {
        let Some(plain) = payload
            .and_then(|p| p.get("plainToken"))
            .and_then(|v| v.as_str())
        else {
            return Err(Refusal::bad_request(
                "endpoint.url_validation without payload.plainToken",
            ));
        };
        return Ok(Delivery::UrlValidation {
            plain_token: plain.to_string(),
        });
    }
    let payload_text = match payload {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(p @ serde_json::Value::Object(_)) => p.to_string(),
        Some(_) => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("event {name:?} has a payload that is not an object"),
            ));
        }
    };
    let timestamp = json
        .get("event_ts")
        .and_then(crate::events::event_ts_ms)
        .unwrap_or_else(|| (ts.max(0) as u64).saturating_mul(1000));
    let id = zoomhost_protocol::event_id_of_text(name, timestamp, &payload_text);
    Ok(Delivery::Event(Event {
        id,
        name: name.to_string(),
        timestamp,
        payload: payload_text,
        source: EventSource::Webhook,
    }))
}

/// The start of `body` as text, for a log line.
fn excerpt(body: &[u8], n: usize) -> String {
    crate::text::excerpt(&String::from_utf8_lossy(&body[..body.len().min(n)]), n)
}

async fn handler(
    State(receiver): State<Arc<WebhookReceiver>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receiver.handle(headers, body).await
}

/// The axum app: `POST {config.path}` handled by `receiver`.
pub fn app(receiver: Arc<WebhookReceiver>) -> axum::Router {
    let path = receiver.config.path.clone();
    axum::Router::new()
        .route(&path, axum::routing::post(handler))
        // The handler enforces `max_body_bytes` itself (with a log line and a count).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(receiver)
}

/// A receiver bound to its address, not yet serving.
#[derive(Debug)]
pub struct WebhookServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    receiver: Arc<WebhookReceiver>,
}

impl WebhookServer {
    /// Binds `config.bind` (port 0 picks a free port) and creates the receiver.
    pub async fn bind(config: WebhookConfig, sink: Arc<dyn InputSink>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding the webhook receiver on {}", config.bind))?;
        let addr = listener
            .local_addr()
            .context("local address of the webhook receiver")?;
        let receiver = WebhookReceiver::new(config, sink);
        Ok(Self {
            listener,
            addr,
            receiver,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The full URL Zoom should post to, e.g. `http://127.0.0.1:8080/zoom/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.receiver.config.path)
    }

    /// The receiver (counters, config).
    pub fn receiver(&self) -> &Arc<WebhookReceiver> {
        &self.receiver
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.addr,
            path = %self.receiver.config.path,
            "webhook receiver listening"
        );
        axum::serve(self.listener, app(self.receiver))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving the webhook receiver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_remembers_within_window_and_is_bounded() {
        let mut d = DeliveryDedupe::new(Duration::from_secs(600), 3);
        assert!(!d.check_and_insert(&["a".into()]));
        assert!(d.check_and_insert(&["a".into()]));
        assert!(!d.check_and_insert(&["b".into(), "c".into()]));
        assert!(d.check_and_insert(&["x".into(), "c".into()]));
        assert!(!d.check_and_insert(&["d".into()]));
        // Capacity 3: "a" was forgotten first.
        assert!(d.seen.len() <= 3);
        assert!(!d.check_and_insert(&["a".into()]));

        let mut short = DeliveryDedupe::new(Duration::from_millis(0), 10);
        assert!(!short.check_and_insert(&["k".into()]));
        std::thread::sleep(Duration::from_millis(2));
        assert!(!short.check_and_insert(&["k".into()]));
    }
}
