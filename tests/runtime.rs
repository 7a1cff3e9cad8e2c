//! End to end: real components built from the repo's plugin crates, in a real host.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use zoomhost_runtime::{reload, LoadOutcome};
use zoomhost_types::{AudioFrame, Participant, TranscriptSegment};

const WAIT: Duration = Duration::from_secs(30);

fn frame_bytes(i: usize) -> Vec<u8> {
    (0..640).map(|j| ((i * 7 + j * 13) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_exactly_the_subscribed_plugins_in_order() {
    let t = TestHost::start(
        r#"
        [plugins.rec-meeting]
        config = { events = "meeting.*", media = "" }
        [plugins.rec-recording]
        config = { events = "recording.completed", media = "" }
        "#,
        &[
            ("rec-all", "recorder"),
            ("rec-meeting", "recorder"),
            ("rec-recording", "recorder"),
        ],
    )
    .await;
    let names = [
        "meeting.started",
        "meeting.participant_joined",
        "recording.completed",
        "user.updated",
        "meeting.ended",
    ];
    let mut expected_all = Vec::new();
    let mut expected_meeting = Vec::new();
    let mut expected_recording = Vec::new();
    for i in 0..300 {
        let name = names[i % names.len()];
        let queued = t.host.router().dispatch_event(event(name, i));
        let id = format!("e-{i}");
        expected_all.push(id.clone());
        if name.starts_with("meeting.") {
            expected_meeting.push(id.clone());
            assert!(queued.iter().any(|p| &**p == "rec-meeting"));
        }
        if name == "recording.completed" {
            expected_recording.push(id.clone());
        }
        assert_eq!(
            queued.len(),
            1 + usize::from(name.starts_with("meeting."))
                + usize::from(name == "recording.completed"),
            "{name} queued for {queued:?}"
        );
    }
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec-all").len() == 300).await,
        "rec-all saw {}",
        event_ids(&t.logs, "rec-all").len()
    );
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec-meeting").len()
            == expected_meeting.len())
        .await
    );
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec-recording").len()
            == expected_recording.len())
        .await
    );
    assert_eq!(event_ids(&t.logs, "rec-all"), expected_all);
    assert_eq!(event_ids(&t.logs, "rec-meeting"), expected_meeting);
    assert_eq!(event_ids(&t.logs, "rec-recording"), expected_recording);
    let stats = t.host.stats("rec-meeting").await.unwrap();
    assert_eq!(stats.events_delivered, expected_meeting.len() as u64);
    assert_eq!(stats.events_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sessions_get_every_frame_in_order_byte_exact() {
    let t = TestHost::start(
        r#"
        [plugins.rec-transcript]
        config = { events = "none.none", media = "transcript" }
        "#,
        &[("rec", "recorder"), ("rec-transcript", "recorder")],
    )
    .await;
    let stream = t.host.router().open_stream(stream_info("stream-1"));
    assert_eq!(stream.plugins().len(), 2);
    stream.participant_join(Participant {
        user_id: 16778240,
        user_name: "Ada".into(),
    });
    let mut sums = Vec::new();
    for i in 0..250 {
        let data = frame_bytes(i);
        sums.push(fnv1a(&data));
        stream.audio(AudioFrame {
            user_id: 16778240,
            user_name: "Ada".into(),
            timestamp: 1_700_000_000_000 + 20 * i as u64,
            data: data.into(),
        });
        if i % 50 == 0 {
            stream.transcript(TranscriptSegment {
                user_id: 16778240,
                user_name: "Ada".into(),
                timestamp: 1_700_000_000_000 + 20 * i as u64,
                end_timestamp: None,
                text: format!("segment {i}, \"quoted\""),
                language: Some("en".into()),
            });
        }
    }
    stream.close();
    assert!(eventually(WAIT, || !t.logs.lines("rec", "rec close").is_empty()).await);
    let audio = t.logs.lines("rec", "rec audio ");
    assert_eq!(audio.len(), 250);
    for (i, line) in audio.iter().enumerate() {
        assert_eq!(field(line, "n"), (i + 1).to_string());
        assert_eq!(field(line, "sum"), sums[i], "frame {i}");
        assert_eq!(field(line, "len"), "640");
        assert_eq!(
            field(line, "ts"),
            (1_700_000_000_000 + 20 * i as u64).to_string()
        );
        assert_eq!(field(line, "stream"), "stream-1");
    }
    assert_eq!(
        t.logs
            .lines(
                "rec",
                "rec open stream=stream-1 meeting=mtg-uuid== rate=16000 ch=1 kind=meeting"
            )
            .len(),
        1
    );
    assert_eq!(
        t.logs
            .lines("rec", "rec join stream=stream-1 user=16778240")
            .len(),
        1
    );
    assert_eq!(
        t.logs
            .lines("rec", "rec close stream=stream-1 audio=250 transcript=5")
            .len(),
        1
    );
    // The transcript-only plugin gets transcripts and no audio.
    assert!(
        eventually(WAIT, || !t
            .logs
            .lines("rec-transcript", "rec close")
            .is_empty())
        .await
    );
    assert!(t.logs.lines("rec-transcript", "rec audio").is_empty());
    let tr = t.logs.lines("rec-transcript", "rec transcript ");
    assert_eq!(tr.len(), 5);
    assert!(
        tr[1].ends_with(r#"text="segment 50, \"quoted\"""#),
        "{}",
        tr[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_are_contained_and_a_good_plugin_gets_everything() {
    let t = TestHost::start(
        r#"
        [limits]
        event_deadline_ms = 300
        media_deadline_ms = 100
        max_failures = 3
        log_lines_per_second = 200
        [plugins.h-loop]
        config = { mode = "loop" }
        [plugins.h-membomb]
        config = { mode = "membomb" }
        [plugins.h-trap]
        config = { mode = "trap-nth", n = "4" }
        [plugins.h-panic-media]
        config = { mode = "panic-media" }
        [plugins.h-http]
        config = { mode = "http-ungranted", url = "http://127.0.0.1:9/x" }
        [plugins.h-flood]
        config = { mode = "log-flood" }
        "#,
        &[
            ("good", "recorder"),
            ("h-loop", "hostile"),
            ("h-membomb", "hostile"),
            ("h-trap", "hostile"),
            ("h-panic-media", "hostile"),
            ("h-http", "hostile"),
            ("h-flood", "hostile"),
        ],
    )
    .await;
    let router = t.host.router().clone();
    let stream = router.open_stream(stream_info("s-hostile"));
    let events = 40;
    let per_event = 3;
    let frames = events * per_event;
    for i in 0..events {
        router.dispatch_event(event("meeting.participant_joined", i));
        for f in 0..per_event {
            let k = i * per_event + f;
            stream.audio(AudioFrame {
                user_id: 1,
                user_name: "A".into(),
                timestamp: k as u64,
                data: frame_bytes(k).into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stream.close();
    // The good plugin receives 100% of its events and frames, in order.
    assert!(
        eventually(Duration::from_secs(60), || event_ids(&t.logs, "good").len()
            == events)
        .await,
        "good saw {} events",
        event_ids(&t.logs, "good").len()
    );
    let expected: Vec<String> = (0..events).map(|i| format!("e-{i}")).collect();
    assert_eq!(event_ids(&t.logs, "good"), expected);
    assert!(eventually(WAIT, || !t.logs.lines("good", "rec close").is_empty()).await);
    assert_eq!(t.logs.lines("good", "rec audio ").len(), frames);
    let good = t.host.stats("good").await.unwrap();
    assert_eq!(
        (good.events_dropped, good.audio_dropped, good.crashes),
        (0, 0, 0)
    );

    // Each hostile one was contained in its own way.
    let stats = |n: &'static str| {
        let host = t.host.clone();
        async move { host.stats(n).await.unwrap() }
    };
    let wait_for =
        |n: &'static str, what: &'static str, f: fn(&zoomhost_runtime::StatsSnapshot) -> bool| {
            let host = t.host.clone();
            async move {
                for _ in 0..3000 {
                    let s = host.stats(n).await.unwrap();
                    if f(&s) {
                        return s;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!(
                    "{n}: expected {what}, stats {:?}",
                    host.stats(n).await.unwrap()
                );
            }
        };
    let s = wait_for("h-loop", "quarantine", |s| s.quarantined).await;
    assert_eq!(s.crashes, 3, "{s:?}");
    let why = s.last_crash.as_deref().unwrap_or_default();
    assert!(why.contains("deadline"), "{s:?}");
    let s = wait_for("h-membomb", "quarantine", |s| s.quarantined).await;
    assert_eq!(s.crashes, 3, "{s:?}");
    // trap-nth traps on its 4th event per instance: 40 events = 10 instances... but after
    // 3 crashes within the window it is quarantined.
    let s = wait_for("h-trap", "quarantine", |s| s.quarantined).await;
    assert_eq!(s.crashes, 3);
    assert!(s.events_delivered >= 12, "{s:?}");
    let s = wait_for("h-panic-media", "quarantine", |s| s.quarantined).await;
    assert!(s.media_failed >= 3, "{s:?}");
    let s = wait_for("h-http", "all events handled", |s| s.events_delivered == 40).await;
    assert_eq!(s.http_denied, 40, "{s:?}");
    assert_eq!(s.crashes, 0);
    let denied = t.logs.containing("h-http", "hostile http denied=true");
    assert_eq!(denied.len(), 40, "{denied:?}");
    let s = stats("h-flood").await;
    assert!(s.logs_suppressed > 0, "{s:?}");
    // The rate limit keeps what reaches the logs small.
    let flood_lines = t.logs.containing("h-flood", "hostile flood").len();
    assert!(
        flood_lines < 200 * 60,
        "{flood_lines} flood lines got through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_is_restarted_with_its_media_sessions_reopened() {
    let t = TestHost::start(
        r#"
        [limits]
        max_failures = 10
        [plugins.h-trap]
        config = { mode = "trap-nth", n = "2" }
        "#,
        &[("h-trap", "hostile")],
    )
    .await;
    let router = t.host.router().clone();
    let stream = router.open_stream(stream_info("s-restart"));
    let send_frames = |from: usize| {
        for k in from..from + 10 {
            stream.audio(AudioFrame {
                user_id: 1,
                user_name: "A".into(),
                timestamp: k as u64,
                data: frame_bytes(k).into(),
            });
        }
    };
    send_frames(0);
    router.dispatch_event(event("meeting.started", 0));
    router.dispatch_event(event("meeting.started", 1)); // traps: 2nd event
    send_frames(10);
    assert!(
        eventually(WAIT, || {
            let s = t.stats_now("h-trap");
            s.crashes == 1 && s.media_delivered >= 21
        })
        .await
    );
    let s = t.host.stats("h-trap").await.unwrap();
    // Open + 20 frames delivered, none dropped for want of a session, none failed.
    assert_eq!(
        (s.media_failed, s.media_dropped, s.quarantined),
        (0, 0, false),
        "{s:?}"
    );
    assert_eq!(s.events_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracked_event_completes_once_every_plugin_call_returned_or_was_dropped() {
    let t = TestHost::start(
        r#"
        [limits]
        event_deadline_ms = 300
        max_failures = 2
        [plugins.h-loop]
        config = { mode = "loop" }
        "#,
        &[("rec", "recorder"), ("h-loop", "hostile")],
    )
    .await;
    let router = t.host.router().clone();
    for i in 0..4u64 {
        let mut done = router.dispatch_event_tracked(event("meeting.started", i as usize));
        let mut queued: Vec<String> = done.queued().iter().map(|p| p.to_string()).collect();
        queued.sort();
        assert_eq!(queued, ["h-loop", "rec"]);
        if i < 2 {
            // The looping call runs until its deadline: not done right after dispatch.
            assert!(
                !done.is_done(),
                "event {i} completed before h-loop's call ended"
            );
        }
        tokio::time::timeout(WAIT, done.wait())
            .await
            .expect("the completion resolves");
        // Every plugin is done with event i: the recorder handled it; h-loop's call timed
        // out (events 0 and 1, then quarantine) or was skipped as quarantined (2 and 3).
        let rec = t.host.stats("rec").await.unwrap();
        assert_eq!(rec.events_delivered, i + 1);
        let h = t.host.stats("h-loop").await.unwrap();
        assert_eq!(h.events_delivered + h.events_dropped, i + 1, "{h:?}");
        assert_eq!(h.events_failed, (i + 1).min(2));
    }
    assert!(t.host.stats("h-loop").await.unwrap().quarantined);
    // An event no plugin subscribes to completes at once.
    let none = TestHost::start("", &[]).await;
    let done = none
        .host
        .router()
        .dispatch_event_tracked(event("meeting.started", 9));
    assert!(done.queued().is_empty());
    tokio::time::timeout(WAIT, done.wait()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_a_steady_stream_loses_and_duplicates_nothing() {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let _watcher = reload::watch(
        t.host.clone(),
        Some((t.config_path(), zoomhost::config::runtime_loader())),
    )
    .unwrap();
    let router = t.host.router().clone();
    let total = 900;
    let sender = tokio::spawn(async move {
        for i in 0..total {
            router.dispatch_event(event("meeting.participant_joined", i));
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let bytes = std::fs::read(wasm("recorder")).unwrap();
    for swap in 1..=3u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        t.deploy("rec", &retagged(&bytes, swap as u8));
        assert!(
            eventually(WAIT, || t.stats_now("rec").swaps == swap).await,
            "swap {swap} did not happen"
        );
    }
    sender.await.unwrap();
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec").len() >= total).await,
        "saw {}",
        event_ids(&t.logs, "rec").len()
    );
    let expected: Vec<String> = (0..total).map(|i| format!("e-{i}")).collect();
    assert_eq!(
        event_ids(&t.logs, "rec"),
        expected,
        "exact sequence across 3 swaps"
    );
    // State was handed over: the running count continues across versions.
    let ns: Vec<u64> = t
        .logs
        .lines("rec", "rec event ")
        .iter()
        .map(|l| field(l, "n").parse().unwrap())
        .collect();
    assert_eq!(ns, (1..=total as u64).collect::<Vec<_>>());
    assert_eq!(t.logs.lines("rec", "rec restore ").len(), 3);
    let s = t.host.stats("rec").await.unwrap();
    assert_eq!((s.swaps, s.events_dropped, s.crashes), (3, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_version_is_rejected_and_the_old_one_keeps_serving() {
    let t = TestHost::start(
        r#"
        [plugins.rec]
        config = { mode = "init-fail" }
        "#,
        &[("rec", "recorder")],
    )
    .await;
    let router = t.host.router().clone();
    router.dispatch_event(event("meeting.started", 0));
    // Not wasm, a wrong world version, and a version whose init fails.
    let garbage = t
        .host
        .load_bytes("rec", b"not wasm at all".to_vec(), "rec.wasm")
        .await;
    assert!(garbage
        .unwrap_err()
        .to_string()
        .contains("not a WebAssembly file"));
    let future = std::fs::read(wasm("future-world")).unwrap();
    let err = t
        .host
        .load_bytes("rec", future, "rec.wasm")
        .await
        .unwrap_err()
        .to_string();
    // 0.3.0 is refused, naming it and both served versions.
    assert!(
        err.contains("built for zoomhost:plugin@0.3.0")
            && err.contains("serves zoomhost:plugin@0.2.0 and zoomhost:plugin@0.1.0"),
        "{err}"
    );
    let hostile = std::fs::read(wasm("hostile")).unwrap();
    let err = t
        .host
        .load_bytes("rec", hostile, "rec.wasm")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("init refused by config"), "{err}");
    router.dispatch_event(event("meeting.started", 1));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 2).await);
    assert_eq!(event_ids(&t.logs, "rec"), vec!["e-0", "e-1"]);
    let s = t.host.stats("rec").await.unwrap();
    assert_eq!((s.rejected_versions, s.swaps), (3, 0));
    // The last reason is kept for views (`zoomhost dev` quotes it).
    let why = s.last_rejection.as_deref().unwrap_or_default();
    assert!(why.contains("init refused by config"), "{s:?}");
    // A good version still swaps in afterwards.
    let good = std::fs::read(wasm("recorder")).unwrap();
    assert!(matches!(
        t.host
            .load_bytes("rec", good.clone(), "rec.wasm")
            .await
            .unwrap(),
        LoadOutcome::Unchanged
    ));
    let good = retagged(&good, 1);
    assert!(matches!(
        t.host.load_bytes("rec", good, "rec.wasm").await.unwrap(),
        LoadOutcome::Swapped(..)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_dropped_in_are_loaded_and_removed_ones_unloaded() {
    let t = TestHost::start("", &[]).await;
    let _watcher = reload::watch(t.host.clone(), None).unwrap();
    std::fs::copy(wasm("recorder"), t.plugins_dir().join("late.wasm")).unwrap();
    let host = t.host.clone();
    let names = move || {
        let host = host.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                host.plugins()
                    .await
                    .into_iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
            })
        })
    };
    assert!(eventually(WAIT, || names() == vec!["late".to_string()]).await);
    t.host.router().dispatch_event(event("meeting.started", 7));
    assert!(eventually(WAIT, || event_ids(&t.logs, "late") == vec!["e-7"]).await);
    std::fs::remove_file(t.plugins_dir().join("late.wasm")).unwrap();
    assert!(eventually(WAIT, || names().is_empty()).await);
    assert!(t
        .host
        .router()
        .dispatch_event(event("meeting.started", 8))
        .is_empty());
}

/// A loopback HTTP server recording `(path, body)` of every request.
async fn recording_server() -> (u16, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let h = h.clone();
        async move {
            h.lock().unwrap().push((uri.path().to_string(), body));
            "ok"
        }
    });
    (serve_on_loopback(app).await, hits)
}

/// Serves `app` on 127.0.0.1 at a free port; returns the port.
async fn serve_on_loopback(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_reaches_granted_hosts_only_and_grants_reload() {
    let (port, hits) = recording_server().await;
    let config = |grant_denied: bool| {
        format!(
            r#"
            [plugins.granted]
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "http-ungranted", url = "http://127.0.0.1:{port}/granted" }}
            [plugins.denied]
            allow_http = [{}]
            config = {{ mode = "http-ungranted", url = "http://127.0.0.1:{port}/denied" }}
            "#,
            if grant_denied {
                format!("\"http://127.0.0.1:{port}\"")
            } else {
                String::new()
            }
        )
    };
    let t = TestHost::start(
        &config(false),
        &[("granted", "hostile"), ("denied", "hostile")],
    )
    .await;
    for i in 0..3 {
        t.host.router().dispatch_event(event("meeting.started", i));
    }
    assert!(
        eventually(WAIT, || t
            .logs
            .containing("granted", "hostile http status=200")
            .len()
            == 3)
        .await
    );
    assert!(
        eventually(WAIT, || t
            .logs
            .containing("denied", "hostile http denied=true")
            .len()
            == 3)
        .await
    );
    {
        let hits = hits.lock().unwrap();
        assert_eq!(hits.len(), 3, "{hits:?}");
        for (i, (path, body)) in hits.iter().enumerate() {
            assert_eq!(path, "/granted");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["hostile"], (i + 1) as u64);
        }
    }
    assert_eq!(t.host.stats("denied").await.unwrap().http_denied, 3);
    assert_eq!(t.host.stats("granted").await.unwrap().http_denied, 0);

    // The operator grants the host in the config file; the running plugin gets it.
    let _watcher = reload::watch(
        t.host.clone(),
        Some((t.config_path(), zoomhost::config::runtime_loader())),
    )
    .unwrap();
    std::fs::write(t.config_path(), config(true)).unwrap();
    let mut i = 10;
    let reached = eventually(WAIT, || {
        i += 1;
        t.host.router().dispatch_event(event("meeting.started", i));
        std::thread::sleep(Duration::from_millis(50));
        hits.lock().unwrap().iter().any(|(p, _)| p == "/denied")
    })
    .await;
    assert!(reached, "grant from the reloaded config never took effect");
}

fn zoomhost_cmd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_zoomhost"))
}

#[test]
fn check_prints_metadata_and_names_what_is_wrong() {
    let out = zoomhost_cmd()
        .arg("check")
        .arg(wasm("event-logger"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("name:         event-logger"), "{stdout}");
    assert!(stdout.contains("events:       *"), "{stdout}");
    assert!(
        stdout.contains("ok, a zoomhost plugin for zoomhost:plugin@0.2.0"),
        "{stdout}"
    );
    // A component built for the released 0.1.0 world passes, and says so.
    let out = zoomhost_cmd()
        .arg("check")
        .arg(wasm("recorder-v0-1"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok, a zoomhost plugin for zoomhost:plugin@0.1.0"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, &[&str]); 3] = [
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            &["core WebAssembly module", "wasm32-wasip2"],
        ),
        ("junk.wasm", b"hello".to_vec(), &["not a WebAssembly file"]),
        (
            "future.wasm",
            std::fs::read(wasm("future-world")).unwrap(),
            &[
                "zoomhost:plugin@0.3.0",
                "zoomhost:plugin@0.2.0",
                "zoomhost:plugin@0.1.0",
            ],
        ),
    ];
    for (name, bytes, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = zoomhost_cmd().arg("check").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} passed the check");
        for n in needles {
            assert!(stderr.contains(n), "{name}: {n:?} not in {stderr}");
        }
        assert!(
            stderr.contains(name),
            "{name}: error does not name the file: {stderr}"
        );
    }
}

#[test]
fn replay_summarises_per_plugin_and_names_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm("recorder"), plugins.join("rec.wasm")).unwrap();
    std::fs::copy(wasm("event-logger"), plugins.join("event-logger.wasm")).unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"event\":\"meeting.started\",\"event_ts\":1,\"payload\":{\"id\":\"a\"}}\n",
            "{\"media\":\"open\",\"stream\":\"s1\",\"meeting\":\"m\"}\n",
            "{\"media\":\"audio\",\"stream\":\"s1\",\"user_id\":1,\"ts\":2,\"data\":\"AAEC\"}\n",
            "{\"event\":\"meeting.ended\",\"payload\":\n",
            "{\"media\":\"close\",\"stream\":\"s1\"}\n",
            "{\"event\":\"meeting.ended\",\"event_ts\":3,\"payload\":{\"id\":\"b\"}}\n",
        ),
    )
    .unwrap();
    let out = zoomhost_cmd()
        .arg("replay")
        .arg(&file)
        .arg("--plugins")
        .arg(&plugins)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("line 4: not JSON"), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("rec "))
        .unwrap_or_else(|| panic!("no summary row for rec in {stdout}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "2", "events delivered: {row}");
    assert_eq!(cols[2], "0", "events failed: {row}");
    assert_eq!(cols[4], "3", "media delivered (open, frame, close): {row}");
    assert!(
        stdout.lines().any(|l| l.starts_with("event-logger ")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_config_values_reinitialise_the_plugin_with_its_state() {
    let t = TestHost::start(
        "[plugins.rec]\nconfig = { events = \"meeting.*\" }\n",
        &[("rec", "recorder")],
    )
    .await;
    let _watcher = reload::watch(
        t.host.clone(),
        Some((t.config_path(), zoomhost::config::runtime_loader())),
    )
    .unwrap();
    let router = t.host.router().clone();
    router.dispatch_event(event("meeting.started", 0));
    router.dispatch_event(event("recording.completed", 1));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec") == vec!["e-0"]).await);

    std::fs::write(
        t.config_path(),
        "[plugins.rec]\nconfig = { events = \"recording.*\" }\n",
    )
    .unwrap();
    assert!(eventually(WAIT, || t.stats_now("rec").swaps == 1).await);
    router.dispatch_event(event("meeting.started", 2));
    router.dispatch_event(event("recording.completed", 3));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 2).await);
    assert_eq!(event_ids(&t.logs, "rec"), vec!["e-0", "e-3"]);
    // The count continued: the fresh instance got the old one's state.
    let last = t.logs.lines("rec", "rec event ").pop().unwrap();
    assert_eq!(field(&last, "n"), "2");

    // A config that does not parse is rejected and changes nothing.
    std::fs::write(t.config_path(), "[plugins.rec\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    router.dispatch_event(event("recording.completed", 4));
    assert!(eventually(WAIT, || event_ids(&t.logs, "rec").len() == 3).await);
    assert_eq!(t.host.stats("rec").await.unwrap().swaps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_gives_the_plugin_a_timeout_not_a_killed_instance() {
    // A granted server that answers only after 5 s, far past the 600 ms event deadline.
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    });
    let port = serve_on_loopback(app).await;
    let t = TestHost::start(
        &format!(
            r#"
            [limits]
            event_deadline_ms = 600
            [plugins.slow]
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "http-ungranted", url = "http://127.0.0.1:{port}/slow" }}
            "#
        ),
        &[("slow", "hostile")],
    )
    .await;
    for i in 0..2 {
        t.host.router().dispatch_event(event("meeting.started", i));
    }
    assert!(
        eventually(WAIT, || t
            .logs
            .containing("slow", "hostile http denied=false")
            .len()
            == 2)
        .await
    );
    // The plugin logs before its call returns, and the call is counted after: wait for
    // the count too.
    eventually(WAIT, || t.stats_now("slow").events_delivered == 2).await;
    let s = t.host.stats("slow").await.unwrap();
    assert_eq!(
        (s.events_delivered, s.crashes, s.http_denied),
        (2, 0, 0),
        "{s:?}"
    );
}
