//! The plugin's settings, read from the operator's `[plugins.transcript-forwarder.config]`
//! string values and validated once in `init`.

use std::fmt;
use std::time::Duration;

/// Every config key the plugin reads (reported in its metadata; anything else is
/// warned about as a likely typo).
pub const KEYS: &[&str] = &[
    "sink_url",
    "sink_token",
    "batch_max",
    "batch_ms",
    "max_pending",
    "retry_min_ms",
    "retry_max_ms",
    "min_send_ms",
    "http_timeout_ms",
    "flush_events",
    "stt_url",
    "stt_model",
    "stt_api_key",
    "stt_language",
    "stt_chunk_seconds",
    "stt_max_buffered_seconds",
    "stt_min_final_ms",
];

/// Events that give the plugin a call with the (longer) event deadline, used to deliver
/// batches of streams that ended before their last batch could be sent.
pub const DEFAULT_FLUSH_EVENTS: &str =
    "meeting.rtms_stopped,webinar.rtms_stopped,session.rtms_stopped,meeting.ended,webinar.ended";

/// A secret config value: shown as `***` by `Debug`, so it cannot leak through a
/// formatted struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it (an `authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything the plugin was configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where batches are POSTed.
    pub sink_url: String,
    /// Bearer token for the sink.
    pub sink_token: Option<Secret>,
    /// Segments per batch; a batch is sent as soon as this many are pending.
    pub batch_max: usize,
    /// A batch is also sent once its oldest segment has waited this long.
    pub batch_wait: Duration,
    /// Segments kept per stream while the sink is failing; the oldest go first.
    pub max_pending: usize,
    /// First wait before retrying a failed request (doubles up to `retry_max`).
    pub retry_min: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// A request starts only when at least this much of the call's deadline is left.
    pub min_send: Duration,
    /// Upper bound of each request timeout (connect, first byte, between bytes).
    pub http_timeout: Duration,
    /// Event names whose delivery flushes what is pending.
    pub flush_events: Vec<String>,
    /// Speech-to-text, when configured.
    pub stt: Option<SttSettings>,
}

/// Speech-to-text settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SttSettings {
    /// OpenAI-compatible transcription endpoint (`.../v1/audio/transcriptions`).
    pub url: String,
    /// The `model` form field.
    pub model: String,
    /// Bearer token for the STT endpoint.
    pub api_key: Option<Secret>,
    /// The `language` form field (ISO-639-1), also put on the resulting segments.
    pub language: Option<String>,
    /// Seconds of one speaker's audio per request.
    pub chunk_seconds: u32,
    /// Seconds of audio a stream may hold (partial and untranscribed chunks together).
    pub max_buffered_seconds: u32,
    /// At stream end, a partial chunk at least this long is still transcribed.
    pub min_final: Duration,
}

/// Reads and validates the settings; `get` looks a key up (the host's `config-get`).
/// The error names the key and what is wrong with it, never a secret's value.
pub fn load(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
    let get = |key: &str| {
        get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let sink_url = get("sink_url").ok_or("config key `sink_url` is required")?;
    check_url("sink_url", &sink_url)?;
    let batch_max = number(&get, "batch_max", 10, 1, 10_000)?;
    let max_pending = number(&get, "max_pending", 1000, 1, 1_000_000)?;
    if max_pending < batch_max {
        return Err(format!(
            "config `max_pending` ({max_pending}) must be at least `batch_max` ({batch_max})"
        ));
    }
    let retry_min = number(&get, "retry_min_ms", 1000, 0, 3_600_000)?;
    let retry_max = number(&get, "retry_max_ms", 30_000, 0, 3_600_000)?;
    if retry_max < retry_min {
        return Err(format!(
            "config `retry_max_ms` ({retry_max}) must be at least `retry_min_ms` ({retry_min})"
        ));
    }
    let flush_events = flush_events(get("flush_events"));

    let stt = match get("stt_url") {
        None => None,
        Some(url) => {
            check_url("stt_url", &url)?;
            let model = get("stt_model").unwrap_or_else(|| "whisper-1".to_string());
            check_token("stt_model", &model)?;
            let language = get("stt_language");
            if let Some(language) = &language {
                check_token("stt_language", language)?;
            }
            let chunk_seconds = number(&get, "stt_chunk_seconds", 5, 1, 600)?;
            let max_buffered_seconds = number(&get, "stt_max_buffered_seconds", 60, 1, 3600)?;
            if max_buffered_seconds < chunk_seconds {
                return Err(format!(
                    "config `stt_max_buffered_seconds` ({max_buffered_seconds}) must be at least \
                     `stt_chunk_seconds` ({chunk_seconds})"
                ));
            }
            Some(SttSettings {
                url,
                model,
                api_key: get("stt_api_key").map(Secret),
                language,
                chunk_seconds,
                max_buffered_seconds,
                min_final: millis(number(&get, "stt_min_final_ms", 1000, 0, 3_600_000)?),
            })
        }
    };
    for key in [
        "stt_model",
        "stt_api_key",
        "stt_language",
        "stt_chunk_seconds",
    ] {
        if stt.is_none() && get(key).is_some() {
            return Err(format!(
                "config `{key}` is set but `stt_url` is not: set `stt_url` to enable speech-to-text"
            ));
        }
    }

    Ok(Settings {
        sink_url,
        sink_token: get("sink_token").map(Secret),
        batch_max,
        batch_wait: millis(number(&get, "batch_ms", 2000, 0, 3_600_000)?),
        max_pending,
        retry_min: millis(retry_min),
        retry_max: millis(retry_max),
        min_send: millis(number(&get, "min_send_ms", 20, 1, 3_600_000)?),
        http_timeout: millis(number(&get, "http_timeout_ms", 10_000, 1, 3_600_000)?),
        flush_events,
        stt,
    })
}

/// Whether speech-to-text is configured, judged the way [`load`] does (for `metadata`,
/// which runs before `init`).
pub fn stt_configured(get: impl Fn(&str) -> Option<String>) -> bool {
    get("stt_url").is_some_and(|v| !v.trim().is_empty())
}

/// The event names of `flush_events` (its default when unset; `none` for none).
pub fn flush_events(raw: Option<String>) -> Vec<String> {
    raw.unwrap_or_else(|| DEFAULT_FLUSH_EVENTS.to_string())
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && *e != "none")
        .map(str::to_string)
        .collect()
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(text) = get(key) else {
        return Ok(default);
    };
    match text.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!(
            "config `{key}` must be a whole number from {min} to {max}, got {text:?}"
        )),
    }
}

fn check_url(key: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        // The value is not echoed: a URL may carry a credential in its query.
        _ => Err(format!(
            "config `{key}` must be an absolute http:// or https:// URL"
        )),
    }
}

/// Values that go into a multipart form field: no quotes, spaces or line breaks.
fn check_token(key: &str, value: &str) -> Result<(), String> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "config `{key}` may contain only letters, digits and - _ . : / @ +, got {value:?}"
        ))
    }
}

/// The `scheme://authority` of a URL: what log lines show of a configured URL, since
/// its path or query may carry a credential.
pub fn origin(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    // Userinfo (`user:pass@host`) is a credential too.
    let authority = &url[start..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{}{host}", &url[..start])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_map(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = load_map(&[("sink_url", "https://sink.example.com/x?key=1")]).unwrap();
        assert_eq!(s.batch_max, 10);
        assert_eq!(s.batch_wait, Duration::from_millis(2000));
        assert_eq!(s.max_pending, 1000);
        assert_eq!(s.min_send, Duration::from_millis(20));
        assert_eq!(s.flush_events.len(), 5);
        assert!(s.stt.is_none());
        assert!(s.sink_token.is_none());
    }

    #[test]
    fn stt_settings_and_secrets() {
        let s = load_map(&[
            ("sink_url", "http://127.0.0.1:9/x"),
            ("sink_token", "tok-123"),
            ("stt_url", "http://127.0.0.1:9/v1/audio/transcriptions"),
            ("stt_api_key", "sk-secret"),
            ("stt_chunk_seconds", "2"),
            ("flush_events", "none"),
        ])
        .unwrap();
        let stt = s.stt.clone().unwrap();
        assert_eq!(stt.model, "whisper-1");
        assert_eq!(stt.chunk_seconds, 2);
        assert_eq!(stt.max_buffered_seconds, 60);
        assert!(s.flush_events.is_empty());
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("sk-secret"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert!(load_map(&[]).unwrap_err().contains("sink_url"));
        assert!(load_map(&[("sink_url", "ftp://x")])
            .unwrap_err()
            .contains("sink_url"));
        let e = load_map(&[("sink_url", "http://x/"), ("batch_max", "0")]).unwrap_err();
        assert!(e.contains("batch_max") && e.contains("\"0\""), "{e}");
        let e = load_map(&[
            ("sink_url", "http://x/"),
            ("batch_max", "20"),
            ("max_pending", "10"),
        ])
        .unwrap_err();
        assert!(e.contains("max_pending"), "{e}");
        let e = load_map(&[("sink_url", "http://x/"), ("stt_api_key", "k")]).unwrap_err();
        assert!(e.contains("stt_url") && !e.contains("\"k\""), "{e}");
        let e = load_map(&[
            ("sink_url", "http://x/"),
            ("stt_url", "http://y/"),
            ("stt_chunk_seconds", "10"),
            ("stt_max_buffered_seconds", "5"),
        ])
        .unwrap_err();
        assert!(e.contains("stt_max_buffered_seconds"), "{e}");
    }

    #[test]
    fn origins_hide_paths_queries_and_userinfo() {
        assert_eq!(
            origin("https://h.example.com/a?key=1"),
            "https://h.example.com"
        );
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            origin("https://user:pw@h.example.com/x"),
            "https://h.example.com"
        );
        assert_eq!(origin("http://h?x=1"), "http://h");
    }
}
