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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, object_store};
use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

use super::pause;

/// The object store bucket holding the cluster's plugins.
pub const PLUGIN_BUCKET: &str = "zoomhost_plugins";

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

/// Opens the bucket, creating it when missing.
pub async fn open_bucket(js: &jetstream::Context) -> anyhow::Result<object_store::ObjectStore> {
    if let Ok(store) = js.get_object_store(PLUGIN_BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: PLUGIN_BUCKET.to_string(),
        description: Some("zoomhost plugins (zoomhost plugin push)".into()),
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
    open_bucket(&jetstream::new(client))
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
/// error; objects larger than `max_bytes` are skipped.
pub async fn mirror(
    js: jetstream::Context,
    dir: PathBuf,
    max_bytes: u64,
    stats: std::sync::Arc<MirrorStats>,
    mut stop: watch::Receiver<bool>,
) {
    let retry = Duration::from_millis(500);
    loop {
        let watched = async {
            let store = open_bucket(&js).await?;
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
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {
                stats.removed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %name, "plugin mirror: removed {}", file.display());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(plugin = %name, "plugin mirror: removing {}: {e}", file.display())
            }
        }
        return;
    }
    match fetch(store, &info.name, info.size, max_bytes).await {
        Ok(bytes) => {
            if tokio::fs::read(&file).await.is_ok_and(|old| old == bytes) {
                tracing::debug!(plugin = %name, "plugin mirror: {} is up to date", file.display());
                return;
            }
            match write_atomically(dir, &name, &file, &bytes).await {
                Ok(()) => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
