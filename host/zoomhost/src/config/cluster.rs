//! The `[cluster]` section: makes a host a member of a NATS JetStream cluster.
//!
//! ```toml
//! [cluster]
//! nats_url = "nats://127.0.0.1:4222"   # one URL, or several separated by commas
//! role = "ingress"                     # "ingress" | "worker" | "all"
//! node = "ingress-1"                   # default: hostname-pid
//! # credentials: at most one of these kinds
//! user = "zoomhost"
//! password = "${NATS_PASSWORD}"
//! # token = "${NATS_TOKEN}"
//! # creds_file = "/etc/zoomhost/nats.creds"
//! lease_ttl_ms = 5000                  # ingress lease; renewed every third of it
//! partitions = 64                      # fixed for the life of a cluster
//! duplicate_window_s = 3900            # JetStream dedupe window (65 min: Zoom's last retry is at 60)
//! publish_attempts = 8                 # per event, with backoff, before it is logged as lost
//! accept_timeout_ms = 2500             # a webhook is answered 503 unless JetStream acked within it
//! max_pending = 100000                 # events waiting for JetStream at most (NATS down)
//! replicas = 1                         # copies JetStream keeps of the stream and buckets (1..=5)
//! ```
//!
//! Without the section nothing of the cluster runs and no NATS is needed. Secrets
//! (password, token) are [`Secret`]s: never printed by `Debug`, never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// The default lease time-to-live of the ingress lease.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// The default number of event partitions (subjects `zoomhost.events.0` to `.63`).
pub const DEFAULT_PARTITIONS: u32 = 64;
/// The default JetStream duplicate window: 65 minutes, past Zoom's last webhook retry
/// (5, 20 and 60 minutes after the first delivery).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(65 * 60);

/// The default number of copies JetStream keeps of the event stream and the buckets: one,
/// which a single `nats-server` can hold. Use 3 with a cluster of 3 JetStream servers.
pub const DEFAULT_REPLICAS: usize = 1;
/// The most copies JetStream allows of a stream.
pub const MAX_REPLICAS: usize = 5;

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives Zoom's events (event WebSocket under the lease, webhooks) and publishes
    /// them to JetStream.
    Ingress,
    /// Runs plugins for the partitions it owns (see `cluster::worker`).
    Worker,
    /// Both: ingress publishing to JetStream, and a worker delivering what it consumes.
    All,
}

impl Role {
    /// Whether this node receives Zoom events and publishes them.
    pub fn is_ingress(self) -> bool {
        matches!(self, Role::Ingress | Role::All)
    }

    /// Whether this node runs plugins for the partitions it owns.
    pub fn is_worker(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
}

/// How the node authenticates to NATS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClusterAuth {
    /// No credentials.
    #[default]
    None,
    /// A user name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A token.
    Token(Secret),
    /// A `.creds` file (JWT and NKey seed).
    CredsFile(PathBuf),
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Credentials.
    pub auth: ClusterAuth,
    /// This node's name (unique in the cluster; shown in leases).
    pub node: String,
    /// What this node does.
    pub role: Role,
    /// Time-to-live of the ingress lease; the holder renews every third of it.
    pub lease_ttl: Duration,
    /// Number of event partitions.
    pub partitions: u32,
    /// JetStream's duplicate window for the event stream.
    pub duplicate_window: Duration,
    /// Attempts to publish one event before it is logged as lost.
    pub publish_attempts: u32,
    /// How long an ingress node waits for JetStream to acknowledge a webhook's event
    /// before answering Zoom 503 (Zoom wants an answer within 3 s).
    pub accept_timeout: Duration,
    /// How many accepted events may wait for JetStream's acknowledgement on an ingress
    /// node (while NATS is unreachable); past it webhooks are answered 503 and WebSocket
    /// events are dropped and counted.
    pub max_pending: usize,
    /// How many copies JetStream keeps of the event stream, the key-value buckets and the
    /// plugin object store (each on a different server of the NATS cluster). Every node
    /// of a cluster must use the same; the last node to start sets it.
    pub replicas: usize,
}

/// How long a webhook waits for JetStream's acknowledgement by default.
pub const DEFAULT_ACCEPT_TIMEOUT: Duration = Duration::from_millis(2500);

impl ClusterConfig {
    /// A config for `nats_url` with every default (role `all`).
    pub fn new(nats_url: impl Into<String>, role: Role) -> Self {
        Self {
            nats_url: nats_url.into(),
            auth: ClusterAuth::None,
            node: default_node_name(),
            role,
            lease_ttl: DEFAULT_LEASE_TTL,
            partitions: DEFAULT_PARTITIONS,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            publish_attempts: 8,
            accept_timeout: DEFAULT_ACCEPT_TIMEOUT,
            max_pending: crate::cluster::publish::DEFAULT_MAX_PENDING,
            replicas: DEFAULT_REPLICAS,
        }
    }
}

/// The keys of `[cluster]` whose values differ between `a` and `b` (credentials as
/// `credentials`, never their values).
pub fn changed_keys(a: &ClusterConfig, b: &ClusterConfig) -> Vec<&'static str> {
    // Destructured so that a new field cannot be left out here.
    let ClusterConfig {
        nats_url: _,
        auth: _,
        node: _,
        role: _,
        lease_ttl: _,
        partitions: _,
        duplicate_window: _,
        publish_attempts: _,
        accept_timeout: _,
        max_pending: _,
        replicas: _,
    } = a;
    let mut keys = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            keys.push(key);
        }
    };
    check("nats_url", a.nats_url != b.nats_url);
    check("credentials", a.auth != b.auth);
    check("node", a.node != b.node);
    check("role", a.role != b.role);
    check("lease_ttl_ms", a.lease_ttl != b.lease_ttl);
    check("partitions", a.partitions != b.partitions);
    check(
        "duplicate_window_s",
        a.duplicate_window != b.duplicate_window,
    );
    check("publish_attempts", a.publish_attempts != b.publish_attempts);
    check("accept_timeout_ms", a.accept_timeout != b.accept_timeout);
    check("max_pending", a.max_pending != b.max_pending);
    check("replicas", a.replicas != b.replicas);
    keys
}

/// `hostname-pid`.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}", std::process::id())
}

/// The raw `[cluster]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    nats_url: Option<String>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    creds_file: Option<PathBuf>,
    node: Option<String>,
    role: Option<String>,
    lease_ttl_ms: Option<u64>,
    partitions: Option<u32>,
    duplicate_window_s: Option<u64>,
    publish_attempts: Option<u32>,
    accept_timeout_ms: Option<u64>,
    max_pending: Option<usize>,
    replicas: Option<usize>,
}

/// Validates the raw section; each problem names its key (`cluster.KEY`).
pub fn resolve(
    raw: Option<RawCluster>,
    base: &Path,
    expand: &dyn Fn(&str) -> Result<String, String>,
    problems: &mut Vec<String>,
) -> Option<ClusterConfig> {
    let raw = raw?;
    let mut field = |key: &str, value: Option<String>| -> Option<String> {
        let value = value?;
        match expand(&value) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("cluster.{key}: {e}"));
                None
            }
        }
    };
    let nats_url = field("nats_url", raw.nats_url);
    let user = field("user", raw.user);
    let password = field("password", raw.password);
    let token = field("token", raw.token);
    let node = field("node", raw.node);
    let role = field("role", raw.role);

    let nats_url = match nats_url {
        Some(url) if !url.trim().is_empty() => url,
        _ => {
            problems.push("cluster.nats_url: required (e.g. \"nats://127.0.0.1:4222\")".into());
            String::new()
        }
    };
    let role = match role.as_deref() {
        None => {
            problems.push("cluster.role: required: \"ingress\", \"worker\" or \"all\"".into());
            Role::All
        }
        Some("ingress") => Role::Ingress,
        Some("worker") => Role::Worker,
        Some("all") => Role::All,
        Some(other) => {
            problems.push(format!(
                "cluster.role: \"{other}\" is not \"ingress\", \"worker\" or \"all\""
            ));
            Role::All
        }
    };
    let kinds = [
        user.is_some() || password.is_some(),
        token.is_some(),
        raw.creds_file.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds > 1 {
        problems.push(
            "cluster: give one kind of credentials: user/password, token or creds_file".into(),
        );
    }
    let auth = match (user, password, token, raw.creds_file) {
        (Some(user), Some(password), _, _) => ClusterAuth::UserPassword {
            user,
            password: Secret::new(password),
        },
        (Some(_), None, _, _) => {
            problems.push("cluster.password: required with cluster.user".into());
            ClusterAuth::None
        }
        (None, Some(_), _, _) => {
            problems.push("cluster.user: required with cluster.password".into());
            ClusterAuth::None
        }
        (None, None, Some(token), _) => ClusterAuth::Token(Secret::new(token)),
        (None, None, None, Some(path)) => ClusterAuth::CredsFile(if path.is_relative() {
            base.join(path)
        } else {
            path
        }),
        (None, None, None, None) => ClusterAuth::None,
    };
    let node = match node {
        Some(n) if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == '.') => {
            problems.push(format!(
                "cluster.node: \"{n}\" must be non-empty, without spaces or dots"
            ));
            n
        }
        Some(n) => n,
        None => default_node_name(),
    };
    let lease_ttl = Duration::from_millis(raw.lease_ttl_ms.unwrap_or(5000));
    if lease_ttl < Duration::from_millis(300) || lease_ttl > Duration::from_secs(7) {
        problems.push(format!(
            "cluster.lease_ttl_ms: {} is outside 300..=7000 (a standby takes over within TTL + TTL/3, which must stay under 10 s)",
            lease_ttl.as_millis()
        ));
    }
    let partitions = raw.partitions.unwrap_or(DEFAULT_PARTITIONS);
    if partitions == 0 || partitions > 4096 {
        problems.push(format!(
            "cluster.partitions: {partitions} is outside 1..=4096"
        ));
    }
    let duplicate_window = raw
        .duplicate_window_s
        .map_or(DEFAULT_DUPLICATE_WINDOW, Duration::from_secs);
    if duplicate_window.is_zero() {
        problems.push("cluster.duplicate_window_s: must be positive".into());
    }
    let publish_attempts = raw.publish_attempts.unwrap_or(8);
    if publish_attempts == 0 {
        problems.push("cluster.publish_attempts: must be at least 1".into());
    }
    let accept_timeout = raw
        .accept_timeout_ms
        .map_or(DEFAULT_ACCEPT_TIMEOUT, Duration::from_millis);
    if accept_timeout.is_zero() || accept_timeout >= Duration::from_secs(3) {
        problems.push(format!(
            "cluster.accept_timeout_ms: {} is outside 1..3000 (Zoom wants an answer within 3 s)",
            accept_timeout.as_millis()
        ));
    }
    let max_pending = raw
        .max_pending
        .unwrap_or(crate::cluster::publish::DEFAULT_MAX_PENDING);
    if max_pending == 0 {
        problems.push("cluster.max_pending: must be at least 1".into());
    }
    let replicas = raw.replicas.unwrap_or(DEFAULT_REPLICAS);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        problems.push(format!(
            "cluster.replicas: {replicas} is outside 1..={MAX_REPLICAS} (JetStream keeps at most {MAX_REPLICAS} copies; use 3 with a 3-server NATS cluster)"
        ));
    }
    Some(ClusterConfig {
        nats_url,
        auth,
        node,
        role,
        lease_ttl,
        partitions,
        duplicate_window,
        publish_attempts,
        accept_timeout,
        max_pending,
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<ClusterConfig>, Vec<String>> {
        #[derive(Deserialize)]
        struct File {
            cluster: Option<RawCluster>,
        }
        let file: File = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let expand = |v: &str| super::super::expand_env(v, &|k| (k == "PW").then(|| "pw".into()));
        let c = resolve(file.cluster, Path::new("/etc/zh"), &expand, &mut problems);
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn no_section_is_no_cluster() {
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn a_full_section_parses_and_hides_its_secrets() {
        let c = parse(
            "[cluster]\nnats_url = \"nats://h:4222\"\nrole = \"ingress\"\nnode = \"n1\"\n\
             user = \"u\"\npassword = \"${PW}\"\nlease_ttl_ms = 2000\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.role, Role::Ingress);
        assert_eq!(c.node, "n1");
        assert_eq!(c.lease_ttl, Duration::from_secs(2));
        assert_eq!(c.partitions, 64);
        assert_eq!(c.duplicate_window, Duration::from_secs(3900));
        assert_eq!(c.replicas, 1, "one copy by default");
        assert!(
            matches!(&c.auth, ClusterAuth::UserPassword { password, .. } if password.expose() == "pw")
        );
        assert!(!format!("{c:?}").contains("pw\""), "{c:?}");
        let creds =
            parse("[cluster]\nnats_url = \"n\"\nrole = \"all\"\ncreds_file = \"a.creds\"\n")
                .unwrap()
                .unwrap();
        assert_eq!(creds.auth, ClusterAuth::CredsFile("/etc/zh/a.creds".into()));
        assert!(creds.node.contains(&std::process::id().to_string()));
    }

    #[test]
    fn problems_name_their_keys() {
        let err = parse(
            "[cluster]\nrole = \"boss\"\ntoken = \"t\"\nuser = \"u\"\nlease_ttl_ms = 20000\npartitions = 0\n",
        )
        .unwrap_err()
        .join("\n");
        for key in [
            "cluster.nats_url",
            "cluster.role",
            "cluster.lease_ttl_ms",
            "cluster.partitions",
            "cluster.password",
            "one kind of credentials",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
        let unknown = parse("[cluster]\nnats = \"x\"\n").unwrap_err().join("\n");
        assert!(unknown.contains("nats"), "{unknown}");
    }

    #[test]
    fn replicas_are_read_and_bounded() {
        let section = |replicas: &str| {
            format!("[cluster]\nnats_url = \"n\"\nrole = \"all\"\nreplicas = {replicas}\n")
        };
        assert_eq!(parse(&section("3")).unwrap().unwrap().replicas, 3);
        assert_eq!(parse(&section("5")).unwrap().unwrap().replicas, 5);
        for bad in ["0", "6"] {
            let err = parse(&section(bad)).unwrap_err().join("\n");
            assert!(err.contains("cluster.replicas"), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let negative = parse(&section("-1")).unwrap_err().join("\n");
        assert!(negative.contains("replicas"), "{negative}");
    }
}
