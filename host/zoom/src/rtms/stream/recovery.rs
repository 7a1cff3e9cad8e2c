//! The recovery rules, without I/O: reconnect delays, when an attempt may start, which
//! media sockets an interruption names, and what a stop reason means.

use std::time::Duration;

use backon::BackoffBuilder as _;
use tokio::time::Instant;
use zoomhost_protocol::rtms::media::bit;
use zoomhost_protocol::rtms::states::stop_reason;

/// Reconnect delays: from `min` doubling up to `max` (Zoom: 3 s to 30 s), back to `min`
/// after every successful handshake.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            delays: crate::retry::doubling(min, max).build(),
        }
    }

    /// The next delay.
    pub(super) fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// Back to the first delay (after a successful handshake).
    pub(super) fn reset(&mut self) {
        self.delays = crate::retry::doubling(self.min, self.max).build();
    }
}

/// When the first attempt after a loss at `lost_at` may start: `delay` after it when
/// Zoom said the connection was interrupted, and otherwise (a bare socket close) not
/// before the grace period for Zoom's word has passed either.
pub(super) fn resume_at(
    lost_at: Instant,
    delay: Duration,
    signaled: bool,
    grace: Duration,
) -> Instant {
    lost_at + if signaled { delay } else { delay.max(grace) }
}

/// The delays between retries of a handshake refused as a duplicate (status 8): `first`,
/// doubling, `count` of them (Zoom's client: 1.5 s, 3 s, 6 s).
pub(super) fn duplicate_delays(first: Duration, count: u32) -> Vec<Duration> {
    (0..count).map(|i| first * 2u32.saturating_pow(i)).collect()
}

/// The media sockets (by index) an interruption concerns. `mask` is the event's
/// `media_type` bits when it names any; `sockets` are each socket's bits and whether it
/// is connected. Named: every socket carrying a named type (an `all` socket carries
/// every type). Not named: every socket that is down, or all of them when none is.
pub(super) fn interrupted_sockets(mask: Option<u32>, sockets: &[(u32, bool)]) -> Vec<usize> {
    let all = |bits: u32| bits & bit::ALL != 0;
    match mask.filter(|m| *m != 0) {
        Some(mask) => sockets
            .iter()
            .enumerate()
            .filter(|(_, (bits, _))| all(mask) || all(*bits) || bits & mask != 0)
            .map(|(i, _)| i)
            .collect(),
        None => {
            let down: Vec<usize> = sockets
                .iter()
                .enumerate()
                .filter(|(_, (_, up))| !up)
                .map(|(i, _)| i)
                .collect();
            if down.is_empty() {
                (0..sockets.len()).collect()
            } else {
                down
            }
        }
    }
}

/// How a stream ended, as the run loop reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Ended cleanly.
    Closed(String),
    /// Given up or failed (reported, counted as failed).
    Failed(String),
    /// Handed over to another node (a cluster worker draining or giving up the
    /// meeting's partition): the sockets were dropped without a close frame and without
    /// `STREAM_CLOSE_REQ`, so the stream stays resumable for the next owner.
    HandedOver,
}

/// What a stop reason (of `*.rtms_stopped` or a TERMINATED state) means: a connection
/// failure (10 to 19, 24) fails the stream, anything else closes it. `what` says where
/// the reason came from.
pub(super) fn stop_outcome(what: &str, reason: Option<i64>) -> Outcome {
    match reason {
        Some(r) if stop_reason::is_connection_failure(r) => Outcome::Failed(format!(
            "{what} with a connection failure (stop_reason {r}: {}); only a new stream brings media back",
            stop_reason::name(r)
        )),
        Some(r) => Outcome::Closed(format!("{what} (stop_reason {r}: {})", stop_reason::name(r))),
        None => Outcome::Closed(what.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_3_s_doubling_to_30_s_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(3), Duration::from_secs(30));
        let s: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(s, vec![3, 6, 12, 24, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(3));
    }

    #[test]
    fn a_bare_close_waits_for_zoom_first() {
        let t = Instant::now();
        let (d, g) = (Duration::from_secs(3), Duration::from_secs(5));
        assert_eq!(resume_at(t, d, true, g), t + d);
        assert_eq!(resume_at(t, d, false, g), t + g);
        assert_eq!(
            resume_at(t, Duration::from_secs(12), false, g),
            t + Duration::from_secs(12)
        );
    }

    #[test]
    fn duplicate_retries_are_1_5_3_6_s() {
        assert_eq!(
            duplicate_delays(Duration::from_millis(1500), 3),
            vec![
                Duration::from_millis(1500),
                Duration::from_secs(3),
                Duration::from_secs(6)
            ]
        );
        assert!(duplicate_delays(Duration::from_secs(1), 0).is_empty());
    }

    #[test]
    fn interruptions_name_their_sockets_or_the_unhealthy_ones() {
        let sockets = [
            (bit::AUDIO, true),
            (bit::TRANSCRIPT, false),
            (bit::VIDEO, true),
        ];
        assert_eq!(interrupted_sockets(Some(bit::AUDIO), &sockets), vec![0]);
        assert_eq!(
            interrupted_sockets(Some(bit::AUDIO | bit::VIDEO), &sockets),
            vec![0, 2]
        );
        assert_eq!(interrupted_sockets(Some(bit::ALL), &sockets), vec![0, 1, 2]);
        assert_eq!(interrupted_sockets(None, &sockets), vec![1]);
        assert_eq!(interrupted_sockets(Some(0), &sockets), vec![1]);
        let healthy = [(bit::AUDIO, true), (bit::TRANSCRIPT, true)];
        assert_eq!(interrupted_sockets(None, &healthy), vec![0, 1]);
        let one_all = [(bit::ALL, true)];
        assert_eq!(interrupted_sockets(Some(bit::AUDIO), &one_all), vec![0]);
    }

    #[test]
    fn connection_failures_fail_the_stream_by_name() {
        for r in [10, 13, 19, 24] {
            let Outcome::Failed(text) = stop_outcome("rtms_stopped", Some(r)) else {
                panic!("{r} must fail");
            };
            assert!(text.contains(&format!("stop_reason {r}")), "{text}");
            assert!(text.contains(stop_reason::name(r)), "{text}");
        }
        assert_eq!(
            stop_outcome("stream TERMINATED", Some(6)),
            Outcome::Closed("stream TERMINATED (stop_reason 6: meeting ended)".into())
        );
        assert!(matches!(stop_outcome("x", Some(20)), Outcome::Closed(_)));
        assert!(matches!(stop_outcome("x", None), Outcome::Closed(_)));
    }
}
