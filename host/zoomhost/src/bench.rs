//! `zoomhost bench`: the RTMS load test.
//!
//! N simulated streams play real-time audio (20 ms L16 frames, 16 kHz mono) from an RTMS
//! simulator in a **child process**, so the figures below are the host's alone. This
//! process runs the host: the RTMS client for every stream and the `latency-probe`
//! plugin (a pass-through audio plugin, a bench asset in `host/bench-probe`, built for
//! wasm32-wasip2).
//!
//! Printed: frames/s delivered to the plugin, host CPU seconds per 1,000 frames (user +
//! system, from `/proc/self/stat`), latency percentiles from the simulator's send time
//! (the frame's wall-clock `timestamp`) to the plugin's receipt (its wall clock), frames
//! dropped anywhere (sent by the simulator but not received by the plugin) and the
//! host's peak RSS (`VmHWM`). Linux only, like its figures' sources.
//!
//! `--instances N` (or `auto`, one per core) runs the probe with that many instances,
//! sharded by meeting as `[plugins.NAME] instances` does (each stream is its own
//! meeting); the default is 1.
//!
//! The simulator produces a stream's media from its registration on, as Zoom does, and
//! keeps what no socket carries yet for replay (`buffer_data`). The bench's host asks for
//! `buffer_data = false`, so the audio made while its streams were still connecting is
//! dropped at the simulator (not counted as sent) instead of replayed in a burst: the
//! latency figures are those of live audio.

use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::config::{HostConfig, Secret};
use zoomhost_runtime::{LogSink, PluginLogRecord};
use zoomhost_types::{MediaKind, SessionKind};
use zoomhost_zoom::rtms::{RtmsConfig, StreamStart};

const SIM_CLIENT_ID: &str = "bench-client-id";
const SIM_CLIENT_SECRET: &str = "bench-client-secret";
const PROBE: &str = "latency-probe";

/// Runs the benchmark and prints its figures. `instances` is the probe's
/// `[plugins.latency-probe] instances` value (`"auto"` or a number).
pub async fn run(streams: usize, seconds: u64, instances: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        streams > 0 && seconds > 0,
        "--streams and --seconds must be positive"
    );
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

    // The simulator, in its own process.
    let frames = u32::try_from(seconds * 50).context("--seconds is too large")?;
    let exe = std::env::current_exe().context("locating the zoomhost binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "bench-sim",
            "--streams",
            &streams.to_string(),
            "--frames",
            &frames.to_string(),
        ])
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

    // The host, with the default limits (one plugin takes every stream: its audio queue
    // of 500 frames absorbs each 20 ms burst of one frame per stream).
    let mut rtms_config =
        RtmsConfig::new(SIM_CLIENT_ID, Secret::new(SIM_CLIENT_SECRET.to_string()));
    rtms_config.media = vec![MediaKind::Audio];
    // Live latency only: no replay of the audio made before each stream connected.
    rtms_config.buffer_data = Some(false);
    let probe_grant = zoomhost_runtime::ResolvedGrant {
        enabled: true,
        instances,
        ..Default::default()
    };
    let config = HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: dir.path().to_path_buf(),
            plugins: [(PROBE.to_string(), probe_grant)].into(),
            ..Default::default()
        },
        zoom: Some(crate::config::ZoomConfig {
            oauth: None,
            websocket: None,
            webhook: None,
            rtms: Some(rtms_config),
            dedupe: Default::default(),
        }),
        admin: None,
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

    println!(
        "bench: {streams} streams x {seconds} s of 20 ms audio ({} frames/s expected) through {PROBE} ({instances} instance{}), buffer_data off (live audio only)",
        streams * 50,
        if instances == 1 { "" } else { "s" }
    );
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for i in 0..streams {
        rtms.start(StreamStart {
            kind: SessionKind::Meeting,
            meeting_uuid: format!("bench-meeting-{i}=="),
            stream_id: format!("bench-{i:05}"),
            server_urls: vec![signaling.clone()],
        });
    }
    let deadline = t0 + Duration::from_secs(seconds + 60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = rtms.stats();
        if (s.stopped + s.failed) as usize >= streams || Instant::now() > deadline {
            break;
        }
    }
    let wall = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
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
    let rate = received as f64 / seconds as f64;
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
    println!("frames/s           {rate:.0} (received / audio seconds)");
    println!(
        "host CPU           {cpu:.2} s = {:.3} s per 1,000 frames ({:.0}% of one core over the run)",
        cpu / (received.max(1) as f64 / 1000.0),
        cpu / wall.as_secs_f64() * 100.0
    );
    println!(
        "latency send->plugin  p50 {} ms  p90 {} ms  p99 {} ms  max {} ms",
        percentile(&hist, 0.50),
        percentile(&hist, 0.90),
        percentile(&hist, 0.99),
        percentile(&hist, 1.0)
    );
    println!(
        "host peak RSS      {:.0} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    println!(
        "simulator CPU      {sim_cpu:.2} s (its own process, on the same {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "rtms               reconnects {} duplicates {} malformed {}",
        s.reconnects, s.duplicates, s.malformed
    );
    Ok(ExitCode::SUCCESS)
}

/// The simulator side of the benchmark (`zoomhost bench-sim`, started by `run`): prints
/// one JSON line with its signaling URL, serves `streams` streams of `frames` frames,
/// then prints how many audio frames it sent.
pub async fn serve_sim(streams: usize, frames: u32) -> anyhow::Result<ExitCode> {
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
            pace: Pace::RealTime,
            participants: vec![SimParticipant::new(1000 + i as u32, format!("Speaker {i}"))],
            record: false,
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

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
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

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Each stream holds two sockets on each side; say so before running out of fds.
fn check_fd_limit(streams: usize) -> anyhow::Result<()> {
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
        assert!(peak_rss_mib().is_some_and(|m| m > 0.0));
    }
}
