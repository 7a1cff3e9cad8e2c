//! Zoom webhooks, S2S OAuth and the `[zoom]` configuration, end to end over loopback:
//! the real webhook receiver feeding real plugins, the real token manager against the
//! simulator's OAuth endpoint, and log capture to prove secrets never leak.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{event_ids, eventually, host_logs, TestHost};
use zoomhost::config::{HostConfig, Secret};
use zoomhost_runtime::router::Router;
use zoomhost_sim::oauth::{OAuthSim, OAuthSimConfig};
use zoomhost_sim::webhook::{SendOptions, WebhookSender};
use zoomhost_zoom::oauth::{Grant, OAuthConfig, RetryPolicy, TokenManager};
use zoomhost_zoom::webhook::{WebhookConfig, WebhookServer};
use zoomhost_zoom::TokenSource;

const CLIENT_ID: &str = "cid-7f3a";
const CLIENT_SECRET: &str = "csecret-9b1d2e7c";
const ACCOUNT_ID: &str = "acct-42";
const WEBHOOK_SECRET: &str = "whsecret-5c8e1a0f";

fn webhook_config(max_body_bytes: usize) -> WebhookConfig {
    WebhookConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        secret: Secret::new(WEBHOOK_SECRET),
        max_body_bytes,
        ..WebhookConfig::default()
    }
}

/// A receiver on a free port, serving until the returned sender is dropped.
async fn start_receiver(
    config: WebhookConfig,
    router: Arc<Router>,
) -> (
    Arc<zoomhost_zoom::webhook::WebhookReceiver>,
    WebhookSender,
    tokio::sync::oneshot::Sender<()>,
) {
    host_logs();
    let server = WebhookServer::bind(config, router).await.unwrap();
    let sender = WebhookSender::new(server.url(), Secret::new(WEBHOOK_SECRET)).unwrap();
    let receiver = server.receiver().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    (receiver, sender, stop)
}

fn payload(id: &str) -> serde_json::Value {
    serde_json::json!({ "id": id, "account_id": ACCOUNT_ID, "object": { "topic": "Standup" } })
}

async fn sim(expires_in: u64) -> OAuthSim {
    host_logs();
    OAuthSim::start(OAuthSimConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        account_id: ACCOUNT_ID.into(),
        expires_in,
    })
    .await
    .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
        max_retries: 5,
        max_retry_after: Duration::from_secs(5),
    }
}

fn manager(url: &str, secret: &str, grant: Grant) -> TokenManager {
    let mut config = OAuthConfig::new(url, CLIENT_ID, Secret::new(secret), grant);
    config.retry = fast_retry();
    TokenManager::new(config).unwrap()
}

fn account_grant() -> Grant {
    Grant::AccountCredentials {
        account_id: ACCOUNT_ID.into(),
    }
}

// ---------------------------------------------------------------- webhooks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_deliveries_reach_the_plugin_exactly_once_despite_retries() {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let (receiver, sender, _stop) =
        start_receiver(webhook_config(1024 * 1024), t.host.router().clone()).await;

    let mut expected = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let id = format!("w-{i}");
        let sent = sender
            .send_event("meeting.participant_joined", &payload(&id))
            .await
            .unwrap();
        assert_eq!(sent.status, 200, "{}", sent.response);
        slowest = slowest.max(sent.elapsed);
        // Zoom's retry: same request id, same body.
        let retry = sender.resend(&sent).await.unwrap();
        assert_eq!(retry.status, 200);
        // A retry that lost its request id: same body, new id.
        let again = sender
            .send_raw(sent.body.clone(), &SendOptions::default())
            .await
            .unwrap();
        assert_eq!(again.status, 200);
        expected.push(id);
    }
    assert!(
        eventually(Duration::from_secs(10), || event_ids(&t.logs, "rec").len()
            >= 20)
        .await,
        "got {:?}",
        event_ids(&t.logs, "rec")
    );
    // Give a stray duplicate time to show up before asserting there is none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(event_ids(&t.logs, "rec"), expected);
    let stats = receiver.stats();
    assert_eq!(stats.accepted(), 20);
    assert_eq!(stats.duplicates(), 40);
    assert_eq!(stats.rejected(), 0);
    // Webhook-shaped fields reach the plugin: name and payload.
    let lines = t.logs.lines("rec", "rec event ");
    assert!(
        lines[0].contains("name=meeting.participant_joined"),
        "{}",
        lines[0]
    );
    println!("slowest webhook answer: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "Zoom needs an answer within 3 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_with_the_right_status_and_nothing_is_dispatched() {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let (receiver, sender, _stop) =
        start_receiver(webhook_config(64 * 1024), t.host.router().clone()).await;
    let body = WebhookSender::event_body("meeting.started", 1, &payload("bad"));

    let forged = sender
        .send_raw(body.clone(), &SendOptions::forged())
        .await
        .unwrap();
    assert_eq!(forged.status, 401, "forged: {}", forged.response);

    let stale = sender
        .send_raw(body.clone(), &SendOptions::stale(3600))
        .await
        .unwrap();
    assert_eq!(stale.status, 401, "stale: {}", stale.response);
    let future = sender
        .send_raw(
            body.clone(),
            &SendOptions {
                timestamp_offset_s: 3600,
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(future.status, 401, "future: {}", future.response);

    let unsigned = sender
        .send_raw(
            body.clone(),
            &SendOptions {
                omit_auth_headers: true,
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        unsigned.status, 400,
        "missing headers: {}",
        unsigned.response
    );

    let not_json = sender
        .send_raw(
            b"{\"event\": meeting.started".to_vec(),
            &SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(not_json.status, 400, "bad JSON: {}", not_json.response);

    let not_event = sender
        .send_raw(br#"{"hello":"world"}"#.to_vec(), &SendOptions::default())
        .await
        .unwrap();
    assert_eq!(
        not_event.status, 400,
        "not an event: {}",
        not_event.response
    );

    let big = WebhookSender::event_body(
        "meeting.started",
        1,
        &serde_json::json!({ "id": "big", "pad": "x".repeat(100 * 1024) }),
    );
    let oversized = sender.send_raw(big, &SendOptions::default()).await.unwrap();
    assert_eq!(oversized.status, 413, "oversized: {}", oversized.response);

    // The forged body, then sent properly, is accepted: rejections leave no de-dupe trace.
    let good = sender
        .send_raw(body, &SendOptions::default())
        .await
        .unwrap();
    assert_eq!(good.status, 200);

    assert!(
        eventually(Duration::from_secs(10), || !event_ids(&t.logs, "rec")
            .is_empty())
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(event_ids(&t.logs, "rec"), vec!["bad".to_string()]);
    assert_eq!(receiver.stats().rejected(), 7);
    assert_eq!(receiver.stats().accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limit_rejects_a_body_over_one_mib() {
    let router = Arc::new(Router::new());
    let (receiver, sender, _stop) = start_receiver(webhook_config(1024 * 1024), router).await;
    let big = WebhookSender::event_body(
        "meeting.started",
        1,
        &serde_json::json!({ "pad": "x".repeat(1024 * 1024 + 1) }),
    );
    let sent = sender.send_raw(big, &SendOptions::default()).await.unwrap();
    assert_eq!(sent.status, 413);
    assert_eq!(receiver.stats().rejected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_validation_is_answered_with_the_encrypted_token() {
    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let (receiver, sender, _stop) =
        start_receiver(webhook_config(1024 * 1024), t.host.router().clone()).await;
    let (sent, ok) = sender
        .url_validation("qgg8vlvZRS6UYooatFL8Aw")
        .await
        .unwrap();
    assert_eq!(sent.status, 200);
    assert!(ok, "answer: {}", sent.response);
    // Zoom re-validates; every challenge is answered (no de-duplication).
    let (again, ok) = sender
        .url_validation("qgg8vlvZRS6UYooatFL8Aw")
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    assert!(ok);
    // A forged challenge is not answered (it would be a signing oracle).
    let body = WebhookSender::event_body(
        "endpoint.url_validation",
        1,
        &serde_json::json!({ "plainToken": "abc" }),
    );
    let forged = sender.send_raw(body, &SendOptions::forged()).await.unwrap();
    assert_eq!(forged.status, 401);
    assert_eq!(receiver.stats().validations(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        event_ids(&t.logs, "rec").is_empty(),
        "validation is not an event"
    );
}

// ---------------------------------------------------------------- OAuth

#[tokio::test]
async fn a_token_is_cached_and_reused() {
    let sim = sim(3600).await;
    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    let a = m.token().await.unwrap();
    let b = m.token().await.unwrap();
    assert_eq!(a.secret, b.secret);
    assert!(sim.is_valid(&a.secret));
    assert_eq!(sim.requests(), 1);
    assert_eq!(m.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_request() {
    let sim = sim(3600).await;
    let m = Arc::new(manager(&sim.url(), CLIENT_SECRET, account_grant()));
    // Slow the endpoint down so the callers really overlap.
    sim.fail_next(1, 503, Some(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.token().await.map(|t| t.secret) })
        })
        .collect();
    let mut secrets = Vec::new();
    for t in tasks {
        secrets.push(t.await.unwrap().unwrap());
    }
    secrets.dedup();
    assert_eq!(secrets.len(), 1, "every caller got the same token");
    // One failed attempt, one successful retry: one logical request for ten callers.
    assert_eq!(sim.requests(), 2);
    assert_eq!(sim.issued(), 1);
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_of_expiry() {
    let sim = sim(2).await; // refresh margin: 10% of 2 s = 200 ms
    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    let first = m.token().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.token().await.unwrap().secret, first.secret, "still fresh");
    tokio::time::sleep(Duration::from_millis(1400)).await; // ~1.9 s: inside the margin
    let second = m.token().await.unwrap();
    assert_ne!(second.secret, first.secret, "refreshed before expiry");
    assert_eq!(sim.issued(), 2);
    assert!(second.expires_at > first.expires_at);
}

#[tokio::test]
async fn invalidate_drops_only_the_rejected_token() {
    let sim = sim(3600).await;
    let m = manager(&sim.url(), CLIENT_SECRET, Grant::ClientCredentials);
    let a = m.token().await.unwrap();
    let mut stale = a.clone();
    stale.secret = "some-older-token".into();
    m.invalidate(&stale);
    assert_eq!(
        m.token().await.unwrap().secret,
        a.secret,
        "other token: kept"
    );
    sim.invalidate_all();
    m.invalidate(&a);
    let b = m.token().await.unwrap();
    assert_ne!(a.secret, b.secret);
    assert!(sim.is_valid(&b.secret) && !sim.is_valid(&a.secret));
    assert_eq!(sim.issued(), 2);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_honouring_retry_after() {
    let sim = sim(3600).await;
    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    sim.fail_next(2, 500, None);
    m.token().await.unwrap();
    assert_eq!(sim.requests(), 3, "two 500s, then success");

    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    sim.fail_next(2, 429, Some(1));
    let started = Instant::now();
    m.token().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(sim.requests(), 6);
    // The backoff alone would be < 0.2 s; Retry-After: 1 twice makes it >= 2 s.
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    println!("two 429 with Retry-After: 1 -> token after {elapsed:?}");
}

#[tokio::test]
async fn backoff_is_capped_and_gives_up_with_a_clear_error() {
    let sim = sim(3600).await;
    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    sim.fail_next(100, 503, None);
    let started = Instant::now();
    let err = m.token().await.unwrap_err().to_string();
    let elapsed = started.elapsed();
    // 1 attempt + 5 retries; delays 20, 40, 80, 80, 80 ms (+ jitter): capped at 80 ms.
    assert_eq!(sim.requests(), 6, "{err}");
    assert!(err.contains("503") && err.contains("5 retries"), "{err}");
    assert!(
        elapsed < Duration::from_secs(5),
        "capped backoff, took {elapsed:?}"
    );
    println!("6 attempts against 503 gave up after {elapsed:?}");
}

#[tokio::test]
async fn a_rejected_client_secret_fails_at_once_naming_what_to_check() {
    let sim = sim(3600).await;
    let m = manager(&sim.url(), "not-the-secret-1234", account_grant());
    let err = format!("{:#}", m.token().await.unwrap_err());
    assert_eq!(sim.requests(), 1, "401 is not retried");
    assert!(err.contains("ZOOM_CLIENT_ID / ZOOM_CLIENT_SECRET"), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(
        !err.contains("not-the-secret-1234") && !err.contains(CLIENT_SECRET),
        "{err}"
    );
    assert!(!format!("{m:?}").contains("not-the-secret-1234"));

    let wrong_account = manager(
        &sim.url(),
        CLIENT_SECRET,
        Grant::AccountCredentials {
            account_id: "nope".into(),
        },
    );
    let err = format!("{:#}", wrong_account.token().await.unwrap_err());
    assert!(err.contains("ZOOM_ACCOUNT_ID"), "{err}");
}

#[tokio::test]
async fn the_simulator_accepts_parameters_in_the_query_string() {
    let sim = sim(60).await;
    zoomhost_zoom::oauth::ensure_tls_provider();
    let reply: serde_json::Value = reqwest::Client::new()
        .post(sim.url())
        .query(&[
            ("grant_type", "account_credentials"),
            ("account_id", ACCOUNT_ID),
        ])
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reply["access_token"].as_str().unwrap();
    assert!(sim.is_valid(token));
    assert_eq!(reply["expires_in"], 60);
    sim.expire_all();
    assert!(!sim.is_valid(token));
}

// ---------------------------------------------------------------- configuration

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn zoom_config_comes_from_toml_and_the_environment_wins() {
    let env = env_of(&[
        ("ZOOM_CLIENT_SECRET", "from-env-secret"),
        ("ZOOM_WEBHOOK_SECRET_TOKEN", "wh-from-env"),
        ("ZOOM_WS_URL", "wss://ws.zoomgov.com/ws"),
        ("FILE_SECRET", "ignored-because-env-wins"),
    ]);
    let cfg = HostConfig::parse(
        r#"
        [zoom]
        account_id = "acct"
        client_id = "cid"
        client_secret = "${FILE_SECRET}"
        subscription_id = "sub-1"
        oauth_url = "https://zoomgov.com/oauth/token"
        dedupe_window_s = 7200
        [zoom.websocket]
        heartbeat_s = 10
        backoff_max_s = 20
        [zoom.webhook]
        bind = "0.0.0.0:9000"
        path = "/hooks/zoom"
        "#,
        Path::new("."),
        &env,
    )
    .unwrap();
    let zoom = cfg.zoom.expect("zoom configured");
    let oauth = zoom.oauth.expect("oauth");
    assert_eq!(oauth.client_secret.expose(), "from-env-secret");
    assert_eq!(oauth.token_url, "https://zoomgov.com/oauth/token");
    assert_eq!(
        oauth.grant,
        Grant::AccountCredentials {
            account_id: "acct".into()
        }
    );
    let ws = zoom
        .websocket
        .expect("websocket enabled by subscription id");
    assert_eq!(ws.ws_url, "wss://ws.zoomgov.com/ws");
    assert_eq!(ws.subscription_id, "sub-1");
    assert_eq!(ws.heartbeat, Duration::from_secs(10));
    assert_eq!(ws.silence_timeout, Duration::from_secs(45));
    // The reconnect contract's values: Zoom's, unless set.
    assert_eq!(ws.backoff_max, Duration::from_secs(20));
    assert_eq!(ws.reconnect_jitter, Duration::from_secs(1));
    assert_eq!(ws.healthy_after, Duration::from_secs(10));
    assert_eq!(zoom.dedupe.window, Duration::from_secs(7200));
    assert_eq!(zoom.dedupe.capacity, 200_000);
    let wh = zoom.webhook.expect("webhook enabled by the secret");
    assert_eq!(wh.secret.expose(), "wh-from-env");
    assert_eq!(wh.bind, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(wh.path, "/hooks/zoom");
    assert_eq!(wh.max_body_bytes, 1024 * 1024);
    assert_eq!(wh.timestamp_window, Duration::from_secs(300));
    // Debug output of the whole config redacts every secret.
    let dbg = format!("{:?}", HostConfig::parse("", Path::new("."), &env).unwrap());
    assert!(
        !dbg.contains("from-env-secret") && !dbg.contains("wh-from-env"),
        "{dbg}"
    );

    // Nothing Zoom anywhere: no zoom section, replay/run keep working.
    let none = HostConfig::parse("", Path::new("."), &|_| None).unwrap();
    assert!(none.zoom.is_none());
    // Webhook alone.
    let only_webhook = HostConfig::parse(
        "",
        Path::new("."),
        &env_of(&[("ZOOM_WEBHOOK_SECRET_TOKEN", "x")]),
    )
    .unwrap()
    .zoom
    .unwrap();
    assert!(only_webhook.websocket.is_none() && only_webhook.webhook.is_some());
}

#[test]
fn missing_zoom_values_are_all_listed_in_one_error_without_secrets() {
    let err = HostConfig::parse(
        r#"
        [zoom]
        client_secret = "very-secret-value"
        grant = "password"
        [zoom.websocket]
        enabled = true
        [zoom.webhook]
        enabled = true
        bind = "nowhere"
        "#,
        Path::new("."),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "ZOOM_SUBSCRIPTION_ID",
        "zoom.subscription_id",
        "ZOOM_CLIENT_ID",
        "zoom.client_id",
        "ZOOM_ACCOUNT_ID",
        "zoom.account_id",
        "ZOOM_WEBHOOK_SECRET_TOKEN",
        "zoom.webhook_secret_token",
        "zoom.grant",
        "zoom.webhook.bind",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    assert!(
        !err.contains("ZOOM_CLIENT_SECRET"),
        "the secret was given:\n{err}"
    );
    assert!(!err.contains("very-secret-value"), "{err}");
    assert_eq!(err.matches("invalid configuration").count(), 1, "{err}");
}

#[test]
fn a_dotenv_file_beside_the_config_fills_in_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("zoomhost.toml"),
        "[zoom.webhook]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# local secrets\nZOOM_WEBHOOK_SECRET_TOKEN=dotenv-wh-secret\n",
    )
    .unwrap();
    let cfg = HostConfig::load(&dir.path().join("zoomhost.toml")).unwrap();
    let wh = cfg.zoom.unwrap().webhook.unwrap();
    let expected = std::env::var("ZOOM_WEBHOOK_SECRET_TOKEN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "dotenv-wh-secret".into());
    assert_eq!(wh.secret.expose(), expected, "real env wins, .env fills in");
}

// ---------------------------------------------------------------- secrets in logs

#[tokio::test]
async fn secrets_never_appear_in_logs_or_errors() {
    let capture = host_logs();
    let sim = sim(3600).await;
    let mut errors = Vec::new();
    // OAuth: retries, success, refresh after invalidation, a 401.
    let m = manager(&sim.url(), CLIENT_SECRET, account_grant());
    sim.fail_next(1, 429, Some(0));
    sim.fail_next(1, 500, None);
    let token = m.token().await.unwrap();
    m.invalidate(&token);
    let token2 = m.token().await.unwrap();
    let bad = manager(&sim.url(), "wrong-secret-5678", account_grant());
    errors.push(format!("{:?}", bad.token().await.unwrap_err()));
    errors.push(format!("{m:?}"));

    // Webhooks: valid, forged, stale, malformed, duplicate, validation.
    let router = Arc::new(Router::new());
    let (_receiver, sender, _stop) = start_receiver(webhook_config(4096), router).await;
    let sent = sender
        .send_event("meeting.started", &payload("x"))
        .await
        .unwrap();
    sender.resend(&sent).await.unwrap();
    let body = WebhookSender::event_body("meeting.ended", 1, &payload("y"));
    sender
        .send_raw(body.clone(), &SendOptions::forged())
        .await
        .unwrap();
    sender
        .send_raw(body, &SendOptions::stale(999))
        .await
        .unwrap();
    sender
        .send_raw(b"not json at all".to_vec(), &SendOptions::default())
        .await
        .unwrap();
    sender.url_validation("plain").await.unwrap();
    errors.push(format!("{sender:?}"));

    // Configuration errors.
    let env = env_of(&[
        ("ZOOM_CLIENT_SECRET", CLIENT_SECRET),
        ("ZOOM_WEBHOOK_SECRET_TOKEN", WEBHOOK_SECRET),
    ]);
    errors.push(
        HostConfig::parse("[zoom.websocket]\nenabled = true\n", Path::new("."), &env)
            .unwrap_err()
            .to_string(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::io::stdout().flush();

    let logs = capture.text();
    assert!(
        logs.contains("token refreshed (expires in 3600 s)"),
        "{logs}"
    );
    assert!(logs.contains("webhook request rejected"), "{logs}");
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    };
    for secret in [
        &basic,
        CLIENT_SECRET,
        "wrong-secret-5678",
        WEBHOOK_SECRET,
        &token.secret,
        &token2.secret,
    ] {
        assert!(!logs.contains(secret), "secret {secret:?} in logs:\n{logs}");
        for e in &errors {
            assert!(!e.contains(secret), "secret {secret:?} in error:\n{e}");
        }
    }
}

// ---------------------------------------------------------------- both sources at once

/// `(payload id, event id)` of every event the recorder got, in order.
fn recorded_with_ids(t: &TestHost) -> Vec<(String, String)> {
    t.logs
        .lines("rec", "rec event ")
        .iter()
        .map(|l| {
            (
                crate::support::field(l, "id").to_string(),
                crate::support::field(l, "eid").to_string(),
            )
        })
        .collect()
}

/// The event WebSocket and webhooks both on, as an app subscribed both ways: the
/// simulator sends every event both ways (webhooks also while the WebSocket is down), and
/// the host's input path delivers each once, whichever came first; a webhook retry of a
/// delivered event, past the receiver's own request-id window, is dropped too; a
/// re-announced `rtms_started` with a newer `event_ts` (an RTMS failover) is a new event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_both_the_websocket_and_webhooks_is_delivered_once() {
    use zoomhost::inputs::Inputs;
    use zoomhost_sim::events::{EventSim, EventSimConfig};
    use zoomhost_zoom::events::{EventStream, EventStreamConfig};

    let t = TestHost::start("", &[("rec", "recorder")]).await;
    let inputs = Inputs::new(t.host.router().clone());
    let mut config = webhook_config(1024 * 1024);
    // The receiver's own retry check forgets at once: only the input path can catch a
    // late retry here, as it must for Zoom's retries after 5, 20 and 60 minutes.
    config.dedupe_window = Duration::from_millis(1);
    host_logs();
    let server = WebhookServer::bind(config, inputs.clone()).await.unwrap();
    let sender = WebhookSender::new(server.url(), Secret::new(WEBHOOK_SECRET)).unwrap();
    let receiver = server.receiver().clone();
    let (stop_hooks, hooks_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = hooks_stopped.await;
    }));

    let oauth = sim(3600).await;
    let events = EventSim::start(EventSimConfig::default(), Arc::new(oauth.clone()))
        .await
        .unwrap();
    let tokens: Arc<dyn TokenSource> =
        Arc::new(manager(&oauth.url(), CLIENT_SECRET, account_grant()));
    let ws = EventStreamConfig::new(events.url(), "sub-both").scaled_down(100);
    let stream = EventStream::new(ws, tokens, inputs.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let client = tokio::spawn(stream.run(shutdown));
    events.mirror_to_webhook(Some(sender.clone()));
    assert!(events.wait_connected(Duration::from_secs(30)).await);

    let mut expected = Vec::new();
    for i in 0..10 {
        let id = format!("both-{i}");
        assert!(
            events
                .push_event("meeting.participant_joined", payload(&id))
                .await
        );
        expected.push(id);
    }
    // The WebSocket goes down: webhooks alone carry these.
    events.set_refusing(true);
    events.drop_connection().await;
    for i in 0..5 {
        let id = format!("hook-only-{i}");
        assert!(
            !events
                .push_event("meeting.participant_left", payload(&id))
                .await
        );
        expected.push(id);
    }
    events.set_refusing(false);
    assert!(events.wait_connected(Duration::from_secs(30)).await);
    // RTMS: a start, Zoom's failover re-announcement (newer event_ts), and a late webhook
    // retry of the first start.
    let start = serde_json::json!({
        "id": "rtms-start", "meeting_uuid": "m==", "rtms_stream_id": "s1",
        "server_urls": "wss://a.example/rtms",
    });
    let ts = 1_900_000_000_000;
    assert!(
        events
            .push_event_at("meeting.rtms_started", ts, start.clone())
            .await
    );
    assert!(
        events
            .push_event_at("meeting.rtms_started", ts + 5, start.clone())
            .await
    );
    expected.push("rtms-start".into());
    expected.push("rtms-start".into());

    let n = expected.len();
    assert!(
        eventually(Duration::from_secs(10), || recorded_with_ids(&t).len() >= n).await,
        "{:?}",
        recorded_with_ids(&t)
    );
    // Zoom's retries of a delivered event, late: same body with a new request id, and
    // with the original one.
    let first = events.webhooked()[0].clone();
    let body = WebhookSender::event_body(&first.name, first.event_ts, &payload(&first.id));
    let retry = sender
        .send_raw(body, &SendOptions::default())
        .await
        .unwrap();
    assert_eq!(retry.status, 200);
    let late_start = WebhookSender::event_body("meeting.rtms_started", ts, &start);
    let retry = sender
        .send_raw(late_start, &SendOptions::default())
        .await
        .unwrap();
    assert_eq!(retry.status, 200);
    let dups = |inputs: &Inputs| inputs.duplicates();
    let both_ways = events.sent().len() as u64;
    assert!(
        eventually(Duration::from_secs(10), || dups(&inputs).total()
            >= both_ways + 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let recorded = recorded_with_ids(&t);
    let mut got: Vec<String> = recorded.iter().map(|(id, _)| id.clone()).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each event exactly once");
    // The id the host computed is the one the simulator computed from the same content,
    // whichever source delivered it first.
    let sims: Vec<_> = events.sent().into_iter().chain(events.missed()).collect();
    for (id, eid) in &recorded {
        assert!(
            sims.iter().any(|s| &s.id == id && &s.event_id == eid),
            "{id} {eid}: {sims:?}"
        );
    }
    let counted = dups(&inputs);
    eprintln!(
        "duplicates dropped: {counted:?}; webhook receiver: {:?}",
        receiver.stats()
    );
    // Every event that came both ways was dropped once, plus the two late retries.
    assert_eq!(counted.total(), both_ways + 2, "{counted:?}");
    assert!(counted.webhook >= 2, "{counted:?}");
    assert_eq!(counted.replay + counted.simulator, 0);
    assert_eq!(
        receiver.stats().accepted() as usize,
        events.webhooked().len() + 2
    );

    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), client).await;
    let _ = stop_hooks.send(());
}
