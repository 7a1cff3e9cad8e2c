//! End to end: the plugin contract's versions and what 0.2.0 added, with real components
//! in a real host. A component built for the released world 0.1.0 (`recorder-v0-1`,
//! built with wit-bindgen against `wit/v0.1/`) still loads, gets events and media, and
//! hot-swaps to and from a 0.2.0 plugin; a 0.2.0 plugin sees each event's content-derived
//! id, the phone session kind and the chat fields; its stream-control requests reach the
//! host's control only when the operator granted them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use zoomhost_runtime::bindings::WorldVersion;
use zoomhost_runtime::{LoadOutcome, Runtime, RuntimeConfig};
use zoomhost_types::{
    AudioCodec, AudioFormat, AudioFrame, ChatMessage, ControlError, Event, EventSource, MediaKind,
    SessionKind, StreamControl, StreamInfo,
};

const WAIT: Duration = Duration::from_secs(30);

fn phone_call(id: &str) -> StreamInfo {
    StreamInfo {
        stream_id: id.to_string(),
        meeting_id: "call-7431".to_string(),
        kind: SessionKind::Phone,
        media: vec![MediaKind::Audio, MediaKind::Chat],
        audio: AudioFormat {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
        },
    }
}

fn audio(i: u64) -> (AudioFrame, String) {
    let data: Vec<u8> = (0..320).map(|j| ((i * 31 + j) % 251) as u8).collect();
    let sum = fnv1a(&data);
    let frame = AudioFrame {
        user_id: 16778240,
        user_name: "Ada".into(),
        timestamp: 1_700_000_000_000 + 20 * i,
        data: data.into(),
    };
    (frame, sum)
}

#[test]
fn the_world_check_serves_0_2_0_and_0_1_0_and_refuses_0_3_0() {
    let config = RuntimeConfig::default();
    let runtime = Runtime::new(&config).unwrap();
    let compile = |krate: &str| {
        let bytes = std::fs::read(wasm(krate)).unwrap();
        runtime.compile(&bytes, &format!("{krate}.wasm"), &config.limits)
    };
    assert_eq!(
        compile("recorder").unwrap().world_version(),
        WorldVersion::V0_2
    );
    assert_eq!(
        compile("recorder-v0-1").unwrap().world_version(),
        WorldVersion::V0_1
    );
    let err = compile("future-world").unwrap_err().to_string();
    assert!(
        err.contains("future-world.wasm: built for zoomhost:plugin@0.3.0")
            && err.contains("this host serves zoomhost:plugin@0.2.0 and zoomhost:plugin@0.1.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_component_gets_events_and_media_beside_a_0_2_0_plugin() {
    let t = TestHost::start("", &[("old", "recorder-v0-1"), ("rec", "recorder")]).await;
    let router = t.host.router().clone();
    for i in 0..3 {
        router.dispatch_event(event("meeting.started", i));
    }
    let stream = router.open_stream(phone_call("call-stream"));
    assert_eq!(stream.plugins().len(), 2);
    let mut sums = Vec::new();
    for i in 0..20 {
        let (frame, sum) = audio(i);
        sums.push(sum);
        stream.audio(frame);
    }
    stream.chat(ChatMessage {
        user_id: 16778240,
        user_name: "Ada".into(),
        timestamp: 1_700_000_000_500,
        text: "hello there".into(),
        message_id: Some("msg-1".into()),
        details: Some(r#"{"operation":"send"}"#.into()),
    });
    stream.close();
    for plugin in ["old", "rec"] {
        assert!(
            eventually(WAIT, || !t.logs.lines(plugin, "rec close").is_empty()).await,
            "{plugin} did not see the stream close"
        );
        assert!(eventually(WAIT, || event_ids(&t.logs, plugin).len() == 3).await);
        assert_eq!(
            event_ids(&t.logs, plugin),
            ["e-0", "e-1", "e-2"],
            "{plugin}"
        );
        let audio = t.logs.lines(plugin, "rec audio ");
        assert_eq!(audio.len(), 20, "{plugin}");
        for (i, line) in audio.iter().enumerate() {
            assert_eq!(field(line, "sum"), sums[i], "{plugin} frame {i}");
        }
        assert_eq!(
            t.logs
                .lines(plugin, "rec close stream=call-stream audio=20")
                .len(),
            1,
            "{plugin}"
        );
    }
    // 0.1.0 has no phone kind: the documented fallback is contact-center.
    let open = t.logs.lines("old", "rec open ");
    assert_eq!(field(&open[0], "kind"), "contact-center", "{open:?}");
    let open = t.logs.lines("rec", "rec open ");
    assert_eq!(field(&open[0], "kind"), "phone", "{open:?}");
    assert_eq!(field(&open[0], "meeting"), "call-7431");
    // The chat message reaches both; only 0.2.0 has its message id and details.
    let chat = t.logs.lines("old", "rec chat ");
    assert_eq!(field(&chat[0], "len"), "11", "{chat:?}");
    let chat = t.logs.lines("rec", "rec chat ");
    assert_eq!(field(&chat[0], "mid"), "msg-1", "{chat:?}");
    assert!(
        chat[0].ends_with(r#"details="{\"operation\":\"send\"}" text="hello there""#),
        "{chat:?}"
    );
    let s = t.host.stats("old").await.unwrap();
    assert_eq!(
        (s.events_delivered, s.events_failed, s.media_failed),
        (3, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_a_0_1_0_plugin_for_a_0_2_0_one_and_back() {
    let t = TestHost::start("", &[("rec", "recorder-v0-1")]).await;
    let router = t.host.router().clone();
    let stream = router.open_stream(stream_info("live"));
    for i in 0..5 {
        router.dispatch_event(event("meeting.started", i));
    }
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 5).await);
    let current = std::fs::read(wasm("recorder")).unwrap();
    let LoadOutcome::Swapped(metadata, report) =
        t.host.load_bytes("rec", current, "rec.wasm").await.unwrap()
    else {
        panic!("0.1.0 -> 0.2.0 did not swap");
    };
    assert_eq!(metadata.name, "recorder");
    // The 0.1.0 version's state reached the 0.2.0 one, and the open stream moved over.
    assert_eq!((report.state_bytes, report.sessions_reopened), (Some(8), 1));
    for i in 5..10 {
        router.dispatch_event(event("meeting.started", i));
    }
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 10).await);
    let lines = t.logs.lines("rec", "rec event ");
    let numbers: Vec<&str> = lines.iter().map(|l| field(l, "n")).collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    // Only the 0.2.0 version's lines carry the event id.
    assert!(!lines[4].contains(" eid="), "{}", lines[4]);
    assert_eq!(field(&lines[5], "eid"), "event-5");

    // And back to 0.1.0.
    let old = std::fs::read(wasm("recorder-v0-1")).unwrap();
    assert!(matches!(
        t.host.load_bytes("rec", old, "rec.wasm").await.unwrap(),
        LoadOutcome::Swapped(..)
    ));
    router.dispatch_event(event("meeting.started", 10));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 11).await);
    let last = t.logs.lines("rec", "rec event ").pop().unwrap();
    assert_eq!(field(&last, "n"), "11");
    stream.close();
    let s = t.host.stats("rec").await.unwrap();
    assert_eq!((s.swaps, s.rejected_versions, s.crashes), (2, 0, 0));
}

/// One Zoom event as a source builds it: its id derived from its content.
fn zoom_event(name: &str, ts: u64, payload: &str, source: EventSource) -> Event {
    Event {
        id: zoomhost_protocol::event_id_of_text(name, ts, payload),
        name: name.to_string(),
        timestamp: ts,
        payload: payload.to_string(),
        source,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_the_same_id_for_the_same_event_from_either_source() {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let router = t.host.router().clone();
    let ts = 1_700_000_000_123;
    // The same event from the WebSocket and from a webhook (keys in another order), then
    // a different one.
    router.dispatch_event(zoom_event(
        "meeting.started",
        ts,
        r#"{"id":"e-0","object":{"uuid":"u1","topic":"Standup"}}"#,
        EventSource::Websocket,
    ));
    router.dispatch_event(zoom_event(
        "meeting.started",
        ts,
        r#"{"object":{"topic":"Standup","uuid":"u1"},"id":"e-0"}"#,
        EventSource::Webhook,
    ));
    router.dispatch_event(zoom_event(
        "meeting.started",
        ts,
        r#"{"id":"e-1","object":{"uuid":"u2","topic":"Standup"}}"#,
        EventSource::Webhook,
    ));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 3).await);
    let lines = t.logs.lines("rec", "rec event ");
    let ids: Vec<&str> = lines.iter().map(|l| field(l, "eid")).collect();
    assert_eq!(ids[0], ids[1], "{lines:?}");
    assert_ne!(ids[0], ids[2], "{lines:?}");
    assert_eq!(ids[0].len(), 32, "{lines:?}");
}

/// A [`StreamControl`] that records what it is asked.
#[derive(Default)]
struct RecordingControl(Mutex<Vec<String>>);

impl StreamControl for RecordingControl {
    fn close_stream(&self, stream_id: &str) -> Result<(), ControlError> {
        if stream_id == "gone" {
            return Err(ControlError::UnknownStream(stream_id.into()));
        }
        self.0.lock().unwrap().push(format!("close {stream_id}"));
        Ok(())
    }

    fn subscribe_video(&self, stream_id: &str, user: u32, on: bool) -> Result<(), ControlError> {
        self.0
            .lock()
            .unwrap()
            .push(format!("video {stream_id} {user} {on}"));
        Ok(())
    }
}

fn control_event(name: &str, i: usize, payload: &str) -> Event {
    Event {
        id: format!("control-{i}"),
        name: name.to_string(),
        timestamp: 1_700_000_000_000 + i as u64,
        payload: payload.to_string(),
        source: EventSource::Replay,
    }
}

/// The `result=` of a plugin's `rec control` lines, in order.
fn control_results(t: &TestHost, plugin: &str) -> Vec<String> {
    t.logs
        .lines(plugin, "rec control ")
        .iter()
        .map(|l| l.split_once(" result=").unwrap().1.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_control_reaches_the_host_only_for_granted_plugins() {
    host_logs();
    let t = TestHost::start(
        r#"
        [plugins.granted]
        stream_control = true
        "#,
        &[("granted", "recorder"), ("denied", "recorder")],
    )
    .await;
    let router = t.host.router().clone();
    // No RTMS client yet.
    router.dispatch_event(control_event("test.close_stream", 0, r#"{"stream":"s-1"}"#));
    assert!(eventually(WAIT, || control_results(&t, "granted").len() == 1).await);
    assert!(eventually(WAIT, || control_results(&t, "denied").len() == 1).await);
    assert!(
        control_results(&t, "granted")[0].contains("no RTMS client in this host"),
        "{:?}",
        control_results(&t, "granted")
    );

    let control = Arc::new(RecordingControl::default());
    t.host.set_stream_control(control.clone());
    router.dispatch_event(control_event(
        "test.subscribe_video",
        1,
        r#"{"stream":"s-1","user":16778240,"on":true}"#,
    ));
    router.dispatch_event(control_event("test.close_stream", 2, r#"{"stream":"s-1"}"#));
    router.dispatch_event(control_event(
        "test.close_stream",
        3,
        r#"{"stream":"gone"}"#,
    ));
    for plugin in ["granted", "denied"] {
        assert!(eventually(WAIT, || control_results(&t, plugin).len() == 4).await);
    }
    // Only the granted plugin's requests reached the control, in order.
    assert_eq!(
        *control.0.lock().unwrap(),
        ["video s-1 16778240 true", "close s-1"]
    );
    let granted = control_results(&t, "granted");
    assert_eq!(granted[1..3], ["ok", "ok"], "{granted:?}");
    assert!(
        granted[3].contains("no open RTMS stream gone"),
        "{granted:?}"
    );
    // The other got an error naming the grant for each call, and each was counted.
    for result in control_results(&t, "denied") {
        assert!(
            result.contains("not granted to plugin denied")
                && result.contains("stream_control = true")
                && result.contains("[plugins.denied]"),
            "{result}"
        );
    }
    let denied = t.host.stats("denied").await.unwrap();
    assert_eq!(
        (denied.stream_control_denied, denied.stream_control_requests),
        (4, 0)
    );
    // And logged for the operator, as a denied outbound request is.
    let logged = host_logs().text();
    assert!(
        logged.contains(
            "stream control denied: close-stream \"s-1\" is not granted to plugin denied \
             (grant it with `stream_control = true` in [plugins.denied])"
        ),
        "{logged}"
    );
    let granted = t.host.stats("granted").await.unwrap();
    assert_eq!(
        (
            granted.stream_control_denied,
            granted.stream_control_requests
        ),
        (0, 3)
    );

    // The operator grants it to the other plugin too; it takes effect on its next call.
    std::fs::write(
        t.config_path(),
        "[plugins.granted]\nstream_control = true\n[plugins.denied]\nstream_control = true\n",
    )
    .unwrap();
    let config = zoomhost::config::HostConfig::load(&t.config_path()).unwrap();
    t.host.apply_config(config.runtime).await;
    router.dispatch_event(control_event("test.close_stream", 4, r#"{"stream":"s-2"}"#));
    assert!(eventually(WAIT, || control_results(&t, "denied").len() == 5).await);
    assert_eq!(control_results(&t, "denied")[4], "ok");
    assert!(eventually(WAIT, || control.0.lock().unwrap().len() == 4).await);
    assert_eq!(control.0.lock().unwrap()[2..], ["close s-2", "close s-2"]);
}

/// Through the whole host as `zoomhost run` wires it: the simulated Zoom, the RTMS
/// client given to the plugin runtime as its stream control.
mod through_the_simulator {
    use super::*;
    use zoomhost_sim::events::Scenario;
    use zoomhost_sim::rtms::StreamOutcome;
    use zoomhost_sim::LocalZoom;
    use zoomhost_types::InputSink;

    /// A live stream that holds open after a few frames.
    const SCENARIO: &str = r#"
[[steps]]
kind = "wait_connected"
timeout_ms = 30000

[[steps]]
kind = "event"
event = "meeting.started"

[[steps]]
kind = "rtms_start"
frames = 25
pace = "fast"
end = "hold"

[[steps]]
kind = "rtms_wait"
until = "ready"
timeout_ms = 30000
"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_granted_plugins_close_request_ends_the_live_stream_for_every_plugin() {
        let zoom = LocalZoom::start().await.unwrap();
        let (t, live) = TestHost::start_live(
            r#"
            [plugins.granted]
            stream_control = true
            config = { media = "audio" }
            [plugins.other]
            config = { media = "audio" }
            "#,
            &[("granted", "recorder"), ("other", "recorder")],
            zoomhost::config::for_local_zoom(&zoom, vec![MediaKind::Audio]),
        )
        .await;
        let report = Scenario::parse(SCENARIO)
            .unwrap()
            .run_with(&zoom.events, Some(&zoom.rtms))
            .await
            .expect("the scenario plays");
        let stream = report.rtms_streams[0].clone();
        let id = stream.stream_id().to_string();
        let audio = format!("rec audio stream={id} ");
        for plugin in ["granted", "other"] {
            assert!(
                eventually(WAIT, || t.logs.lines(plugin, &audio).len() == 25).await,
                "{plugin} did not get the stream's audio"
            );
        }

        // Video on a stream that carries none: the RTMS client's refusal reaches the
        // plugin, and nothing is sent.
        live.inputs().event(control_event(
            "test.subscribe_video",
            1,
            &format!(r#"{{"stream":"{id}","user":16778240,"on":true}}"#),
        ));
        assert!(eventually(WAIT, || control_results(&t, "granted").len() == 1).await);
        let refused = control_results(&t, "granted");
        assert!(refused[0].contains("individual video"), "{refused:?}");

        // Each plugin asks to close it: only the granted one's request goes to Zoom.
        live.inputs().event(control_event(
            "test.close_stream",
            0,
            &format!(r#"{{"stream":"{id}"}}"#),
        ));
        assert!(stream.wait_done(WAIT).await, "the stream did not end");
        // Zoom's answer to STREAM_CLOSE_REQ: the stop sequence with reason 20.
        assert_eq!(
            stream.stats().outcome,
            Some(StreamOutcome::Completed { reason: 20 })
        );
        let closed = format!("rec close stream={id} audio=25 ");
        for plugin in ["granted", "other"] {
            assert!(
                eventually(WAIT, || t.logs.lines(plugin, &closed).len() == 1).await,
                "{plugin}'s media session was not closed"
            );
        }
        assert_eq!(control_results(&t, "granted")[1], "ok");
        for denied in control_results(&t, "other") {
            assert!(denied.contains("not granted"), "{denied}");
        }
        let rtms = live.rtms().expect("RTMS is configured").stats();
        assert_eq!(
            (rtms.close_requests, rtms.video_subscriptions),
            (1, 0),
            "{rtms:?}"
        );
        live.shutdown().await;
    }
}
