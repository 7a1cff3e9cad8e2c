//! When the event WebSocket reconnects: at once after a connection that was established,
//! with growing delays only across consecutive failed attempts.
//!
//! Zoom does not replay events sent while no connection is up, so every moment without a
//! connection loses events. The policy therefore never waits after a connection that
//! `build_connection` accepted, whatever ended it (a drop, a close 1001, the server closing
//! at token expiry, a heartbeat stall): only a random jitter below
//! [`EventStreamConfig::reconnect_jitter`], so that many clients do not all come back in
//! the same instant. Attempts that fail (refused, rejected token, no token, handshake
//! error) wait a schedule doubling from [`EventStreamConfig::backoff_min`], jittered and
//! capped at [`EventStreamConfig::backoff_max`]. The schedule only starts over after a
//! connection stayed up for [`EventStreamConfig::healthy_after`]: a server that accepts
//! and drops at once does not get hammered at the bottom of the schedule.

use std::time::Duration;

use backon::BackoffBuilder as _;
use rand::Rng as _;

use super::EventStreamConfig;

/// The reconnect decisions of one client (pure: no timers, no I/O).
pub struct ReconnectPolicy {
    jitter: Duration,
    min: Duration,
    max: Duration,
    healthy_after: Duration,
    failures: u32,
    schedule: Box<dyn Iterator<Item = Duration> + Send>,
}

impl std::fmt::Debug for ReconnectPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectPolicy")
            .field("failures", &self.failures)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl ReconnectPolicy {
    /// A policy with the delays of `config`.
    pub fn new(config: &EventStreamConfig) -> Self {
        let min = config.backoff_min;
        let max = config.backoff_max.max(min);
        Self {
            jitter: config.reconnect_jitter,
            min,
            max,
            healthy_after: config.healthy_after,
            failures: 0,
            schedule: schedule(min, max),
        }
    }

    /// Consecutive failed attempts since the last established connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait before reconnecting after an established connection that was up for
    /// `up_for` ended: a jitter below `reconnect_jitter`, never a backoff. A connection
    /// that stayed up `healthy_after` also starts the failure schedule over.
    pub fn after_connection(&mut self, up_for: Duration) -> Duration {
        self.failures = 0;
        if up_for >= self.healthy_after {
            self.schedule = schedule(self.min, self.max);
        }
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        rand::rng().random_range(Duration::ZERO..self.jitter)
    }

    /// The wait after a failed attempt: the next step of the doubling schedule, jittered,
    /// never above `backoff_max`.
    pub fn after_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.schedule.next().unwrap_or(self.max).min(self.max)
    }
}

/// Doubling from `min`, jitter adding up to 100% of each step, capped at `max`: the
/// un-jittered steps stop at half the cap so the jittered ones spread below it.
fn schedule(min: Duration, max: Duration) -> Box<dyn Iterator<Item = Duration> + Send> {
    let base_cap = (max / 2).max(min);
    Box::new(
        crate::retry::doubling(min, base_cap)
            .with_jitter()
            .build()
            .map(move |d| d.min(max)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        let mut config = EventStreamConfig::new("ws://x", "s");
        config.reconnect_jitter = Duration::from_millis(20);
        config.backoff_min = Duration::from_millis(100);
        config.backoff_max = Duration::from_millis(1500);
        config.healthy_after = Duration::from_secs(10);
        ReconnectPolicy::new(&config)
    }

    #[test]
    fn production_defaults_follow_the_contract() {
        let config = EventStreamConfig::new("wss://ws.zoom.us/ws", "s");
        assert_eq!(config.reconnect_jitter, Duration::from_secs(1));
        assert_eq!(config.backoff_max, Duration::from_secs(15));
        assert_eq!(config.healthy_after, Duration::from_secs(10));
        let mut p = ReconnectPolicy::new(&config);
        for _ in 0..100 {
            assert!(p.after_failure() <= Duration::from_secs(15));
        }
        assert!(p.after_connection(Duration::ZERO) < Duration::from_secs(1));
    }

    #[test]
    fn an_established_connection_is_followed_by_jitter_only() {
        let mut p = policy();
        for _ in 0..6 {
            p.after_failure();
        }
        for up_for in [
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_secs(60),
        ] {
            let d = p.after_connection(up_for);
            assert!(d < Duration::from_millis(20), "{d:?}");
            assert_eq!(p.failures(), 0);
        }
    }

    #[test]
    fn backoff_grows_across_consecutive_failures_and_is_capped() {
        let mut p = policy();
        let delays: Vec<Duration> = (0..12).map(|_| p.after_failure()).collect();
        assert_eq!(p.failures(), 12);
        // Step n lies in [min * 2^n, min * 2^(n+1)) until the cap.
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(200));
        assert!(delays[1] >= Duration::from_millis(200) && delays[1] < Duration::from_millis(400));
        assert!(delays[2] >= Duration::from_millis(400) && delays[2] < Duration::from_millis(800));
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(1500)),
            "{delays:?}"
        );
        assert!(
            delays[6..].iter().all(|d| *d >= Duration::from_millis(750)),
            "{delays:?}"
        );
    }

    #[test]
    fn only_a_healthy_connection_starts_the_schedule_over() {
        let mut p = policy();
        for _ in 0..3 {
            p.after_failure();
        }
        // A short-lived connection: reconnect at once, but the next failure keeps climbing.
        p.after_connection(Duration::from_secs(1));
        let next = p.after_failure();
        assert!(next >= Duration::from_millis(750), "{next:?}");
        // A healthy one: the next failure starts from the bottom.
        p.after_connection(Duration::from_secs(10));
        let next = p.after_failure();
        assert!(next < Duration::from_millis(200), "{next:?}");
    }
}
