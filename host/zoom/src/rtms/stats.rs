//! Counters over every stream ([`RtmsStats`]), and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use zoomhost_protocol::rtms::states::stop_reason;

/// Slots of [`RtmsStats::failed_stops`]: one per stop reason of Zoom's table (0 to 26).
pub const STOP_REASONS: usize = stop_reason::MAX as usize + 1;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Counters over every stream.
        #[derive(Debug, Default)]
        pub struct RtmsStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Streams ended by a connection-failure stop reason (10 to 19, 24; from
            /// `*.rtms_stopped` or a TERMINATED state), by reason number.
            pub failed_stops: [AtomicU64; STOP_REASONS],
        }

        /// A snapshot of [`RtmsStats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct RtmsStatsSnapshot {
            $(#[doc = concat!("See [`RtmsStats::", stringify!($name), "`].")] pub $name: u64,)*
            /// See [`RtmsStats::failed_stops`] (index: the stop reason).
            pub failed_stops: [u64; STOP_REASONS],
        }

        impl RtmsStats {
            /// The counters now.
            pub fn snapshot(&self) -> RtmsStatsSnapshot {
                let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
                RtmsStatsSnapshot {
                    $($name: g(&self.$name),)*
                    failed_stops: std::array::from_fn(|i| g(&self.failed_stops[i])),
                }
            }
        }
    };
}

counters! {
    /// Streams opened in the plugins.
    opened,
    /// Streams that ended cleanly.
    stopped,
    /// Streams given up (refused, not resumed in time, or a connection-failure stop).
    failed,
    /// Frames and segments handed to the input sink.
    frames,
    /// Frames of kinds no plugin subscribed to (counted, dropped).
    unsubscribed,
    /// Frames not newer than the last delivered for their user or channel (a replay
    /// after a reconnect: dropped).
    duplicates,
    /// Malformed messages skipped.
    malformed,
    /// Re-handshakes after a drop (signaling or media).
    reconnects,
    /// Keep-alive requests answered.
    keepalives,
    /// Scenario 1: `*.rtms_started` with a newer `event_ts` for a running stream (the
    /// stream moved to another server).
    failovers,
    /// Scenario 2: `*.rtms_interrupted` acted on (signaling and media re-handshaken).
    interruptions,
    /// Scenario 3: media sockets re-handshaken on Zoom's word (event 7, or stream state
    /// INTERRUPTED with reason 14).
    media_interruptions,
    /// Reconnects on a socket close alone, after the grace period passed without a word
    /// from Zoom.
    close_fallbacks,
    /// `*.rtms_started` for a running (or just ended) stream with the same or an older
    /// `event_ts`: a duplicate delivery or a late retry, dropped.
    duplicate_starts,
    /// Signaling handshakes refused with status 8 (duplicate signal request) and retried.
    status8_retries,
    /// Media handshakes refused with status 16 (duplicate media connection) and retried.
    status16_retries,
    /// `rtms.concurrency_limited` notices (no new streams for the account).
    concurrency_limited,
    /// `rtms.concurrency_near_limit` notices.
    concurrency_near_limit,
    /// `STREAM_CLOSE_REQ` sent at a plugin's request.
    close_requests,
    /// `VIDEO_SUBSCRIPTION_REQ` sent at a plugin's request.
    video_subscriptions,
    /// Streams resumed here from another node's saved state (a cluster's new owner).
    resumed,
    /// Streams handed over to another node (sockets dropped, state kept).
    handed_over,
}

impl RtmsStats {
    /// Counts a stream ended by a connection-failure stop reason.
    pub(super) fn failed_stop(&self, reason: i64) {
        if let Some(slot) = usize::try_from(reason)
            .ok()
            .and_then(|r| self.failed_stops.get(r))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl RtmsStatsSnapshot {
    /// Streams ended by any connection-failure stop reason.
    pub fn failed_stops_total(&self) -> u64 {
        self.failed_stops.iter().sum()
    }
}
