//! End to end: the `transcript-forwarder` plugin (plugins/transcript-forwarder), built
//! for wasm32-wasip2, in a real host, forwarding to real loopback HTTP servers: a sink
//! that records every batch and an OpenAI-compatible speech-to-text endpoint that
//! records every upload.
//!
//! The tests set `[limits] media_deadline_ms = 2000` where the plugin must send from
//! media calls: the plugin only starts a request when `min_send_ms` (20 ms) of the call
//! are left and caps its timeouts to the time left, so with the default 50 ms a busy
//! two-core CI machine could push a send to a later delivery and make batch boundaries
//! timing-dependent. (One test uses short media calls on purpose.)
//!
//! To assert on what a sink received from another test (e.g. through the RTMS
//! simulator), use [`Sink`]: `Sink::start().await`, grant `sink.origin()` and set
//! `sink_url = sink.url()`, then `sink.batches()` (accepted batch bodies, in order) or
//! `sink.segments()` (their segments, flattened).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};
use zoomhost_runtime::reload;
use zoomhost_types::{
    AudioCodec, AudioFormat, AudioFrame, MediaKind, Participant, SessionKind, StreamInfo,
    TranscriptSegment,
};

const WAIT: Duration = Duration::from_secs(30);
const PLUGIN: &str = "transcript-forwarder";
const T0: u64 = 1_700_000_000_000;
const SINK_TOKEN: &str = "sink-token-5f1d2c";
const STT_KEY: &str = "sk-stt-key-9a8b7c";

// ---------------------------------------------------------------------------------
// Loopback servers

/// One request a loopback server received, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How a server answers: `(status, body)` for the request and its 0-based index.
type Respond = Arc<dyn Fn(usize, &Received) -> (u16, String) + Send + Sync>;

/// A loopback HTTP server recording every request.
#[derive(Clone)]
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    async fn start(respond: Respond) -> Server {
        let requests = Arc::new(Mutex::new(Vec::<Received>::new()));
        let log = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let log = log.clone();
                let respond = respond.clone();
                async move {
                    let mut received = Received {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                            })
                            .collect(),
                        body: body.to_vec(),
                        status: 0,
                    };
                    let mut log = log.lock().unwrap();
                    let (status, answer) = respond(log.len(), &received);
                    received.status = status;
                    log.push(received);
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        answer,
                    )
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { port, requests }
    }

    /// `http://127.0.0.1:PORT`, for `allow_http`.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

/// A transcript sink: answers 200, or 500 while [`Sink::fail`] is set.
#[derive(Clone)]
struct Sink {
    server: Server,
    failing: Arc<AtomicBool>,
}

impl Sink {
    async fn start() -> Sink {
        let failing = Arc::new(AtomicBool::new(false));
        let f = failing.clone();
        let server = Server::start(Arc::new(move |_, _| {
            if f.load(Ordering::SeqCst) {
                (500, r#"{"error":"sink is down"}"#.into())
            } else {
                (200, r#"{"ok":true}"#.into())
            }
        }))
        .await;
        Sink { server, failing }
    }

    fn origin(&self) -> String {
        self.server.origin()
    }

    /// The `sink_url` to configure.
    fn url(&self) -> String {
        format!("{}/ingest/segments?src=zoom", self.server.origin())
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Every request, accepted or not.
    fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// Bodies of the batches the sink accepted, in arrival order.
    fn batches(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(Received::json)
            .collect()
    }

    /// Segments of the accepted batches, in order.
    fn segments(&self) -> Vec<Value> {
        self.batches()
            .iter()
            .flat_map(|b| b["segments"].as_array().unwrap().clone())
            .collect()
    }
}

/// The `seq`s of every accepted batch.
fn seqs(batches: &[Value]) -> Vec<Vec<u64>> {
    batches
        .iter()
        .map(|b| {
            b["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["seq"].as_u64().unwrap())
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Host, streams and waiting

fn config(sink: &Sink, extra_allow: &[String], limits: &str, values: &[(&str, String)]) -> String {
    let mut allow = vec![format!("{:?}", sink.origin())];
    allow.extend(extra_allow.iter().map(|o| format!("{o:?}")));
    let mut values: Vec<(&str, String)> = values.to_vec();
    values.insert(0, ("sink_url", sink.url()));
    let values: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    format!(
        "[limits]\n{limits}\n\n[plugins.{PLUGIN}]\nallow_http = [{}]\n\n[plugins.{PLUGIN}.config]\n{}\n",
        allow.join(", "),
        values.join("\n")
    )
}

async fn start(config: &str) -> TestHost {
    TestHost::start(config, &[(PLUGIN, PLUGIN)]).await
}

fn stream_info(id: &str, codec: AudioCodec, sample_rate: u32, channels: u8) -> StreamInfo {
    StreamInfo {
        stream_id: id.to_string(),
        meeting_id: "mtg/uuid+1==".to_string(),
        kind: SessionKind::Meeting,
        media: vec![MediaKind::Audio, MediaKind::Transcript],
        audio: AudioFormat {
            codec,
            sample_rate,
            channels,
            frame_ms: 20,
        },
    }
}

fn segment(i: u64) -> TranscriptSegment {
    TranscriptSegment {
        user_id: 16_778_240 + (i % 3) as u32,
        user_name: ["Ada", "Grace \"G\" Hopper", "Zoë"][(i % 3) as usize].to_string(),
        timestamp: T0 + 1000 * i,
        end_timestamp: i.is_multiple_of(2).then_some(T0 + 1000 * i + 800),
        text: format!("segment {i}: it's \"quoted\", ünïcode"),
        language: (i % 4 != 3).then(|| "en".to_string()),
    }
}

/// The segment JSON the sink must receive for [`segment`]`(i)` at position `seq`.
fn expected_segment(i: u64, seq: u64) -> Value {
    let s = segment(i);
    json!({
        "seq": seq,
        "origin": "zoom",
        "speaker_id": s.user_id,
        "speaker_name": s.user_name,
        "text": s.text,
        "start_ms": s.timestamp,
        "end_ms": s.end_timestamp,
        "language": s.language,
    })
}

fn join() -> Participant {
    Participant {
        user_id: 1,
        user_name: "Ada".into(),
    }
}

/// Waits until the plugin has handled `n` media deliveries (open and close included).
async fn until_delivered(t: &TestHost, n: u64) {
    let until = std::time::Instant::now() + WAIT;
    loop {
        let stats = t.host.stats(PLUGIN).await.unwrap();
        if stats.media_delivered >= n {
            assert_eq!(stats.media_delivered, n, "more deliveries than expected");
            assert_eq!(stats.media_failed, 0, "{stats:?}");
            assert_eq!(stats.crashes, 0, "{stats:?}");
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "only {} of {n} media deliveries handled: {stats:?}",
            stats.media_delivered
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every line the plugin logged.
fn all_lines(t: &TestHost) -> Vec<String> {
    t.logs.containing(PLUGIN, "")
}

fn assert_no_secret_logged(t: &TestHost) {
    for line in all_lines(t) {
        for secret in [SINK_TOKEN, STT_KEY] {
            assert!(!line.contains(secret), "secret in log line: {line}");
        }
        assert!(
            !line.contains("src=zoom"),
            "sink URL query in log line: {line}"
        );
    }
}

/// The one `stream ID closed:` summary line.
fn summary(t: &TestHost, stream: &str) -> String {
    let lines = t.logs.lines(PLUGIN, &format!("stream {stream} closed: "));
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_reach_the_sink_in_exact_batches_with_every_field() {
    let sink = Sink::start().await;
    let t = start(&config(
        &sink,
        &[],
        "media_deadline_ms = 2000",
        &[
            ("sink_token", SINK_TOKEN.into()),
            ("batch_max", "4".into()),
            ("batch_ms", "600000".into()),
        ],
    ))
    .await;

    // Without speech-to-text the plugin wants transcripts only.
    let plugins = t.host.plugins().await;
    assert_eq!(
        plugins[0].metadata.media,
        vec![zoomhost_runtime::bindings::types::MediaKind::Transcript]
    );
    assert!(plugins[0]
        .metadata
        .events
        .contains(&"meeting.rtms_stopped".to_string()));

    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-batch", AudioCodec::L16, 16_000, 1));
    assert_eq!(stream.plugins(), vec![Arc::<str>::from(PLUGIN)]);
    for i in 0..10 {
        stream.transcript(segment(i));
    }
    until_delivered(&t, 11).await;
    // Two full batches went as soon as they were full; two segments wait.
    assert_eq!(
        seqs(&sink.batches()),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );

    stream.close();
    until_delivered(&t, 12).await;
    let batches = sink.batches();
    assert_eq!(
        seqs(&batches),
        vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    for (n, batch) in batches.iter().enumerate() {
        assert_eq!(batch["meeting_id"], "mtg/uuid+1==");
        assert_eq!(batch["stream_id"], "s-batch");
        assert_eq!(batch["session_kind"], "meeting");
        assert_eq!(batch["final"], n == 2, "only the close's batch is final");
        assert_eq!(batch["dropped"], 0);
    }
    let segments = sink.segments();
    for (i, got) in segments.iter().enumerate() {
        assert_eq!(*got, expected_segment(i as u64, i as u64));
    }
    for request in sink.requests() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/ingest/segments");
        assert_eq!(request.header("content-type"), Some("application/json"));
        let auth = format!("Bearer {SINK_TOKEN}");
        assert_eq!(request.header("authorization"), Some(auth.as_str()));
    }
    assert_eq!(
        summary(&t, "s-batch"),
        "stream s-batch closed: sent=10 batches=3 dropped=0 rejected=0 left=0"
    );
    assert_no_secret_logged(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_once_its_oldest_segment_is_batch_ms_old_on_any_delivery() {
    let sink = Sink::start().await;
    let t = start(&config(
        &sink,
        &[],
        "media_deadline_ms = 2000",
        &[("batch_max", "100".into()), ("batch_ms", "1000".into())],
    ))
    .await;
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-age", AudioCodec::L16, 16_000, 1));
    stream.transcript(segment(0));
    until_delivered(&t, 2).await;
    assert!(sink.requests().is_empty());
    // Not a timed assertion: the sleep only guarantees the segment is old enough.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Any delivery checks the age, not only a new segment.
    stream.participant_join(join());
    until_delivered(&t, 3).await;
    assert_eq!(seqs(&sink.batches()), vec![vec![0]]);

    stream.transcript(segment(1));
    stream.transcript(segment(2));
    stream.close();
    until_delivered(&t, 6).await;
    let batches = sink.batches();
    assert_eq!(seqs(&batches), vec![vec![0], vec![1, 2]]);
    assert_eq!(batches[0]["final"], false);
    assert_eq!(batches[1]["final"], true);
    assert_eq!(sink.segments()[2], expected_segment(2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_gets_everything_in_order_after_recovery_within_max_pending() {
    let sink = Sink::start().await;
    sink.fail(true);
    let t = start(&config(
        &sink,
        &[],
        "media_deadline_ms = 2000",
        &[
            ("batch_max", "2".into()),
            ("batch_ms", "600000".into()),
            ("max_pending", "5".into()),
            ("retry_min_ms", "0".into()),
            ("retry_max_ms", "0".into()),
        ],
    ))
    .await;
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-retry", AudioCodec::L16, 16_000, 1));
    for i in 0..8 {
        stream.transcript(segment(i));
    }
    until_delivered(&t, 9).await;
    let attempts = sink.requests();
    assert!(!attempts.is_empty());
    assert!(attempts.iter().all(|r| r.status == 500));
    // Every attempt is the front of the queue: the same two oldest segments still kept.
    assert_eq!(seqs(&[attempts[0].json()]), vec![vec![0, 1]]);
    assert_eq!(seqs(&[attempts.last().unwrap().json()]), vec![vec![3, 4]]);
    assert_eq!(
        t.logs
            .containing(PLUGIN, "more than max_pending=5 segments wait for the sink")
            .len(),
        1
    );
    assert!(!t
        .logs
        .containing(PLUGIN, "sink POST of 2 segments failed, kept for retry")
        .is_empty());

    // The sink recovers; the next delivery sends what was kept, oldest first.
    sink.fail(false);
    stream.participant_join(join());
    until_delivered(&t, 10).await;
    assert_eq!(seqs(&sink.batches()), vec![vec![3, 4], vec![5, 6]]);
    stream.close();
    until_delivered(&t, 11).await;
    let batches = sink.batches();
    assert_eq!(seqs(&batches), vec![vec![3, 4], vec![5, 6], vec![7]]);
    assert!(batches.iter().all(|b| b["dropped"] == 3));
    for got in sink.segments() {
        let seq = got["seq"].as_u64().unwrap();
        assert_eq!(got, expected_segment(seq, seq));
    }
    assert_eq!(
        t.logs.containing(
            PLUGIN,
            "stream s-retry: sink caught up; 3 segments were dropped while it was failing (3 dropped in total)"
        ).len(),
        1
    );
    assert_eq!(
        summary(&t, "s-retry"),
        "stream s-retry closed: sent=5 batches=3 dropped=3 rejected=0 left=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_media_calls_are_too_short_a_flush_event_delivers_what_the_stream_left() {
    // Media calls of 400 ms never leave `min_send_ms` = 1000: nothing can be sent from
    // them, not even at the close. The flush event's 5 s deadline can.
    let sink = Sink::start().await;
    let t = start(&config(
        &sink,
        &[],
        "media_deadline_ms = 400\nevent_deadline_ms = 5000",
        &[("batch_max", "2".into()), ("min_send_ms", "1000".into())],
    ))
    .await;
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-short", AudioCodec::L16, 16_000, 1));
    for i in 0..3 {
        stream.transcript(segment(i));
    }
    stream.close();
    until_delivered(&t, 5).await;
    assert!(sink.requests().is_empty());
    assert_eq!(
        t.logs.containing(PLUGIN, "media calls get only").len(),
        1,
        "warned once"
    );
    assert_eq!(
        t.logs
            .containing(
                PLUGIN,
                "stream s-short: 3 segments and the final batch could not be sent before the stream ended (too little of the call's deadline was left"
            )
            .len(),
        1
    );

    let queued = t
        .host
        .router()
        .dispatch_event(event("meeting.rtms_stopped", 1));
    assert_eq!(queued, vec![Arc::<str>::from(PLUGIN)]);
    assert!(eventually(WAIT, || sink.batches().len() == 2).await);
    let batches = sink.batches();
    assert_eq!(seqs(&batches), vec![vec![0, 1], vec![2]]);
    assert_eq!(batches[1]["final"], true);
    assert_eq!(batches[1]["stream_id"], "s-short");
    assert_eq!(sink.segments()[1], expected_segment(1, 1));
    assert!(
        eventually(WAIT, || !t
            .logs
            .containing(
                PLUGIN,
                "stream s-short: delivered what was left after it ended"
            )
            .is_empty())
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_segments_survive_a_config_reload() {
    let sink = Sink::start().await;
    let values = |batch_max: &str| {
        vec![
            ("batch_max", batch_max.to_string()),
            ("batch_ms", "600000".to_string()),
        ]
    };
    let t = start(&config(
        &sink,
        &[],
        "media_deadline_ms = 2000",
        &values("100"),
    ))
    .await;
    let _watcher = reload::watch(
        t.host.clone(),
        Some((t.config_path(), zoomhost::config::runtime_loader())),
    )
    .unwrap();
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-reload", AudioCodec::L16, 16_000, 1));
    for i in 0..3 {
        stream.transcript(segment(i));
    }
    until_delivered(&t, 4).await;
    assert!(sink.requests().is_empty());

    // A new config: the instance is replaced, its pending segments handed over.
    std::fs::write(
        t.config_path(),
        config(&sink, &[], "media_deadline_ms = 2000", &values("2")),
    )
    .unwrap();
    let until = std::time::Instant::now() + WAIT;
    while t.host.stats(PLUGIN).await.unwrap().swaps == 0 {
        assert!(
            std::time::Instant::now() < until,
            "config change never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        t.logs
            .containing(PLUGIN, "took over 3 pending segments of 1 streams")
            .len(),
        1
    );
    stream.transcript(segment(3));
    stream.close();
    until_delivered(&t, 6).await;
    let batches = sink.batches();
    assert_eq!(seqs(&batches), vec![vec![0, 1], vec![2, 3], vec![]]);
    assert_eq!(batches[2]["final"], true);
    for (i, got) in sink.segments().iter().enumerate() {
        assert_eq!(*got, expected_segment(i as u64, i as u64));
    }
}

// ---------------------------------------------------------------------------------
// Speech-to-text

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// Splits a multipart body strictly per RFC 7578 (CRLF delimiters, closing `--`).
fn multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not multipart/form-data: {content_type}"));
    let delimiter = format!("--{boundary}");
    let find = |hay: &[u8], from: usize, needle: &[u8]| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    assert!(
        body.starts_with(delimiter.as_bytes()),
        "body starts with the boundary"
    );
    let next_delimiter = format!("\r\n{delimiter}");
    let mut parts = Vec::new();
    let mut at = delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            assert_eq!(&body[at..], b"--\r\n", "closing delimiter ends the body");
            return parts;
        }
        assert!(body[at..].starts_with(b"\r\n"));
        let start = at + 2;
        let end = find(body, start, next_delimiter.as_bytes()).expect("part is delimited");
        let part = &body[start..end];
        let split = find(part, 0, b"\r\n\r\n").expect("part headers end");
        let headers = String::from_utf8(part[..split].to_vec()).unwrap();
        let mut p = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: part[split + 4..].to_vec(),
        };
        for line in headers.split("\r\n") {
            let (name, value) = line.split_once(": ").unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    assert!(value.starts_with("form-data; "), "{value}");
                    for param in value.split("; ").skip(1) {
                        let (k, v) = param.split_once('=').unwrap();
                        let v = v.trim_matches('"').to_string();
                        match k {
                            "name" => p.name = v,
                            "filename" => p.filename = Some(v),
                            other => panic!("unexpected parameter {other}"),
                        }
                    }
                }
                "content-type" => p.content_type = Some(value.to_string()),
                other => panic!("unexpected part header {other}"),
            }
        }
        parts.push(p);
        at = end + next_delimiter.len();
    }
}

/// A parsed RIFF/WAVE file.
#[derive(Debug, PartialEq)]
struct Wav {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    byte_rate: u32,
    block_align: u16,
    bits: u16,
    data: Vec<u8>,
}

fn parse_wav(bytes: &[u8]) -> Wav {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut at = 12;
    let mut fmt = None;
    let mut data = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(at + 4) as usize;
        let body = at + 8;
        assert!(body + len <= bytes.len(), "chunk {id:?} overruns the file");
        match id {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(bytes[body..body + len].to_vec()),
            _ => {}
        }
        at = body + len + len % 2;
    }
    let f = fmt.expect("fmt chunk");
    Wav {
        format_tag: u16_at(f),
        channels: u16_at(f + 2),
        sample_rate: u32_at(f + 4),
        byte_rate: u32_at(f + 8),
        block_align: u16_at(f + 12),
        bits: u16_at(f + 14),
        data: data.expect("data chunk"),
    }
}

/// 20 ms of 8 kHz stereo L16 for `user`'s frame `i`: 640 distinct-ish bytes.
fn pcm(user: u32, i: u64) -> Vec<u8> {
    (0..640u64)
        .map(|j| ((i * 31 + j * 7 + u64::from(user) * 101) % 251) as u8)
        .collect()
}

fn audio(user: u32, name: &str, ts: u64, data: Vec<u8>) -> AudioFrame {
    AudioFrame {
        user_id: user,
        user_name: name.into(),
        timestamp: ts,
        data: data.into(),
    }
}

/// An STT endpoint answering `{"text": "heard #N"}` (N: request index), or 503 with a
/// body that echoes the bearer token (as careless servers do) while `failing`.
async fn stt_server(failing: Arc<AtomicBool>) -> Server {
    Server::start(Arc::new(move |n, r: &Received| {
        if failing.load(Ordering::SeqCst) {
            let auth = r.header("authorization").unwrap_or("").to_string();
            (
                503,
                json!({"error": format!("overloaded; your key: {auth}")}).to_string(),
            )
        } else {
            (200, json!({ "text": format!("  heard #{n} ") }).to_string())
        }
    }))
    .await
}

fn stt_values(stt: &Server, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut values = vec![
        ("sink_token", SINK_TOKEN.to_string()),
        ("batch_max", "100".to_string()),
        ("batch_ms", "600000".to_string()),
        (
            "stt_url",
            format!("{}/v1/audio/transcriptions", stt.origin()),
        ),
        ("stt_api_key", STT_KEY.to_string()),
        ("stt_chunk_seconds", "1".to_string()),
    ];
    values.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_to_text_uploads_valid_wav_chunks_and_forwards_the_text() {
    let sink = Sink::start().await;
    let stt = stt_server(Arc::new(AtomicBool::new(false))).await;
    let t = start(&config(
        &sink,
        &[stt.origin()],
        "media_deadline_ms = 2000\naudio_queue_frames = 10000",
        &stt_values(
            &stt,
            &[
                ("stt_model", "whisper-large-v3"),
                ("stt_language", "en"),
                ("stt_min_final_ms", "300"),
            ],
        ),
    ))
    .await;
    let plugins = t.host.plugins().await;
    assert_eq!(
        plugins[0].metadata.media,
        vec![
            zoomhost_runtime::bindings::types::MediaKind::Transcript,
            zoomhost_runtime::bindings::types::MediaKind::Audio
        ]
    );

    // Ada speaks 2.4 s, Bob 1 s (from 0.5 s on); 8 kHz stereo, 20 ms frames.
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-stt", AudioCodec::L16, 8000, 2));
    let ada_ts = |i: u64| T0 + 20 * i;
    let bob_ts = |i: u64| T0 + 500 + 20 * i;
    let mut deliveries = 1;
    for i in 0..120u64 {
        stream.audio(audio(7, "Ada", ada_ts(i), pcm(7, i)));
        deliveries += 1;
        if i < 50 {
            stream.audio(audio(9, "Bob", bob_ts(i), pcm(9, i)));
            deliveries += 1;
        }
        if i == 60 {
            stream.transcript(segment(0));
            deliveries += 1;
        }
    }
    until_delivered(&t, deliveries).await;
    // Three full chunks so far: Ada 0-1 s, Bob 0.5-1.5 s, Ada 1-2 s.
    assert_eq!(stt.requests().len(), 3);
    stream.close();
    until_delivered(&t, deliveries + 1).await;

    // Ada's last 0.4 s went at the close (>= stt_min_final_ms).
    let chunks: [(u32, Vec<u64>); 4] = [
        (7, (0..50).collect()),
        (9, (0..50).collect()),
        (7, (50..100).collect()),
        (7, (100..120).collect()),
    ];
    let requests = stt.requests();
    assert_eq!(requests.len(), chunks.len());
    for (request, (user, frames)) in requests.iter().zip(&chunks) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/audio/transcriptions");
        let auth = format!("Bearer {STT_KEY}");
        assert_eq!(request.header("authorization"), Some(auth.as_str()));
        let parts = multipart(request.header("content-type").unwrap(), &request.body);
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["model", "response_format", "language", "file"]);
        assert_eq!(parts[0].data, b"whisper-large-v3");
        assert_eq!(parts[1].data, b"json");
        assert_eq!(parts[2].data, b"en");
        let file = &parts[3];
        assert_eq!(file.filename.as_deref(), Some("chunk.wav"));
        assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
        let wav = parse_wav(&file.data);
        assert_eq!(
            (wav.format_tag, wav.bits, wav.channels, wav.sample_rate),
            (1, 16, 2, 8000),
            "PCM 16-bit at the stream's rate and channels"
        );
        assert_eq!((wav.byte_rate, wav.block_align), (32_000, 4));
        let expected: Vec<u8> = frames.iter().flat_map(|&i| pcm(*user, i)).collect();
        if frames.len() == 50 {
            // A full chunk: rate * channels * 2 bytes * stt_chunk_seconds.
            assert_eq!(wav.data.len(), 8000 * 2 * 2);
        }
        assert!(
            wav.data == expected,
            "chunk audio is the speaker's frames, in order"
        );
    }

    let batches = sink.batches();
    assert_eq!(batches.len(), 1, "everything went in the final batch");
    let stt_segment = |seq: u64, n: usize, user: u32, name: &str, start: u64, end: u64| {
        json!({
            "seq": seq, "origin": "stt", "speaker_id": user, "speaker_name": name,
            "text": format!("heard #{n}"), "start_ms": start, "end_ms": end, "language": "en",
        })
    };
    assert_eq!(
        sink.segments(),
        vec![
            stt_segment(0, 0, 7, "Ada", ada_ts(0), ada_ts(50)),
            stt_segment(1, 1, 9, "Bob", bob_ts(0), bob_ts(50)),
            expected_segment(0, 2),
            stt_segment(3, 2, 7, "Ada", ada_ts(50), ada_ts(100)),
            stt_segment(4, 3, 7, "Ada", ada_ts(100), ada_ts(120)),
        ]
    );
    assert_eq!(
        summary(&t, "s-stt"),
        "stream s-stt closed: sent=5 batches=1 dropped=0 rejected=0 left=0 \
         stt_chunks=4 stt_rejected=0 stt_dropped_ms=0 stt_lost_ms=0"
    );
    assert_no_secret_logged(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_speech_to_text_is_retried_within_its_memory_bound_and_keeps_the_key_secret() {
    let sink = Sink::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let stt = stt_server(failing.clone()).await;
    let t = start(&config(
        &sink,
        &[stt.origin()],
        "media_deadline_ms = 2000\naudio_queue_frames = 10000",
        &stt_values(
            &stt,
            &[
                ("stt_max_buffered_seconds", "2"),
                ("retry_min_ms", "0"),
                ("retry_max_ms", "0"),
            ],
        ),
    ))
    .await;

    // 4 s of 8 kHz mono (320 bytes per frame) while the service fails: only 2 s fit.
    let stream = t
        .host
        .router()
        .open_stream(stream_info("s-stt-fail", AudioCodec::L16, 8000, 1));
    let ts = |i: u64| T0 + 20 * i;
    let frame = |i: u64| pcm(3, i)[..320].to_vec();
    for i in 0..200u64 {
        stream.audio(audio(3, "Cy", ts(i), frame(i)));
    }
    until_delivered(&t, 201).await;
    assert!(stt.requests().iter().all(|r| r.status == 503));
    assert_eq!(
        t.logs
            .containing(
                PLUGIN,
                "stream s-stt-fail: speech-to-text is behind; dropping the oldest audio"
            )
            .len(),
        1
    );
    let failures = t.logs.containing(
        PLUGIN,
        "stream s-stt-fail: speech-to-text of 1.0 s failed, kept for retry",
    );
    assert!(!failures.is_empty());
    assert!(failures[0].contains("HTTP 503"), "{}", failures[0]);
    assert!(
        failures[0].contains("Bearer ***"),
        "key redacted: {}",
        failures[0]
    );

    // A stream with Opus audio is not transcribed (said once), its transcript still is.
    let opus = t
        .host
        .router()
        .open_stream(stream_info("s-opus", AudioCodec::Opus, 16_000, 1));
    for i in 0..3 {
        opus.audio(audio(4, "Di", ts(i), vec![1, 2, 3]));
    }
    opus.transcript(segment(5));
    opus.close();
    until_delivered(&t, 201 + 6).await;
    assert_eq!(
        t.logs
            .containing(
                PLUGIN,
                "stream s-opus: opus audio cannot be transcribed (only L16"
            )
            .len(),
        1
    );
    let opus_batch: Vec<Value> = sink
        .batches()
        .into_iter()
        .filter(|b| b["stream_id"] == "s-opus")
        .collect();
    assert_eq!(opus_batch.len(), 1);
    assert_eq!(opus_batch[0]["segments"], json!([expected_segment(5, 0)]));

    // The service recovers: the two newest seconds are transcribed, the rest was dropped.
    let attempts = stt.requests().len();
    failing.store(false, Ordering::SeqCst);
    stream.participant_join(join());
    stream.close();
    until_delivered(&t, 201 + 6 + 2).await;
    let requests = stt.requests();
    assert_eq!(requests.len(), attempts + 2);
    for (request, first) in requests[attempts..].iter().zip([100u64, 150]) {
        let parts = multipart(request.header("content-type").unwrap(), &request.body);
        let wav = parse_wav(&parts.iter().find(|p| p.name == "file").unwrap().data);
        assert_eq!((wav.channels, wav.sample_rate), (1, 8000));
        let expected: Vec<u8> = (first..first + 50).flat_map(frame).collect();
        assert_eq!(wav.data.len(), 8000 * 2);
        assert!(wav.data == expected, "the newest audio was kept");
    }
    let segments: Vec<Value> = sink
        .batches()
        .into_iter()
        .filter(|b| b["stream_id"] == "s-stt-fail")
        .flat_map(|b| b["segments"].as_array().unwrap().clone())
        .collect();
    let starts: Vec<(u64, &str)> = segments
        .iter()
        .map(|s| {
            (
                s["start_ms"].as_u64().unwrap(),
                s["origin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(starts, vec![(ts(100), "stt"), (ts(150), "stt")]);
    assert_eq!(segments[1]["end_ms"], ts(200));
    assert_eq!(segments[0]["language"], Value::Null);
    assert_eq!(
        t.logs
            .containing(
                PLUGIN,
                "stream s-stt-fail: speech-to-text caught up; 2.0 s of audio were dropped"
            )
            .len(),
        1
    );
    assert_eq!(
        summary(&t, "s-stt-fail"),
        "stream s-stt-fail closed: sent=2 batches=1 dropped=0 rejected=0 left=0 \
         stt_chunks=2 stt_rejected=0 stt_dropped_ms=2000 stt_lost_ms=0"
    );
    assert_no_secret_logged(&t);
}

// ---------------------------------------------------------------------------------
// Through the Zoom simulator

/// The forwarder behind the host's real Zoom clients: the event WebSocket (with OAuth)
/// and the RTMS client, against the simulator over loopback sockets.
mod through_the_simulator {
    use super::*;
    use zoomhost_sim::events::Scenario;
    use zoomhost_sim::rtms::SentMedia;
    use zoomhost_sim::LocalZoom;
    const BATCH_MAX: usize = 4;
    const FRAMES: u64 = 300;
    const TRANSCRIPT_EVERY: u64 = 20;
    /// The simulator's audio tick (20 ms frames).
    const FRAME_MS: u64 = 20;
    const PEOPLE: [&str; 3] = ["Ada Lovelace", "Grace Hopper", "Alan Turing"];

    /// A meeting whose RTMS stream sends 300 frames as fast as the client reads, with a
    /// transcript segment every 20 frames from three rotating speakers.
    fn scenario() -> String {
        format!(
            r#"
topic = "Forwarder drill"

[[steps]]
kind = "wait_connected"
timeout_ms = 30000

[[steps]]
kind = "event"
event = "meeting.started"

[[steps]]
kind = "rtms_start"
participants = {PEOPLE:?}
frames = {FRAMES}
pace = "fast"
transcript_every = {TRANSCRIPT_EVERY}

[[steps]]
kind = "rtms_wait"
until = "done"
timeout_ms = 30000

[[steps]]
kind = "rtms_stop"
"#
        )
    }

    /// The segment the sink must receive at `seq` for a transcript item the simulator
    /// wrote: its speaker and text, its window of frames (`start_time` is the first
    /// frame of the `transcript_every` frames it covers, `end_time` the end of the last)
    /// and the language asked for: the host sends `src_language` 12 (French, Canada),
    /// the simulator tags every segment with that number, and the host hands plugins its
    /// language tag.
    fn expected(seq: usize, sent: &SentMedia) -> Value {
        json!({
            "seq": seq,
            "origin": "zoom",
            "speaker_id": sent.user_id,
            "speaker_name": sent.user_name,
            "text": sent.text().expect("a transcript item is text"),
            "start_ms": sent.timestamp - (TRANSCRIPT_EVERY - 1) * FRAME_MS,
            "end_ms": sent.timestamp + FRAME_MS,
            "language": "fr-CA",
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_transcript_segment_the_simulator_sends_reaches_the_sink_in_batches() {
        let sink = Sink::start().await;
        // batch_ms far away: batches go when full, or when the stream ends.
        let t_config = config(
            &sink,
            &[],
            "media_deadline_ms = 2000",
            &[
                ("batch_max", BATCH_MAX.to_string()),
                ("batch_ms", "600000".into()),
            ],
        );

        // The simulated Zoom (OAuth, the event WebSocket, RTMS) and the host's clients:
        // RTMS streams open on `meeting.rtms_started` from the event WebSocket.
        let zoom = LocalZoom::start().await.unwrap();
        let (event_sim, rtms_sim) = (&zoom.events, &zoom.rtms);
        let mut zoom_config =
            zoomhost::config::for_local_zoom(&zoom, vec![MediaKind::Audio, MediaKind::Transcript]);
        if let Some(rtms) = zoom_config.rtms.as_mut() {
            rtms.transcript_language = Some(zoomhost_protocol::rtms::language::FRENCH_CANADA);
        }
        let (t, live) = TestHost::start_live(&t_config, &[(PLUGIN, PLUGIN)], zoom_config).await;
        let rtms = live.rtms().expect("RTMS is configured").clone();

        let report = Scenario::parse(&scenario())
            .unwrap()
            .run_with(event_sim, Some(rtms_sim))
            .await
            .expect("the scenario plays");
        let names: Vec<&str> = report.sent.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "meeting.started",
                "meeting.rtms_started",
                "meeting.rtms_stopped"
            ]
        );
        let streams = rtms_sim.streams();
        assert_eq!(streams.len(), 1);
        let stream = &streams[0];
        assert!(Arc::ptr_eq(stream, &report.rtms_streams[0]));

        // Done once the final batch arrived, the session logged its summary and the
        // plugin handled `meeting.rtms_stopped` (a flush event): nothing can be sent
        // after all three.
        let closed = format!("stream {} closed: ", stream.stream_id());
        let until = std::time::Instant::now() + WAIT;
        loop {
            let stats = t.host.stats(PLUGIN).await.unwrap();
            let has_final = sink.batches().iter().any(|b| b["final"] == true);
            let summarized = !t.logs.lines(PLUGIN, &closed).is_empty();
            if has_final && summarized && stats.events_delivered >= 1 {
                assert_eq!(stats.events_delivered, 1, "{stats:?}");
                assert_eq!(
                    (stats.events_failed, stats.media_failed, stats.crashes),
                    (0, 0, 0),
                    "{stats:?}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "no final batch: {:?}, {stats:?}",
                sink.batches()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // What the simulator wrote to the transcript socket.
        let sent: Vec<SentMedia> = stream
            .sent()
            .into_iter()
            .filter(|m| m.kind == zoomhost_sim::rtms::MediaKind::Transcript)
            .collect();
        assert_eq!(sent.len() as u64, FRAMES / TRANSCRIPT_EVERY);
        assert!(sent.iter().all(|m| !m.resent));
        // The speakers are the scenario's people, with the ids the stream gave them.
        let people: Vec<(u32, &str)> = stream
            .participants()
            .iter()
            .map(|p| (p.user_id, p.user_name.as_str()))
            .collect();
        assert_eq!(
            people.iter().map(|p| p.1).collect::<Vec<_>>(),
            PEOPLE.to_vec()
        );
        for m in &sent {
            assert!(people.contains(&(m.user_id, m.user_name.as_str())), "{m:?}");
        }
        let speakers: std::collections::BTreeSet<&str> =
            sent.iter().map(|m| m.user_name.as_str()).collect();
        assert_eq!(speakers.len(), PEOPLE.len(), "the speaker rotates");

        // The sink got exactly those segments, once each, in order, with every field.
        let segments = sink.segments();
        let want: Vec<Value> = sent
            .iter()
            .enumerate()
            .map(|(seq, m)| expected(seq, m))
            .collect();
        assert_eq!(segments, want);

        // Batched as configured: full batches as soon as four waited, the rest when the
        // stream ended (in the close's final batch, or flushed by `meeting.rtms_stopped`
        // just before it, leaving the final batch empty). Exactly one final batch, last.
        let batches = sink.batches();
        assert_eq!(sink.requests().len(), batches.len(), "every batch accepted");
        let sizes: Vec<usize> = batches
            .iter()
            .map(|b| b["segments"].as_array().unwrap().len())
            .collect();
        assert!(
            sizes == [4, 4, 4, 3] || sizes == [4, 4, 4, 3, 0],
            "batch sizes {sizes:?}"
        );
        assert!(sizes.iter().all(|&n| n <= BATCH_MAX));
        let finals: Vec<usize> = (0..batches.len())
            .filter(|&i| batches[i]["final"] == true)
            .collect();
        assert_eq!(finals, [batches.len() - 1], "one final batch, the last");
        for batch in &batches {
            assert_eq!(batch["meeting_id"], stream.meeting_uuid());
            assert_eq!(batch["stream_id"], stream.stream_id());
            assert_eq!(batch["session_kind"], "meeting");
            assert_eq!(batch["dropped"], 0);
        }
        assert_eq!(
            summary(&t, stream.stream_id()),
            format!(
                "stream {} closed: sent=15 batches={} dropped=0 rejected=0 left=0",
                stream.stream_id(),
                batches.len()
            )
        );

        // The host's RTMS client opened the one stream and saw it end.
        let client = rtms.stats();
        assert_eq!((client.opened, client.failed), (1, 0), "{client:?}");
        assert!(rtms.active().is_empty());
        let stopped = live.shutdown().await;
        assert!(
            stopped.source_errors.is_empty(),
            "event client stopped cleanly: {:?}",
            stopped.source_errors
        );
    }
}
