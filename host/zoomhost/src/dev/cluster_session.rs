//! `zoomhost dev --workers N`: the whole pipeline as a local cluster.
//!
//! It starts a `nats-server` with JetStream ([`crate::cluster::nats_server`]: from `PATH`,
//! or the pinned PyPI build installed into `target/`), the simulator and the local sink
//! in this process (default scenario `host/samples/rtms-meeting.toml`, as plain `dev`:
//! the RTMS stream runs on the worker owning the meeting's partition), then one ingress
//! node and N worker nodes as `zoomhost run` child
//! processes ([`super::local_cluster`]) with generated configs in
//! `target/zoomhost-dev/cluster/`. The workspace's `plugins/*` crates are built as in
//! plain `dev` and pushed to the cluster's plugin store, so every worker loads them (and
//! an edited crate is rebuilt and pushed again: every worker hot-swaps it).
//!
//! The view prints, prefixed with the node's name, each node's log lines (its plugins'
//! lines and warnings), the sink's messages, and every 2 s when it changed the cluster's
//! status ([`crate::cluster::status`]): each node with its pid, role and partitions,
//! the ingress leader, and which worker holds which meeting (the meetings of the events
//! seen on `zoomhost.events.>`, mapped to their partition's owner). `kill -9` a worker's
//! pid to watch its partitions and meetings move. Ctrl-C (or the end of `--once`) stops
//! every node with SIGTERM and waits for each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;

use super::local_cluster::{ClusterSettings, LocalCluster};
use super::{DevEvent, DevOptions, SourceWatchConfig, SourceWatcher};
use crate::cluster::{nats_server, plugins, status};
use crate::config::Role;
use zoomhost_sim::LocalZoom;

/// Prints one line of the view, tagged.
fn say(tag: &str, text: &str) {
    println!("{tag:<10} {text}");
}

/// Runs the cluster dev session until Ctrl-C (or one play with `once`).
pub async fn run(options: DevOptions, workers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=16).contains(&workers),
        "--workers {workers}: give 1 to 16"
    );
    let ws = super::session::dev_workspace().await?;
    let dev_dir = ws.join("target/zoomhost-dev/cluster");
    let nodes_dir = dev_dir.join("nodes");
    // Each session starts from empty node folders (the plugins come from the store).
    let _ = std::fs::remove_dir_all(&nodes_dir);
    let built_dir = dev_dir.join("built");
    std::fs::create_dir_all(&built_dir)
        .with_context(|| format!("creating {}", built_dir.display()))?;
    let (scenario_path, scenario) = super::session::load_scenario(&options, &ws)?;

    // NATS, the simulator and the sink.
    let target = ws.join("target");
    let nats = tokio::task::spawn_blocking(move || {
        let binary = nats_server::locate(&target)?;
        nats_server::NatsServer::start(&binary)
    })
    .await
    .context("starting nats-server")??;
    let zoom = LocalZoom::start().await?;
    let sink = super::session::start_sink_with(Arc::new(|line: String| say("sink", &line))).await?;
    say(
        "note",
        &format!(
            "nats-server {} (JetStream); simulated Zoom: OAuth {}, events {}; sink http://{sink}",
            nats.url(),
            zoom.oauth.url(),
            zoom.events.url()
        ),
    );

    // The nodes.
    let grants = match &options.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => super::session::default_config(&built_dir, sink),
    };
    let exe = std::env::current_exe().context("locating the zoomhost binary")?;
    let mut settings = ClusterSettings::new(exe, &nodes_dir, nats.url(), &zoom);
    settings.extra_config = without_plugins_dir(&grants);
    settings.lease_ttl = Duration::from_millis(3000);
    // Workers run each RTMS stream of the meetings whose partition they own.
    settings.rtms_media = vec!["audio".into(), "transcript".into(), "chat".into()];
    let mut cluster = LocalCluster::new(settings)?;
    let names: Vec<String> = (1..=workers).map(|i| format!("worker-{i}")).collect();
    for name in &names {
        cluster.spawn(name, Role::Worker, &[])?;
    }
    cluster.spawn("ingress-1", Role::Ingress, &[])?;
    for node in cluster.nodes() {
        say(
            "node",
            &format!(
                "{} ({}) pid {}: config {}, admin {}",
                node.name,
                status::role_name(node.role),
                node.pid(),
                node.config.display(),
                node.admin_url
            ),
        );
    }
    say(
        "note",
        "kill -9 a worker's pid to watch its partitions and meetings move to the others",
    );
    let tails: Vec<_> = cluster
        .nodes()
        .map(|n| tokio::spawn(tail_log(n.name.clone(), n.log.clone())))
        .collect();

    // Our own view of the cluster: status and the meetings flowing.
    let client = async_nats::connect(nats.url())
        .await
        .context("connecting to the local nats-server")?;
    let js = async_nats::jetstream::new(client.clone());
    let meetings: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let watcher = tokio::spawn(watch_meetings(client.clone(), meetings.clone()));
    let view = tokio::spawn(status_view(js.clone(), meetings.clone()));

    // Plugins: built from plugins/*, pushed to the store every worker mirrors.
    let store = plugins::open_bucket(&js, crate::config::cluster::DEFAULT_REPLICAS).await?;
    let (dev_tx, mut dev_rx) = tokio::sync::mpsc::unbounded_channel();
    let sources = SourceWatcher::start(SourceWatchConfig::new(&ws, &built_dir), dev_tx)?;
    sources.build_all().await?;
    let pushed = push_all(&store, &built_dir).await;
    // The meeting starts once every worker runs every plugin (else its first events
    // would find no subscriber there).
    let admins: Vec<(String, String)> = cluster
        .nodes()
        .filter(|n| n.role.is_worker())
        .map(|n| (n.name.clone(), n.admin_url.clone()))
        .collect();
    match wait_loaded(&admins, &pushed, Duration::from_secs(60)).await {
        Ok(()) => say("note", &format!("every worker runs {}", pushed.join(", "))),
        Err(e) => say("note", &format!("{e:#}; playing anyway")),
    }
    let pusher = {
        let store = store.clone();
        tokio::spawn(async move {
            while let Some(event) = dev_rx.recv().await {
                match event {
                    DevEvent::Installed { krate, path } => push_file(&store, &krate, &path).await,
                    DevEvent::BuildFailed { krate, error } => say(
                        "build",
                        &format!(
                            "{krate} FAILED (the cluster keeps the running version):\n{error}"
                        ),
                    ),
                    DevEvent::Built {
                        krate, duration, ..
                    } => say(
                        "build",
                        &format!("{krate} built in {:.1} s", duration.as_secs_f64()),
                    ),
                    _ => {}
                }
            }
        })
    };

    // With `once`, 3 s for deliveries to land and the view to show the last status.
    let play = super::session::Play {
        scenario: &scenario,
        path: &scenario_path,
        zoom: &zoom,
        options: &options,
        settle: Duration::from_secs(3),
    };
    play.until_stopped(|text| say("note", &text)).await;

    if let Ok(s) = status::snapshot(&js).await {
        say("cluster", "final status:");
        print_status(&s, &meetings);
    }
    say("note", "stopping every node (SIGTERM) ...");
    drop(sources);
    pusher.abort();
    view.abort();
    watcher.abort();
    let unclean = tokio::task::spawn_blocking(move || {
        let unclean = cluster.stop_all(Duration::from_secs(20));
        (unclean, cluster)
    })
    .await
    .context("stopping the nodes")?;
    // The last lines the nodes wrote while stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tail in tails {
        tail.abort();
    }
    let (unclean, cluster) = unclean;
    if unclean.is_empty() {
        say(
            "note",
            &format!("stopped {} nodes cleanly", cluster.nodes().count()),
        );
    } else {
        say("note", &format!("nodes killed after 20 s: {unclean:?}"));
    }
    drop(cluster);
    drop(nats);
    Ok(())
}

/// The grants text without its `plugins_dir` line (each node has its own folder).
fn without_plugins_dir(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.trim_start().starts_with("plugins_dir"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pushes every `*.wasm` of `dir` to the plugin store; returns their names.
async fn push_all(
    store: &async_nats::jetstream::object_store::ObjectStore,
    dir: &Path,
) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
                push_file(store, name, &path).await;
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
}

/// Waits until every worker's admin API (`/v1/plugins`) lists every plugin of `names`.
async fn wait_loaded(
    admins: &[(String, String)],
    names: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building an HTTP client")?;
    let until = Instant::now() + within;
    for (node, url) in admins {
        loop {
            let listed = match http.get(format!("{url}/v1/plugins")).send().await {
                Ok(answer) => answer.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if names.iter().all(|n| listed.contains(&format!("\"{n}\""))) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{node} did not load every plugin within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn push_file(
    store: &async_nats::jetstream::object_store::ObjectStore,
    name: &str,
    path: &Path,
) {
    let result = async {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        plugins::push(store, name, &bytes).await?;
        anyhow::Ok(bytes.len())
    }
    .await;
    match result {
        Ok(n) => say(
            "plugin",
            &format!("{name} ({n} bytes) pushed to the cluster: every worker loads it"),
        ),
        Err(e) => say("plugin", &format!("pushing {name} FAILED: {e:#}")),
    }
}

/// Prints the lines `node` appends to its log, tagged with its name (the timestamp cut).
async fn tail_log(node: String, log: PathBuf) {
    use tokio::io::{AsyncBufReadExt as _, AsyncSeekExt as _};
    let mut offset = 0u64;
    loop {
        if let Ok(mut file) = tokio::fs::File::open(&log).await {
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let mut reader = tokio::io::BufReader::new(file);
                let mut line = String::new();
                while let Ok(n) = reader.read_line(&mut line).await {
                    if n == 0 || !line.ends_with('\n') {
                        break;
                    }
                    offset += n as u64;
                    say(&node, trim_log_line(line.trim_end()));
                    line.clear();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A log line without its leading timestamp.
fn trim_log_line(line: &str) -> &str {
    match line.split_once(' ') {
        Some((first, rest)) if first.len() > 20 && first.contains('T') => rest.trim_start(),
        _ => line,
    }
}

/// Records the meeting of every event published to the cluster (core subscription on
/// the stream's subjects).
async fn watch_meetings(
    client: async_nats::Client,
    meetings: Arc<Mutex<BTreeMap<String, Instant>>>,
) {
    let subject = format!("{}.>", crate::cluster::EVENT_SUBJECT_PREFIX);
    let Ok(mut subscriber) = client.subscribe(subject).await else {
        return;
    };
    while let Some(message) = subscriber.next().await {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
            continue;
        };
        let payload = body["payload"].to_string();
        if let Some(meeting) = crate::cluster::partition::meeting_of_payload(&payload) {
            meetings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(meeting, Instant::now());
        }
    }
}

/// Every 2 s, the cluster's status when it changed.
async fn status_view(
    js: async_nats::jetstream::Context,
    meetings: Arc<Mutex<BTreeMap<String, Instant>>>,
) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(s) = status::snapshot(&js).await else {
            continue;
        };
        let text = status_lines(&s, &meetings).join("\n");
        if text != last {
            print_status(&s, &meetings);
            last = text;
        }
    }
}

fn print_status(s: &status::ClusterStatus, meetings: &Mutex<BTreeMap<String, Instant>>) {
    for line in status_lines(s, meetings) {
        say("cluster", &line);
    }
}

/// The view's status: nodes, then meetings (seen in the last 5 minutes) by worker.
fn status_lines(
    s: &status::ClusterStatus,
    meetings: &Mutex<BTreeMap<String, Instant>>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unowned = Vec::new();
    {
        let seen = meetings.lock().unwrap_or_else(|p| p.into_inner());
        for (meeting, at) in seen.iter() {
            if at.elapsed() > Duration::from_secs(300) {
                continue;
            }
            let p = s.partition_of_meeting(meeting);
            let label = format!("{meeting} (p{p})");
            match s.owner_of_partition(p) {
                Some(owner) => by_node.entry(owner.to_string()).or_default().push(label),
                None => unowned.push(label),
            }
        }
    }
    for n in &s.nodes {
        let pid = n
            .info
            .as_ref()
            .map_or_else(|| "-".to_string(), |i| i.pid.to_string());
        let mut line = format!("{} [{} pid {}]", n.node, n.role(), pid);
        if !n.leading.is_empty() {
            line.push_str(" holds the event WebSocket");
        }
        if n.worker {
            line.push_str(&format!(
                " partitions {} ({})",
                status::ranges(&n.partitions),
                n.partitions.len()
            ));
            let held = by_node.get(&n.node).cloned().unwrap_or_default();
            line.push_str(&format!(
                "; meetings: {}",
                if held.is_empty() {
                    "-".to_string()
                } else {
                    held.join(", ")
                }
            ));
        }
        lines.push(line);
    }
    let free = s.unowned();
    if !free.is_empty() {
        lines.push(format!(
            "unowned partitions {} (waiting for a worker); meetings there: {}",
            status::ranges(&free),
            if unowned.is_empty() {
                "-".to_string()
            } else {
                unowned.join(", ")
            }
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_lose_their_plugins_dir_and_log_lines_their_timestamp() {
        let text = "plugins_dir = \"x\"\n[limits]\nmedia_deadline_ms = 1000";
        assert_eq!(
            without_plugins_dir(text),
            "[limits]\nmedia_deadline_ms = 1000"
        );
        assert_eq!(
            trim_log_line("2026-11-30T15:00:38.213933Z  INFO plugin: hi"),
            "INFO plugin: hi"
        );
        assert_eq!(trim_log_line("error: x"), "error: x");
    }
}
