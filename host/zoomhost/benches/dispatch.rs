//! Hot-path benchmarks: an event through router + actor + component into a no-op plugin,
//! one 640-byte audio frame into a media session, and the swap of a compiled version.
//!
//! Event and audio figures are per delivery, measured over batches (the router queues,
//! the actor drains, the clock stops when the plugin has taken the last one). The swap
//! figure is the actor-side swap (snapshot, restore, re-open sessions, switch), after the
//! new version was compiled and initialised off the actor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use zoomhost_runtime::{LoadOutcome, PluginHost, RuntimeConfig};
use zoomhost_types::{
    AudioCodec, AudioFormat, AudioFrame, Event, EventSource, MediaKind, SessionKind, StreamInfo,
};

fn noop_wasm() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let out = zoomhost::wasm_build::build_plugins(&root, &["noop"], &root.join("target/wasm"))
        .expect("building the noop plugin");
    zoomhost::wasm_build::artifact(&out, "noop")
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    host: Arc<PluginHost>,
    bytes: Vec<u8>,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = RuntimeConfig::default();
    config.limits.mailbox_capacity = 1 << 20;
    config.limits.audio_queue_frames = 1 << 20;
    let bytes = std::fs::read(noop_wasm()).unwrap();
    let host = rt.block_on(async {
        let host = PluginHost::new(config, None).unwrap();
        host.load_bytes("noop", bytes.clone(), "noop.wasm")
            .await
            .unwrap();
        host
    });
    Fixture { rt, host, bytes }
}

fn payload_1k() -> String {
    let mut participants = Vec::new();
    let mut i = 0;
    loop {
        let p = format!(
            r#"{{"user_id":"{i:08}","user_name":"Participant {i}","email":"p{i}@example.com"}}"#
        );
        participants.push(p);
        let s = format!(
            r#"{{"account_id":"AbCdEfGhIjKlMnOp","object":{{"id":"85746065432","uuid":"4444AAAiAAAAAiAiAiiAii==","topic":"Weekly sync","participants":[{}]}}}}"#,
            participants.join(",")
        );
        if s.len() >= 1024 {
            return s;
        }
        i += 1;
    }
}

/// Waits until `read()` reaches `target`, polling every 50 µs: a busy spin would take
/// one of the machine's two cores away from the actor being measured.
fn spin_until(target: u64, read: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while read() < target {
        assert!(Instant::now() < deadline, "deliveries stalled");
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn stats(f: &Fixture) -> zoomhost_runtime::StatsSnapshot {
    f.rt.block_on(f.host.stats("noop")).unwrap()
}

fn bench_event(c: &mut Criterion) {
    let f = fixture();
    let payload = payload_1k();
    let event = Event {
        id: "bench-event".into(),
        name: "meeting.participant_joined".into(),
        timestamp: 1_700_000_000_000,
        payload,
        source: EventSource::Websocket,
    };
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("event_1KiB_noop", |b| {
        b.iter_custom(|iters| {
            let before = stats(&f).events_delivered;
            let start = Instant::now();
            for _ in 0..iters {
                f.host.router().dispatch_event(event.clone());
            }
            spin_until(before + iters, || stats(&f).events_delivered);
            start.elapsed()
        })
    });
    group.finish();
}

/// Routing alone: 16 plugins each declaring the most event patterns the default limits
/// allow (256 prefixes), one event matching one of them. The router looks names up in an
/// index, so the cost does not grow with the patterns declared.
fn bench_routing(c: &mut Criterion) {
    use zoomhost_runtime::mailbox::{Mailbox, MailboxLimits};
    use zoomhost_runtime::router::{EventPattern, Route, Router};
    let router = Router::new();
    let patterns = zoomhost_runtime::Limits::default().max_event_patterns as usize;
    for plugin in 0..16 {
        let events = (0..patterns)
            .map(|i| EventPattern::parse(&format!("p{plugin}x{i}.*")).unwrap())
            .collect();
        router.set_route(Route {
            plugin: format!("plugin-{plugin}").into(),
            events,
            media: Vec::new(),
            mailboxes: vec![Arc::new(Mailbox::new(
                MailboxLimits {
                    capacity: 1,
                    event_wait: Duration::ZERO,
                    audio_frames: 1,
                },
                Default::default(),
            ))],
        });
    }
    let event = Event {
        id: "bench-event".into(),
        name: "p7x200.participant_joined".into(),
        timestamp: 1_700_000_000_000,
        payload: "{}".into(),
        source: EventSource::Websocket,
    };
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("route_event_16x256_patterns", |b| {
        b.iter(|| router.dispatch_event(event.clone()))
    });
    group.finish();
}

/// An L16 16 kHz mono audio stream.
fn audio_stream(id: &str) -> StreamInfo {
    StreamInfo {
        stream_id: id.into(),
        meeting_id: "m".into(),
        kind: SessionKind::Meeting,
        media: vec![MediaKind::Audio],
        audio: AudioFormat {
            codec: AudioCodec::L16,
            sample_rate: 16_000,
            channels: 1,
            frame_ms: 20,
        },
    }
}

fn bench_audio(c: &mut Criterion) {
    let f = fixture();
    let stream = f.host.router().open_stream(audio_stream("bench"));
    let frame = AudioFrame {
        user_id: 16778240,
        user_name: "Ada".into(),
        timestamp: 0,
        data: vec![7u8; 640].into(),
    };
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.bench_function("audio_frame_640B_noop", |b| {
        b.iter_custom(|iters| {
            let before = stats(&f).media_delivered;
            let start = Instant::now();
            for _ in 0..iters {
                stream.audio(frame.clone());
            }
            spin_until(before + iters, || stats(&f).media_delivered);
            start.elapsed()
        })
    });
    group.finish();
}

/// Swap time is measured by the actor and reported by the host; each round loads a
/// distinct build (a custom section appended) so it is a real new version.
fn bench_swap() {
    let f = fixture();
    // A live stream, so the swap re-opens a session as it would in production.
    let _stream = f.host.router().open_stream(audio_stream("swap"));
    let mut took = Vec::new();
    let mut total = Vec::new();
    for round in 0..30u8 {
        let mut bytes = f.bytes.clone();
        bytes.extend_from_slice(&[0, 6, 3, b'z', b'h', b'v', round, 1]);
        let start = Instant::now();
        let outcome =
            f.rt.block_on(f.host.load_bytes("noop", bytes, "noop.wasm"))
                .unwrap();
        total.push(start.elapsed());
        match outcome {
            LoadOutcome::Swapped(_, report) => took.push(report.took),
            other => panic!("expected a swap, got {other:?}"),
        }
    }
    took.sort();
    total.sort();
    let pct = |v: &[Duration], p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "swap/compiled_noop      median {:>9.1} µs   p90 {:>9.1} µs   (actor-side: snapshot + restore + re-open 1 session + switch; n={})",
        pct(&took, 50).as_secs_f64() * 1e6,
        pct(&took, 90).as_secs_f64() * 1e6,
        took.len()
    );
    println!(
        "swap/load_total         median {:>9.1} ms   (read + compile + instantiate + init + swap)",
        pct(&total, 50).as_secs_f64() * 1e3
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench_routing, bench_event, bench_audio
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    bench_swap();
}
