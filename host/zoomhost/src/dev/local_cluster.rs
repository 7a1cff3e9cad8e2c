//! A cluster of `zoomhost run` processes on this machine, for `zoomhost dev --workers`,
//! `zoomhost bench --cluster` and the multi-process tests: each node is a child process
//! running a generated config (a `[cluster]` section pointing at one local `nats-server`,
//! and a `[zoom]` section pointing at the simulator), its log written to a file beside
//! its config. Nodes can be killed with SIGKILL (a crash as far as the cluster can tell)
//! or stopped with SIGTERM (a graceful leave: partitions handed over, lease released).
//!
//! Dropping a [`LocalCluster`] kills whatever still runs (SIGKILL), so a test that
//! panics leaves no process behind; [`LocalCluster::stop_all`] is the clean way out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::Role;

/// The webhook secret token every node of a local cluster checks.
pub const WEBHOOK_SECRET: &str = "local-cluster-webhook-secret";

/// How the nodes of a local cluster are configured.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The `zoomhost` binary to run (`std::env::current_exe()` for the CLI, the built
    /// binary for tests).
    pub binary: PathBuf,
    /// Where configs, plugin folders and logs go (`<dir>/<node>/...`).
    pub dir: PathBuf,
    /// The NATS URL.
    pub nats_url: String,
    /// The simulator's OAuth URL.
    pub oauth_url: String,
    /// The simulator's event WebSocket URL.
    pub ws_url: String,
    /// The lease TTL (`cluster.lease_ttl_ms`).
    pub lease_ttl: Duration,
    /// The partition count.
    pub partitions: u32,
    /// Lines appended to every node's config before `[zoom]` (grants, limits).
    pub extra_config: String,
    /// Extra environment for each process (e.g. `ZOOMHOST_LOG`).
    pub env: Vec<(String, String)>,
    /// The media kinds the nodes' RTMS client asks for (`audio`, `transcript`, ...);
    /// empty: no RTMS client. Its re-handshake delays are scaled down (50..400 ms).
    pub rtms_media: Vec<String>,
}

impl ClusterSettings {
    /// Settings for nodes against `zoom` and `nats_url`, run from `binary`, in `dir`;
    /// a 1.5 s lease and 16 partitions (scaled down for a quick local cluster).
    pub fn new(
        binary: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        nats_url: impl Into<String>,
        zoom: &zoomhost_sim::LocalZoom,
    ) -> Self {
        ClusterSettings {
            binary: binary.into(),
            dir: dir.into(),
            nats_url: nats_url.into(),
            oauth_url: zoom.oauth.url(),
            ws_url: zoom.events.url(),
            lease_ttl: Duration::from_millis(1500),
            partitions: 16,
            extra_config: String::new(),
            env: vec![("ZOOMHOST_LOG".into(), "warn,plugin=info".into())],
            rtms_media: Vec::new(),
        }
    }
}

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its name (`cluster.node`).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its config file.
    pub config: PathBuf,
    /// Its plugins folder.
    pub plugins_dir: PathBuf,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    /// Its webhook receiver's URL (ingress roles).
    pub webhook_url: Option<String>,
    /// Its admin API's URL.
    pub admin_url: String,
    child: Option<Child>,
    pid: u32,
}

impl NodeProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Nodes of one local cluster, by name.
#[derive(Debug)]
pub struct LocalCluster {
    settings: ClusterSettings,
    nodes: BTreeMap<String, NodeProcess>,
}

impl LocalCluster {
    /// An empty cluster (no process yet).
    pub fn new(settings: ClusterSettings) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("creating {}", settings.dir.display()))?;
        Ok(LocalCluster {
            settings,
            nodes: BTreeMap::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeProcess> {
        self.nodes.get(name)
    }

    /// The node named `name`, mutable.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeProcess> {
        self.nodes.get_mut(name)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.values()
    }

    /// Writes the config of node `name` (its plugins folder made, `plugins` copied into
    /// it as `NAME.wasm` files) and starts `zoomhost run` with it.
    pub fn spawn(
        &mut self,
        name: &str,
        role: Role,
        plugins: &[(&str, &Path)],
    ) -> anyhow::Result<&NodeProcess> {
        anyhow::ensure!(
            !self.nodes.contains_key(name),
            "a node named {name} already runs"
        );
        let home = self.settings.dir.join(name);
        let plugins_dir = home.join("plugins");
        std::fs::create_dir_all(&plugins_dir)
            .with_context(|| format!("creating {}", plugins_dir.display()))?;
        for (plugin, file) in plugins {
            let to = plugins_dir.join(format!("{plugin}.wasm"));
            std::fs::copy(file, &to)
                .with_context(|| format!("copying {} to {}", file.display(), to.display()))?;
        }
        let webhook_port = if role.is_ingress() {
            Some(free_port()?)
        } else {
            None
        };
        let admin_port = free_port()?;
        let config = home.join("zoomhost.toml");
        let mut text = node_config(&self.settings, name, role, &plugins_dir, webhook_port);
        text.push_str(&format!("\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"));
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let log = home.join("node.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("cloning the log file handle")?;
        let mut command = Command::new(&self.settings.binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("NO_COLOR", "1");
        // The file's settings must win: Zoom variables of the caller's environment
        // would override them.
        for var in ZOOM_VARS {
            command.env_remove(var);
        }
        for (k, v) in &self.settings.env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.settings.binary.display()))?;
        let pid = child.id();
        tracing::debug!(node = name, pid, "local cluster node started");
        self.nodes.insert(
            name.to_string(),
            NodeProcess {
                name: name.to_string(),
                role,
                config,
                plugins_dir,
                log,
                webhook_url: webhook_port
                    .map(|port| format!("http://127.0.0.1:{port}/zoom/webhook")),
                admin_url: format!("http://127.0.0.1:{admin_port}"),
                child: Some(child),
                pid,
            },
        );
        self.nodes
            .get(name)
            .context("the node just inserted is missing")
    }

    /// Kills node `name` with SIGKILL and reaps it (a crash).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let node = self
            .nodes
            .get_mut(name)
            .with_context(|| format!("no node named {name}"))?;
        if let Some(mut child) = node.child.take() {
            child
                .kill()
                .with_context(|| format!("killing {name} (pid {})", node.pid))?;
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops node `name` with SIGTERM (a graceful leave) and waits up to `within` for it
    /// to exit (then kills it). Returns whether it exited by itself, successfully.
    pub fn terminate(&mut self, name: &str, within: Duration) -> anyhow::Result<bool> {
        let node = self
            .nodes
            .get_mut(name)
            .with_context(|| format!("no node named {name}"))?;
        let Some(mut child) = node.child.take() else {
            return Ok(false);
        };
        signal_term(node.pid);
        let until = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().context("waiting for a node")? {
                return Ok(status.success());
            }
            if Instant::now() >= until {
                tracing::warn!(node = name, "did not stop within {within:?}: killed");
                let _ = child.kill();
                let _ = child.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every running node with SIGTERM at once and waits for each (up to
    /// `within`, then SIGKILL). Returns the names of those that did not stop cleanly.
    pub fn stop_all(&mut self, within: Duration) -> Vec<String> {
        for node in self.nodes.values() {
            if node.child.is_some() {
                signal_term(node.pid);
            }
        }
        let until = Instant::now() + within;
        let mut unclean = Vec::new();
        for node in self.nodes.values_mut() {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            unclean.push(node.name.clone());
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        unclean.push(node.name.clone());
                        break;
                    }
                }
            }
        }
        unclean
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The Zoom variables that would override a node's config file.
const ZOOM_VARS: [&str; 12] = [
    "ZOOMHOST_ADMIN_BIND",
    "ZOOMHOST_ADMIN_TOKEN",
    "ZOOM_ACCOUNT_ID",
    "ZOOM_CLIENT_ID",
    "ZOOM_CLIENT_SECRET",
    "ZOOM_SUBSCRIPTION_ID",
    "ZOOM_WEBHOOK_SECRET_TOKEN",
    "ZOOM_OAUTH_URL",
    "ZOOM_WS_URL",
    "ZOOM_RTMS_CLIENT_ID",
    "ZOOM_RTMS_CLIENT_SECRET",
    "ZOOM_GRANT",
];

fn signal_term(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid of a child this process started and has not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// A free loopback TCP port (bound and released; a race with another binder is
/// possible but unlikely).
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn toml_string(text: &str) -> String {
    format!("{text:?}")
}

/// The config of one node.
pub fn node_config(
    settings: &ClusterSettings,
    name: &str,
    role: Role,
    plugins_dir: &Path,
    webhook_port: Option<u16>,
) -> String {
    use zoomhost_sim::credentials::*;
    let role_name = crate::cluster::status::role_name(role);
    let mut text = format!(
        "# Generated for a local cluster: node {name}.\nplugins_dir = {}\n{}\n",
        toml_string(&plugins_dir.display().to_string()),
        settings.extra_config
    );
    text.push_str(&format!(
        "[zoom]\naccount_id = {}\nclient_id = {}\nclient_secret = {}\nsubscription_id = {}\n\
         oauth_url = {}\nws_url = {}\nwebhook_secret_token = {}\n\n",
        toml_string(ACCOUNT_ID),
        toml_string(CLIENT_ID),
        toml_string(CLIENT_SECRET),
        toml_string(SUBSCRIPTION_ID),
        toml_string(&settings.oauth_url),
        toml_string(&settings.ws_url),
        toml_string(WEBHOOK_SECRET),
    ));
    if settings.rtms_media.is_empty() {
        text.push_str("[zoom.rtms]\nenabled = false\n\n");
    } else {
        let media: Vec<String> = settings.rtms_media.iter().map(|m| toml_string(m)).collect();
        text.push_str(&format!(
            "[zoom.rtms]\nenabled = true\nmedia = [{}]\nreconnect_min_ms = 50\nreconnect_max_ms = 400\nclose_grace_ms = 300\n\n",
            media.join(", ")
        ));
    }
    match webhook_port {
        Some(port) => text.push_str(&format!("[zoom.webhook]\nbind = \"127.0.0.1:{port}\"\n\n")),
        None => text.push_str("[zoom.webhook]\nenabled = false\n\n"),
    }
    text.push_str(&format!(
        "[cluster]\nnats_url = {}\nrole = \"{role_name}\"\nnode = {}\nlease_ttl_ms = {}\npartitions = {}\n",
        toml_string(&settings.nats_url),
        toml_string(name),
        settings.lease_ttl.as_millis(),
        settings.partitions
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generated_node_configs_load_with_their_role_and_sources() {
        let zoom = zoomhost_sim::LocalZoom::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = ClusterSettings::new("zoomhost", dir.path(), "nats://127.0.0.1:4222", &zoom);
        for (role, port) in [(Role::Ingress, Some(4567)), (Role::Worker, None)] {
            let path = dir.path().join("n.toml");
            std::fs::write(
                &path,
                node_config(&settings, "n1", role, &dir.path().join("p"), port),
            )
            .unwrap();
            let config = crate::config::HostConfig::load(&path).unwrap();
            let cluster = config.cluster.clone().unwrap();
            assert_eq!((cluster.role, cluster.node.as_str()), (role, "n1"));
            assert_eq!(cluster.lease_ttl, Duration::from_millis(1500));
            assert_eq!(cluster.partitions, 16);
            let zoom_config = config.zoom.unwrap();
            assert!(zoom_config.websocket.is_some());
            assert!(zoom_config.rtms.is_none());
            assert_eq!(zoom_config.webhook.is_some(), port.is_some());
        }
        let mut with_rtms = settings.clone();
        with_rtms.rtms_media = vec!["audio".into(), "transcript".into()];
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            node_config(&with_rtms, "n2", Role::Worker, &dir.path().join("p"), None),
        )
        .unwrap();
        let config = crate::config::HostConfig::load(&path).unwrap();
        let rtms = config.zoom.unwrap().rtms.expect("an RTMS client");
        assert_eq!(rtms.media.len(), 2);
        assert_eq!(rtms.reconnect_min, Duration::from_millis(50));
    }
}
