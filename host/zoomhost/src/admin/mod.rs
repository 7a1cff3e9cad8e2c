//! The admin HTTP listener (`[admin] bind`, loopback by default; see
//! [`crate::config::admin`]): what an operator, a supervisor, a load balancer and
//! Prometheus ask a running host.
//!
//! | route | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text (OpenMetrics when asked for), [`metrics`] |
//! | `GET /healthz` | 200 while the process serves HTTP |
//! | `GET /readyz` | 200, or 503 with a JSON body naming what is not ready ([`readiness`]) |
//! | `GET /v1/plugins`, `/v1/streams`, `/v1/sources`, `/v1/cluster` | JSON views ([`api`]) |
//! | `POST /v1/plugins/NAME/reload\|enable\|disable` | act on a plugin ([`api`]) |
//!
//! Off loopback every request needs `Authorization: Bearer <admin.token>` (the config is
//! rejected without one); on loopback only when a token is set. The probes (`/healthz`,
//! `/readyz`) answer without one: load balancers and supervisors send no credentials, and
//! they reveal no counters. [`status`] is the client behind `zoomhost status`.
//!
//! Nothing here sits on the data path: the metrics are read from the counters the
//! runtime and the sources keep anyway, at scrape time ([`HostView`]). The only per-frame
//! work is in [`streams`] (one relaxed add on a per-stream counter) and the runtime's call
//! histogram.

pub mod api;
pub mod metrics;
pub mod process;
pub mod readiness;
pub mod server;
pub mod status;
pub mod streams;

use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use zoomhost_runtime::PluginHost;
use zoomhost_zoom::rtms::RtmsManager;
use zoomhost_zoom::webhook::WebhookReceiver;

use crate::config::Role;
use crate::host::EventStreamWatch;
use crate::inputs::Inputs;

pub use server::AdminServer;
pub use streams::StreamRegistry;

/// Where the event WebSocket client of this node is, when it runs one: standalone, the
/// one client; on a cluster ingress node, the current term's (replaced at each term).
pub type EventStreamSlot = Arc<RwLock<Option<EventStreamWatch>>>;

/// What the admin API reads: shared handles into the running host.
#[derive(Clone)]
pub struct HostView {
    /// The plugin runtime.
    pub plugins: Arc<PluginHost>,
    /// The input path (duplicates dropped per source).
    pub inputs: Arc<Inputs>,
    /// The RTMS streams, as recorded on their way to the router.
    pub streams: Arc<StreamRegistry>,
    /// The RTMS client, when it runs on this node.
    pub rtms: Option<Arc<RtmsManager>>,
    /// The event WebSocket client, when this node is configured to run one.
    pub websocket: Option<EventStreamSlot>,
    /// The webhook receiver, when it runs on this node.
    pub webhook: Option<Arc<WebhookReceiver>>,
    /// This node's cluster membership, when it has one.
    pub cluster: Option<ClusterView>,
    /// Turns true when the host starts shutting down.
    pub stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for HostView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostView")
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

/// A cluster member, as the admin API sees it.
#[derive(Clone)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Whether it holds the ingress lease (leads the event WebSocket) now.
    pub leading: watch::Receiver<bool>,
    /// Its NATS connection.
    pub nats: async_nats::Client,
    /// Its JetStream context (for the cluster status snapshot).
    pub jetstream: async_nats::jetstream::Context,
    /// The partitions its worker owns now.
    pub owned: watch::Receiver<std::collections::BTreeSet<u32>>,
    /// Its publisher's counters (ingress roles).
    pub publish: Option<Arc<crate::cluster::publish::PublishStats>>,
    /// Its worker's counters (worker roles).
    pub worker: Option<Arc<crate::cluster::worker::WorkerStats>>,
}

impl HostView {
    /// The event WebSocket client's state and counters now, if one runs.
    pub fn event_stream(&self) -> Option<EventStreamWatch> {
        self.websocket
            .as_ref()?
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
