//! Watches the plugin *source* crates (`<workspace>/plugins/*/`), rebuilds the one that
//! changed for `wasm32-wasip2` and installs the component into the host's plugins
//! folder, where the host's folder watcher hot-swaps it.
//!
//! * Watched: each crate folder (its `Cargo.toml`, `build.rs`, ...) and, recursively,
//!   its subfolders (`src/`, `wit/`, ...), plus `plugins/` itself so that a new crate
//!   folder is picked up. A crate's own `target/`, hidden folders and editor temp
//!   files (`.x.swp`, `x~`, `#x#`, `4913`, ...) are ignored.
//! * A plugin crate is a folder with a `Cargo.toml` whose `[lib] crate-type` has
//!   `cdylib`. The workspace must list it as a member (the repo's does, `plugins/*`).
//! * Builds run on one background thread, one at a time: changes that arrive while a
//!   build runs are coalesced into one follow-up build.
//! * A built component is written to `<plugins folder>/<crate>.wasm` through a temp file
//!   in the same folder and a rename, so the host never reads half a file. When the
//!   bytes equal the installed file nothing is written.
//! * When a crate folder this watcher built from is deleted, its component is removed
//!   from the plugins folder, so the host unloads the plugin.
//! * A failed build reports the compiler's errors (cut to the first few) and leaves the
//!   installed component, so the running version keeps serving.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::{mpsc, oneshot};

use super::cargo::{self, CrateSpec};
use super::DevEvent;
use zoomhost_runtime::reload::is_change;

/// How long the sources must be quiet before a build starts (an editor's save, or a
/// `git checkout`, produces several events).
pub const SETTLE: Duration = Duration::from_millis(200);

/// Where the [`SourceWatcher`] reads sources, builds and installs.
#[derive(Debug, Clone)]
pub struct SourceWatchConfig {
    /// The cargo workspace whose `plugins/*` crates are watched; it must list them as
    /// members.
    pub workspace: PathBuf,
    /// The host's plugins folder, where components are installed as `<crate>.wasm`.
    pub plugins_dir: PathBuf,
    /// Cargo target dir of the wasm builds (default `<workspace>/target/wasm`, shared
    /// with the tests and `--build-examples`, so compiled dependencies are reused).
    pub target_dir: PathBuf,
    /// How long sources must be quiet before a build starts (default [`SETTLE`]).
    pub settle: Duration,
}

impl SourceWatchConfig {
    /// Defaults for `workspace` installing into `plugins_dir`.
    pub fn new(workspace: impl Into<PathBuf>, plugins_dir: impl Into<PathBuf>) -> Self {
        let workspace = workspace.into();
        Self {
            target_dir: workspace.join("target").join("wasm"),
            workspace,
            plugins_dir: plugins_dir.into(),
            settle: SETTLE,
        }
    }
}

/// A plugin source crate under `<workspace>/plugins/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCrate {
    /// Package name (also the installed file's stem, so the plugin's name in the host).
    /// For a manifest that does not parse, the folder name: building it then reports
    /// cargo's error.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
}

/// What building one crate came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Built, and the new component written to this path.
    Installed(PathBuf),
    /// Built to the bytes already installed at this path; nothing written.
    Unchanged(PathBuf),
    /// Not built (or not installed): the error text. The installed version stays.
    Failed(String),
}

/// The plugin crates under `<workspace>/plugins/`, sorted by folder.
pub fn plugin_crates(workspace: &Path) -> anyhow::Result<Vec<PluginCrate>> {
    let root = workspace.join("plugins");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(is_hidden))
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .filter_map(|dir| {
            let name = match read_manifest(&dir)? {
                Manifest::Plugin(name) => name,
                Manifest::NotPlugin => return None,
                Manifest::Unreadable => dir_name(&dir),
            };
            Some(PluginCrate { name, dir })
        })
        .collect())
}

enum Manifest {
    /// A `cdylib` package with this name.
    Plugin(String),
    /// A package, but not a `cdylib` (or a virtual manifest).
    NotPlugin,
    /// Does not parse (e.g. being edited); cargo will say what is wrong.
    Unreadable,
}

/// Reads `dir/Cargo.toml`; `None` when there is none.
fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let Ok(value) = toml::from_str::<toml::Value>(&text) else {
        return Some(Manifest::Unreadable);
    };
    let Some(name) = value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
    else {
        return Some(Manifest::NotPlugin);
    };
    let cdylib = value
        .get("lib")
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    Some(if cdylib {
        Manifest::Plugin(name.to_string())
    } else {
        Manifest::NotPlugin
    })
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_hidden(name: &OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Files editors write next to the one being saved, which must not trigger builds.
pub(crate) fn is_editor_temp(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "~",
        ".swp",
        ".swo",
        ".swx",
        ".tmp",
        ".bak",
        ".kate-swp",
        "___jb_tmp___",
        "___jb_old___",
    ];
    name.starts_with('.')
        || name.starts_with('#')
        || name == "4913"
        || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The crate folder (`<root>/<dir>`) a changed `path` belongs to, if it is a source
/// change: not in the crate's `target/`, not in a hidden folder, not an editor temp file.
pub(crate) fn crate_dir_of(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let names: Vec<&OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (first, rest) = names.split_first()?;
    if is_hidden(first) {
        return None;
    }
    if rest.first().is_some_and(|n| *n == "target") {
        return None;
    }
    if rest.iter().any(|n| is_hidden(n)) {
        return None;
    }
    if let Some(last) = rest.last() {
        if is_editor_temp(&last.to_string_lossy()) {
            return None;
        }
    }
    Some(root.join(first))
}

/// Writes `artifact` to `<plugins_dir>/<krate>.wasm` through a temp file in the same
/// folder and a rename. Returns the path, and whether anything was written (`false`:
/// the installed file already has these bytes).
fn install(artifact: &Path, plugins_dir: &Path, krate: &str) -> anyhow::Result<(PathBuf, bool)> {
    let bytes =
        std::fs::read(artifact).with_context(|| format!("reading {}", artifact.display()))?;
    let dest = plugins_dir.join(format!("{krate}.wasm"));
    if std::fs::read(&dest).is_ok_and(|old| old == bytes) {
        return Ok((dest, false));
    }
    // Not `*.wasm`, and hidden: the host's folder watcher ignores the temp file and
    // sees only the rename.
    let mut tmp = tempfile::Builder::new()
        .prefix(".zoomhost-dev-")
        .suffix(".tmp")
        .tempfile_in(plugins_dir)
        .with_context(|| format!("creating a temp file in {}", plugins_dir.display()))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing a temp file in {}", plugins_dir.display()))?;
    tmp.persist(&dest)
        .with_context(|| format!("renaming the new component to {}", dest.display()))?;
    Ok((dest, true))
}

type SourceDebouncer = Debouncer<RecommendedWatcher, RecommendedCache>;

enum Msg {
    /// Paths the file watcher saw change.
    Changed(Vec<PathBuf>),
    /// Build these crates (by package name); tell `done` how it went.
    Build {
        crates: Vec<String>,
        done: Option<oneshot::Sender<BTreeMap<String, BuildOutcome>>>,
    },
}

/// Watches plugin source crates and rebuilds and installs the ones that change (see the
/// module docs). Dropping it stops watching; a build in progress still finishes.
pub struct SourceWatcher {
    tx: std_mpsc::Sender<Msg>,
    debouncer: Arc<Mutex<Option<SourceDebouncer>>>,
    workspace: PathBuf,
}

impl std::fmt::Debug for SourceWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceWatcher")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl Drop for SourceWatcher {
    fn drop(&mut self) {
        // Dropping the debouncer (outside the lock) drops its sender; with ours, the
        // build thread's channel closes and the thread ends after any build in progress.
        let debouncer = self
            .debouncer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(debouncer);
    }
}

impl SourceWatcher {
    /// Starts watching `config.workspace`'s `plugins/` crates. Nothing is built until a
    /// source changes or [`build`](Self::build) is called. Each step is reported on
    /// `events` (a closed receiver is fine).
    pub fn start(
        config: SourceWatchConfig,
        events: mpsc::UnboundedSender<DevEvent>,
    ) -> anyhow::Result<Self> {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let config = SourceWatchConfig {
            workspace: absolute(&config.workspace),
            plugins_dir: absolute(&config.plugins_dir),
            target_dir: absolute(&config.target_dir),
            settle: config.settle,
        };
        let root = config.workspace.join("plugins");
        anyhow::ensure!(
            root.is_dir(),
            "{} has no plugins/ folder of plugin crates to watch",
            config.workspace.display()
        );
        std::fs::create_dir_all(&config.plugins_dir)
            .with_context(|| format!("creating plugins folder {}", config.plugins_dir.display()))?;
        let (tx, rx) = std_mpsc::channel::<Msg>();
        let changes = tx.clone();
        let watch_errors = events.clone();
        let mut debouncer = new_debouncer(
            config.settle,
            None,
            move |result: DebounceEventResult| match result {
                Ok(batch) => {
                    let paths: Vec<PathBuf> = batch
                        .into_iter()
                        .filter(|e| is_change(&e.event.kind))
                        .flat_map(|e| e.event.paths)
                        .collect();
                    if !paths.is_empty() {
                        let _ = changes.send(Msg::Changed(paths));
                    }
                }
                Err(errors) => {
                    for e in errors {
                        let _ = watch_errors.send(DevEvent::WatchError {
                            message: e.to_string(),
                        });
                    }
                }
            },
        )
        .context("starting the source file watcher")?;
        debouncer
            .watch(&root, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", root.display()))?;
        let debouncer = Arc::new(Mutex::new(Some(debouncer)));
        let workspace = config.workspace.clone();
        let mut worker = Worker {
            root: root.clone(),
            config,
            events,
            debouncer: debouncer.clone(),
            watched: BTreeSet::from([root]),
            names: BTreeMap::new(),
            target_ready: false,
        };
        worker.sync_watches(&[]);
        std::thread::Builder::new()
            .name("zoomhost-dev-build".into())
            .spawn(move || worker.run(rx))
            .context("starting the plugin build thread")?;
        tracing::info!(
            folder = %workspace.join("plugins").display(),
            "watching plugin sources for changes"
        );
        Ok(Self {
            tx,
            debouncer,
            workspace,
        })
    }

    /// Builds `crates` (package names) and installs the ones that build; resolves when
    /// done. Queued behind a build in progress, and merged with source changes that
    /// arrive meanwhile. A name that is not a plugin crate under `plugins/` is
    /// [`BuildOutcome::Failed`].
    pub async fn build(
        &self,
        crates: Vec<String>,
    ) -> anyhow::Result<BTreeMap<String, BuildOutcome>> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Msg::Build {
                crates,
                done: Some(done),
            })
            .map_err(|_| anyhow::anyhow!("the plugin build thread has stopped"))?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("the plugin build thread stopped during the build"))
    }

    /// Builds and installs every plugin crate under `plugins/` (see [`build`](Self::build)).
    pub async fn build_all(&self) -> anyhow::Result<BTreeMap<String, BuildOutcome>> {
        let names = plugin_crates(&self.workspace)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        self.build(names).await
    }
}

/// The build thread's state.
struct Worker {
    /// `<workspace>/plugins`.
    root: PathBuf,
    config: SourceWatchConfig,
    events: mpsc::UnboundedSender<DevEvent>,
    debouncer: Arc<Mutex<Option<SourceDebouncer>>>,
    /// Folders watched now.
    watched: BTreeSet<PathBuf>,
    /// Last package name seen per crate folder (for a manifest being edited).
    names: BTreeMap<PathBuf, String>,
    /// `ensure_wasm_target` succeeded.
    target_ready: bool,
}

type Waiter = (Vec<String>, oneshot::Sender<BTreeMap<String, BuildOutcome>>);

impl Worker {
    fn emit(&self, event: DevEvent) {
        let _ = self.events.send(event);
    }

    fn run(mut self, rx: std_mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            // Everything that arrived meanwhile (including during the last build) goes
            // into this one build.
            let mut changed: Vec<PathBuf> = Vec::new();
            let mut requested: BTreeSet<String> = BTreeSet::new();
            let mut waiters: Vec<Waiter> = Vec::new();
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                match msg {
                    Msg::Changed(paths) => changed.extend(paths),
                    Msg::Build { crates, done } => {
                        requested.extend(crates.iter().cloned());
                        waiters.extend(done.map(|d| (crates, d)));
                    }
                }
            }
            if !changed.is_empty() {
                self.sync_watches(&changed);
            }
            let mut batch: BTreeMap<String, PathBuf> = BTreeMap::new();
            let mut outcomes: BTreeMap<String, BuildOutcome> = BTreeMap::new();
            let dirs: BTreeSet<PathBuf> = changed
                .iter()
                .filter_map(|p| crate_dir_of(&self.root, p))
                .collect();
            for dir in dirs {
                if !dir.exists() {
                    self.crate_removed(&dir);
                } else if let Some(name) = self.crate_name(&dir) {
                    batch.insert(name, dir.join("Cargo.toml"));
                }
            }
            if !requested.is_empty() {
                let known = plugin_crates(&self.config.workspace).unwrap_or_default();
                for name in requested {
                    match known.iter().find(|c| c.name == name) {
                        Some(c) => {
                            self.names.insert(c.dir.clone(), c.name.clone());
                            batch.insert(name, c.dir.join("Cargo.toml"));
                        }
                        None => {
                            outcomes.insert(
                                name.clone(),
                                BuildOutcome::Failed(format!(
                                    "no plugin crate named {name} under {}",
                                    self.root.display()
                                )),
                            );
                        }
                    }
                }
            }
            if !batch.is_empty() {
                outcomes.extend(self.build(batch));
            }
            for (names, done) in waiters {
                let mine = names
                    .into_iter()
                    .filter_map(|n| outcomes.get(&n).map(|o| (n, o.clone())))
                    .collect();
                let _ = done.send(mine);
            }
        }
    }

    /// A crate folder this watcher built from was deleted: remove its component, so the
    /// host unloads the plugin.
    fn crate_removed(&mut self, dir: &Path) {
        let Some(krate) = self.names.remove(dir) else {
            return;
        };
        let path = self.config.plugins_dir.join(format!("{krate}.wasm"));
        match std::fs::remove_file(&path) {
            Ok(()) => self.emit(DevEvent::Removed { krate, path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.emit(DevEvent::WatchError {
                message: format!(
                    "{krate}'s crate folder is gone, but {} could not be removed: {e}",
                    path.display()
                ),
            }),
        }
    }

    /// The package name of the plugin crate in `dir`, if it is one.
    fn crate_name(&mut self, dir: &Path) -> Option<String> {
        match read_manifest(dir)? {
            Manifest::Plugin(name) => {
                self.names.insert(dir.to_path_buf(), name.clone());
                Some(name)
            }
            Manifest::NotPlugin => None,
            // Build it anyway so cargo reports what is wrong with the manifest.
            Manifest::Unreadable => Some(
                self.names
                    .get(dir)
                    .cloned()
                    .unwrap_or_else(|| dir_name(dir)),
            ),
        }
    }

    /// Watches `plugins/`, every crate folder and its subfolders; re-watches folders
    /// that were replaced (their `changed` paths), and drops watches on removed ones.
    fn sync_watches(&mut self, changed: &[PathBuf]) {
        let mut wanted: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for dir in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                if !dir.is_dir() || dir.file_name().is_some_and(is_hidden) {
                    continue;
                }
                wanted.push((dir.clone(), RecursiveMode::NonRecursive));
                let Ok(inner) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for sub in inner.filter_map(|e| e.ok().map(|e| e.path())) {
                    let skip = sub
                        .file_name()
                        .is_none_or(|n| is_hidden(n) || n == "target");
                    if sub.is_dir() && !skip {
                        wanted.push((sub, RecursiveMode::Recursive));
                    }
                }
            }
        }
        let mut guard = self.debouncer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(debouncer) = guard.as_mut() else {
            return;
        };
        let mut errors = Vec::new();
        for path in changed {
            if *path != self.root && self.watched.remove(path) {
                let _ = debouncer.unwatch(path);
            }
        }
        self.watched.retain(|p| {
            let keep = p.is_dir();
            if !keep {
                let _ = debouncer.unwatch(p);
            }
            keep
        });
        for (path, mode) in wanted {
            if self.watched.contains(&path) {
                continue;
            }
            match debouncer.watch(&path, mode) {
                Ok(()) => {
                    self.watched.insert(path);
                }
                Err(e) => errors.push(format!("cannot watch {}: {e}", path.display())),
            }
        }
        drop(guard);
        for message in errors {
            self.emit(DevEvent::WatchError { message });
        }
    }

    /// Builds `batch` (package name -> manifest) in one cargo run and installs what built.
    fn build(&mut self, batch: BTreeMap<String, PathBuf>) -> BTreeMap<String, BuildOutcome> {
        for krate in batch.keys() {
            self.emit(DevEvent::BuildStarted {
                krate: krate.clone(),
            });
        }
        let fail_all = |this: &Self, error: String| -> BTreeMap<String, BuildOutcome> {
            batch
                .keys()
                .map(|krate| {
                    this.emit(DevEvent::BuildFailed {
                        krate: krate.clone(),
                        error: error.clone(),
                    });
                    (krate.clone(), BuildOutcome::Failed(error.clone()))
                })
                .collect()
        };
        if !self.target_ready {
            match crate::wasm_build::ensure_wasm_target() {
                Ok(()) => self.target_ready = true,
                Err(e) => return fail_all(self, format!("{e:#}")),
            }
        }
        let specs: Vec<CrateSpec> = batch
            .iter()
            .map(|(name, manifest)| CrateSpec {
                name: name.clone(),
                manifest: manifest.clone(),
            })
            .collect();
        let run = match cargo::build(&self.config.workspace, &self.config.target_dir, &specs) {
            Ok(run) => run,
            Err(e) => return fail_all(self, format!("{e:#}")),
        };
        let mut outcomes = BTreeMap::new();
        for (krate, result) in run.results {
            let outcome = match result {
                Ok(artifact) => {
                    let bytes = std::fs::metadata(&artifact).map(|m| m.len()).unwrap_or(0);
                    self.emit(DevEvent::Built {
                        krate: krate.clone(),
                        duration: run.took,
                        bytes,
                    });
                    match install(&artifact, &self.config.plugins_dir, &krate) {
                        Ok((path, true)) => {
                            self.emit(DevEvent::Installed {
                                krate: krate.clone(),
                                path: path.clone(),
                            });
                            BuildOutcome::Installed(path)
                        }
                        Ok((path, false)) => {
                            self.emit(DevEvent::Unchanged {
                                krate: krate.clone(),
                            });
                            BuildOutcome::Unchanged(path)
                        }
                        Err(e) => {
                            let error = format!("{e:#}");
                            self.emit(DevEvent::BuildFailed {
                                krate: krate.clone(),
                                error: error.clone(),
                            });
                            BuildOutcome::Failed(error)
                        }
                    }
                }
                Err(error) => {
                    self.emit(DevEvent::BuildFailed {
                        krate: krate.clone(),
                        error: error.clone(),
                    });
                    BuildOutcome::Failed(error)
                }
            };
            outcomes.insert(krate, outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_changes_map_to_their_crate_folder() {
        let root = Path::new("/ws/plugins");
        let dir = Some(PathBuf::from("/ws/plugins/event-logger"));
        for changed in [
            "/ws/plugins/event-logger/src/lib.rs",
            "/ws/plugins/event-logger/src/deep/mod.rs",
            "/ws/plugins/event-logger/Cargo.toml",
            "/ws/plugins/event-logger/build.rs",
            "/ws/plugins/event-logger/wit/world.wit",
            "/ws/plugins/event-logger/src/target/mod.rs",
            "/ws/plugins/event-logger",
        ] {
            assert_eq!(crate_dir_of(root, Path::new(changed)), dir, "{changed}");
        }
        for ignored in [
            "/ws/plugins/event-logger/target/release/x.wasm",
            "/ws/plugins/event-logger/.git/index",
            "/ws/plugins/event-logger/src/.lib.rs.swp",
            "/ws/plugins/event-logger/src/lib.rs~",
            "/ws/plugins/event-logger/src/4913",
            "/ws/plugins/event-logger/src/#lib.rs#",
            "/ws/plugins/event-logger/src/.#lib.rs",
            "/ws/plugins/event-logger/src/lib.rs___jb_tmp___",
            "/ws/plugins/.hidden/src/lib.rs",
            "/ws/plugins",
            "/ws/host/src/lib.rs",
        ] {
            assert_eq!(crate_dir_of(root, Path::new(ignored)), None, "{ignored}");
        }
    }

    #[test]
    fn plugin_crates_are_cdylib_packages() {
        let ws = tempfile::tempdir().unwrap();
        let write = |dir: &str, manifest: &str| {
            let d = ws.path().join("plugins").join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Cargo.toml"), manifest).unwrap();
        };
        write(
            "a",
            "[package]\nname = \"alpha\"\n[lib]\ncrate-type = [\"cdylib\"]\n",
        );
        write("b", "[package]\nname = \"helper\"\n");
        write("c", "[package\nname = ");
        std::fs::create_dir_all(ws.path().join("plugins/no-manifest")).unwrap();
        std::fs::write(ws.path().join("plugins/README.md"), "hi").unwrap();
        let crates = plugin_crates(ws.path()).unwrap();
        let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["alpha", "c"]);
        assert_eq!(crates[0].dir, ws.path().join("plugins/a"));
    }

    #[test]
    fn install_writes_through_a_rename_and_skips_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join("built.wasm");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::write(&artifact, b"v1").unwrap();
        let (path, written) = install(&artifact, &plugins, "my-plugin").unwrap();
        assert_eq!(path, plugins.join("my-plugin.wasm"));
        assert!(written);
        assert_eq!(std::fs::read(&path).unwrap(), b"v1");
        assert!(!install(&artifact, &plugins, "my-plugin").unwrap().1);
        std::fs::write(&artifact, b"v2").unwrap();
        assert!(install(&artifact, &plugins, "my-plugin").unwrap().1);
        assert_eq!(std::fs::read(&path).unwrap(), b"v2");
        // No temp files left behind.
        let files: Vec<_> = std::fs::read_dir(&plugins).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn editor_temp_files_are_recognised() {
        for t in [".x.swp", "x~", "#x#", "4913", "x.tmp", "x.kate-swp"] {
            assert!(is_editor_temp(t), "{t}");
        }
        for f in ["lib.rs", "Cargo.toml", "world.wit", "build.rs"] {
            assert!(!is_editor_temp(f), "{f}");
        }
    }
}
