//! Hot reload: watch the plugins folder (and the host config file) and apply settled
//! changes: a new or changed `.wasm` is loaded or swapped in, a removed one is unloaded,
//! a changed config is re-read and applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{EventKind, ModifyKind};
use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::RuntimeConfig;
use crate::plugin_host::{plugin_name, PluginHost};

/// Reads the config file again when it changes (the binary knows its format).
pub type ConfigLoader = Arc<dyn Fn(&Path) -> anyhow::Result<RuntimeConfig> + Send + Sync>;

/// How long the folder must be quiet before a change is applied (a copy in progress
/// produces several events).
pub const SETTLE: Duration = Duration::from_millis(200);

/// How often the debouncer's thread looks for settled changes: a change is applied
/// between `SETTLE` and `SETTLE + WATCH_TICK` after the folder went quiet. The thread
/// wakes this often even when nothing changes (the crate's default, a quarter of
/// `SETTLE`, made it the idle host's most frequent wake-up).
const WATCH_TICK: Duration = Duration::from_millis(100);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `host`'s plugins folder, and the config file if given (re-read with
/// its loader when it changes).
pub fn watch(
    host: Arc<PluginHost>,
    config: Option<(PathBuf, ConfigLoader)>,
) -> anyhow::Result<Watcher> {
    let (config_file, loader) = match config {
        Some((file, loader)) => (Some(file), Some(loader)),
        None => (None, None),
    };
    let dir = host.config().plugins_dir;
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(
        SETTLE,
        Some(WATCH_TICK),
        move |result: DebounceEventResult| {
            match result {
                Ok(events) => {
                    // Only changes count: reading a file (as a reload does) raises access
                    // events, which must not trigger another reload.
                    let paths: Vec<PathBuf> = events
                        .into_iter()
                        .filter(|e| is_change(&e.event.kind))
                        .flat_map(|e| e.event.paths)
                        .collect();
                    if !paths.is_empty() {
                        let _ = tx.send(paths);
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("plugin folder watcher: {e}");
                    }
                }
            }
        },
    )
    .context("starting the file watcher")?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching plugins folder {}", dir.display()))?;
    let config_file = config_file.map(|p| std::path::absolute(&p).unwrap_or(p));
    if let Some(cfg) = &config_file {
        let parent = cfg.parent().unwrap_or(Path::new("."));
        if parent != dir {
            debouncer
                .watch(parent, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching config folder {}", parent.display()))?;
        }
    }
    tracing::info!(folder = %dir.display(), "watching plugins folder for changes");
    let task = tokio::spawn(async move {
        // The debouncer lives as long as this task.
        let _debouncer = debouncer;
        while let Some(paths) = rx.recv().await {
            let mut changed = BTreeSet::new();
            changed.extend(paths);
            while let Ok(more) = rx.try_recv() {
                changed.extend(more);
            }
            let config = config_file.as_deref().zip(loader.as_ref());
            apply(&host, &dir, &changed, config).await;
        }
    });
    Ok(Watcher { task })
}

/// Whether a file-system event changes content: creations, removals and writes count;
/// metadata changes and access events (e.g. cargo reading sources during a build) do not.
pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// Applies one batch of changes. Each plugin file loads in its own task, so one slow
/// component delays only itself; tickets taken here, in the order the changes were seen,
/// make the newest version of a file win whatever order the loads finish in.
async fn apply(
    host: &Arc<PluginHost>,
    dir: &Path,
    changed: &BTreeSet<PathBuf>,
    config: Option<(&Path, &ConfigLoader)>,
) {
    if let Some((cfg, load)) = config {
        if changed.iter().any(|p| same_file(p, cfg)) {
            match load(cfg) {
                Ok(config) => host.apply_config(config).await,
                Err(e) => tracing::error!(
                    "host config change rejected, the previous config stays in force: {e:#}"
                ),
            }
        }
    }
    for path in changed {
        let Some(name) = plugin_name(path) else {
            continue;
        };
        if path.parent() != Some(dir) {
            continue;
        }
        // `exists` follows symlinks: a dangling link is a removal.
        if path.exists() {
            let ticket = host.begin_load(&name);
            let host = host.clone();
            let path = path.clone();
            // Errors are logged by the host with their reason; the old version keeps
            // serving.
            tokio::spawn(async move { host.load_file_with(&path, ticket).await });
        } else if let Some(task) = host.unload(&name).await {
            // The plugin drains its mailbox on its own.
            drop(task);
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::path::absolute(a).ok().as_deref() == Some(b)
}
