//! `[zoom]`: the Zoom sources' own configuration section, validated with every problem
//! named by its key. Every value may come from the environment instead (`ZOOM_*`), which
//! wins over the file; the binary decides where the environment comes from (the process,
//! a `.env` file) and how `${VAR}` references expand.

use std::time::Duration;

use serde::Deserialize;
use zoomhost_protocol::Secret;

use crate::events::EventStreamConfig;

/// Zoom's production token endpoint.
pub const DEFAULT_OAUTH_URL: &str = "https://zoom.us/oauth/token";
/// Zoom's production event WebSocket.
pub const DEFAULT_WS_URL: &str = "wss://ws.zoom.us/ws";

/// `[zoom]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawZoom {
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
    dedupe_window_s: Option<u64>,
    dedupe_capacity: Option<usize>,
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
    transcript_language: Option<LanguageSpec>,
    enable_lid: Option<bool>,
    buffer_data: Option<bool>,
    handshake_id: Option<String>,
    individual_video: Option<bool>,
    single_socket: Option<bool>,
    binary_frames: Option<bool>,
    resume_window_s: Option<u64>,
    media_resume_window_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    close_grace_ms: Option<u64>,
}

/// A transcript language, written as Zoom's number or as text (a number, a name or a
/// language tag; [`zoomhost_protocol::rtms::language::parse`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LanguageSpec {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawZoomWebsocket {
    enabled: Option<bool>,
    heartbeat_s: Option<u64>,
    silence_timeout_s: Option<u64>,
    reconnect_jitter_ms: Option<u64>,
    backoff_max_s: Option<u64>,
    healthy_after_s: Option<u64>,
    token_refresh_margin_s: Option<u64>,
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

/// Zoom connectivity, validated: which sources run and what they need.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoomConfig {
    /// The token manager's settings; present when the credentials are complete (always
    /// when the WebSocket is enabled).
    pub oauth: Option<crate::oauth::OAuthConfig>,
    /// The event WebSocket, when enabled.
    pub websocket: Option<EventStreamConfig>,
    /// The webhook receiver, when enabled.
    pub webhook: Option<crate::webhook::WebhookConfig>,
    /// The RTMS client, when enabled (default: whenever RTMS or app credentials are set).
    pub rtms: Option<crate::rtms::RtmsConfig>,
    /// How the host's input path remembers events to deliver each once
    /// (`dedupe_window_s`, `dedupe_capacity`).
    pub dedupe: EventDedupeConfig,
}

/// How long, and how many, event ids the host's input path remembers so that an event
/// arriving twice (on the WebSocket and as a webhook, or as a webhook retry) is
/// delivered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDedupeConfig {
    /// How long an id is remembered: 65 min by default, covering Zoom's webhook retries
    /// after 5, 20 and 60 minutes.
    pub window: Duration,
    /// Most ids remembered (the oldest are forgotten first); about 100 bytes each.
    pub capacity: usize,
}

impl Default for EventDedupeConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(65 * 60),
            capacity: 200_000,
        }
    }
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
        expand: &dyn Fn(&str) -> Result<String, String>,
        problems: &mut Vec<String>,
    ) -> Self {
        let from_env = env(var).filter(|v| !v.trim().is_empty());
        let value = match from_env {
            Some(v) => Some(v),
            None => match file.map(|v| expand(&v)) {
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
pub fn resolve(
    raw: Option<RawZoom>,
    env: &dyn Fn(&str) -> Option<String>,
    expand: &dyn Fn(&str) -> Result<String, String>,
    problems: &mut Vec<String>,
) -> Option<ZoomConfig> {
    let had_section = raw.is_some();
    let raw = raw.unwrap_or_default();
    let before = problems.len();
    let v = |key, var, file: &Option<String>, problems: &mut Vec<String>| {
        ZoomValue::resolve(key, var, file.clone(), env, expand, problems)
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
                Some(a) if account_grant => crate::oauth::Grant::AccountCredentials {
                    account_id: a.clone(),
                },
                _ => crate::oauth::Grant::ClientCredentials,
            };
            Some(crate::oauth::OAuthConfig::new(
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
        subscription_id.value.clone().map(|subscription_id| {
            let mut ws = EventStreamConfig::new(ws_url_value, subscription_id);
            ws.heartbeat = Duration::from_secs(heartbeat_s);
            ws.silence_timeout = Duration::from_secs(silence_s);
            let raw = &raw.websocket;
            if let Some(ms) = raw.reconnect_jitter_ms {
                ws.reconnect_jitter = Duration::from_millis(ms);
            }
            if let Some(s) = raw.backoff_max_s {
                ws.backoff_max = Duration::from_secs(s).max(ws.backoff_min);
            }
            if let Some(s) = raw.healthy_after_s {
                ws.healthy_after = Duration::from_secs(s);
            }
            if let Some(s) = raw.token_refresh_margin_s {
                ws.token_refresh_margin = Duration::from_secs(s);
            }
            ws
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
            (Some(secret), Some(bind)) => Some(crate::webhook::WebhookConfig {
                bind,
                path,
                secret: Secret::new(secret.clone()),
                max_body_bytes,
                timestamp_window: Duration::from_secs(window_s),
                ..crate::webhook::WebhookConfig::default()
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

    let defaults = EventDedupeConfig::default();
    let dedupe = EventDedupeConfig {
        window: raw
            .dedupe_window_s
            .map_or(defaults.window, Duration::from_secs),
        capacity: raw.dedupe_capacity.unwrap_or(defaults.capacity),
    };
    if dedupe.capacity == 0 {
        problems.push("zoom.dedupe_capacity must be greater than 0".into());
    }

    if problems.len() > before {
        return None;
    }
    Some(ZoomConfig {
        oauth,
        websocket,
        webhook,
        rtms,
        dedupe,
    })
}

/// `[zoom.rtms]` plus credentials: the RTMS app's own, or else the S2S app's.
fn resolve_rtms(
    raw: &RawZoomRtms,
    (rtms_id, rtms_secret): (&ZoomValue, &ZoomValue),
    (client_id, client_secret): (&ZoomValue, &ZoomValue),
    problems: &mut Vec<String>,
) -> Option<crate::rtms::RtmsConfig> {
    use zoomhost_protocol::rtms::language;
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
    let mut config = crate::rtms::RtmsConfig::new(id, Secret::new(secret));
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
        if !crate::rtms::protocol::valid_rate(rate) {
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
    if let Some(lang) = &raw.transcript_language {
        let parsed = match lang {
            LanguageSpec::Number(n) => language::parse(&n.to_string()),
            LanguageSpec::Text(t) => language::parse(t),
        };
        match parsed {
            Ok(n) => config.transcript_language = Some(n),
            Err(e) => {
                let got = match lang {
                    LanguageSpec::Number(n) => n.to_string(),
                    LanguageSpec::Text(t) => format!("{t:?}"),
                };
                problems.push(format!("zoom.rtms.transcript_language = {got}: {e}"));
            }
        }
    }
    if raw.enable_lid.is_some() {
        config.enable_lid = raw.enable_lid;
    }
    if raw.buffer_data.is_some() {
        config.buffer_data = raw.buffer_data;
    }
    if let Some(id) = &raw.handshake_id {
        config.handshake_id = match id.as_str() {
            "product" => crate::rtms::HandshakeId::Product,
            "meeting_uuid" => crate::rtms::HandshakeId::MeetingUuid,
            _ => {
                problems.push(format!(
                    "zoom.rtms.handshake_id must be \"product\" or \"meeting_uuid\" (got {id:?})"
                ));
                crate::rtms::HandshakeId::Product
            }
        };
    }
    if let Some(individual) = raw.individual_video {
        config.individual_video = individual;
        if individual && !config.media.contains(&MediaKind::Video) {
            problems.push("zoom.rtms.individual_video needs \"video\" in zoom.rtms.media".into());
        }
    }
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
    let mut timer = |key: &str, value: Option<Duration>, slot: &mut Duration| {
        if let Some(d) = value {
            if d.is_zero() {
                problems.push(format!("zoom.rtms.{key} must be greater than 0"));
            }
            *slot = d;
        }
    };
    let secs = |v: Option<u64>| v.map(Duration::from_secs);
    let millis = |v: Option<u64>| v.map(Duration::from_millis);
    timer(
        "media_resume_window_s",
        secs(raw.media_resume_window_s),
        &mut config.media_resume_window,
    );
    timer(
        "idle_timeout_s",
        secs(raw.idle_timeout_s),
        &mut config.idle_timeout,
    );
    timer(
        "reconnect_min_ms",
        millis(raw.reconnect_min_ms),
        &mut config.reconnect_min,
    );
    timer(
        "reconnect_max_ms",
        millis(raw.reconnect_max_ms),
        &mut config.reconnect_max,
    );
    timer(
        "close_grace_ms",
        millis(raw.close_grace_ms),
        &mut config.close_grace,
    );
    if config.reconnect_max < config.reconnect_min {
        problems.push(format!(
            "zoom.rtms.reconnect_max_ms ({:?}) must not be below reconnect_min_ms ({:?})",
            config.reconnect_max, config.reconnect_min
        ));
    }
    Some(config)
}

#[cfg(test)]
mod rtms_keys {
    use super::*;
    use crate::rtms::HandshakeId;

    fn rtms(section: serde_json::Value) -> (Option<crate::rtms::RtmsConfig>, Vec<String>) {
        let raw: RawZoom = serde_json::from_value(serde_json::json!({
            "rtms_client_id": "id", "rtms_client_secret": "secret", "rtms": section
        }))
        .expect("[zoom] section");
        let mut problems = Vec::new();
        let zoom = resolve(Some(raw), &|_| None, &|s| Ok(s.to_string()), &mut problems);
        (zoom.and_then(|z| z.rtms), problems)
    }

    #[test]
    fn failure_contract_timers_and_2026_fields_are_read() {
        let (config, problems) = rtms(serde_json::json!({
            "media": ["audio", "video"], "individual_video": true,
            "transcript_language": "9", "enable_lid": false, "buffer_data": false,
            "handshake_id": "meeting_uuid", "media_resume_window_s": 70,
            "reconnect_min_ms": 100, "reconnect_max_ms": 800, "close_grace_ms": 50,
            "idle_timeout_s": 20,
        }));
        assert!(problems.is_empty(), "{problems:?}");
        let c = config.expect("rtms config");
        assert_eq!(c.transcript_language, Some(9));
        assert_eq!((c.enable_lid, c.buffer_data), (Some(false), Some(false)));
        assert_eq!(c.handshake_id, HandshakeId::MeetingUuid);
        assert!(c.individual_video);
        assert_eq!(c.media_resume_window, Duration::from_secs(70));
        assert_eq!(c.reconnect_min, Duration::from_millis(100));
        assert_eq!(c.reconnect_max, Duration::from_millis(800));
        assert_eq!(c.close_grace, Duration::from_millis(50));
        assert_eq!(c.idle_timeout, Duration::from_secs(20));
        let (c, _) = rtms(serde_json::json!({ "transcript_language": 36 }));
        assert_eq!(c.expect("rtms").transcript_language, Some(36));
    }

    #[test]
    fn transcript_language_is_a_number_a_name_or_a_tag() {
        for (written, number) in [
            (serde_json::json!("en"), 9),
            (serde_json::json!("english"), 9),
            (serde_json::json!("ENGLISH"), 9),
            (serde_json::json!("en-US"), 9),
            (serde_json::json!(9), 9),
            (serde_json::json!("fr-CA"), 12),
            (serde_json::json!("french_france"), 13),
            (serde_json::json!("none"), -1),
            (serde_json::json!(0), 0),
        ] {
            let (c, problems) = rtms(serde_json::json!({ "transcript_language": written }));
            assert!(problems.is_empty(), "{written}: {problems:?}");
            assert_eq!(
                c.expect("rtms").transcript_language,
                Some(number),
                "{written}"
            );
        }
        for (written, shown) in [
            (serde_json::json!("klingon"), "\"klingon\""),
            (serde_json::json!(37), "37"),
            (serde_json::json!("fr"), "fr-CA, fr-FR"),
        ] {
            let (_, problems) = rtms(serde_json::json!({ "transcript_language": written }));
            let all = problems.join("\n");
            assert!(all.contains("zoom.rtms.transcript_language"), "{all}");
            assert!(all.contains(shown), "{shown} in {all}");
        }
    }

    #[test]
    fn bad_values_are_named_by_key() {
        let (_, problems) = rtms(serde_json::json!({
            "transcript_language": "klingon", "handshake_id": "uuid",
            "individual_video": true, "close_grace_ms": 0,
            "reconnect_min_ms": 500, "reconnect_max_ms": 100,
        }));
        let all = problems.join("\n");
        for key in [
            "zoom.rtms.transcript_language",
            "zoom.rtms.handshake_id",
            "zoom.rtms.individual_video",
            "zoom.rtms.close_grace_ms",
            "zoom.rtms.reconnect_max_ms",
        ] {
            assert!(all.contains(key), "{key} in {all}");
        }
    }
}
