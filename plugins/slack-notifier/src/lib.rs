//! `slack-notifier`: posts Zoom meeting and recording events to a Slack channel through
//! an [incoming webhook](https://api.slack.com/messaging/webhooks).
//!
//! Each subscribed event becomes one Slack message: a line rendered from a template
//! (the `text` fallback and a mrkdwn `section` block), a `context` block with the
//! meeting's topic, id and host, and links to join the meeting or watch the recording
//! when the payload has them. Failed posts are retried within the event's deadline
//! (see [Delivery](#delivery)).
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p slack-notifier`, then drop
//! `target/wasm32-wasip2/release/slack_notifier.wasm` into the plugins folder as
//! `slack-notifier.wasm`.
//!
//! # Configuration
//!
//! Everything is set in the host config. The webhook's origin must be granted in
//! `allow_http`; the plugin declares `https://hooks.slack.com` as its wanted host.
//!
//! ```toml
//! [plugins.slack-notifier]
//! allow_http = ["https://hooks.slack.com"]
//!
//! [plugins.slack-notifier.config]
//! # Required. A secret: keep it in the environment. Logs only ever show its origin.
//! webhook_url = "${SLACK_WEBHOOK_URL}"
//! # Which events to post: comma-separated exact names, `prefix.*` or `*`.
//! events = "meeting.started, meeting.ended, recording.completed"
//! # Only meetings whose topic matches: a case-insensitive glob (`*`, `?`) against the
//! # whole topic, or `re:` and a regular expression (unanchored, case-sensitive unless
//! # it starts with `(?i)`; regex-lite syntax: `(?i)`, `\w`, `\d`, `\s` are ASCII-only).
//! topic_filter = "*standup*"
//! # Per-event templates. The keys contain dots, so quote them.
//! "template.meeting.started" = ":rocket: *{topic}* is live: <{join_url}|join>"
//! "template.recording.completed" = "Recording of *{topic}* ({duration} min): {share_url}"
//! # For subscribed events with no template of their own.
//! "template.default" = "`{event}` on *{topic}*"
//! # Retries (see Delivery).
//! max_retries = "3"
//! retry_backoff_ms = "100"
//! request_timeout_ms = "5000"
//! request_budget_ms = "200"
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `webhook_url` | (required) | the Slack incoming-webhook URL, `https://hooks.slack.com/services/…` |
//! | `events` | `meeting.started, meeting.ended, meeting.participant_joined, meeting.participant_left, recording.completed` | event-name patterns to subscribe to; an empty value means the default |
//! | `template.<event>` | built in for the default events | the message for event `<event>` (exact name) |
//! | `template.default` | ``` `{event}`: *{topic}* ``` | the message for subscribed events without a template |
//! | `topic_filter` | (none: every topic) | `glob` or `re:regex`; events whose topic does not match are not posted (a missing topic matches as `""`) |
//! | `max_retries` | `3` | retries after the first attempt, at most 20 |
//! | `retry_backoff_ms` | `100` | first wait before retrying a 5xx or a failed connection; doubles per retry, at most 2 s |
//! | `request_timeout_ms` | `5000` | timeout of one request; always capped to the time left in the call |
//! | `request_budget_ms` | `200` | time a retry must still have for its request after waiting; a retry with less is dropped |
//!
//! Values are strings (as for every plugin config). A missing or malformed
//! `webhook_url`, an unknown event pattern, a bad regex or a malformed number fails
//! `init` with an error naming the key (never the URL), so the plugin does not load.
//! Unknown keys are logged as a warning at start.
//!
//! # Templates
//!
//! A template is Slack mrkdwn (`*bold*`, `_italic_`, `<url|label>`, `:emoji:`, newlines)
//! with placeholders. Inserted values are escaped for mrkdwn (`&`, `<`, `>`), and a
//! value the payload does not have renders as `-`.
//!
//! | placeholder | payload field |
//! |---|---|
//! | `{event}` | the event name |
//! | `{topic}` | `object.topic` |
//! | `{meeting_id}` | `object.id` (flat `meeting_id` for RTMS events) |
//! | `{uuid}` | `object.uuid` (flat `meeting_uuid`) |
//! | `{host_id}` / `{host_email}` | `object.host_id` / `object.host_email` |
//! | `{participant}` / `{participant_email}` | `object.participant.user_name` / `.email` |
//! | `{join_url}` | `object.join_url` |
//! | `{share_url}` | `object.share_url` (recordings) |
//! | `{duration}` | `object.duration` (minutes) |
//! | `{start_time}` / `{end_time}` / `{timezone}` | `object.start_time` / `object.end_time` / `object.timezone` |
//! | `{account_id}` | `account_id` |
//! | `{a.b.c}` | any path in the payload; numbers index arrays: `{object.recording_files.0.file_type}` |
//!
//! `{{` and `}}` write literal braces. The built-in templates:
//!
//! | event | message |
//! |---|---|
//! | `meeting.started` | `:large_green_circle: *{topic}* has started.` |
//! | `meeting.ended` | `:red_circle: *{topic}* has ended.` |
//! | `meeting.participant_joined` | `:wave: *{participant}* joined *{topic}*.` |
//! | `meeting.participant_left` | `:door: *{participant}* left *{topic}*.` |
//! | `recording.completed` | `:movie_camera: The recording of *{topic}* is ready ({duration} min).` |
//!
//! # Delivery
//!
//! The message is POSTed as JSON. A 2xx answer is delivered and logged at info:
//! `delivered meeting.started to https://hooks.slack.com: status=200 attempts=1`.
//! A 429 is retried after its `Retry-After` seconds; a 5xx or a failed connection after
//! the backoff; any other status (Slack's `400 invalid_payload`, `403`, `404 no_service`,
//! `410 channel_is_archived`), a denied request or a bad URL is given up at once.
//!
//! The plugin never holds its actor past the call's deadline (`[limits]
//! event_deadline_ms`, 1000 ms by default; the host kills an instance that overruns it).
//! Before each retry it asks the host how much time is left
//! ([`zoomhost_sdk::config::time_left`]); when the wait plus `request_budget_ms` does not
//! fit, the message is dropped, and each request's timeout is capped to the time left.
//! A dropped message is logged at warn with the event name and the reason
//! (`dropped meeting.started for https://hooks.slack.com after attempts=1: HTTP 429 with
//! Retry-After: 30 s; a retry in 30000 ms plus 200 ms for the request does not fit in the
//! 993 ms left of the call`) and the handler returns an error, so the host counts the event
//! as failed. To honour long `Retry-After` values, raise `event_deadline_ms`.

#![warn(missing_docs)]

mod delivery;
mod message;
mod settings;
mod template;

use std::sync::OnceLock;
use std::time::Duration;

use zoomhost_sdk::http::{ErrorCode, HttpError, Request};
use zoomhost_sdk::serde_json::Value;
use zoomhost_sdk::{config, debug, info, warn, Event, Metadata, NoMedia, Plugin};

use delivery::{Outcome, Reply, SendError, Transport};
use settings::Settings;
use template::Context;

/// The host this plugin would like to be granted.
pub const SLACK_ORIGIN: &str = "https://hooks.slack.com";

/// Most of a response body kept for a log line.
const BODY_LOG_LIMIT: usize = 200;

/// The plugin. Its settings are read once per instance; the host starts a fresh
/// instance when the plugin's config changes.
struct SlackNotifier;

/// The settings of this instance, or why they are invalid.
static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();

fn settings() -> Result<&'static Settings, String> {
    SETTINGS
        .get_or_init(|| Settings::load(&config::keys(), config::get))
        .as_ref()
        .map_err(Clone::clone)
}

impl Plugin for SlackNotifier {
    type Session = NoMedia;

    fn metadata() -> Metadata {
        // A bad `events` value is reported by `init`; until then, subscribe to the
        // defaults.
        let events = settings::events(config::get("events").as_deref())
            .unwrap_or_else(|_| settings::events(None).unwrap_or_default());
        Metadata::new("slack-notifier", env!("CARGO_PKG_VERSION"))
            .events(events)
            .wanted_hosts([SLACK_ORIGIN])
            .config_keys(settings::CONFIG_KEYS.iter().copied())
    }

    fn init() -> Result<(), String> {
        let settings = settings()?;
        if !settings.unknown_keys.is_empty() {
            warn!(
                "ignoring unknown config keys: {} (known: {})",
                settings.unknown_keys.join(", "),
                settings::CONFIG_KEYS.join(", ")
            );
        }
        let filter = match &settings.topic_filter {
            Some(_) => ", with a topic filter",
            None => "",
        };
        info!(
            "posting {} to {}{filter}",
            settings.events.join(", "),
            settings.webhook.origin()
        );
        Ok(())
    }

    fn handle_event(event: Event) -> Result<(), String> {
        let settings = settings()?;
        let payload = event.payload_json().unwrap_or_else(|err| {
            warn!("{err}; posting it without payload fields");
            Value::Null
        });
        let ctx = Context::new(&event.name, &payload);

        if let Some(filter) = &settings.topic_filter {
            let topic = ctx.get("topic").unwrap_or_default();
            if !filter.matches(&topic) {
                debug!(
                    "skipped {}: topic {topic:?} does not match topic_filter",
                    event.name
                );
                return Ok(());
            }
        }

        let template = settings
            .templates
            .get(&event.name)
            .map(String::as_str)
            .or_else(|| message::default_template(&event.name))
            .or_else(|| settings.templates.get("default").map(String::as_str))
            .unwrap_or(message::FALLBACK_TEMPLATE);
        let body = message::build(template, &ctx).to_string();

        let origin = settings.webhook.origin();
        let mut transport = Post {
            url: settings.webhook.url(),
            body: body.into_bytes(),
            event: &event.name,
            origin,
            max_retries: settings.retry.max_retries,
        };
        match delivery::deliver(&settings.retry, &mut transport) {
            Outcome::Delivered { status, attempts } => {
                info!(
                    "delivered {} to {origin}: status={status} attempts={attempts}",
                    event.name
                );
                Ok(())
            }
            Outcome::Dropped { attempts, reason } => {
                warn!(
                    "dropped {} for {origin} after attempts={attempts}: {reason}",
                    event.name
                );
                Err(format!("Slack message dropped: {reason}"))
            }
        }
    }
}

/// One message on its way to the webhook, through the SDK's blocking HTTP client.
struct Post<'a> {
    /// The secret URL: used for the request, never logged.
    url: &'a str,
    body: Vec<u8>,
    event: &'a str,
    origin: &'a str,
    max_retries: u32,
}

impl Transport for Post<'_> {
    fn send(&mut self, timeout: Duration) -> Result<Reply, SendError> {
        let response = Request::post(self.url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "user-agent",
                concat!("zoomhost-slack-notifier/", env!("CARGO_PKG_VERSION")),
            )
            .body(self.body.clone())
            .timeout(timeout)
            .send()
            .map_err(|err| self.classify(err))?;
        Ok(Reply {
            status: response.status,
            retry_after: response.header("retry-after").map(str::to_string),
            body: self.loggable(&response.text()),
        })
    }

    fn time_left(&self) -> Option<Duration> {
        config::time_left()
    }

    fn sleep(&mut self, wait: Duration) {
        std::thread::sleep(wait);
    }

    fn retrying(&mut self, attempt: u32, why: &str, wait: Duration) {
        debug!(
            "{}: {why} from {}; retry {attempt} of {} in {} ms",
            self.event,
            self.origin,
            self.max_retries,
            wait.as_millis()
        );
    }
}

impl Post<'_> {
    /// Sorts a failed request into worth retrying or not, in words without the URL.
    fn classify(&self, err: HttpError) -> SendError {
        match &err {
            HttpError::InvalidUrl { reason, .. } => {
                SendError::Permanent(format!("config `webhook_url` is invalid: {reason}"))
            }
            HttpError::Code(ErrorCode::HttpRequestDenied) => SendError::Permanent(format!(
                "{err}: grant it with allow_http = [\"{}\"]",
                self.origin
            )),
            HttpError::Code(
                ErrorCode::HttpRequestUriInvalid
                | ErrorCode::DestinationIpProhibited
                | ErrorCode::TlsCertificateError,
            )
            | HttpError::InvalidHeader { .. }
            | HttpError::Rejected(_) => SendError::Permanent(err.to_string()),
            _ => SendError::Transient(err.to_string()),
        }
    }

    /// The start of a response body, on one line, with the webhook's path (its secret)
    /// cut out should the server echo it.
    fn loggable(&self, body: &str) -> String {
        let path = self
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
            .filter(|path| path.len() > 1);
        let body = match path {
            Some(path) => body.replace(path, "/…"),
            None => body.to_string(),
        };
        body.chars()
            .take(BODY_LOG_LIMIT)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }
}

zoomhost_sdk::export_plugin!(SlackNotifier);
