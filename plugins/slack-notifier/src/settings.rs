//! The plugin's configuration, read from the operator's `[plugins.NAME.config]` values
//! and validated once per instance (in `init`), with errors that name the key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex_lite::Regex;
use wildmatch::WildMatch;

use crate::delivery::RetryPolicy;

/// Events posted when the operator sets no `events`.
pub const DEFAULT_EVENTS: &[&str] = &[
    "meeting.started",
    "meeting.ended",
    "meeting.participant_joined",
    "meeting.participant_left",
    "recording.completed",
];

/// Config key prefix of per-event templates (`template.meeting.started`).
pub const TEMPLATE_PREFIX: &str = "template.";

/// Every config key the plugin reads (`template.<event>` stands for the family).
pub const CONFIG_KEYS: &[&str] = &[
    "webhook_url",
    "events",
    "template.<event>",
    "template.default",
    "topic_filter",
    "max_retries",
    "retry_backoff_ms",
    "request_timeout_ms",
    "request_budget_ms",
];

/// Largest accepted `max_retries`: more would only ever be cut short by the deadline.
const MAX_RETRIES_LIMIT: u32 = 20;

/// The Slack incoming-webhook URL. The URL's path is the webhook's secret token, so only
/// [`origin`](Webhook::origin) may appear in logs and errors; `Debug` shows nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    origin: String,
}

impl Webhook {
    /// Checks that `url` is an absolute `http(s)` URL with a host. The error never
    /// repeats the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("config `webhook_url` is not an absolute URL (expected https://hooks.slack.com/services/...)")?;
        if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
            return Err("config `webhook_url` must be an http:// or https:// URL".into());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // `user:password@` would be a second secret; keep it out of the origin.
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err("config `webhook_url` has no host".into());
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("config `webhook_url` contains whitespace".into());
        }
        Ok(Webhook {
            url: url.to_string(),
            origin: format!("{}://{}", scheme.to_ascii_lowercase(), host),
        })
    }

    /// The full URL, secret path included: for the request only, never for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `scheme://host[:port]`: what logs say instead of the URL.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({}/…)", self.origin)
    }
}

/// Which meeting topics get posted (`topic_filter`).
#[derive(Debug)]
pub enum TopicFilter {
    /// A glob with `*` and `?`, matched case-insensitively against the whole topic.
    Glob(WildMatch),
    /// `re:<regex>`: matched anywhere in the topic (anchor it with `^…$`).
    Regex(Regex),
}

impl TopicFilter {
    /// Parses `glob` or `re:regex`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("re:") {
            Some(pattern) => Regex::new(pattern)
                .map(TopicFilter::Regex)
                .map_err(|err| format!("config `topic_filter`: invalid regex: {err}")),
            None => Ok(TopicFilter::Glob(WildMatch::new_case_insensitive(
                text.trim(),
            ))),
        }
    }

    /// Whether `topic` passes.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::Glob(glob) => glob.matches(topic),
            TopicFilter::Regex(regex) => regex.is_match(topic),
        }
    }
}

/// Everything the plugin was configured with.
#[derive(Debug)]
pub struct Settings {
    /// Where messages go.
    pub webhook: Webhook,
    /// Event-name patterns the plugin subscribes to.
    pub events: Vec<String>,
    /// Templates from the config, by event name (`default` for the fallback).
    pub templates: BTreeMap<String, String>,
    /// Only events whose topic passes are posted.
    pub topic_filter: Option<TopicFilter>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Config keys the plugin does not know (likely typos), for a warning.
    pub unknown_keys: Vec<String>,
}

impl Settings {
    /// Reads the settings from `keys` (every key set) and `get` (a key's value).
    pub fn load(keys: &[String], get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let webhook = get("webhook_url")
            .filter(|url| !url.trim().is_empty())
            .ok_or(
                "config `webhook_url` is required: set it in [plugins.NAME.config] \
                 (e.g. webhook_url = \"${SLACK_WEBHOOK_URL}\")",
            )?;
        let webhook = Webhook::parse(&webhook)?;
        let events = events(get("events").as_deref())?;

        let mut templates = BTreeMap::new();
        let mut unknown_keys = Vec::new();
        for key in keys {
            if let Some(event) = key.strip_prefix(TEMPLATE_PREFIX) {
                if event.trim().is_empty() {
                    return Err(format!("config `{key}`: name the event after `template.`"));
                }
                if let Some(template) = get(key) {
                    templates.insert(event.trim().to_string(), template);
                }
            } else if !CONFIG_KEYS.contains(&key.as_str()) {
                unknown_keys.push(key.clone());
            }
        }

        let topic_filter = get("topic_filter")
            .filter(|f| !f.trim().is_empty())
            .map(|f| TopicFilter::parse(&f))
            .transpose()?;

        let defaults = RetryPolicy::default();
        let max_retries = number(&get, "max_retries", defaults.max_retries)?;
        if max_retries > MAX_RETRIES_LIMIT {
            return Err(format!(
                "config `max_retries` = {max_retries} is too large (at most {MAX_RETRIES_LIMIT})"
            ));
        }
        let millis = |key: &str, default: Duration| -> Result<Duration, String> {
            let ms = number(
                &get,
                key,
                u32::try_from(default.as_millis()).unwrap_or(u32::MAX),
            )?;
            Ok(Duration::from_millis(u64::from(ms)))
        };
        let retry = RetryPolicy {
            max_retries,
            backoff: millis("retry_backoff_ms", defaults.backoff)?,
            max_backoff: defaults.max_backoff,
            request_timeout: millis("request_timeout_ms", defaults.request_timeout)?,
            request_budget: millis("request_budget_ms", defaults.request_budget)?,
        };
        if retry.request_timeout.is_zero() {
            return Err("config `request_timeout_ms` must be at least 1".into());
        }

        Ok(Settings {
            webhook,
            events,
            templates,
            topic_filter,
            retry,
            unknown_keys,
        })
    }
}

/// The `events` list: comma-separated patterns (exact, `prefix.*` or `*`), or the
/// defaults when unset or empty.
pub fn events(value: Option<&str>) -> Result<Vec<String>, String> {
    let patterns: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if patterns.is_empty() {
        return Ok(DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect());
    }
    for pattern in &patterns {
        let valid = pattern == "*"
            || match pattern.strip_suffix(".*") {
                Some(prefix) => !prefix.is_empty() && !prefix.contains('*'),
                None => !pattern.contains('*'),
            };
        if !valid {
            return Err(format!(
                "config `events`: pattern {pattern:?} is not supported: use an exact name, `prefix.*` or `*`"
            ));
        }
    }
    Ok(patterns)
}

/// A whole number config value, or `default` when unset.
fn number(get: &impl Fn(&str) -> Option<String>, key: &str, default: u32) -> Result<u32, String> {
    match get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            format!(
                "config `{key}` = {text:?} is not a whole number of at most {}",
                u32::MAX
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let keys: Vec<String> = map.keys().cloned().collect();
        Settings::load(&keys, |k| map.get(k).cloned())
    }

    const URL: &str = "https://hooks.slack.com/services/T0/B0/sEcReT";

    #[test]
    fn defaults() {
        let s = load(&[("webhook_url", URL)]).unwrap();
        assert_eq!(s.events, DEFAULT_EVENTS);
        assert_eq!(s.webhook.origin(), "https://hooks.slack.com");
        assert_eq!(s.webhook.url(), URL);
        assert!(s.templates.is_empty() && s.topic_filter.is_none());
        assert_eq!(s.retry, RetryPolicy::default());
        assert!(!format!("{s:?}").contains("sEcReT"));
    }

    #[test]
    fn everything_set() {
        let s = load(&[
            ("webhook_url", URL),
            ("events", " meeting.* , recording.completed,"),
            ("template.meeting.started", "hi {topic}"),
            ("template.default", "{event}"),
            ("topic_filter", "re:^Team"),
            ("max_retries", "5"),
            ("retry_backoff_ms", "50"),
            ("request_timeout_ms", "800"),
            ("request_budget_ms", "100"),
            ("max_retry", "2"),
        ])
        .unwrap();
        assert_eq!(s.events, ["meeting.*", "recording.completed"]);
        assert_eq!(s.templates["meeting.started"], "hi {topic}");
        assert_eq!(s.templates["default"], "{event}");
        assert!(s.topic_filter.as_ref().unwrap().matches("Team sync"));
        assert_eq!(s.retry.max_retries, 5);
        assert_eq!(s.retry.backoff, Duration::from_millis(50));
        assert_eq!(s.retry.request_timeout, Duration::from_millis(800));
        assert_eq!(s.retry.request_budget, Duration::from_millis(100));
        assert_eq!(s.unknown_keys, ["max_retry"]);
    }

    #[test]
    fn errors_name_the_key_and_never_the_url() {
        let err = |pairs: &[(&str, &str)]| load(pairs).unwrap_err();
        assert!(err(&[]).contains("`webhook_url` is required"));
        for bad in [
            "ftp://h/sEcReT",
            "hooks.slack.com/sEcReT",
            "https:///sEcReT",
            "https://h/a b sEcReT",
        ] {
            let e = err(&[("webhook_url", bad)]);
            assert!(e.contains("webhook_url") && !e.contains("sEcReT"), "{e}");
        }
        assert!(err(&[("webhook_url", URL), ("events", "mee*ting")]).contains("`events`"));
        assert!(err(&[("webhook_url", URL), ("topic_filter", "re:(")]).contains("`topic_filter`"));
        assert!(err(&[("webhook_url", URL), ("max_retries", "-1")]).contains("`max_retries`"));
        assert!(err(&[("webhook_url", URL), ("max_retries", "99")]).contains("too large"));
        assert!(err(&[("webhook_url", URL), ("request_timeout_ms", "0")])
            .contains("request_timeout_ms"));
        assert!(err(&[("webhook_url", URL), ("template.", "x")]).contains("template."));
    }

    #[test]
    fn origin_drops_credentials_and_keeps_the_port() {
        let w = Webhook::parse("http://user:pw@127.0.0.1:8080/services/x?y=1").unwrap();
        assert_eq!(w.origin(), "http://127.0.0.1:8080");
        assert!(!format!("{w:?}").contains("services"));
    }

    #[test]
    fn topic_filters() {
        let glob = TopicFilter::parse("*standup*").unwrap();
        assert!(glob.matches("Daily STANDUP (EMEA)"));
        assert!(!glob.matches("Retro"));
        let exact = TopicFilter::parse("Retro").unwrap();
        assert!(exact.matches("retro") && !exact.matches("Retro 2"));
        let re = TopicFilter::parse("re:^Team .*").unwrap();
        assert!(
            re.matches("Team sync") && !re.matches("The Team sync") && !re.matches("team sync")
        );
        let re = TopicFilter::parse("re:(?i)sync$").unwrap();
        assert!(re.matches("Weekly SYNC"));
    }
}
