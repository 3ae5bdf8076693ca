//! Processing latencies of a queue's deliveries, from the moment a batch is
//! taken to its acknowledgement, as p50/p99 over each interval of reading.

use std::sync::Mutex;

/// The most (latency, count) samples kept between two readings; beyond that
/// a reading covers the first ones only (a batch is one sample however many
/// deliveries it holds, so this is thousands of batches a second).
const MAX_SAMPLES: usize = 4096;

/// Processing latencies of one queue since the last reading.
#[derive(Debug, Default)]
pub struct Latencies(Mutex<Vec<(u64, u64)>>);

impl Latencies {
    /// `n` deliveries took `ms` milliseconds from taken to acknowledged.
    pub fn record(&self, ms: u64, n: usize) {
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < MAX_SAMPLES && n > 0 {
            samples.push((ms, n as u64));
        }
    }

    /// p50 and p99 in milliseconds of what was recorded since the last call,
    /// which starts the next interval; `None` when nothing was.
    pub fn take(&self) -> (Option<f64>, Option<f64>) {
        let mut samples = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        (
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99),
        )
    }
}

/// The `q` quantile of weighted samples (value, weight).
pub fn percentile(samples: &mut [(u64, u64)], q: f64) -> Option<f64> {
    samples.sort_unstable();
    let total: u64 = samples.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    samples.iter().find_map(|(value, n)| {
        seen += n;
        (seen >= rank).then_some(*value as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_weigh_each_batch_by_its_deliveries() {
        let latencies = Latencies::default();
        latencies.record(2, 98);
        latencies.record(50, 1);
        latencies.record(900, 1);
        assert_eq!(latencies.take(), (Some(2.0), Some(50.0)));
        assert_eq!(latencies.take(), (None, None), "a reading starts anew");
    }
}
