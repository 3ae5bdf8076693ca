//! Cumulative durations in fixed buckets (atomics, never reset), for the
//! observers that show distributions since start: `/metrics`'
//! `mmt_request_duration_seconds` and `mmt_store_flush_duration_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of a message's delivery-to-reply time.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of one store flush (an fsync of the journal).
pub const FLUSH_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Observations counted in the buckets of `bounds` (the last bucket is
/// everything above the last bound), with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the one above them all.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A histogram as read: `(upper bound, observations in that bucket alone)`,
/// the last bound being `f64::MAX` (+Inf).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Seconds, all observations together.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// Per bucket, not cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts `n` observations of `took` each.
    pub fn observe(&self, took: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let seconds = took.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(n, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// Everything counted so far.
    pub fn read(&self) -> Reading {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(&self.counts)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        Reading {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&[0.001, 0.01]);
        histogram.observe(Duration::from_micros(500), 3);
        histogram.observe(Duration::from_millis(1), 1);
        histogram.observe(Duration::from_millis(5), 2);
        histogram.observe(Duration::from_secs(2), 1);
        histogram.observe(Duration::from_secs(9), 0);
        let reading = histogram.read();
        assert_eq!(reading.buckets, vec![(0.001, 4), (0.01, 2), (f64::MAX, 1)]);
        assert_eq!(reading.count, 7);
        assert!((reading.sum - 2.0125).abs() < 1e-9, "{}", reading.sum);
    }
}
