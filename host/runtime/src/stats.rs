//! Counters: what the router and the actors did, readable at any time. Each instance of
//! a plugin has its own (deliveries, drops, crashes, quarantine), and the plugin has one
//! set for what is not an instance's (rejected versions, outbound HTTP, stream control,
//! logs); a plugin's [`StatsSnapshot`] is their sum (see [`StatsSnapshot::add`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

/// Live counters for one plugin. All counters only grow.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Events handed to the plugin (whatever it answered).
    pub events_delivered: AtomicU64,
    /// Events whose handler returned an error, trapped or overran its deadline.
    pub events_failed: AtomicU64,
    /// Events dropped for this plugin: waited too long beyond mailbox capacity, or the
    /// plugin was quarantined.
    pub events_dropped: AtomicU64,
    /// Media deliveries (frames, segments, updates, opens and closes) handed to the plugin.
    pub media_delivered: AtomicU64,
    /// Media deliveries that failed.
    pub media_failed: AtomicU64,
    /// Audio frames dropped oldest-first because the plugin was congested.
    pub audio_dropped: AtomicU64,
    /// Other media dropped (quarantine, or a session that failed to open).
    pub media_dropped: AtomicU64,
    /// Instances killed (trap, deadline, memory cap).
    pub crashes: AtomicU64,
    /// Hot swaps to a new version.
    pub swaps: AtomicU64,
    /// New versions rejected (compile, link, world version, init).
    pub rejected_versions: AtomicU64,
    /// Outbound HTTP requests denied by the grants.
    pub http_denied: AtomicU64,
    /// Outbound HTTP requests refused because the plugin had `max_outbound_requests` in
    /// flight.
    pub http_refused: AtomicU64,
    /// Outbound HTTP requests (or their connections) cancelled because the call that
    /// made them ended first.
    pub http_cancelled: AtomicU64,
    /// Stream-control requests (close a stream, subscribe video) passed to the RTMS
    /// client.
    pub stream_control_requests: AtomicU64,
    /// Stream-control requests denied because the plugin is not granted `stream_control`.
    pub stream_control_denied: AtomicU64,
    /// Log lines suppressed by the rate limit.
    pub logs_suppressed: AtomicU64,
    /// Total time spent inside the plugin, in microseconds.
    pub busy_micros: AtomicU64,
    /// Whether the plugin is quarantined now.
    pub quarantined: AtomicBool,
    /// Why the last new version was rejected (see [`PluginStats::record_rejection`]).
    last_rejection: Mutex<Option<String>>,
    /// Why the last instance was killed (see [`PluginStats::record_crash`]).
    last_crash: Mutex<Option<String>>,
}

/// A point-in-time copy of [`PluginStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub struct StatsSnapshot {
    pub events_delivered: u64,
    pub events_failed: u64,
    pub events_dropped: u64,
    pub media_delivered: u64,
    pub media_failed: u64,
    pub audio_dropped: u64,
    pub media_dropped: u64,
    pub crashes: u64,
    pub swaps: u64,
    pub rejected_versions: u64,
    pub http_denied: u64,
    pub http_refused: u64,
    pub http_cancelled: u64,
    pub stream_control_requests: u64,
    pub stream_control_denied: u64,
    pub logs_suppressed: u64,
    pub busy_micros: u64,
    pub quarantined: bool,
    /// Why the last new version was rejected, if one was.
    pub last_rejection: Option<String>,
    /// Why the last instance was killed, if one was.
    pub last_crash: Option<String>,
}

impl StatsSnapshot {
    /// Adds `other`'s counters to these: counts add up, `quarantined` is true if either
    /// is, and the last rejection and crash are these' if set, else `other`'s.
    pub fn add(&mut self, other: &StatsSnapshot) {
        self.events_delivered += other.events_delivered;
        self.events_failed += other.events_failed;
        self.events_dropped += other.events_dropped;
        self.media_delivered += other.media_delivered;
        self.media_failed += other.media_failed;
        self.audio_dropped += other.audio_dropped;
        self.media_dropped += other.media_dropped;
        self.crashes += other.crashes;
        self.swaps += other.swaps;
        self.rejected_versions += other.rejected_versions;
        self.http_denied += other.http_denied;
        self.http_refused += other.http_refused;
        self.http_cancelled += other.http_cancelled;
        self.stream_control_requests += other.stream_control_requests;
        self.stream_control_denied += other.stream_control_denied;
        self.logs_suppressed += other.logs_suppressed;
        self.busy_micros += other.busy_micros;
        self.quarantined |= other.quarantined;
        if self.last_rejection.is_none() {
            self.last_rejection.clone_from(&other.last_rejection);
        }
        if self.last_crash.is_none() {
            self.last_crash.clone_from(&other.last_crash);
        }
    }
}

impl PluginStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a rejected new version and keeps why, for views that show the reason.
    pub fn record_rejection(&self, why: String) {
        Self::bump(&self.rejected_versions);
        *self
            .last_rejection
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Counts a killed instance and keeps why, for views that show the reason.
    pub fn record_crash(&self, why: String) {
        Self::bump(&self.crashes);
        *self.last_crash.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            events_delivered: self.events_delivered.load(Relaxed),
            events_failed: self.events_failed.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            media_delivered: self.media_delivered.load(Relaxed),
            media_failed: self.media_failed.load(Relaxed),
            audio_dropped: self.audio_dropped.load(Relaxed),
            media_dropped: self.media_dropped.load(Relaxed),
            crashes: self.crashes.load(Relaxed),
            swaps: self.swaps.load(Relaxed),
            rejected_versions: self.rejected_versions.load(Relaxed),
            http_denied: self.http_denied.load(Relaxed),
            http_refused: self.http_refused.load(Relaxed),
            http_cancelled: self.http_cancelled.load(Relaxed),
            stream_control_requests: self.stream_control_requests.load(Relaxed),
            stream_control_denied: self.stream_control_denied.load(Relaxed),
            logs_suppressed: self.logs_suppressed.load(Relaxed),
            busy_micros: self.busy_micros.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            last_rejection: self
                .last_rejection
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_crash: self
                .last_crash
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
