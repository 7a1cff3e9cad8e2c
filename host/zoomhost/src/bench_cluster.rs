//! `zoomhost bench-cluster`: the cluster's figures on this machine, against a single
//! host doing the same work.
//!
//! Both runs use the simulator's event WebSocket (in this process) and the example
//! plugin `event-logger` (built from `plugins/`, its log limit raised so every event
//! is a plugin call that logs). Events name one of `--meetings` meetings each.
//!
//! - **Single host**: one in-process host; an event's latency is from the simulator's
//!   write to the plugin's log line reaching the host (the plugin's call).
//! - **Cluster**: a local `nats-server`, two ingress nodes and `--workers` workers as
//!   `zoomhost run` processes ([`crate::dev::local_cluster`]). An event's latency is from
//!   the simulator's write to the worker's acknowledgement of it, seen by this process
//!   on JetStream's ack subject (`$JS.ACK.ZOOMHOST_EVENTS.…`); a worker acknowledges
//!   once every plugin call for the event returned, so this covers ingress, JetStream,
//!   the worker and the plugin.
//!
//! Each run has two phases: **latency** (`--latency-events` paced at `--rate` per
//! second, p50/p99/max) and **throughput** (`--events` pushed as fast as the simulator
//! writes them, events/s from the first write to the last delivery), and the cluster's
//! CPU per 1,000 events per role (from `/proc/<pid>/stat`). Then, with a steady 200
//! events/s flowing: **worker failover** (SIGKILL of a worker to the first
//! acknowledgement of one of its partitions by the new owner) and **ingress failover**
//! (SIGKILL of the leader to the standby's WebSocket accepted by the simulator). A
//! **workers alone** phase publishes `--events` straight into the stream, a thousand
//! in flight at a time, and times the workers draining them (their capacity without the
//! single ingress publisher in front). The
//! lease TTL is `--lease-ms` (production default 5000).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::config::{HostConfig, Role};
use crate::dev::local_cluster::{ClusterSettings, LocalCluster};
use zoomhost_sim::LocalZoom;

const PLUGIN: &str = "event-logger";
const EVENT: &str = "meeting.participant_joined";

/// What `zoomhost bench-cluster` was asked for (its command-line options; the field
/// docs are their `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterBenchOptions {
    /// Worker processes (beside two ingress nodes).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Events pushed as fast as the simulator writes them (throughput).
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Events paced at --rate (latency).
    #[arg(long, default_value_t = 2_000)]
    pub latency_events: usize,
    /// Events per second of the latency phase.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Distinct meetings the events name.
    #[arg(long, default_value_t = 200)]
    pub meetings: usize,
    /// Partitions of the cluster.
    #[arg(long, default_value_t = 64)]
    pub partitions: u32,
    /// Lease TTL in milliseconds (production default 5000).
    #[arg(long, default_value_t = 5000)]
    pub lease_ms: u64,
}

/// Figures of one phase.
#[derive(Debug, Default, Clone)]
struct Phase {
    events: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Phase {
    fn of(latencies: &mut [f64], events: usize, seconds: f64) -> Phase {
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if latencies.is_empty() {
                f64::NAN
            } else {
                latencies[((latencies.len() as f64 - 1.0) * q).round() as usize]
            }
        };
        Phase {
            events,
            seconds,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

fn ms_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The payload of bench event `n`.
fn payload(n: usize, meetings: usize) -> serde_json::Value {
    json!({
        "id": format!("bench-{n}"),
        "object": {
            "uuid": format!("bench-meeting-{}==", n % meetings.max(1)),
            "topic": format!("bench-{n}"),
        }
    })
}

/// Pushes events `from..to`, paced at `rate` per second (0: as fast as written);
/// returns each one's write time.
async fn push(
    zoom: &LocalZoom,
    from: usize,
    to: usize,
    rate: u32,
    meetings: usize,
) -> anyhow::Result<BTreeMap<usize, SystemTime>> {
    let mut sent = BTreeMap::new();
    let mut tick = (rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for n in from..to {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let at = SystemTime::now();
        let ts = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        anyhow::ensure!(
            zoom.events
                .push_event_at(EVENT, ts, payload(n, meetings))
                .await,
            "the simulator had no client to write event {n} to"
        );
        sent.insert(n, at);
    }
    Ok(sent)
}

/// Waits until `done` holds, checking every 5 ms, at most `within`.
async fn wait(what: &str, within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while !done() {
        anyhow::ensure!(
            Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Runs the benchmark and prints its figures.
pub async fn run(options: ClusterBenchOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        options.workers >= 1
            && options.events > 0
            && options.latency_events > 0
            && options.rate > 0,
        "--workers, --events, --latency-events and --rate must be positive"
    );
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let ws = crate::wasm_build::find_workspace(&cwd).context(
        "zoomhost bench-cluster runs inside the zoomhost repository (it builds plugins/event-logger)",
    )?;
    tokio::task::spawn_blocking(crate::wasm_build::ensure_wasm_target).await??;
    let built = {
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || {
            crate::wasm_build::build_plugins(&ws, &[PLUGIN], &ws.join("target/wasm"))
        })
        .await??
    };
    let plugin = crate::wasm_build::artifact(&built, PLUGIN);

    eprintln!(
        "single host: {} + {} events ...",
        options.latency_events, options.events
    );
    let (single_latency, single_throughput) = single_host(&options, &plugin).await?;
    eprintln!(
        "cluster: 2 ingress + {} worker processes, {} partitions, lease {} ms ...",
        options.workers, options.partitions, options.lease_ms
    );
    // Ctrl-C or SIGTERM drops the cluster, which kills its processes and nats-server.
    let cluster = tokio::select! {
        figures = cluster(&options, &ws, &plugin) => figures?,
        _ = crate::cli::shutdown_signal() => anyhow::bail!("interrupted: the local cluster was stopped"),
    };

    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9}",
        "run", "events/s", "p50 ms", "p99 ms", "max ms"
    );
    let row = |name: &str, p: &Phase| {
        println!(
            "{:<34} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            name,
            p.rate(),
            p.p50_ms,
            p.p99_ms,
            p.max_ms
        );
    };
    row(
        &format!("single host, {}/s paced", options.rate),
        &single_latency,
    );
    row("single host, flat out", &single_throughput);
    row(
        &format!("cluster, {}/s paced", options.rate),
        &cluster.latency,
    );
    row("cluster, flat out", &cluster.throughput);
    println!(
        "added latency of the cluster at {}/s: p50 {:+.2} ms, p99 {:+.2} ms",
        options.rate,
        cluster.latency.p50_ms - single_latency.p50_ms,
        cluster.latency.p99_ms - single_latency.p99_ms
    );
    println!(
        "cluster, flat out: the ingress leader stored {:.0} events/s in JetStream (one publish in flight per partition)",
        cluster.stored_per_second
    );
    println!(
        "cluster, workers alone ({} workers, {} partitions, events published straight into JetStream): {:.0} events/s",
        options.workers, options.partitions, cluster.drained_per_second
    );
    for (role, ms) in &cluster.cpu_ms_per_1000 {
        println!("cluster CPU per 1,000 events (flat out), {role}: {ms:.0} ms");
    }
    println!(
        "worker failover (SIGKILL -> first delivery of its partitions on the new owner): {:.2} s",
        cluster.worker_failover.as_secs_f64()
    );
    println!(
        "ingress failover (SIGKILL of the leader -> standby's WebSocket accepted): {:.2} s",
        cluster.ingress_failover.as_secs_f64()
    );
    println!(
        "(lease TTL {} ms: a takeover is due within TTL + TTL/3 = {} ms of the last renewal)",
        options.lease_ms,
        options.lease_ms + options.lease_ms / 3
    );
    Ok(ExitCode::SUCCESS)
}

/// The single-host baseline: (latency phase, throughput phase).
async fn single_host(
    options: &ClusterBenchOptions,
    plugin: &std::path::Path,
) -> anyhow::Result<(Phase, Phase)> {
    let zoom = LocalZoom::start().await?;
    let dir = tempfile::tempdir().context("creating a temp plugins folder")?;
    std::fs::copy(plugin, dir.path().join(format!("{PLUGIN}.wasm")))
        .context("copying the plugin")?;
    let mut config = HostConfig::default();
    config.runtime.plugins_dir = dir.path().to_path_buf();
    config.runtime.limits.log_lines_per_second = 1_000_000;
    let mut zoom_config = crate::config::for_local_zoom(&zoom, vec![]);
    zoom_config.rtms = None;
    config.zoom = Some(zoom_config);
    let seen: Arc<Mutex<BTreeMap<usize, SystemTime>>> = Arc::default();
    let sink = {
        let seen = seen.clone();
        Arc::new(move |r: &zoomhost_runtime::PluginLogRecord| {
            if let Some(n) = bench_number(&r.message) {
                let now = SystemTime::now();
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(n)
                    .or_insert(now);
            }
        })
    };
    let host = crate::host::Host::start(
        config,
        crate::host::HostOptions {
            log_sink: Some(sink),
            watch: None,
        },
    )
    .await?;
    anyhow::ensure!(
        zoom.events.wait_connected(Duration::from_secs(20)).await,
        "the single host did not connect to the simulator"
    );
    let count = |seen: &Arc<Mutex<BTreeMap<usize, SystemTime>>>| {
        seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    };
    let l = options.latency_events;
    let started = Instant::now();
    let sent = push(&zoom, 0, l, options.rate, options.meetings).await?;
    wait(
        "the single host's latency phase",
        Duration::from_secs(60),
        || count(&seen) >= l,
    )
    .await?;
    let latency = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut ms: Vec<f64> = sent
            .iter()
            .filter_map(|(n, at)| seen.get(n).map(|t| ms_between(*at, *t)))
            .collect();
        Phase::of(&mut ms, l, started.elapsed().as_secs_f64())
    };
    let started = Instant::now();
    let sent = push(&zoom, l, l + options.events, 0, options.meetings).await?;
    wait(
        "the single host's throughput phase",
        Duration::from_secs(300),
        || count(&seen) >= l + options.events,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let throughput = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut ms: Vec<f64> = sent
            .iter()
            .filter_map(|(n, at)| seen.get(n).map(|t| ms_between(*at, *t)))
            .collect();
        Phase::of(&mut ms, options.events, seconds)
    };
    host.shutdown().await;
    Ok((latency, throughput))
}

/// `n` of a line holding `topic="bench-<n>"`.
fn bench_number(line: &str) -> Option<usize> {
    let rest = line.split("topic=\"bench-").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

struct ClusterFigures {
    latency: Phase,
    throughput: Phase,
    cpu_ms_per_1000: Vec<(String, f64)>,
    stored_per_second: f64,
    drained_per_second: f64,
    worker_failover: Duration,
    ingress_failover: Duration,
}

/// Acknowledgements seen on `$JS.ACK.<stream>.>`: stream sequence → (partition, first
/// time seen).
type Acks = Arc<Mutex<BTreeMap<u64, (u32, SystemTime)>>>;

/// `(partition, stream sequence)` of an ack subject, both the v1 form
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.…` and the v2 form with domain and
/// account hash.
fn parse_ack(subject: &str) -> Option<(u32, u64)> {
    let t: Vec<&str> = subject.split('.').collect();
    let (consumer, sseq) = match t.len() {
        9 => (t[3], t[5]),
        n if n >= 11 => (t[5], t[7]),
        _ => return None,
    };
    let partition = consumer.strip_prefix("worker-p")?.parse().ok()?;
    Some((partition, sseq.parse().ok()?))
}

async fn cluster(
    options: &ClusterBenchOptions,
    ws: &std::path::Path,
    plugin: &std::path::Path,
) -> anyhow::Result<ClusterFigures> {
    use crate::cluster::nats_server::{self, NatsServer};
    let target = ws.join("target");
    let nats = tokio::task::spawn_blocking(move || {
        let binary = nats_server::locate(&target)?;
        NatsServer::start(&binary)
    })
    .await??;
    let zoom = LocalZoom::start().await?;
    let dir = tempfile::tempdir().context("creating the cluster's folder")?;
    let exe = std::env::current_exe().context("locating the zoomhost binary")?;
    let mut settings = ClusterSettings::new(exe, dir.path(), nats.url(), &zoom);
    settings.lease_ttl = Duration::from_millis(options.lease_ms);
    settings.partitions = options.partitions;
    settings.extra_config = "[limits]\nlog_lines_per_second = 1000000\n".into();
    settings.env = vec![("ZOOMHOST_LOG".into(), "warn".into())];
    let mut cluster = LocalCluster::new(settings)?;
    let workers: Vec<String> = (1..=options.workers)
        .map(|i| format!("worker-{i}"))
        .collect();
    for w in &workers {
        cluster.spawn(w, Role::Worker, &[(PLUGIN, plugin)])?;
    }
    for i in ["ingress-a", "ingress-b"] {
        cluster.spawn(i, Role::Ingress, &[])?;
    }
    let client = async_nats::connect(nats.url())
        .await
        .context("connecting to the bench's NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let acks: Acks = Arc::default();
    let mut subscriber = client
        .subscribe(format!("$JS.ACK.{}.>", crate::cluster::EVENT_STREAM))
        .await
        .context("subscribing to the ack subject")?;
    let collector = {
        let acks = acks.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let now = SystemTime::now();
                if !message.payload.starts_with(b"+ACK") {
                    continue;
                }
                if let Some((partition, sseq)) = parse_ack(message.subject.as_str()) {
                    acks.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(sseq)
                        .or_insert((partition, now));
                }
            }
        })
    };
    // Every partition owned and the WebSocket up.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = crate::cluster::status::snapshot(&js).await?;
        let live_workers = s.nodes.iter().filter(|n| n.worker).count();
        if live_workers == options.workers
            && s.unowned().is_empty()
            && !s.ingress.is_empty()
            && zoom.events.is_connected()
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the local cluster did not settle within 60 s:\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every worker has the plugin loaded (each node logs nothing below warn: give the
    // mirror-free folder load a moment, then check the first delivery below).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ack_count = |acks: &Acks| acks.lock().unwrap_or_else(|p| p.into_inner()).len();
    let l = options.latency_events;
    let started = Instant::now();
    let sent_l = push(&zoom, 0, l, options.rate, options.meetings).await?;
    wait(
        "the cluster's latency phase",
        Duration::from_secs(120),
        || ack_count(&acks) >= l,
    )
    .await?;
    let latency_seconds = started.elapsed().as_secs_f64();

    let cpu_before = cluster_cpu(&cluster);
    let started = Instant::now();
    let sent_t = push(&zoom, l, l + options.events, 0, options.meetings).await?;
    wait(
        "the cluster's throughput phase",
        Duration::from_secs(600),
        || ack_count(&acks) >= l + options.events,
    )
    .await?;
    let throughput_seconds = started.elapsed().as_secs_f64();
    let cpu_after = cluster_cpu(&cluster);
    let mut cpu_ms_per_1000 = Vec::new();
    for role in ["ingress", "worker"] {
        let used: f64 = cpu_after
            .iter()
            .filter(|(name, _)| name.starts_with(role))
            .map(|(name, after)| after - cpu_before.get(name).copied().unwrap_or(0.0))
            .sum();
        cpu_ms_per_1000.push((
            format!("{role} nodes (total)"),
            used * 1000.0 / options.events as f64 * 1000.0,
        ));
    }

    // Stream sequence → bench number, from the stored messages.
    let numbers = numbers_by_sequence(&js, l + options.events).await?;
    let latencies = |sent: &BTreeMap<usize, SystemTime>| -> Vec<f64> {
        let acks = acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.iter()
            .filter_map(|(seq, (_, at))| {
                let (n, _) = numbers.get(seq)?;
                sent.get(n).map(|s| ms_between(*s, *at))
            })
            .collect()
    };
    let latency = Phase::of(&mut latencies(&sent_l), l, latency_seconds);
    let throughput = Phase::of(&mut latencies(&sent_t), options.events, throughput_seconds);
    // How fast the ingress stored the throughput phase's events in JetStream.
    let stored: Vec<i128> = numbers
        .values()
        .filter(|(n, _)| sent_t.contains_key(n))
        .map(|(_, t)| *t)
        .collect();
    let stored_per_second = match (stored.iter().min(), stored.iter().max()) {
        (Some(a), Some(b)) if b > a => stored.len() as f64 / ((b - a) as f64 / 1e9),
        _ => f64::NAN,
    };

    // The workers alone: events published straight into the stream (many publishes in
    // flight, as many ingress nodes would), drained by the workers.
    let drain_from = l + options.events;
    let before = ack_count(&acks);
    let started = Instant::now();
    // Acknowledgements are awaited a thousand at a time: the client bounds the publishes
    // awaiting theirs.
    let mut pending = Vec::with_capacity(1000);
    for n in drain_from..drain_from + options.events {
        let event = zoomhost_types::Event {
            id: format!("drain-{n}"),
            name: EVENT.into(),
            timestamp: 0,
            payload: payload(n, options.meetings).to_string(),
            source: zoomhost_types::EventSource::Simulator,
        };
        let subject = crate::cluster::partition::subject(
            crate::cluster::partition::of_event_payload(&event.payload, options.partitions),
        );
        let body = crate::cluster::publish::body(&event, "bench");
        pending.push(
            js.publish(subject, body)
                .await
                .context("publishing to the event stream")?,
        );
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await.context("storing an event")?;
            }
        }
    }
    for ack in pending {
        ack.await.context("storing an event")?;
    }
    wait(
        "the workers draining the stream",
        Duration::from_secs(600),
        || ack_count(&acks) >= before + options.events,
    )
    .await?;
    let drained_per_second = options.events as f64 / started.elapsed().as_secs_f64();

    // Failovers, with a steady 200 events/s flowing.
    let s = crate::cluster::status::snapshot(&js).await?;
    let victim = workers[0].clone();
    let held: BTreeSet<u32> = s
        .node(&victim)
        .map(|n| n.partitions.iter().copied().collect())
        .unwrap_or_default();
    anyhow::ensure!(!held.is_empty(), "{victim} owns no partition:\n{s}");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(
        drain_from + options.events,
    ));
    let steady = {
        let (zoom_events, next, meetings) = (zoom.events.clone(), next.clone(), options.meetings);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tick.tick().await;
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                zoom_events
                    .push_event_at(EVENT, 0, payload(n, meetings))
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    cluster.kill(&victim)?;
    wait(
        "a delivery of the killed worker's partitions",
        Duration::from_secs(60),
        || {
            acks.lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|(p, at)| held.contains(p) && *at > killed_at)
        },
    )
    .await?;
    let worker_failover = killed.elapsed();

    let s = crate::cluster::status::snapshot(&js).await?;
    let leader = s
        .ingress
        .first()
        .map(|l| l.holder.clone())
        .context("no ingress leader")?;
    let connections = zoom.events.connections();
    let killed = Instant::now();
    cluster.kill(&leader)?;
    wait("the standby's WebSocket", Duration::from_secs(60), || {
        zoom.events.connections() > connections && zoom.events.is_connected()
    })
    .await?;
    let ingress_failover = killed.elapsed();
    steady.abort();
    collector.abort();
    let unclean = cluster.stop_all(Duration::from_secs(15));
    if !unclean.is_empty() {
        eprintln!("nodes that did not stop cleanly: {unclean:?}");
    }
    Ok(ClusterFigures {
        latency,
        throughput,
        cpu_ms_per_1000,
        stored_per_second,
        drained_per_second,
        worker_failover,
        ingress_failover,
    })
}

/// CPU seconds (user + system) of each running node, from `/proc/<pid>/stat`.
fn cluster_cpu(cluster: &LocalCluster) -> BTreeMap<String, f64> {
    let ticks = 100.0; // USER_HZ on Linux
    cluster
        .nodes()
        .filter_map(|n| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", n.pid())).ok()?;
            // Fields after the command name (which may hold spaces) start at state.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((n.name.clone(), (utime + stime) / ticks))
        })
        .collect()
}

/// The bench number and store time (Unix nanoseconds) of each stored message, by stream
/// sequence.
async fn numbers_by_sequence(
    js: &async_nats::jetstream::Context,
    expected: usize,
) -> anyhow::Result<BTreeMap<u64, (usize, i128)>> {
    let stream = js
        .get_stream(crate::cluster::EVENT_STREAM)
        .await
        .context("opening the event stream")?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .context("reading the event stream")?;
    let mut out = BTreeMap::new();
    let mut messages = consumer
        .fetch()
        .max_messages(expected + 16)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .context("reading the event stream")?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("reading the event stream: {e}"))?;
        let body: serde_json::Value = serde_json::from_slice(&message.payload)
            .context("an event message that is not JSON")?;
        let n = body["payload"]["id"]
            .as_str()
            .and_then(|id| id.strip_prefix("bench-"))
            .and_then(|n| n.parse().ok());
        if let (Some(n), Ok(info)) = (n, message.info()) {
            out.insert(
                info.stream_sequence,
                (n, info.published.unix_timestamp_nanos()),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_and_log_lines_parse() {
        assert_eq!(
            parse_ack("$JS.ACK.ZOOMHOST_EVENTS.worker-p7.1.42.3.1700000000000000000.0"),
            Some((7, 42))
        );
        assert_eq!(
            parse_ack("$JS.ACK.dom.hash.ZOOMHOST_EVENTS.worker-p2.1.9.3.17.0.tok"),
            Some((2, 9))
        );
        assert_eq!(parse_ack("$JS.ACK.X.other.1.2.3.4.5"), None);
        assert_eq!(
            bench_number(
                r#"meeting.participant_joined from websocket (9 payload bytes, id x) topic="bench-123""#
            ),
            Some(123)
        );
        let mut l = vec![3.0, 1.0, 2.0];
        let p = Phase::of(&mut l, 3, 1.5);
        assert_eq!((p.p50_ms, p.max_ms, p.rate()), (2.0, 3.0, 2.0));
    }
}
