//! Exponential backoff with jitter: the one retry schedule of the worker's
//! reconnects, the console's feed and the refresh engine's retries.

use std::time::Duration;

/// Exponential backoff: attempt `n` waits a random time in `[cap/2, cap)`
/// where `cap = min(initial * 2^n, max)` ("equal jitter": never zero, so
/// retries cannot spin, and spread so that many clients never retry at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the first wait.
    pub initial: Duration,
    /// The largest cap.
    pub max: Duration,
}

impl Backoff {
    /// A schedule from `initial` doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The cap of attempt `attempt` (0-based), before jitter.
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before attempt `attempt` (0-based), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }

    /// The wait before attempt `attempt` for a given `unit` random number in
    /// `[0, 1)`: `cap * (0.5 + unit / 2)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        self.cap(attempt).mul_f64(0.5 + unit.clamp(0.0, 1.0) * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_jitters_within_its_upper_half() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.cap(0), Duration::from_millis(100));
        assert_eq!(b.cap(3), Duration::from_millis(800));
        assert_eq!(b.cap(6), Duration::from_secs(5));
        assert_eq!(b.cap(u32::MAX), Duration::from_secs(5));
        assert_eq!(b.delay_with(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay_with(1, 1.0), Duration::from_millis(200));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d >= b.cap(attempt) / 2 && d <= b.cap(attempt), "{d:?}");
        }
    }
}
