//! The one place that wires a zoomhost together: the plugin runtime, the input path
//! ([`Inputs`]), the RTMS client and the configured Zoom sources, with the start-up and
//! shutdown order. `run`, `dev`, `bench` and the tests all start a host through here.
//!
//! Start-up: plugins are loaded (and the folder and config file watched) before any
//! source connects, and the RTMS client is tapped into the input path before the sources
//! start, so a `*.rtms_started` on the first connection opens its stream.
//!
//! Cluster mode (`config.cluster`, the `[cluster]` section): the node joins before any
//! source starts;
//! an ingress node sends every accepted event to the JetStream publisher instead of its
//! own plugins (a webhook is answered once JetStream acknowledged it) and runs the
//! event WebSocket only while it holds the ingress lease; a worker node runs no Zoom
//! event source and delivers the events of the partitions it owns; `role = "all"` runs
//! both halves. Without a cluster section nothing of this runs. In cluster mode the RTMS
//! client runs on worker nodes only, fed by the worker's deliveries rather than the input
//! path (so a stream opens once, on the meeting's partition owner), and shutdown hands
//! its streams over to the next owner instead of closing them. The section is read once:
//! the config-file watcher applies the runtime's part of an edited file live and logs a
//! changed `[cluster]` section as a warning that a restart is needed
//! ([`crate::config::runtime_loader_for`]).
//!
//! Shutdown: sources stop accepting first, then RTMS streams close, then the plugins'
//! mailboxes drain, so nothing already accepted is lost.
//!
//! Admin API (`[admin]`, [`crate::admin`]): started last, once the plugins are loaded and
//! the sources started, over a [`crate::admin::HostView`] of shared handles; it answers
//! `/readyz` with 503 from the moment shutdown begins and stops after the plugins drained.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zoomhost_runtime::reload;
use zoomhost_runtime::{LogSink, PluginHost, PluginInfo};

use crate::cluster::ClusterMember;
use crate::config::{HostConfig, ZoomConfig};
use crate::inputs::Inputs;
use zoomhost_zoom::rtms::RtmsManager;

/// How long each shutdown stage may take.
const STOP_SOURCES: Duration = Duration::from_secs(5);
const STOP_STREAMS: Duration = Duration::from_secs(5);
const DRAIN_PLUGINS: Duration = Duration::from_secs(10);

/// What to start besides the configuration.
#[derive(Default)]
pub struct HostOptions {
    /// Observer of every plugin log line (the dev view, tests).
    pub log_sink: Option<LogSink>,
    /// Watch the plugins folder, and this config file when given, and apply changes.
    pub watch: Option<Option<PathBuf>>,
}

/// A running host.
pub struct Host {
    plugins: Arc<PluginHost>,
    inputs: Arc<Inputs>,
    rtms: Option<Arc<RtmsManager>>,
    event_stream: Option<EventStreamWatch>,
    webhook_url: Option<String>,
    sources: JoinSet<anyhow::Result<()>>,
    stop: watch::Sender<bool>,
    cluster: Option<ClusterMember>,
    _watcher: Option<reload::Watcher>,
    /// The RTMS streams on their way to the router, for the admin API.
    streams: Arc<crate::admin::StreamRegistry>,
    /// The event WebSocket client (the current term's on a cluster ingress node).
    ws_slot: Option<crate::admin::EventStreamSlot>,
    webhook: Option<Arc<zoomhost_zoom::webhook::WebhookReceiver>>,
    admin: Option<AdminTask>,
}

/// The running admin listener.
struct AdminTask {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Starts a host: loads the plugins folder, joins the cluster when `config.cluster`
    /// is set, then starts the RTMS client and the Zoom sources `config.zoom` enables.
    pub async fn start(config: HostConfig, options: HostOptions) -> anyhow::Result<Host> {
        let cluster = config.cluster.clone();
        let dir = &config.runtime.plugins_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating plugins folder {}", dir.display()))?;
        let plugins = PluginHost::new(config.runtime.clone(), options.log_sink)?;
        let loaded = plugins.load_dir().await?;
        tracing::debug!(plugins = ?loaded, "plugins loaded");
        // A cluster worker's grants: its file's, with the cluster's pushed ones on top.
        let grants = cluster
            .as_ref()
            .filter(|c| c.role.is_worker())
            .map(|_| crate::cluster::plugins::GrantOverlay::new(config.runtime.clone()));
        let watcher = match options.watch {
            Some(config_file) => {
                let loader = crate::config::runtime_loader_for(cluster.clone());
                let loader = match &grants {
                    Some(overlay) => overlay.wrap(loader),
                    None => loader,
                };
                Some(reload::watch(
                    plugins.clone(),
                    config_file.map(|f| (f, loader)),
                )?)
            }
            None => None,
        };
        let dedupe = config
            .zoom
            .as_ref()
            .map(|z| z.dedupe.clone())
            .unwrap_or_default();
        let inputs = Inputs::with_dedupe(plugins.router().clone(), dedupe);
        let (stop, _) = watch::channel(false);
        let mut host = Host {
            plugins,
            inputs,
            rtms: None,
            event_stream: None,
            webhook_url: None,
            sources: JoinSet::new(),
            stop,
            cluster: None,
            _watcher: watcher,
            streams: Arc::default(),
            ws_slot: None,
            webhook: None,
            admin: None,
        };
        let rtms_config = config.zoom.as_ref().and_then(|z| z.rtms.clone());
        match (&cluster, rtms_config) {
            // Standalone: every accepted event reaches the RTMS client.
            (None, Some(rtms)) => host.start_rtms(rtms, true),
            // A worker: the partitions' deliveries reach it (see `start_worker`).
            (Some(c), Some(rtms)) if c.role.is_worker() => host.start_rtms(rtms, false),
            (Some(_), Some(_)) => {
                tracing::info!("cluster ingress: RTMS streams open on the worker nodes")
            }
            (_, None) => {}
        }
        if let Some(cluster) = cluster {
            let mut member = ClusterMember::join(cluster).await?;
            if member.role().is_worker() {
                member
                    .start_worker(host.plugins.router().clone(), host.rtms.clone())
                    .await?;
                // The largest component any grant allows; the loader applies each plugin's own.
                let max_bytes = config
                    .runtime
                    .plugins
                    .values()
                    .map(|g| g.limits.max_component_bytes())
                    .fold(config.runtime.limits.max_component_bytes(), u64::max);
                member.start_plugin_mirror(dir.clone(), max_bytes).await?;
                if let Some(overlay) = grants {
                    member
                        .start_grant_watch(overlay, host.plugins.clone())
                        .await?;
                }
            }
            // Accepted events go to JetStream only; workers (this node's own worker half
            // for `role = "all"`) deliver them.
            if let Some(outlet) = member.publish_outlet() {
                let within = member.config().accept_timeout;
                host.inputs.send_to(outlet, within);
            }
            host.cluster = Some(member);
        }
        if let Some(zoom) = &config.zoom {
            host.start_zoom(zoom).await?;
        }
        if let Some(admin) = config.admin.as_ref().filter(|a| a.bind.is_some()) {
            host.start_admin(admin).await?;
        }
        Ok(host)
    }

    /// Binds and serves the admin API (see [`crate::admin`]).
    async fn start_admin(&mut self, config: &crate::config::AdminConfig) -> anyhow::Result<()> {
        let server = crate::admin::AdminServer::bind(config, self.view()).await?;
        let addr = server.addr();
        if let Some(member) = &self.cluster {
            member.advertise_admin_url(server.url());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        self.admin = Some(AdminTask { addr, stop, task });
        Ok(())
    }

    /// What the admin API reads: shared handles into this host.
    pub fn view(&self) -> crate::admin::HostView {
        crate::admin::HostView {
            plugins: self.plugins.clone(),
            inputs: self.inputs.clone(),
            streams: self.streams.clone(),
            rtms: self.rtms.clone(),
            websocket: self.ws_slot.clone(),
            webhook: self.webhook.clone(),
            cluster: self.cluster.as_ref().map(|m| crate::admin::ClusterView {
                node: m.config().node.clone(),
                role: m.role(),
                leading: m.leading(),
                nats: m.jetstream().client(),
                jetstream: m.jetstream().clone(),
                owned: m.owned_partitions(),
                publish: m.publish_stats().cloned(),
                worker: m.role().is_worker().then(|| m.worker_stats().clone()),
            }),
            stopping: self.stop.subscribe(),
        }
    }

    /// The admin API's address (with its bound port), when it runs.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The RTMS client, tapped into the input path when `tap` (standalone; a cluster
    /// worker feeds it from its deliveries).
    fn start_rtms(&mut self, config: zoomhost_zoom::rtms::RtmsConfig, tap: bool) {
        // Through the stream registry, which lists streams and counts frames by kind.
        let manager = RtmsManager::new(config, self.streams.sink(self.plugins.router().clone()));
        if tap {
            self.inputs.tap(manager.event_tap());
        }
        // Plugins granted `stream_control` close streams and subscribe video through it.
        self.plugins.set_stream_control(manager.clone());
        tracing::info!("RTMS client ready: streams open on *.rtms_started");
        self.rtms = Some(manager);
    }

    /// The event WebSocket and the webhook receiver (the RTMS client started before).
    async fn start_zoom(&mut self, zoom: &ZoomConfig) -> anyhow::Result<()> {
        use zoomhost_zoom::{events, oauth::TokenManager, webhook::WebhookServer, TokenSource};
        if let Some(ws) = &zoom.websocket {
            let oauth = zoom
                .oauth
                .clone()
                .context("the event WebSocket needs OAuth credentials")?;
            let tokens: Arc<dyn TokenSource> = Arc::new(TokenManager::new(oauth)?);
            match &mut self.cluster {
                Some(member) if member.role().is_ingress() => {
                    let (ws, inputs) = (ws.clone(), self.inputs.clone());
                    let slot = self.ws_slot.get_or_insert_with(Default::default).clone();
                    let make = Box::new(move || {
                        let stream =
                            events::EventStream::new(ws.clone(), tokens.clone(), inputs.clone());
                        // The admin API shows the current term's client.
                        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(EventStreamWatch {
                            state: stream.state(),
                            stats: stream.stats(),
                        });
                        stream
                    });
                    member
                        .hold_event_stream(&ws_subscription(zoom), make)
                        .await?;
                }
                Some(_) => {
                    tracing::info!("cluster worker: the event WebSocket runs on ingress nodes")
                }
                None => {
                    let stream = events::EventStream::new(ws.clone(), tokens, self.inputs.clone());
                    let watch = EventStreamWatch {
                        state: stream.state(),
                        stats: stream.stats(),
                    };
                    self.ws_slot = Some(Arc::new(std::sync::RwLock::new(Some(watch.clone()))));
                    self.event_stream = Some(watch);
                    self.sources.spawn(stream.run(self.stop.subscribe()));
                }
            }
        }
        let ingress = self.cluster.as_ref().is_none_or(|m| m.role().is_ingress());
        if let (Some(webhook), true) = (&zoom.webhook, ingress) {
            let server = WebhookServer::bind(webhook.clone(), self.inputs.clone()).await?;
            self.webhook_url = Some(server.url());
            self.webhook = Some(server.receiver().clone());
            let mut stopped = self.stop.subscribe();
            self.sources.spawn(server.serve(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        Ok(())
    }

    /// The plugin runtime.
    pub fn plugins(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    /// The input path the sources deliver into (add taps here).
    pub fn inputs(&self) -> &Arc<Inputs> {
        &self.inputs
    }

    /// The event WebSocket's state and counters (outages included), when it runs.
    pub fn event_stream(&self) -> Option<&EventStreamWatch> {
        self.event_stream.as_ref()
    }

    /// The URL the webhook receiver listens on (with its bound port), when it runs.
    pub fn webhook_url(&self) -> Option<&str> {
        self.webhook_url.as_deref()
    }

    /// The cluster membership, when started with a cluster section.
    pub fn cluster(&self) -> Option<&ClusterMember> {
        self.cluster.as_ref()
    }

    /// The RTMS client, when `[zoom.rtms]` is enabled.
    pub fn rtms(&self) -> Option<&Arc<RtmsManager>> {
        self.rtms.as_ref()
    }

    /// Stops at once, as a crash would (for tests of what the rest of a cluster does
    /// then): sources, RTMS streams and cluster tasks aborted, sockets dropped, nothing
    /// drained, handed over, released or cleaned up; leases expire on their own.
    pub fn abort(mut self) {
        tracing::warn!("host aborted: no drain, no hand-over");
        self.sources.abort_all();
        if let Some(admin) = self.admin.take() {
            admin.task.abort();
        }
        if let Some(rtms) = &self.rtms {
            rtms.abort();
        }
        // Dropping the member aborts its tasks (worker, writers, leases).
        drop(self.cluster.take());
    }

    /// Stops in order: sources, then RTMS streams, then the plugins after their
    /// mailboxes drain.
    pub async fn shutdown(mut self) -> Shutdown {
        tracing::info!("shutting down: closing sources");
        let _ = self.stop.send(true);
        let sources = &mut self.sources;
        let mut source_errors = Vec::new();
        let closing = async {
            while let Some(result) = sources.join_next().await {
                let error = match result {
                    Ok(Err(e)) => format!("source stopped with an error: {e:#}"),
                    Err(e) => format!("source task failed: {e}"),
                    Ok(Ok(())) => continue,
                };
                tracing::error!("{error}");
                source_errors.push(error);
            }
        };
        if tokio::time::timeout(STOP_SOURCES, closing).await.is_err() {
            let error = format!("sources did not close within {} s", STOP_SOURCES.as_secs());
            tracing::warn!("{error}");
            source_errors.push(error);
        }
        let clustered = self.cluster.is_some();
        if let Some(member) = self.cluster.take() {
            tracing::info!("leaving the cluster: partitions and RTMS streams handed over, event WebSocket, lease, then publisher");
            member.leave(STOP_SOURCES).await;
        }
        match &self.rtms {
            // The worker handed its streams over; any left are handed over too.
            Some(rtms) if clustered => {
                rtms.hand_over(|_| true, STOP_STREAMS).await;
            }
            Some(rtms) => {
                tracing::info!("closing RTMS streams");
                rtms.shutdown(STOP_STREAMS).await;
            }
            None => {}
        }
        tracing::info!("draining plugin mailboxes");
        let plugins = self.plugins.shutdown(DRAIN_PLUGINS).await;
        // The admin API answered 503 on /readyz throughout; it stops last.
        if let Some(admin) = self.admin.take() {
            let _ = admin.stop.send(());
            let mut task = admin.task;
            if tokio::time::timeout(STOP_SOURCES, &mut task).await.is_err() {
                task.abort();
            }
        }
        Shutdown {
            plugins,
            source_errors,
        }
    }
}

/// A view of the running event WebSocket client.
#[derive(Debug, Clone)]
pub struct EventStreamWatch {
    /// Its connection state, updated as it changes.
    pub state: watch::Receiver<zoomhost_zoom::events::ConnectionState>,
    /// Its counters: connections, events, outages and reconnect decisions.
    pub stats: Arc<zoomhost_zoom::events::EventStreamStats>,
}

/// What a shutdown saw.
#[derive(Debug)]
pub struct Shutdown {
    /// Every plugin's final counters.
    pub plugins: Vec<PluginInfo>,
    /// Sources that stopped with an error or did not stop in time (empty after a clean
    /// stop).
    pub source_errors: Vec<String>,
}

/// The subscription id of the event WebSocket (the ingress lease is per subscription).
fn ws_subscription(zoom: &ZoomConfig) -> String {
    zoom.websocket
        .as_ref()
        .map(|ws| ws.subscription_id.clone())
        .unwrap_or_default()
}
