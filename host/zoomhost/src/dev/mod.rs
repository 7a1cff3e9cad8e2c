//! The parts of `zoomhost dev` that are not Zoom: rebuilding plugin *source* crates as
//! they are edited, and a live, line-oriented view of what flows through the host.
//!
//! * [`SourceWatcher`] watches `<workspace>/plugins/*/` (sources, manifests, new crate
//!   folders), rebuilds a changed plugin crate for `wasm32-wasip2` on a background
//!   thread (one build at a time, changes made during a build coalesced into one
//!   follow-up build) and installs the component into the host's plugins folder
//!   (temp file + rename). The host's own folder watcher ([`zoomhost_runtime::reload`])
//!   then hot-swaps it. What it does is reported as [`DevEvent`]s.
//! * [`LiveView`] prints those events, the host's plugin changes (loaded, swapped,
//!   rejected, crashed, quarantined, unloaded), the stream and event activity the
//!   sources report through a [`DevMonitor`] (including the event WebSocket's outages
//!   and recoveries), and every ~2 s a compact status with per-plugin counts when
//!   something changed.
//! * [`ChaosSession`] (`zoomhost dev --chaos`) makes the simulator fail the way Zoom
//!   does, event side and RTMS side, while a steady stream of events flows.
//! * [`local_cluster`]: a cluster of `zoomhost run` processes against one local
//!   `nats-server` (`zoomhost dev --workers N`, `zoomhost bench --cluster`, the
//!   multi-process tests).

mod cargo;
pub mod chaos;
mod cluster_session;
pub mod live_view;
pub mod local_cluster;
mod session;
pub mod source_watch;

use std::path::PathBuf;
use std::time::Duration;

pub use chaos::{ChaosOptions, ChaosSession};
pub use live_view::{DevMonitor, LiveView, LiveViewTask, MonitorSnapshot, ViewOptions};
pub use session::{run as run_dev, DevOptions};
pub use source_watch::{
    plugin_crates, BuildOutcome, PluginCrate, SourceWatchConfig, SourceWatcher,
};

/// What the [`SourceWatcher`] did, in order, for the live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevEvent {
    /// A build of this plugin crate started (because its sources changed, or on request).
    BuildStarted {
        /// Package name.
        krate: String,
    },
    /// The crate built.
    Built {
        /// Package name.
        krate: String,
        /// Wall time of the cargo run (shared by the crates built together).
        duration: Duration,
        /// Size of the component.
        bytes: u64,
    },
    /// The crate did not build; the version running in the host keeps serving.
    BuildFailed {
        /// Package name.
        krate: String,
        /// The relevant part of the compiler's (or cargo's) error output.
        error: String,
    },
    /// The new component was written into the host's plugins folder; the host's folder
    /// watcher swaps it in.
    Installed {
        /// Package name.
        krate: String,
        /// Where it was written (`<plugins folder>/<crate>.wasm`).
        path: PathBuf,
    },
    /// The crate built to the same bytes as the installed component; nothing to swap.
    Unchanged {
        /// Package name.
        krate: String,
    },
    /// The crate's folder was deleted, so its component was removed from the plugins
    /// folder; the host's folder watcher unloads the plugin.
    Removed {
        /// Package name.
        krate: String,
        /// The removed file.
        path: PathBuf,
    },
    /// The file watcher reported a problem (e.g. a folder that could not be watched).
    WatchError {
        /// What went wrong.
        message: String,
    },
}
