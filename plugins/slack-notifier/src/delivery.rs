//! Posting one message with bounded retries that always fit in the call's deadline.
//!
//! * 2xx: delivered.
//! * 429: wait `Retry-After` seconds (the backoff when the header is missing or not a
//!   number of seconds), then retry.
//! * 5xx, or a transport failure (connection refused or reset, timeout): wait the
//!   backoff (`retry_backoff_ms`, doubling per retry, at most [`MAX_BACKOFF`]), then retry.
//! * Any other status, or a request the host denies: give up at once.
//!
//! At most `max_retries` retries follow the first attempt. The host kills an instance
//! whose call outlives its deadline, so before every wait the time left in the call is
//! checked: a retry whose wait plus `request_budget` does not fit is dropped instead, and
//! each request's timeout is capped to the time left.

use std::time::Duration;

/// Upper bound of one backoff wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Kept free at the end of the call for logging and returning after a timed-out request.
const RESERVE: Duration = Duration::from_millis(20);

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff wait; doubles with each retry.
    pub backoff: Duration,
    /// Longest backoff wait.
    pub max_backoff: Duration,
    /// Timeout of one request (capped to the time left in the call).
    pub request_timeout: Duration,
    /// Time a retry needs after its wait; a retry with less left is dropped.
    pub request_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: MAX_BACKOFF,
            request_timeout: Duration::from_secs(5),
            request_budget: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based).
    pub fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The start of the body (Slack puts its error code there: `invalid_payload`, …).
    pub body: String,
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth another attempt (connection refused or reset, timeout).
    Transient(String),
    /// Another attempt would fail the same way (request denied by the grants, bad URL).
    Permanent(String),
}

/// The outside world, as the retry loop needs it.
pub trait Transport {
    /// Sends the message once, giving up after `timeout`.
    fn send(&mut self, timeout: Duration) -> Result<Reply, SendError>;
    /// Time left in the call; `None` when the host cannot tell.
    fn time_left(&self) -> Option<Duration>;
    /// Blocks for `wait`.
    fn sleep(&mut self, wait: Duration);
    /// Notes a failed attempt that will be retried after `wait`.
    fn retrying(&mut self, attempt: u32, why: &str, wait: Duration);
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the message.
    Delivered {
        /// Its 2xx status.
        status: u16,
        /// Requests made.
        attempts: u32,
    },
    /// The message was given up.
    Dropped {
        /// Requests made.
        attempts: u32,
        /// Why, in a sentence without the URL.
        reason: String,
    },
}

/// Sends with retries per `policy`.
pub fn deliver(policy: &RetryPolicy, transport: &mut impl Transport) -> Outcome {
    let mut attempts = 0;
    loop {
        let timeout = match transport.time_left() {
            Some(left) => policy.request_timeout.min(left.saturating_sub(RESERVE)),
            None => policy.request_timeout,
        };
        if timeout.is_zero() {
            return Outcome::Dropped {
                attempts,
                reason: "no time left in the call for a request".into(),
            };
        }
        attempts += 1;
        let (why, wait) = match transport.send(timeout) {
            Ok(reply) if (200..300).contains(&reply.status) => {
                return Outcome::Delivered {
                    status: reply.status,
                    attempts,
                };
            }
            Ok(reply) if reply.status == 429 => {
                let header = reply.retry_after.as_deref().map(str::trim);
                match header.and_then(|h| Some((h, parse_retry_after(h)?))) {
                    Some((header, wait)) => {
                        (format!("HTTP 429 with Retry-After: {header} s"), wait)
                    }
                    None => ("HTTP 429".to_string(), policy.backoff_for(attempts)),
                }
            }
            Ok(reply) if reply.status >= 500 => (
                with_body(format!("HTTP {}", reply.status), &reply.body),
                policy.backoff_for(attempts),
            ),
            Ok(reply) => {
                return Outcome::Dropped {
                    attempts,
                    reason: with_body(format!("HTTP {} (not retried)", reply.status), &reply.body),
                };
            }
            Err(SendError::Permanent(why)) => {
                return Outcome::Dropped {
                    attempts,
                    reason: why,
                };
            }
            Err(SendError::Transient(why)) => (why, policy.backoff_for(attempts)),
        };
        if attempts > policy.max_retries {
            return Outcome::Dropped {
                attempts,
                reason: format!(
                    "{why}; no retries left (max_retries = {})",
                    policy.max_retries
                ),
            };
        }
        if let Some(left) = transport.time_left() {
            if wait + policy.request_budget > left {
                return Outcome::Dropped {
                    attempts,
                    reason: format!(
                        "{why}; a retry in {} ms plus {} ms for the request does not fit in the {} ms left of the call",
                        wait.as_millis(),
                        policy.request_budget.as_millis(),
                        left.as_millis()
                    ),
                };
            }
        }
        transport.retrying(attempts, &why, wait);
        transport.sleep(wait);
    }
}

/// `Retry-After` as delay-seconds (`120`, also `1.5`). The HTTP-date form gets `None`
/// (the caller then backs off as usual).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds.min(86_400.0)).ok())
        .flatten()
}

fn with_body(what: String, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        what
    } else {
        format!("{what}: {body:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted server and a virtual clock.
    struct Script {
        replies: VecDeque<Result<Reply, SendError>>,
        left: Option<Duration>,
        /// Time each request takes.
        latency: Duration,
        sent: Vec<Duration>,
        slept: Vec<Duration>,
    }

    fn status(status: u16) -> Result<Reply, SendError> {
        Ok(Reply {
            status,
            retry_after: None,
            body: String::new(),
        })
    }

    fn too_many(after: &str) -> Result<Reply, SendError> {
        Ok(Reply {
            status: 429,
            retry_after: Some(after.to_string()),
            body: String::new(),
        })
    }

    impl Script {
        fn new(left_ms: Option<u64>, replies: Vec<Result<Reply, SendError>>) -> Self {
            Script {
                replies: replies.into(),
                left: left_ms.map(Duration::from_millis),
                latency: Duration::from_millis(5),
                sent: Vec::new(),
                slept: Vec::new(),
            }
        }

        fn pass(&mut self, d: Duration) {
            if let Some(left) = &mut self.left {
                *left = left.saturating_sub(d);
            }
        }
    }

    impl Transport for Script {
        fn send(&mut self, timeout: Duration) -> Result<Reply, SendError> {
            self.sent.push(timeout);
            self.pass(self.latency);
            self.replies.pop_front().unwrap_or_else(|| status(500))
        }
        fn time_left(&self) -> Option<Duration> {
            self.left
        }
        fn sleep(&mut self, wait: Duration) {
            self.slept.push(wait);
            self.pass(wait);
        }
        fn retrying(&mut self, _attempt: u32, _why: &str, _wait: Duration) {}
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn first_try() {
        let mut s = Script::new(Some(1000), vec![status(200)]);
        let out = deliver(&RetryPolicy::default(), &mut s);
        assert_eq!(
            out,
            Outcome::Delivered {
                status: 200,
                attempts: 1
            }
        );
        // Timeout capped to the time left minus the reserve.
        assert_eq!(s.sent, [ms(980)]);
    }

    #[test]
    fn server_errors_back_off_exponentially() {
        let mut s = Script::new(Some(10_000), vec![status(500), status(502), status(204)]);
        let out = deliver(&RetryPolicy::default(), &mut s);
        assert_eq!(
            out,
            Outcome::Delivered {
                status: 204,
                attempts: 3
            }
        );
        assert_eq!(s.slept, [ms(100), ms(200)]);
    }

    #[test]
    fn persistent_errors_stop_after_max_retries() {
        let mut s = Script::new(None, vec![]);
        let policy = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        match deliver(&policy, &mut s) {
            Outcome::Dropped {
                attempts: 3,
                reason,
            } => {
                assert!(
                    reason.contains("HTTP 500") && reason.contains("max_retries = 2"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // No deadline known: the configured timeout.
        assert_eq!(s.sent, [ms(5000); 3]);
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits() {
        let mut s = Script::new(Some(3000), vec![too_many("1"), status(200)]);
        let out = deliver(&RetryPolicy::default(), &mut s);
        assert_eq!(
            out,
            Outcome::Delivered {
                status: 200,
                attempts: 2
            }
        );
        assert_eq!(s.slept, [ms(1000)]);
    }

    #[test]
    fn a_retry_that_does_not_fit_is_dropped_without_waiting() {
        let mut s = Script::new(Some(1000), vec![too_many("5")]);
        match deliver(&RetryPolicy::default(), &mut s) {
            Outcome::Dropped {
                attempts: 1,
                reason,
            } => {
                assert!(
                    reason.contains("Retry-After: 5 s") && reason.contains("does not fit"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(s.slept.is_empty());

        // Backoff + budget past the deadline: 100 ms + 200 ms with 245 ms left.
        let mut s = Script::new(Some(250), vec![status(500)]);
        assert!(matches!(
            deliver(&RetryPolicy::default(), &mut s),
            Outcome::Dropped { attempts: 1, .. }
        ));
        assert!(s.slept.is_empty());
    }

    #[test]
    fn client_errors_and_permanent_failures_are_not_retried() {
        let mut s = Script::new(
            Some(1000),
            vec![Ok(Reply {
                status: 404,
                retry_after: None,
                body: "no_service".into(),
            })],
        );
        assert_eq!(
            deliver(&RetryPolicy::default(), &mut s),
            Outcome::Dropped {
                attempts: 1,
                reason: "HTTP 404 (not retried): \"no_service\"".into()
            }
        );
        let mut s = Script::new(Some(1000), vec![Err(SendError::Permanent("denied".into()))]);
        assert_eq!(
            deliver(&RetryPolicy::default(), &mut s),
            Outcome::Dropped {
                attempts: 1,
                reason: "denied".into()
            }
        );
        let mut s = Script::new(
            Some(1000),
            vec![Err(SendError::Transient("refused".into())), status(200)],
        );
        assert_eq!(
            deliver(&RetryPolicy::default(), &mut s),
            Outcome::Delivered {
                status: 200,
                attempts: 2
            }
        );
    }

    #[test]
    fn no_time_left_means_no_request() {
        let mut s = Script::new(Some(10), vec![status(200)]);
        assert!(matches!(
            deliver(&RetryPolicy::default(), &mut s),
            Outcome::Dropped { attempts: 0, .. }
        ));
        assert!(s.sent.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(
            (1..=7).map(|r| p.backoff_for(r)).collect::<Vec<_>>(),
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(2000),
                ms(2000)
            ]
        );
        assert_eq!(p.backoff_for(40), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("1"), Some(ms(1000)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(ms(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("1e30"), Some(Duration::from_secs(86_400)));
    }
}
