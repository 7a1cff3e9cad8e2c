//! Simulator: a webhook sender that signs like Zoom (see the webhook notes in the `zoomhost-zoom` crate docs).
//!
//! Each delivery carries `x-zm-request-timestamp` (epoch seconds), `x-zm-signature:
//! v0=HEX` (HMAC-SHA256 of `"v0:{timestamp}:{raw body}"` under the webhook secret token)
//! and a unique `x-zm-request-id`. [`SendOptions`] injects the faults a receiver must
//! survive: a forged signature, a stale timestamp, a resent request id (Zoom's retry),
//! missing headers; [`WebhookSender::send_raw`] sends any body (oversized, malformed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use zoomhost_protocol::webhook::sign_hex;
use zoomhost_protocol::Secret;

/// How to send one delivery.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Sign with a wrong key, so the signature does not verify.
    pub forge_signature: bool,
    /// Seconds added to the current time for the timestamp (e.g. `-3600` for a stale one).
    pub timestamp_offset_s: i64,
    /// Use this request id instead of a fresh one (a Zoom retry reuses the original).
    pub request_id: Option<String>,
    /// Leave out the timestamp and signature headers.
    pub omit_auth_headers: bool,
}

impl SendOptions {
    /// A delivery whose signature does not verify.
    pub fn forged() -> Self {
        Self {
            forge_signature: true,
            ..Self::default()
        }
    }

    /// A delivery signed correctly but `seconds` in the past.
    pub fn stale(seconds: u64) -> Self {
        Self {
            timestamp_offset_s: -i64::try_from(seconds).unwrap_or(i64::MAX),
            ..Self::default()
        }
    }

    /// A retry of the delivery with `request_id`.
    pub fn retry_of(request_id: &str) -> Self {
        Self {
            request_id: Some(request_id.to_string()),
            ..Self::default()
        }
    }
}

/// What one delivery was and what the receiver answered.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The `x-zm-request-id` used.
    pub request_id: String,
    /// The exact body bytes sent.
    pub body: Vec<u8>,
    /// The HTTP status received.
    pub status: u16,
    /// The response body.
    pub response: String,
    /// How long the receiver took to answer.
    pub elapsed: Duration,
}

/// Posts webhook deliveries to a receiver, signed like Zoom.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: String,
    secret: Secret,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("url", &self.url)
            .field("secret", &self.secret)
            .finish()
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl WebhookSender {
    /// A sender posting to `url` (the receiver's full URL) and signing with `secret`.
    pub fn new(url: impl Into<String>, secret: Secret) -> anyhow::Result<Self> {
        // reqwest is built without a default crypto provider: install ring's, once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the webhook sender's HTTP client")?;
        Ok(Self {
            client,
            url: url.into(),
            secret,
        })
    }

    /// The webhook body Zoom would send: `{"event", "event_ts" (ms), "payload"}`.
    pub fn event_body(name: &str, event_ts_ms: u64, payload: &serde_json::Value) -> Vec<u8> {
        serde_json::json!({ "event": name, "event_ts": event_ts_ms, "payload": payload })
            .to_string()
            .into_bytes()
    }

    /// Sends an event with a fresh request id and a valid signature.
    pub async fn send_event(
        &self,
        name: &str,
        payload: &serde_json::Value,
    ) -> anyhow::Result<Sent> {
        let ts_ms = u64::try_from(now_s()).unwrap_or(0).saturating_mul(1000);
        self.send_raw(
            Self::event_body(name, ts_ms, payload),
            &SendOptions::default(),
        )
        .await
    }

    /// Re-sends an earlier delivery as Zoom's retry does: same body, same request id,
    /// fresh timestamp and signature.
    pub async fn resend(&self, earlier: &Sent) -> anyhow::Result<Sent> {
        self.send_raw(
            earlier.body.clone(),
            &SendOptions::retry_of(&earlier.request_id),
        )
        .await
    }

    /// Sends the `endpoint.url_validation` challenge; returns the delivery and whether the
    /// answer carried the right `plainToken` and `encryptedToken`.
    pub async fn url_validation(&self, plain_token: &str) -> anyhow::Result<(Sent, bool)> {
        let ts_ms = u64::try_from(now_s()).unwrap_or(0).saturating_mul(1000);
        let body = Self::event_body(
            "endpoint.url_validation",
            ts_ms,
            &serde_json::json!({ "plainToken": plain_token }),
        );
        let sent = self.send_raw(body, &SendOptions::default()).await?;
        let expected = sign_hex(&self.secret, plain_token.as_bytes());
        let ok = serde_json::from_str::<serde_json::Value>(&sent.response).is_ok_and(|v| {
            v.get("plainToken").and_then(|p| p.as_str()) == Some(plain_token)
                && v.get("encryptedToken").and_then(|p| p.as_str()) == Some(expected.as_str())
        });
        Ok((sent, ok))
    }

    /// Sends `body` as it is (any bytes: oversized, malformed), signed per `options`.
    pub async fn send_raw(&self, body: Vec<u8>, options: &SendOptions) -> anyhow::Result<Sent> {
        let request_id = options
            .request_id
            .clone()
            .unwrap_or_else(|| format!("sim-{}", crate::oauth::random_hex(12)));
        let ts = now_s()
            .saturating_add(options.timestamp_offset_s)
            .to_string();
        let mut message = format!("v0:{ts}:").into_bytes();
        message.extend_from_slice(&body);
        let signature = if options.forge_signature {
            let wrong = Secret::new(format!("forged-{}", crate::oauth::random_hex(8)));
            sign_hex(&wrong, &message)
        } else {
            sign_hex(&self.secret, &message)
        };
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-zm-request-id", &request_id);
        if !options.omit_auth_headers {
            req = req
                .header("x-zm-request-timestamp", &ts)
                .header("x-zm-signature", format!("v0={signature}"));
        }
        let started = std::time::Instant::now();
        let resp = req
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("posting a webhook delivery to {}", self.url))?;
        let status = resp.status().as_u16();
        let response = resp.text().await.unwrap_or_default();
        Ok(Sent {
            request_id,
            body,
            status,
            response,
            elapsed: started.elapsed(),
        })
    }
}
