//! The event WebSocket's counters, outages and reconnect decisions, readable while it runs.
//!
//! An *outage* starts when a connection that `build_connection` accepted ends for a
//! reason other than shutdown, and ends when the next connection is accepted. Its
//! duration is what the application went without events: Zoom does not replay them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How many recent reconnect decisions are kept (older ones are forgotten).
const RECENT_RECONNECTS: usize = 256;

/// One finished outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// Why the connection ended (a drop, a close and its code, silence, ...).
    pub cause: String,
    /// From the end of the connection to the next accepted one.
    pub duration: Duration,
    /// Connection attempts it took (1 when the first reconnect succeeded).
    pub attempts: u32,
}

/// One wait chosen before a connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Consecutive failed attempts before this wait: 0 after an established connection
    /// (jitter only), 1.. while backing off.
    pub failures: u32,
    /// The wait chosen.
    pub delay: Duration,
}

/// Counters of one client.
#[derive(Debug, Default)]
pub struct EventStreamStats {
    pub(super) attempts: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) heartbeats_sent: AtomicU64,
    pub(super) heartbeat_replies: AtomicU64,
    pub(super) events: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) token_refreshes: AtomicU64,
    pub(super) token_refresh_failures: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) reconnect_attempts: AtomicU64,
    pub(super) client_closes: AtomicU64,
    outages: Mutex<OutageTotals>,
    reconnects: Mutex<VecDeque<Reconnect>>,
}

#[derive(Debug, Default, Clone)]
struct OutageTotals {
    count: u64,
    total: Duration,
    longest: Duration,
    last: Option<Outage>,
    /// When the outage in progress (if any) began.
    open_since: Option<std::time::Instant>,
}

/// A copy of [`EventStreamStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventStreamStatsSnapshot {
    /// Connection attempts (socket opens tried).
    pub attempts: u64,
    /// Successful `build_connection`s.
    pub connects: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeat replies received.
    pub heartbeat_replies: u64,
    /// Events handed to the input sink.
    pub events: u64,
    /// Messages skipped as malformed.
    pub malformed: u64,
    /// Tokens obtained after the first one (in the background or on reconnect).
    pub token_refreshes: u64,
    /// Background token refreshes that failed (retried with backoff; the live
    /// connection stays open).
    pub token_refresh_failures: u64,
    /// Connections whose token the server rejected.
    pub rejected: u64,
    /// Connection attempts made during outages.
    pub reconnect_attempts: u64,
    /// Connections this client closed itself (only at shutdown, or after silence).
    pub client_closes: u64,
    /// Outages that ended (the connection is back).
    pub outages: u64,
    /// Their summed duration.
    pub outage_total: Duration,
    /// The longest of them.
    pub longest_outage: Duration,
    /// The most recent one.
    pub last_outage: Option<Outage>,
    /// How long the outage in progress has lasted so far (`None` while connected or
    /// before the first connection).
    pub current_outage: Option<Duration>,
    /// The most recent reconnect waits, oldest first (at most 256).
    pub reconnects: Vec<Reconnect>,
}

impl EventStreamStats {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn record_reconnect(&self, reconnect: Reconnect) {
        let mut recent = self.reconnects.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_RECONNECTS {
            recent.pop_front();
        }
        recent.push_back(reconnect);
    }

    pub(super) fn outage_began(&self, at: std::time::Instant) {
        self.outages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open_since = Some(at);
    }

    pub(super) fn record_outage(&self, outage: Outage) {
        let mut totals = self.outages.lock().unwrap_or_else(|p| p.into_inner());
        totals.open_since = None;
        totals.count += 1;
        totals.total += outage.duration;
        totals.longest = totals.longest.max(outage.duration);
        totals.last = Some(outage);
    }

    /// The current values.
    pub fn snapshot(&self) -> EventStreamStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let outages = self
            .outages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let reconnects = self
            .reconnects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        EventStreamStatsSnapshot {
            attempts: get(&self.attempts),
            connects: get(&self.connects),
            heartbeats_sent: get(&self.heartbeats_sent),
            heartbeat_replies: get(&self.heartbeat_replies),
            events: get(&self.events),
            malformed: get(&self.malformed),
            token_refreshes: get(&self.token_refreshes),
            token_refresh_failures: get(&self.token_refresh_failures),
            rejected: get(&self.rejected),
            reconnect_attempts: get(&self.reconnect_attempts),
            client_closes: get(&self.client_closes),
            outages: outages.count,
            outage_total: outages.total,
            longest_outage: outages.longest,
            last_outage: outages.last,
            current_outage: outages.open_since.map(|since| since.elapsed()),
            reconnects,
        }
    }
}
