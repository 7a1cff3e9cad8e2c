//! A local Zoom, speaking the same protocols from the server side: used by
//! `zoomhost simulate`, `zoomhost dev` and every end-to-end test.
//!
//! [`rtms`] fails the way Zoom documents its RTMS servers fail (failover to a second
//! server, signaling and media losses, keep-alive timeouts, reconnection windows, audio
//! buffering) and announces what Zoom would announce by webhook as
//! [`rtms::SimNotice`]s, which [`LocalZoom`] sends on its event WebSocket.

pub mod events;
pub mod oauth;
pub mod rtms;
mod util;
pub mod webhook;

use std::sync::Arc;

/// The simulator's app credentials: not secrets of any real account.
pub mod credentials {
    /// Account id for the `account_credentials` grant.
    pub const ACCOUNT_ID: &str = "sim-account";
    /// Client id (OAuth and RTMS signatures).
    pub const CLIENT_ID: &str = "sim-client-id";
    /// Client secret (OAuth and RTMS signatures).
    pub const CLIENT_SECRET: &str = "sim-client-secret";
    /// Event subscription id.
    pub const SUBSCRIPTION_ID: &str = "sim-subscription";
}

/// A whole simulated Zoom account on loopback: the OAuth endpoint, the event WebSocket
/// and the RTMS servers, all using [`credentials`]. The lifecycle webhooks the RTMS
/// servers send on their own ([`rtms::RtmsSim::notices`]: `rtms_interrupted`, a failover's
/// `rtms_started`, `rtms_stopped`) go out on the event WebSocket, as Zoom's do.
pub struct LocalZoom {
    /// The token endpoint.
    pub oauth: oauth::OAuthSim,
    /// The event WebSocket.
    pub events: events::EventSim,
    /// The RTMS signaling and media servers.
    pub rtms: Arc<rtms::RtmsSim>,
    /// Forwards RTMS notices to `events` while this lives.
    _notices: AbortOnDrop,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Pushes every RTMS notice to the event WebSocket (recorded there like any event).
async fn forward_notices(
    mut notices: tokio::sync::broadcast::Receiver<rtms::SimNotice>,
    events: events::EventSim,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match notices.recv().await {
            Ok(notice) => {
                events.push_event(&notice.name, notice.payload).await;
            }
            Err(RecvError::Lagged(skipped)) => {
                tracing::warn!(
                    skipped,
                    "local Zoom: RTMS notices skipped (too many at once)"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl LocalZoom {
    /// Starts every server.
    pub async fn start() -> anyhow::Result<LocalZoom> {
        use credentials::*;
        let oauth = oauth::OAuthSim::start(oauth::OAuthSimConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            account_id: ACCOUNT_ID.into(),
            expires_in: 3600,
        })
        .await?;
        let events = events::EventSim::start(
            events::EventSimConfig {
                subscription_id: Some(SUBSCRIPTION_ID.into()),
                ..events::EventSimConfig::default()
            },
            Arc::new(oauth.clone()),
        )
        .await?;
        let rtms = rtms::RtmsSim::start(rtms::RtmsSimConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            ..rtms::RtmsSimConfig::default()
        })
        .await?;
        let forward = tokio::spawn(forward_notices(rtms.notices(), events.clone()));
        Ok(LocalZoom {
            oauth,
            events,
            rtms,
            _notices: AbortOnDrop(forward.abort_handle()),
        })
    }

    /// The environment that points `zoomhost run` at this simulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        use credentials::*;
        vec![
            ("ZOOM_OAUTH_URL", self.oauth.url()),
            ("ZOOM_WS_URL", self.events.url()),
            ("ZOOM_ACCOUNT_ID", ACCOUNT_ID.into()),
            ("ZOOM_CLIENT_ID", CLIENT_ID.into()),
            ("ZOOM_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("ZOOM_SUBSCRIPTION_ID", SUBSCRIPTION_ID.into()),
        ]
    }
}
