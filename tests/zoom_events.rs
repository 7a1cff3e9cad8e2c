//! End to end: the event WebSocket client against the simulator over loopback, with the
//! real OAuth token manager and simulated OAuth endpoint, delivering into a real recorder
//! plugin.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use zoomhost_sim::events::{ConnectionEnd, EventFault, EventSim, EventSimConfig, Scenario};
use zoomhost_sim::oauth::{OAuthSim, OAuthSimConfig};
use zoomhost_zoom::events::{ConnectionState, EventStream, EventStreamConfig, EventStreamStats};
use zoomhost_zoom::oauth::{Grant, OAuthConfig, RetryPolicy, TokenManager};
use zoomhost_zoom::{AccessToken, TokenSource};

const WAIT: Duration = Duration::from_secs(30);
const CLIENT_ID: &str = "test-client-id";
const CLIENT_SECRET: &str = "test-client-secret-4f9a7c";
const ACCOUNT_ID: &str = "test-account";
const SUBSCRIPTION: &str = "sub-123";

/// Remembers every token it hands out, so tests can look for them in logs.
struct Recording {
    inner: TokenManager,
    seen: Mutex<Vec<String>>,
}

impl TokenSource for Recording {
    fn token(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<AccessToken>> + Send + '_>>
    {
        Box::pin(async move {
            let token = self.inner.get().await?;
            self.seen.lock().unwrap().push(token.secret.clone());
            Ok(token)
        })
    }

    fn invalidate(&self, token: &AccessToken) {
        self.inner.invalidate_token(token);
    }
}

/// The OAuth sim, the event sim, a host with one recorder, and a running client.
struct Rig {
    t: TestHost,
    oauth: OAuthSim,
    sim: EventSim,
    tokens: Arc<Recording>,
    stats: Arc<EventStreamStats>,
    state: tokio::sync::watch::Receiver<ConnectionState>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn client_config(sim: &EventSim) -> EventStreamConfig {
    let mut config = EventStreamConfig::new(sim.url(), SUBSCRIPTION);
    config.heartbeat = Duration::from_millis(100);
    config.silence_timeout = Duration::from_millis(500);
    config.reconnect_jitter = Duration::from_millis(20);
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(400);
    config.healthy_after = Duration::from_millis(300);
    config.connect_timeout = Duration::from_secs(5);
    config
}

async fn rig(expires_in: u64, tune: impl FnOnce(&mut EventStreamConfig)) -> Rig {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let oauth = OAuthSim::start(OAuthSimConfig {
        client_id: CLIENT_ID.to_string(),
        client_secret: CLIENT_SECRET.to_string(),
        account_id: ACCOUNT_ID.to_string(),
        expires_in,
    })
    .await
    .unwrap();
    let sim_config = EventSimConfig {
        subscription_id: Some(SUBSCRIPTION.to_string()),
        silence_timeout: Duration::from_secs(3),
        close_at_token_expiry: true,
    };
    let sim = EventSim::start(sim_config, Arc::new(oauth.clone()))
        .await
        .unwrap();
    let mut oauth_config = OAuthConfig::new(
        oauth.url(),
        CLIENT_ID,
        zoomhost::config::Secret::new(CLIENT_SECRET),
        Grant::AccountCredentials {
            account_id: ACCOUNT_ID.to_string(),
        },
    );
    oauth_config.retry = RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retries: 10,
        max_retry_after: Duration::from_secs(1),
    };
    let tokens = Arc::new(Recording {
        inner: TokenManager::new(oauth_config).unwrap(),
        seen: Mutex::default(),
    });
    let mut config = client_config(&sim);
    tune(&mut config);
    let stream = EventStream::new(config, tokens.clone(), t.host.router().clone());
    let stats = stream.stats();
    let state = stream.state();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(stream.run(shutdown));
    Rig {
        t,
        oauth,
        sim,
        tokens,
        stats,
        state,
        stop,
        task,
    }
}

impl Rig {
    async fn connected(&self) {
        assert!(
            self.sim.wait_connected(WAIT).await,
            "client never connected"
        );
    }

    async fn shutdown(mut self) -> Self {
        self.stop.send_replace(true);
        let done = tokio::time::timeout(WAIT, &mut self.task).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "client did not stop cleanly"
        );
        assert_eq!(*self.state.borrow(), ConnectionState::Stopped);
        self
    }

    fn recorded(&self) -> Vec<String> {
        event_ids(&self.t.logs, "rec")
    }

    async fn recorded_eventually(&self, n: usize) -> Vec<String> {
        eventually(WAIT, || self.recorded().len() >= n).await;
        // A moment for anything extra (duplicates) to show up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.recorded()
    }
}

fn payload(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "account_id": "acc", "object": {"topic": "Standup", "uuid": "u=="}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_content_is_parsed_twice_and_malformed_messages_are_skipped() {
    let rig = rig(3600, |_| {}).await;
    rig.connected().await;
    let inner_not_event = serde_json::json!({"module":"message","content":"{\"no\":\"event\"}"});
    let content_not_json = serde_json::json!({"module":"message","content":"{not json"});
    let malformed = [
        "this is not json".to_string(),
        r#"{"module":"surprise","content":"x"}"#.to_string(),
        content_not_json.to_string(),
        inner_not_event.to_string(),
        format!(r#"{{"module":"message","content":"{}"}}"#, "x".repeat(5000)),
    ];
    let mut expected = Vec::new();
    for (i, bad) in malformed.iter().enumerate() {
        let id = format!("ok-{i}");
        assert!(rig.sim.push_event("meeting.started", payload(&id)).await);
        expected.push(id);
        assert!(rig.sim.push_raw(bad.clone()).await);
    }
    assert!(
        rig.sim
            .push_event("meeting.ended", payload("ok-last"))
            .await
    );
    expected.push("ok-last".to_string());

    assert_eq!(rig.recorded_eventually(expected.len()).await, expected);
    let names = rig.t.logs.lines("rec", "rec event ");
    assert!(names[0].contains("name=meeting.started"), "{names:?}");
    let stats = rig.stats.snapshot();
    assert_eq!(stats.malformed, malformed.len() as u64, "{stats:?}");
    assert_eq!(stats.events, expected.len() as u64);
    // The connection stayed up through all of it.
    assert_eq!(stats.connects, 1, "{stats:?}");
    assert_eq!(rig.sim.connections(), 1);
    rig.shutdown().await;
}

const FAULTY_SCENARIO: &str = r#"
topic = "Fault drill"
tag_ids = true

[[steps]]
kind = "wait_connected"
[[steps]]
kind = "event"
event = "meeting.started"
[[steps]]
kind = "event"
event = "meeting.participant_joined"
participant = "Ada Lovelace"
[[steps]]
kind = "event"
event = "meeting.rtms_started"

[[steps]]
kind = "drop"
[[steps]]
kind = "event"
event = "meeting.participant_joined"
participant = "Lost While Away"
[[steps]]
kind = "wait_connected"
[[steps]]
kind = "event"
event = "meeting.participant_joined"
participant = "Grace Hopper"
[[steps]]
kind = "event"
event = "meeting.participant_left"
participant = "Ada Lovelace"

[[steps]]
kind = "oauth_outage"
requests = 3
[[steps]]
kind = "invalidate_token"
[[steps]]
kind = "wait_connected"
[[steps]]
kind = "event"
event = "meeting.participant_joined"
participant = "Katherine Johnson"
[[steps]]
kind = "event"
event = "meeting.rtms_stopped"

[[steps]]
kind = "drop"
[[steps]]
kind = "wait_connected"
[[steps]]
kind = "event"
event = "meeting.participant_left"
participant = "Grace Hopper"
[[steps]]
kind = "event"
event = "meeting.ended"
[[steps]]
kind = "event"
event = "recording.completed"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_sent_while_connected_arrives_exactly_once_in_order_across_faults() {
    let rig = rig(3600, |_| {}).await;
    let scenario = Scenario::parse(FAULTY_SCENARIO).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), scenario.run(&rig.sim))
        .await
        .expect("scenario finished")
        .unwrap();
    assert_eq!(
        report.faults, 4,
        "2 drops, 1 token invalidation, 1 OAuth outage"
    );
    let sent: Vec<String> = report.sent.iter().map(|e| e.id.clone()).collect();
    assert!(
        sent.len() >= 10,
        "too few events reached a client: {sent:?}"
    );
    let mut unique = sent.clone();
    unique.dedup();
    assert_eq!(unique.len(), sent.len());

    let recorded = rig.recorded_eventually(sent.len()).await;
    assert_eq!(recorded, sent, "missed by the sim: {:?}", report.missed);

    let stats = rig.stats.snapshot();
    assert!(rig.sim.connections() >= 4, "{stats:?}");
    assert!(stats.token_refreshes >= 1, "{stats:?}");
    assert!(rig.oauth.issued() >= 2);
    // The outage was felt: more token requests than tokens.
    assert!(rig.oauth.requests() >= rig.oauth.issued() + 3);
    eprintln!(
        "faults: sent={} missed={} stats={stats:?} oauth requests={} issued={}",
        sent.len(),
        report.missed.len(),
        rig.oauth.requests(),
        rig.oauth.issued()
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_scenario_loads() {
    let path = workspace().join("host/samples/scenario.toml");
    let scenario = Scenario::load(&path).unwrap();
    assert!(scenario.tag_ids);
    assert!(scenario.steps.len() >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_cadence() {
    let rig = rig(3600, |_| {}).await;
    rig.connected().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sim0, sent0, replies0) = (
        rig.sim.heartbeats(),
        rig.stats.snapshot().heartbeats_sent,
        rig.stats.snapshot().heartbeat_replies,
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    let received = rig.sim.heartbeats() - sim0;
    let sent = rig.stats.snapshot().heartbeats_sent - sent0;
    let replies = rig.stats.snapshot().heartbeat_replies - replies0;
    eprintln!("heartbeats over {elapsed:?}: sent={sent} received={received} replies={replies}");
    // 100 ms cadence: ~10 per second. Generous bounds for a loaded machine.
    let most = elapsed.as_millis() as u64 / 100 + 2;
    assert!((4..=most).contains(&received), "received {received}");
    assert!(replies >= 3, "replies {replies}");
    // No reconnects happened: heartbeats kept the connection alive.
    assert_eq!(rig.sim.connections(), 1);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_only_across_failed_attempts_is_capped_and_an_established_connection_reconnects_at_once(
) {
    let rig = rig(3600, |_| {}).await;
    rig.connected().await;
    // Healthy for longer than `healthy_after`, so the schedule starts from the bottom.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.sim.set_refusing(true);
    rig.sim.drop_connection().await;
    assert!(
        eventually(WAIT, || rig.stats.snapshot().reconnects.len() >= 8).await,
        "too few reconnect attempts"
    );
    let reconnects = rig.stats.snapshot().reconnects;
    let attempts = rig.sim.attempts();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("reconnects {reconnects:?}\nattempt gaps {gaps:?}");
    // The wait after the established connection is jitter only (below 20 ms).
    assert_eq!(reconnects[0].failures, 0, "{reconnects:?}");
    assert!(
        reconnects[0].delay < Duration::from_millis(20),
        "{reconnects:?}"
    );
    // Then consecutive failures: 1, 2, 3, ... with doubling delays, capped at 400 ms.
    let failed = &reconnects[1..];
    for (i, r) in failed.iter().enumerate() {
        assert_eq!(r.failures, i as u32 + 1, "{reconnects:?}");
    }
    let cap = Duration::from_millis(400);
    assert!(failed.iter().all(|r| r.delay <= cap), "{reconnects:?}");
    // Doubling with up-to-100% jitter: [50,100), [100,200), then [200,400] from there on.
    assert!(failed[0].delay < failed[2].delay, "{reconnects:?}");
    assert!(
        failed[2..]
            .iter()
            .all(|r| r.delay >= Duration::from_millis(200)),
        "{reconnects:?}"
    );
    // Observed from the server: later gaps are longer than the first one.
    let last = gaps.last().copied().unwrap_or_default();
    assert!(last >= Duration::from_millis(200), "{gaps:?}");

    // Back up: the outage ends, counted with its attempts.
    rig.sim.set_refusing(false);
    rig.connected().await;
    assert!(eventually(WAIT, || rig.stats.snapshot().outages == 1).await);
    let stats = rig.stats.snapshot();
    let outage = stats.last_outage.clone().unwrap();
    assert!(outage.attempts as usize >= failed.len(), "{stats:?}");
    assert_eq!(stats.reconnect_attempts, u64::from(outage.attempts));
    assert!(
        outage.duration >= Duration::from_millis(200 * 5),
        "{outage:?}"
    );
    assert_eq!(stats.longest_outage, outage.duration);

    // Stay healthy, then drop it: reconnect at once, and a failure after that starts small.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = rig.stats.snapshot().reconnects.len();
    rig.sim.set_refusing(true);
    rig.sim.drop_connection().await;
    assert!(eventually(WAIT, || rig.stats.snapshot().reconnects.len() >= before + 2).await);
    rig.sim.set_refusing(false);
    let after = rig.stats.snapshot().reconnects[before..].to_vec();
    assert_eq!(after[0].failures, 0, "{after:?}");
    assert!(after[0].delay < Duration::from_millis(20), "{after:?}");
    assert_eq!(after[1].failures, 1, "{after:?}");
    assert!(
        after[1].delay < Duration::from_millis(100),
        "backoff not reset: {after:?}"
    );
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_is_ready_before_expiry_and_the_connection_is_never_closed_for_it() {
    // 2 s tokens: the client fetches the next one in the background and keeps the
    // connection until the server closes it at expiry, then reconnects at once.
    let rig = rig(2, |c| c.token_refresh_margin = Duration::from_millis(800)).await;
    rig.connected().await;
    assert!(
        eventually(WAIT, || rig.sim.connections() >= 4).await,
        "{:?}",
        rig.stats.snapshot()
    );
    let rig = rig.shutdown().await;
    let stats = rig.stats.snapshot();
    eprintln!(
        "stats {stats:?}\nconnections {:#?}",
        rig.sim.connection_log()
    );
    // The client closed a connection only at shutdown: no proactive reconnect.
    assert_eq!(stats.client_closes, 1, "{stats:?}");
    let log = rig.sim.connection_log();
    let ended_at_expiry = log
        .iter()
        .filter(|c| c.ended == Some(ConnectionEnd::TokenExpired))
        .count();
    assert!(ended_at_expiry >= 3, "{log:#?}");
    // One connection per token: each token was used until it expired.
    let mut tokens: Vec<&str> = log.iter().map(|c| c.token.as_str()).collect();
    let all = tokens.len();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        all,
        "a token was used for two connections: {log:#?}"
    );
    // Each reconnect after expiry was immediate: jitter only, no backoff, one attempt.
    assert!(
        stats.reconnects.iter().all(|r| r.failures == 0),
        "{stats:?}"
    );
    assert_eq!(stats.reconnect_attempts, stats.outages, "{stats:?}");
    assert!(stats.token_refreshes >= 3, "{stats:?}");
    assert_eq!(stats.token_refresh_failures, 0, "{stats:?}");
}

/// Zoom's event-side faults, back to back, with a steady stream of events and 2 s tokens
/// (so the server also closes the connection at every token expiry), and one OAuth outage
/// during a background token refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_storm_with_a_steady_stream_and_short_tokens_delivers_every_live_event_once() {
    let rig = rig(2, |c| c.token_refresh_margin = Duration::from_millis(800)).await;
    rig.connected().await;
    let steady = rig
        .sim
        .steady_stream("meeting.participant_qos", Duration::from_millis(20));
    let oauth_down = Duration::from_millis(600);
    let faults = [
        EventFault::Drop,
        EventFault::Close(1001),
        EventFault::TokenExpiry { oauth_down },
        EventFault::Stall(Duration::from_millis(1000)),
        EventFault::Drop,
        EventFault::TokenExpiry { oauth_down },
        EventFault::Close(1001),
        EventFault::Stall(Duration::from_millis(1000)),
    ];
    for (i, fault) in faults.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            rig.sim.wait_connected(WAIT).await,
            "not back before fault {i}"
        );
        rig.sim.inject(fault).await;
        if i == 3 {
            // An OAuth outage while the connection is up: the background refresh retries,
            // the connection stays.
            rig.sim.oauth_outage_for(Duration::from_millis(700), 500);
        }
    }
    // A quiet spell: the server closes at each natural token expiry.
    let expiries = |sim: &EventSim| {
        sim.connection_log()
            .iter()
            .filter(|c| c.ended == Some(ConnectionEnd::TokenExpired))
            .count()
    };
    let forced = expiries(&rig.sim);
    assert!(eventually(WAIT, || expiries(&rig.sim) >= forced + 2).await);
    assert!(rig.sim.wait_connected(WAIT).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    steady.stop().await;
    let sent: Vec<String> = rig.sim.sent().iter().map(|e| e.id.clone()).collect();
    let missed = rig.sim.missed().len();
    let recorded = rig.recorded_eventually(sent.len()).await;
    let rig = rig.shutdown().await;

    let stats = rig.stats.snapshot();
    let log = rig.sim.connection_log();
    eprintln!(
        "storm: {} pushed, {} sent while connected, {missed} missed while down; {} connections; \
         outages {} (total {:?}, longest {:?}); stats {stats:?}",
        steady.pushed(),
        sent.len(),
        log.len(),
        stats.outages,
        stats.outage_total,
        stats.longest_outage
    );
    // Every event sent while a connection was live arrived exactly once, in order.
    assert!(sent.len() > 100, "{}", sent.len());
    assert_eq!(recorded, sent, "missed while down: {missed}");

    // No connection ended by the client's own choice, except silent (stalled) ones and
    // the last one at shutdown: no proactive reconnect, not even for a token.
    let (last, earlier) = log.split_last().unwrap();
    assert_eq!(last.ended, Some(ConnectionEnd::ClientClosed), "{last:?}");
    for c in earlier {
        let by_server = matches!(
            c.ended,
            Some(
                ConnectionEnd::Dropped | ConnectionEnd::Closed(1001) | ConnectionEnd::TokenExpired
            )
        );
        assert!(by_server || c.stalled, "{c:?}\n{log:#?}");
    }
    assert_eq!(
        stats.client_closes,
        2 + 1,
        "two stalls, one shutdown: {stats:?}"
    );
    // Tokens ran out under the connections: each expiry close used a different token.
    let expired: Vec<&str> = log
        .iter()
        .filter(|c| c.ended == Some(ConnectionEnd::TokenExpired))
        .map(|c| c.token.as_str())
        .collect();
    let mut distinct = expired.clone();
    distinct.sort();
    distinct.dedup();
    assert!(expired.len() >= 4, "{log:#?}");
    assert_eq!(distinct.len(), expired.len(), "{log:#?}");

    // Every reconnect followed an established connection: jitter only, no backoff, and
    // each outage ended with its first attempt.
    assert!(
        stats
            .reconnects
            .iter()
            .all(|r| r.failures == 0 && r.delay < Duration::from_millis(20)),
        "{:?}",
        stats.reconnects
    );
    assert_eq!(stats.outages as usize, log.len() - 1, "{stats:?}");
    assert_eq!(stats.reconnect_attempts, stats.outages, "{stats:?}");
    assert!(stats.outages as usize >= faults.len());
    // Fresh tokens kept coming although the OAuth endpoint answered 500s at times (how
    // many requests met them depends on where the refreshes fell).
    assert!(stats.token_refreshes >= 3, "{stats:?}");
    eprintln!(
        "OAuth: {} requests, {} tokens issued",
        rig.oauth.requests(),
        rig.oauth.issued()
    );
}

// The subscriber is the process-wide default (a thread-local one misses records on a
// race in tracing's callsite cache when other tests run in parallel), so this test also
// sees the other tests' records: all the better for a leak check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_contain_neither_the_token_nor_the_client_secret() {
    let buffer = host_logs();

    let rig = rig(3600, |c| c.silence_timeout = Duration::from_secs(2)).await;
    rig.connected().await;
    assert!(rig.sim.push_event("meeting.started", payload("a")).await);
    // A rejected token, an OAuth retry, a malformed message and a drop.
    rig.sim.oauth_outage(1, 500);
    rig.sim.invalidate_token().await;
    rig.connected().await;
    assert!(rig.sim.push_raw("garbage {".to_string()).await);
    rig.sim.drop_connection().await;
    rig.connected().await;
    assert!(rig.sim.push_event("meeting.ended", payload("b")).await);
    rig.recorded_eventually(2).await;
    let rig = rig.shutdown().await;

    let text = buffer.text();
    let tokens = rig.tokens.seen.lock().unwrap().clone();
    assert!(tokens.len() >= 2, "expected a token refresh");
    for token in &tokens {
        assert!(
            !text.contains(token.as_str()),
            "a token leaked into the logs"
        );
    }
    assert!(!text.contains(CLIENT_SECRET), "the client secret leaked");
    // The logs are there and useful.
    assert!(text.contains("access_token=<redacted>"), "{text}");
    assert!(text.contains("event WebSocket connected"), "{text}");
    assert!(text.contains("reconnecting in"), "{text}");
    assert!(text.contains("token refreshed"), "{text}");
    assert!(text.contains("malformed"), "{text}");
}

/// The real binary, as an operator runs it: `zoomhost run` with a `[zoom]` config (the
/// secret from the environment) against the simulator, a recorder plugin in its folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoomhost_run_feeds_simulated_events_to_plugins_and_drains_on_sigterm() {
    let run = run_zoomhost_with_five_events(None).await;
    let ids: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("rec event "))
        .map(|l| l.split(" id=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["run-0", "run-1", "run-2", "run-3", "run-4"]);
    let row = run.stdout.lines().find(|l| l.starts_with("rec ")).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("5"), "{row}");
    assert!(
        run.stderr.contains("draining plugin mailboxes"),
        "{}",
        run.stderr
    );
    // stderr is a pipe here, not a terminal: no colour codes.
    assert!(!run.stderr.contains('\x1b'), "{}", run.stderr);
}

/// `--log-format json`: every line of the log is a JSON object with the stable fields,
/// the plugin's own lines name it, and no secret or live token appears anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoomhost_run_with_json_logs_writes_one_parsable_record_per_line_without_secrets() {
    let run = run_zoomhost_with_five_events(Some("json")).await;
    let records: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(records.len() > 5, "{}", run.stderr);
    for r in &records {
        for field in ["time", "level", "target", "message"] {
            assert!(r[field].is_string(), "no {field}: {r}");
        }
    }
    let plugin_lines: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["target"] == "plugin").collect();
    let ids: Vec<&str> = plugin_lines
        .iter()
        .filter_map(|r| r["message"].as_str()?.strip_prefix("rec event "))
        .map(|m| m.split(" id=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(ids, vec!["run-0", "run-1", "run-2", "run-3", "run-4"]);
    assert!(
        plugin_lines.iter().all(|r| r["plugin"] == "rec"),
        "{plugin_lines:?}"
    );
    assert!(
        records.iter().any(|r| r["message"]
            .as_str()
            .is_some_and(|m| m.contains("draining plugin mailboxes"))),
        "{}",
        run.stderr
    );
    // No token the OAuth server issued (all still valid: an hour's lifetime) in any line.
    let words = run
        .stderr
        .split(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .filter(|w| w.len() >= 16);
    for word in words {
        assert!(!run.oauth.is_valid(word), "an access token reached the log");
    }
}

/// What a `zoomhost run` printed.
struct RunOutput {
    stdout: String,
    stderr: String,
    oauth: OAuthSim,
}

/// Runs `zoomhost run` (with `--log-format FORMAT` when given) against the event
/// simulator with a recorder plugin, pushes five events, waits until the recorder logged
/// them, stops it with SIGTERM and checks that it exited cleanly without the client
/// secret in its output.
async fn run_zoomhost_with_five_events(format: Option<&str>) -> RunOutput {
    const SECRET: &str = "run-test-client-secret-0f9a";
    let oauth = OAuthSim::start(OAuthSimConfig {
        client_id: "run-cid".into(),
        client_secret: SECRET.into(),
        account_id: "run-acct".into(),
        expires_in: 3600,
    })
    .await
    .unwrap();
    let sim = EventSim::start(
        EventSimConfig {
            subscription_id: Some("run-sub".into()),
            ..EventSimConfig::default()
        },
        Arc::new(oauth.clone()),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm("recorder"), plugins.join("rec.wasm")).unwrap();
    let config = dir.path().join("zoomhost.toml");
    std::fs::write(
        &config,
        format!(
            "[zoom]\naccount_id = \"run-acct\"\nclient_id = \"run-cid\"\nsubscription_id = \"run-sub\"\noauth_url = \"{}\"\nws_url = \"{}\"\n",
            oauth.url(),
            sim.url()
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_zoomhost"));
    command.arg("run").arg("--config").arg(&config);
    if let Some(format) = format {
        command.arg("--log-format").arg(format);
    }
    let mut child = command
        .env("ZOOM_CLIENT_SECRET", SECRET)
        .env("ZOOMHOST_LOG", "info")
        .env_remove("ZOOMHOST_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = {
        let stderr = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    assert!(
        sim.wait_connected(Duration::from_secs(60)).await,
        "zoomhost run never connected: {}",
        stderr.lock().unwrap()
    );
    for i in 0..5 {
        let payload = serde_json::json!({"id": format!("run-{i}"), "account_id": "run-acct", "object": {"topic": "Run test"}});
        assert!(sim.push_event("meeting.participant_joined", payload).await);
    }
    let delivered = eventually(Duration::from_secs(30), || {
        stderr.lock().unwrap().matches("rec event ").count() == 5
    })
    .await;
    assert!(delivered, "{}", stderr.lock().unwrap());
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = stderr.lock().unwrap().clone();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains(SECRET), "client secret leaked into logs");
    assert!(
        !stdout.contains(SECRET),
        "client secret leaked into the summary"
    );
    RunOutput {
        stdout,
        stderr,
        oauth,
    }
}
