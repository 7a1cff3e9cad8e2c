//! Host configuration: `zoomhost.toml`, validated at load with errors that name the key.
//!
//! ```toml
//! plugins_dir = "plugins"          # folder watched for *.wasm
//!
//! [limits]
//! event_deadline_ms = 1000         # per event call
//! media_deadline_ms = 50           # per media-frame call
//! memory_mib = 64                  # per instance
//! mailbox_capacity = 1024          # deliveries queued per plugin before events start waiting
//! event_wait_ms = 2000             # how long an event may wait beyond capacity before it is dropped
//! audio_queue_frames = 500         # audio frames queued per plugin before the oldest is dropped
//! max_failures = 5                 # failures within `failure_window_s` that quarantine a plugin
//! failure_window_s = 60
//! log_lines_per_second = 1000      # per plugin; the rest are counted and summarised
//! # ...and the sandbox budgets: see `limits.rs` and README's "Sandbox and failure policy"
//!
//! [plugins.transcript-forwarder.limits]   # one plugin's own limits, over [limits]
//! event_deadline_ms = 10000
//!
//! [plugins.slack-notifier]         # keyed by the .wasm file stem
//! allow_http = ["https://hooks.slack.com"]
//! config = { webhook_url = "${SLACK_WEBHOOK_URL}" }
//!
//! [zoom]                           # every key may come from the environment instead
//! account_id = "..."               # ZOOM_ACCOUNT_ID
//! client_id = "..."                # ZOOM_CLIENT_ID
//! client_secret = "${MY_SECRET}"   # ZOOM_CLIENT_SECRET
//! subscription_id = "..."          # ZOOM_SUBSCRIPTION_ID (enables the event WebSocket)
//! webhook_secret_token = "..."     # ZOOM_WEBHOOK_SECRET_TOKEN (enables the webhook receiver)
//! oauth_url = "https://zoom.us/oauth/token"   # ZOOM_OAUTH_URL (zoomgov.com for Government)
//! ws_url = "wss://ws.zoom.us/ws"              # ZOOM_WS_URL
//! grant = "account_credentials"    # or "client_credentials"
//!
//! rtms_client_id = "..."          # ZOOM_RTMS_CLIENT_ID: the app owning the RTMS scope
//! rtms_client_secret = "..."      # ZOOM_RTMS_CLIENT_SECRET (both default to client_id/secret)
//!
//! [zoom.rtms]                      # RTMS media streams, opened on *.rtms_started
//! enabled = true                   # default: true when RTMS or app credentials are set
//! media = ["audio", "transcript"]  # also "video", "share", "chat"
//! codec = "l16"                    # l16 | g711 | g722 | opus
//! sample_rate = 16000              # 8000 | 16000 | 32000 | 48000
//! channels = 1
//! frame_ms = 20                    # ms of audio per message, a multiple of 20
//! per_speaker = false              # one audio stream per speaker instead of the mix
//! # transcript_language = "..."   # Zoom's source-language id; unset: detect
//! single_socket = false            # one `all` media socket instead of one per kind
//! resume_window_s = 60             # how long a dropped stream may be resumed
//!
//! [zoom.websocket]
//! enabled = true                   # default: true when a subscription id is set
//! heartbeat_s = 30
//! silence_timeout_s = 45
//!
//! [zoom.webhook]
//! enabled = true                   # default: true when a webhook secret token is set
//! bind = "127.0.0.1:8080"
//! path = "/zoom/webhook"
//! max_body_bytes = 1048576
//! timestamp_window_s = 300
//! ```
//!
//! Environment variables win over the file; a `.env` file beside the config fills in what
//! the real environment does not set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

pub use zoomhost_runtime::{Limits, PluginGrant, ResolvedGrant, RuntimeConfig};

/// A host's `[zoom]` settings for a local simulated Zoom: OAuth, the event WebSocket and
/// the RTMS client requesting `media`, with the simulator's credentials.
pub fn for_local_zoom(
    zoom: &zoomhost_sim::LocalZoom,
    media: Vec<zoomhost_types::MediaKind>,
) -> ZoomConfig {
    use zoomhost_sim::credentials::*;
    let secret = || Secret::new(CLIENT_SECRET.to_string());
    let mut rtms = crate::zoom::rtms::RtmsConfig::new(CLIENT_ID, secret());
    rtms.media = media;
    ZoomConfig {
        oauth: Some(crate::zoom::oauth::OAuthConfig::new(
            zoom.oauth.url(),
            CLIENT_ID,
            secret(),
            crate::zoom::oauth::Grant::AccountCredentials {
                account_id: ACCOUNT_ID.into(),
            },
        )),
        websocket: Some(ZoomWebsocketConfig {
            url: zoom.events.url(),
            subscription_id: SUBSCRIPTION_ID.into(),
            heartbeat: std::time::Duration::from_secs(30),
            silence_timeout: std::time::Duration::from_secs(45),
        }),
        webhook: None,
        rtms: Some(rtms),
    }
}

/// Re-reads a config file for the runtime's watcher: the runtime's part of
/// [`HostConfig::load`].
pub fn runtime_loader() -> zoomhost_runtime::reload::ConfigLoader {
    std::sync::Arc::new(|path| HostConfig::load(path).map(|c| c.runtime))
}

/// The raw file shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    plugins_dir: Option<PathBuf>,
    limits: Limits,
    plugins: BTreeMap<String, PluginGrant>,
    zoom: Option<RawZoom>,
}

/// The host configuration after validation: the runtime's part and the sources'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    /// The plugin runtime: `plugins_dir`, `[limits]`, `[plugins.NAME]`.
    pub runtime: RuntimeConfig,
    /// Zoom connectivity; `None` when nothing Zoom is configured (file or environment).
    pub zoom: Option<ZoomConfig>,
}

impl HostConfig {
    /// Reads and validates a TOML file; relative `plugins_dir` is resolved against the
    /// file's folder. Environment variables come from the process, then from a `.env` file
    /// beside the config (which never overrides the real environment).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading host config {}", path.display()))?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("."));
        let dotenv = read_dotenv(&base.join(".env"))?;
        Self::parse(&text, base, &|k| {
            std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
        })
        .with_context(|| format!("in host config {}", path.display()))
    }

    /// The configuration when there is no file: defaults, plus Zoom settings from the
    /// environment and a `.env` file in `base`.
    pub fn from_env(base: &Path) -> anyhow::Result<Self> {
        let dotenv = read_dotenv(&base.join(".env"))?;
        Self::parse("", base, &|k| {
            std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
        })
        .context("in the environment (no host config file)")
    }

    /// Parses TOML text; `env` resolves `${VAR}` references. Every problem is reported at
    /// once, each naming its key.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut problems = Vec::new();
        let plugins_dir = match raw.plugins_dir {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p,
            None => base.join("plugins"),
        };
        let runtime = RuntimeConfig::resolve(
            plugins_dir,
            raw.limits,
            raw.plugins,
            &|value| expand_env(value, env),
            &mut problems,
        );
        let zoom = resolve_zoom(raw.zoom, env, &mut problems);
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        Ok(Self { runtime, zoom })
    }
}

pub use zoomhost_protocol::Secret;

/// Zoom's production token endpoint.
pub const DEFAULT_OAUTH_URL: &str = "https://zoom.us/oauth/token";
/// Zoom's production event WebSocket.
pub const DEFAULT_WS_URL: &str = "wss://ws.zoom.us/ws";

/// `[zoom]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawZoom {
    account_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    subscription_id: Option<String>,
    webhook_secret_token: Option<String>,
    oauth_url: Option<String>,
    ws_url: Option<String>,
    grant: Option<String>,
    rtms_client_id: Option<String>,
    rtms_client_secret: Option<String>,
    websocket: RawZoomWebsocket,
    webhook: RawZoomWebhook,
    rtms: RawZoomRtms,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawZoomRtms {
    enabled: Option<bool>,
    media: Option<Vec<String>>,
    codec: Option<String>,
    sample_rate: Option<u32>,
    channels: Option<u8>,
    frame_ms: Option<u32>,
    per_speaker: Option<bool>,
    transcript_language: Option<String>,
    single_socket: Option<bool>,
    binary_frames: Option<bool>,
    resume_window_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawZoomWebsocket {
    enabled: Option<bool>,
    heartbeat_s: Option<u64>,
    silence_timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawZoomWebhook {
    enabled: Option<bool>,
    bind: Option<String>,
    path: Option<String>,
    max_body_bytes: Option<usize>,
    timestamp_window_s: Option<u64>,
}

/// The event WebSocket source, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoomWebsocketConfig {
    /// Base URL, e.g. `wss://ws.zoom.us/ws` (`subscriptionId` and the token are appended).
    pub url: String,
    /// The event subscription id.
    pub subscription_id: String,
    /// Interval between client heartbeats.
    pub heartbeat: Duration,
    /// Silence after which the connection is declared dead.
    pub silence_timeout: Duration,
}

/// Zoom connectivity, validated: which sources run and what they need.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoomConfig {
    /// The token manager's settings; present when the credentials are complete (always
    /// when the WebSocket is enabled).
    pub oauth: Option<crate::zoom::oauth::OAuthConfig>,
    /// The event WebSocket, when enabled.
    pub websocket: Option<ZoomWebsocketConfig>,
    /// The webhook receiver, when enabled.
    pub webhook: Option<crate::zoom::webhook::WebhookConfig>,
    /// The RTMS client, when enabled (default: whenever RTMS or app credentials are set).
    pub rtms: Option<crate::zoom::rtms::RtmsConfig>,
}

/// One `[zoom]` value: its TOML key, its environment variable, and where it came from.
struct ZoomValue {
    key: &'static str,
    var: &'static str,
    value: Option<String>,
}

impl ZoomValue {
    /// Environment first (non-empty), then the file (with `${VAR}` expanded).
    fn resolve(
        key: &'static str,
        var: &'static str,
        file: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<String>,
    ) -> Self {
        let from_env = env(var).filter(|v| !v.trim().is_empty());
        let value = match from_env {
            Some(v) => Some(v),
            None => match file.map(|v| expand_env(&v, env)) {
                Some(Ok(v)) if !v.trim().is_empty() => Some(v),
                Some(Ok(_)) | None => None,
                Some(Err(e)) => {
                    problems.push(format!("zoom.{key}: {e}"));
                    None
                }
            },
        };
        Self { key, var, value }
    }

    fn missing(&self, needed_by: &str) -> String {
        format!(
            "{needed_by} needs {var} (environment or .env) or zoom.{key} (TOML), which is not set",
            var = self.var,
            key = self.key
        )
    }
}

/// Resolves `[zoom]` plus the environment into a [`ZoomConfig`]; `None` when nothing Zoom
/// is configured at all.
fn resolve_zoom(
    raw: Option<RawZoom>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<ZoomConfig> {
    let had_section = raw.is_some();
    let raw = raw.unwrap_or_default();
    let before = problems.len();
    let v = |key, var, file: &Option<String>, problems: &mut Vec<String>| {
        ZoomValue::resolve(key, var, file.clone(), env, problems)
    };
    let account_id = v("account_id", "ZOOM_ACCOUNT_ID", &raw.account_id, problems);
    let client_id = v("client_id", "ZOOM_CLIENT_ID", &raw.client_id, problems);
    let client_secret = v(
        "client_secret",
        "ZOOM_CLIENT_SECRET",
        &raw.client_secret,
        problems,
    );
    let subscription_id = v(
        "subscription_id",
        "ZOOM_SUBSCRIPTION_ID",
        &raw.subscription_id,
        problems,
    );
    let webhook_secret = v(
        "webhook_secret_token",
        "ZOOM_WEBHOOK_SECRET_TOKEN",
        &raw.webhook_secret_token,
        problems,
    );
    let oauth_url = v("oauth_url", "ZOOM_OAUTH_URL", &raw.oauth_url, problems);
    let ws_url = v("ws_url", "ZOOM_WS_URL", &raw.ws_url, problems);
    let rtms_id = v(
        "rtms_client_id",
        "ZOOM_RTMS_CLIENT_ID",
        &raw.rtms_client_id,
        problems,
    );
    let rtms_secret = v(
        "rtms_client_secret",
        "ZOOM_RTMS_CLIENT_SECRET",
        &raw.rtms_client_secret,
        problems,
    );

    let anything = had_section
        || [
            &account_id,
            &client_id,
            &client_secret,
            &subscription_id,
            &webhook_secret,
            &oauth_url,
            &ws_url,
            &rtms_id,
            &rtms_secret,
        ]
        .iter()
        .any(|z| z.value.is_some());
    if !anything {
        return None;
    }

    // Endpoints.
    let oauth_url_value = oauth_url
        .value
        .clone()
        .unwrap_or_else(|| DEFAULT_OAUTH_URL.to_string());
    match url::Url::parse(&oauth_url_value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => problems.push(
            "zoom.oauth_url (ZOOM_OAUTH_URL) must be an http(s) URL such as \
             https://zoom.us/oauth/token"
                .into(),
        ),
    }
    let ws_url_value = ws_url
        .value
        .clone()
        .unwrap_or_else(|| DEFAULT_WS_URL.to_string());
    match url::Url::parse(&ws_url_value) {
        Ok(u) if matches!(u.scheme(), "ws" | "wss") => {}
        _ => problems.push(
            "zoom.ws_url (ZOOM_WS_URL) must be a ws(s) URL such as wss://ws.zoom.us/ws".into(),
        ),
    }

    // OAuth.
    let account_grant = match raw.grant.as_deref() {
        None | Some("account_credentials") => true,
        Some("client_credentials") => false,
        Some(_) => {
            problems.push(
                "zoom.grant must be \"account_credentials\" or \"client_credentials\"".into(),
            );
            true
        }
    };
    let oauth_missing: Vec<&ZoomValue> = [&client_id, &client_secret]
        .into_iter()
        .chain(account_grant.then_some(&account_id))
        .filter(|z| z.value.is_none())
        .collect();
    let oauth = match (&client_id.value, &client_secret.value) {
        (Some(id), Some(secret)) if oauth_missing.is_empty() => {
            let grant = match &account_id.value {
                Some(a) if account_grant => crate::zoom::oauth::Grant::AccountCredentials {
                    account_id: a.clone(),
                },
                _ => crate::zoom::oauth::Grant::ClientCredentials,
            };
            Some(crate::zoom::oauth::OAuthConfig::new(
                oauth_url_value,
                id.clone(),
                Secret::new(secret.clone()),
                grant,
            ))
        }
        _ => None,
    };

    // Event WebSocket.
    let ws_enabled = raw
        .websocket
        .enabled
        .unwrap_or(subscription_id.value.is_some());
    let heartbeat_s = raw.websocket.heartbeat_s.unwrap_or(30);
    let silence_s = raw.websocket.silence_timeout_s.unwrap_or(45);
    if heartbeat_s == 0 {
        problems.push("zoom.websocket.heartbeat_s must be greater than 0".into());
    }
    if silence_s <= heartbeat_s {
        problems.push(
            "zoom.websocket.silence_timeout_s must be greater than zoom.websocket.heartbeat_s"
                .into(),
        );
    }
    let websocket = if ws_enabled {
        let needed = "the event WebSocket (zoom.websocket.enabled)";
        if subscription_id.value.is_none() {
            problems.push(subscription_id.missing(needed));
        }
        for z in &oauth_missing {
            problems.push(z.missing(needed));
        }
        subscription_id
            .value
            .clone()
            .map(|subscription_id| ZoomWebsocketConfig {
                url: ws_url_value,
                subscription_id,
                heartbeat: Duration::from_secs(heartbeat_s),
                silence_timeout: Duration::from_secs(silence_s),
            })
    } else {
        None
    };

    // Webhook receiver.
    let wh = &raw.webhook;
    let wh_enabled = wh.enabled.unwrap_or(webhook_secret.value.is_some());
    let bind_text = wh.bind.clone().unwrap_or_else(|| "127.0.0.1:8080".into());
    let bind = match bind_text.parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "zoom.webhook.bind must be an address:port such as 127.0.0.1:8080 (got {bind_text:?})"
            ));
            None
        }
    };
    let path = wh.path.clone().unwrap_or_else(|| "/zoom/webhook".into());
    if !path.starts_with('/') {
        problems.push("zoom.webhook.path must start with '/'".into());
    }
    let max_body_bytes = wh.max_body_bytes.unwrap_or(1024 * 1024);
    if max_body_bytes == 0 {
        problems.push("zoom.webhook.max_body_bytes must be greater than 0".into());
    }
    let window_s = wh.timestamp_window_s.unwrap_or(300);
    if window_s == 0 {
        problems.push("zoom.webhook.timestamp_window_s must be greater than 0".into());
    }
    let webhook = if wh_enabled {
        if webhook_secret.value.is_none() {
            problems.push(webhook_secret.missing("the webhook receiver (zoom.webhook.enabled)"));
        }
        match (&webhook_secret.value, bind) {
            (Some(secret), Some(bind)) => Some(crate::zoom::webhook::WebhookConfig {
                bind,
                path,
                secret: Secret::new(secret.clone()),
                max_body_bytes,
                timestamp_window: Duration::from_secs(window_s),
                ..crate::zoom::webhook::WebhookConfig::default()
            }),
            _ => None,
        }
    } else {
        None
    };

    // RTMS.
    let rtms = resolve_rtms(
        &raw.rtms,
        (&rtms_id, &rtms_secret),
        (&client_id, &client_secret),
        problems,
    );

    if problems.len() > before {
        return None;
    }
    Some(ZoomConfig {
        oauth,
        websocket,
        webhook,
        rtms,
    })
}

/// `[zoom.rtms]` plus credentials: the RTMS app's own, or else the S2S app's.
fn resolve_rtms(
    raw: &RawZoomRtms,
    (rtms_id, rtms_secret): (&ZoomValue, &ZoomValue),
    (client_id, client_secret): (&ZoomValue, &ZoomValue),
    problems: &mut Vec<String>,
) -> Option<crate::zoom::rtms::RtmsConfig> {
    use zoomhost_types::{AudioCodec, MediaKind};
    let (id, secret) = match (&rtms_id.value, &rtms_secret.value) {
        (Some(id), Some(secret)) => (Some(id.clone()), Some(secret.clone())),
        (None, None) => (client_id.value.clone(), client_secret.value.clone()),
        (Some(_), None) => {
            problems.push(rtms_secret.missing("zoom.rtms_client_id (ZOOM_RTMS_CLIENT_ID)"));
            (None, None)
        }
        (None, Some(_)) => {
            problems.push(rtms_id.missing("zoom.rtms_client_secret (ZOOM_RTMS_CLIENT_SECRET)"));
            (None, None)
        }
    };
    let enabled = raw.enabled.unwrap_or(id.is_some() && secret.is_some());
    if !enabled {
        return None;
    }
    let (Some(id), Some(secret)) = (id, secret) else {
        problems.push(
            "the RTMS client (zoom.rtms.enabled) needs ZOOM_RTMS_CLIENT_ID and \
             ZOOM_RTMS_CLIENT_SECRET (or zoom.rtms_client_id / zoom.rtms_client_secret), \
             or the app's ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET"
                .into(),
        );
        return None;
    };
    let mut config = crate::zoom::rtms::RtmsConfig::new(id, Secret::new(secret));
    if let Some(media) = &raw.media {
        let mut kinds = Vec::new();
        for (i, name) in media.iter().enumerate() {
            match MediaKind::from_name(name) {
                Some(k) if !kinds.contains(&k) => kinds.push(k),
                Some(_) => {}
                None => problems.push(format!(
                    "zoom.rtms.media[{i}]: unknown media kind {name:?} (audio, transcript, video, share, chat)"
                )),
            }
        }
        if kinds.is_empty() {
            problems.push("zoom.rtms.media must name at least one media kind".into());
        }
        config.media = kinds;
    }
    if let Some(codec) = &raw.codec {
        config.audio.codec = match codec.to_ascii_lowercase().as_str() {
            "l16" => AudioCodec::L16,
            "g711" => AudioCodec::G711,
            "g722" => AudioCodec::G722,
            "opus" => AudioCodec::Opus,
            _ => {
                problems.push(format!(
                    "zoom.rtms.codec must be l16, g711, g722 or opus (got {codec:?})"
                ));
                AudioCodec::L16
            }
        };
    }
    if let Some(rate) = raw.sample_rate {
        if !crate::zoom::rtms::protocol::valid_rate(rate) {
            problems.push(format!(
                "zoom.rtms.sample_rate must be 8000, 16000, 32000 or 48000 (got {rate})"
            ));
        }
        config.audio.sample_rate = rate;
    }
    if let Some(ch) = raw.channels {
        if !(1..=2).contains(&ch) {
            problems.push(format!("zoom.rtms.channels must be 1 or 2 (got {ch})"));
        }
        config.audio.channels = ch;
    }
    if let Some(ms) = raw.frame_ms {
        if ms == 0 || ms % 20 != 0 {
            problems.push(format!(
                "zoom.rtms.frame_ms must be a positive multiple of 20 (got {ms})"
            ));
        }
        config.audio.frame_ms = ms;
    }
    if let Some(per_speaker) = raw.per_speaker {
        config.audio.per_speaker = per_speaker;
    }
    config.transcript_language = raw.transcript_language.clone();
    if let Some(single) = raw.single_socket {
        config.single_socket = single;
    }
    if let Some(binary) = raw.binary_frames {
        config.binary_frames = binary;
    }
    if let Some(s) = raw.resume_window_s {
        if s == 0 {
            problems.push("zoom.rtms.resume_window_s must be greater than 0".into());
        }
        config.resume_window = Duration::from_secs(s);
    }
    Some(config)
}

/// Reads `KEY=value` pairs from a `.env` file; a missing file is empty.
fn read_dotenv(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(BTreeMap::new()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let mut out = BTreeMap::new();
    for (i, item) in iter.enumerate() {
        // The error text of dotenvy may quote the line; name only the position.
        let (k, v) = item
            .map_err(|_| anyhow::anyhow!("{}: entry {} is not KEY=value", path.display(), i + 1))?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Expands `${VAR}` references; `$$` is a literal `$`. A missing variable is an error that
/// names it (never its value).
pub fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let var = &tail[..end];
            if var.is_empty() {
                return Err("empty ${} reference".into());
            }
            let v = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_env_and_reports_missing_by_name() {
        assert_eq!(expand_env("a${SECRET}b$$", &env).unwrap(), "as3cr3tb$");
        let err = expand_env("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn parses_grants_and_limits() {
        let cfg = HostConfig::parse(
            r#"
            plugins_dir = "p"
            [limits]
            event_deadline_ms = 250
            [plugins.slack]
            allow_http = ["https://hooks.slack.com", "http://127.0.0.1:*"]
            config = { url = "https://x/${SECRET}" }
            "#,
            Path::new("/etc/zh"),
            &env,
        )
        .unwrap();
        assert_eq!(cfg.runtime.plugins_dir, Path::new("/etc/zh/p"));
        assert_eq!(cfg.runtime.limits.event_deadline_ms, 250);
        assert_eq!(cfg.runtime.limits.media_deadline_ms, 50);
        let g = cfg.runtime.grant("slack");
        assert_eq!(g.allow_http.len(), 2);
        assert_eq!(g.config["url"], "https://x/s3cr3t");
        assert!(cfg.runtime.grant("other").allow_http.is_empty());
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = HostConfig::parse(
            r#"
            [limits]
            memory_mib = 0
            [plugins.a]
            allow_http = ["ftp//nope"]
            config = { k = "${MISSING_ONE}" }
            "#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.memory_mib"), "{err}");
        assert!(err.contains("plugins.a.allow_http[0]"), "{err}");
        assert!(err.contains("MISSING_ONE"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = HostConfig::parse("[limits]\nevent_deadline = 3\n", Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("event_deadline"), "{err}");
    }
}
