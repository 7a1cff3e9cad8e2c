//! Plugins for the whole cluster: components stored in the JetStream object store
//! [`PLUGIN_BUCKET`] as `NAME.wasm`, mirrored by every worker into its plugins folder.
//!
//! `zoomhost plugin push FILE.wasm` checks the component (the host compiles it with the
//! config's limits) and [`push`]es it; `plugin remove NAME` deletes it; `plugin list`
//! lists the bucket.
//!
//! **Mirroring.** Each worker runs [`mirror`]: a watch of the bucket that first replays
//! the newest entry of every object (so a node started after a push gets it), then every
//! change. A stored object is read (bounded by the component size limit; a read whose
//! digest does not match fails), written to a hidden temp file in the plugins folder and
//! renamed onto `NAME.wasm`: the folder watcher sees one settled, complete file and loads
//! or hot-swaps it exactly as if it had been dropped there. A removed object deletes the
//! file, which unloads the plugin. An object that cannot be read, is too large, is not
//! WebAssembly or has an unusable name is logged and skipped; the node keeps running.
//!
//! The mirror remembers which files it wrote in a hidden manifest in the folder
//! ([`MANIFEST`], one plugin name a line). Each time its watch opens (at start, and after
//! a lost NATS connection) it lists the bucket and deletes the mirrored files whose
//! object is gone, so a plugin removed while the node was down is unloaded too, even once
//! JetStream no longer holds the removal. Files the mirror did not write (plugins an
//! operator dropped into this node's folder) are never touched.
//!
//! **Grants for the whole cluster.** `zoomhost plugin grants NAME FILE.toml` (or `plugin
//! push FILE.wasm --grants FILE.toml`) stores the body of a `[plugins.NAME]` table
//! (`allow_http`, `stream_control`, `config`, `enabled`, `limits`, `instances`) in the
//! key-value bucket [`GRANT_BUCKET`] under the plugin's name, after checking it as the
//! host config would ([`check_grant`]: a bad table is refused naming the plugin and the
//! key); `plugin grants NAME --remove` deletes it. Every worker watches the bucket
//! ([`watch_grants`]) and applies it like a change of its config file
//! ([`zoomhost_runtime::PluginHost::apply_config`], the path the config watcher takes):
//! a pushed grant replaces the node file's `[plugins.NAME]` for that plugin, a removed
//! one gives the node file's back. `${VAR}` references in pushed values are expanded on
//! each worker from its own environment. The node's own config watcher keeps the pushed
//! grants over a changed file ([`GrantOverlay::wrap`]). Until a starting worker has read
//! the bucket (right after it joins), its plugins run with the file's grants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, object_store};
use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;
use zoomhost_runtime::{
    reload::ConfigLoader, PluginGrant, PluginHost, ResolvedGrant, RuntimeConfig,
};

use super::pause;

/// The object store bucket holding the cluster's plugins.
pub const PLUGIN_BUCKET: &str = "zoomhost_plugins";

/// The hidden file in a worker's plugins folder listing the plugins its mirror wrote.
pub const MANIFEST: &str = ".zoomhost-mirror";

/// Counters of a node's mirror.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Plugin files written (new or changed).
    pub written: AtomicU64,
    /// Plugin files deleted because their object was removed.
    pub removed: AtomicU64,
    /// Objects skipped (unreadable, too large, not WebAssembly, bad name).
    pub skipped: AtomicU64,
}

/// Whether `name` can be a plugin name in the bucket and the folder: ASCII letters,
/// digits, `-` and `_`, not empty (so never a path or a hidden file).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// The plugin name of a `FILE.wasm` path (its stem), checked with [`valid_name`].
pub fn name_of_file(file: &Path) -> anyhow::Result<String> {
    let name = zoomhost_runtime::plugin_name(file)
        .with_context(|| format!("{}: a plugin file is NAME.wasm", file.display()))?;
    anyhow::ensure!(
        valid_name(&name),
        "{}: the plugin name \"{name}\" may hold only ASCII letters, digits, '-' and '_'",
        file.display()
    );
    Ok(name)
}

/// Opens the bucket, creating it when missing (kept in `replicas` copies).
pub async fn open_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> anyhow::Result<object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(PLUGIN_BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: PLUGIN_BUCKET.to_string(),
        description: Some("zoomhost plugins (zoomhost plugin push)".into()),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("opening the object store {PLUGIN_BUCKET}"))
}

/// Connects with a `[cluster]` section and opens the bucket (for the `plugin` commands).
pub async fn connect_store(
    config: &crate::config::ClusterConfig,
) -> anyhow::Result<object_store::ObjectStore> {
    let client = super::connect(config).await?;
    open_bucket(&jetstream::new(client), config.replicas)
        .await
        .with_context(|| format!("at NATS {}", config.nats_url))
}

/// Stores `bytes` as plugin `name` (replacing an earlier version).
pub async fn push(
    store: &object_store::ObjectStore,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    anyhow::ensure!(valid_name(name), "\"{name}\" is not a valid plugin name");
    let mut reader = bytes;
    store
        .put(object_name(name).as_str(), &mut reader)
        .await
        .with_context(|| format!("storing {name}.wasm in {PLUGIN_BUCKET}"))?;
    Ok(())
}

/// Removes plugin `name`.
pub async fn remove(store: &object_store::ObjectStore, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_name(name), "\"{name}\" is not a valid plugin name");
    store
        .delete(object_name(name))
        .await
        .with_context(|| format!("removing {name}.wasm from {PLUGIN_BUCKET}"))
}

/// The stored plugins: name and size in bytes, sorted by name.
pub async fn list(store: &object_store::ObjectStore) -> anyhow::Result<Vec<(String, usize)>> {
    let mut listing = store
        .list()
        .await
        .with_context(|| format!("listing {PLUGIN_BUCKET}"))?;
    let mut out = Vec::new();
    while let Some(info) = listing.next().await {
        let info = info.with_context(|| format!("listing {PLUGIN_BUCKET}"))?;
        if let Some(name) = plugin_of_object(&info.name) {
            out.push((name, info.size));
        }
    }
    out.sort();
    Ok(out)
}

fn object_name(name: &str) -> String {
    format!("{name}.wasm")
}

fn plugin_of_object(object: &str) -> Option<String> {
    object
        .strip_suffix(".wasm")
        .filter(|n| valid_name(n))
        .map(str::to_string)
}

/// Mirrors the bucket into `dir` until `stop` turns true, re-opening the watch after an
/// error (the bucket, when missing, made with `replicas`); objects larger than
/// `max_bytes` are skipped.
pub async fn mirror(
    js: jetstream::Context,
    replicas: usize,
    dir: PathBuf,
    max_bytes: u64,
    stats: std::sync::Arc<MirrorStats>,
    mut stop: watch::Receiver<bool>,
) {
    let retry = Duration::from_millis(500);
    loop {
        let watched = async {
            let store = open_bucket(&js, replicas).await?;
            let watch = store
                .watch_with_history()
                .await
                .with_context(|| format!("watching {PLUGIN_BUCKET}"))?;
            anyhow::Ok((store, watch))
        };
        let opened = tokio::select! {
            r = watched => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let (store, mut watch) = match opened {
            None => return,
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                tracing::warn!("plugin mirror: {e:#}; retrying");
                if pause(retry, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(folder = %dir.display(), "plugin mirror: watching {PLUGIN_BUCKET}");
        prune(&store, &dir, &stats).await;
        loop {
            let next = tokio::select! {
                n = watch.next() => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Some(Ok(info)) => apply(&store, &dir, &info, max_bytes, &stats).await,
                Some(Err(e)) => {
                    tracing::warn!("plugin mirror: watch failed: {e}; re-opening");
                    break;
                }
                None => {
                    tracing::warn!("plugin mirror: watch ended; re-opening");
                    break;
                }
            }
        }
        if pause(retry, &mut stop).await {
            return;
        }
    }
}

/// Deletes the mirrored files (those in the manifest) whose object is no longer in the
/// bucket.
async fn prune(store: &object_store::ObjectStore, dir: &Path, stats: &MirrorStats) {
    let mirrored = read_manifest(dir).await;
    if mirrored.is_empty() {
        return;
    }
    let present: std::collections::BTreeSet<String> = match list(store).await {
        Ok(present) => present.into_iter().map(|(name, _)| name).collect(),
        Err(e) => {
            tracing::warn!("plugin mirror: cannot list {PLUGIN_BUCKET} to prune: {e:#}");
            return;
        }
    };
    for name in mirrored.difference(&present) {
        remove_mirrored(dir, name, stats, "its object is gone from the store").await;
    }
}

/// Deletes a mirrored plugin file (unloading the plugin) and drops it from the manifest.
async fn remove_mirrored(dir: &Path, name: &str, stats: &MirrorStats, why: &str) {
    let file = dir.join(object_name(name));
    match tokio::fs::remove_file(&file).await {
        Ok(()) => {
            stats.removed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(plugin = %name, "plugin mirror: removed {} ({why})", file.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(plugin = %name, "plugin mirror: removing {}: {e}", file.display());
            return;
        }
    }
    update_manifest(dir, |names| {
        names.remove(name);
    })
    .await;
}

/// The plugin names in `dir`'s manifest (none when it is missing or unreadable).
async fn read_manifest(dir: &Path) -> std::collections::BTreeSet<String> {
    let text = tokio::fs::read_to_string(dir.join(MANIFEST))
        .await
        .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|n| valid_name(n))
        .map(str::to_string)
        .collect()
}

/// Changes `dir`'s manifest with `change` (written to a temp file, then renamed).
async fn update_manifest(dir: &Path, change: impl FnOnce(&mut std::collections::BTreeSet<String>)) {
    let mut names = read_manifest(dir).await;
    let before = names.clone();
    change(&mut names);
    if names == before {
        return;
    }
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    let temp = dir.join(format!("{MANIFEST}.tmp"));
    let written = async {
        tokio::fs::write(&temp, text).await?;
        tokio::fs::rename(&temp, dir.join(MANIFEST)).await
    };
    if let Err(e) = written.await {
        tracing::warn!(folder = %dir.display(), "plugin mirror: updating {MANIFEST}: {e}");
    }
}

/// Applies one object's newest state to the folder.
async fn apply(
    store: &object_store::ObjectStore,
    dir: &Path,
    info: &object_store::ObjectInfo,
    max_bytes: u64,
    stats: &MirrorStats,
) {
    let Some(name) = plugin_of_object(&info.name) else {
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            object = %info.name,
            "plugin mirror: skipped: not NAME.wasm with a valid plugin name"
        );
        return;
    };
    let file = dir.join(object_name(&name));
    if info.deleted {
        remove_mirrored(dir, &name, stats, "removed from the store").await;
        return;
    }
    match fetch(store, &info.name, info.size, max_bytes).await {
        Ok(bytes) => {
            if tokio::fs::read(&file).await.is_ok_and(|old| old == bytes) {
                tracing::debug!(plugin = %name, "plugin mirror: {} is up to date", file.display());
                update_manifest(dir, |names| {
                    names.insert(name.clone());
                })
                .await;
                return;
            }
            match write_atomically(dir, &name, &file, &bytes).await {
                Ok(()) => {
                    update_manifest(dir, |names| {
                        names.insert(name.clone());
                    })
                    .await;
                    stats.written.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        plugin = %name,
                        bytes = bytes.len(),
                        "plugin mirror: wrote {}",
                        file.display()
                    );
                }
                Err(e) => {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %name, "plugin mirror: {e:#}");
                }
            }
        }
        Err(e) => {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %name, "plugin mirror: skipped: {e:#}");
        }
    }
}

/// Reads an object, at most `max_bytes` of it, and checks it is WebAssembly.
async fn fetch(
    store: &object_store::ObjectStore,
    object: &str,
    size: usize,
    max_bytes: u64,
) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        size as u64 <= max_bytes,
        "{object} is {size} bytes, over the component size limit of {max_bytes}"
    );
    let reader = store
        .get(object)
        .await
        .with_context(|| format!("reading {object} from {PLUGIN_BUCKET}"))?;
    let mut bytes = Vec::with_capacity(size);
    reader
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .with_context(|| format!("reading {object} from {PLUGIN_BUCKET}"))?;
    anyhow::ensure!(
        bytes.len() as u64 <= max_bytes,
        "{object} is over the component size limit of {max_bytes} bytes"
    );
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "{object} is not a WebAssembly file"
    );
    Ok(bytes)
}

/// Writes a hidden temp file in `dir` (not a `.wasm`, so the folder watcher ignores it)
/// and renames it onto `file`.
async fn write_atomically(dir: &Path, name: &str, file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = dir.join(format!(".{name}.wasm.mirror-tmp"));
    tokio::fs::write(&temp, bytes)
        .await
        .with_context(|| format!("writing {}", temp.display()))?;
    if let Err(e) = tokio::fs::rename(&temp, file).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e)
            .with_context(|| format!("renaming {} onto {}", temp.display(), file.display()));
    }
    Ok(())
}

/// The key-value bucket holding grants pushed for the whole cluster, keyed by plugin.
pub const GRANT_BUCKET: &str = "zoomhost_grants";

/// Counters of a worker's grant watch.
#[derive(Debug, Default)]
pub struct GrantStats {
    /// Pushed grants (or removals) applied.
    pub applied: AtomicU64,
    /// Pushed grants that could not be used here (unreadable, a `${VAR}` unset here).
    pub rejected: AtomicU64,
}

/// Opens the grant bucket, creating it when missing (kept in `replicas` copies).
pub async fn open_grant_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(GRANT_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: GRANT_BUCKET.to_string(),
        description: "zoomhost plugin grants (zoomhost plugin grants)".to_string(),
        history: 5,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .with_context(|| format!("opening the key-value bucket {GRANT_BUCKET}"))
}

/// Connects with a `[cluster]` section and opens the grant bucket.
pub async fn connect_grants(config: &crate::config::ClusterConfig) -> anyhow::Result<kv::Store> {
    let client = super::connect(config).await?;
    open_grant_bucket(&jetstream::new(client), config.replicas)
        .await
        .with_context(|| format!("at NATS {}", config.nats_url))
}

/// Resolves a grant table (the body of `[plugins.NAME]`, TOML) as the host config
/// would, with `env` for `${VAR}` references; every problem names the plugin and key.
fn resolve_grant(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ResolvedGrant> {
    anyhow::ensure!(valid_name(name), "\"{name}\" is not a valid plugin name");
    let grant: PluginGrant = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("grants of plugin {name} (plugins.{name}): {e}"))?;
    let mut problems = Vec::new();
    let resolved = RuntimeConfig::resolve(
        PathBuf::new(),
        zoomhost_runtime::Limits::default(),
        BTreeMap::from([(name.to_string(), grant)]),
        &|value| crate::config::expand_env(value, env),
        &mut problems,
    );
    if !problems.is_empty() {
        anyhow::bail!(
            "grants of plugin {name} rejected:\n  - {}",
            problems.join("\n  - ")
        );
    }
    resolved
        .plugins
        .get(name)
        .cloned()
        .with_context(|| format!("grants of plugin {name}: nothing resolved"))
}

/// Checks a grant table before it is pushed (the body of `[plugins.NAME]`): keys,
/// values, host patterns, instances, limits. `${VAR}` references are left to each
/// worker's environment.
pub fn check_grant(name: &str, text: &str) -> anyhow::Result<ResolvedGrant> {
    resolve_grant(name, text, &|_| Some(String::new()))
}

/// Checks and stores `text` as plugin `name`'s grants for the whole cluster.
pub async fn push_grants(store: &kv::Store, name: &str, text: &str) -> anyhow::Result<()> {
    check_grant(name, text)?;
    store
        .put(name, bytes::Bytes::from(text.to_string()))
        .await
        .with_context(|| format!("storing the grants of {name} in {GRANT_BUCKET}"))?;
    Ok(())
}

/// Removes plugin `name`'s pushed grants (every worker goes back to its file's).
pub async fn remove_grants(store: &kv::Store, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_name(name), "\"{name}\" is not a valid plugin name");
    store
        .delete(name)
        .await
        .with_context(|| format!("removing the grants of {name} from {GRANT_BUCKET}"))
}

/// The plugins with pushed grants, sorted.
pub async fn list_grants(store: &kv::Store) -> anyhow::Result<Vec<String>> {
    let mut keys = store
        .keys()
        .await
        .with_context(|| format!("listing {GRANT_BUCKET}"))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        out.push(key.with_context(|| format!("listing {GRANT_BUCKET}"))?);
    }
    out.sort();
    Ok(out)
}

/// A worker's runtime config: its file's (the base), with the cluster's pushed grants
/// over it per plugin.
#[derive(Debug)]
pub struct GrantOverlay {
    base: RwLock<RuntimeConfig>,
    pushed: RwLock<BTreeMap<String, ResolvedGrant>>,
}

impl GrantOverlay {
    /// An overlay over the config the node started with.
    pub fn new(base: RuntimeConfig) -> Arc<Self> {
        Arc::new(Self {
            base: RwLock::new(base),
            pushed: RwLock::default(),
        })
    }

    /// The config in force: the base with every pushed grant over it.
    pub fn effective(&self) -> RuntimeConfig {
        let mut config = self.base.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, grant) in self.pushed.read().unwrap_or_else(|p| p.into_inner()).iter() {
            config.plugins.insert(name.clone(), grant.clone());
        }
        config
    }

    /// Sets (or with `None` removes) plugin `name`'s pushed grant.
    pub fn set(&self, name: &str, grant: Option<ResolvedGrant>) {
        let mut pushed = self.pushed.write().unwrap_or_else(|p| p.into_inner());
        match grant {
            Some(g) => pushed.insert(name.to_string(), g),
            None => pushed.remove(name),
        };
    }

    /// The config file's loader for the node's watcher, keeping the pushed grants: a
    /// re-read file becomes the new base.
    pub fn wrap(self: &Arc<Self>, inner: ConfigLoader) -> ConfigLoader {
        let overlay = self.clone();
        Arc::new(move |path: &Path| {
            let base = inner(path)?;
            *overlay.base.write().unwrap_or_else(|p| p.into_inner()) = base;
            Ok(overlay.effective())
        })
    }
}

/// Watches the grant bucket until `stop` turns true, applying each change (after the
/// initial replay of every key, once) to `plugins` through `overlay` (the bucket, when
/// missing, made with `replicas`).
pub async fn watch_grants(
    js: jetstream::Context,
    replicas: usize,
    overlay: Arc<GrantOverlay>,
    plugins: Arc<PluginHost>,
    stats: Arc<GrantStats>,
    mut stop: watch::Receiver<bool>,
) {
    let retry = Duration::from_millis(500);
    let env = |k: &str| std::env::var(k).ok();
    loop {
        let watched = async {
            let store = open_grant_bucket(&js, replicas).await?;
            store
                .watch_with_history(">")
                .await
                .with_context(|| format!("watching {GRANT_BUCKET}"))
        };
        let opened = tokio::select! {
            r = watched => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let mut watch = match opened {
            None => return,
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                tracing::warn!("grant watch: {e:#}; retrying");
                if pause(retry, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let mut changed = false;
        loop {
            let next = tokio::select! {
                n = watch.next() => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            let entry = match next {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    tracing::warn!("grant watch failed: {e}; re-opening");
                    break;
                }
                None => {
                    tracing::warn!("grant watch ended; re-opening");
                    break;
                }
            };
            let name = entry.key.clone();
            let grant = match entry.operation {
                kv::Operation::Put => {
                    let text = String::from_utf8_lossy(&entry.value);
                    match resolve_grant(&name, &text, &env) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(plugin = %name, "pushed grants not applied here, the previous ones stay: {e:#}");
                            continue;
                        }
                    }
                }
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            tracing::info!(plugin = %name, removed = grant.is_none(), "cluster grants changed");
            overlay.set(&name, grant);
            changed = true;
            // The initial replay is applied once, at its end.
            if entry.delta == 0 {
                plugins.apply_config(overlay.effective()).await;
                stats.applied.fetch_add(1, Ordering::Relaxed);
                changed = false;
            }
        }
        if changed {
            plugins.apply_config(overlay.effective()).await;
            stats.applied.fetch_add(1, Ordering::Relaxed);
        }
        if pause(retry, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_table_is_checked_as_the_config_file_would_be() {
        let ok = check_grant(
            "rec",
            "stream_control = true\nallow_http = [\"https://api.example.com\"]\n[config]\nk = \"v\"\n",
        )
        .unwrap();
        assert!(ok.stream_control);
        let err = format!(
            "{:#}",
            check_grant("rec", "stream_contrl = true\n").unwrap_err()
        );
        assert!(
            err.contains("rec") && err.contains("stream_contrl"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            check_grant("rec", "allow_http = [\"ftp//x\"]\n").unwrap_err()
        );
        assert!(err.contains("plugins.rec.allow_http[0]"), "{err}");
        let err = format!("{:#}", check_grant("rec", "instances = 0\n").unwrap_err());
        assert!(err.contains("plugins.rec.instances"), "{err}");
        assert!(check_grant("a b", "").is_err());
    }

    #[test]
    fn pushed_grants_override_the_file_and_survive_its_reload() {
        let file = |stream_control: bool| {
            let grant = PluginGrant {
                stream_control,
                ..Default::default()
            };
            RuntimeConfig::resolve(
                PathBuf::from("p"),
                zoomhost_runtime::Limits::default(),
                BTreeMap::from([
                    ("rec".to_string(), grant.clone()),
                    ("other".to_string(), grant),
                ]),
                &|v| Ok(v.to_string()),
                &mut Vec::new(),
            )
        };
        let overlay = GrantOverlay::new(file(false));
        overlay.set(
            "rec",
            Some(check_grant("rec", "allow_http = [\"https://a.example\"]\n").unwrap()),
        );
        let e = overlay.effective();
        assert_eq!(e.grant("rec").allow_http.len(), 1);
        assert!(
            !e.grant("rec").stream_control,
            "the pushed table replaces the file's"
        );
        // The file changes: the new file is the base, the pushed grant stays on top.
        let reloaded = overlay.wrap(Arc::new(move |_: &Path| Ok(file(true))));
        let e = reloaded(Path::new("zoomhost.toml")).unwrap();
        assert!(e.grant("other").stream_control);
        assert_eq!(e.grant("rec").allow_http.len(), 1);
        overlay.set("rec", None);
        assert!(overlay.effective().grant("rec").stream_control);
    }

    #[test]
    fn plugin_names_are_plain() {
        assert!(valid_name("rec"));
        assert!(valid_name("slack-notifier_2"));
        for bad in ["", ".x", "a/b", "..", "a.b", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(plugin_of_object("rec.wasm").as_deref(), Some("rec"));
        assert_eq!(plugin_of_object("../x.wasm"), None);
        assert_eq!(plugin_of_object("rec"), None);
        assert_eq!(name_of_file(Path::new("/a/rec.wasm")).unwrap(), "rec");
        assert!(name_of_file(Path::new("/a/rec.txt")).is_err());
        assert!(name_of_file(Path::new("/a/r e.wasm")).is_err());
    }
}
