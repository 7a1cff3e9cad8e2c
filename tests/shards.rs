//! Plugins with several instances, sharded by meeting (`[plugins.NAME] instances`): real
//! components in a real host. Every plugin log line carries the number of the instance
//! that wrote it; the recorder's event count (`n=`) is per instance, so a contiguous
//! `1..=k` per number shows that each number is one wasm instance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use zoomhost_runtime::reload;
use zoomhost_runtime::shard::ShardKey;
use zoomhost_types::{AudioFrame, Event, EventSource};

const WAIT: Duration = Duration::from_secs(30);

/// Event `i` of meeting `meeting`: its payload names the meeting where Zoom's meeting
/// events do (`object.uuid`) and carries `id` = `e-<i>` (what the recorder reports).
fn meeting_event(name: &str, meeting: &str, i: usize) -> Event {
    Event {
        id: format!("event-{i}"),
        name: name.to_string(),
        timestamp: 1_700_000_000_000 + i as u64,
        payload: format!(r#"{{"id":"e-{i}","object":{{"uuid":"{meeting}","topic":"T"}}}}"#),
        source: EventSource::Replay,
    }
}

fn meeting(m: usize) -> String {
    format!("mtg-{m}==")
}

/// The instance of `instances` the runtime documents for meeting `m`.
fn home(m: usize, instances: usize) -> u32 {
    ShardKey::of_meeting(&meeting(m)).instance(instances) as u32
}

/// `(instance, payload id number)` of every `rec event` line of `plugin`, in log order.
fn deliveries(t: &TestHost, plugin: &str) -> Vec<(u32, usize)> {
    t.logs
        .records(plugin, "rec event ")
        .iter()
        .map(|(i, l)| (*i, field(l, "id")[2..].parse().unwrap()))
        .collect()
}

/// Checks that each instance's `n=` counts run 1, 2, 3, ... with no gap or repeat.
fn assert_counts_contiguous(t: &TestHost, plugin: &str) {
    let mut per_instance: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (i, line) in t.logs.records(plugin, "rec event ") {
        per_instance
            .entry(i)
            .or_default()
            .push(field(&line, "n").parse().unwrap());
    }
    for (i, ns) in per_instance {
        assert_eq!(
            ns,
            (1..=ns.len() as u64).collect::<Vec<_>>(),
            "instance {i}'s event counts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_streams_of_one_meeting_stay_on_one_instance_in_order() {
    let t = TestHost::start("[plugins.rec]\ninstances = 4\n", &[("rec", "recorder")]).await;
    let router = t.host.router().clone();
    let meetings = 24;
    let total = 480;
    // Streams of a few meetings, opened mid-way; their frames interleave with events.
    let mut streams = Vec::new();
    for i in 0..total {
        let m = i % meetings;
        router.dispatch_event(meeting_event("meeting.participant_joined", &meeting(m), i));
        if i == total / 2 {
            for m in 0..6 {
                let mut info = stream_info(&format!("s-{m}"));
                info.meeting_id = meeting(m);
                streams.push(router.open_stream(info));
            }
        }
        if i > total / 2 {
            for (k, s) in streams.iter().enumerate() {
                if i % 6 == k {
                    s.audio(AudioFrame {
                        user_id: 1,
                        user_name: "A".into(),
                        timestamp: i as u64,
                        data: vec![k as u8; 320].into(),
                    });
                }
            }
        }
    }
    for s in streams {
        s.close();
    }
    // An event that names no meeting goes to instance 0.
    router.dispatch_event(event("app.deauthorized", total));
    assert!(
        eventually(WAIT, || deliveries(&t, "rec").len() == total + 1).await,
        "delivered {}",
        deliveries(&t, "rec").len()
    );
    assert!(eventually(WAIT, || t.logs.lines("rec", "rec close ").len() == 6).await);

    let got = deliveries(&t, "rec");
    let meetingless: Vec<_> = got.iter().filter(|(_, i)| *i == total).collect();
    assert_eq!(meetingless, [&(0, total)], "the meeting-less event");
    let mut by_meeting: BTreeMap<usize, Vec<(u32, usize)>> = BTreeMap::new();
    for &(instance, i) in got.iter().filter(|(_, i)| *i < total) {
        by_meeting
            .entry(i % meetings)
            .or_default()
            .push((instance, i));
    }
    let mut used = BTreeSet::new();
    for (m, seen) in &by_meeting {
        let ids: Vec<usize> = seen.iter().map(|(_, i)| *i).collect();
        let want: Vec<usize> = (0..total).filter(|i| i % meetings == *m).collect();
        assert_eq!(ids, want, "meeting {m}: every event once, in order");
        let on: BTreeSet<u32> = seen.iter().map(|(inst, _)| *inst).collect();
        assert_eq!(
            on,
            BTreeSet::from([home(*m, 4)]),
            "meeting {m} on one instance"
        );
        used.extend(on);
    }
    assert!(used.len() >= 3, "24 meetings spread over {used:?}");
    assert_counts_contiguous(&t, "rec");

    // Each stream's session, and all its frames, ran in its meeting's instance.
    for (inst, line) in t.logs.records("rec", "rec open ") {
        let m: usize = field(&line, "meeting")[4..]
            .trim_end_matches('=')
            .parse()
            .unwrap();
        assert_eq!(inst, home(m, 4), "{line}");
        let stream = field(&line, "stream").to_string();
        for (frame_inst, frame) in t
            .logs
            .records("rec", &format!("rec audio stream={stream} "))
        {
            assert_eq!(frame_inst, inst, "{frame}");
        }
        let closes = t
            .logs
            .records("rec", &format!("rec close stream={stream} "));
        assert_eq!(closes.len(), 1);
        assert_eq!(closes[0].0, inst);
    }

    // Counters: per instance, and summed per plugin.
    let per = t.host.instance_stats("rec").await.unwrap();
    assert_eq!(per.len(), 4);
    let plugin = t.host.stats("rec").await.unwrap();
    let sum: u64 = per.iter().map(|i| i.stats.events_delivered).sum();
    assert_eq!(
        (plugin.events_delivered, sum),
        (total as u64 + 1, total as u64 + 1)
    );
    for (k, i) in per.iter().enumerate() {
        let mine = got.iter().filter(|(inst, _)| *inst as usize == k).count() as u64;
        assert_eq!(i.stats.events_delivered, mine, "instance {k}");
    }
    let info = t.host.plugins().await;
    assert_eq!(info[0].instances.len(), 4);
}

/// A granted server that holds the first request until `release` is notified and answers
/// every later one at once; counts the requests it got.
async fn server_holding_the_first_request(
    release: Arc<tokio::sync::Notify>,
) -> (u16, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        let release = release.clone();
        async move {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                release.notified().await;
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_instance_does_not_stall_the_other_meetings() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (port, requests) = server_holding_the_first_request(release.clone()).await;
    // Each event makes one outbound call; the first one's answer is held.
    let t = TestHost::start(
        &format!(
            r#"
            [plugins.slow]
            instances = 4
            allow_http = ["http://127.0.0.1:{port}"]
            config = {{ mode = "http-ungranted", url = "http://127.0.0.1:{port}/stt" }}
            limits = {{ event_deadline_ms = 60000 }}
            "#
        ),
        &[("slow", "hostile")],
    )
    .await;
    let router = t.host.router().clone();
    router.dispatch_event(meeting_event("meeting.started", &meeting(0), 0));
    assert!(eventually(WAIT, || requests.load(Ordering::SeqCst) == 1).await);
    let blocked = home(0, 4);
    let events = 40;
    for i in 1..=events {
        router.dispatch_event(meeting_event("meeting.started", &meeting(i), i));
    }
    let elsewhere = (1..=events).filter(|m| home(*m, 4) != blocked).count() as u64;
    let behind = events as u64 - elsewhere;
    assert!(
        elsewhere > 0 && behind > 0,
        "the meetings cover the blocked instance and others"
    );
    let host = t.host.clone();
    let delivered = move || {
        let host = host.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                host.instance_stats("slow")
                    .await
                    .unwrap()
                    .iter()
                    .map(|i| i.stats.events_delivered)
                    .collect::<Vec<_>>()
            })
        })
    };
    // Every meeting of the other instances is served while one call is still held.
    assert!(
        eventually(WAIT, || {
            let d = delivered();
            let others: u64 = (0..4)
                .filter(|k| *k != blocked as usize)
                .map(|k| d[k])
                .sum();
            others == elsewhere
        })
        .await,
        "other instances delivered {:?}, expected {elsewhere} outside instance {blocked}",
        delivered()
    );
    let d = delivered();
    assert_eq!(
        d[blocked as usize], 0,
        "the held call is still running: {d:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst) as u64, 1 + elsewhere);
    // Released: the blocked instance's queue drains, in order, nothing lost.
    release.notify_one();
    assert!(
        eventually(WAIT, || delivered()[blocked as usize] == 1 + behind).await,
        "{:?}",
        delivered()
    );
    let s = t.host.stats("slow").await.unwrap();
    assert_eq!(
        (s.events_delivered, s.events_dropped, s.crashes),
        (events as u64 + 1, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_of_three_instances_loses_and_duplicates_nothing() {
    let t = TestHost::start("[plugins.rec]\ninstances = 3\n", &[("rec", "recorder")]).await;
    let _watcher = reload::watch(
        t.host.clone(),
        Some((t.config_path(), zoomhost::config::runtime_loader())),
    )
    .unwrap();
    let router = t.host.router().clone();
    let total = 900;
    let meetings = 30;
    let sender = tokio::spawn(async move {
        for i in 0..total {
            router.dispatch_event(meeting_event(
                "meeting.participant_joined",
                &meeting(i % meetings),
                i,
            ));
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let bytes = std::fs::read(wasm("recorder")).unwrap();
    for swap in 1..=3u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        t.deploy("rec", &retagged(&bytes, swap as u8));
        // Each of the three instances swaps once per version.
        assert!(
            eventually(WAIT, || t.stats_now("rec").swaps == swap * 3).await,
            "swap {swap} did not happen in every instance"
        );
    }
    sender.await.unwrap();
    assert!(
        eventually(WAIT, || deliveries(&t, "rec").len() >= total).await,
        "saw {}",
        deliveries(&t, "rec").len()
    );
    let got = deliveries(&t, "rec");
    assert_eq!(got.len(), total, "no duplicates");
    for m in 0..meetings {
        let ids: Vec<usize> = got
            .iter()
            .filter(|(_, i)| i % meetings == m)
            .map(|(_, i)| *i)
            .collect();
        let want: Vec<usize> = (0..total).filter(|i| i % meetings == m).collect();
        assert_eq!(ids, want, "meeting {m}: exact sequence across 3 swaps");
    }
    // Each instance's state was handed to its successor: its count runs on unbroken.
    assert_counts_contiguous(&t, "rec");
    assert_eq!(t.logs.lines("rec", "rec restore ").len(), 9);
    let s = t.host.stats("rec").await.unwrap();
    assert_eq!((s.swaps, s.events_dropped, s.crashes), (9, 0, 0));
}

#[test]
fn instances_that_do_not_fit_the_pool_are_rejected_naming_the_plugin_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoomhost.toml");
    let many = "[big]\ninstances = 64\n[p1]\ninstances = 63\n[p2]\ninstances = 63\n";
    let load = |text: String| {
        let text = text.replace("[", "[plugins.");
        std::fs::write(&path, text).unwrap();
        zoomhost::config::HostConfig::load(&path)
    };
    let err = format!(
        "{:#}",
        load(format!("{many}[small]\ninstances = 35")).unwrap_err()
    );
    assert!(err.contains("plugins.big.instances = 64"), "{err}");
    assert!(
        err.contains("450 slots") && err.contains("over the 448"),
        "{err}"
    );
    // One instance fewer fits, and the pool is sized for it.
    let config = load(format!("{many}[small]\ninstances = 34")).unwrap();
    assert_eq!(config.runtime.pool_slots(), 2 * 224 + 64);
    let err = format!("{:#}", load("[p]\ninstances = 0\n".into()).unwrap_err());
    assert!(err.contains("plugins.p.instances"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_instances_do_not_fit_the_pool_sized_at_start_is_not_loaded() {
    // Started with no plugins configured: the smallest pool, 128 slots.
    let t = TestHost::start("", &[]).await;
    for stem in ["many", "other"] {
        std::fs::copy(wasm("noop"), t.plugins_dir().join(format!("{stem}.wasm"))).unwrap();
    }
    // The new config asks for 63 + 2 instances: 130 slots. It is valid (a restart would
    // size the pool for it), but this host's pool holds 128.
    std::fs::write(
        t.config_path(),
        "[plugins.many]\ninstances = 63\n[plugins.other]\ninstances = 2\n",
    )
    .unwrap();
    let config = zoomhost::config::HostConfig::load(&t.config_path()).unwrap();
    assert_eq!(t.host.runtime().pool_slots(), 128);
    t.host.apply_config(config.runtime).await;
    let loaded: Vec<String> = t.host.plugins().await.into_iter().map(|p| p.name).collect();
    assert_eq!(loaded, ["many"]);
    assert_eq!(t.host.instance_stats("many").await.unwrap().len(), 63);
    let err = t
        .host
        .load_file(&t.plugins_dir().join("other.wasm"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plugin other: 2 instance(s) need 4 slots")
            && err.contains("reserve 126 of its 128"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_quarantined_alone() {
    // Each instance traps on its own 2nd event; one failure quarantines an instance.
    let t = TestHost::start(
        "[limits]\nmax_failures = 1\n[plugins.h]\ninstances = 2\nconfig = { mode = \"trap-nth\", n = \"2\" }\n",
        &[("h", "hostile")],
    )
    .await;
    // Two meetings, one on each instance.
    let a = (0..).find(|m| home(*m, 2) == 0).unwrap();
    let b = (0..).find(|m| home(*m, 2) == 1).unwrap();
    let router = t.host.router().clone();
    router.dispatch_event(meeting_event("meeting.started", &meeting(a), 0));
    router.dispatch_event(meeting_event("meeting.ended", &meeting(a), 1)); // traps
    let host = t.host.clone();
    let per = move || {
        let host = host.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async move { host.instance_stats("h").await.unwrap() })
        })
    };
    assert!(eventually(WAIT, || per()[0].stats.quarantined).await);
    // Instance 0's meetings are dropped; instance 1 keeps serving its own.
    router.dispatch_event(meeting_event("meeting.started", &meeting(a), 2));
    router.dispatch_event(meeting_event("meeting.started", &meeting(b), 3));
    assert!(
        eventually(WAIT, || per()[1].stats.events_delivered == 1
            && per()[0].stats.events_dropped == 1)
        .await
    );
    let p = per();
    assert_eq!(
        (
            p[0].stats.crashes,
            p[1].stats.crashes,
            p[1].stats.quarantined
        ),
        (1, 0, false),
        "{p:?}"
    );
    assert_eq!(
        t.logs
            .records("h", "hostile event n=1")
            .iter()
            .filter(|(i, _)| *i == 1)
            .count(),
        1
    );
    let s = t.host.stats("h").await.unwrap();
    assert!(s.quarantined, "the plugin reports a quarantined instance");
    assert_eq!((s.crashes, s.events_dropped), (1, 1));
}
