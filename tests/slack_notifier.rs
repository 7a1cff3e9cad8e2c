//! End to end: the `slack-notifier` plugin, built from `plugins/slack-notifier` into a
//! real component and loaded by a real host, posting to a fake Slack (a loopback axum
//! server that records every request and answers as each test scripts it). Payloads
//! come from the simulator's `MeetingGen`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use zoomhost_runtime::StatsSnapshot;
use zoomhost_sim::events::MeetingGen;
use zoomhost_types::{Event, EventSource};

const WAIT: Duration = Duration::from_secs(30);
const PLUGIN: &str = "slack-notifier";

// ---------------------------------------------------------------------------------------
// A fake Slack incoming webhook.

/// One request the fake Slack received.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    path: String,
    content_type: String,
    /// The body as JSON (`Value::String` of the raw text when it is not JSON).
    body: Value,
    at: Instant,
}

/// How the fake Slack answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// `200 ok`, as Slack answers a delivered message.
    Ok,
    /// This status, with a Slack-style error body.
    Status(u16),
    /// `429` with `Retry-After: N`.
    RetryAfter(u64),
}

#[derive(Default)]
struct Script {
    /// Answers for the next requests, in order.
    next: VecDeque<Answer>,
    /// The answer once `next` is empty (`Ok` when unset).
    otherwise: Option<Answer>,
}

#[derive(Clone)]
struct FakeSlack {
    port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<Script>>,
}

async fn answer(
    State(slack): State<FakeSlack>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    slack.hits.lock().unwrap().push(Hit {
        method,
        path: uri.path().to_string(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        at: Instant::now(),
    });
    let next = {
        let mut script = slack.script.lock().unwrap();
        script
            .next
            .pop_front()
            .or(script.otherwise)
            .unwrap_or(Answer::Ok)
    };
    match next {
        Answer::Ok => (StatusCode::OK, "ok").into_response(),
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            "internal_error: try again later",
        )
            .into_response(),
        Answer::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            "rate_limited",
        )
            .into_response(),
    }
}

impl FakeSlack {
    async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slack = FakeSlack {
            port: listener.local_addr().unwrap().port(),
            hits: Arc::default(),
            script: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(slack.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        slack
    }

    /// The origin to grant.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A webhook URL whose path carries `token`, the way Slack's do.
    fn webhook_url(&self, token: &str) -> String {
        format!("{}{}", self.origin(), webhook_path(token))
    }

    /// Answers the next `times` requests with `answer`.
    fn then(&self, answer: Answer, times: usize) {
        let mut script = self.script.lock().unwrap();
        script.next.extend(std::iter::repeat_n(answer, times));
    }

    /// Answers every request after the scripted ones with `answer`.
    fn otherwise(&self, answer: Answer) {
        self.script.lock().unwrap().otherwise = Some(answer);
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    async fn wait_hits(&self, n: usize) -> Vec<Hit> {
        assert!(
            eventually(WAIT, || self.hits().len() >= n).await,
            "expected {n} requests, got {:#?}",
            self.hits()
        );
        self.hits()
    }
}

fn webhook_path(token: &str) -> String {
    format!("/services/T0ZOOMHOST/B0SLACK/{token}")
}

// ---------------------------------------------------------------------------------------
// Everything the host logs, to check the webhook's secret never shows.

/// Neither the plugin's log lines (every level) nor the host's tracing output contain
/// the webhook's token or path.
fn assert_secret_never_logged(t: &TestHost, plugin: &str, token: &str) {
    let lines = t.logs.containing(plugin, "");
    assert!(!lines.is_empty(), "{plugin} logged nothing");
    for needle in [token, webhook_path(token).as_str()] {
        assert!(
            t.logs.containing(plugin, needle).is_empty(),
            "{plugin} logged its webhook URL: {lines:#?}"
        );
        let host = host_logs().text();
        assert!(!host.contains(needle), "the host logged the webhook URL");
    }
}

// ---------------------------------------------------------------------------------------
// Hosts and events.

/// A host running `slack-notifier` as `plugin` with the given `config` values (TOML
/// lines of `[plugins.PLUGIN.config]`) and optional `[limits]`.
fn plugin_config(plugin: &str, slack: &FakeSlack, token: &str, config: &str) -> String {
    format!(
        r#"
        [plugins.{plugin}]
        allow_http = ["{origin}"]
        [plugins.{plugin}.config]
        webhook_url = "{url}"
        {config}
        "#,
        origin = slack.origin(),
        url = slack.webhook_url(token),
    )
}

fn zoom_event(name: &str, payload: &Value) -> Event {
    Event {
        id: zoomhost_protocol::event_id(name, 1_700_000_000_000, payload),
        name: name.to_string(),
        timestamp: 1_700_000_000_000,
        payload: payload.to_string(),
        source: EventSource::Simulator,
    }
}

/// Dispatches `name` and checks whether the router queued it for `plugin`.
fn dispatch(t: &TestHost, plugin: &str, name: &str, payload: &Value) -> bool {
    let queued = t.host.router().dispatch_event(zoom_event(name, payload));
    queued.iter().any(|p| &**p == plugin)
}

/// Waits until `plugin` has finished handling `n` events; returns its counters.
async fn handled(t: &TestHost, plugin: &str, n: u64) -> StatsSnapshot {
    let until = Instant::now() + WAIT;
    loop {
        let stats = t.host.stats(plugin).await.expect("plugin is loaded");
        if stats.events_delivered >= n {
            return stats;
        }
        assert!(Instant::now() < until, "{plugin} handled only {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Block Kit body the plugin sends: `text`, the text section, the facts context
/// and, when there are links, the links section.
fn slack_body(text: &str, facts: &[&str], links: &[(&str, &str)]) -> Value {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    if !facts.is_empty() {
        let elements: Vec<Value> = facts
            .iter()
            .map(|f| json!({"type": "mrkdwn", "text": f}))
            .collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    if !links.is_empty() {
        let links: Vec<String> = links
            .iter()
            .map(|(url, label)| format!("<{url}|{label}>"))
            .collect();
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": links.join("  ·  ")}}),
        );
    }
    json!({"text": text, "blocks": blocks})
}

/// The `key=value` of the plugin's `delivered …` lines.
fn delivered(t: &TestHost, plugin: &str) -> Vec<(String, String)> {
    t.logs
        .lines(plugin, "delivered ")
        .iter()
        .map(|l| {
            (
                field(l, "status").to_string(),
                field(l, "attempts").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_events_post_block_kit_messages_filled_from_the_payload() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokDefaultEventsXq81";
    let t = TestHost::start(
        &plugin_config(PLUGIN, &slack, token, ""),
        &[(PLUGIN, PLUGIN)],
    )
    .await;

    let info = t.host.plugins().await.remove(0);
    assert_eq!(
        info.metadata.events,
        [
            "meeting.started",
            "meeting.ended",
            "meeting.participant_joined",
            "meeting.participant_left",
            "recording.completed"
        ]
    );
    assert_eq!(info.metadata.wanted_hosts, ["https://hooks.slack.com"]);

    let mut gen = MeetingGen::new("Q3 <Planning> & Review");
    let id = gen.meeting_id;
    let mut started = gen.payload("meeting.started", None);
    let join_url = format!("https://zoom.us/j/{id}?pwd=Xy12&from=addon");
    started["object"]["join_url"] = json!(join_url);
    let joined = gen.payload("meeting.participant_joined", Some("Grace Hopper"));
    let left = gen.payload("meeting.participant_left", Some("Grace Hopper"));
    let ended = gen.payload("meeting.ended", None);
    let mut recording = gen.payload("recording.completed", None);
    recording["object"]["duration"] = json!(47);
    recording["object"]["host_email"] = json!("host@example.com");
    let share_url = recording["object"]["share_url"]
        .as_str()
        .unwrap()
        .to_string();

    assert!(dispatch(&t, PLUGIN, "meeting.started", &started));
    // Not in the default list: never queued for the plugin.
    assert!(!dispatch(&t, PLUGIN, "meeting.created", &started));
    assert!(!dispatch(
        &t,
        PLUGIN,
        "user.updated",
        &json!({"object": {}})
    ));
    assert!(dispatch(&t, PLUGIN, "meeting.participant_joined", &joined));
    assert!(dispatch(&t, PLUGIN, "meeting.participant_left", &left));
    assert!(dispatch(&t, PLUGIN, "meeting.ended", &ended));
    assert!(dispatch(&t, PLUGIN, "recording.completed", &recording));
    let stats = handled(&t, PLUGIN, 5).await;
    assert_eq!((stats.events_failed, stats.crashes), (0, 0), "{stats:?}");

    let hits = slack.wait_hits(5).await;
    assert_eq!(hits.len(), 5);
    for hit in &hits {
        assert_eq!(hit.method, Method::POST);
        assert_eq!(hit.path, webhook_path(token));
        assert!(
            hit.content_type.starts_with("application/json"),
            "{}",
            hit.content_type
        );
    }
    let topic = "Q3 &lt;Planning&gt; &amp; Review";
    let topic_fact = format!("*Topic:* {topic}");
    let id_fact = format!("*Meeting ID:* {id}");
    let facts = [topic_fact.as_str(), id_fact.as_str()];
    let escaped_join = join_url.replace('&', "&amp;");
    let expected = [
        slack_body(
            &format!(":large_green_circle: *{topic}* has started."),
            &facts,
            &[(escaped_join.as_str(), "Join meeting")],
        ),
        slack_body(
            &format!(":wave: *Grace Hopper* joined *{topic}*."),
            &facts,
            &[],
        ),
        slack_body(
            &format!(":door: *Grace Hopper* left *{topic}*."),
            &facts,
            &[],
        ),
        slack_body(&format!(":red_circle: *{topic}* has ended."), &facts, &[]),
        slack_body(
            &format!(":movie_camera: The recording of *{topic}* is ready (47 min)."),
            &[
                topic_fact.as_str(),
                id_fact.as_str(),
                "*Host:* host@example.com",
            ],
            &[(share_url.as_str(), "View recording")],
        ),
    ];
    for (hit, expected) in hits.iter().zip(&expected) {
        assert_eq!(&hit.body, expected);
    }

    let lines = t.logs.lines(PLUGIN, "delivered ");
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(
        names,
        [
            "meeting.started",
            "meeting.participant_joined",
            "meeting.participant_left",
            "meeting.ended",
            "recording.completed"
        ]
    );
    assert!(
        lines.iter().all(|l| l.contains(&slack.origin())),
        "{lines:?}"
    );
    assert_eq!(
        delivered(&t, PLUGIN),
        vec![("200".to_string(), "1".to_string()); 5]
    );
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_events_and_templates_replace_the_defaults() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokTemplatesP0w3";
    let config = r#"
        events = "meeting.started, recording.*"
        "template.meeting.started" = """
Standup *{topic}* by {host_email} at {start_time} (id {meeting_id}, tz {object.timezone}, {object.no.such.field}) {{literal}}
<{join_url}|join>"""
        "template.recording.completed" = "Rec {share_url} {duration} min {object.recording_files.0.file_type}"
        "template.default" = "Other: `{event}` for {topic} in {account_id}"
    "#;
    let t = TestHost::start(
        &plugin_config(PLUGIN, &slack, token, config),
        &[(PLUGIN, PLUGIN)],
    )
    .await;
    let info = t.host.plugins().await.remove(0);
    assert_eq!(info.metadata.events, ["meeting.started", "recording.*"]);

    let mut gen = MeetingGen::new("Daily <sync>");
    let mut started = gen.payload("meeting.started", None);
    started["object"]["join_url"] = json!("https://zoom.us/j/1?a=1&b=2");
    let recording = gen.payload("recording.completed", None);
    let share_url = recording["object"]["share_url"]
        .as_str()
        .unwrap()
        .to_string();
    let stopped = gen.payload("recording.stopped", None);

    assert!(dispatch(&t, PLUGIN, "meeting.started", &started));
    assert!(!dispatch(
        &t,
        PLUGIN,
        "meeting.ended",
        &gen.payload("meeting.ended", None)
    ));
    assert!(!dispatch(
        &t,
        PLUGIN,
        "meeting.participant_joined",
        &gen.payload("meeting.participant_joined", Some("Ada"))
    ));
    assert!(dispatch(&t, PLUGIN, "recording.completed", &recording));
    assert!(dispatch(&t, PLUGIN, "recording.stopped", &stopped));
    handled(&t, PLUGIN, 3).await;

    let texts: Vec<Value> = slack
        .wait_hits(3)
        .await
        .iter()
        .map(|h| h.body["text"].clone())
        .collect();
    let start_time = started["object"]["start_time"].as_str().unwrap();
    assert_eq!(
        texts,
        [
            json!(format!(
                "Standup *Daily &lt;sync&gt;* by - at {start_time} (id {}, tz UTC, -) {{literal}}\n<https://zoom.us/j/1?a=1&amp;b=2|join>",
                gen.meeting_id
            )),
            json!(format!("Rec {share_url} 60 min MP4")),
            json!(format!(
                "Other: `recording.stopped` for Daily &lt;sync&gt; in {}",
                gen.account_id
            )),
        ]
    );
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_filters_as_glob_and_regex_post_only_matching_meetings() {
    host_logs();
    let slack = FakeSlack::start().await;
    let config = format!(
        "{}\n{}",
        plugin_config(
            "slack-glob",
            &slack,
            "tokGlobA1",
            r#"topic_filter = "*standup*""#
        ),
        plugin_config(
            "slack-re",
            &slack,
            "tokRegexB2",
            r#"topic_filter = "re:^Team .*""#
        ),
    );
    let t = TestHost::start(&config, &[("slack-glob", PLUGIN), ("slack-re", PLUGIN)]).await;

    let topics = [
        "Daily Standup (EMEA)",
        "Team sync",
        "Board review",
        "team standup",
    ];
    for topic in topics {
        let payload = MeetingGen::new(topic).payload("meeting.started", None);
        assert!(dispatch(&t, "slack-glob", "meeting.started", &payload));
    }
    handled(&t, "slack-glob", 4).await;
    handled(&t, "slack-re", 4).await;

    let topics_on = |token: &str| -> Vec<String> {
        slack
            .hits_on(&webhook_path(token))
            .iter()
            .map(|h| {
                h.body["blocks"][1]["elements"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    // The glob is case-insensitive and spans the whole topic.
    assert_eq!(
        topics_on("tokGlobA1"),
        ["*Topic:* Daily Standup (EMEA)", "*Topic:* team standup"]
    );
    // The regex is as written: case-sensitive.
    assert_eq!(topics_on("tokRegexB2"), ["*Topic:* Team sync"]);
    assert_eq!(slack.hits().len(), 3);
    assert_eq!(
        t.logs.lines("slack-glob", "skipped meeting.started").len(),
        2
    );
    assert_eq!(t.logs.lines("slack-re", "skipped meeting.started").len(), 3);
    assert_secret_never_logged(&t, "slack-glob", "tokGlobA1");
    assert_secret_never_logged(&t, "slack-re", "tokRegexB2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokRateLimitedR9";
    slack.then(Answer::RetryAfter(1), 1);
    let t = TestHost::start(
        &format!(
            "[limits]\nevent_deadline_ms = 3000\n{}",
            plugin_config(PLUGIN, &slack, token, "")
        ),
        &[(PLUGIN, PLUGIN)],
    )
    .await;
    let payload = MeetingGen::new("Rate limited").payload("meeting.started", None);
    assert!(dispatch(&t, PLUGIN, "meeting.started", &payload));
    let stats = handled(&t, PLUGIN, 1).await;
    assert_eq!((stats.events_failed, stats.crashes), (0, 0), "{stats:?}");

    let hits = slack.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].body, hits[1].body);
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert_eq!(
        delivered(&t, PLUGIN),
        [("200".to_string(), "2".to_string())]
    );
    assert_eq!(t.logs.containing(PLUGIN, "Retry-After: 1 s").len(), 1);
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokFlaky5xxM3";
    slack.then(Answer::Status(500), 2);
    // Default deadline, retries and backoff.
    let t = TestHost::start(
        &plugin_config(PLUGIN, &slack, token, ""),
        &[(PLUGIN, PLUGIN)],
    )
    .await;
    let payload = MeetingGen::new("Flaky").payload("meeting.ended", None);
    assert!(dispatch(&t, PLUGIN, "meeting.ended", &payload));
    let stats = handled(&t, PLUGIN, 1).await;
    assert_eq!((stats.events_failed, stats.crashes), (0, 0), "{stats:?}");

    let hits = slack.hits();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|h| h.body == hits[0].body));
    assert_eq!(
        delivered(&t, PLUGIN),
        [("200".to_string(), "3".to_string())]
    );
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_errors_are_dropped_after_max_retries_and_4xx_is_not_retried() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokDownForGoodZ7";
    slack.otherwise(Answer::Status(500));
    let t = TestHost::start(
        &plugin_config(
            PLUGIN,
            &slack,
            token,
            "max_retries = \"2\"\nretry_backoff_ms = \"20\"",
        ),
        &[(PLUGIN, PLUGIN)],
    )
    .await;
    let mut gen = MeetingGen::new("Outage");
    assert!(dispatch(
        &t,
        PLUGIN,
        "meeting.started",
        &gen.payload("meeting.started", None)
    ));
    let stats = handled(&t, PLUGIN, 1).await;
    assert_eq!((stats.events_failed, stats.crashes), (1, 0), "{stats:?}");
    assert_eq!(slack.hits().len(), 3, "max_retries + 1 requests");
    let warns = t.logs.lines(PLUGIN, "dropped meeting.started");
    assert_eq!(warns.len(), 1);
    assert!(
        warns[0].contains("HTTP 500") && warns[0].contains("max_retries = 2"),
        "{warns:?}"
    );
    assert!(warns[0].contains(" after attempts=3: "), "{warns:?}");

    // A client error is final: one request, no retry.
    slack.otherwise(Answer::Status(404));
    assert!(dispatch(
        &t,
        PLUGIN,
        "meeting.ended",
        &gen.payload("meeting.ended", None)
    ));
    let stats = handled(&t, PLUGIN, 2).await;
    assert_eq!((stats.events_failed, stats.crashes), (2, 0), "{stats:?}");
    assert_eq!(slack.hits().len(), 4);
    let warns = t.logs.lines(PLUGIN, "dropped meeting.ended");
    assert!(warns[0].contains("HTTP 404 (not retried)"), "{warns:?}");
    assert!(t.logs.lines(PLUGIN, "delivered ").is_empty());
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_deadline_is_dropped_and_the_plugin_lives_on() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokSlowDownK4";
    // 30 s cannot fit in the default 1000 ms event deadline.
    slack.then(Answer::RetryAfter(30), 1);
    let t = TestHost::start(
        &plugin_config(PLUGIN, &slack, token, ""),
        &[(PLUGIN, PLUGIN)],
    )
    .await;
    assert_eq!(t.host.runtime().limits().event_deadline_ms, 1000);
    let mut gen = MeetingGen::new("Busy channel");
    assert!(dispatch(
        &t,
        PLUGIN,
        "meeting.started",
        &gen.payload("meeting.started", None)
    ));
    let stats = handled(&t, PLUGIN, 1).await;
    assert_eq!(
        (stats.events_failed, stats.crashes, stats.quarantined),
        (1, 0, false),
        "{stats:?}"
    );
    assert_eq!(slack.hits().len(), 1);
    let warns = t.logs.lines(PLUGIN, "dropped meeting.started");
    assert_eq!(warns.len(), 1);
    assert!(
        warns[0].contains("Retry-After: 30 s") && warns[0].contains("does not fit"),
        "{warns:?}"
    );

    // Same instance, next event: delivered.
    assert!(dispatch(
        &t,
        PLUGIN,
        "meeting.ended",
        &gen.payload("meeting.ended", None)
    ));
    let stats = handled(&t, PLUGIN, 2).await;
    assert_eq!((stats.events_failed, stats.crashes), (1, 0), "{stats:?}");
    assert_eq!(slack.hits().len(), 2);
    assert_eq!(
        delivered(&t, PLUGIN),
        [("200".to_string(), "1".to_string())]
    );
    assert_secret_never_logged(&t, PLUGIN, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_webhook_is_denied_once_and_a_bad_url_fails_init_without_showing_it() {
    host_logs();
    let slack = FakeSlack::start().await;
    let token = "tokNotGrantedJ5";
    let config = format!(
        r#"
        [plugins.{PLUGIN}]
        allow_http = []
        [plugins.{PLUGIN}.config]
        webhook_url = "{}"
        [plugins.slack-bad.config]
        webhook_url = "ftp://127.0.0.1/services/tokBadUrlW2"
        "#,
        slack.webhook_url(token)
    );
    let t = TestHost::start(&config, &[(PLUGIN, PLUGIN)]).await;
    assert!(dispatch(
        &t,
        PLUGIN,
        "meeting.started",
        &MeetingGen::new("No grant").payload("meeting.started", None)
    ));
    let stats = handled(&t, PLUGIN, 1).await;
    assert_eq!(
        (stats.http_denied, stats.events_failed, stats.crashes),
        (1, 1, 0),
        "{stats:?}"
    );
    assert!(slack.hits().is_empty());
    let warns = t.logs.lines(PLUGIN, "dropped meeting.started");
    assert!(
        warns[0].contains("request denied")
            && warns[0].contains(&format!("allow_http = [\"{}\"]", slack.origin())),
        "{warns:?}"
    );
    assert_secret_never_logged(&t, PLUGIN, token);

    let bad = t.plugins_dir().join("slack-bad.wasm");
    std::fs::copy(wasm(PLUGIN), &bad).unwrap();
    let err = format!("{:#}", t.host.load_file(&bad).await.unwrap_err());
    assert!(err.contains("`webhook_url` must be an http"), "{err}");
    assert!(!err.contains("tokBadUrlW2"), "{err}");
    let host = host_logs().text();
    assert!(!host.contains("tokBadUrlW2"));
}

// ---------------------------------------------------------------------------------------
// Through the Zoom simulator.

/// The notifier behind the host's real event WebSocket client (with OAuth), fed by the
/// simulator over loopback sockets.
mod through_the_simulator {
    use super::*;
    use zoomhost_sim::events::Scenario;
    use zoomhost_sim::LocalZoom;
    /// Characters Slack mrkdwn must see escaped, all the way from the simulator.
    const TOPIC: &str = "Q3 <Roadmap> & Hiring";

    const SCENARIO: &str = r#"
topic = "Q3 <Roadmap> & Hiring"

[[steps]]
kind = "wait_connected"
timeout_ms = 30000

[[steps]]
kind = "event"
event = "meeting.started"

[[steps]]
at_ms = 50
kind = "event"
event = "meeting.participant_joined"
participant = "Ada Lovelace"

[[steps]]
at_ms = 100
kind = "event"
event = "meeting.participant_joined"
participant = "Grace Hopper"

[[steps]]
at_ms = 150
kind = "event"
event = "meeting.ended"

[[steps]]
at_ms = 200
kind = "event"
event = "recording.completed"
"#;

    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// The text at `path` of a payload, if it has one (numbers as written).
    fn text_at(payload: &Value, path: &[&str]) -> Option<String> {
        let value = path.iter().try_fold(payload, |v, key| v.get(key))?;
        match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// The Slack body for `event` with `payload`: the built-in template filled from the
    /// payload, its facts (topic, meeting id, host when present) and links (join and
    /// recording URLs when present).
    fn expected_body(event: &str, payload: &Value) -> Value {
        let field = |path: &[&str]| escape(&text_at(payload, path).unwrap_or_else(|| "-".into()));
        let topic = field(&["object", "topic"]);
        let text = match event {
            "meeting.started" => format!(":large_green_circle: *{topic}* has started."),
            "meeting.participant_joined" => format!(
                ":wave: *{}* joined *{topic}*.",
                field(&["object", "participant", "user_name"])
            ),
            "meeting.ended" => format!(":red_circle: *{topic}* has ended."),
            "recording.completed" => format!(
                ":movie_camera: The recording of *{topic}* is ready ({} min).",
                field(&["object", "duration"])
            ),
            other => panic!("no expected message for {other}"),
        };
        let facts: Vec<String> = [
            ("Topic", "topic"),
            ("Meeting ID", "id"),
            ("Host", "host_email"),
        ]
        .iter()
        .filter_map(|(label, key)| {
            text_at(payload, &["object", key]).map(|v| format!("*{label}:* {}", escape(&v)))
        })
        .collect();
        let links: Vec<(String, &str)> = [
            ("join_url", "Join meeting"),
            ("share_url", "View recording"),
        ]
        .iter()
        .filter_map(|(key, label)| text_at(payload, &["object", key]).map(|u| (escape(&u), *label)))
        .collect();
        let facts: Vec<&str> = facts.iter().map(String::as_str).collect();
        let links: Vec<(&str, &str)> = links.iter().map(|(u, l)| (u.as_str(), *l)).collect();
        slack_body(&text, &facts, &links)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_simulated_event_becomes_one_slack_message_in_order() {
        host_logs();
        let slack = FakeSlack::start().await;
        let token = "tokThroughTheSimK7";
        // The simulated Zoom, and a host with its event client signed in through OAuth.
        let zoom = LocalZoom::start().await.unwrap();
        let sim = &zoom.events;
        let mut live_zoom = zoomhost::config::for_local_zoom(&zoom, Vec::new());
        live_zoom.rtms = None;
        let (t, live) = TestHost::start_live(
            &plugin_config(PLUGIN, &slack, token, ""),
            &[(PLUGIN, PLUGIN)],
            live_zoom,
        )
        .await;
        // What the host received from the WebSocket, payloads included.
        let received: Arc<Mutex<Vec<Event>>> = Arc::default();
        let seen = received.clone();
        live.inputs().tap(Arc::new(move |e: &Event| {
            seen.lock().unwrap().push(e.clone())
        }));

        let report = Scenario::parse(SCENARIO)
            .unwrap()
            .run(sim)
            .await
            .expect("the scenario plays");
        assert!(report.missed.is_empty(), "{report:?}");
        let names = [
            "meeting.started",
            "meeting.participant_joined",
            "meeting.participant_joined",
            "meeting.ended",
            "recording.completed",
        ];
        let sent = sim.sent();
        assert_eq!(sent, report.sent);
        assert_eq!(
            sent.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            names
        );

        let stats = handled(&t, PLUGIN, 5).await;
        assert_eq!((stats.events_failed, stats.crashes), (0, 0), "{stats:?}");
        let hits = slack.wait_hits(5).await;

        // The host got exactly what the simulator sent, over the WebSocket.
        let received = received.lock().unwrap().clone();
        let ids: Vec<(String, String)> = received
            .iter()
            .map(|e| {
                let payload: Value = serde_json::from_str(&e.payload).unwrap();
                (payload["id"].as_str().unwrap().to_string(), e.name.clone())
            })
            .collect();
        let sent_ids: Vec<(String, String)> = sent
            .iter()
            .map(|e| (e.id.clone(), e.name.clone()))
            .collect();
        assert_eq!(ids, sent_ids);
        assert!(received.iter().all(|e| e.source == EventSource::Websocket));
        let payloads: Vec<Value> = received
            .iter()
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect();
        // The simulator's payloads describe one meeting with the scenario's people.
        let meeting_id = payloads[0]["object"]["id"].clone();
        assert!(meeting_id.is_u64(), "{meeting_id}");
        for p in &payloads {
            assert_eq!(p["object"]["topic"], TOPIC);
            assert_eq!(p["object"]["id"], meeting_id);
        }
        assert_eq!(
            payloads[1]["object"]["participant"]["user_name"],
            "Ada Lovelace"
        );
        assert_eq!(
            payloads[2]["object"]["participant"]["user_name"],
            "Grace Hopper"
        );
        let share_url = payloads[4]["object"]["share_url"].as_str().unwrap();
        assert!(
            share_url.starts_with("https://zoom.us/rec/share/"),
            "{share_url}"
        );

        // Slack: one message per event, in order, each filled from its payload.
        assert_eq!(hits.len(), 5, "{hits:#?}");
        for hit in &hits {
            assert_eq!(hit.method, Method::POST);
            assert_eq!(hit.path, webhook_path(token));
            assert!(hit.content_type.starts_with("application/json"));
        }
        for ((hit, name), payload) in hits.iter().zip(names).zip(&payloads) {
            assert_eq!(hit.body, expected_body(name, payload), "{name}");
        }
        let topic = "Q3 &lt;Roadmap&gt; &amp; Hiring";
        assert_eq!(
            hits[1].body["text"],
            format!(":wave: *Ada Lovelace* joined *{topic}*.")
        );
        assert_eq!(
            hits[2].body["text"],
            format!(":wave: *Grace Hopper* joined *{topic}*.")
        );
        assert_eq!(
            hits[4].body["blocks"][2]["text"]["text"],
            format!("<{share_url}|View recording>")
        );
        // The simulator's meeting.started has no join_url: no link block.
        assert!(payloads[0]["object"].get("join_url").is_none());
        assert_eq!(hits[0].body["blocks"].as_array().unwrap().len(), 2);
        assert_eq!(
            delivered(&t, PLUGIN),
            vec![("200".to_string(), "1".to_string()); 5]
        );
        assert_secret_never_logged(&t, PLUGIN, token);

        let stopped = live.shutdown().await;
        assert!(
            stopped.source_errors.is_empty(),
            "event client stopped cleanly: {:?}",
            stopped.source_errors
        );
    }
}
