//! What the cluster looks like now, read from the lease bucket ([`super::LEASE_BUCKET`]):
//! its nodes, their roles, who holds each ingress lease, which worker owns each
//! partition, and the RTMS streams recorded per partition.
//!
//! **Node heartbeats.** Every member writes `node.<name>` ([`node_key`]) into the lease
//! bucket every third of the lease TTL ([`advertise`]): a JSON [`NodeInfo`] with its
//! role, version, process id, start time, partition count and admin URL (when one was
//! advertised with [`super::ClusterMember::advertise_admin_url`]). The bucket's `max_age`
//! (the TTL) expires the key of a node that died; a node that leaves deletes it.
//!
//! **Snapshot.** [`snapshot`] lists the bucket's keys and reads each entry: `node.*`
//! (the nodes), `worker.*` (the workers' heartbeats, see [`super::worker`]), `ingress.*`
//! (the event WebSocket's leader per subscription) and `partition.<n>` (each partition's
//! owner); then the RTMS stream states of [`super::rtms_state`], keyed
//! `<partition>.<stream id>`, when that bucket exists. The result, [`ClusterStatus`], is
//! serde-(de)serialisable (the admin API's `/v1/cluster`) and prints as a compact table
//! (`zoomhost cluster status`). A snapshot is read key by key, not atomically: a lease
//! moving while it is taken may show in its old or its new place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::pause;
use crate::config::{ClusterConfig, Role};

/// The heartbeat key of node `node`: `node.<name>` (characters a key cannot hold
/// become `_`).
pub fn node_key(node: &str) -> String {
    format!("node.{}", super::key_safe(node))
}

/// The name of a role as configured (`ingress`, `worker`, `all`).
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Ingress => "ingress",
        Role::Worker => "worker",
        Role::All => "all",
    }
}

/// What a node says about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (`cluster.node`).
    pub node: String,
    /// Its role: `ingress`, `worker` or `all`.
    pub role: String,
    /// The zoomhost version it runs.
    pub version: String,
    /// Its operating-system process id (on its machine).
    pub pid: u32,
    /// When it joined, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The partition count it was configured with.
    pub partitions: u32,
    /// Its admin API's URL, when it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_url: Option<String>,
}

impl NodeInfo {
    /// The info of a member configured with `config`, starting now.
    pub fn of(config: &ClusterConfig) -> NodeInfo {
        NodeInfo {
            node: config.node.clone(),
            role: role_name(config.role).to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at_ms: unix_ms(SystemTime::now()),
            partitions: config.partitions,
            admin_url: None,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes this node's heartbeat every third of `ttl` until `stop` turns true, then
/// deletes it. The value is re-read from `info` each time (the admin URL may be set
/// later). The lease bucket is opened with `ttl` and `replicas`.
pub async fn advertise(
    js: jetstream::Context,
    ttl: Duration,
    replicas: usize,
    info: watch::Receiver<NodeInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let third = ttl / 3;
    let key = node_key(&info.borrow().node);
    let mut store: Option<kv::Store> = None;
    let mut failing = false;
    loop {
        if store.is_none() {
            match tokio::time::timeout(third, super::lease::open_bucket(&js, ttl, replicas)).await {
                Ok(Ok(s)) => store = Some(s),
                Ok(Err(e)) => note(&mut failing, &format!("{e:#}")),
                Err(_) => note(&mut failing, "opening the lease bucket timed out"),
            }
        }
        if let Some(kv) = &store {
            let value = match serde_json::to_vec(&*info.borrow()) {
                Ok(v) => bytes::Bytes::from(v),
                Err(e) => {
                    tracing::error!("node heartbeat: {e}");
                    return;
                }
            };
            match tokio::time::timeout(third, kv.put(&key, value)).await {
                Ok(Ok(_)) => failing = false,
                Ok(Err(e)) => {
                    note(&mut failing, &format!("writing {key}: {e}"));
                    store = None;
                }
                Err(_) => {
                    note(&mut failing, &format!("writing {key} timed out"));
                    store = None;
                }
            }
        }
        if pause(third, &mut stop).await {
            break;
        }
    }
    if let Some(kv) = store {
        let _ = tokio::time::timeout(third, kv.delete(&key)).await;
    }
}

fn note(failing: &mut bool, what: &str) {
    if *failing {
        tracing::debug!("node heartbeat: {what}");
    } else {
        tracing::warn!("node heartbeat failed (retrying every third of the TTL): {what}");
    }
    *failing = true;
}

/// One node as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// What it said about itself (`None` for a worker seen only through its worker
    /// heartbeat, e.g. a node of an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<NodeInfo>,
    /// Milliseconds since its last heartbeat was stored (by the server's clock against
    /// the reader's).
    pub last_seen_ms: u64,
    /// Whether it runs a worker (its `worker.<node>` heartbeat is live).
    pub worker: bool,
    /// The partitions it owns.
    pub partitions: Vec<u32>,
    /// The subscriptions whose event WebSocket it holds (ingress leader).
    pub leading: Vec<String>,
}

impl NodeStatus {
    /// The role it reported, or `worker` when it only has a worker heartbeat.
    pub fn role(&self) -> &str {
        match &self.info {
            Some(info) => &info.role,
            None if self.worker => "worker",
            None => "?",
        }
    }
}

/// The holder of one subscription's event WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressLease {
    /// The subscription (as in its lease key `ingress.<subscription>`).
    pub subscription: String,
    /// The node holding it.
    pub holder: String,
    /// The lease entry's revision (it grows with every renewal).
    pub revision: u64,
}

/// One RTMS stream recorded in the cluster's stream state bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The partition of its meeting.
    pub partition: u32,
    /// Its stream id.
    pub stream_id: String,
    /// The meeting it belongs to, when its state names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting: Option<String>,
    /// The worker owning its partition (so running it), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The stored state as is (its shape belongs to the RTMS state module).
    #[serde(default)]
    pub state: serde_json::Value,
}

/// The cluster as one snapshot of the lease bucket saw it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// The partition count (from the nodes' heartbeats; the default when none says).
    pub partitions: u32,
    /// The nodes, by name.
    pub nodes: Vec<NodeStatus>,
    /// The ingress leases, by subscription.
    pub ingress: Vec<IngressLease>,
    /// Each owned partition's owner (partitions missing here have none right now).
    pub owners: BTreeMap<u32, String>,
    /// The RTMS streams recorded, by partition and id.
    pub streams: Vec<StreamStatus>,
}

impl ClusterStatus {
    /// The node owning `partition`, if any.
    pub fn owner_of_partition(&self, partition: u32) -> Option<&str> {
        self.owners.get(&partition).map(String::as_str)
    }

    /// The partition of `meeting` in this cluster.
    pub fn partition_of_meeting(&self, meeting: &str) -> u32 {
        super::partition::of_meeting(Some(meeting), self.partitions.max(1))
    }

    /// The node delivering `meeting`'s events now (its partition's owner), if any.
    pub fn owner_of_meeting(&self, meeting: &str) -> Option<&str> {
        self.owner_of_partition(self.partition_of_meeting(meeting))
    }

    /// The node named `node`, if it is live.
    pub fn node(&self, node: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// Partitions no live worker owns now.
    pub fn unowned(&self) -> Vec<u32> {
        (0..self.partitions)
            .filter(|p| !self.owners.contains_key(p))
            .collect()
    }
}

/// `0-5,9,12-13`: sorted numbers as compact ranges (`-` for none).
pub fn ranges(numbers: &[u32]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "-".to_string()
    } else {
        out.join(",")
    }
}

fn duration_text(ms: u64) -> String {
    let s = ms / 1000;
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

impl fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unowned = self.unowned();
        writeln!(
            f,
            "cluster: {} node(s), {} partitions ({} owned, {} unowned), {} ingress lease(s), {} RTMS stream(s)",
            self.nodes.len(),
            self.partitions,
            self.owners.len(),
            unowned.len(),
            self.ingress.len(),
            self.streams.len()
        )?;
        writeln!(
            f,
            "{:<20} {:<8} {:>7} {:<8} {:>7} {:>6} {:>5}  {:<20} ADMIN",
            "NODE", "ROLE", "PID", "VERSION", "UP", "SEEN", "PARTS", "OWNS"
        )?;
        for n in &self.nodes {
            let (pid, version, up, admin) = match &n.info {
                Some(i) => (
                    i.pid.to_string(),
                    i.version.clone(),
                    duration_text(self.taken_at_ms.saturating_sub(i.started_at_ms)),
                    i.admin_url.clone().unwrap_or_else(|| "-".into()),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let mut owns = ranges(&n.partitions);
            if !n.leading.is_empty() {
                owns = if n.partitions.is_empty() {
                    format!("ingress leader ({})", n.leading.join(","))
                } else {
                    format!("{owns}; ingress leader")
                };
            }
            writeln!(
                f,
                "{:<20} {:<8} {:>7} {:<8} {:>7} {:>6} {:>5}  {:<20} {}",
                n.node,
                n.role(),
                pid,
                version,
                up,
                duration_text(n.last_seen_ms),
                n.partitions.len(),
                owns,
                admin
            )?;
        }
        for lease in &self.ingress {
            writeln!(
                f,
                "ingress {} -> {} (revision {})",
                lease.subscription, lease.holder, lease.revision
            )?;
        }
        if self.ingress.is_empty() {
            writeln!(f, "ingress: no node holds an event WebSocket lease")?;
        }
        if !unowned.is_empty() {
            writeln!(f, "unowned partitions: {}", ranges(&unowned))?;
        }
        if !self.streams.is_empty() {
            writeln!(
                f,
                "{:<10} {:<28} {:<28} OWNER",
                "PARTITION", "STREAM", "MEETING"
            )?;
            for s in &self.streams {
                writeln!(
                    f,
                    "{:<10} {:<28} {:<28} {}",
                    s.partition,
                    s.stream_id,
                    s.meeting.as_deref().unwrap_or("-"),
                    s.owner.as_deref().unwrap_or("-")
                )?;
            }
        }
        Ok(())
    }
}

/// Reads the cluster's status from the lease bucket (and the RTMS stream states). A
/// cluster with no bucket yet (no node ever started) reads as empty.
pub async fn snapshot(js: &jetstream::Context) -> anyhow::Result<ClusterStatus> {
    let now = SystemTime::now();
    let mut status = ClusterStatus {
        taken_at_ms: unix_ms(now),
        partitions: crate::config::cluster::DEFAULT_PARTITIONS,
        ..Default::default()
    };
    let store = match js.get_key_value(super::LEASE_BUCKET).await {
        Ok(store) => store,
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            // No bucket: either none was made yet or the server is unreachable; tell
            // them apart by asking the server something cheap.
            js.query_account()
                .await
                .with_context(|| format!("reading the bucket {}", super::LEASE_BUCKET))?;
            return Ok(status);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening the bucket {}", super::LEASE_BUCKET))
        }
    };
    let entries = read_all(&store).await?;
    let mut nodes: BTreeMap<String, NodeStatus> = BTreeMap::new();
    let mut workers: BTreeSet<String> = BTreeSet::new();
    let age = |created: SystemTime| {
        now.duration_since(created)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    let entry_node = |nodes: &mut BTreeMap<String, NodeStatus>, name: &str| {
        nodes
            .entry(name.to_string())
            .or_insert_with(|| NodeStatus {
                node: name.to_string(),
                info: None,
                last_seen_ms: u64::MAX,
                worker: false,
                partitions: Vec::new(),
                leading: Vec::new(),
            })
            .node
            .clone()
    };
    let mut partitions_seen = None;
    for (key, value, revision, created) in &entries {
        let text = String::from_utf8_lossy(value).to_string();
        if let Some(name) = key.strip_prefix("node.") {
            let Ok(info) = serde_json::from_slice::<NodeInfo>(value) else {
                tracing::debug!(key, "cluster status: unreadable node heartbeat");
                continue;
            };
            partitions_seen = partitions_seen.max(Some(info.partitions));
            // Keyed by the sanitised name the worker and lease keys use too.
            let _ = name;
            let node = info.node.clone();
            entry_node(&mut nodes, &node);
            if let Some(n) = nodes.get_mut(&node) {
                n.last_seen_ms = n.last_seen_ms.min(age(*created));
                n.info = Some(info);
            }
        } else if key.starts_with("worker.") {
            // The value is the node's name.
            let node = entry_node(&mut nodes, &text);
            workers.insert(node.clone());
            if let Some(n) = nodes.get_mut(&node) {
                n.worker = true;
                n.last_seen_ms = n.last_seen_ms.min(age(*created));
            }
        } else if let Some(subscription) = key.strip_prefix("ingress.") {
            status.ingress.push(IngressLease {
                subscription: subscription.to_string(),
                holder: text.clone(),
                revision: *revision,
            });
            let node = entry_node(&mut nodes, &text);
            if let Some(n) = nodes.get_mut(&node) {
                n.leading.push(subscription.to_string());
            }
        } else if let Some(n) = key.strip_prefix("partition.") {
            if let Ok(p) = n.parse::<u32>() {
                status.owners.insert(p, text.clone());
                let node = entry_node(&mut nodes, &text);
                if let Some(n) = nodes.get_mut(&node) {
                    n.partitions.push(p);
                }
            }
        }
    }
    if let Some(p) = partitions_seen {
        status.partitions = p;
    }
    status.nodes = nodes
        .into_values()
        .map(|mut n| {
            if n.last_seen_ms == u64::MAX {
                // Known only as a lease holder: its heartbeat expired or never existed.
                n.last_seen_ms = 0;
            }
            n.partitions.sort_unstable();
            n
        })
        .collect();
    status
        .ingress
        .sort_by(|a, b| a.subscription.cmp(&b.subscription));
    status.streams = read_streams(js, &status).await?;
    Ok(status)
}

/// `(key, value, revision, stored at)` of every live key of `store`.
async fn read_all(
    store: &kv::Store,
) -> anyhow::Result<Vec<(String, bytes::Bytes, u64, SystemTime)>> {
    let mut keys = store
        .keys()
        .await
        .with_context(|| format!("listing the bucket {}", super::LEASE_BUCKET))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        names.push(key.with_context(|| format!("listing the bucket {}", super::LEASE_BUCKET))?);
    }
    let reads = futures_util::stream::iter(names.into_iter().map(|key| {
        let store = store.clone();
        async move {
            let entry = store
                .entry(&key)
                .await
                .with_context(|| format!("reading {key} in {}", super::LEASE_BUCKET))?;
            anyhow::Ok(entry.map(|e| {
                let created = UNIX_EPOCH
                    + Duration::from_nanos(e.created.unix_timestamp_nanos().max(0) as u64);
                (key, e.value, e.revision, created)
            }))
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut out = Vec::new();
    for read in reads {
        // A key deleted between the listing and the read is simply gone.
        if let Some(entry) = read? {
            if !entry.1.is_empty() {
                out.push(entry);
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The bucket of RTMS stream states, keyed `<partition>.<stream id>`.
const RTMS_STATE_BUCKET: &str = super::rtms_state::RTMS_BUCKET;

/// The RTMS streams recorded in the stream state bucket (none when it does not exist).
async fn read_streams(
    js: &jetstream::Context,
    status: &ClusterStatus,
) -> anyhow::Result<Vec<StreamStatus>> {
    let Ok(store) = js.get_key_value(RTMS_STATE_BUCKET).await else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut keys = store
        .keys()
        .await
        .with_context(|| format!("listing the bucket {RTMS_STATE_BUCKET}"))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        names.push(key.with_context(|| format!("listing the bucket {RTMS_STATE_BUCKET}"))?);
    }
    for key in names {
        let Some((partition, stream_id)) = key.split_once('.') else {
            continue;
        };
        let Ok(partition) = partition.parse::<u32>() else {
            continue;
        };
        let Ok(Some(value)) = store.get(&key).await else {
            continue;
        };
        let state: serde_json::Value =
            serde_json::from_slice(&value).unwrap_or(serde_json::Value::Null);
        let meeting = ["meeting_uuid", "meeting_id", "meeting"]
            .iter()
            .find_map(|k| state.get(k).and_then(|v| v.as_str()).map(str::to_string));
        out.push(StreamStatus {
            partition,
            stream_id: stream_id.to_string(),
            meeting,
            owner: status.owner_of_partition(partition).map(str::to_string),
            state,
        });
    }
    out.sort_by(|a, b| (a.partition, &a.stream_id).cmp(&(b.partition, &b.stream_id)));
    Ok(out)
}

/// Connects with `config`'s URL and credentials and takes a [`snapshot`].
pub async fn snapshot_at(config: &ClusterConfig) -> anyhow::Result<ClusterStatus> {
    let client = super::connect(config).await?;
    snapshot(&jetstream::new(client))
        .await
        .with_context(|| format!("at NATS {}", config.nats_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[]), "-");
        assert_eq!(ranges(&[3, 0, 1, 2, 5, 9, 10]), "0-3,5,9-10");
        assert_eq!(ranges(&[7]), "7");
    }

    #[test]
    fn a_status_round_trips_and_prints_a_table() {
        let mut owners = BTreeMap::new();
        owners.insert(0, "w1".to_string());
        owners.insert(1, "w1".to_string());
        owners.insert(2, "w2".to_string());
        let status = ClusterStatus {
            taken_at_ms: 100_000,
            partitions: 4,
            nodes: vec![
                NodeStatus {
                    node: "in1".into(),
                    info: Some(NodeInfo {
                        node: "in1".into(),
                        role: "ingress".into(),
                        version: "0.1.0".into(),
                        pid: 42,
                        started_at_ms: 40_000,
                        partitions: 4,
                        admin_url: Some("http://127.0.0.1:9000".into()),
                    }),
                    last_seen_ms: 300,
                    worker: false,
                    partitions: vec![],
                    leading: vec!["sub".into()],
                },
                NodeStatus {
                    node: "w1".into(),
                    info: None,
                    last_seen_ms: 100,
                    worker: true,
                    partitions: vec![0, 1],
                    leading: vec![],
                },
            ],
            ingress: vec![IngressLease {
                subscription: "sub".into(),
                holder: "in1".into(),
                revision: 7,
            }],
            owners,
            streams: vec![],
        };
        let json = serde_json::to_string(&status).unwrap();
        let back: ClusterStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status);
        let text = status.to_string();
        assert!(text.contains("3 owned, 1 unowned"), "{text}");
        assert!(text.contains("ingress sub -> in1"), "{text}");
        assert!(text.contains("unowned partitions: 3"), "{text}");
        assert!(text.contains("http://127.0.0.1:9000"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("w1 ") && l.contains("worker") && l.contains("0-1")),
            "{text}"
        );
        assert_eq!(status.owner_of_partition(2), Some("w2"));
        assert_eq!(
            status.owner_of_meeting("m"),
            status.owner_of_partition(status.partition_of_meeting("m"))
        );
        assert_eq!(node_key("a.b"), "node.a_b");
    }
}
