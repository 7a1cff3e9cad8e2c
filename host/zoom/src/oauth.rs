//! Server-to-Server OAuth token manager (see the OAuth notes in the crate docs).
//!
//! [`TokenManager`] fetches a token from Zoom's token endpoint with Basic auth
//! (`client_id:client_secret`) and the `account_credentials` (or `client_credentials`) grant
//! in a form body, caches it, and fetches a new one ahead of expiry (5 minutes or 10% of the
//! lifetime, whichever is smaller). Concurrent callers share one request. 5xx, 429 and
//! connection errors are retried with capped exponential backoff (honouring `Retry-After`);
//! a 401 fails at once with an error naming the credentials to check, never their values.
//!
//! TLS: reqwest is built with rustls and no built-in crypto provider; [`ensure_tls_provider`]
//! installs `ring` as the process default and is called before any client is built here.
//! Other TLS users (the event WebSocket) should call it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use backon::Retryable as _;

use crate::text::excerpt;
use reqwest::StatusCode;

use crate::{AccessToken, TokenSource};
use zoomhost_protocol::Secret;

/// Installs rustls' `ring` crypto provider as the process default, if no provider is
/// installed yet. Safe to call any number of times, from anywhere.
pub fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Which OAuth grant to request.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=account_credentials&account_id=...`: Server-to-Server OAuth apps.
    AccountCredentials {
        /// The Zoom account id.
        account_id: String,
    },
    /// `grant_type=client_credentials`: general apps (Zoom's WebSocket page).
    ClientCredentials,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::AccountCredentials { .. } => f.write_str("AccountCredentials"),
            Grant::ClientCredentials => f.write_str("ClientCredentials"),
        }
    }
}

/// Retry policy for the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First backoff delay.
    pub min_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Longest `Retry-After` honoured; longer values are clamped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 8,
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Everything the token manager needs.
#[derive(Clone, PartialEq)]
pub struct OAuthConfig {
    /// Token endpoint, e.g. `https://zoom.us/oauth/token` (zoomgov.com for Government).
    pub token_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// Grant to request.
    pub grant: Grant,
    /// Retries on 5xx/429/connection errors.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl OAuthConfig {
    /// A config with default retry policy and a 15 s request timeout.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        grant: Grant,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            grant,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(15),
        }
    }
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &"<redacted>")
            .field("client_secret", &"<redacted>")
            .field("grant", &self.grant)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A cached token and when to stop handing it out.
struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

/// Caches and refreshes a Zoom S2S OAuth token. Implements [`TokenSource`].
pub struct TokenManager {
    config: OAuthConfig,
    client: reqwest::Client,
    cached: Mutex<Option<Cached>>,
    /// Held across a fetch so concurrent callers share one request.
    fetching: tokio::sync::Mutex<()>,
    requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("config", &self.config)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// How far ahead of expiry a token of `lifetime` is refreshed: 5 minutes or 10% of the
/// lifetime, whichever is smaller.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

/// One failed attempt, classified for the retry loop.
#[derive(Debug)]
enum FetchError {
    /// Worth retrying (5xx, 429, connection error); `retry_after` from the server.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (401, 4xx, bad reply).
    Fatal(anyhow::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Transient { message, .. } => f.write_str(message),
            FetchError::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenReply {
    access_token: String,
    expires_in: u64,
}

#[derive(serde::Deserialize, Default)]
struct ErrorReply {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    error: String,
}

impl TokenManager {
    /// A manager for `config`. No request is made until the first [`TokenSource::token`].
    pub fn new(config: OAuthConfig) -> anyhow::Result<Self> {
        ensure_tls_provider();
        url::Url::parse(&config.token_url)
            .with_context(|| format!("invalid OAuth token URL {:?}", config.token_url))?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .context("building the HTTP client for the OAuth token endpoint")?;
        Ok(Self {
            config,
            client,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            requests: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// HTTP requests made to the token endpoint so far (including retries).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn cache(&self) -> MutexGuard<'_, Option<Cached>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached token if it is not due for refresh.
    fn fresh(&self) -> Option<AccessToken> {
        self.cache()
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// A valid token: the cached one, or a new one (one request for all concurrent callers).
    pub async fn get(&self) -> anyhow::Result<AccessToken> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _guard = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let fetched_at = Instant::now();
        let (secret, lifetime) = self.fetch_with_retries().await?;
        let token = AccessToken {
            secret,
            expires_at: fetched_at + lifetime,
        };
        let refresh_at = token.expires_at - refresh_margin(lifetime);
        *self.cache() = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        tracing::info!(
            expires_in_s = lifetime.as_secs(),
            "token refreshed (expires in {} s)",
            lifetime.as_secs()
        );
        Ok(token)
    }

    /// Drops the cached token if it is `token`.
    pub fn invalidate_token(&self, token: &AccessToken) {
        let mut cache = self.cache();
        if cache
            .as_ref()
            .is_some_and(|c| c.token.secret == token.secret)
        {
            *cache = None;
            tracing::debug!("access token dropped from the cache; the next use fetches a new one");
        }
    }

    async fn fetch_with_retries(&self) -> anyhow::Result<(String, Duration)> {
        let policy = &self.config.retry;
        let backoff = crate::retry::doubling(policy.min_delay, policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let max_retry_after = policy.max_retry_after;
        let attempt = || self.fetch_once();
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, FetchError::Transient { .. }))
            .adjust(move |e, dur| {
                // `None` means the backoff is exhausted: stop.
                let dur = dur?;
                match e {
                    FetchError::Transient {
                        retry_after: Some(ra),
                        ..
                    } => Some((*ra).min(max_retry_after)),
                    _ => Some(dur),
                }
            })
            .notify(|e, dur| {
                tracing::warn!(
                    "OAuth token request failed ({e}); retrying in {:.1} s",
                    dur.as_secs_f64()
                );
            })
            .await;
        match result {
            Ok(v) => Ok(v),
            Err(FetchError::Fatal(e)) => Err(e),
            Err(FetchError::Transient { message, .. }) => Err(anyhow::anyhow!(
                "OAuth token request to {} failed after {} retries: {message}",
                self.config.token_url,
                policy.max_retries
            )),
        }
    }

    async fn fetch_once(&self) -> Result<(String, Duration), FetchError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(2);
        match &self.config.grant {
            Grant::AccountCredentials { account_id } => {
                form.push(("grant_type", "account_credentials"));
                form.push(("account_id", account_id));
            }
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        }
        let resp = self
            .client
            .post(&self.config.token_url)
            .basic_auth(
                &self.config.client_id,
                Some(self.config.client_secret.expose()),
            )
            .form(&form)
            .send()
            .await
            .map_err(|e| FetchError::Transient {
                message: format!(
                    "cannot reach {}: {}",
                    self.config.token_url,
                    e.without_url()
                ),
                retry_after: None,
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.map_err(|e| FetchError::Transient {
            message: format!("reading the reply: {}", e.without_url()),
            retry_after: None,
        })?;

        if status.is_success() {
            let reply: TokenReply = serde_json::from_str(&body).map_err(|e| {
                FetchError::Fatal(anyhow::anyhow!(
                    "OAuth token endpoint {} answered {status} with an unexpected body ({e})",
                    self.config.token_url
                ))
            })?;
            if reply.access_token.is_empty() || reply.expires_in == 0 {
                return Err(FetchError::Fatal(anyhow::anyhow!(
                    "OAuth token endpoint {} answered without a usable token",
                    self.config.token_url
                )));
            }
            return Ok((reply.access_token, Duration::from_secs(reply.expires_in)));
        }

        let detail: ErrorReply = serde_json::from_str(&body).unwrap_or_default();
        let server_says = if detail.error.is_empty() && detail.reason.is_empty() {
            String::new()
        } else {
            format!(
                " ({}: {})",
                excerpt(&detail.error, 40),
                excerpt(&detail.reason, 120)
            )
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(FetchError::Transient {
                message: format!("HTTP {status}{server_says}"),
                retry_after,
            });
        }
        let hint = match (status, &self.config.grant) {
            (StatusCode::UNAUTHORIZED, _) => {
                "ZOOM_CLIENT_ID / ZOOM_CLIENT_SECRET (zoom.client_id / zoom.client_secret) \
                 rejected: check that they belong to an activated Server-to-Server OAuth app"
            }
            (StatusCode::BAD_REQUEST, Grant::AccountCredentials { .. }) => {
                "request rejected: check ZOOM_ACCOUNT_ID (zoom.account_id) and that the app \
                 uses the account_credentials grant (zoom.grant)"
            }
            _ => "request rejected: check the app's credentials, grant and scopes",
        };
        Err(FetchError::Fatal(anyhow::anyhow!(
            "Zoom OAuth: {hint}; {} answered HTTP {status}{server_says}",
            self.config.token_url
        )))
    }
}

impl TokenSource for TokenManager {
    fn token(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<AccessToken>> + Send + '_>> {
        Box::pin(self.get())
    }

    fn invalidate(&self, token: &AccessToken) {
        self.invalidate_token(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_five_minutes_or_ten_percent() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
    }

    #[test]
    fn debug_redacts() {
        let c = OAuthConfig::new(
            "https://zoom.us/oauth/token",
            "cid-visible?",
            Secret::new("topsecret"),
            Grant::AccountCredentials {
                account_id: "acct".into(),
            },
        );
        let m = TokenManager::new(c).unwrap();
        let s = format!("{m:?}");
        assert!(
            !s.contains("topsecret") && !s.contains("cid-visible"),
            "{s}"
        );
    }
}
