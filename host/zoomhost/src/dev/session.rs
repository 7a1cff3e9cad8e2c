//! `zoomhost dev`: the whole pipeline on one machine, no Zoom account.
//!
//! It starts the simulator (OAuth, event WebSocket, RTMS signaling and media), a host
//! pointed at it with the RTMS client, a local sink standing in for Slack and a
//! transcript endpoint, and the workspace's `plugins/*` crates built for wasm32-wasip2.
//! A scenario (default `host/samples/rtms-meeting.toml`) plays over and over, each time
//! a fresh meeting, while the live view shows what flows. Saving a plugin's source
//! rebuilds it and the host hot-swaps it. The event WebSocket's outages and recoveries
//! show as they happen; with `--chaos` the simulator fails the way Zoom does meanwhile
//! ([`super::chaos`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::{DevMonitor, LiveView, SourceWatchConfig, SourceWatcher, ViewOptions};
use crate::config::HostConfig;
use crate::host::{Host, HostOptions};
use zoomhost_sim::events::Scenario;
use zoomhost_sim::LocalZoom;
use zoomhost_types::{Event, MediaKind};
use zoomhost_zoom::rtms::{RtmsManager, RtmsNotice};

/// Options of `zoomhost dev`.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// Scenario to play (default `host/samples/rtms-meeting.toml` in the workspace).
    pub scenario: Option<PathBuf>,
    /// Host config with the plugins' grants and config; default: one generated in
    /// `target/zoomhost-dev/` that points the example plugins at the local sink.
    pub config: Option<PathBuf>,
    /// Play the scenario once, then stop.
    pub once: bool,
    /// Pause between two plays of the scenario.
    pub pause: Option<Duration>,
    /// Chaos mode (`--chaos`): the simulator's faults while the scenario plays.
    pub chaos: Option<super::ChaosOptions>,
    /// A local cluster (`--workers N`): nats-server, an ingress and N workers as
    /// processes ([`super::cluster_session`]) instead of one in-process host.
    pub workers: Option<usize>,
}

/// Runs `zoomhost dev` until Ctrl-C (or the end of one play with `once`).
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    if let Some(workers) = options.workers {
        return super::cluster_session::run(options.clone(), workers).await;
    }
    let ws = dev_workspace().await?;
    let dev_dir = ws.join("target/zoomhost-dev");
    let plugins_dir = dev_dir.join("plugins");
    std::fs::create_dir_all(&plugins_dir)
        .with_context(|| format!("creating {}", plugins_dir.display()))?;
    let (scenario_path, scenario) = load_scenario(&options, &ws)?;

    // The simulated Zoom.
    let zoom = LocalZoom::start().await?;
    let (oauth, event_sim, rtms_sim) = (&zoom.oauth, &zoom.events, &zoom.rtms);
    let monitor = DevMonitor::new();
    let sink = start_sink(monitor.clone()).await?;

    // The host, pointed at it.
    let config_path = match &options.config {
        Some(path) => path.clone(),
        None => {
            let path = dev_dir.join("zoomhost.toml");
            std::fs::write(&path, default_config(&plugins_dir, sink))
                .with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let mut config = HostConfig::load(&config_path)?;
    config.runtime.plugins_dir = plugins_dir.clone();
    let mut zoom_config = crate::config::for_local_zoom(
        &zoom,
        vec![MediaKind::Audio, MediaKind::Transcript, MediaKind::Chat],
    );
    if let Some(chaos) = &options.chaos {
        if let Some(ws) = zoom_config.websocket.as_mut() {
            chaos.tune_client(ws);
        }
        zoom_config.webhook = Some(chaos.webhook_config());
    }
    config.zoom = Some(zoom_config);
    // The admin API on loopback (metrics, readiness, `zoomhost status`), on its usual
    // port unless something else holds it.
    config.admin.get_or_insert_with(|| {
        let usual = crate::config::admin::DEFAULT_BIND;
        let free = std::net::TcpListener::bind(usual).is_ok();
        let bind = if free {
            usual
        } else {
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        };
        crate::config::AdminConfig::on(bind, None)
    });
    // The host, watching the plugins folder and the config file. Plugins built by an
    // earlier session load at once; the build below swaps in what changed.
    let host = Host::start(
        config,
        HostOptions {
            log_sink: None,
            watch: Some(Some(config_path.clone())),
        },
    )
    .await?;
    let rtms = host.rtms().context("dev runs the RTMS client")?.clone();

    let (dev_tx, dev_rx) = tokio::sync::mpsc::unbounded_channel();
    let view = LiveView::new(
        host.plugins().clone(),
        monitor.clone(),
        ViewOptions::detect(),
    )
    .spawn(dev_rx);
    monitor.note(format!(
        "simulated Zoom: OAuth {}, events {}, RTMS {}; sink for plugins http://{sink}",
        oauth.url(),
        event_sim.url(),
        rtms_sim.signaling_url()
    ));
    monitor.note(format!(
        "host config {} (grants and plugin config; edits apply live)",
        config_path.display()
    ));
    if let Some(addr) = host.admin_addr() {
        monitor.note(format!(
            "admin API http://{addr}: /metrics, /readyz, /v1/plugins (`zoomhost status --admin http://{addr}`)"
        ));
    }
    let sources = SourceWatcher::start(SourceWatchConfig::new(&ws, &plugins_dir), dev_tx)?;
    sources.build_all().await?;
    host.plugins().load_dir().await?;

    // Events into the view, RTMS streams into the view.
    let events_seen = monitor.clone();
    host.inputs().tap(Arc::new(move |event: &Event| {
        events_seen.event_received(event.source);
    }));
    let notices = tokio::spawn(forward_notices(rtms.clone(), monitor.clone()));
    let outages = host.event_stream().map(|watch| {
        tokio::spawn(super::chaos::watch_event_stream(
            watch.clone(),
            monitor.clone(),
        ))
    });
    let chaos = options.chaos.as_ref().map(|chaos| {
        super::ChaosSession::start(chaos, event_sim, rtms_sim, host.webhook_url(), &monitor)
    });

    // With `once`, 2 s for the last deliveries to land before stopping.
    let play = Play {
        scenario: &scenario,
        path: &scenario_path,
        zoom: &zoom,
        options: &options,
        settle: Duration::from_secs(2),
    };
    play.until_stopped(|text| monitor.note(text)).await;

    if let Some(chaos) = chaos {
        let (event_faults, rtms_injections) = (chaos.event_faults(), chaos.rtms_injections());
        drop(chaos);
        // Deliveries in flight (a webhook copy of the last steady event) land first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = host
            .event_stream()
            .map(|w| w.stats.snapshot())
            .unwrap_or_default();
        monitor.note(format!(
            "chaos summary: {event_faults} event faults, {rtms_injections} RTMS injections; \
             event WebSocket {} outages (longest {:.2} s, total {:.2} s, {} reconnect \
             attempts); events sent while connected {}, missed on the WebSocket while down \
             {}, sent as webhooks {}; duplicates dropped {}",
            stats.outages,
            stats.longest_outage.as_secs_f64(),
            stats.outage_total.as_secs_f64(),
            stats.reconnect_attempts,
            event_sim.sent().len(),
            event_sim.missed().len(),
            event_sim.webhooked().len(),
            host.inputs().duplicates().total()
        ));
    }
    notices.abort();
    if let Some(outages) = outages {
        outages.abort();
    }
    drop(sources);
    let infos = host.shutdown().await.plugins;
    view.stop().await;
    crate::cli::print_summary(&infos);
    Ok(())
}

/// Shows stream notices in the live view and feeds its frame counter.
async fn forward_notices(rtms: Arc<RtmsManager>, monitor: Arc<DevMonitor>) {
    let mut notices = rtms.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut frames = 0u64;
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(RtmsNotice::Opened { stream_id, meeting_id, plugins, .. }) => {
                    monitor.stream_opened(&stream_id, &meeting_id, &plugins);
                }
                Ok(RtmsNotice::Closed { stream_id, reason }) => monitor.stream_closed(&stream_id, &reason),
                Ok(RtmsNotice::Failed { stream_id, error }) => {
                    monitor.stream_closed(&stream_id, &format!("FAILED: {error}"));
                }
                Ok(RtmsNotice::Reconnecting { stream_id, socket, delay, error }) => monitor.note(format!(
                    "stream {stream_id}: {socket} lost ({error}); re-handshaking in {delay:?}"
                )),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                let now = rtms.stats().frames;
                monitor.frames(now.saturating_sub(frames));
                frames = now;
            }
        }
    }
}

/// The generated dev config: the example plugins pointed at the local sink.
pub(super) fn default_config(plugins_dir: &Path, sink: SocketAddr) -> String {
    format!(
        r#"# Generated by `zoomhost dev` on every start; pass --config FILE to use your own.
# Edits to this file apply live (grants, plugin config) until dev restarts.
plugins_dir = "{plugins}"

[limits]
# transcript-forwarder posts from inside media calls: give them time for a local HTTP call.
media_deadline_ms = 1000

[plugins.slack-notifier]
allow_http = ["http://{sink}"]
[plugins.slack-notifier.config]
webhook_url = "http://{sink}/slack"

[plugins.transcript-forwarder]
allow_http = ["http://{sink}"]
[plugins.transcript-forwarder.config]
sink_url = "http://{sink}/transcripts"
batch_max = "5"
"#,
        plugins = plugins_dir.display().to_string().replace('\\', "\\\\"),
    )
}

/// A local HTTP server standing in for Slack (`/slack`) and a transcript store
/// (`/transcripts`): it shows what plugins send in the live view.
async fn start_sink(monitor: Arc<DevMonitor>) -> anyhow::Result<SocketAddr> {
    start_sink_with(Arc::new(move |line: String| monitor.note(line))).await
}

/// The zoomhost repository around the current folder (`zoomhost dev` builds its
/// `plugins/*` crates), once the wasm32-wasip2 target is known to be installed.
pub(super) async fn dev_workspace() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current folder")?;
    let ws = crate::wasm_build::find_workspace(&cwd).context(
        "zoomhost dev runs inside the zoomhost repository (it builds the plugins/* crates); \
         cd into your clone, or use `zoomhost run` with a config",
    )?;
    tokio::task::spawn_blocking(crate::wasm_build::ensure_wasm_target)
        .await
        .context("checking the wasm32-wasip2 target")??;
    Ok(ws)
}

/// The scenario `options` names, or the workspace's `host/samples/rtms-meeting.toml`:
/// its path and the loaded scenario.
pub(super) fn load_scenario(
    options: &DevOptions,
    ws: &Path,
) -> anyhow::Result<(PathBuf, Scenario)> {
    let scenario_path = options
        .scenario
        .clone()
        .unwrap_or_else(|| ws.join("host/samples/rtms-meeting.toml"));
    let scenario = Scenario::load(&scenario_path)?;
    Ok((scenario_path, scenario))
}

/// A scenario played against the simulator, round after round.
pub(super) struct Play<'a> {
    /// What to play.
    pub scenario: &'a Scenario,
    /// Where it was loaded from (for the view).
    pub path: &'a Path,
    /// The simulator it plays on (events and RTMS).
    pub zoom: &'a LocalZoom,
    /// `once` (one round, then `settle`) and `pause` (between rounds, 5 s by default).
    pub options: &'a DevOptions,
    /// How long to wait after the one round of `once` for the last deliveries.
    pub settle: Duration,
}

impl Play<'_> {
    /// Plays until Ctrl-C or SIGTERM (or the end of the one round of `once`), telling
    /// `note` each round's start and outcome.
    pub async fn until_stopped(&self, note: impl Fn(String)) {
        let pause = self.options.pause.unwrap_or(Duration::from_secs(5));
        let play = async {
            let mut round = 1u64;
            loop {
                note(format!("playing {} (round {round})", self.path.display()));
                match self
                    .scenario
                    .run_with(&self.zoom.events, Some(&self.zoom.rtms))
                    .await
                {
                    Ok(report) => note(format!(
                        "scenario done: {} events sent, {} faults",
                        report.sent.len(),
                        report.faults
                    )),
                    Err(e) => note(format!("scenario failed: {e:#}")),
                }
                if self.options.once {
                    tokio::time::sleep(self.settle).await;
                    return;
                }
                tokio::time::sleep(pause).await;
                round += 1;
            }
        };
        tokio::select! {
            _ = play => {}
            _ = crate::cli::shutdown_signal() => {}
        }
    }
}

/// [`start_sink`], showing what arrives through `note`.
pub(super) async fn start_sink_with(
    note: Arc<dyn Fn(String) + Send + Sync>,
) -> anyhow::Result<SocketAddr> {
    use axum::routing::post;
    let slack = note.clone();
    let transcripts = note;
    let app = axum::Router::new()
        .route(
            "/slack",
            post(move |body: axum::body::Bytes| async move {
                let text = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| format!("{} bytes", body.len()));
                slack(format!("sink <- slack: {}", one_line(&text, 140)));
                "ok"
            }),
        )
        .route(
            "/transcripts",
            post(move |body: axum::body::Bytes| async move {
                let batch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let segments = batch
                    .get("segments")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for s in &segments {
                    let who = s.get("speaker_name").and_then(Value::as_str).unwrap_or("?");
                    let text = s.get("text").and_then(Value::as_str).unwrap_or("");
                    transcripts(format!(
                        "sink <- transcript: {who}: {}",
                        one_line(text, 120)
                    ));
                }
                axum::http::StatusCode::NO_CONTENT
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the dev sink")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("dev sink stopped: {e}");
        }
    });
    Ok(addr)
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_config_loads_and_grants_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zoomhost.toml");
        let sink: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        std::fs::write(&path, default_config(&dir.path().join("plugins"), sink)).unwrap();
        let config = HostConfig::load(&path).unwrap();
        let slack = config.runtime.grant("slack-notifier");
        assert_eq!(
            slack.config.get("webhook_url").map(String::as_str),
            Some("http://127.0.0.1:4567/slack")
        );
        assert_eq!(config.runtime.limits.media_deadline_ms, 1000);
    }

    #[test]
    fn one_line_flattens_and_truncates() {
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
