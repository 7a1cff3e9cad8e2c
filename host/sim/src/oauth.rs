//! Simulator: Zoom's Server-to-Server OAuth token endpoint (see the OAuth notes in the `zoomhost-zoom` crate docs).
//!
//! An axum server on loopback (port 0) that accepts both grants (`account_credentials` with
//! `account_id`, and `client_credentials`), with parameters in the query string or a form
//! body, checks Basic auth, issues unique tokens and remembers which are valid (and until
//! when: [`OAuthSim::expires_at`], which the event WebSocket sim uses to close a connection
//! when its token expires). Fault injection: the next N requests can answer 500 or 429
//! (with `Retry-After`), or every request for a while ([`OAuthSim::fail_for`]); tokens can
//! be invalidated or expired so clients must fetch new ones, and their lifetime changed
//! while running ([`OAuthSim::set_expires_in`], e.g. 2 s tokens).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::util::lock;

/// What the simulated OAuth endpoint accepts and issues.
#[derive(Clone)]
pub struct OAuthSimConfig {
    /// The client id accepted in Basic auth.
    pub client_id: String,
    /// The client secret accepted in Basic auth.
    pub client_secret: String,
    /// The account id required by the `account_credentials` grant.
    pub account_id: String,
    /// Lifetime of issued tokens, in seconds (`expires_in`).
    pub expires_in: u64,
}

impl std::fmt::Debug for OAuthSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSimConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A fault queued for upcoming requests.
#[derive(Debug, Clone, Copy)]
struct Fault {
    status: u16,
    retry_after: Option<u64>,
}

struct Inner {
    config: Mutex<OAuthSimConfig>,
    /// Valid tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Every request fails with this status until then.
    failing_until: Mutex<Option<(Instant, u16)>>,
    requests: AtomicU64,
    issued: AtomicU64,
    addr: SocketAddr,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
    }
}

/// A running simulated OAuth endpoint. Cheap to clone; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct OAuthSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OAuthSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSim")
            .field("addr", &self.inner.addr)
            .field("requests", &self.requests())
            .field("issued", &self.issued())
            .finish()
    }
}

impl OAuthSim {
    /// Binds `127.0.0.1:0` and starts serving `POST /oauth/token`.
    pub async fn start(config: OAuthSimConfig) -> anyhow::Result<OAuthSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the simulated OAuth endpoint on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("local address of the OAuth sim")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let inner = Arc::new(Inner {
            config: Mutex::new(config),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(VecDeque::new()),
            failing_until: Mutex::new(None),
            requests: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            addr,
            shutdown: Mutex::new(Some(tx)),
        });
        // The server holds a weak reference so dropping every `OAuthSim` stops it.
        let weak = Arc::downgrade(&inner);
        let app = axum::Router::new()
            .route("/oauth/token", axum::routing::post(token_handler))
            .with_state(weak);
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulated OAuth endpoint stopped");
            }
        });
        Ok(OAuthSim { inner })
    }

    /// The full token URL, e.g. `http://127.0.0.1:PORT/oauth/token`.
    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.inner.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Whether `token` was issued here, is not invalidated and has not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        lock(&self.inner.tokens)
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }

    /// Invalidates every issued token (clients must fetch new ones).
    pub fn invalidate_all(&self) {
        lock(&self.inner.tokens).clear();
    }

    /// Invalidates one token.
    pub fn invalidate(&self, token: &str) {
        lock(&self.inner.tokens).remove(token);
    }

    /// When `token` expires; `None` for a token not issued here or invalidated.
    pub fn expires_at(&self, token: &str) -> Option<Instant> {
        lock(&self.inner.tokens).get(token).copied()
    }

    /// Marks one token as expired now.
    pub fn expire(&self, token: &str) {
        if let Some(exp) = lock(&self.inner.tokens).get_mut(token) {
            *exp = Instant::now();
        }
    }

    /// Every request answers `status` for the next `duration` (an OAuth outage).
    pub fn fail_for(&self, duration: Duration, status: u16) {
        *lock(&self.inner.failing_until) = Some((Instant::now() + duration, status));
    }

    /// The lifetime (`expires_in`, seconds) of tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        lock(&self.inner.config).expires_in = seconds.max(1);
    }

    /// Marks every issued token as expired now (same effect as invalidation for
    /// `is_valid`, named for the scenario it models).
    pub fn expire_all(&self) {
        let now = Instant::now();
        for exp in lock(&self.inner.tokens).values_mut() {
            *exp = now;
        }
    }

    /// Makes the next `n` requests answer `status` (e.g. 500, or 429 with
    /// `retry_after` seconds in a `Retry-After` header) instead of issuing a token.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut faults = lock(&self.inner.faults);
        for _ in 0..n {
            faults.push_back(Fault {
                status,
                retry_after,
            });
        }
    }

    /// Requests received (including failed and rejected ones).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Tokens issued.
    pub fn issued(&self) -> u64 {
        self.inner.issued.load(Ordering::SeqCst)
    }
}

fn json_error(status: StatusCode, reason: &str, error: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "reason": reason, "error": error })),
    )
        .into_response()
}

/// Parses `Authorization: Basic base64(id:secret)`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token_handler(
    State(inner): State<std::sync::Weak<Inner>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(inner) = inner.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    inner.requests.fetch_add(1, Ordering::SeqCst);

    let failing = match *lock(&inner.failing_until) {
        Some((until, status)) if Instant::now() < until => Some(Fault {
            status,
            retry_after: None,
        }),
        _ => None,
    };
    let fault = failing.or_else(|| lock(&inner.faults).pop_front());
    if let Some(fault) = fault {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_error(status, "injected fault", "server_error");
        if let Some(secs) = fault.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        return resp;
    }

    // Parameters from the query string, then the form body (both are accepted).
    let mut params = query;
    if !body.is_empty() {
        match serde_urlencoded_pairs(&body) {
            Some(form) => params.extend(form),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "Malformed form body",
                    "invalid_request",
                );
            }
        }
    }

    let config = lock(&inner.config).clone();
    let authorized = basic_auth(&headers)
        .is_some_and(|(id, secret)| id == config.client_id && secret == config.client_secret);
    if !authorized {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Invalid client_id or client_secret",
            "invalid_client",
        );
    }

    match params.get("grant_type").map(String::as_str) {
        Some("account_credentials") => {
            if params.get("account_id") != Some(&config.account_id) {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid account_id",
                    "invalid_request",
                );
            }
        }
        Some("client_credentials") => {}
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "Unsupported grant type",
                "unsupported_grant_type",
            );
        }
        None => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "Missing grant_type",
                "invalid_request",
            );
        }
    }

    let token = format!("simtok-{}", random_hex(24));
    let expires_at = Instant::now() + Duration::from_secs(config.expires_in);
    lock(&inner.tokens).insert(token.clone(), expires_at);
    inner.issued.fetch_add(1, Ordering::SeqCst);
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": config.expires_in,
        "scope": "marketplace:read:list_event_subscriptions",
        "api_url": "https://api.zoom.us",
    }))
    .into_response()
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    Some(
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    use rand::RngCore as _;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
