//! One backoff schedule for every Zoom client: delays doubling from a minimum up to a
//! cap (backon's exponential builder). Callers add jitter or a retry limit where they
//! need one.

use std::time::Duration;

use backon::ExponentialBuilder;

/// Delays doubling from `min`, never above `max`, without a limit on attempts.
pub fn doubling(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .with_factor(2.0)
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder as _;

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<Duration> =
            doubling(Duration::from_millis(100), Duration::from_millis(500))
                .build()
                .take(5)
                .collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![100, 200, 400, 500, 500]);
    }
}
