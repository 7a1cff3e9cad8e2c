//! `zoomhost bench`: the RTMS load test.
//!
//! N simulated streams play real-time audio (20 ms L16 frames, 16 kHz mono) from an RTMS
//! simulator in a **child process**, so the figures below are the host's alone. This
//! process runs the host: the RTMS client for every stream and the `latency-probe`
//! plugin (a pass-through audio plugin, a bench asset in `host/bench-probe`, built for
//! wasm32-wasip2).
//!
//! Printed: frames/s delivered to the plugin, host CPU per frame (user + system, from
//! `getrusage`), the host threads' sleeps (voluntary context switches, each a wake-up
//! to come) and preemptions per frame, latency percentiles from the simulator's send time
//! (the frame's wall-clock `timestamp`) to the plugin's receipt (its wall clock), frames
//! dropped anywhere (sent by the simulator but not received by the plugin) and the
//! host's peak RSS (`VmHWM`). Linux only, like its figures' sources.
//!
//! `--instances N` (or `auto`, one per core) runs the probe with that many instances,
//! sharded by meeting as `[plugins.NAME] instances` does (each stream is its own
//! meeting); the default is `auto`, the setting a media plugin serving many meetings is
//! best run with (with one instance, a plugin on 1,000 streams has one thread for
//! 50,000 calls a second, and a stall of a few milliseconds overflows its audio queue).
//!
//! The probe runs with the default limits, except its audio queue
//! (`audio_queue_frames`): real-time runs give it 100 ms of audio for each stream an
//! instance serves (at least the default, 500 frames), as an operator sizes a plugin that
//! serves that many meetings; unpaced runs make it hold every frame.
//!
//! The simulator produces a stream's media from its registration on, as Zoom does, and
//! keeps what no socket carries yet for replay (`buffer_data`). The bench's host asks for
//! `buffer_data = false`, so the audio made while its streams were still connecting is
//! dropped at the simulator (not counted as sent) instead of replayed in a burst: the
//! latency figures are those of live audio.
//!
//! Real-time streams have their frames spread over each 20 ms (stream `i` at `i mod 20`
//! ms past the simulator's frame grid), as streams Zoom started at different instants
//! have; `--aligned` puts every stream's frame on the same instant instead, one burst of
//! N frames every 20 ms (the worst case for latency).
//!
//! `--streams` takes a list (`1,50,500,1000`): one run per count, each with a fresh host
//! and simulator, then a summary table. `--unpaced` sends every stream's frames as fast
//! as its socket takes them instead of every 20 ms (timestamps are then synthetic, so no
//! latency is printed, and the probe only counts). `--count-only` makes the probe only
//! count frames and bytes on real-time streams too, without its clock read (a host call)
//! per frame: the plugin side of `benches/sdk_cpu.py`'s comparison with Zoom's SDK, whose
//! callback only counts. `--idle SECONDS` first measures the host's CPU with the probe
//! loaded and no stream. CPU figures are from `getrusage` (microseconds), RSS per stream
//! is the growth of the host's peak RSS (`VmHWM`, reset as the streams start) over its
//! RSS before, divided by the streams. Nothing in the host samples while it runs: the
//! bench waits for the streams' end notices.
//!
//! `--io-floor` then measures, for the same streams and pace, what this machine's kernel
//! alone charges per frame ([`crate::bench_floor`]): a bare epoll + recv loop, then an
//! io_uring loop that shares its system calls among many messages, each reading messages
//! of the same size from a sender process. At real-time pace each socket holds one
//! message when read, so no reader can spend less per frame than the lower of the two.

use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::bench_floor::Reader;
use crate::config::{HostConfig, Secret};
use zoomhost_runtime::{LogSink, PluginLogRecord};
use zoomhost_types::{MediaKind, SessionKind};
use zoomhost_zoom::rtms::{RtmsConfig, StreamStart};

const SIM_CLIENT_ID: &str = "bench-client-id";
const SIM_CLIENT_SECRET: &str = "bench-client-secret";
const PROBE: &str = "latency-probe";
/// Real time: the probe's audio queue holds this many frames (20 ms each) per stream an
/// instance serves, at least the default.
const QUEUE_FRAMES_PER_STREAM: usize = 5;

/// What `zoomhost bench` was asked for (its command-line options; the field docs are
/// their `--help`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Concurrent streams: one count, or a list (`1,50,500,1000`) for one run each.
    #[arg(long, default_value = "500", value_parser = parse_streams)]
    pub streams: std::vec::Vec<usize>,
    /// Seconds of audio per stream.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Instances of the probe plugin, sharded by meeting: a number or `auto` (one per
    /// core, as a media plugin serving many meetings is best run).
    #[arg(long, default_value = "auto")]
    pub instances: String,
    /// Send frames as fast as the sockets take them instead of every 20 ms.
    #[arg(long)]
    pub unpaced: bool,
    /// First measure the host's CPU for this many seconds with the probe loaded and no
    /// stream.
    #[arg(long, default_value_t = 0)]
    pub idle: u64,
    /// Real-time streams send their frames at the same instants (one burst of every
    /// stream's frame each 20 ms: the worst case) instead of spread over the 20 ms as
    /// streams started at different times are.
    #[arg(long)]
    pub aligned: bool,
    /// The probe only counts frames and bytes, without reading the clock per frame (a
    /// host call): the plugin side of the comparison with Zoom's SDK, whose callback
    /// only counts. No latency figures.
    #[arg(long)]
    pub count_only: bool,
    /// After each run, measure this machine's I/O floor for the same streams and pace:
    /// one thread reading messages of the same size from a sender process over loopback
    /// TCP with a bare epoll + recv loop, then with io_uring (what the kernel alone
    /// charges per frame).
    #[arg(long)]
    pub io_floor: bool,
}

/// Parses `--streams`: one count or a comma-separated list.
pub fn parse_streams(text: &str) -> Result<Vec<usize>, String> {
    let counts: Result<Vec<usize>, _> =
        text.split(',').map(|p| p.trim().parse::<usize>()).collect();
    match counts {
        Ok(c) if !c.is_empty() && c.iter().all(|n| *n > 0) => Ok(c),
        _ => Err(format!(
            "--streams {text:?}: expected positive counts separated by commas, e.g. 1,50,500"
        )),
    }
}

/// The figures of one run.
struct Figures {
    streams: usize,
    sent: Option<u64>,
    received: u64,
    cpu_us_per_frame: f64,
    core_percent: f64,
    p50: String,
    p99: String,
    rss_kib_per_stream: f64,
    sim_cpu: f64,
    /// The I/O floor's CPU per frame (`--io-floor`), microseconds: epoll, io_uring.
    floor_us: [Option<f64>; 2],
}

/// Runs the benchmark (one run per stream count) and prints its figures.
pub async fn run(options: BenchOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !options.streams.is_empty() && options.seconds > 0,
        "--streams and --seconds must be positive"
    );
    let mut idle = options.idle;
    let mut all = Vec::new();
    for &streams in &options.streams {
        all.push(run_one(streams, &options, idle).await?);
        idle = 0;
    }
    if all.len() > 1 {
        let pace = if options.unpaced {
            "unpaced"
        } else {
            "real-time"
        };
        println!();
        println!(
            "summary ({pace}, {} s of audio per stream)",
            options.seconds
        );
        println!(
            "{:>8} {:>10} {:>10} {:>9} {:>12} {:>8} {:>13} {:>14} {:>9} {:>12} {:>15}",
            "streams",
            "sent",
            "received",
            "dropped",
            "CPU us/frame",
            "% core",
            "p50/p99 ms",
            "RSS KiB/stream",
            "sim CPU s",
            "epoll floor",
            "io_uring floor"
        );
        let floor = |us: Option<f64>| us.map_or("-".into(), |us| format!("{us:.1}"));
        for f in &all {
            let dropped = f.sent.map(|s| s.saturating_sub(f.received));
            println!(
                "{:>8} {:>10} {:>10} {:>9} {:>12.1} {:>8.1} {:>13} {:>14.0} {:>9.2} {:>12} {:>15}",
                f.streams,
                f.sent.map_or("?".into(), |n| n.to_string()),
                f.received,
                dropped.map_or("?".into(), |n| n.to_string()),
                f.cpu_us_per_frame,
                f.core_percent,
                format!("{}/{}", f.p50, f.p99),
                f.rss_kib_per_stream,
                f.sim_cpu,
                floor(f.floor_us[0]),
                floor(f.floor_us[1])
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One run: a fresh simulator process and host, `streams` streams.
async fn run_one(streams: usize, options: &BenchOptions, idle: u64) -> anyhow::Result<Figures> {
    let seconds = options.seconds;
    let instances = options.instances.as_str();
    let setting = match instances.trim().parse::<i64>() {
        Ok(n) => zoomhost_runtime::InstancesSetting::Count(n),
        Err(_) => zoomhost_runtime::InstancesSetting::Word(instances.to_string()),
    };
    let instances = setting
        .resolve()
        .map_err(|e| anyhow::anyhow!("--instances {e}"))?;
    check_fd_limit(streams)?;
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let ws = crate::wasm_build::find_workspace(&cwd)
        .context("zoomhost bench runs inside the zoomhost repository (it builds host/bench-probe, the latency-probe plugin)")?;
    tokio::task::spawn_blocking(crate::wasm_build::ensure_wasm_target).await??;
    let built = {
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || {
            crate::wasm_build::build_plugins(&ws, &[PROBE], &ws.join("target/wasm"))
        })
        .await??
    };
    let dir = tempfile::tempdir().context("creating a temp plugins folder")?;
    std::fs::copy(
        crate::wasm_build::artifact(&built, PROBE),
        dir.path().join(format!("{PROBE}.wasm")),
    )
    .context("copying the probe plugin")?;

    let frames = u32::try_from(seconds * 50).context("--seconds is too large")?;
    // The host, with the default limits except the probe's audio queue (below).
    let mut rtms_config =
        RtmsConfig::new(SIM_CLIENT_ID, Secret::new(SIM_CLIENT_SECRET.to_string()));
    rtms_config.media = vec![MediaKind::Audio];
    // Live latency only: no replay of the audio made before each stream connected.
    rtms_config.buffer_data = Some(false);
    let mut limits = zoomhost_runtime::Limits::default();
    if options.unpaced {
        // Unpaced streams arrive faster than real time: the audio queue holds them all
        // rather than dropping the oldest, so every frame is counted.
        limits.audio_queue_frames = limits
            .audio_queue_frames
            .max(streams.saturating_mul(frames as usize));
    } else {
        // Sized as for a plugin serving this many meetings: 100 ms of audio for each
        // stream an instance serves (the default, 500 frames, is 10 ms per stream at
        // 1,000 streams on two instances, less than a scheduling hiccup).
        limits.audio_queue_frames = limits
            .audio_queue_frames
            .max(streams.div_ceil(instances.max(1)) * QUEUE_FRAMES_PER_STREAM);
    }
    let audio_queue = limits.audio_queue_frames;
    // Unpaced timestamps are synthetic: no latency to measure there either.
    let count_only = options.count_only || options.unpaced;
    let probe_grant = zoomhost_runtime::ResolvedGrant {
        enabled: true,
        instances,
        config: if count_only {
            [("latency".to_string(), "off".to_string())].into()
        } else {
            Default::default()
        },
        limits: limits.clone(),
        ..Default::default()
    };
    let config = HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: dir.path().to_path_buf(),
            plugins: [(PROBE.to_string(), probe_grant)].into(),
            limits,
        },
        zoom: Some(crate::config::ZoomConfig {
            oauth: None,
            websocket: None,
            webhook: None,
            rtms: Some(rtms_config),
            dedupe: Default::default(),
        }),
        admin: None,
        cluster: None,
    };
    let probes: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink: LogSink = {
        let probes = probes.clone();
        Arc::new(move |r: &PluginLogRecord| {
            if r.message.starts_with("probe ") {
                if let Ok(mut p) = probes.lock() {
                    p.push(r.message.clone());
                }
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
    let rtms = host
        .rtms()
        .context("the bench host runs the RTMS client")?
        .clone();

    if idle > 0 {
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let cpu = cpu_seconds() - cpu0;
        println!(
            "idle host CPU      {:.3} % of one core ({:.1} ms over {:.0} s, {PROBE} loaded, no stream)",
            cpu / t0.elapsed().as_secs_f64() * 100.0,
            cpu * 1000.0,
            t0.elapsed().as_secs_f64()
        );
    }
    // The simulator, in its own process, started after the idle measurement (it
    // produces each stream's audio from its start on).
    let exe = std::env::current_exe().context("locating the zoomhost binary")?;
    let mut sim_args = vec![
        "bench-sim".to_string(),
        "--streams".into(),
        streams.to_string(),
        "--frames".into(),
        frames.to_string(),
    ];
    if options.unpaced {
        sim_args.push("--unpaced".into());
    }
    if options.aligned {
        sim_args.push("--aligned".into());
    }
    let mut child = tokio::process::Command::new(&exe)
        .args(&sim_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulator process")?;
    let stdout = child.stdout.take().context("simulator stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout);
    let hello = read_json_line(&mut lines)
        .await
        .context("simulator start-up")?;
    let signaling = hello["signaling_url"]
        .as_str()
        .context("simulator start-up line has no signaling_url")?
        .to_string();

    if options.unpaced {
        println!(
            "bench: {streams} streams x {frames} frames of 20 ms audio, unpaced (as fast as the sockets take them), through {PROBE} ({instances} instance{}), buffer_data off",
            if instances == 1 { "" } else { "s" }
        );
    } else {
        println!(
            "bench: {streams} streams x {seconds} s of 20 ms audio ({} frames/s expected, {}) through {PROBE} ({instances} instance{}, audio queue {} frames each), buffer_data off (live audio only)",
            streams * 50,
            if options.aligned { "all streams' frames at the same instants" } else { "frames spread over each 20 ms" },
            if instances == 1 { "" } else { "s" },
            audio_queue
        );
    }
    // The peak is the kernel's (`VmHWM`), reset here: no sampling thread adds its own
    // wake-ups to the figures.
    let rss0 = rss_kib().unwrap_or(0.0);
    let peak_reset = reset_peak_rss();
    let mut ends = rtms.subscribe();
    let cpu0 = cpu_seconds();
    let switches0 = context_switches();
    let t0 = Instant::now();
    for i in 0..streams {
        rtms.start(StreamStart {
            kind: SessionKind::Meeting,
            meeting_uuid: format!("bench-meeting-{i}=="),
            stream_id: format!("bench-{i:05}"),
            server_urls: vec![signaling.clone()],
        });
    }
    // Woken by the streams' ends only (each bumps the stats before its notice), and every
    // 10 s as a fallback: a periodic wake-up of this thread would cost the host's figures
    // three wake-ups (the timer's worker, this thread, the worker again).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds + 60);
    let done = || {
        let s = rtms.stats();
        (s.stopped + s.failed) as usize >= streams
    };
    while !done() {
        let next = tokio::time::timeout(Duration::from_secs(10), ends.recv());
        match tokio::time::timeout_at(deadline, next).await {
            Err(_) => break,
            Ok(Err(_)) | Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))) => break,
            Ok(Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_)))) => {}
        }
    }
    let rss_max = match (peak_reset, peak_rss_kib()) {
        (true, Some(peak)) => peak,
        _ => rss_kib().unwrap_or(rss0),
    };
    let wall = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let switches = context_switches()
        .zip(switches0)
        .map(|(b, a)| (b.0 - a.0, b.1 - a.1));
    let bye = read_json_line(&mut lines).await.unwrap_or(Value::Null);
    let sent = bye["sent"].as_u64();
    // Read before reaping: a finished child's counters stay readable until then.
    let sim_cpu = child
        .id()
        .map_or(f64::NAN, |pid| cpu_seconds_of(&format!("/proc/{pid}/stat")));
    let _ = child.wait().await;
    let infos = host.shutdown().await.plugins;

    // Figures.
    let lines = probes.lock().map(|p| p.clone()).unwrap_or_default();
    let mut hist = vec![0u64; 1000];
    let mut received = 0u64;
    for line in &lines {
        for kv in line.split(' ') {
            if let Some(n) = kv.strip_prefix("frames=") {
                received += n.parse::<u64>().unwrap_or(0);
            }
            if let Some(h) = kv.strip_prefix("hist=") {
                for pair in h.split(',').filter(|p| !p.is_empty()) {
                    if let Some((ms, n)) = pair.split_once(':') {
                        if let (Ok(ms), Ok(n)) = (ms.parse::<usize>(), n.parse::<u64>()) {
                            hist[ms.min(999)] += n;
                        }
                    }
                }
            }
        }
    }
    let queue_drops: u64 = infos
        .iter()
        .map(|i| i.stats.audio_dropped + i.stats.media_dropped)
        .sum();
    let s = rtms.stats();
    let dropped = sent.map(|sent| sent.saturating_sub(received));
    let rate = if options.unpaced {
        received as f64 / wall.as_secs_f64()
    } else {
        received as f64 / seconds as f64
    };
    let cpu_us_per_frame = cpu / received.max(1) as f64 * 1e6;
    let core_percent = cpu / wall.as_secs_f64() * 100.0;
    let rss_kib_per_stream = (rss_max - rss0).max(0.0) / streams as f64;
    let (p50, p99) = if count_only {
        ("-".to_string(), "-".to_string())
    } else {
        (percentile(&hist, 0.50), percentile(&hist, 0.99))
    };
    println!(
        "streams            {streams} opened {} closed {} failed {}",
        s.opened, s.stopped, s.failed
    );
    println!(
        "wall time          {:.1} s (audio per stream {seconds} s)",
        wall.as_secs_f64()
    );
    println!(
        "frames             sent {} received {received} dropped {} (host queue drops {queue_drops})",
        sent.map_or("?".into(), |n| n.to_string()),
        dropped.map_or("?".into(), |n| n.to_string())
    );
    println!(
        "frames/s           {rate:.0} (received / {})",
        if options.unpaced {
            "wall time"
        } else {
            "audio seconds"
        }
    );
    println!(
        "host CPU           {cpu:.3} s = {cpu_us_per_frame:.1} us per frame ({core_percent:.1}% of one core over the run)"
    );
    if let Some((voluntary, preempted)) = switches {
        // Each voluntary switch is a thread going to sleep (and so a wake-up to come):
        // on a small VM the dearest part of a frame's journey.
        println!(
            "host threads       {:.2} sleeps and {:.2} preemptions per frame ({voluntary} and {preempted})",
            voluntary as f64 / received.max(1) as f64,
            preempted as f64 / received.max(1) as f64,
        );
    }
    if options.unpaced {
        println!("latency send->plugin  - (unpaced: the timestamps are synthetic)");
    } else if count_only {
        println!("latency send->plugin  - (--count-only: the probe does not read the clock)");
    } else {
        println!(
            "latency send->plugin  p50 {p50} ms  p90 {} ms  p99 {p99} ms  max {} ms",
            percentile(&hist, 0.90),
            percentile(&hist, 1.0)
        );
    }
    println!(
        "host RSS           {:.0} MiB before the streams, {:.0} MiB at most = {rss_kib_per_stream:.0} KiB per stream",
        rss0 / 1024.0,
        rss_max / 1024.0
    );
    println!(
        "simulator CPU      {sim_cpu:.2} s (its own process, on the same {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "rtms               reconnects {} duplicates {} malformed {}",
        s.reconnects, s.duplicates, s.malformed
    );
    let floor_us = if options.io_floor {
        let pace = if options.unpaced {
            crate::bench_floor::Pace::Unpaced
        } else if options.aligned {
            crate::bench_floor::Pace::Aligned
        } else {
            crate::bench_floor::Pace::Spread
        };
        let mut floors = [None, None];
        for (reader, slot) in [Reader::Epoll, Reader::IoUring]
            .into_iter()
            .zip(&mut floors)
        {
            let exe = exe.clone();
            let floor = tokio::task::spawn_blocking(move || {
                crate::bench_floor::measure(&exe, streams, frames, pace, reader)
            })
            .await?;
            *slot = print_floor(reader, floor, streams, cpu_us_per_frame);
        }
        floors
    } else {
        [None, None]
    };
    Ok(Figures {
        streams,
        sent,
        received,
        cpu_us_per_frame,
        core_percent,
        p50,
        p99,
        rss_kib_per_stream,
        sim_cpu,
        floor_us,
    })
}

/// Prints one reader's I/O floor (or why it was not measured) and returns its CPU per
/// frame, microseconds.
fn print_floor(
    reader: Reader,
    floor: anyhow::Result<crate::bench_floor::Floor>,
    streams: usize,
    host_us: f64,
) -> Option<f64> {
    let name = format!("I/O floor {}", reader.label());
    let floor = match floor {
        Ok(floor) => floor,
        Err(e) => {
            println!("{name:<19}not measured: {e:#}");
            return None;
        }
    };
    let us = floor.us_per_message();
    let per = |n: u64| n as f64 / floor.messages.max(1) as f64;
    let (how, wait) = (reader.how(), reader.wait_call());
    println!(
        "{name:<19}{:.3} s = {us:.1} us per frame: one thread, {how} reading {} messages of {} bytes on {streams} loopback sockets, same pace, from a sender process ({:.2} recv, {:.2} {wait} and {:.2} sleeps per frame); the host's figure is {:.1}x that",
        floor.cpu,
        floor.messages,
        crate::bench_floor::MESSAGE_BYTES,
        per(floor.reads),
        per(floor.waits),
        per(floor.sleeps),
        host_us / us.max(f64::MIN_POSITIVE)
    );
    Some(us)
}

/// The simulator side of the benchmark (`zoomhost bench-sim`, started by `run`): prints
/// one JSON line with its signaling URL, serves `streams` streams of `frames` frames,
/// then prints how many audio frames it sent.
/// With `unpaced`, frames go as fast as each socket takes them.
pub async fn serve_sim(
    streams: usize,
    frames: u32,
    unpaced: bool,
    aligned: bool,
) -> anyhow::Result<ExitCode> {
    use zoomhost_sim::rtms::{Pace, RtmsSim, RtmsSimConfig, SimParticipant, StreamSpec};
    let sim = RtmsSim::start(RtmsSimConfig {
        client_id: SIM_CLIENT_ID.into(),
        client_secret: SIM_CLIENT_SECRET.into(),
        ..RtmsSimConfig::default()
    })
    .await?;
    let mut handles = Vec::new();
    for i in 0..streams {
        handles.push(sim.add_stream(StreamSpec {
            frames,
            pace: if unpaced { Pace::Fast } else { Pace::RealTime },
            participants: vec![SimParticipant::new(1000 + i as u32, format!("Speaker {i}"))],
            record: false,
            // Spread over the 20 ms frame period, as streams started at different
            // instants are (unless --aligned).
            grid_offset_ms: if aligned { 0 } else { (i % 20) as u32 },
            ..StreamSpec::new(format!("bench-meeting-{i}=="), format!("bench-{i:05}"))
        }));
    }
    println!("{}", json!({ "signaling_url": sim.signaling_url() }));
    let limit = Duration::from_millis(u64::from(frames) * 20) + Duration::from_secs(120);
    for h in &handles {
        h.wait_done(limit).await;
    }
    let sent: u64 = handles.iter().map(|h| h.audio_frames_sent()).sum();
    println!("{}", json!({ "sent": sent }));
    Ok(ExitCode::SUCCESS)
}

async fn read_json_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut R,
) -> anyhow::Result<Value> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    anyhow::ensure!(
        lines.read_line(&mut line).await? > 0,
        "the simulator process ended early"
    );
    serde_json::from_str(line.trim()).with_context(|| format!("simulator said {line:?}"))
}

/// The smallest latency (ms) at or below which `q` of the frames fall.
fn percentile(hist: &[u64], q: f64) -> String {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return "-".into();
    }
    let want = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (ms, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return if ms == hist.len() - 1 {
                format!(">={ms}")
            } else {
                ms.to_string()
            };
        }
    }
    "-".into()
}

/// User + system CPU seconds of this process (microsecond resolution).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return cpu_seconds_of("/proc/self/stat");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// This process's context switches so far, all threads: (voluntary, involuntary).
fn context_switches() -> Option<(u64, u64)> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    Some((usage.ru_nvcsw as u64, usage.ru_nivcsw as u64))
}

/// User + system CPU seconds from a `/proc/PID/stat` file.
fn cpu_seconds_of(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports in clock ticks of 100 Hz (USER_HZ) on every common platform.
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's resident memory now (`VmRSS`), KiB.
fn rss_kib() -> Option<f64> {
    status_kib("VmRSS:")
}

/// This process's peak resident memory since start or the last [`reset_peak_rss`]
/// (`VmHWM`), KiB.
fn peak_rss_kib() -> Option<f64> {
    status_kib("VmHWM:")
}

fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the kernel's peak RSS of this process to its RSS now (`5` to `clear_refs`,
/// Linux 4.0 and later); false where that is refused.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Each stream holds two sockets on each side: raises the soft limit on open files to
/// the hard one when needed (the simulator process inherits it), and says so when even
/// that is too low.
fn check_fd_limit(streams: usize) -> anyhow::Result<()> {
    let need = (streams * 3 + 256) as libc::rlim_t;
    // SAFETY: getrlimit/setrlimit only read and write the struct they are given.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0
        && limit.rlim_cur < need
        && limit.rlim_max >= need
    {
        limit.rlim_cur = need;
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        let need = streams * 3 + 256;
        anyhow::ensure!(
            soft >= need,
            "{streams} streams need about {need} open files but the limit is {soft}; raise it with `ulimit -n {need}`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_a_histogram() {
        let mut h = vec![0u64; 1000];
        h[1] = 50;
        h[2] = 40;
        h[9] = 9;
        h[30] = 1;
        assert_eq!(percentile(&h, 0.5), "1");
        assert_eq!(percentile(&h, 0.9), "2");
        assert_eq!(percentile(&h, 0.99), "9");
        assert_eq!(percentile(&h, 1.0), "30");
        assert_eq!(percentile(&[0; 10], 0.5), "-");
    }

    #[test]
    fn cpu_and_rss_are_readable_here() {
        assert!(cpu_seconds() >= 0.0);
        let (voluntary, _) = context_switches().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(
            context_switches().unwrap().0 > voluntary,
            "a sleep is a voluntary switch"
        );
        assert!(rss_kib().is_some_and(|m| m > 0.0));
        assert!(reset_peak_rss());
        let peak = peak_rss_kib().unwrap();
        let now = rss_kib().unwrap();
        assert!(
            peak >= now * 0.9 && peak > 0.0,
            "peak {peak} KiB, now {now} KiB"
        );
    }

    #[test]
    fn stream_counts_parse_as_a_list() {
        assert_eq!(parse_streams("500"), Ok(vec![500]));
        assert_eq!(parse_streams("1, 50,500"), Ok(vec![1, 50, 500]));
        assert!(parse_streams("0").is_err());
        assert!(parse_streams("1,,2").is_err());
        assert!(parse_streams("many").is_err());
    }
}
