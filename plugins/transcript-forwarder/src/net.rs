//! What every outbound request shares: fitting into the call's deadline, backing off
//! after failures, telling retryable failures from rejections, and keeping secrets out
//! of the text that reaches the logs.

use std::time::{Duration, Instant};

use zoomhost_sdk::http::{HttpError, Request, Response, Timeouts};

use crate::settings::{origin, Settings};

/// Timeouts for a request that has to finish inside the current call, or `None` when
/// too little of the call's deadline is left to start one.
///
/// Each timeout gets at most two fifths of the time left (the host applies the same cap),
/// so a connect timeout followed by a first-byte timeout still leaves the plugin time to
/// record the failure before its deadline.
pub fn budget(settings: &Settings) -> Option<Timeouts> {
    match zoomhost_sdk::config::time_left() {
        // A host too old to tell: rely on the configured timeout.
        None => Some(Timeouts::all(settings.http_timeout)),
        Some(left) if left < settings.min_send => None,
        Some(left) => {
            let limit = (left * 2 / 5)
                .min(settings.http_timeout)
                .max(Duration::from_millis(1));
            Some(Timeouts::all(limit))
        }
    }
}

/// Exponential backoff between retries: the first retry waits `min`, each further
/// failure doubles the wait up to `max`, a success resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
    next: Option<Instant>,
}

impl Backoff {
    /// No failure yet: ready at once.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            delay: min,
            next: None,
        }
    }

    /// Whether a request may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|at| now >= at)
    }

    /// A request failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.next = Some(now + self.delay);
        self.delay = (self.delay * 2).min(self.max);
    }

    /// A request succeeded.
    pub fn succeeded(&mut self) {
        self.delay = self.min;
        self.next = None;
    }
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: network error, timeout, 5xx, 408, 429, or an auth failure the
    /// operator may fix (401, 403).
    Retry(String),
    /// The server refused this request for good (other 4xx, unexpected 1xx/3xx):
    /// retrying the same body would fail the same way.
    Reject(String),
}

/// Sends `request` and sorts the outcome into success, retry or rejection. Every reason
/// is passed through `redact`.
pub fn send(request: &Request, redact: &Redactor) -> Result<Response, Failure> {
    match request.send() {
        Ok(response) if response.is_success() => Ok(response),
        Ok(response) => {
            let reason = format!("HTTP {}{}", response.status, excerpt(&response, redact));
            match response.status {
                401 | 403 | 408 | 429 | 500..=599 => Err(Failure::Retry(reason)),
                _ => Err(Failure::Reject(reason)),
            }
        }
        Err(err) => Err(Failure::Retry(describe(&err, redact))),
    }
}

fn describe(err: &HttpError, redact: &Redactor) -> String {
    let text = redact.apply(&err.to_string());
    if err.is_denied() {
        format!("{text} (add the origin to allow_http)")
    } else {
        text
    }
}

/// `": <start of the body>"`, for error messages; empty for an empty body.
fn excerpt(response: &Response, redact: &Redactor) -> String {
    const MAX: usize = 200;
    let text = response.text();
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let more = if text.chars().count() > MAX {
        "…"
    } else {
        ""
    };
    format!(": {}{more}", redact.apply(&cut))
}

/// Replaces secrets (and configured URLs, whose paths and queries may embed one) in text
/// that is about to be logged.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    rules: Vec<(String, String)>,
}

impl Redactor {
    /// Rules for everything sensitive in `settings`.
    pub fn new(settings: &Settings) -> Self {
        let mut redactor = Redactor::default();
        redactor.url(&settings.sink_url);
        if let Some(token) = &settings.sink_token {
            redactor.secret(token.expose());
        }
        if let Some(stt) = &settings.stt {
            redactor.url(&stt.url);
            if let Some(key) = &stt.api_key {
                redactor.secret(key.expose());
            }
        }
        // Longest first, so a secret inside a URL is caught by the URL rule.
        redactor
            .rules
            .sort_by_key(|(needle, _)| std::cmp::Reverse(needle.len()));
        redactor
    }

    fn secret(&mut self, value: &str) {
        if !value.is_empty() {
            self.rules.push((value.to_string(), "***".to_string()));
        }
    }

    fn url(&mut self, url: &str) {
        let origin = origin(url);
        if url != origin {
            self.rules.push((url.to_string(), format!("{origin}/…")));
        }
    }

    /// `text` with every rule applied.
    pub fn apply(&self, text: &str) -> String {
        self.rules
            .iter()
            .fold(text.to_string(), |text, (needle, with)| {
                text.replace(needle, with)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(250));
        assert!(b.ready(t0));
        b.failed(t0);
        assert!(!b.ready(t0 + Duration::from_millis(99)));
        assert!(b.ready(t0 + Duration::from_millis(100)));
        b.failed(t0);
        assert!(!b.ready(t0 + Duration::from_millis(199)));
        b.failed(t0);
        assert!(b.ready(t0 + Duration::from_millis(250)));
        b.succeeded();
        assert!(b.ready(t0));
        let mut none = Backoff::new(Duration::ZERO, Duration::ZERO);
        none.failed(t0);
        assert!(none.ready(t0));
    }

    #[test]
    fn redactor_hides_secrets_and_url_paths() {
        let settings = crate::settings::load(|k| match k {
            "sink_url" => Some("https://sink.example.com/in?key=abc".into()),
            "sink_token" => Some("tok-1".into()),
            "stt_url" => Some("http://stt.local/v1/audio/transcriptions".into()),
            "stt_api_key" => Some("sk-2".into()),
            _ => None,
        })
        .unwrap();
        let r = Redactor::new(&settings);
        let out = r.apply(
            "bad key sk-2 / tok-1 for https://sink.example.com/in?key=abc and \
             http://stt.local/v1/audio/transcriptions",
        );
        assert_eq!(
            out,
            "bad key *** / *** for https://sink.example.com/… and http://stt.local/…"
        );
    }
}
