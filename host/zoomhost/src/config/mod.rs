//! Host configuration: `zoomhost.toml`, validated at load with errors that name the key.
//!
//! ```toml
//! plugins_dir = "plugins"          # folder watched for *.wasm
//!
//! [limits]
//! event_deadline_ms = 1000         # per event call
//! media_deadline_ms = 50           # per media-frame call
//! memory_mib = 64                  # per instance
//! mailbox_capacity = 1024          # deliveries queued per plugin before events start waiting
//! event_wait_ms = 2000             # how long an event may wait beyond capacity before it is dropped
//! audio_queue_frames = 500         # audio frames queued per plugin before the oldest is dropped
//! max_failures = 5                 # failures within `failure_window_s` that quarantine a plugin
//! failure_window_s = 60
//! log_lines_per_second = 1000      # per plugin; the rest are counted and summarised
//! # ...and the sandbox budgets: see `zoomhost_runtime::limits` and README's "Sandbox and failure policy"
//!
//! [plugins.transcript-forwarder.limits]   # one plugin's own limits, over [limits]
//! event_deadline_ms = 10000
//!
//! [plugins.slack-notifier]         # keyed by the .wasm file stem
//! allow_http = ["https://hooks.slack.com"]
//! config = { webhook_url = "${SLACK_WEBHOOK_URL}" }
//!
//! [plugins.camera-follower]
//! stream_control = true            # may close RTMS streams and subscribe video (for every plugin)
//!
//! [admin]                          # the admin API: metrics, health, readiness, /v1
//! bind = "127.0.0.1:9464"          # default; "" turns it off
//! # token = "${ZOOMHOST_ADMIN_TOKEN}"   # required when bind is not loopback
//!
//! [zoom]                           # every key may come from the environment instead
//! account_id = "..."               # ZOOM_ACCOUNT_ID
//! client_id = "..."                # ZOOM_CLIENT_ID
//! client_secret = "${MY_SECRET}"   # ZOOM_CLIENT_SECRET
//! subscription_id = "..."          # ZOOM_SUBSCRIPTION_ID (enables the event WebSocket)
//! webhook_secret_token = "..."     # ZOOM_WEBHOOK_SECRET_TOKEN (enables the webhook receiver)
//! oauth_url = "https://zoom.us/oauth/token"   # ZOOM_OAUTH_URL (zoomgov.com for Government)
//! ws_url = "wss://ws.zoom.us/ws"              # ZOOM_WS_URL
//! grant = "account_credentials"    # or "client_credentials"
//!
//! rtms_client_id = "..."          # ZOOM_RTMS_CLIENT_ID: the app owning the RTMS scope
//! rtms_client_secret = "..."      # ZOOM_RTMS_CLIENT_SECRET (both default to client_id/secret)
//!
//! [zoom.rtms]                      # RTMS media streams, opened on *.rtms_started
//! enabled = true                   # default: true when RTMS or app credentials are set
//! media = ["audio", "transcript"]  # also "video", "share", "chat"
//! codec = "l16"                    # l16 | g711 | g722 | opus
//! sample_rate = 16000              # 8000 | 16000 | 32000 | 48000
//! channels = 1
//! frame_ms = 20                    # ms of audio per message, a multiple of 20
//! per_speaker = false              # one audio stream per speaker instead of the mix
//! # transcript_language = "en"     # Zoom's number (9), name ("english") or tag ("en")
//! # enable_lid = true              # transcript language detection; unset: Zoom's (on)
//! # buffer_data = true             # unset: Zoom's default (replay audio from before connecting)
//! handshake_id = "product"         # or "meeting_uuid" (the id field of the handshakes)
//! individual_video = false         # one participant's video, chosen by plugins
//! single_socket = false            # one `all` media socket instead of one per kind
//! resume_window_s = 60             # signaling window: how long a lost stream may be resumed
//! media_resume_window_s = 65       # media window: the same for a lost media socket
//! reconnect_min_ms = 3000          # re-handshake delays, doubling up to reconnect_max_ms
//! reconnect_max_ms = 30000
//! close_grace_ms = 5000            # wait for Zoom's word after a bare socket close
//! idle_timeout_s = 35              # a silent socket is treated as lost
//!
//! [zoom.websocket]
//! enabled = true                   # default: true when a subscription id is set
//! heartbeat_s = 30
//! silence_timeout_s = 45
//!
//! [zoom.webhook]
//! enabled = true                   # default: true when a webhook secret token is set
//! bind = "127.0.0.1:8080"
//! path = "/zoom/webhook"
//! max_body_bytes = 1048576
//! timestamp_window_s = 300
//! ```
//!
//! The `[admin]` section (the admin HTTP listener: metrics, health, readiness, the `/v1`
//! API) is described in [`admin`].
//!
//! The `[cluster]` section (NATS JetStream cluster membership) is described in
//! [`cluster`]; it is read into [`HostConfig::cluster`] by every load, and
//! [`crate::host::Host::start`] joins the cluster when it is set. It is read once, at
//! start: the config-file watcher ([`runtime_loader_for`]) applies the runtime's part of
//! an edited file live, and reports a changed `[cluster]` section as a warning that a
//! restart is needed to apply it.
//!
//! Environment variables win over the file; a `.env` file beside the config fills in what
//! the real environment does not set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

pub mod admin;
pub mod cluster;
pub use admin::AdminConfig;
pub use cluster::{ClusterAuth, ClusterConfig, Role};

pub use zoomhost_runtime::{Limits, PluginGrant, ResolvedGrant, RuntimeConfig};

/// A host's `[zoom]` settings for a local simulated Zoom: OAuth, the event WebSocket and
/// the RTMS client requesting `media`, with the simulator's credentials.
pub fn for_local_zoom(
    zoom: &zoomhost_sim::LocalZoom,
    media: Vec<zoomhost_types::MediaKind>,
) -> ZoomConfig {
    use zoomhost_sim::credentials::*;
    let secret = || Secret::new(CLIENT_SECRET.to_string());
    let mut rtms = zoomhost_zoom::rtms::RtmsConfig::new(CLIENT_ID, secret());
    rtms.media = media;
    ZoomConfig {
        oauth: Some(zoomhost_zoom::oauth::OAuthConfig::new(
            zoom.oauth.url(),
            CLIENT_ID,
            secret(),
            zoomhost_zoom::oauth::Grant::AccountCredentials {
                account_id: ACCOUNT_ID.into(),
            },
        )),
        websocket: Some(zoomhost_zoom::events::EventStreamConfig::new(
            zoom.events.url(),
            SUBSCRIPTION_ID,
        )),
        webhook: None,
        rtms: Some(rtms),
        dedupe: Default::default(),
    }
}

/// Re-reads a config file for the runtime's watcher: the runtime's part of
/// [`HostConfig::load`].
pub fn runtime_loader() -> zoomhost_runtime::reload::ConfigLoader {
    std::sync::Arc::new(|path| HostConfig::load(path).map(|c| c.runtime))
}

/// [`runtime_loader`] for a host running with the `[cluster]` section `running`: a
/// re-read file whose `[cluster]` section differs is still applied (its runtime part),
/// and the difference is logged as a warning ([`cluster_change`]): cluster membership
/// cannot change while the host runs.
pub fn runtime_loader_for(
    running: Option<ClusterConfig>,
) -> zoomhost_runtime::reload::ConfigLoader {
    std::sync::Arc::new(move |path| {
        let config = HostConfig::load(path)?;
        if let Some(warning) = cluster_change(running.as_ref(), config.cluster.as_ref()) {
            tracing::warn!("{}: {warning}", path.display());
        }
        Ok(config.runtime)
    })
}

/// What a re-read config's `[cluster]` section (`loaded`) changes against the one the
/// host runs with (`running`), as a warning naming the keys; `None` when nothing does.
pub fn cluster_change(
    running: Option<&ClusterConfig>,
    loaded: Option<&ClusterConfig>,
) -> Option<String> {
    let restart = "a restart is needed to apply it; the host keeps its running [cluster] section";
    match (running, loaded) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some(format!("[cluster] was added: {restart}")),
        (Some(_), None) => Some(format!("[cluster] was removed: {restart}")),
        (Some(a), Some(b)) => {
            let keys = cluster::changed_keys(a, b);
            Some(format!(
                "cluster.{} changed: {restart}",
                keys.join(", cluster.")
            ))
        }
    }
}

/// The raw file shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    plugins_dir: Option<PathBuf>,
    limits: Limits,
    plugins: BTreeMap<String, PluginGrant>,
    zoom: Option<RawZoom>,
    cluster: Option<cluster::RawCluster>,
    admin: Option<admin::RawAdmin>,
}

/// The host configuration after validation: the runtime's part and the sources'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostConfig {
    /// The plugin runtime: `plugins_dir`, `[limits]`, `[plugins.NAME]`.
    pub runtime: RuntimeConfig,
    /// Zoom connectivity; `None` when nothing Zoom is configured (file or environment).
    pub zoom: Option<ZoomConfig>,
    /// The admin listener; `None` when neither the file nor the environment configures
    /// it (`zoomhost run` then serves it on loopback, [`admin::DEFAULT_BIND`]).
    pub admin: Option<AdminConfig>,
    /// Cluster membership (`[cluster]`); `None` without the section (a standalone host,
    /// no NATS needed).
    pub cluster: Option<ClusterConfig>,
}

impl HostConfig {
    /// Reads and validates a TOML file; relative `plugins_dir` is resolved against the
    /// file's folder. Environment variables come from the process, then from a `.env` file
    /// beside the config (which never overrides the real environment).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading host config {}", path.display()))?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = absolute.parent().unwrap_or(Path::new("."));
        let dotenv = read_dotenv(&base.join(".env"))?;
        Self::parse(&text, base, &|k| {
            std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
        })
        .with_context(|| format!("in host config {}", path.display()))
    }

    /// The configuration when there is no file: defaults, plus Zoom settings from the
    /// environment and a `.env` file in `base`.
    pub fn from_env(base: &Path) -> anyhow::Result<Self> {
        let dotenv = read_dotenv(&base.join(".env"))?;
        Self::parse("", base, &|k| {
            std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
        })
        .context("in the environment (no host config file)")
    }

    /// Parses TOML text; `env` resolves `${VAR}` references. Every problem is reported at
    /// once, each naming its key.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut problems = Vec::new();
        let plugins_dir = match raw.plugins_dir {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p,
            None => base.join("plugins"),
        };
        let runtime = RuntimeConfig::resolve(
            plugins_dir,
            raw.limits,
            raw.plugins,
            &|value| expand_env(value, env),
            &mut problems,
        );
        let zoom = zoomhost_zoom::config::resolve(
            raw.zoom,
            env,
            &|value| expand_env(value, env),
            &mut problems,
        );
        let cluster = cluster::resolve(
            raw.cluster,
            base,
            &|value| expand_env(value, env),
            &mut problems,
        );
        let admin = admin::resolve(
            raw.admin,
            env,
            &|value| expand_env(value, env),
            &mut problems,
        );
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
        }
        Ok(Self {
            runtime,
            zoom,
            admin,
            cluster,
        })
    }
}

pub use zoomhost_protocol::Secret;
pub use zoomhost_zoom::config::{RawZoom, ZoomConfig, DEFAULT_OAUTH_URL, DEFAULT_WS_URL};

/// Reads `KEY=value` pairs from a `.env` file; a missing file is empty.
fn read_dotenv(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(BTreeMap::new()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let mut out = BTreeMap::new();
    for (i, item) in iter.enumerate() {
        // The error text of dotenvy may quote the line; name only the position.
        let (k, v) = item
            .map_err(|_| anyhow::anyhow!("{}: entry {} is not KEY=value", path.display(), i + 1))?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Expands `${VAR}` references; `$$` is a literal `$`. A missing variable is an error that
/// names it (never its value).
pub fn expand_env(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let var = &tail[..end];
            if var.is_empty() {
                return Err("empty ${} reference".into());
            }
            let v = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            out.push_str(&v);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_env_and_reports_missing_by_name() {
        assert_eq!(expand_env("a${SECRET}b$$", &env).unwrap(), "as3cr3tb$");
        let err = expand_env("${NOPE}", &env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn parses_grants_and_limits() {
        let cfg = HostConfig::parse(
            r#"
            plugins_dir = "p"
            [limits]
            event_deadline_ms = 250
            [plugins.slack]
            allow_http = ["https://hooks.slack.com", "http://127.0.0.1:*"]
            config = { url = "https://x/${SECRET}" }
            stream_control = true
            "#,
            Path::new("/etc/zh"),
            &env,
        )
        .unwrap();
        assert_eq!(cfg.runtime.plugins_dir, Path::new("/etc/zh/p"));
        assert_eq!(cfg.runtime.limits.event_deadline_ms, 250);
        assert_eq!(cfg.runtime.limits.media_deadline_ms, 50);
        let g = cfg.runtime.grant("slack");
        assert_eq!(g.allow_http.len(), 2);
        assert_eq!(g.config["url"], "https://x/s3cr3t");
        assert!(cfg.runtime.grant("other").allow_http.is_empty());
        // Stream control is granted per plugin, never by default.
        assert!(g.stream_control);
        assert!(!cfg.runtime.grant("other").stream_control);
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = HostConfig::parse(
            r#"
            [limits]
            memory_mib = 0
            [plugins.a]
            allow_http = ["ftp//nope"]
            config = { k = "${MISSING_ONE}" }
            "#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.memory_mib"), "{err}");
        assert!(err.contains("plugins.a.allow_http[0]"), "{err}");
        assert!(err.contains("MISSING_ONE"), "{err}");
    }

    #[test]
    fn the_cluster_section_is_part_of_the_config() {
        let text = "[cluster]\nnats_url = \"nats://h:4222\"\nrole = \"worker\"\nnode = \"w1\"\nreplicas = 3\n";
        let cfg = HostConfig::parse(text, Path::new("."), &env).unwrap();
        let cluster = cfg.cluster.as_ref().expect("a [cluster] section");
        assert_eq!((cluster.role, cluster.node.as_str()), (Role::Worker, "w1"));
        assert_eq!(cluster.replicas, 3);
        assert_eq!(
            HostConfig::parse("", Path::new("."), &env).unwrap().cluster,
            None
        );
        let err = HostConfig::parse(&text.replace("= 3", "= 9"), Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.replicas"), "{err}");
    }

    #[test]
    fn a_changed_cluster_section_is_reported_by_key() {
        let parse = |extra: &str| {
            let text =
                format!("[cluster]\nnats_url = \"n\"\nrole = \"all\"\nnode = \"a\"\n{extra}");
            HostConfig::parse(&text, Path::new("."), &env)
                .unwrap()
                .cluster
        };
        let running = parse("");
        assert_eq!(cluster_change(running.as_ref(), parse("").as_ref()), None);
        assert_eq!(cluster_change(None, None), None);
        let changed = cluster_change(
            running.as_ref(),
            parse("replicas = 3\npartitions = 8\n").as_ref(),
        )
        .expect("a warning");
        assert!(changed.contains("cluster.partitions"), "{changed}");
        assert!(changed.contains("cluster.replicas"), "{changed}");
        assert!(changed.contains("restart"), "{changed}");
        assert!(!changed.contains("cluster.role"), "{changed}");
        let removed = cluster_change(running.as_ref(), None).expect("a warning");
        assert!(
            removed.contains("[cluster]") && removed.contains("restart"),
            "{removed}"
        );
        let added = cluster_change(None, running.as_ref()).expect("a warning");
        assert!(
            added.contains("[cluster]") && added.contains("restart"),
            "{added}"
        );
    }

    #[test]
    fn the_watcher_reports_a_changed_cluster_section_and_applies_the_rest() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zoomhost.toml");
        let section = "[cluster]\nnats_url = \"nats://h:4222\"\nrole = \"worker\"\nnode = \"w1\"\n";
        std::fs::write(
            &path,
            format!("[limits]\nevent_deadline_ms = 100\n{section}"),
        )
        .unwrap();
        let running = HostConfig::load(&path).unwrap().cluster;
        let load = runtime_loader_for(running);
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let captured = captured.clone();
                move || captured.clone()
            })
            .with_ansi(false)
            .finish();
        let log = || String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            // Unchanged: applied, nothing said.
            assert_eq!(load(&path).unwrap().limits.event_deadline_ms, 100);
            assert!(!log().contains("cluster"), "{}", log());
            // The section changed with the limits: the limits apply, the change is reported.
            std::fs::write(
                &path,
                format!("[limits]\nevent_deadline_ms = 200\n{section}partitions = 8\n"),
            )
            .unwrap();
            assert_eq!(load(&path).unwrap().limits.event_deadline_ms, 200);
            let warned = log();
            assert!(warned.contains("WARN"), "{warned}");
            assert!(warned.contains("cluster.partitions"), "{warned}");
            assert!(warned.contains("restart"), "{warned}");
            // An invalid section is refused, naming the key (the watcher keeps the old config).
            std::fs::write(&path, format!("{section}replicas = 0\n")).unwrap();
            let err = load(&path).unwrap_err();
            assert!(format!("{err:#}").contains("cluster.replicas"), "{err:#}");
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = HostConfig::parse("[limits]\nevent_deadline = 3\n", Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("event_deadline"), "{err}");
    }
}
