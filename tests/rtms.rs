//! End-to-end RTMS: the host's RTMS client against the simulator's signaling and media
//! servers over loopback, into real recorder components.
//!
//! Every check compares what the simulator actually wrote to a socket with what the
//! recorder plugin's media session received: count, order, user, timestamp, length and
//! an FNV-1a sum of every audio frame, the text of every transcript segment.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{eventually, field, fnv1a, rtms_sim, Logs, TestHost};
use serde_json::json;
use zoomhost::config::Secret;
use zoomhost::inputs::Inputs;
use zoomhost_sim::rtms::{
    End, ExtraMedia, Fault, FrameFate, Pace, RtmsSim, RtmsSimConfig, SimParticipant, SimStream,
    StreamOutcome, StreamSpec,
};
use zoomhost_types::{ControlError, StreamControl};
use zoomhost_types::{Event, EventSource, InputSink, MediaKind};
use zoomhost_zoom::rtms::{RtmsConfig, RtmsManager, RtmsNotice};

const CLIENT_ID: &str = "rtms-test-client";
const SECRET: &str = "rtms-test-secret";

/// A host with one recorder subscribed to `media`, with room for fast streams.
async fn host(media: &str) -> TestHost {
    let config = format!(
        r#"
[limits]
audio_queue_frames = 200000
mailbox_capacity = 200000
log_lines_per_second = 10000000
media_deadline_ms = 1000

[plugins.recorder.config]
events = "meeting.*"
media = "{media}"
"#
    );
    TestHost::start(&config, &[("recorder", "recorder")]).await
}

/// Zoom's timers scaled down: backoff 50 ms to 400 ms, a 300 ms grace period for
/// Zoom's word after a bare close, 10 s windows, 100 ms before a duplicate retry.
fn client_config(secret: &str) -> RtmsConfig {
    let mut config = RtmsConfig::new(CLIENT_ID, Secret::new(secret.to_string()));
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(400);
    config.resume_window = Duration::from_secs(10);
    config.media_resume_window = Duration::from_secs(10);
    config.close_grace = Duration::from_millis(300);
    config.duplicate_retry = Duration::from_millis(100);
    config.idle_timeout = Duration::from_secs(10);
    config.connect_timeout = Duration::from_secs(5);
    config
}

/// Forwards every lifecycle webhook the simulator sends (`rtms_interrupted`, a
/// failover's `rtms_started`, `rtms_stopped`) into the host's input path, as Zoom's
/// webhooks would arrive. Subscribe before the first fault can fire.
fn forward_notices(sim: &RtmsSim, inputs: &Arc<Inputs>) -> tokio::task::JoinHandle<()> {
    let mut notices = sim.notices();
    let inputs = inputs.clone();
    tokio::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(n) => {
                    inputs.event(Event {
                        id: zoomhost_protocol::event_id(&n.name, n.event_ts, &n.payload),
                        name: n.name.clone(),
                        timestamp: n.event_ts,
                        payload: n.payload.to_string(),
                        source: EventSource::Webhook,
                    });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    })
}

/// An RTMS client feeding `host`'s router, tapped into an input path as the host wires
/// it: events given to the returned `Inputs` reach the client, then the plugins.
fn manager(host: &TestHost, config: RtmsConfig) -> (Arc<RtmsManager>, Arc<Inputs>) {
    let manager = RtmsManager::new(config, host.host.router().clone());
    let inputs = Inputs::new(host.host.router().clone());
    inputs.tap(manager.event_tap());
    (manager, inputs)
}

/// Keep-alives every 5 s: none fall due in most tests.
const KEEPALIVE_5S: Duration = Duration::from_secs(5);

/// A host with a recorder subscribed to `media`, a simulator sending keep-alives every
/// `keepalive`, and an RTMS client configured by `config` feeding the host, tapped into
/// the returned input path: what most tests start from.
async fn rig(
    media: &str,
    keepalive: Duration,
    config: RtmsConfig,
) -> (TestHost, Arc<RtmsSim>, Arc<RtmsManager>, Arc<Inputs>) {
    let host = host(media).await;
    let sim = rtms_sim(CLIENT_ID, SECRET, keepalive).await;
    let (rtms, inputs) = manager(&host, config);
    (host, sim, rtms, inputs)
}

/// [`client_config`] with the right secret, subscribed to audio alone.
fn audio_only() -> RtmsConfig {
    let mut config = client_config(SECRET);
    config.media = vec![MediaKind::Audio];
    config
}

/// `meeting.rtms_started` for a simulator stream, as a webhook would deliver it.
fn started(sim: &RtmsSim, stream: &SimStream, source: EventSource) -> Event {
    let payload = json!({
        "meeting_uuid": stream.meeting_uuid(),
        "rtms_stream_id": stream.stream_id(),
        "server_urls": sim.signaling_url(),
        "operator_id": "op-1",
    });
    Event {
        id: zoomhost_protocol::event_id("meeting.rtms_started", 1_700_000_000_000, &payload),
        name: "meeting.rtms_started".into(),
        timestamp: 1_700_000_000_000,
        payload: payload.to_string(),
        source,
    }
}

/// (user, timestamp, length, fnv sum) of one media frame.
type Frame = (String, String, String, String);

/// Every audio frame the simulator wrote, in order, without the frames it sent again
/// after a resume.
fn sent_audio(stream: &SimStream) -> Vec<Frame> {
    sent_frames(stream, zoomhost_sim::rtms::MediaKind::Audio)
}

/// The same fields from the recorder's audio lines for a stream.
fn received_audio(logs: &Logs, stream_id: &str) -> Vec<Frame> {
    received_frames(logs, "audio", stream_id)
}

/// Every `kind` frame the simulator wrote, in order, without the frames it sent again
/// after a resume.
fn sent_frames(stream: &SimStream, kind: zoomhost_sim::rtms::MediaKind) -> Vec<Frame> {
    stream
        .sent()
        .iter()
        .filter(|m| m.kind == kind && !m.resent)
        .map(|m| {
            (
                m.user_id.to_string(),
                m.timestamp.to_string(),
                m.data.len().to_string(),
                fnv1a(&m.data),
            )
        })
        .collect()
}

/// The same fields from the recorder's `kind` lines (`audio`, `video`) for a stream.
fn received_frames(logs: &Logs, kind: &str, stream_id: &str) -> Vec<Frame> {
    logs.lines("recorder", &format!("rec {kind} stream={stream_id} "))
        .iter()
        .map(|l| {
            (
                field(l, "user").to_string(),
                field(l, "ts").to_string(),
                field(l, "len").to_string(),
                field(l, "sum").to_string(),
            )
        })
        .collect()
}

/// Asserts two frame lists are equal, reporting the lengths and the first difference.
fn assert_same(got: &[Frame], sent: &[Frame], what: &str) {
    if got != sent {
        let first = got.iter().zip(sent).position(|(a, b)| a != b);
        panic!(
            "{what}: received {} frames, sent {}; first difference at {first:?}: got {:?}, sent {:?}",
            got.len(),
            sent.len(),
            first.map(|i| &got[i]),
            first.map(|i| &sent[i]),
        );
    }
}

fn closed(logs: &Logs, stream_id: &str) -> bool {
    !logs
        .lines("recorder", &format!("rec close stream={stream_id} "))
        .is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_meeting_reaches_the_plugin_exactly_once_in_order_byte_exact() {
    let mut config = client_config(SECRET);
    config.media = MediaKind::ALL.to_vec();
    let (host, sim, rtms, inputs) =
        rig("audio,transcript,video", Duration::from_millis(40), config).await;
    let mut notices = rtms.subscribe();
    let stream = sim.add_stream(StreamSpec {
        participants: vec![
            SimParticipant::new(16_778_240, "Ada Lovelace"),
            SimParticipant::new(16_779_264, "Grace Hopper"),
            SimParticipant::new(16_780_288, "Katherine Johnson"),
        ],
        frames: 300,
        pace: Pace::Fast,
        transcript_every: 20,
        extra: ExtraMedia {
            video: 6,
            share: 4,
            chat: 3,
        },
        ..StreamSpec::new("mtg-full==", "stream-full")
    });
    // Zoom may deliver the start on both sources: one stream opens.
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    inputs.event(started(&sim, &stream, EventSource::Websocket));

    assert!(
        stream.wait_done(Duration::from_secs(30)).await,
        "simulator finished"
    );
    assert!(
        eventually(Duration::from_secs(20), || closed(
            &host.logs,
            "stream-full"
        ))
        .await,
        "the plugin's session closed"
    );

    // Audio: every frame, once, in order, byte-exact.
    let sent = sent_audio(&stream);
    assert_eq!(sent.len(), 300, "mixed audio: one frame per tick");
    assert_same(
        &received_audio(&host.logs, "stream-full"),
        &sent,
        "stream-full",
    );

    // Transcript: every segment, in order, with its speaker and text.
    let sent_text: Vec<(String, String)> = stream
        .sent()
        .iter()
        .filter(|m| m.kind == zoomhost_sim::rtms::MediaKind::Transcript)
        .map(|m| {
            (
                m.user_id.to_string(),
                serde_json::to_string(m.text().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(sent_text.len(), 15);
    let got_text: Vec<(String, String)> = host
        .logs
        .lines("recorder", "rec transcript stream=stream-full ")
        .iter()
        .map(|l| {
            (
                field(l, "user").to_string(),
                l.split_once(" text=").unwrap().1.to_string(),
            )
        })
        .collect();
    assert_eq!(got_text, sent_text);

    // Video reaches the subscriber; share and chat nobody wants: counted, dropped.
    assert_eq!(
        host.logs
            .lines("recorder", "rec video stream=stream-full ")
            .len(),
        6
    );
    assert!(host.logs.lines("recorder", "rec share ").is_empty());
    assert!(host.logs.lines("recorder", "rec chat ").is_empty());
    assert_eq!(rtms.stats().unsubscribed, 7);

    // Metadata: the stream's identity and the confirmed format.
    let open = host.logs.lines("recorder", "rec open stream=stream-full ");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(field(&open[0], "meeting"), "mtg-full==");
    assert_eq!(field(&open[0], "rate"), "16000");
    assert_eq!(field(&open[0], "ch"), "1");
    for user in ["16778240", "16779264", "16780288"] {
        assert_eq!(
            host.logs
                .lines(
                    "recorder",
                    &format!("rec join stream=stream-full user={user}")
                )
                .len(),
            1,
            "join of {user}"
        );
    }
    assert!(!host
        .logs
        .lines("recorder", "rec speaker stream=stream-full ")
        .is_empty());
    assert!(!host
        .logs
        .lines("recorder", "rec state stream=stream-full state=terminated")
        .is_empty());

    // Protocol: one handshake each, ready ack, subscriptions, every keep-alive answered,
    // and every socket closed with 1000.
    let stats = stream.stats();
    assert_eq!(stats.signaling_handshakes, 1, "{stats:?}");
    assert_eq!(
        stats.media_handshakes, 5,
        "one socket per media kind: {stats:?}"
    );
    assert_eq!(stats.ready_acks, 1);
    assert_eq!(stats.subscriptions, vec![2, 3, 4]);
    // A fast stream may end before the first keep-alive (the stop test covers them at
    // length); a request sent while the sockets were closing may go unanswered.
    assert_eq!(stats.dropped_for_keepalive, 0, "{stats:?}");
    assert!(
        stats.keepalives_answered + 6 >= stats.keepalives_sent,
        "{stats:?}"
    );
    assert!(
        stats.client_close_codes.iter().all(|c| *c == 1000),
        "{stats:?}"
    );
    let mut saw = Vec::new();
    while let Ok(n) = notices.try_recv() {
        saw.push(n);
    }
    assert!(
        matches!(saw.first(), Some(RtmsNotice::Opened { .. })),
        "{saw:?}"
    );
    assert!(
        matches!(saw.last(), Some(RtmsNotice::Closed { .. })),
        "{saw:?}"
    );
    assert_eq!(rtms.stats().opened, 1, "the duplicate start opened nothing");
    assert!(rtms.active().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_signaling_drops_recover_without_loss_or_duplicates() {
    let (host, sim, rtms, inputs) =
        rig("audio,transcript", KEEPALIVE_5S, client_config(SECRET)).await;
    let _forward = forward_notices(&sim, &inputs);
    let stream = sim.add_stream(StreamSpec {
        frames: 400,
        pace: Pace::Fast,
        transcript_every: 25,
        faults: vec![(100, Fault::DropMedia), (250, Fault::DropSignaling)],
        resend_on_resume: 5,
        // The server confirms a different format than asked: plugins get the confirmed one.
        confirm_audio: Some(json!({ "sample_rate": 3, "channel": 2 })),
        ..StreamSpec::new("mtg-drop==", "stream-drop")
    });
    inputs.event(started(&sim, &stream, EventSource::Websocket));
    assert!(
        stream.wait_done(Duration::from_secs(30)).await,
        "simulator finished"
    );
    assert!(
        eventually(Duration::from_secs(20), || closed(
            &host.logs,
            "stream-drop"
        ))
        .await,
        "the plugin's session closed"
    );
    let sent = sent_audio(&stream);
    eprintln!(
        "DEBUG client {:?}\nDEBUG sim {:?}",
        rtms.stats(),
        stream.stats()
    );
    assert_eq!(sent.len(), 400);
    assert!(
        sent.iter().all(|f| f.2 == "3840"),
        "48 kHz stereo 20 ms frames"
    );
    assert_same(
        &received_audio(&host.logs, "stream-drop"),
        &sent,
        "stream-drop",
    );
    let open = host.logs.lines("recorder", "rec open stream=stream-drop ");
    assert_eq!(field(&open[0], "rate"), "48000");
    assert_eq!(field(&open[0], "ch"), "2");

    let resent = stream.sent().iter().filter(|m| m.resent).count() as u64;
    assert!(resent > 0, "the simulator re-sent frames after resuming");
    let client = rtms.stats();
    assert!(client.duplicates >= resent, "{client:?} vs {resent} resent");
    assert!(client.reconnects >= 2, "{client:?}");
    let stats = stream.stats();
    assert_eq!(stats.signaling_handshakes, 2, "{stats:?}");
    assert!(stats.media_handshakes >= 4, "{stats:?}");
    assert_eq!(
        client.opened, 1,
        "the stream stayed one stream in the plugins"
    );
    assert_eq!(client.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_rejected_by_the_server_and_reported_by_the_host() {
    let (host, sim, rtms, inputs) =
        rig("audio", KEEPALIVE_5S, client_config("not-the-secret")).await;
    let mut notices = rtms.subscribe();
    let stream = sim.add_stream(StreamSpec {
        end: End::Hold,
        ..StreamSpec::new("mtg-bad==", "stream-bad")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    let failure = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match notices.recv().await {
                Ok(RtmsNotice::Failed { stream_id, error }) => break (stream_id, error),
                Ok(_) => continue,
                Err(e) => panic!("notices: {e}"),
            }
        }
    })
    .await
    .expect("the host reports the failure");
    assert_eq!(failure.0, "stream-bad");
    let rejections = stream.stats().rejections;
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    let (msg_type, code) = rejections[0];
    assert_eq!(msg_type, 2, "refused at the signaling handshake");
    assert_ne!(code, 0);
    assert!(
        failure.1.contains(&format!("status_code {code}")),
        "the report names the status code: {}",
        failure.1
    );
    assert!(!failure.1.contains("not-the-secret"));
    assert_eq!(rtms.stats().failed, 1);
    assert!(host.logs.lines("recorder", "rec open ").is_empty());
    assert!(
        eventually(Duration::from_secs(5), || rtms.active().is_empty()).await,
        "given up, not retried forever"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtms_stopped_closes_every_socket_with_1000_and_the_sessions() {
    // Keep-alives every 30 ms on each of the 3 sockets, 3 misses drop a client.
    let (host, sim, rtms, inputs) = rig(
        "audio,transcript",
        Duration::from_millis(30),
        client_config(SECRET),
    )
    .await;
    let stream = sim.add_stream(StreamSpec {
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        ..StreamSpec::new("mtg-stop==", "stream-stop")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    assert!(stream.wait_ready(Duration::from_secs(10)).await);
    assert!(
        eventually(Duration::from_secs(10), || !received_audio(
            &host.logs,
            "stream-stop"
        )
        .is_empty())
        .await
    );
    // Streaming for a while: every keep-alive on every socket is answered at once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let alive = stream.stats();
    assert!(alive.keepalives_sent >= 20, "{alive:?}");
    assert!(
        alive.keepalives_answered + 3 >= alive.keepalives_sent,
        "{alive:?}"
    );
    assert_eq!(alive.dropped_for_keepalive, 0, "{alive:?}");
    let stop =
        json!({ "meeting_uuid": "mtg-stop==", "rtms_stream_id": "stream-stop", "stop_reason": 6 });
    inputs.event(Event {
        id: zoomhost_protocol::event_id("meeting.rtms_stopped", 1_700_000_000_001, &stop),
        name: "meeting.rtms_stopped".into(),
        timestamp: 1_700_000_000_001,
        payload: stop.to_string(),
        source: EventSource::Webhook,
    });
    assert!(
        eventually(Duration::from_secs(10), || closed(
            &host.logs,
            "stream-stop"
        ))
        .await,
        "the session closed in the plugin"
    );
    assert!(eventually(Duration::from_secs(5), || rtms.active().is_empty()).await);
    assert!(
        eventually(Duration::from_secs(5), || stream
            .stats()
            .client_close_codes
            .len()
            >= 3)
        .await,
        "{:?}",
        stream.stats()
    );
    let codes = stream.stats().client_close_codes;
    assert!(codes.iter().all(|c| *c == 1000), "{codes:?}");
    assert_eq!(rtms.stats().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_streams_are_isolated() {
    let (host, sim, rtms, inputs) = rig("audio", Duration::from_millis(500), audio_only()).await;
    let mut streams = Vec::new();
    for i in 0..50 {
        let mut spec = StreamSpec {
            frames: 100,
            pace: Pace::RealTime,
            participants: vec![SimParticipant::new(1000 + i, format!("Speaker {i}"))],
            ..StreamSpec::new(format!("mtg-{i}=="), format!("stream-{i:02}"))
        };
        if i == 7 {
            // This one loses its media and is then refused (bad signature, final): it
            // alone is given up.
            spec.faults = vec![(20, Fault::Reject(3)), (20, Fault::DropMedia)];
            spec.end = End::Hold;
        }
        let stream = sim.add_stream(spec);
        inputs.event(started(&sim, &stream, EventSource::Websocket));
        streams.push(stream);
    }
    for (i, stream) in streams.iter().enumerate() {
        if i != 7 {
            assert!(
                stream.wait_done(Duration::from_secs(60)).await,
                "stream {i} finished"
            );
        }
    }
    assert!(
        eventually(Duration::from_secs(30), || {
            (0..50).all(|i| closed(&host.logs, &format!("stream-{i:02}")))
        })
        .await,
        "every session closed"
    );
    for (i, stream) in streams.iter().enumerate() {
        let id = format!("stream-{i:02}");
        let got = received_audio(&host.logs, &id);
        let sent = sent_audio(stream);
        if i == 7 {
            assert_same(&got, &sent, "what the failed stream got before it failed");
            continue;
        }
        assert_eq!(sent.len(), 100, "{id}");
        assert_same(&got, &sent, &id);
    }
    let stats = rtms.stats();
    assert_eq!(stats.opened, 50, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.stopped, 49, "{stats:?}");
    // Only stream 7's media loss is a reconnect: a socket closed as its stream ends is
    // not (the close can overtake the TERMINATED it follows).
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert_eq!(stats.close_fallbacks, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_all_socket_and_json_in_binary_and_text_frames() {
    let host = host("audio,transcript").await;
    // The server offers only `all` and answers in binary frames; the client sends text.
    let sim = RtmsSim::start(RtmsSimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        media_urls: zoomhost_sim::rtms::MediaUrlMode::AllOnly,
        binary_frames: true,
        ..RtmsSimConfig::default()
    })
    .await
    .unwrap();
    let mut config = client_config(SECRET);
    config.binary_frames = false;
    let (rtms, inputs) = manager(&host, config);
    let stream = sim.add_stream(StreamSpec {
        frames: 150,
        pace: Pace::Fast,
        transcript_every: 30,
        ..StreamSpec::new("mtg-all==", "stream-all")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    assert!(stream.wait_done(Duration::from_secs(30)).await);
    assert!(eventually(Duration::from_secs(20), || closed(&host.logs, "stream-all")).await);
    let sent = sent_audio(&stream);
    assert_eq!(sent.len(), 150);
    assert_same(
        &received_audio(&host.logs, "stream-all"),
        &sent,
        "stream-all",
    );
    assert_eq!(
        host.logs
            .lines("recorder", "rec transcript stream=stream-all ")
            .len(),
        5
    );
    let stats = stream.stats();
    assert_eq!(
        stats.media_handshakes, 1,
        "one socket for every kind: {stats:?}"
    );
    assert_eq!(rtms.stats().failed, 0);
}

// ---- Zoom's failure contract: the four scenarios, through the simulator ----

/// `meeting.rtms_started` for `stream` at `event_ts` with these `server_urls`.
fn started_at(stream: &SimStream, server_urls: &str, event_ts: u64) -> Event {
    let payload = json!({
        "meeting_uuid": stream.meeting_uuid(),
        "rtms_stream_id": stream.stream_id(),
        "server_urls": server_urls,
    });
    Event {
        id: zoomhost_protocol::event_id("meeting.rtms_started", event_ts, &payload),
        name: "meeting.rtms_started".into(),
        timestamp: event_ts,
        payload: payload.to_string(),
        source: EventSource::Webhook,
    }
}

/// Every audio frame the stream produced was written (none dropped), every written one
/// reached the plugin once and in order, and the plugin saw one session, opened once
/// and closed once.
fn assert_exactly_once(host: &TestHost, stream: &SimStream, frames: usize) {
    let id = stream.stream_id();
    let produced = stream.audio_frames();
    assert_eq!(produced.len(), frames, "{id}: frames produced");
    assert!(
        produced.iter().all(|f| f.fate == FrameFate::Sent),
        "{id}: the simulator dropped frames"
    );
    let sent = sent_audio(stream);
    assert_eq!(sent.len(), frames, "{id}: frames written");
    assert_same(&received_audio(&host.logs, id), &sent, id);
    let opens = host
        .logs
        .lines("recorder", &format!("rec open stream={id} "));
    let closes = host
        .logs
        .lines("recorder", &format!("rec close stream={id} "));
    assert_eq!(
        (opens.len(), closes.len()),
        (1, 1),
        "{id}: one plugin session across every recovery"
    );
}

async fn wait_closed(host: &TestHost, stream: &SimStream) {
    assert!(
        stream.wait_done(Duration::from_secs(60)).await,
        "{}: the simulator finished",
        stream.stream_id()
    );
    assert!(
        eventually(Duration::from_secs(30), || closed(
            &host.logs,
            stream.stream_id()
        ))
        .await,
        "{}: the plugin's session closed",
        stream.stream_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_three_failovers_in_a_row() {
    let (host, sim, rtms, inputs) =
        rig("audio,transcript", KEEPALIVE_5S, client_config(SECRET)).await;
    let _forward = forward_notices(&sim, &inputs);
    let stream = sim.add_stream(StreamSpec {
        frames: 600,
        pace: Pace::Fast,
        transcript_every: 40,
        faults: vec![
            (150, Fault::Failover),
            (300, Fault::Failover),
            (450, Fault::Failover),
        ],
        ..StreamSpec::new("mtg-fo==", "stream-fo")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    wait_closed(&host, &stream).await;
    assert_exactly_once(&host, &stream, 600);
    let sim_stats = stream.stats();
    assert_eq!(sim_stats.failovers, 3, "{sim_stats:?}");
    assert_eq!(stream.generation(), 3);
    assert_eq!(sim_stats.signaling_handshakes, 4, "{sim_stats:?}");
    assert_eq!(
        sim_stats.outcome,
        Some(StreamOutcome::Completed { reason: 6 }),
        "{sim_stats:?}"
    );
    let client = rtms.stats();
    assert_eq!(client.failovers, 3, "{client:?}");
    assert_eq!(client.close_fallbacks, 0, "{client:?}");
    assert_eq!((client.opened, client.failed), (1, 0), "{client:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_fail_over_at_once_without_disturbing_each_other() {
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let _forward = forward_notices(&sim, &inputs);
    let streams: Vec<Arc<SimStream>> = (0..20)
        .map(|i| {
            sim.add_stream(StreamSpec {
                frames: 150,
                pace: Pace::RealTime,
                // Held open after its frames, so every stream is live when the servers
                // fail however slowly the others got ready.
                end: End::Hold,
                participants: vec![SimParticipant::new(2000 + i, format!("Speaker {i}"))],
                ..StreamSpec::new(format!("mtg-many-{i}=="), format!("stream-many-{i:02}"))
            })
        })
        .collect();
    for stream in &streams {
        inputs.event(started(&sim, stream, EventSource::Websocket));
    }
    for stream in &streams {
        assert!(stream.wait_ready(Duration::from_secs(20)).await);
    }
    // Every server fails at once.
    for stream in &streams {
        stream.inject(Fault::Failover);
    }
    for stream in &streams {
        assert!(
            eventually(Duration::from_secs(60), || stream.audio_frames().len()
                >= 150)
            .await,
            "{}: every frame produced",
            stream.stream_id()
        );
    }
    futures_util::future::join_all(streams.iter().map(|s| s.stop(6))).await;
    for stream in &streams {
        wait_closed(&host, stream).await;
        assert_exactly_once(&host, stream, 150);
        assert_eq!(stream.stats().failovers, 1);
    }
    let client = rtms.stats();
    assert_eq!(client.failovers, 20, "{client:?}");
    assert_eq!(
        (client.opened, client.failed, client.stopped),
        (20, 0, 20),
        "{client:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_and_media_interruptions_recover_on_zooms_word_alone() {
    let mut config = client_config(SECRET);
    // Far longer than the test may take: recovering at all proves the client acted on
    // Zoom's signals (rtms_interrupted, event 7 / state 2 reason 14), not on the close.
    config.close_grace = Duration::from_secs(600);
    let (host, sim, rtms, inputs) = rig("audio,transcript", KEEPALIVE_5S, config).await;
    let _forward = forward_notices(&sim, &inputs);
    let stream = sim.add_stream(StreamSpec {
        frames: 500,
        pace: Pace::Fast,
        transcript_every: 25,
        faults: vec![(120, Fault::DropMedia), (300, Fault::DropSignaling)],
        ..StreamSpec::new("mtg-int==", "stream-int")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    wait_closed(&host, &stream).await;
    assert_exactly_once(&host, &stream, 500);
    let sim_stats = stream.stats();
    assert_eq!(sim_stats.media_interruptions, 1, "{sim_stats:?}");
    assert_eq!(sim_stats.signaling_interruptions, 1, "{sim_stats:?}");
    // Signaling once more; each media socket re-handshaken once per loss, although Zoom
    // reported the media loss twice (event 7 and stream state 2 with reason 14).
    assert_eq!(sim_stats.signaling_handshakes, 2, "{sim_stats:?}");
    assert_eq!(sim_stats.media_handshakes, 6, "{sim_stats:?}");
    assert!(sim_stats.rejections.is_empty(), "{sim_stats:?}");
    // The ready ack went out again after the media re-handshakes.
    assert!(sim_stats.ready_acks >= 4, "{sim_stats:?}");
    let client = rtms.stats();
    assert_eq!(client.interruptions, 1, "{client:?}");
    assert_eq!(client.media_interruptions, 2, "{client:?}");
    assert_eq!(client.close_fallbacks, 0, "{client:?}");
    assert_eq!((client.opened, client.failed), (1, 0), "{client:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_socket_close_is_recovered_after_the_grace_period() {
    // No webhooks reach the host: the socket close is all it learns.
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let stream = sim.add_stream(StreamSpec {
        frames: 300,
        pace: Pace::Fast,
        faults: vec![(100, Fault::DropSignaling)],
        ..StreamSpec::new("mtg-bare==", "stream-bare")
    });
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    wait_closed(&host, &stream).await;
    assert_exactly_once(&host, &stream, 300);
    let client = rtms.stats();
    assert!(client.close_fallbacks >= 1, "{client:?}");
    assert_eq!(client.interruptions, 0, "{client:?}");
    assert_eq!(stream.stats().signaling_handshakes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_8_on_the_first_handshake_is_retried() {
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let stream = sim.add_stream(StreamSpec {
        frames: 100,
        pace: Pace::Fast,
        ..StreamSpec::new("mtg-dup==", "stream-dup")
    });
    // The first signaling handshake is refused as a duplicate, the second too.
    stream.inject(Fault::Reject(8));
    stream.inject(Fault::Reject(8));
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    wait_closed(&host, &stream).await;
    assert_exactly_once(&host, &stream, 100);
    let sim_stats = stream.stats();
    assert_eq!(sim_stats.rejections, vec![(2, 8), (2, 8)], "{sim_stats:?}");
    assert_eq!(sim_stats.signaling_handshakes, 1, "accepted: {sim_stats:?}");
    let client = rtms.stats();
    assert_eq!(client.status8_retries, 2, "{client:?}");
    assert_eq!((client.opened, client.failed), (1, 0), "{client:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failure_stops_are_reported_as_failed_by_name() {
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let _forward = forward_notices(&sim, &inputs);
    let mut notices = rtms.subscribe();
    // Zoom stops one stream for a data connection that stayed interrupted (14)...
    let terminated = sim.add_stream(StreamSpec {
        frames: 1_000,
        pace: Pace::Fast,
        faults: vec![(50, Fault::Stop(14))],
        ..StreamSpec::new("mtg-f14==", "stream-f14")
    });
    // ...and reports a keep-alive timeout (24) for another one only by webhook.
    let webhook_only = sim.add_stream(StreamSpec {
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        ..StreamSpec::new("mtg-f24==", "stream-f24")
    });
    inputs.event(started(&sim, &terminated, EventSource::Webhook));
    inputs.event(started(&sim, &webhook_only, EventSource::Webhook));
    assert!(webhook_only.wait_ready(Duration::from_secs(20)).await);
    let stop =
        json!({ "meeting_uuid": "mtg-f24==", "rtms_stream_id": "stream-f24", "stop_reason": 24 });
    inputs.event(Event {
        id: zoomhost_protocol::event_id("meeting.rtms_stopped", 1_700_000_000_500, &stop),
        name: "meeting.rtms_stopped".into(),
        timestamp: 1_700_000_000_500,
        payload: stop.to_string(),
        source: EventSource::Webhook,
    });
    let mut failures = std::collections::HashMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while failures.len() < 2 {
            match notices.recv().await {
                Ok(RtmsNotice::Failed { stream_id, error }) => {
                    failures.insert(stream_id, error);
                }
                Ok(RtmsNotice::Closed { stream_id, reason }) => {
                    panic!("{stream_id} closed as if nothing failed: {reason}")
                }
                Ok(_) => {}
                Err(e) => panic!("notices: {e}"),
            }
        }
    })
    .await
    .expect("both streams reported failed");
    let f14 = &failures["stream-f14"];
    assert!(
        f14.contains("stop_reason 14: data connection interrupted"),
        "{f14}"
    );
    let f24 = &failures["stream-f24"];
    assert!(f24.contains("stop_reason 24: keep-alive timeout"), "{f24}");
    let client = rtms.stats();
    assert_eq!(client.failed, 2, "{client:?}");
    assert_eq!(client.failed_stops[14], 1, "{client:?}");
    assert_eq!(client.failed_stops[24], 1, "{client:?}");
    assert_eq!(client.failed_stops_total(), 2);
    for id in ["stream-f14", "stream-f24"] {
        assert!(
            eventually(Duration::from_secs(10), || closed(&host.logs, id)).await,
            "{id}: the plugin's session closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_transports_in_server_urls_are_skipped_and_late_start_retries_ignored() {
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let _forward = forward_notices(&sim, &inputs);
    let stream = sim.add_stream(StreamSpec {
        frames: 400,
        pace: Pace::RealTime,
        ..StreamSpec::new("mtg-urls==", "stream-urls")
    });
    let first_urls = format!("srt://127.0.0.1:9/rtms,{}", sim.signaling_url());
    let first = started_at(&stream, &first_urls, 1_700_000_000_000);
    inputs.event(first.clone());
    assert!(stream.wait_ready(Duration::from_secs(20)).await);
    stream.inject(Fault::Failover);
    assert!(
        eventually(Duration::from_secs(20), || stream
            .stats()
            .signaling_handshakes
            >= 2)
        .await,
        "re-handshaken after the failover"
    );
    // Zoom retries the first webhook later: its event_ts is older and its server dead.
    // (The input path already drops a repeated event id; the RTMS client drops such a
    // start on its own too, which is what is shown here.)
    rtms.on_event(&first);
    wait_closed(&host, &stream).await;
    assert_exactly_once(&host, &stream, 400);
    // And once more after the stream ended: nothing opens again.
    rtms.on_event(&first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = rtms.stats();
    assert_eq!(client.failovers, 1, "{client:?}");
    assert_eq!(client.duplicate_starts, 2, "{client:?}");
    assert_eq!((client.opened, client.failed), (1, 0), "{client:?}");
    assert!(rtms.active().is_empty());
    assert_eq!(stream.stats().signaling_handshakes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_close_request_ends_the_stream_but_shutdown_never_asks_zoom() {
    let (host, sim, rtms, inputs) = rig("audio", KEEPALIVE_5S, audio_only()).await;
    let mut notices = rtms.subscribe();
    let hold = |meeting: &str, id: &str| StreamSpec {
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        ..StreamSpec::new(meeting, id)
    };
    let asked = sim.add_stream(hold("mtg-ask==", "stream-ask"));
    let kept = sim.add_stream(hold("mtg-keep==", "stream-keep"));
    inputs.event(started(&sim, &asked, EventSource::Webhook));
    inputs.event(started(&sim, &kept, EventSource::Webhook));
    assert!(asked.wait_ready(Duration::from_secs(20)).await);
    assert!(kept.wait_ready(Duration::from_secs(20)).await);

    let control: &dyn StreamControl = rtms.as_ref();
    assert_eq!(
        control.close_stream("no-such-stream"),
        Err(ControlError::UnknownStream("no-such-stream".into()))
    );
    assert!(matches!(
        control.subscribe_video("stream-ask", 16_778_240, true),
        Err(ControlError::Unavailable(_))
    ));
    control.close_stream("stream-ask").expect("queued");
    assert!(asked.wait_done(Duration::from_secs(20)).await);
    assert_eq!(
        asked.stats().outcome,
        Some(StreamOutcome::Completed { reason: 20 }),
        "{:?}",
        asked.stats()
    );
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match notices.recv().await {
                Ok(RtmsNotice::Closed { stream_id, reason }) if stream_id == "stream-ask" => {
                    break reason
                }
                Ok(RtmsNotice::Failed { stream_id, error }) if stream_id == "stream-ask" => {
                    panic!("failed: {error}")
                }
                Ok(_) => {}
                Err(e) => panic!("notices: {e}"),
            }
        }
    })
    .await
    .expect("the stream ended");
    assert!(reason.contains("receiver request close"), "{reason}");
    assert!(eventually(Duration::from_secs(10), || closed(&host.logs, "stream-ask")).await);
    assert_eq!(rtms.stats().close_requests, 1);

    // Shutdown closes the other stream's sockets and nothing more: on Zoom's side it
    // stays open for another node to take over.
    rtms.shutdown(Duration::from_secs(10)).await;
    assert!(
        eventually(Duration::from_secs(10), || closed(
            &host.logs,
            "stream-keep"
        ))
        .await
    );
    assert_eq!(rtms.stats().close_requests, 1);
    let outcome = kept.stats().outcome;
    assert!(
        !matches!(outcome, Some(StreamOutcome::Completed { reason: 20 })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_product_streams_with_either_handshake_id() {
    use zoomhost_sim::rtms::Product;
    use zoomhost_zoom::rtms::HandshakeId;
    let host = host("audio").await;
    let sim = rtms_sim(CLIENT_ID, SECRET, KEEPALIVE_5S).await;
    let cases = [
        (Product::ContactCenter, HandshakeId::Product, "contact"),
        (Product::Phone, HandshakeId::Product, "phone"),
        (Product::Webinar, HandshakeId::MeetingUuid, "webinar"),
        (Product::VideoSdk, HandshakeId::Product, "sdk"),
    ];
    let mut running = Vec::new();
    for (i, (product, id_field, kind)) in cases.into_iter().enumerate() {
        let mut config = audio_only();
        config.handshake_id = id_field;
        let (rtms, inputs) = manager(&host, config);
        let _forward = forward_notices(&sim, &inputs);
        let stream = sim.add_stream(StreamSpec {
            product,
            frames: 200,
            pace: Pace::Fast,
            faults: vec![(80, Fault::DropSignaling)],
            ..StreamSpec::new(format!("session-{i}"), format!("stream-product-{i}"))
        });
        let name = product.event_name(zoomhost_protocol::rtms::product::Lifecycle::Started);
        let mut payload = json!({
            "rtms_stream_id": stream.stream_id(),
            "server_urls": sim.signaling_url(),
        });
        payload[product.id_key()] = json!(stream.meeting_uuid());
        inputs.event(Event {
            id: zoomhost_protocol::event_id(&name, 1_700_000_000_000, &payload),
            name,
            timestamp: 1_700_000_000_000,
            payload: payload.to_string(),
            source: EventSource::Webhook,
        });
        running.push((stream, rtms, kind, _forward));
    }
    for (stream, rtms, kind, _) in &running {
        wait_closed(&host, stream).await;
        assert_exactly_once(&host, stream, 200);
        let open = host.logs.lines(
            "recorder",
            &format!("rec open stream={} ", stream.stream_id()),
        );
        assert!(
            field(&open[0], "kind").to_ascii_lowercase().contains(kind),
            "{open:?}"
        );
        let client = rtms.stats();
        assert_eq!(client.interruptions, 1, "{kind}: {client:?}");
        assert_eq!((client.opened, client.failed), (1, 0), "{kind}: {client:?}");
        assert!(stream.stats().rejections.is_empty(), "{:?}", stream.stats());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_notices_are_counted() {
    let host = host("audio").await;
    let (rtms, inputs) = manager(&host, client_config(SECRET));
    for (name, payload) in [
        (
            "rtms.concurrency_near_limit",
            json!({"concurrency_limit": 2000, "concurrency_number": 1700, "percentage": 85}),
        ),
        (
            "rtms.concurrency_limited",
            json!({"operator_id": "op", "concurrency_number": 2000, "id_field": {"meeting_uuid": "m"}}),
        ),
    ] {
        inputs.event(Event {
            id: zoomhost_protocol::event_id(name, 1_700_000_000_000, &payload),
            name: name.into(),
            timestamp: 1_700_000_000_000,
            payload: payload.to_string(),
            source: EventSource::Webhook,
        });
    }
    let stats = rtms.stats();
    assert_eq!(
        (stats.concurrency_near_limit, stats.concurrency_limited),
        (1, 1),
        "{stats:?}"
    );
    assert!(rtms.active().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_plugin_gets_the_video_of_the_participant_it_asked_for_and_only_theirs() {
    const A: u32 = 16_778_240;
    const B: u32 = 16_779_264;
    // The recorder may control streams, and hears the test.* events that make it ask.
    let host = TestHost::start(
        r#"
[limits]
mailbox_capacity = 200000
log_lines_per_second = 10000000
media_deadline_ms = 1000

[plugins.recorder]
stream_control = true

[plugins.recorder.config]
events = "meeting.*,test.*"
media = "video"
"#,
        &[("recorder", "recorder")],
    )
    .await;
    let sim = rtms_sim(CLIENT_ID, SECRET, KEEPALIVE_5S).await;
    let mut config = client_config(SECRET);
    config.media = vec![MediaKind::Video];
    config.individual_video = true;
    let (rtms, inputs) = manager(&host, config);
    host.host.set_stream_control(rtms.clone());
    // Both cameras on; a video item every frame (20 ms), produced in real time.
    let stream = sim.add_stream(StreamSpec {
        participants: vec![
            SimParticipant::new(A, "Ada Lovelace"),
            SimParticipant::new(B, "Grace Hopper"),
        ],
        frames: 100_000,
        pace: Pace::RealTime,
        end: End::Hold,
        extra: ExtraMedia {
            video: 100_000,
            ..ExtraMedia::default()
        },
        ..StreamSpec::new("mtg-ivideo==", "stream-ivideo")
    });
    let _forward = forward_notices(&sim, &inputs);
    inputs.event(started(&sim, &stream, EventSource::Webhook));
    assert!(stream.wait_ready(Duration::from_secs(20)).await);
    // Individual video: data_opt 4 in the video handshake, events 8 and 9 subscribed.
    let subscribed = stream.stats().subscriptions;
    assert!(
        subscribed.contains(&8) && subscribed.contains(&9),
        "{subscribed:?}"
    );
    let ask = |n: u64, user: u32| Event {
        id: format!("ask-video-{n}"),
        name: "test.subscribe_video".into(),
        timestamp: 1_700_000_000_000 + n,
        payload: json!({"stream": "stream-ivideo", "user": user, "on": true}).to_string(),
        source: EventSource::Replay,
    };
    let users = |logs: &Logs| -> Vec<String> {
        received_frames(logs, "video", "stream-ivideo")
            .into_iter()
            .map(|(user, ..)| user)
            .collect()
    };

    // Nothing flows before anyone asks.
    assert!(
        eventually(Duration::from_secs(10), || stream.stats().video_unwatched
            >= 10)
        .await,
        "video items fall due"
    );
    assert_eq!(stream.stats().video_sent, 0);

    inputs.event(ask(1, A));
    assert!(
        eventually(Duration::from_secs(20), || users(&host.logs).len() >= 10).await,
        "A's video reached the plugin"
    );
    inputs.event(ask(2, B));
    let of_b = |logs: &Logs| users(logs).iter().filter(|u| **u == B.to_string()).count();
    assert!(
        eventually(Duration::from_secs(20), || of_b(&host.logs) >= 10).await,
        "B's video reached the plugin"
    );

    // Signaling lost: a subscription belongs to its signaling session, and the client
    // asks for B again on the new one.
    stream.inject(Fault::DropSignaling);
    assert!(
        eventually(Duration::from_secs(20), || stream.stats().ready_acks >= 2).await,
        "the client re-handshaked: {:?}",
        stream.stats()
    );
    let before = of_b(&host.logs);
    assert!(
        eventually(Duration::from_secs(20), || of_b(&host.logs) >= before + 10).await,
        "B's video is back after the re-handshake"
    );

    // The plugin closes the stream: STREAM_CLOSE_REQ on the new signaling socket.
    inputs.event(Event {
        id: "ask-close".into(),
        name: "test.close_stream".into(),
        timestamp: 1_700_000_000_009,
        payload: json!({"stream": "stream-ivideo"}).to_string(),
        source: EventSource::Replay,
    });
    assert!(stream.wait_done(Duration::from_secs(20)).await);
    assert_eq!(
        stream.stats().outcome,
        Some(StreamOutcome::Completed { reason: 20 })
    );
    assert!(
        eventually(Duration::from_secs(20), || closed(
            &host.logs,
            "stream-ivideo"
        ))
        .await,
        "the plugin's session closed"
    );

    // Every frame the simulator wrote, once, in order, byte-exact: A's until the switch,
    // B's from then on, nobody else's.
    let got = received_frames(&host.logs, "video", "stream-ivideo");
    assert_same(
        &got,
        &sent_frames(&stream, zoomhost_sim::rtms::MediaKind::Video),
        "stream-ivideo video",
    );
    let who = users(&host.logs);
    let switch = who
        .iter()
        .position(|u| *u == B.to_string())
        .expect("B's video");
    assert!(switch >= 10, "{who:?}");
    assert!(who[..switch].iter().all(|u| *u == A.to_string()), "{who:?}");
    assert!(who[switch..].iter().all(|u| *u == B.to_string()), "{who:?}");
    assert_eq!(stream.video_frames().len(), got.len());

    // Three requests (A, B, B again after the re-handshake), each accepted; the plugin
    // was told ok every time.
    let answers: Vec<(u32, bool, u32)> = stream
        .stats()
        .video_requests
        .iter()
        .map(|r| (r.user_id, r.subscribe, r.status_code))
        .collect();
    assert_eq!(answers, [(A, true, 0), (B, true, 0), (B, true, 0)]);
    let client = rtms.stats();
    assert_eq!(
        (
            client.video_subscriptions,
            client.close_requests,
            client.opened
        ),
        (3, 1, 1),
        "{client:?}"
    );
    let results: Vec<String> = host
        .logs
        .lines("recorder", "rec control ")
        .iter()
        .map(|l| l.split_once(" result=").unwrap().1.to_string())
        .collect();
    assert_eq!(results, ["ok", "ok", "ok"]);
    assert!(eventually(Duration::from_secs(5), || rtms.active().is_empty()).await);
    let control: &dyn StreamControl = rtms.as_ref();
    assert_eq!(
        control.subscribe_video("stream-ivideo", A, true),
        Err(ControlError::UnknownStream("stream-ivideo".into()))
    );
}
