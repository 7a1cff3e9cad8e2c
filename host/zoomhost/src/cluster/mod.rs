//! Cluster mode: a `[cluster]` section makes a host a member of a NATS
//! JetStream cluster. Without it nothing here runs and no NATS is needed.
//!
//! What runs today is the **ingress** half:
//!
//! - [`lease`]: leader election through a JetStream key-value lease (create to acquire,
//!   update at the held revision to renew, a bucket `max_age` as the TTL), with the
//!   safety argument for "never two WebSocket holders";
//! - [`ingress`]: Zoom's event WebSocket, run only while this node holds the ingress
//!   lease (Zoom allows one connection per subscription; two would knock each other off);
//!   webhook receivers run on every ingress node;
//! - [`publish`]: every event the node accepts (WebSocket or webhook) published to the
//!   stream [`EVENT_STREAM`] on `zoomhost.events.<partition>` with its content-derived id
//!   as `Nats-Msg-Id` and a 65-minute duplicate window, so retries, both sources and
//!   several ingress nodes collapse to one stored message; publishing awaits JetStream's
//!   acknowledgement and retries. A webhook is answered only after that acknowledgement:
//!   200 once the event is stored, 503 when it was not within `accept_timeout_ms` (2.5 s
//!   by default; Zoom wants an answer within 3 s), so Zoom retries after 5, 20 and 60
//!   minutes and the retry, taken again (the receiver and the input path forget a
//!   delivery that was not kept), collapses onto any late first attempt by its id. The
//!   event WebSocket cannot be answered; its events are retried by the publisher alone;
//! - [`partition`]: the meeting of an event and its partition (stable FNV-1a hash);
//! - [`nats_server`]: a local `nats-server` for tests and development;
//!
//! and the **worker** half, [`worker`] (started for `role = "worker"`): per-partition
//! leases `partition.<n>` in the same bucket, shared out through heartbeat keys
//! `worker.<node>` (at most `ceil(partitions / live workers)` each), a durable consumer
//! per owned partition with one unacknowledged message at a time (per-meeting order),
//! each event delivered with the runtime's completion
//! ([`zoomhost_runtime::Router::dispatch_event_tracked`]) and acknowledged when it
//! resolves; a dead worker's partitions move when its leases expire and its unacknowledged
//! events are redelivered (at-least-once across a crash).
//!
//! An ingress node's accepted events go to JetStream only, never to its own plugins:
//! workers deliver them. A node with `role = "all"` runs both halves, so each event
//! reaches its plugins once, through whichever worker owns the partition (its own or
//! another node's).
//!
//! RTMS streams ([`rtms_state`]) open on the worker owning the meeting's partition, when
//! it delivers `*.rtms_started` (an ingress-only node runs no RTMS client); their state
//! (ids, URLs, product, `event_ts`, progress) lives in the key-value bucket
//! [`rtms_state::RTMS_BUCKET`], so a partition's next owner (after a drain, a rebalance
//! or a crash) re-handshakes within Zoom's 60 s window and Zoom's buffered audio resumes
//! the stream. The plugins' media sessions re-open on the new owner without the old
//! instance's in-memory state.
//!
//! Plugins for the whole cluster live in the object store of [`plugins`]: `zoomhost plugin
//! push FILE.wasm` (and `remove`, `list`) change it, and every worker mirrors it into its
//! plugins folder (temp file, then rename), where the folder watcher loads, hot-swaps or
//! unloads each plugin as for a file dropped there. Their grants likewise: `zoomhost
//! plugin grants NAME FILE.toml` stores a `[plugins.NAME]` table in a key-value bucket,
//! and every worker applies it over its own file as a config change.
//!
//! [`status`]: every member writes a heartbeat `node.<name>` (role, version, pid, start
//! time, admin URL) into the lease bucket; [`status::snapshot`] reads the bucket into a
//! [`status::ClusterStatus`] (nodes, roles, ingress leases, partition owners, RTMS
//! streams), served by `zoomhost cluster status` and shown by `zoomhost dev --workers`.
//!
//! Replicas: the event stream, the key-value buckets (leases, RTMS state, grants) and
//! the plugin object store are kept in `[cluster] replicas` copies (1 by default, which a
//! single `nats-server` holds; 3 with a 3-server NATS cluster survives the loss of one
//! server). Each is created with that count, or updated to it when it exists with
//! another, and the count JetStream reports is checked at start ([`ensure_replicas`]): a
//! NATS that cannot keep that many copies fails the start with an error naming
//! `cluster.replicas`.
//!
//! [`ClusterMember`] is where each part is started and stopped.

pub mod ingress;
pub mod lease;
pub mod nats_server;
pub mod partition;
pub mod plugins;
pub mod publish;
pub mod rtms_state;
pub mod status;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zoomhost_types::EventTap;

use crate::config::{ClusterAuth, ClusterConfig, Role};

/// The JetStream stream accepted events are published to.
pub const EVENT_STREAM: &str = "ZOOMHOST_EVENTS";
/// Events are published on `zoomhost.events.<partition>`.
pub const EVENT_SUBJECT_PREFIX: &str = "zoomhost.events";
/// The key-value bucket holding the leases.
pub const LEASE_BUCKET: &str = "zoomhost_leases";

/// The lease key of the ingress leader of an event subscription:
/// `ingress.<subscription id>` (characters a key cannot hold become `_`).
pub fn ingress_lease_key(subscription_id: &str) -> String {
    let id = key_safe(subscription_id);
    format!("ingress.{}", if id.is_empty() { "_" } else { &id })
}

/// `text` with every character a key-value key cannot hold replaced by `_`.
pub(crate) fn key_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sleeps `d`; true when `stop` turned true meanwhile.
pub(crate) async fn pause(
    d: std::time::Duration,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Makes JetStream keep `replicas` copies of the stream `stream` (the event stream, or
/// the stream under a key-value bucket, `KV_<bucket>`, or an object store,
/// `OBJ_<bucket>`): one kept in another count is updated, then the count the server
/// reports is checked. Errors name `cluster.replicas`.
pub async fn ensure_replicas(
    js: &jetstream::Context,
    stream: &str,
    replicas: usize,
) -> anyhow::Result<()> {
    let checked = async {
        let mut handle = js
            .get_stream(stream)
            .await
            .with_context(|| format!("reading the JetStream stream {stream}"))?;
        let mut config = handle
            .info()
            .await
            .with_context(|| format!("reading the JetStream stream {stream}"))?
            .config
            .clone();
        if config.num_replicas != replicas {
            // Nodes disagree, or the operator changed the setting: either way it is news.
            tracing::warn!(
                stream,
                "JetStream stream kept in {} copies: changing it to {replicas} (cluster.replicas; every node of a cluster must use the same)",
                config.num_replicas
            );
            config.num_replicas = replicas;
            config = js
                .update_stream(&config)
                .await
                .with_context(|| format!("updating the JetStream stream {stream}"))?
                .config;
        }
        anyhow::ensure!(
            config.num_replicas == replicas,
            "JetStream keeps {} copies of the stream {stream}, not {replicas} (cluster.replicas)",
            config.num_replicas
        );
        anyhow::Ok(())
    };
    checked.await.map_err(|e| replicas_error(e, replicas))
}

/// `e` (setting up a stream or bucket), naming `cluster.replicas` when it asks for more
/// than one copy (and so for a NATS cluster); one copy is never the cause.
fn replicas_error(e: anyhow::Error, replicas: usize) -> anyhow::Error {
    if replicas <= 1 {
        return e;
    }
    e.context(format!(
        "cluster.replicas = {replicas}: JetStream must keep {replicas} copies of each stream and bucket, which needs a NATS cluster of at least {replicas} servers with JetStream"
    ))
}

/// The stream under a key-value bucket.
fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The stream under an object store.
fn object_stream(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}

/// Connects to NATS with the section's URL and credentials.
pub async fn connect(config: &ClusterConfig) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("zoomhost {}", config.node))
        .connection_timeout(Duration::from_secs(5));
    options = match &config.auth {
        ClusterAuth::None => options,
        ClusterAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_string())
        }
        ClusterAuth::Token(token) => options.token(token.expose().to_string()),
        ClusterAuth::CredsFile(path) => options
            .credentials_file(path)
            .await
            .with_context(|| format!("cluster.creds_file: reading {}", path.display()))?,
    };
    options
        .connect(config.nats_url.as_str())
        .await
        .with_context(|| {
            format!(
                "connecting to NATS at {} (cluster.nats_url)",
                config.nats_url
            )
        })
}

/// This host's membership of the cluster: the NATS connection and the tasks of its role.
pub struct ClusterMember {
    config: ClusterConfig,
    js: jetstream::Context,
    publisher: Option<publish::Publisher>,
    publisher_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    lease_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    worker_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    rtms_writer: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    grants_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    grant_stats: Arc<plugins::GrantStats>,
    rtms_stats: Arc<rtms_state::RtmsStateStats>,
    mirror_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    mirror_stats: Arc<plugins::MirrorStats>,
    worker_stats: Arc<worker::WorkerStats>,
    owned: watch::Sender<std::collections::BTreeSet<u32>>,
    leading: watch::Sender<bool>,
    lease_stats: Arc<lease::LeaseStats>,
    terms: Arc<AtomicU64>,
    node_info: watch::Sender<status::NodeInfo>,
    heartbeat_task: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl std::fmt::Debug for ClusterMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMember")
            .field("node", &self.config.node)
            .field("role", &self.config.role)
            .field("leading", &*self.leading.borrow())
            .finish_non_exhaustive()
    }
}

impl ClusterMember {
    /// Connects and starts what the role needs before any source runs: for an ingress
    /// node, the event stream (created or updated) and its publisher.
    pub async fn join(config: ClusterConfig) -> anyhow::Result<ClusterMember> {
        let client = connect(&config).await?;
        let js = jetstream::new(client);
        let (leading, _) = watch::channel(false);
        let (node_info, _) = watch::channel(status::NodeInfo::of(&config));
        let mut member = ClusterMember {
            js,
            publisher: None,
            publisher_task: None,
            lease_task: None,
            worker_task: None,
            rtms_writer: None,
            grants_task: None,
            grant_stats: Arc::default(),
            rtms_stats: Arc::default(),
            mirror_task: None,
            mirror_stats: Arc::default(),
            worker_stats: Arc::default(),
            owned: watch::channel(Default::default()).0,
            leading,
            lease_stats: Arc::default(),
            terms: Arc::default(),
            node_info,
            heartbeat_task: None,
            config,
        };
        // The node's heartbeat (`node.<name>`), read by the status view.
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(status::advertise(
            member.js.clone(),
            member.config.lease_ttl,
            member.config.replicas,
            member.node_info.subscribe(),
            stopped,
        ));
        member.heartbeat_task = Some((stop, task));
        if member.config.role.is_ingress() {
            member.ensure_event_stream().await?;
            let (publisher, rx) = publish::Publisher::with_capacity(member.config.max_pending);
            let (stop, stopped) = watch::channel(false);
            let settings = publish::PublishSettings {
                node: member.config.node.clone(),
                partitions: member.config.partitions,
                attempts: member.config.publish_attempts,
                retry_min: Duration::from_millis(100),
                duplicate_window: member.config.duplicate_window,
                replicas: member.config.replicas,
            };
            let task = tokio::spawn(publish::run(
                member.js.clone(),
                rx,
                publisher.stats().clone(),
                settings,
                stopped,
            ));
            member.publisher = Some(publisher);
            member.publisher_task = Some((stop, task));
        }
        tracing::info!(
            node = %member.config.node,
            role = ?member.config.role,
            "joined the cluster at {}",
            member.config.nats_url
        );
        Ok(member)
    }

    /// Creates or updates the event stream with this node's settings, in
    /// `[cluster] replicas` copies.
    async fn ensure_event_stream(&self) -> anyhow::Result<()> {
        let replicas = self.config.replicas;
        publish::ensure_stream(&self.js, self.config.duplicate_window, replicas)
            .await
            .map_err(|e| replicas_error(e, replicas))?;
        ensure_replicas(&self.js, EVENT_STREAM, replicas).await
    }

    /// Opens the lease bucket in `[cluster] replicas` copies.
    async fn open_lease_bucket(&self) -> anyhow::Result<()> {
        let replicas = self.config.replicas;
        lease::open_bucket(&self.js, self.config.lease_ttl, replicas)
            .await
            .map_err(|e| replicas_error(e, replicas))?;
        ensure_replicas(&self.js, &kv_stream(LEASE_BUCKET), replicas).await
    }

    /// The section this member runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// Advertises this node's admin API URL in its heartbeat (shown by the status view).
    pub fn advertise_admin_url(&self, url: impl Into<String>) {
        let url = url.into();
        self.node_info
            .send_modify(|info| info.admin_url = Some(url));
    }

    /// The cluster's status now, read from the lease bucket ([`status::snapshot`]).
    pub async fn status(&self) -> anyhow::Result<status::ClusterStatus> {
        status::snapshot(&self.js).await
    }

    /// The JetStream context (for status views and tests).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// A tap that publishes every accepted event (ingress roles only).
    pub fn publish_tap(&self) -> Option<EventTap> {
        self.publisher.as_ref().map(publish::Publisher::tap)
    }

    /// Where the input path sends accepted events (ingress roles only): the publisher,
    /// reporting JetStream's acknowledgement.
    pub fn publish_outlet(&self) -> Option<crate::inputs::Outlet> {
        let publisher = self.publisher.clone()?;
        Some(Arc::new(move |event: &zoomhost_types::Event| {
            publisher.publish_acked(event)
        }))
    }

    /// The publisher's counters (ingress roles only).
    pub fn publish_stats(&self) -> Option<&Arc<publish::PublishStats>> {
        self.publisher.as_ref().map(publish::Publisher::stats)
    }

    /// Whether this node holds the ingress lease (and so the event WebSocket), updated
    /// as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The ingress lease's counters.
    pub fn lease_stats(&self) -> &Arc<lease::LeaseStats> {
        &self.lease_stats
    }

    /// How many times this node opened the event WebSocket (terms of leadership).
    pub fn terms(&self) -> u64 {
        self.terms.load(Ordering::Relaxed)
    }

    /// Starts the worker ([`worker`]): partitions claimed through leases, their events
    /// delivered into `router` and acknowledged when every plugin is done with them.
    /// With `rtms`, each delivered event is shown to that RTMS client first, and the
    /// streams' state is saved and resumed per partition ([`rtms_state`]).
    pub async fn start_worker(
        &mut self,
        router: Arc<zoomhost_runtime::Router>,
        rtms: Option<Arc<zoomhost_zoom::rtms::RtmsManager>>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.worker_task.is_none(),
            "this node already runs a worker"
        );
        // Made here too so a worker started before any ingress has a stream to read.
        self.ensure_event_stream().await?;
        self.open_lease_bucket().await?;
        let replicas = self.config.replicas;
        let settings = worker::WorkerSettings {
            node: self.config.node.clone(),
            partitions: self.config.partitions,
            ttl: self.config.lease_ttl,
            replicas,
        };
        let rtms = match rtms {
            Some(manager) => {
                rtms_state::open_bucket(&self.js, replicas)
                    .await
                    .map_err(|e| replicas_error(e, replicas))?;
                ensure_replicas(&self.js, &kv_stream(rtms_state::RTMS_BUCKET), replicas).await?;
                let (ownership, writer) = rtms_state::RtmsOwnership::start(
                    self.js.clone(),
                    replicas,
                    manager,
                    self.config.partitions,
                    self.rtms_stats.clone(),
                );
                self.rtms_writer = Some(writer);
                Some(ownership)
            }
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(worker::run(
            self.js.clone(),
            router,
            rtms,
            settings,
            self.worker_stats.clone(),
            self.owned.clone(),
            stopped,
        ));
        self.worker_task = Some((stop, task));
        Ok(())
    }

    /// Starts mirroring the cluster's plugins ([`plugins`]) into `dir`, the folder the
    /// plugin host watches; objects over `max_bytes` are skipped.
    pub async fn start_plugin_mirror(
        &mut self,
        dir: PathBuf,
        max_bytes: u64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.mirror_task.is_none(),
            "this node already mirrors the plugin bucket"
        );
        let replicas = self.config.replicas;
        plugins::open_bucket(&self.js, replicas)
            .await
            .map_err(|e| replicas_error(e, replicas))?;
        ensure_replicas(&self.js, &object_stream(plugins::PLUGIN_BUCKET), replicas).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(plugins::mirror(
            self.js.clone(),
            replicas,
            dir,
            max_bytes,
            self.mirror_stats.clone(),
            stopped,
        ));
        self.mirror_task = Some((stop, task));
        Ok(())
    }

    /// Applies the grants pushed for the whole cluster ([`plugins::watch_grants`]) to
    /// `host` through `overlay` (over this node's file).
    pub async fn start_grant_watch(
        &mut self,
        overlay: Arc<plugins::GrantOverlay>,
        host: Arc<zoomhost_runtime::PluginHost>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.grants_task.is_none(),
            "this node already watches the grant bucket"
        );
        let replicas = self.config.replicas;
        plugins::open_grant_bucket(&self.js, replicas)
            .await
            .map_err(|e| replicas_error(e, replicas))?;
        ensure_replicas(&self.js, &kv_stream(plugins::GRANT_BUCKET), replicas).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(plugins::watch_grants(
            self.js.clone(),
            replicas,
            overlay,
            host,
            self.grant_stats.clone(),
            stopped,
        ));
        self.grants_task = Some((stop, task));
        Ok(())
    }

    /// The grant watch's counters.
    pub fn grant_stats(&self) -> &Arc<plugins::GrantStats> {
        &self.grant_stats
    }

    /// The plugin mirror's counters.
    pub fn mirror_stats(&self) -> &Arc<plugins::MirrorStats> {
        &self.mirror_stats
    }

    /// The partitions this worker owns now, updated as they change.
    pub fn owned_partitions(&self) -> watch::Receiver<std::collections::BTreeSet<u32>> {
        self.owned.subscribe()
    }

    /// The worker's counters.
    pub fn worker_stats(&self) -> &Arc<worker::WorkerStats> {
        &self.worker_stats
    }

    /// The counters of the RTMS streams' saved state (writes, resumes, hand-overs).
    pub fn rtms_state_stats(&self) -> &Arc<rtms_state::RtmsStateStats> {
        &self.rtms_stats
    }

    /// Contends for the ingress lease of `subscription_id`, running the event WebSocket
    /// built by `make` only while holding it.
    pub async fn hold_event_stream(
        &mut self,
        subscription_id: &str,
        make: ingress::StreamFactory,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lease_task.is_none(),
            "this node already contends for the ingress lease"
        );
        // Opened here once so a bad setup fails the start; the loop re-opens it as needed.
        self.open_lease_bucket().await?;
        let spec = lease::LeaseSpec {
            key: ingress_lease_key(subscription_id),
            node: self.config.node.clone(),
            ttl: self.config.lease_ttl,
            replicas: self.config.replicas,
        };
        let holder = ingress::EventStreamHolder::new(make, self.terms.clone());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(lease::run(
            self.js.clone(),
            spec,
            holder,
            self.leading.clone(),
            self.lease_stats.clone(),
            stopped,
        ));
        self.lease_task = Some((stop, task));
        Ok(())
    }

    /// Leaves in order: the worker finishes and acknowledges the events it holds and
    /// hands its partitions over, the event WebSocket closes and the lease is released,
    /// then the publisher drains its queue (each stage bounded by `within`).
    pub async fn leave(mut self, within: Duration) {
        for (stage, slot) in [
            ("plugin mirror", self.mirror_task.take()),
            ("grant watch", self.grants_task.take()),
            ("worker", self.worker_task.take()),
            ("RTMS state writer", self.rtms_writer.take()),
            ("ingress lease", self.lease_task.take()),
            ("publisher", self.publisher_task.take()),
            ("node heartbeat", self.heartbeat_task.take()),
        ] {
            let Some((stop, mut task)) = slot else {
                continue;
            };
            let _ = stop.send(true);
            if tokio::time::timeout(within, &mut task).await.is_err() {
                tracing::warn!(
                    "cluster {stage} did not stop within {} ms: aborted",
                    within.as_millis()
                );
                task.abort();
            }
        }
        if let Some(stats) = self.publish_stats() {
            let lost = stats.pending() + stats.lost.load(Ordering::Relaxed);
            if lost > 0 {
                tracing::error!(lost, "cluster: events not published to JetStream");
            }
        }
    }
}

impl Drop for ClusterMember {
    /// A member dropped without [`ClusterMember::leave`] (a crash, as far as the cluster
    /// can tell): its tasks are aborted, so its lease expires and a standby takes over.
    fn drop(&mut self) {
        for (_, task) in [
            self.mirror_task.take(),
            self.grants_task.take(),
            self.worker_task.take(),
            self.rtms_writer.take(),
            self.lease_task.take(),
            self.publisher_task.take(),
            self.heartbeat_task.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_are_valid_keys() {
        assert_eq!(
            ingress_lease_key("sim-subscription"),
            "ingress.sim-subscription"
        );
        assert_eq!(ingress_lease_key("a.b c/d"), "ingress.a_b_c_d");
        assert_eq!(ingress_lease_key(""), "ingress._");
    }
}
