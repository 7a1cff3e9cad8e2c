//! Counters: what the router and the actors did, readable at any time. Each instance of
//! a plugin has its own (deliveries, drops, crashes, quarantine), and the plugin has one
//! set for what is not an instance's (rejected versions, outbound HTTP, stream control,
//! logs); a plugin's [`StatsSnapshot`] is their sum (see [`StatsSnapshot::add`]).
//!
//! Each call into a plugin is also recorded in a fixed-bucket histogram of its duration
//! ([`CallHistogram`], one for event calls and one for media calls): two relaxed atomic
//! adds per call (its bucket and the summed time), no lock, no allocation. Failures are
//! counted by reason ([`FailureReason`]: handler error, trap, deadline, memory, each
//! budget of `[limits]`); they are rare, so a small map under a mutex holds them.

use std::collections::BTreeMap;
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
    /// Total time spent inside the plugin, in microseconds: the sum of the two call
    /// histograms' sums, filled in by [`PluginStats::snapshot`] (it is not bumped itself).
    pub busy_micros: AtomicU64,
    /// Durations of event calls.
    pub event_calls: CallHistogram,
    /// Durations of media calls (frames, segments, updates, opens and closes).
    pub media_calls: CallHistogram,
    /// Instances restarted after being killed (the plugin was not quarantined).
    pub restarts: AtomicU64,
    /// Failed calls by reason (see [`FailureReason`]).
    failures: Mutex<BTreeMap<&'static str, u64>>,
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
    pub restarts: u64,
    pub quarantined: bool,
    /// Event-call durations.
    pub event_calls: HistogramSnapshot,
    /// Media-call durations.
    pub media_calls: HistogramSnapshot,
    /// Failed calls by reason: `handler_error`, `trap`, `deadline`, `memory`, or the
    /// `[limits]` key of the budget that was exceeded.
    pub failures: BTreeMap<String, u64>,
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
        self.restarts += other.restarts;
        self.quarantined |= other.quarantined;
        self.event_calls.add(&other.event_calls);
        self.media_calls.add(&other.media_calls);
        for (reason, n) in &other.failures {
            *self.failures.entry(reason.clone()).or_default() += n;
        }
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

    /// Records one call of `micros` microseconds: an event call or a media call.
    #[inline]
    pub fn record_call(&self, event: bool, micros: u64) {
        if event {
            self.event_calls.record(micros);
        } else {
            self.media_calls.record(micros);
        }
    }

    /// Counts a failed call by its reason.
    pub fn record_failure(&self, reason: FailureReason) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason.label())
            .or_default() += 1;
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let event_calls = self.event_calls.snapshot();
        let media_calls = self.media_calls.snapshot();
        let busy_micros =
            self.busy_micros.load(Relaxed) + event_calls.sum_micros + media_calls.sum_micros;
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
            busy_micros,
            restarts: self.restarts.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            event_calls,
            media_calls,
            failures: self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
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

/// Why a call failed, as counted in [`StatsSnapshot::failures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The handler returned an error (the instance lives on).
    HandlerError,
    /// The guest trapped, or a host call it made failed.
    Trap,
    /// The call overran its deadline.
    Deadline,
    /// The instance tried to grow its memory past `memory_mib`.
    Memory,
    /// Another budget of `[limits]`, by its key.
    Budget(&'static str),
}

impl FailureReason {
    /// The label: `handler_error`, `trap`, `deadline`, `memory`, or the budget's key.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::HandlerError => "handler_error",
            FailureReason::Trap => "trap",
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::Budget(key) => key,
        }
    }

    /// The reason of an instance killed by `fatal`.
    pub(crate) fn of(fatal: &crate::instance::Fatal) -> Self {
        use crate::instance::Fatal;
        match fatal {
            Fatal::Deadline(_) => FailureReason::Deadline,
            Fatal::MemoryCap(_) => FailureReason::Memory,
            Fatal::Budget { key, .. } => FailureReason::Budget(key),
            Fatal::Trap(_) => FailureReason::Trap,
        }
    }
}

/// Buckets of a [`CallHistogram`]: upper bounds of 2^0 to 2^24 microseconds (1 µs to
/// 16.8 s), then everything longer.
pub const CALL_BUCKETS: usize = 26;

/// A fixed-bucket histogram of call durations in microseconds: bucket `i` (below the
/// last) counts calls of at most 2^i µs and more than 2^(i-1) µs; the last counts the
/// rest. Recording is two relaxed atomic adds (the bucket and the sum), so it is cheap
/// enough for every media frame; readers add the buckets up.
#[derive(Debug, Default)]
pub struct CallHistogram {
    buckets: [AtomicU64; CALL_BUCKETS],
    sum_micros: AtomicU64,
}

impl CallHistogram {
    /// The bucket a duration of `micros` falls in.
    #[inline]
    pub fn bucket_of(micros: u64) -> usize {
        // ceil(log2(micros)) for micros >= 1; 0 for 0 and 1.
        let bits = (u64::BITS - micros.saturating_sub(1).leading_zeros()) as usize;
        bits.min(CALL_BUCKETS - 1)
    }

    /// The upper bound of bucket `i` in seconds (`f64::INFINITY` for the last).
    pub fn upper_bound_seconds(i: usize) -> f64 {
        if i + 1 >= CALL_BUCKETS {
            f64::INFINITY
        } else {
            (1u64 << i) as f64 / 1e6
        }
    }

    /// Records one call.
    #[inline]
    pub fn record(&self, micros: u64) {
        self.buckets[Self::bucket_of(micros)].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// A copy of a [`CallHistogram`]: per-bucket (not cumulative) counts and the summed
/// duration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistogramSnapshot {
    /// Calls per bucket (see [`CallHistogram`]); empty when nothing was recorded by a
    /// default snapshot.
    pub buckets: Vec<u64>,
    /// Summed duration, in microseconds.
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// Calls recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_micros += other.sum_micros;
    }

    /// Cumulative counts with their upper bounds in seconds, as Prometheus wants them
    /// (the last bound is `+Inf`).
    pub fn cumulative_seconds(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        (0..CALL_BUCKETS)
            .map(|i| {
                total += self.buckets.get(i).copied().unwrap_or(0);
                (CallHistogram::upper_bound_seconds(i), total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_power_of_two_bucket() {
        assert_eq!(CallHistogram::bucket_of(0), 0);
        assert_eq!(CallHistogram::bucket_of(1), 0);
        assert_eq!(CallHistogram::bucket_of(2), 1);
        assert_eq!(CallHistogram::bucket_of(3), 2);
        assert_eq!(CallHistogram::bucket_of(4), 2);
        assert_eq!(CallHistogram::bucket_of(5), 3);
        assert_eq!(CallHistogram::bucket_of(1 << 24), 24);
        assert_eq!(CallHistogram::bucket_of((1 << 24) + 1), 25);
        assert_eq!(CallHistogram::bucket_of(u64::MAX), 25);
        for micros in [0, 1, 7, 100, 999, 20_000, 5_000_000] {
            let i = CallHistogram::bucket_of(micros);
            assert!(micros as f64 / 1e6 <= CallHistogram::upper_bound_seconds(i));
            if i > 0 {
                assert!(micros as f64 / 1e6 > CallHistogram::upper_bound_seconds(i - 1));
            }
        }
    }

    #[test]
    fn a_snapshot_sums_busy_time_and_counts_failures_by_reason() {
        let stats = PluginStats::default();
        stats.record_call(true, 30);
        stats.record_call(false, 10);
        stats.record_call(false, 1_000);
        stats.record_failure(FailureReason::Deadline);
        stats.record_failure(FailureReason::Budget("max_handles"));
        stats.record_failure(FailureReason::Deadline);
        let snap = stats.snapshot();
        assert_eq!(snap.busy_micros, 1_040);
        assert_eq!((snap.event_calls.count(), snap.media_calls.count()), (1, 2));
        assert_eq!(snap.failures["deadline"], 2);
        assert_eq!(snap.failures["max_handles"], 1);
        let cumulative = snap.media_calls.cumulative_seconds();
        assert_eq!(cumulative.len(), CALL_BUCKETS);
        assert_eq!(cumulative.last().map(|(_, n)| *n), Some(2));
        assert!(cumulative.last().is_some_and(|(le, _)| le.is_infinite()));

        let mut sum = snap.clone();
        sum.add(&snap);
        assert_eq!(sum.failures["deadline"], 4);
        assert_eq!(sum.media_calls.count(), 4);
        assert_eq!(sum.busy_micros, 2_080);
    }
}
