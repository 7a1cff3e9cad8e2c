//! The set of loaded plugins: loading, hot-swapping and unloading them, keeping the
//! router's table in step, and applying host-config changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use super::actor::{Actor, Control, SwapReport};
use super::bindings::types::Metadata;
use super::identity::{LogSink, PluginIdentity};
use super::instance::LiveInstance;
use super::mailbox::{Mailbox, MailboxLimits};
use super::runtime::{CompiledPlugin, Runtime};
use super::stats::StatsSnapshot;
use crate::config::HostConfig;
use crate::router::{EventPattern, Route, Router};

/// What loading a file did.
#[derive(Debug)]
pub enum LoadOutcome {
    /// A new plugin is serving.
    Loaded(Metadata),
    /// A new version replaced the running one.
    Swapped(Metadata, SwapReport),
    /// The config disables this plugin; it is not loaded (and was unloaded if running).
    Disabled,
    /// The bytes are those of the running version; nothing was done.
    Unchanged,
}

/// A loaded plugin, as reported by [`PluginHost::plugins`].
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Name (file stem).
    pub name: String,
    /// What the running version declared.
    pub metadata: Metadata,
    /// Its counters.
    pub stats: StatsSnapshot,
    /// Deliveries waiting.
    pub queued: usize,
}

struct Entry {
    identity: Arc<PluginIdentity>,
    mailbox: Arc<Mailbox>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    metadata: Metadata,
    /// Digest of the running version's bytes.
    digest: u64,
    /// The running version, compiled (to re-initialise it when its config changes).
    compiled: Arc<CompiledPlugin>,
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The plugin host: runtime, router and the loaded plugins.
pub struct PluginHost {
    runtime: Arc<Runtime>,
    router: Arc<Router>,
    entries: Mutex<BTreeMap<String, Entry>>,
    config: RwLock<HostConfig>,
    sink: Option<LogSink>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// The plugin name for a `.wasm` path: its file stem.
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return None;
    }
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && !s.starts_with('.'))
        .map(str::to_string)
}

fn subscriptions(name: &str, metadata: &Metadata) -> Vec<EventPattern> {
    metadata
        .events
        .iter()
        .filter_map(|p| match EventPattern::parse(p) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(plugin = name, "ignoring subscription: {e}");
                None
            }
        })
        .collect()
}

impl PluginHost {
    /// A host with no plugins yet. `sink` observes every plugin log line.
    pub fn new(config: HostConfig, sink: Option<LogSink>) -> anyhow::Result<Arc<Self>> {
        let runtime = Arc::new(Runtime::new(&config.limits)?);
        Ok(Arc::new(Self {
            runtime,
            router: Arc::new(Router::new()),
            entries: Mutex::new(BTreeMap::new()),
            config: RwLock::new(config),
            sink,
        }))
    }

    /// The router sources dispatch into.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The wasmtime runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The configuration in force.
    pub fn config(&self) -> HostConfig {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads every `*.wasm` in the plugins folder; a file that fails is logged and
    /// skipped. Returns the names that loaded.
    pub async fn load_dir(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.config().plugins_dir;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading plugins folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| plugin_name(p).is_some())
            .collect();
        paths.sort();
        let mut loaded = Vec::new();
        for path in paths {
            match self.load_file(&path).await {
                Ok(LoadOutcome::Disabled | LoadOutcome::Unchanged) => {}
                Ok(_) => loaded.extend(plugin_name(&path)),
                Err(e) => tracing::error!("{e:#}"),
            }
        }
        Ok(loaded)
    }

    /// Loads or hot-swaps the plugin in `path`.
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<LoadOutcome> {
        let name = plugin_name(path)
            .with_context(|| format!("{} is not a .wasm plugin file", path.display()))?;
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        self.load_bytes(&name, bytes, &path.display().to_string())
            .await
    }

    /// Compiles (off the async threads), instantiates and initialises `bytes` as plugin
    /// `name`, then starts it or swaps it in for the running version. On any failure a
    /// running version keeps serving.
    pub async fn load_bytes(
        &self,
        name: &str,
        bytes: Vec<u8>,
        origin: &str,
    ) -> anyhow::Result<LoadOutcome> {
        let grant = self.config().grant(name);
        if !grant.enabled {
            self.unload(name).await;
            tracing::info!(plugin = name, "plugin disabled in host config; not loaded");
            return Ok(LoadOutcome::Disabled);
        }
        let mut entries = self.entries.lock().await;
        let digest = digest(&bytes);
        if entries.get(name).is_some_and(|e| e.digest == digest) {
            // File watchers report one deploy as several changes: same bytes, no swap.
            tracing::debug!(plugin = name, "unchanged plugin file; nothing to reload");
            return Ok(LoadOutcome::Unchanged);
        }
        let existing_identity = entries.get(name).map(|e| e.identity.clone());
        let prepared = self
            .prepare(name, bytes, origin, existing_identity.clone(), grant)
            .await;
        let (compiled, instance, identity) = match prepared {
            Ok(p) => p,
            Err(e) => {
                if let Some(identity) = existing_identity {
                    identity.stats.record_rejection(format!("{e:#}"));
                    tracing::error!(
                        plugin = name,
                        "new version rejected, the running version keeps serving: {e:#}"
                    );
                } else {
                    tracing::error!(plugin = name, "plugin not loaded: {e:#}");
                }
                return Err(e);
            }
        };
        let metadata = instance.metadata().clone();
        let events = subscriptions(name, &metadata);
        if let Some(entry) = entries.get_mut(name) {
            let report = self.swap_in(name, entry, compiled, instance).await?;
            entry.digest = digest;
            tracing::info!(
                plugin = name,
                version = metadata.version.as_str(),
                swap_us = report.took.as_micros() as u64,
                state_bytes = report.state_bytes.unwrap_or(0),
                sessions = report.sessions_reopened,
                "hot-swapped to new version"
            );
            return Ok(LoadOutcome::Swapped(metadata, report));
        }
        let limits = self.runtime.limits();
        let mailbox = Arc::new(Mailbox::new(
            MailboxLimits {
                capacity: limits.mailbox_capacity,
                event_wait: limits.event_wait(),
                audio_frames: limits.audio_queue_frames,
            },
            identity.stats.clone(),
        ));
        let (control, control_rx) = mpsc::channel(4);
        let compiled_clone = compiled.clone();
        let actor = Actor::new(
            self.runtime.clone(),
            identity.clone(),
            mailbox.clone(),
            control_rx,
            compiled,
            instance,
        );
        let task = tokio::spawn(actor.run());
        let compiled_for_entry = compiled_clone;
        self.router.set_route(Route {
            plugin: Arc::from(name),
            events,
            media: metadata.media.clone(),
            mailbox: mailbox.clone(),
        });
        tracing::info!(
            plugin = name,
            version = metadata.version.as_str(),
            events = metadata.events.join(",").as_str(),
            media = metadata
                .media
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .as_str(),
            "plugin loaded"
        );
        entries.insert(
            name.to_string(),
            Entry {
                identity,
                mailbox,
                control,
                task,
                metadata: metadata.clone(),
                digest,
                compiled: compiled_for_entry,
            },
        );
        Ok(LoadOutcome::Loaded(metadata))
    }

    /// Hands a started instance to the plugin's actor, which swaps it in between two
    /// deliveries, then points the route at the new subscriptions.
    async fn swap_in(
        &self,
        name: &str,
        entry: &mut Entry,
        compiled: Arc<CompiledPlugin>,
        instance: LiveInstance,
    ) -> anyhow::Result<SwapReport> {
        let metadata = instance.metadata().clone();
        let events = subscriptions(name, &metadata);
        let (done, report) = oneshot::channel();
        entry
            .control
            .send(Control::Swap {
                instance: Box::new(instance),
                compiled: compiled.clone(),
                done,
            })
            .await
            .map_err(|_| anyhow::anyhow!("plugin {name}: actor is gone"))?;
        let report = report
            .await
            .map_err(|_| anyhow::anyhow!("plugin {name}: actor stopped during swap"))?;
        self.router.set_route(Route {
            plugin: Arc::from(name),
            events,
            media: metadata.media.clone(),
            mailbox: entry.mailbox.clone(),
        });
        entry.metadata = metadata;
        entry.compiled = compiled;
        Ok(report)
    }

    /// Starts a fresh instance of the running version (so `init` and `metadata` see new
    /// config values) and swaps it in, state handed over.
    async fn reinit(&self, name: &str, entry: &mut Entry) -> anyhow::Result<SwapReport> {
        let instance = LiveInstance::start(&self.runtime, &entry.compiled, entry.identity.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!("plugin {name}: re-initialising with the new config failed: {e}")
            })?;
        let compiled = entry.compiled.clone();
        self.swap_in(name, entry, compiled, instance).await
    }

    async fn prepare(
        &self,
        name: &str,
        bytes: Vec<u8>,
        origin: &str,
        identity: Option<Arc<PluginIdentity>>,
        grant: crate::config::ResolvedGrant,
    ) -> anyhow::Result<(Arc<CompiledPlugin>, LiveInstance, Arc<PluginIdentity>)> {
        let runtime = self.runtime.clone();
        let origin_owned = origin.to_string();
        let compiled = tokio::task::spawn_blocking(move || runtime.compile(&bytes, &origin_owned))
            .await
            .context("compile task failed")??;
        let identity = identity.unwrap_or_else(|| {
            Arc::new(PluginIdentity::new(
                name,
                grant,
                self.sink.clone(),
                self.runtime.limits().log_lines_per_second,
            ))
        });
        let instance = LiveInstance::start(&self.runtime, &compiled, identity.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok((Arc::new(compiled), instance, identity))
    }

    /// Unloads a plugin: no new deliveries; it finishes what is queued, then stops.
    /// Returns the task to await for the drain, if the plugin was loaded.
    pub async fn unload(&self, name: &str) -> Option<JoinHandle<()>> {
        let entry = self.entries.lock().await.remove(name)?;
        self.router.remove_route(name);
        entry.mailbox.close();
        tracing::info!(
            plugin = name,
            queued = entry.mailbox.len(),
            "unloading plugin after its mailbox drains"
        );
        Some(entry.task)
    }

    /// Applies a changed host config: grants and config values take effect on the next
    /// call; plugins disabled by it are unloaded. Limits apply to instances created
    /// from now on only if the host is restarted.
    pub async fn apply_config(&self, config: HostConfig) {
        if config.limits != self.runtime.limits().clone() {
            tracing::warn!("host config: [limits] changes take effect when zoomhost restarts");
        }
        let names: Vec<String> = self.entries.lock().await.keys().cloned().collect();
        for name in names {
            let grant = config.grant(&name);
            if !grant.enabled {
                self.unload(&name).await;
                continue;
            }
            let mut entries = self.entries.lock().await;
            let Some(entry) = entries.get_mut(&name) else {
                continue;
            };
            let old = entry.identity.grant();
            if *old == grant {
                continue;
            }
            let config_changed = old.config != grant.config;
            entry.identity.set_grant(grant);
            tracing::info!(plugin = name.as_str(), "grants and config updated");
            if config_changed {
                match self.reinit(&name, entry).await {
                    Ok(_) => tracing::info!(
                        plugin = name.as_str(),
                        "re-initialised with the new config values"
                    ),
                    Err(e) => tracing::error!(
                        plugin = name.as_str(),
                        "{e:#}; the running instance keeps serving"
                    ),
                }
            }
        }
        let old_dir = self.config().plugins_dir;
        if config.plugins_dir != old_dir {
            tracing::warn!(
                "host config: plugins_dir changes take effect when zoomhost restarts (still watching {})",
                old_dir.display()
            );
        }
        let mut config = config;
        config.plugins_dir = old_dir;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        tracing::info!("host config reloaded");
        // Plugins enabled by this config (or that failed before) load now; unchanged
        // ones are skipped by their digest.
        if let Err(e) = self.load_dir().await {
            tracing::error!("{e:#}");
        }
    }

    /// The loaded plugins with their counters.
    pub async fn plugins(&self) -> Vec<PluginInfo> {
        self.entries
            .lock()
            .await
            .iter()
            .map(|(name, e)| PluginInfo {
                name: name.clone(),
                metadata: e.metadata.clone(),
                stats: e.identity.stats.snapshot(),
                queued: e.mailbox.len(),
            })
            .collect()
    }

    /// Counters of one plugin.
    pub async fn stats(&self, name: &str) -> Option<StatsSnapshot> {
        self.entries
            .lock()
            .await
            .get(name)
            .map(|e| e.identity.stats.snapshot())
    }

    /// Stops every plugin after its mailbox drains, waiting at most `timeout` in all.
    /// Returns the final counters.
    pub async fn shutdown(&self, timeout: Duration) -> Vec<PluginInfo> {
        let infos = self.plugins().await;
        let names: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
        let mut tasks = Vec::new();
        let mut identities = Vec::new();
        for name in &names {
            if let Some(e) = self.entries.lock().await.get(name) {
                identities.push((
                    name.clone(),
                    e.identity.clone(),
                    e.metadata.clone(),
                    e.mailbox.clone(),
                ));
            }
            tasks.extend(self.unload(name).await);
        }
        let all = futures_join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                "shutdown: plugins did not drain within {} ms",
                timeout.as_millis()
            );
        }
        identities
            .into_iter()
            .map(|(name, identity, metadata, mailbox)| PluginInfo {
                name,
                metadata,
                stats: identity.stats.snapshot(),
                queued: mailbox.len(),
            })
            .collect()
    }
}

async fn futures_join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
