//! Operations (the admin API): a live host with the simulated Zoom and the recorder
//! plugin, scraped and asked as an operator would: `/metrics` parsed by a real
//! Prometheus parser (the `prometheus-parse` crate always, and `promtool check metrics`
//! when installed: CI installs it and sets `ZOOMHOST_REQUIRE_PROMTOOL=1`) with the
//! counters matching what the plugin received; `/readyz` through an event WebSocket
//! outage; the bearer token off loopback; the `/v1` API and its plugin actions;
//! `zoomhost status`; and the Grafana dashboard's queries against the families exported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;
use zoomhost_sim::events::Scenario;
use zoomhost_sim::LocalZoom;
use zoomhost_types::{InputSink, MediaKind};

const WAIT: Duration = Duration::from_secs(30);

/// A meeting whose RTMS stream sends 40 audio frames and a transcript segment every 10,
/// then holds open.
const MEETING: &str = r#"
[[steps]]
kind = "wait_connected"
timeout_ms = 30000

[[steps]]
kind = "event"
event = "meeting.started"

[[steps]]
kind = "rtms_start"
frames = 40
pace = "fast"
transcript_every = 10
end = "hold"

[[steps]]
kind = "rtms_wait"
until = "ready"
timeout_ms = 30000
"#;

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `url` (with `token` as bearer when given): status and body.
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = client().get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url, None).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn post(url: &str) -> (u16, serde_json::Value) {
    let response = client().post(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A live host over `zoom` with the recorder as `rec` (audio and transcript) and the
/// admin API on a free loopback port; `webhook` adds a webhook receiver.
async fn live_host(zoom: &LocalZoom, webhook: bool) -> (TestHost, zoomhost::host::Host, String) {
    let mut config =
        zoomhost::config::for_local_zoom(zoom, vec![MediaKind::Audio, MediaKind::Transcript]);
    if let Some(ws) = config.websocket.as_mut() {
        *ws = ws.clone().scaled_down(100);
    }
    if webhook {
        config.webhook = Some(zoomhost_zoom::webhook::WebhookConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            secret: zoomhost::config::Secret::new("operations-webhook-secret"),
            ..Default::default()
        });
    }
    let (t, live) = TestHost::start_live(
        "[admin]\nbind = \"127.0.0.1:0\"\n[plugins.rec]\nconfig = { media = \"audio,transcript\" }\n",
        &[("rec", "recorder")],
        config,
    )
    .await;
    let base = format!("http://{}", live.admin_addr().expect("the admin API runs"));
    (t, live, base)
}

/// The samples of a scrape, parsed by `prometheus-parse`: (name, labels) → value.
fn parse_metrics(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => {
                // The `_count` sample is reported here as the +Inf bucket.
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((s.metric, labels), value);
    }
    out
}

fn value(
    samples: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

/// `promtool check metrics` on the text, when promtool is installed (required when
/// `ZOOMHOST_REQUIRE_PROMTOOL=1`).
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("ZOOMHOST_REQUIRE_PROMTOOL").as_deref() == Ok("1") => {
            panic!("ZOOMHOST_REQUIRE_PROMTOOL=1 but promtool cannot run: {e}")
        }
        Err(e) => {
            eprintln!("promtool not run ({e}); the exposition was parsed by prometheus-parse only");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exit 0: clean; 3: lint findings only (style, not syntax). A parse error is 1.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool check metrics failed: {report}"
    );
    assert!(!report.contains("error"), "promtool: {report}");
}

/// The metric names every query of the Grafana dashboard selects, parsed by a PromQL
/// parser (Grafana's variables replaced by values first).
fn dashboard_metric_names() -> BTreeSet<String> {
    let path = workspace().join("ops/grafana/zoomhost.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
                .replace("$plugin", ".*");
            let ast = promql_parser::parser::parse(&expr)
                .unwrap_or_else(|e| panic!("panel {:?}: {expr}: {e}", panel["title"]));
            collect_names(&ast, &mut names);
            queries += 1;
        }
    }
    assert!(queries >= 20, "only {queries} queries in the dashboard");
    names
}

fn collect_names(expr: &promql_parser::parser::Expr, out: &mut BTreeSet<String>) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::Aggregate(a) => {
            collect_names(&a.expr, out);
            if let Some(p) = &a.param {
                collect_names(p, out);
            }
        }
        Expr::Unary(u) => collect_names(&u.expr, out),
        Expr::Binary(b) => {
            collect_names(&b.lhs, out);
            collect_names(&b.rhs, out);
        }
        Expr::Paren(p) => collect_names(&p.expr, out),
        Expr::Subquery(s) => collect_names(&s.expr, out),
        Expr::VectorSelector(v) => out.extend(v.name.clone()),
        Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
        Expr::Call(c) => {
            for arg in &c.args.args {
                collect_names(arg, out);
            }
        }
        _ => {}
    }
}

/// The family a sample name belongs to in `families` (a histogram's `_bucket`, `_sum`
/// and `_count` belong to it).
fn family_of<'a>(name: &'a str, families: &BTreeSet<String>) -> Option<&'a str> {
    if families.contains(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| families.contains(*base))
}

/// How many media deliveries the recorder logged (every media item logs one line).
fn media_lines(logs: &Logs) -> f64 {
    const KINDS: [&str; 11] = [
        "rec open ",
        "rec audio ",
        "rec transcript ",
        "rec video ",
        "rec share ",
        "rec chat ",
        "rec join ",
        "rec leave ",
        "rec speaker ",
        "rec state ",
        "rec close ",
    ];
    logs.lines("rec", "rec ")
        .iter()
        .filter(|l| KINDS.iter().any(|p| l.starts_with(p)))
        .count() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_meeting_match_what_the_plugin_received_and_cover_the_dashboard() {
    let zoom = LocalZoom::start().await.unwrap();
    let (t, live, base) = live_host(&zoom, false).await;
    let report = Scenario::parse(MEETING)
        .unwrap()
        .run_with(&zoom.events, Some(&zoom.rtms))
        .await
        .expect("the scenario plays");
    let stream = report.rtms_streams[0].clone();
    let id = stream.stream_id().to_string();
    let audio = format!("rec audio stream={id} ");
    assert!(
        eventually(WAIT, || t.logs.lines("rec", &audio).len() == 40).await,
        "the recorder did not get the 40 audio frames"
    );

    // While it is open, the stream is listed with the plugin it reaches.
    let streams = get_json(&format!("{base}/v1/streams")).await;
    let listed = streams["streams"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{streams}");
    assert_eq!(listed[0]["stream_id"], id.as_str());
    assert_eq!(listed[0]["plugins"], serde_json::json!(["rec"]));
    assert_eq!(listed[0]["frames"]["audio"], 40);

    stream.stop(6).await;
    let closed = format!("rec close stream={id} ");
    assert!(
        eventually(WAIT, || t.logs.lines("rec", &closed).len() == 1).await,
        "the stream's media session did not close"
    );
    let transcripts = t
        .logs
        .lines("rec", &format!("rec transcript stream={id} "))
        .len();
    assert!(
        transcripts > 0,
        "no transcript segment reached the recorder"
    );
    assert!(
        eventually(WAIT, || {
            t.stats_now("rec").events_delivered == t.logs.lines("rec", "rec event ").len() as u64
                && t.host.router().busiest_queue() == 0
        })
        .await
    );

    // Scraped until the counters settle (a notice such as the stream's stop may still be
    // on its way); then they must agree with what the recorder logged.
    let deliveries = "zoomhost_plugin_deliveries_total";
    let received = "zoomhost_events_received_total";
    let mut scraped = None;
    for _ in 0..200 {
        let (status, text) = get(&format!("{base}/metrics"), None).await;
        assert_eq!(status, 200);
        let samples = parse_metrics(&text);
        let events = t.logs.lines("rec", "rec event ").len() as f64;
        let media = media_lines(&t.logs);
        let settled = value(&samples, received, &[("source", "websocket")]) == events
            && value(
                &samples,
                deliveries,
                &[("plugin", "rec"), ("kind", "event")],
            ) == events
            && value(
                &samples,
                deliveries,
                &[("plugin", "rec"), ("kind", "media")],
            ) == media;
        scraped = Some((text, samples, events, media));
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (text, samples, events, media_lines) = scraped.unwrap();
    promtool_check(&text);
    let rec = t.stats_now("rec");
    assert_eq!(
        value(
            &samples,
            deliveries,
            &[("plugin", "rec"), ("kind", "event")]
        ),
        events
    );
    assert_eq!(
        value(
            &samples,
            deliveries,
            &[("plugin", "rec"), ("kind", "media")]
        ),
        media_lines
    );
    assert_eq!(rec.media_delivered as f64, media_lines);
    // Every event the WebSocket received reached the recorder once.
    assert_eq!(
        value(
            &samples,
            "zoomhost_events_received_total",
            &[("source", "websocket")]
        ),
        events
    );
    let frames = "zoomhost_rtms_frames_total";
    assert_eq!(value(&samples, frames, &[("kind", "audio")]), 40.0);
    assert_eq!(
        value(&samples, frames, &[("kind", "transcript")]),
        transcripts as f64
    );
    assert_eq!(value(&samples, frames, &[("kind", "video")]), 0.0);
    assert_eq!(value(&samples, "zoomhost_rtms_streams_open", &[]), 0.0);
    assert_eq!(
        value(&samples, "zoomhost_rtms_streams_opened_total", &[]),
        1.0
    );
    // One call-duration observation per delivery.
    let calls = "zoomhost_plugin_call_duration_seconds_count";
    assert_eq!(
        value(&samples, calls, &[("plugin", "rec"), ("kind", "event")]),
        events
    );
    assert_eq!(
        value(&samples, calls, &[("plugin", "rec"), ("kind", "media")]),
        media_lines
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_failures_total",
            &[("plugin", "rec"), ("reason", "trap")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_source_connected",
            &[("source", "websocket")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "zoomhost_ready", &[]), 1.0);
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&samples, "process_cpu_seconds_total", &[]) > 0.0);
    // No label names a stream or meeting.
    for (_, labels) in samples.keys() {
        for v in labels.values() {
            assert!(
                !v.contains(&id) && !v.contains(stream.meeting_uuid()),
                "{labels:?}"
            );
        }
    }

    // Every family the dashboard queries is exported (the cluster's: by cluster nodes,
    // see below).
    let families: BTreeSet<String> = zoomhost::admin::metrics::family_names(&text)
        .into_iter()
        .collect();
    for name in dashboard_metric_names()
        .into_iter()
        .filter(|n| !n.starts_with("zoomhost_cluster_"))
    {
        assert!(
            family_of(&name, &families).is_some(),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }

    // OpenMetrics on request.
    let response = client()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(response.text().await.unwrap().trim_end().ends_with("# EOF"));
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_event_websocket_unless_a_webhook_receiver_serves() {
    // Two hosts, each on its own simulated Zoom: one with the event WebSocket only, one
    // with a webhook receiver too.
    let zoom_ws = LocalZoom::start().await.unwrap();
    let zoom_both = LocalZoom::start().await.unwrap();
    let (_t1, ws_only, ws_base) = live_host(&zoom_ws, false).await;
    let (_t2, both, both_base) = live_host(&zoom_both, true).await;
    for (zoom, base) in [(&zoom_ws, &ws_base), (&zoom_both, &both_base)] {
        assert!(zoom.events.wait_connected(WAIT).await);
        let url = format!("{base}/readyz");
        let mut ready = false;
        for _ in 0..300 {
            if get(&url, None).await.0 == 200 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ready, "{base} never became ready");
        assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
    }

    // Zoom drops both WebSockets and refuses new ones for a while.
    for zoom in [&zoom_ws, &zoom_both] {
        zoom.events.set_refusing(true);
        zoom.events.drop_connection().await;
    }
    let mut body = serde_json::Value::Null;
    let mut flipped = false;
    for _ in 0..500 {
        let (status, text) = get(&format!("{ws_base}/readyz"), None).await;
        if status == 503 {
            body = serde_json::from_str(&text).unwrap();
            flipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        flipped,
        "the WebSocket-only host stayed ready through the outage"
    );
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["not_ready"],
        serde_json::json!(["websocket"]),
        "{body}"
    );
    // The webhook receiver keeps its host in the load balancer meanwhile.
    let (status, text) = get(&format!("{both_base}/readyz"), None).await;
    assert_eq!(status, 200, "{text}");
    let both_body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ws_check = both_body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "websocket")
        .cloned()
        .unwrap();
    assert_eq!(
        (ws_check["ok"].clone(), ws_check["required"].clone()),
        (false.into(), false.into())
    );
    let (_, text) = get(&format!("{ws_base}/metrics"), None).await;
    let samples = parse_metrics(&text);
    assert_eq!(
        value(
            &samples,
            "zoomhost_source_connected",
            &[("source", "websocket")]
        ),
        0.0
    );
    assert_eq!(value(&samples, "zoomhost_ready", &[]), 0.0);
    // The outage in progress already counts, and grows.
    let outage = |samples: &BTreeMap<(String, BTreeMap<String, String>), f64>| {
        value(
            samples,
            "zoomhost_source_outage_seconds_total",
            &[("source", "websocket")],
        )
    };
    let during = outage(&samples);
    assert!(during > 0.0, "an outage in progress counts: {during}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, text) = get(&format!("{ws_base}/metrics"), None).await;
    let later = outage(&parse_metrics(&text));
    assert!(later >= during + 0.04, "{during} then {later}");

    // Zoom takes connections again: ready once reconnected, the outage counted.
    for zoom in [&zoom_ws, &zoom_both] {
        zoom.events.set_refusing(false);
    }
    let mut back = false;
    for _ in 0..1000 {
        if get(&format!("{ws_base}/readyz"), None).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "the host did not become ready after reconnecting");
    let (_, text) = get(&format!("{ws_base}/metrics"), None).await;
    let samples = parse_metrics(&text);
    assert_eq!(
        value(
            &samples,
            "zoomhost_source_reconnects_total",
            &[("source", "websocket")]
        ),
        1.0
    );
    assert!(
        value(
            &samples,
            "zoomhost_source_outage_seconds_total",
            &[("source", "websocket")]
        ) > 0.0
    );
    let sources = get_json(&format!("{ws_base}/v1/sources")).await;
    assert_eq!(sources["websocket"]["connected"], true);
    assert!(
        sources["websocket"]["last_outage"]["duration_ms"].is_u64(),
        "{sources}"
    );

    // Shutting down: not ready from the first moment.
    let view = ws_only.view();
    let shutting = tokio::spawn(ws_only.shutdown());
    let stopping = eventually(WAIT, || *view.stopping.borrow()).await;
    assert!(stopping);
    assert!(!zoomhost::admin::readiness::evaluate(&view).await.ready);
    shutting.await.unwrap();
    both.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_admin_api_wants_its_bearer_token() {
    const TOKEN: &str = "admin-token-4b1d9e7f-never-logged";
    let dir = tempfile::tempdir().unwrap();
    // Refused at load without a token.
    let err =
        zoomhost::config::HostConfig::parse("[admin]\nbind = \"0.0.0.0:0\"\n", dir.path(), &|_| {
            None
        })
        .unwrap_err();
    assert!(format!("{err:#}").contains("admin.token"), "{err:#}");

    let config = zoomhost::config::HostConfig::parse(
        "[admin]\nbind = \"0.0.0.0:0\"\ntoken = \"${ADMIN_TOKEN}\"\n",
        dir.path(),
        &|k| (k == "ADMIN_TOKEN").then(|| TOKEN.to_string()),
    )
    .unwrap();
    let mut config = config;
    config.runtime.plugins_dir = dir.path().join("plugins");
    let host = zoomhost::host::Host::start(config, zoomhost::host::HostOptions::default())
        .await
        .unwrap();
    let addr = host.admin_addr().unwrap();
    assert!(addr.ip().is_unspecified());
    // Reached through the machine's loopback (the listener takes every address).
    let base = format!("http://127.0.0.1:{}", addr.port());
    for path in ["/metrics", "/v1/plugins", "/v1/sources", "/v1/streams"] {
        assert_eq!(get(&format!("{base}{path}"), None).await.0, 401, "{path}");
        assert_eq!(
            get(&format!("{base}{path}"), Some("wrong")).await.0,
            401,
            "{path}"
        );
        assert_eq!(
            get(&format!("{base}{path}"), Some(TOKEN)).await.0,
            200,
            "{path}"
        );
    }
    let refused = client()
        .post(format!("{base}/v1/plugins/rec/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    // The probes answer without credentials (load balancers send none).
    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, 200);
    host.shutdown().await;
    assert!(
        !host_logs().text().contains(TOKEN),
        "the admin token reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_lists_and_acts_and_zoomhost_status_prints_it() {
    let zoom = LocalZoom::start().await.unwrap();
    let (t, live, base) = live_host(&zoom, false).await;
    assert!(zoom.events.wait_connected(WAIT).await);

    let plugins = get_json(&format!("{base}/v1/plugins")).await;
    assert_eq!(plugins[0]["name"], "rec");
    assert_eq!(plugins[0]["state"], "running");
    assert_eq!(plugins[0]["instances"].as_array().unwrap().len(), 1);

    // `zoomhost status` against the running host.
    let bin = env!("CARGO_BIN_EXE_zoomhost");
    let out = tokio::process::Command::new(bin)
        .args([
            "status",
            "--admin",
            &base,
            "--config",
            "/nonexistent/zoomhost.toml",
        ])
        .env_remove("ZOOMHOST_ADMIN_TOKEN")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.starts_with("ready"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.trim_start().starts_with("rec ") && l.contains("running")),
        "{printed}"
    );
    assert!(printed.contains("websocket  connected"), "{printed}");
    let out = tokio::process::Command::new(bin)
        .args([
            "status",
            "--json",
            "--admin",
            &base,
            "--config",
            "/nonexistent/zoomhost.toml",
        ])
        .output()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["plugins"][0]["name"], "rec");

    let event = |n: usize| event("ops.test", n);
    live.inputs().event(event(1));
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec")
            .contains(&"e-1".to_string()))
        .await
    );

    // Disabled: out of routing, listed as disabled, nothing delivered.
    let (status, body) = post(&format!("{base}/v1/plugins/rec/disable")).await;
    assert_eq!(status, 200, "{body}");
    let plugins = get_json(&format!("{base}/v1/plugins")).await;
    assert_eq!(plugins[0]["state"], "disabled", "{plugins}");
    assert_eq!(
        live.inputs().event(event(2)),
        0,
        "delivered to a disabled plugin"
    );
    // The folder watcher's view of the file does not bring it back.
    assert!(matches!(
        t.host
            .load_file(&t.plugins_dir().join("rec.wasm"))
            .await
            .unwrap(),
        zoomhost_runtime::LoadOutcome::Disabled
    ));

    // Enabled: loaded from its file, delivered again.
    let (status, body) = post(&format!("{base}/v1/plugins/rec/enable")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["outcome"].as_str().unwrap().starts_with("loaded"),
        "{body}"
    );
    assert_eq!(live.inputs().event(event(3)), 1);
    assert!(
        eventually(WAIT, || event_ids(&t.logs, "rec")
            .contains(&"e-3".to_string()))
        .await
    );
    assert!(!event_ids(&t.logs, "rec").contains(&"e-2".to_string()));

    // Reloaded: fresh instances of the same file, counted as a swap.
    let (status, body) = post(&format!("{base}/v1/plugins/rec/reload")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["outcome"].as_str().unwrap().starts_with("swapped"),
        "{body}"
    );
    let (_, text) = get(&format!("{base}/metrics"), None).await;
    let samples = parse_metrics(&text);
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_reloads_total",
            &[("plugin", "rec"), ("result", "swapped")]
        ),
        1.0
    );

    // Unknown plugins and actions, and names that are paths, are refused.
    assert_eq!(post(&format!("{base}/v1/plugins/nope/reload")).await.0, 404);
    assert_eq!(post(&format!("{base}/v1/plugins/rec/explode")).await.0, 404);
    assert_eq!(
        post(&format!("{base}/v1/plugins/..%2Frec/enable")).await.0,
        422
    );
    // Outside a cluster there is no cluster view.
    assert_eq!(get(&format!("{base}/v1/cluster"), None).await.0, 404);
    live.shutdown().await;
}

/// A cluster node of `role` named `node` with the admin API on a free loopback port, the
/// event WebSocket (no webhook receiver) and the recorder.
async fn cluster_node(
    nats: &zoomhost::cluster::nats_server::NatsServer,
    zoom: &LocalZoom,
    node: &str,
    role: zoomhost::config::Role,
    dir: &std::path::Path,
) -> (zoomhost::host::Host, String) {
    let plugins = dir.join(node);
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm("recorder"), plugins.join("rec.wasm")).unwrap();
    let mut zoom_config = zoomhost::config::for_local_zoom(zoom, vec![]);
    zoom_config.rtms = None;
    if let Some(ws) = zoom_config.websocket.as_mut() {
        *ws = ws.clone().scaled_down(100);
    }
    let mut cluster = zoomhost::config::ClusterConfig::new(nats.url(), role);
    cluster.node = node.to_string();
    cluster.lease_ttl = Duration::from_millis(3000);
    let config = zoomhost::config::HostConfig {
        runtime: zoomhost_runtime::RuntimeConfig {
            plugins_dir: plugins,
            ..Default::default()
        },
        zoom: Some(zoom_config),
        admin: Some(zoomhost::config::AdminConfig::on(
            "127.0.0.1:0".parse().unwrap(),
            None,
        )),
        cluster: Some(cluster),
    };
    let host = zoomhost::host::Host::start(config, zoomhost::host::HostOptions::default())
        .await
        .expect("starting a cluster node");
    let base = format!("http://{}", host.admin_addr().unwrap());
    (host, base)
}

/// Polls `url` (hang guard only) until it answers `status`; returns the body.
async fn until_status(url: &str, status: u16) -> serde_json::Value {
    for _ in 0..1500 {
        let (s, body) = get(url, None).await;
        if s == status {
            return serde_json::from_str(&body).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never answered {status}");
}

fn check<'a>(body: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_are_ready_by_role_and_show_the_cluster() {
    use zoomhost::config::Role;
    let Some(mut nats) = crate::cluster::nats().await else {
        return;
    };
    let zoom = LocalZoom::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (leader, leader_base) =
        cluster_node(&nats, &zoom, "ops-a", Role::Ingress, dir.path()).await;
    // The first node takes the lease and connects before the second contends.
    until_status(&format!("{leader_base}/readyz"), 200).await;
    assert!(zoom.events.wait_connected(WAIT).await);
    let (standby, standby_base) =
        cluster_node(&nats, &zoom, "ops-b", Role::Ingress, dir.path()).await;
    let (worker, worker_base) = cluster_node(&nats, &zoom, "ops-w", Role::Worker, dir.path()).await;

    let body = until_status(&format!("{leader_base}/readyz"), 200).await;
    assert_eq!(check(&body, "websocket")["required"], true, "{body}");
    assert_eq!(check(&body, "cluster")["ok"], true, "{body}");
    // The standby holds no WebSocket and is ready anyway.
    let body = until_status(&format!("{standby_base}/readyz"), 200).await;
    assert_eq!(check(&body, "websocket")["required"], false, "{body}");
    let body = until_status(&format!("{worker_base}/readyz"), 200).await;
    assert!(body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["name"] != "websocket"));

    // The cluster view: every node with its role, the worker owning the partitions.
    let mut nodes = Vec::new();
    for _ in 0..500 {
        let view = get_json(&format!("{worker_base}/v1/cluster")).await;
        nodes = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node"].as_str().unwrap().to_string())
            .collect();
        if nodes.len() == 3 && view["owners"].as_object().is_some_and(|o| !o.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(nodes, ["ops-a", "ops-b", "ops-w"]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoomhost"))
        .args([
            "status",
            "--admin",
            &worker_base,
            "--config",
            "/nonexistent/z.toml",
        ])
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("\ncluster\n") && printed.contains("ops-w"),
        "{printed}"
    );
    assert!(
        printed.contains("nats       connected (node ops-w, role worker)"),
        "{printed}"
    );

    // The cluster's families, on the nodes that have them, cover the dashboard's.
    let mut families = BTreeSet::new();
    for base in [&leader_base, &worker_base] {
        let (_, text) = get(&format!("{base}/metrics"), None).await;
        promtool_check(&text);
        families.extend(zoomhost::admin::metrics::family_names(&text));
    }
    for name in dashboard_metric_names()
        .into_iter()
        .filter(|n| n.starts_with("zoomhost_cluster_"))
    {
        assert!(
            family_of(&name, &families).is_some(),
            "the dashboard queries {name}, which the cluster nodes do not export"
        );
    }
    let (_, text) = get(&format!("{leader_base}/metrics"), None).await;
    assert_eq!(
        value(&parse_metrics(&text), "zoomhost_cluster_leading", &[]),
        1.0
    );
    let (_, text) = get(&format!("{worker_base}/metrics"), None).await;
    let samples = parse_metrics(&text);
    assert_eq!(value(&samples, "zoomhost_cluster_leading", &[]), 0.0);
    assert!(value(&samples, "zoomhost_cluster_partitions_owned", &[]) > 0.0);

    // NATS goes away: no node is ready; it comes back: all are again.
    nats.kill();
    let body = until_status(&format!("{worker_base}/readyz"), 503).await;
    assert_eq!(body["not_ready"], serde_json::json!(["cluster"]), "{body}");
    let body = until_status(&format!("{standby_base}/readyz"), 503).await;
    assert!(
        body["not_ready"]
            .as_array()
            .unwrap()
            .contains(&"cluster".into()),
        "{body}"
    );
    let (_, text) = get(&format!("{worker_base}/metrics"), None).await;
    assert_eq!(
        value(
            &parse_metrics(&text),
            "zoomhost_source_connected",
            &[("source", "nats")]
        ),
        0.0
    );
    nats.restart().unwrap();
    until_status(&format!("{worker_base}/readyz"), 200).await;
    until_status(&format!("{standby_base}/readyz"), 200).await;
    for host in [worker, standby, leader] {
        host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_reason_with_restarts_and_denied_http() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for stem in ["trapper", "spinner", "denied"] {
        std::fs::copy(wasm("hostile"), plugins.join(format!("{stem}.wasm"))).unwrap();
    }
    let config = zoomhost::config::HostConfig::parse(
        r#"
        [admin]
        bind = "127.0.0.1:0"
        [plugins.trapper]
        config = { mode = "trap-nth", n = "2" }
        [plugins.spinner]
        config = { mode = "loop" }
        limits = { event_deadline_ms = 100 }
        [plugins.denied]
        config = { mode = "http-ungranted" }
        "#,
        dir.path(),
        &|_| None,
    )
    .unwrap();
    let host = zoomhost::host::Host::start(config, zoomhost::host::HostOptions::default())
        .await
        .unwrap();
    let base = format!("http://{}", host.admin_addr().unwrap());
    for n in 1..=3 {
        host.inputs().event(event("ops.fault", n));
    }
    let done = |s: &zoomhost_runtime::StatsSnapshot| s.events_delivered == 3;
    let plugins_host = host.plugins().clone();
    for name in ["trapper", "spinner", "denied"] {
        let mut delivered = false;
        for _ in 0..1500 {
            if plugins_host.stats(name).await.is_some_and(|s| done(&s)) {
                delivered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(delivered, "{name} did not get its 3 events");
    }
    let (_, text) = get(&format!("{base}/metrics"), None).await;
    promtool_check(&text);
    let samples = parse_metrics(&text);
    let failures = "zoomhost_plugin_failures_total";
    assert_eq!(
        value(
            &samples,
            failures,
            &[("plugin", "trapper"), ("reason", "trap")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            failures,
            &[("plugin", "trapper"), ("reason", "deadline")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            failures,
            &[("plugin", "spinner"), ("reason", "deadline")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_restarts_total",
            &[("plugin", "trapper")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_restarts_total",
            &[("plugin", "spinner")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_quarantined",
            &[("plugin", "spinner")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "zoomhost_plugin_http_denied_total",
            &[("plugin", "denied")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            failures,
            &[("plugin", "denied"), ("reason", "trap")]
        ),
        0.0
    );
    // Each failed call was timed too: the spinner's three ran into their 100 ms deadline.
    let sum = "zoomhost_plugin_call_duration_seconds_sum";
    assert!(value(&samples, sum, &[("plugin", "spinner"), ("kind", "event")]) >= 0.3);
    host.shutdown().await;
}

/// `zoomhost bench --io-floor`: the sender process (the hidden `bench-floor-send`
/// command of the real binary) writes every stream's messages on the simulator's spread
/// schedule, and each bare reader (epoll, io_uring) counts all of them and its own CPU.
#[test]
fn the_bench_io_floor_reads_every_message_of_its_sender_process() {
    use zoomhost::bench_floor::{measure, Pace, Reader};
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_zoomhost"));
    for reader in [Reader::Epoll, Reader::IoUring] {
        let floor = measure(bin, 25, 6, Pace::Spread, reader).unwrap();
        assert_eq!(floor.messages, 25 * 6, "{reader:?}");
        // At least the end of each socket is a read of its own; a loaded machine may find
        // several messages waiting on one socket, so no more is asserted.
        assert!(
            floor.reads >= 25 && floor.waits >= 1,
            "{reader:?} {floor:?}"
        );
        assert!(
            floor.cpu > 0.0 && floor.us_per_message() > 0.0,
            "{reader:?} {floor:?}"
        );
    }
}
