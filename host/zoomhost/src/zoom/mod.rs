//! The outside world: Zoom's OAuth token endpoint, the event WebSocket, webhooks and
//! RTMS media streams. Sources turn what Zoom sends into router calls; they never know about
//! plugins.

pub mod events;
pub mod oauth;
pub mod rtms;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

/// An access token and when it stops being usable.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer token. Never log it.
    pub secret: String,
    /// When it expires.
    pub expires_at: std::time::Instant,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where a source gets its access token: the OAuth token manager in production, anything
/// that hands out tokens in tests.
pub trait TokenSource: Send + Sync + 'static {
    /// A valid token, fetching or refreshing it if needed. Concurrent callers share one
    /// request.
    fn token(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<AccessToken>> + Send + '_>>;

    /// Tells the source that the server rejected `token`: the next `token()` fetches a
    /// new one.
    fn invalidate(&self, token: &AccessToken);
}
