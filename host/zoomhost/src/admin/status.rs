//! `zoomhost status`: reads a running host's admin API and prints what it holds:
//! plugins (state, deliveries, failures, drops, instances), sources (connected, last
//! outage), RTMS streams with their plugins and, in a cluster, the nodes, roles and
//! partitions.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::api::PluginView;

/// What `zoomhost status` read.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// `/readyz`'s body (its status code aside).
    pub ready: Value,
    /// `/v1/plugins`.
    pub plugins: Vec<PluginView>,
    /// `/v1/sources`.
    pub sources: Value,
    /// `/v1/streams`.
    pub streams: Value,
    /// `/v1/cluster`, when the host is a cluster member.
    pub cluster: Option<Value>,
}

/// Reads every view from the admin API at `base` (e.g. `http://127.0.0.1:9464`) with
/// `token` as the bearer token when given.
pub async fn fetch(base: &str, token: Option<&str>) -> anyhow::Result<StatusReport> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let base = base.trim_end_matches('/');
    let get = |path: &'static str| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.with_context(|| {
                format!("asking {base}{path} (is zoomhost running with its admin API there?)")
            })?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                anyhow::bail!(
                    "{base}{path}: 401: the admin API wants a bearer token (--token or ZOOMHOST_ADMIN_TOKEN)"
                );
            }
            let body: Value = response
                .json()
                .await
                .with_context(|| format!("{base}{path}: the answer is not JSON"))?;
            Ok::<_, anyhow::Error>((status, body))
        }
    };
    let (_, ready) = get("/readyz").await?;
    let (status, plugins) = get("/v1/plugins").await?;
    anyhow::ensure!(
        status.is_success(),
        "{base}/v1/plugins: {status}: {plugins}"
    );
    let plugins: Vec<PluginView> =
        serde_json::from_value(plugins).context("reading /v1/plugins")?;
    let (_, sources) = get("/v1/sources").await?;
    let (_, streams) = get("/v1/streams").await?;
    let cluster = if sources.get("cluster").is_some_and(|c| !c.is_null()) {
        let (status, body) = get("/v1/cluster").await?;
        Some(if status.is_success() {
            body
        } else {
            serde_json::json!({ "error": body.get("error").cloned().unwrap_or(Value::Null) })
        })
    } else {
        None
    };
    Ok(StatusReport {
        ready,
        plugins,
        sources,
        streams,
        cluster,
    })
}

impl StatusReport {
    /// Everything as one JSON document (`--json`).
    pub fn json(&self) -> Value {
        serde_json::json!({
            "ready": self.ready,
            "plugins": self.plugins,
            "sources": self.sources,
            "streams": self.streams,
            "cluster": self.cluster,
        })
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let ready = self.ready.get("ready").and_then(Value::as_bool) == Some(true);
        let not_ready: Vec<String> = self.ready["not_ready"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if ready {
            let _ = writeln!(out, "ready");
        } else {
            let _ = writeln!(out, "NOT READY: {}", not_ready.join(", "));
        }
        self.render_plugins(&mut out);
        self.render_sources(&mut out);
        self.render_streams(&mut out);
        if let Some(cluster) = &self.cluster {
            render_cluster(&mut out, cluster);
        }
        out
    }

    fn render_plugins(&self, out: &mut String) {
        let _ = writeln!(out, "\nplugins");
        if self.plugins.is_empty() {
            let _ = writeln!(out, "  (none loaded)");
            return;
        }
        let _ = writeln!(
            out,
            "  {:<22} {:<12} {:>10} {:>10} {:>8} {:>8} {:>9} {:>7}",
            "name", "state", "version", "delivered", "failed", "dropped", "instances", "queued"
        );
        for p in &self.plugins {
            let n = |k: &str| p.stats.get(k).and_then(Value::as_u64).unwrap_or(0);
            let delivered = n("events_delivered") + n("media_delivered");
            let failed = n("events_failed") + n("media_failed");
            let dropped = n("events_dropped") + n("audio_dropped") + n("media_dropped");
            let _ = writeln!(
                out,
                "  {:<22} {:<12} {:>10} {:>10} {:>8} {:>8} {:>9} {:>7}",
                p.name,
                p.state,
                p.version,
                delivered,
                failed,
                dropped,
                p.instances.len(),
                p.queued
            );
        }
    }

    fn render_sources(&self, out: &mut String) {
        let _ = writeln!(out, "\nsources");
        let mut any = false;
        if let Some(ws) = self.sources.get("websocket").filter(|v| !v.is_null()) {
            any = true;
            let state = ws["state"].as_str().unwrap_or("?");
            let mut line = format!(
                "  websocket  {state}, {} events, {} outages ({} ms in all)",
                ws["events"].as_u64().unwrap_or(0),
                ws["outages"].as_u64().unwrap_or(0),
                ws["outage_total_ms"].as_u64().unwrap_or(0)
            );
            if let Some(last) = ws.get("last_outage").filter(|v| !v.is_null()) {
                let _ = write!(
                    line,
                    "; last: {} ms after {}",
                    last["duration_ms"].as_u64().unwrap_or(0),
                    last["cause"].as_str().unwrap_or("?")
                );
            }
            let _ = writeln!(out, "{line}");
        }
        if let Some(wh) = self.sources.get("webhook").filter(|v| !v.is_null()) {
            any = true;
            let _ = writeln!(
                out,
                "  webhook    accepting on {}, {} accepted, {} rejected, {} retries",
                wh["path"].as_str().unwrap_or("?"),
                wh["accepted"].as_u64().unwrap_or(0),
                wh["rejected"].as_u64().unwrap_or(0),
                wh["retries"].as_u64().unwrap_or(0)
            );
        }
        if let Some(c) = self.sources.get("cluster").filter(|v| !v.is_null()) {
            any = true;
            let _ = writeln!(
                out,
                "  nats       {} (node {}, role {}{})",
                c["nats"].as_str().unwrap_or("?"),
                c["node"].as_str().unwrap_or("?"),
                c["role"].as_str().unwrap_or("?"),
                if c["leading"].as_bool() == Some(true) {
                    ", ingress leader"
                } else {
                    ""
                }
            );
        }
        if !any {
            let _ = writeln!(out, "  (no Zoom sources on this node)");
        }
    }

    fn render_streams(&self, out: &mut String) {
        let streams = self.streams["streams"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(out, "\nRTMS streams ({} open)", streams.len());
        for s in streams {
            let plugins: Vec<&str> = s["plugins"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let frames: Vec<String> = s["frames"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}  meeting {}  frames: {}  plugins: {}",
                s["stream_id"].as_str().unwrap_or("?"),
                s["meeting_id"].as_str().unwrap_or("?"),
                if frames.is_empty() {
                    "-".to_string()
                } else {
                    frames.join(", ")
                },
                if plugins.is_empty() {
                    "-".to_string()
                } else {
                    plugins.join(", ")
                }
            );
        }
    }
}

fn render_cluster(out: &mut String, cluster: &Value) {
    let _ = writeln!(out, "\ncluster");
    if let Some(error) = cluster.get("error") {
        let _ = writeln!(out, "  unavailable: {}", error.as_str().unwrap_or("?"));
        return;
    }
    match serde_json::from_value::<crate::cluster::status::ClusterStatus>(cluster.clone()) {
        Ok(status) => {
            for line in status.to_string().lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        Err(_) => {
            let _ = writeln!(out, "  {cluster}");
        }
    }
}

/// The admin API's base URL a config points at: its `[admin] bind` (an unspecified
/// address such as `0.0.0.0` is reached on loopback), else the default.
pub fn url_of(config: Option<&crate::config::AdminConfig>) -> Option<String> {
    let bind = match config {
        Some(c) => c.bind?,
        None => crate::config::admin::DEFAULT_BIND,
    };
    let ip = if bind.ip().is_unspecified() {
        match bind.ip() {
            std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        bind.ip()
    };
    Some(format!(
        "http://{}",
        std::net::SocketAddr::new(ip, bind.port())
    ))
}

/// `zoomhost status`: reads the admin API at `admin` (default: the one `config_path`
/// configures, else loopback) and prints the report, or the raw JSON.
pub async fn run(
    admin: Option<String>,
    token: Option<String>,
    config_path: &std::path::Path,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let config = if config_path.exists() {
        Some(crate::config::HostConfig::load(config_path)?)
    } else {
        None
    };
    let from_config = config.as_ref().and_then(|c| c.admin.clone());
    let base = match admin {
        Some(url) => url,
        None => url_of(from_config.as_ref()).with_context(|| {
            format!(
                "{}: [admin] is turned off; pass --admin URL",
                config_path.display()
            )
        })?,
    };
    let token = token.or_else(|| {
        from_config
            .and_then(|c| c.token)
            .map(|t| t.expose().to_string())
    });
    let report = fetch(&base, token.as_deref()).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).context("printing JSON")?
        );
    } else {
        print!("{}", report.render());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminConfig;

    #[test]
    fn the_url_follows_the_config_and_reaches_a_wildcard_bind_on_loopback() {
        assert_eq!(url_of(None).as_deref(), Some("http://127.0.0.1:9464"));
        let any = AdminConfig::on("0.0.0.0:7000".parse().unwrap(), None);
        assert_eq!(url_of(Some(&any)).as_deref(), Some("http://127.0.0.1:7000"));
        let v6 = AdminConfig::on("[::]:7001".parse().unwrap(), None);
        assert_eq!(url_of(Some(&v6)).as_deref(), Some("http://[::1]:7001"));
        assert_eq!(url_of(Some(&AdminConfig::off())), None);
    }

    #[test]
    fn the_report_names_what_is_not_ready_and_each_plugin_and_stream() {
        let report = StatusReport {
            ready: serde_json::json!({ "ready": false, "not_ready": ["websocket"] }),
            plugins: vec![PluginView {
                name: "rec".into(),
                state: "quarantined".into(),
                version: "1.2.0".into(),
                events: vec!["*".into()],
                media: vec![],
                queued: 3,
                stats: serde_json::json!({ "events_delivered": 7, "media_delivered": 5, "events_failed": 2 }),
                instances: vec![serde_json::json!({}), serde_json::json!({})],
            }],
            sources: serde_json::json!({
                "websocket": { "state": "reconnecting", "events": 7, "outages": 1, "outage_total_ms": 1500,
                               "last_outage": { "duration_ms": 1500, "cause": "dropped" } },
                "webhook": null,
                "cluster": null,
            }),
            streams: serde_json::json!({ "streams": [
                { "stream_id": "s-1", "meeting_id": "m==", "plugins": ["rec"], "frames": { "audio": 40 } }
            ] }),
            cluster: None,
        };
        let text = report.render();
        assert!(text.starts_with("NOT READY: websocket"), "{text}");
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("rec "))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["rec", "quarantined", "1.2.0", "12", "2", "0", "2", "3"]
        );
        assert!(text.contains("websocket  reconnecting, 7 events, 1 outages (1500 ms in all); last: 1500 ms after dropped"), "{text}");
        assert!(
            text.contains("s-1  meeting m==  frames: audio 40  plugins: rec"),
            "{text}"
        );
        assert_eq!(report.json()["plugins"][0]["name"], "rec");
    }
}
