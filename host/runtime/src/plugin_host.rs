//! The set of loaded plugins: loading, hot-swapping and unloading them, keeping the
//! router's table in step, and applying host-config changes.
//!
//! A plugin runs `instances` instances (`[plugins.NAME] instances`, default 1), each with
//! its own actor, mailbox and counters; the router shards deliveries over them by
//! meeting. A new version (or new config values) starts as many new instances, and each
//! actor swaps its own between two of its deliveries, its state handed over. The
//! instance count is fixed while the plugin is loaded; a change applies when the plugin is
//! next loaded afresh (after zoomhost restarts, or the file is removed and re-added).
//! Every instance reserves two slots of the shared instance pool (itself and its
//! successor during a swap); a plugin whose instances do not fit is not loaded.
//!
//! An operator may disable a loaded plugin at run time ([`PluginHost::disable`], the
//! admin API): it is unloaded from routing, and stays out (the folder watcher and config
//! reloads skip it) until [`PluginHost::enable`] loads it again from its file. This is
//! kept in memory only: a restart loads every plugin the config enables.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::actor::{Actor, Control, SwapReport};
use crate::bindings::types::Metadata;
use crate::config::{RuntimeConfig, SLOTS_PER_INSTANCE};
use crate::engine::{CompiledPlugin, Runtime};
use crate::identity::{LogSink, PluginIdentity};
use crate::instance::LiveInstance;
use crate::mailbox::{Mailbox, MailboxLimits};
use crate::router::{Route, Router};
use crate::stats::{PluginStats, StatsSnapshot};

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
    /// A newer version of the file arrived while this one was being prepared; this one
    /// was discarded.
    Superseded,
}

/// A loaded plugin, as reported by [`PluginHost::plugins`].
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Name (file stem).
    pub name: String,
    /// What the running version declared.
    pub metadata: Metadata,
    /// Its counters, summed over its instances.
    pub stats: StatsSnapshot,
    /// Deliveries waiting, over all its instances.
    pub queued: usize,
    /// Each instance's own counters and queue, by instance number.
    pub instances: Vec<InstanceInfo>,
}

/// One instance of a plugin, as reported in [`PluginInfo::instances`].
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// The instance's own counters (deliveries, drops, crashes, quarantine); what is not
    /// an instance's (rejected versions, outbound HTTP, logs) is only in the plugin's.
    pub stats: StatsSnapshot,
    /// Deliveries waiting for it.
    pub queued: usize,
}

/// One instance's actor, mailbox and counters.
struct Shard {
    mailbox: Arc<Mailbox>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    stats: Arc<PluginStats>,
}

struct Entry {
    identity: Arc<PluginIdentity>,
    /// The plugin's instances, by instance number (at least one).
    shards: Vec<Shard>,
    metadata: Metadata,
    /// Digest of the running version's bytes.
    digest: u64,
    /// The running version, compiled (to re-initialise it when its config changes).
    compiled: Arc<CompiledPlugin>,
    /// The ticket of the version serving now.
    ticket: u64,
}

impl Entry {
    fn mailboxes(&self) -> Vec<Arc<Mailbox>> {
        self.shards.iter().map(|s| s.mailbox.clone()).collect()
    }

    fn info(&self, name: &str) -> PluginInfo {
        plugin_info(
            name,
            &self.identity,
            &self.metadata,
            self.shards.iter().map(|s| (&s.stats, &s.mailbox)),
        )
    }
}

/// A plugin's report: the plugin's own counters plus each instance's.
fn plugin_info<'a>(
    name: &str,
    identity: &PluginIdentity,
    metadata: &Metadata,
    shards: impl Iterator<Item = (&'a Arc<PluginStats>, &'a Arc<Mailbox>)>,
) -> PluginInfo {
    let instances: Vec<InstanceInfo> = shards
        .map(|(stats, mailbox)| InstanceInfo {
            stats: stats.snapshot(),
            queued: mailbox.len(),
        })
        .collect();
    let mut stats = identity.stats.snapshot();
    for i in &instances {
        stats.add(&i.stats);
    }
    PluginInfo {
        name: name.to_string(),
        metadata: metadata.clone(),
        stats,
        queued: instances.iter().map(|i| i.queued).sum(),
        instances,
    }
}

/// Pool slots the loaded plugins other than `except` reserve.
fn slots_reserved(entries: &BTreeMap<String, Entry>, except: &str) -> usize {
    entries
        .iter()
        .filter(|(name, _)| name.as_str() != except)
        .map(|(_, e)| e.shards.len() * SLOTS_PER_INSTANCE)
        .sum()
}

/// Why `count` new instances of `name` do not fit a pool of `slots` beside `reserved`.
fn pool_refusal(name: &str, count: usize, reserved: usize, slots: usize) -> Option<anyhow::Error> {
    let needed = count * SLOTS_PER_INSTANCE;
    (reserved + needed > slots).then(|| {
        anyhow::anyhow!(
            "plugin {name}: {count} instance(s) need {needed} slots of the shared instance pool ({SLOTS_PER_INSTANCE} each: one more during a hot reload), but the plugins loaded reserve {reserved} of its {slots} (sized at start from the config); lower plugins.{name}.instances or another plugin's, or restart zoomhost to size the pool for the new config"
        )
    })
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
    config: RwLock<RuntimeConfig>,
    sink: Option<LogSink>,
    tickets: LoadTickets,
    /// Plugins disabled at run time (see [`PluginHost::disable`]).
    disabled: std::sync::Mutex<std::collections::BTreeSet<String>>,
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

/// Logs the event patterns a plugin's metadata gave that cannot be used: one line per
/// load, however many there are.
fn warn_invalid_patterns(name: &str, instance: &LiveInstance) {
    if let Some(line) = instance.subscriptions().invalid_summary() {
        tracing::warn!(plugin = name, "{line}");
    }
}

/// Load order per plugin name: each load (and unload) takes the next ticket, and a load
/// whose ticket is no longer the newest when its compile ends is discarded, so when two
/// versions of one file race, the newest file wins.
#[derive(Debug, Default)]
struct LoadTickets(std::sync::Mutex<HashMap<String, u64>>);

impl LoadTickets {
    fn next(&self, name: &str) -> u64 {
        let mut seq = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let slot = seq.entry(name.to_string()).or_default();
        *slot += 1;
        *slot
    }

    fn is_latest(&self, name: &str, ticket: u64) -> bool {
        let seq = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seq.get(name).is_some_and(|t| *t == ticket)
    }
}

/// A ticket for one load of a plugin, taken when the change was seen (see
/// [`PluginHost::begin_load`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTicket(u64);

/// Reads a plugin file: regular files only (a symlink to one is followed, as container
/// platforms mount files that way), opened without blocking so a FIFO or device named
/// `*.wasm` cannot hang the host, and at most `max_bytes` of it.
async fn read_plugin_file(path: &Path, max_bytes: u64) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut options = tokio::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK);
    let file = options
        .open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = file
        .metadata()
        .await
        .with_context(|| format!("reading the metadata of {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{} is not a regular file ({}); only regular files (or symlinks to them) are loaded",
            path.display(),
            file_kind(&meta.file_type())
        );
    }
    if meta.len() > max_bytes {
        anyhow::bail!(
            "{} is {} bytes, over the limit of {max_bytes} (limits.max_component_mib)",
            path.display(),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        anyhow::bail!(
            "{} grew past the limit of {max_bytes} bytes while being read (limits.max_component_mib)",
            path.display()
        );
    }
    Ok(bytes)
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

impl PluginHost {
    /// A host with no plugins yet. `sink` observes every plugin log line.
    pub fn new(config: RuntimeConfig, sink: Option<LogSink>) -> anyhow::Result<Arc<Self>> {
        let runtime = Arc::new(Runtime::new(&config)?);
        Ok(Arc::new(Self {
            runtime,
            router: Arc::new(Router::new()),
            entries: Mutex::new(BTreeMap::new()),
            config: RwLock::new(config),
            sink,
            tickets: LoadTickets::default(),
            disabled: Default::default(),
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

    /// Gives plugins' `stream-control` requests (close a stream, subscribe a
    /// participant's video) to `control`, the host's RTMS client. Until it is set, a
    /// granted plugin's request returns "no RTMS client in this host". Takes effect on
    /// the next call of every loaded plugin.
    pub fn set_stream_control(&self, control: Arc<dyn zoomhost_types::StreamControl>) {
        self.runtime.set_stream_control(Some(control));
    }

    /// The configuration in force.
    pub fn config(&self) -> RuntimeConfig {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Loads every `*.wasm` in the plugins folder; a file that fails is logged and
    /// skipped. Returns the names that loaded.
    pub async fn load_dir(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.config().plugins_dir;
        let mut paths: Vec<PathBuf> = Vec::new();
        let listing = std::fs::read_dir(&dir)
            .with_context(|| format!("reading plugins folder {}", dir.display()))?;
        for entry in listing {
            match entry {
                Ok(e) if plugin_name(&e.path()).is_some() => paths.push(e.path()),
                Ok(_) => {}
                Err(e) => tracing::error!("reading plugins folder {}: {e}", dir.display()),
            }
        }
        paths.sort();
        let mut loaded = Vec::new();
        for path in paths {
            // Failures are logged by `load_file`, with their reason.
            if let Ok(LoadOutcome::Loaded(_) | LoadOutcome::Swapped(..)) =
                self.load_file(&path).await
            {
                loaded.extend(plugin_name(&path));
            }
        }
        Ok(loaded)
    }

    /// Takes the next load ticket of plugin `name`: call it when a change is seen, so
    /// that loads started in that order finish in that order (the newest wins).
    pub fn begin_load(&self, name: &str) -> LoadTicket {
        LoadTicket(self.tickets.next(name))
    }

    /// Loads or hot-swaps the plugin in `path`. Every failure is logged with its reason.
    pub async fn load_file(&self, path: &Path) -> anyhow::Result<LoadOutcome> {
        let name = plugin_name(path)
            .with_context(|| format!("{} is not a .wasm plugin file", path.display()))?;
        let ticket = self.begin_load(&name);
        self.load_file_with(path, ticket).await
    }

    /// [`PluginHost::load_file`] with a ticket taken earlier.
    pub async fn load_file_with(
        &self,
        path: &Path,
        ticket: LoadTicket,
    ) -> anyhow::Result<LoadOutcome> {
        let name = plugin_name(path)
            .with_context(|| format!("{} is not a .wasm plugin file", path.display()))?;
        let max = self.config().grant(&name).limits.max_component_bytes();
        let bytes = match read_plugin_file(path, max).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(plugin = name.as_str(), "plugin file not loaded: {e:#}");
                if let Some(entry) = self.entries.lock().await.get(&name) {
                    entry.identity.stats.record_rejection(format!("{e:#}"));
                }
                return Err(e);
            }
        };
        self.load_ticketed(&name, bytes, &path.display().to_string(), ticket)
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
        let ticket = self.begin_load(name);
        self.load_ticketed(name, bytes, origin, ticket).await
    }

    /// The load itself. Nothing here holds the registry lock while compiling or
    /// initialising, so a slow component delays only itself.
    async fn load_ticketed(
        &self,
        name: &str,
        bytes: Vec<u8>,
        origin: &str,
        ticket: LoadTicket,
    ) -> anyhow::Result<LoadOutcome> {
        let grant = self.config().grant(name);
        if !grant.enabled {
            self.unload(name).await;
            tracing::info!(plugin = name, "plugin disabled in host config; not loaded");
            return Ok(LoadOutcome::Disabled);
        }
        if self.is_disabled(name) {
            tracing::info!(
                plugin = name,
                "plugin disabled by the operator; not loaded until enabled"
            );
            return Ok(LoadOutcome::Disabled);
        }
        let digest = digest(&bytes);
        let (existing_identity, count) = {
            let entries = self.entries.lock().await;
            if entries.get(name).is_some_and(|e| e.digest == digest) {
                // File watchers report one deploy as several changes: same bytes, no swap.
                tracing::debug!(plugin = name, "unchanged plugin file; nothing to reload");
                return Ok(LoadOutcome::Unchanged);
            }
            match entries.get(name) {
                // A new version runs as many instances as the running one.
                Some(e) => (Some(e.identity.clone()), e.shards.len()),
                None => {
                    if let Some(e) = pool_refusal(
                        name,
                        grant.instances,
                        slots_reserved(&entries, name),
                        self.runtime.pool_slots(),
                    ) {
                        tracing::error!(plugin = name, "plugin not loaded: {e:#}");
                        return Err(e);
                    }
                    (None, grant.instances)
                }
            }
        };
        let prepared = self
            .prepare(name, bytes, origin, existing_identity.clone(), grant, count)
            .await;
        if !self.tickets.is_latest(name, ticket.0) {
            tracing::info!(
                plugin = name,
                "{origin}: discarded, a newer version of the file arrived while it was being prepared"
            );
            return Ok(LoadOutcome::Superseded);
        }
        let (compiled, instances, identity) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.reject(name, existing_identity.as_deref(), &e);
                return Err(e);
            }
        };
        let Some(first) = instances.first() else {
            anyhow::bail!("plugin {name}: no instance started");
        };
        warn_invalid_patterns(name, first);
        let metadata = first.metadata().clone();
        let events = first.subscriptions().events.clone();
        let world = first.world_version().as_str();
        let mut entries = self.entries.lock().await;
        if let Some(entry) = entries.get(name) {
            let identity = entry.identity.clone();
            let done = send_swaps(name, entry, compiled.clone(), instances).await?;
            // Each actor swaps between two of its deliveries; the registry is not held
            // meanwhile.
            drop(entries);
            let report = match collect_swaps(name, done).await {
                Ok(report) => report,
                Err(why) => {
                    let e = anyhow::anyhow!("{origin}: {why}");
                    self.reject(name, Some(&identity), &e);
                    return Err(e);
                }
            };
            self.finish_swap(name, &metadata, events, compiled, Some(digest), ticket.0)
                .await;
            tracing::info!(
                plugin = name,
                version = metadata.version.as_str(),
                world,
                swap_us = report.took.as_micros() as u64,
                state_bytes = report.state_bytes.unwrap_or(0),
                sessions = report.sessions_reopened,
                "hot-swapped to new version"
            );
            return Ok(LoadOutcome::Swapped(metadata, report));
        }
        if let Some(e) = pool_refusal(
            name,
            instances.len(),
            slots_reserved(&entries, name),
            self.runtime.pool_slots(),
        ) {
            tracing::error!(plugin = name, "plugin not loaded: {e:#}");
            return Err(e);
        }
        let limits = identity.grant().limits.clone();
        let count = instances.len();
        let mut shards = Vec::with_capacity(count);
        for (index, instance) in instances.into_iter().enumerate() {
            let stats = Arc::new(PluginStats::default());
            let mailbox = Arc::new(Mailbox::new(
                MailboxLimits {
                    capacity: limits.mailbox_capacity,
                    event_wait: limits.event_wait(),
                    audio_frames: limits.audio_queue_frames,
                },
                stats.clone(),
            ));
            let (control, control_rx) = mpsc::channel(4);
            let actor = Actor::new(
                self.runtime.clone(),
                identity.clone(),
                u32::try_from(index).unwrap_or(u32::MAX),
                stats.clone(),
                mailbox.clone(),
                control_rx,
                compiled.clone(),
                instance,
            );
            let task = tokio::spawn(actor.run());
            shards.push(Shard {
                mailbox,
                control,
                task,
                stats,
            });
        }
        self.router.set_route(Route {
            plugin: Arc::from(name),
            events,
            media: metadata.media.clone(),
            mailboxes: shards.iter().map(|s| s.mailbox.clone()).collect(),
        });
        tracing::info!(
            plugin = name,
            version = metadata.version.as_str(),
            world,
            instances = count,
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
                shards,
                metadata: metadata.clone(),
                digest,
                compiled,
                ticket: ticket.0,
            },
        );
        Ok(LoadOutcome::Loaded(metadata))
    }

    /// After a swap: points the entry and the route at the new version, unless a newer
    /// version was swapped in meanwhile.
    async fn finish_swap(
        &self,
        name: &str,
        metadata: &Metadata,
        events: Vec<crate::router::EventPattern>,
        compiled: Arc<CompiledPlugin>,
        digest: Option<u64>,
        ticket: u64,
    ) {
        let mut entries = self.entries.lock().await;
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        if entry.ticket > ticket {
            return;
        }
        self.router.set_route(Route {
            plugin: Arc::from(name),
            events,
            media: metadata.media.clone(),
            mailboxes: entry.mailboxes(),
        });
        entry.metadata = metadata.clone();
        entry.compiled = compiled;
        entry.ticket = ticket;
        if let Some(digest) = digest {
            entry.digest = digest;
        }
    }

    /// Counts and logs a version that will not serve.
    fn reject(&self, name: &str, running: Option<&PluginIdentity>, e: &anyhow::Error) {
        match running {
            Some(identity) => {
                identity.stats.record_rejection(format!("{e:#}"));
                tracing::error!(
                    plugin = name,
                    "new version rejected, the running version keeps serving: {e:#}"
                );
            }
            None => tracing::error!(plugin = name, "plugin not loaded: {e:#}"),
        }
    }

    /// Starts a fresh instance of the running version (so `init` and `metadata` see new
    /// config values) and swaps it in, state handed over.
    async fn reinit(&self, name: &str) -> anyhow::Result<SwapReport> {
        let ticket = self.begin_load(name);
        let (compiled, identity, count) = {
            let entries = self.entries.lock().await;
            let entry = entries
                .get(name)
                .with_context(|| format!("plugin {name} is not loaded"))?;
            (
                entry.compiled.clone(),
                entry.identity.clone(),
                entry.shards.len(),
            )
        };
        let instances = start_instances(&self.runtime, &compiled, &identity, count)
            .await
            .map_err(|e| {
                anyhow::anyhow!("plugin {name}: re-initialising with the new config failed: {e}")
            })?;
        let first = instances
            .first()
            .with_context(|| format!("plugin {name}: no instance started"))?;
        warn_invalid_patterns(name, first);
        let metadata = first.metadata().clone();
        let events = first.subscriptions().events.clone();
        let done = {
            let entries = self.entries.lock().await;
            let entry = entries
                .get(name)
                .with_context(|| format!("plugin {name} was unloaded"))?;
            send_swaps(name, entry, compiled.clone(), instances).await?
        };
        let report = collect_swaps(name, done)
            .await
            .map_err(|why| anyhow::anyhow!("plugin {name}: {why}"))?;
        self.finish_swap(name, &metadata, events, compiled, None, ticket.0)
            .await;
        Ok(report)
    }

    async fn prepare(
        &self,
        name: &str,
        bytes: Vec<u8>,
        origin: &str,
        identity: Option<Arc<PluginIdentity>>,
        grant: crate::config::ResolvedGrant,
        count: usize,
    ) -> anyhow::Result<(Arc<CompiledPlugin>, Vec<LiveInstance>, Arc<PluginIdentity>)> {
        let runtime = self.runtime.clone();
        let origin_owned = origin.to_string();
        let limits = grant.limits.clone();
        let compiled =
            tokio::task::spawn_blocking(move || runtime.compile(&bytes, &origin_owned, &limits))
                .await
                .context("compile task failed")??;
        let identity = identity
            .unwrap_or_else(|| Arc::new(PluginIdentity::new(name, grant, self.sink.clone())));
        let instances = start_instances(&self.runtime, &compiled, &identity, count)
            .await
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok((Arc::new(compiled), instances, identity))
    }

    /// Unloads a plugin: no new deliveries; it finishes what is queued, then stops.
    /// Returns the task to await for the drain, if the plugin was loaded.
    pub async fn unload(&self, name: &str) -> Option<JoinHandle<()>> {
        self.tickets.next(name);
        let entry = self.entries.lock().await.remove(name)?;
        self.router.remove_route(name);
        let mut queued = 0;
        let mut tasks = Vec::with_capacity(entry.shards.len());
        for shard in entry.shards {
            shard.mailbox.close();
            queued += shard.mailbox.len();
            tasks.push(shard.task);
        }
        tracing::info!(
            plugin = name,
            queued,
            "unloading plugin after its mailboxes drain"
        );
        Some(tokio::spawn(await_each(tasks)))
    }

    /// Applies a changed host config: grants and config values take effect on the next
    /// call; plugins disabled by it are unloaded. Changed limits apply to instances
    /// started from now on (a config-value change, a restart, a new version).
    pub async fn apply_config(&self, config: RuntimeConfig) {
        if config.limits != self.runtime.limits().clone() {
            tracing::warn!(
                "host config: [limits] changed; they apply to plugin instances started from now on (a memory_mib above the one at start-up needs a restart)"
            );
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
            if old.instances != grant.instances {
                tracing::warn!(
                    plugin = name.as_str(),
                    "plugins.{name}.instances changed from {} to {}; it applies when the plugin is next loaded afresh (restart zoomhost, or remove and re-add its file)",
                    entry.shards.len(),
                    grant.instances
                );
            }
            entry.identity.set_grant(grant);
            drop(entries);
            tracing::info!(plugin = name.as_str(), "grants and config updated");
            if config_changed {
                match self.reinit(&name).await {
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

    /// Whether the operator disabled `name` at run time.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// The plugins disabled at run time, by name.
    pub fn disabled(&self) -> Vec<String> {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Disables plugin `name` at run time: unloaded from routing after its mailboxes
    /// drain, and not loaded again (by the folder watcher or a config reload) until
    /// [`PluginHost::enable`]. Kept in memory only. Returns whether it was loaded.
    pub async fn disable(&self, name: &str) -> bool {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
        let was_loaded = self.unload(name).await.is_some();
        tracing::info!(plugin = name, "plugin disabled by the operator");
        was_loaded
    }

    /// Enables plugin `name` again and loads it from its file in the plugins folder.
    pub async fn enable(&self, name: &str) -> anyhow::Result<LoadOutcome> {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        tracing::info!(plugin = name, "plugin enabled by the operator");
        self.load_file(&self.file_of(name)?).await
    }

    /// Reloads plugin `name` from its file: a changed file is swapped in as a new
    /// version; an unchanged one restarts fresh instances of the running version (`init`
    /// runs again, state handed over). Either counts as a swap.
    pub async fn reload(&self, name: &str) -> anyhow::Result<LoadOutcome> {
        anyhow::ensure!(
            !self.is_disabled(name),
            "plugin {name} is disabled: enable it first"
        );
        match self.load_file(&self.file_of(name)?).await? {
            LoadOutcome::Unchanged => {
                let report = self.reinit(name).await?;
                let metadata = self
                    .entries
                    .lock()
                    .await
                    .get(name)
                    .map(|e| e.metadata.clone())
                    .with_context(|| format!("plugin {name} was unloaded during the reload"))?;
                Ok(LoadOutcome::Swapped(metadata, report))
            }
            outcome => Ok(outcome),
        }
    }

    /// The file plugin `name` is loaded from; a name that is not a file stem (a path
    /// separator, a leading dot) is refused.
    fn file_of(&self, name: &str) -> anyhow::Result<PathBuf> {
        let file = format!("{name}.wasm");
        anyhow::ensure!(
            !name.contains(['/', '\\']) && plugin_name(Path::new(&file)).as_deref() == Some(name),
            "{name:?} is not a plugin name"
        );
        Ok(self.config().plugins_dir.join(file))
    }

    /// The loaded plugins with their counters.
    pub async fn plugins(&self) -> Vec<PluginInfo> {
        self.entries
            .lock()
            .await
            .iter()
            .map(|(name, e)| e.info(name))
            .collect()
    }

    /// Counters of one plugin, summed over its instances.
    pub async fn stats(&self, name: &str) -> Option<StatsSnapshot> {
        self.entries
            .lock()
            .await
            .get(name)
            .map(|e| e.info(name).stats)
    }

    /// Counters of each instance of one plugin, by instance number.
    pub async fn instance_stats(&self, name: &str) -> Option<Vec<InstanceInfo>> {
        self.entries
            .lock()
            .await
            .get(name)
            .map(|e| e.info(name).instances)
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
                let shards: Vec<_> = e
                    .shards
                    .iter()
                    .map(|s| (s.stats.clone(), s.mailbox.clone()))
                    .collect();
                identities.push((name.clone(), e.identity.clone(), e.metadata.clone(), shards));
            }
            tasks.extend(self.unload(name).await);
        }
        let all = await_each(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!(
                "shutdown: plugins did not drain within {} ms",
                timeout.as_millis()
            );
        }
        identities
            .into_iter()
            .map(|(name, identity, metadata, shards)| {
                plugin_info(
                    &name,
                    &identity,
                    &metadata,
                    shards.iter().map(|(stats, mailbox)| (stats, mailbox)),
                )
            })
            .collect()
    }
}

/// Waits for every task (they run concurrently already; this only collects them).
async fn await_each(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Starts `count` instances of `compiled`, numbered from 0; the first failure stops it.
async fn start_instances(
    runtime: &Runtime,
    compiled: &CompiledPlugin,
    identity: &Arc<PluginIdentity>,
    count: usize,
) -> Result<Vec<LiveInstance>, String> {
    let mut instances = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let number = u32::try_from(index).unwrap_or(u32::MAX);
        let instance = LiveInstance::start_as(runtime, compiled, identity.clone(), number)
            .await
            .map_err(|e| {
                if count > 1 {
                    format!("instance {index}: {e}")
                } else {
                    e
                }
            })?;
        instances.push(instance);
    }
    Ok(instances)
}

/// A swap's result, from one actor.
type SwapDone = oneshot::Receiver<Result<SwapReport, String>>;

/// Hands each started instance to the actor of the same number, which swaps it in
/// between two of its deliveries; the results arrive on the returned channels.
async fn send_swaps(
    name: &str,
    entry: &Entry,
    compiled: Arc<CompiledPlugin>,
    instances: Vec<LiveInstance>,
) -> anyhow::Result<Vec<SwapDone>> {
    if instances.len() != entry.shards.len() {
        anyhow::bail!(
            "plugin {name}: {} new instances for {} running ones (the plugin was reloaded meanwhile)",
            instances.len(),
            entry.shards.len()
        );
    }
    let mut pending = Vec::with_capacity(instances.len());
    for (shard, instance) in entry.shards.iter().zip(instances) {
        let (done, report) = oneshot::channel();
        shard
            .control
            .send(Control::Swap {
                instance: Box::new(instance),
                compiled: compiled.clone(),
                done,
            })
            .await
            .map_err(|_| anyhow::anyhow!("plugin {name}: actor is gone"))?;
        pending.push(report);
    }
    Ok(pending)
}

/// Waits for every instance's swap; one report for the plugin (the longest swap, the
/// state and sessions of all), or why some instances refused the new version (those
/// keep the old one; the others serve the new one).
async fn collect_swaps(name: &str, pending: Vec<SwapDone>) -> Result<SwapReport, String> {
    let several = pending.len() > 1;
    let mut report = SwapReport {
        took: Duration::ZERO,
        state_bytes: None,
        sessions_reopened: 0,
    };
    let mut refused = Vec::new();
    for (index, done) in pending.into_iter().enumerate() {
        match done.await {
            Ok(Ok(r)) => {
                report.took = report.took.max(r.took);
                if let Some(bytes) = r.state_bytes {
                    report.state_bytes = Some(report.state_bytes.unwrap_or(0) + bytes);
                }
                report.sessions_reopened += r.sessions_reopened;
            }
            Ok(Err(why)) if several => refused.push(format!("instance {index}: {why}")),
            Ok(Err(why)) => refused.push(why),
            Err(_) => refused.push(format!(
                "plugin {name}: instance {index}'s actor stopped during the swap"
            )),
        }
    }
    if refused.is_empty() {
        Ok(report)
    } else {
        Err(refused.join("; "))
    }
}
