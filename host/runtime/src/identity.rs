//! Who a plugin is to the host: its name, the operator's grant, its counters, and where
//! its log lines go (tracing, rate-limited, plus an optional observer).

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::bindings::types::LogLevel;
use crate::config::ResolvedGrant;
use crate::stats::PluginStats;

/// One log line written by a plugin (log call or stdout/stderr line).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginLogRecord {
    /// Plugin name (file stem).
    pub plugin: String,
    /// Level given by the plugin (stdout is info, stderr is warn).
    pub level: LogLevel,
    /// The line.
    pub message: String,
    /// Which of the plugin's instances wrote it (0 for a plugin with one instance).
    pub instance: u32,
}

/// Observer of plugin log lines (the dev UI, tests).
pub type LogSink = Arc<dyn Fn(&PluginLogRecord) + Send + Sync>;

/// Longest log line kept; the rest is cut with a marker.
const MAX_LINE: usize = 8 * 1024;

/// A plugin's identity, shared by its actor, its store and the registry.
pub struct PluginIdentity {
    name: String,
    grant: RwLock<Arc<ResolvedGrant>>,
    /// Counters.
    pub stats: Arc<PluginStats>,
    sink: Option<LogSink>,
    limiter: Mutex<LogWindow>,
    /// Outbound HTTP requests in flight, over all instances of the plugin.
    pub(crate) outbound_in_flight: Arc<AtomicUsize>,
}

struct LogWindow {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl std::fmt::Debug for PluginIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PluginIdentity {
    /// A new identity.
    pub fn new(name: &str, grant: ResolvedGrant, sink: Option<LogSink>) -> Self {
        Self {
            name: name.to_string(),
            grant: RwLock::new(Arc::new(grant)),
            stats: Arc::new(PluginStats::default()),
            sink,
            limiter: Mutex::new(LogWindow {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
            outbound_in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The plugin's name (file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The grant in force now.
    pub fn grant(&self) -> Arc<ResolvedGrant> {
        self.grant
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Replaces the grant (host config reloaded); takes effect on the next call.
    pub fn set_grant(&self, grant: ResolvedGrant) {
        let mut slot = self.grant.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(grant);
    }

    /// Records one line written by the plugin (its first instance), subject to the
    /// per-second limit.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.log_from(0, level, message);
    }

    /// Records one line written by the plugin's instance `instance`, subject to the
    /// per-second limit (shared by all instances of the plugin).
    pub fn log_from(&self, instance: u32, level: LogLevel, message: &str) {
        if !self.admit() {
            return;
        }
        let message = if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… [{} bytes cut]", &message[..cut], message.len() - cut)
        } else {
            message.to_string()
        };
        let plugin = self.name.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, instance, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, instance, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, instance, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, instance, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, instance, "{message}"),
        }
        if let Some(sink) = &self.sink {
            sink(&PluginLogRecord {
                plugin: self.name.clone(),
                level,
                message,
                instance,
            });
        }
    }

    /// Fixed one-second windows: up to `lines_per_second` lines pass; the rest are counted
    /// and summarised once when the next window opens.
    fn admit(&self) -> bool {
        let lines_per_second = self.grant().limits.log_lines_per_second;
        let mut w = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(w.started) >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                tracing::warn!(
                    target: "plugin",
                    plugin = self.name.as_str(),
                    suppressed = w.suppressed,
                    "plugin log rate limit: {} lines suppressed (limit {}/s)",
                    w.suppressed,
                    lines_per_second
                );
            }
            w.started = now;
            w.written = 0;
            w.suppressed = 0;
        }
        if w.written < lines_per_second {
            w.written += 1;
            true
        } else {
            w.suppressed += 1;
            PluginStats::bump(&self.stats.logs_suppressed);
            false
        }
    }
}
