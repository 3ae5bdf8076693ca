//! The workers behind the `worker.stats` reports. Several workers of a
//! shared store each report their own counters every second; the console
//! shows the fleet: the newest report of every worker that reported within
//! [`ALIVE_WITHIN_MS`], told apart by the id each names, merged into one.
//!
//! What is added up and what is not:
//! - A worker's own work adds up: per queue the deliveries taken and
//!   acknowledged, the rate and the unacknowledged; refusals by code and by
//!   client; dead letters; CPU and memory; refreshes in flight, done and
//!   failed, and the refresh concurrency.
//! - What describes the broker or the store is the newest report's, never
//!   a sum (every worker sees the same): queue depths and consumers, the
//!   dead-letter depth, the store's size and engine, the tokens due soon
//!   or pending, the failing integrations, the purge and the key ring
//!   (which merges its own way, `keys.rs`).
//! - Latency is the worst worker's: p50 and p99 are the largest reported.
//! - Uptime is the longest: how long the fleet has been serving.
//!
//! A second's samples (the sparklines) are taken once a second, at the
//! report of the *leader*, the alive worker with the smallest id, from
//! the merged report; the refusals of that second are every worker's own
//! new refusals since its last report. One worker, or workers that name
//! no id (older ones, all taken as one), is exactly what it reports.

use std::collections::BTreeMap;

use mmt_shared::console::{ClientCount, CodeCount, WorkerStats};
use mmt_shared::time_fmt::UnixMillis;

use super::ALIVE_WITHIN_MS;

/// A worker whose first `worker.stats` comes within this many seconds of
/// its start has all its refusals counted in the sparkline's second (one
/// first seen later: when its refusals happened is not known).
const FIRST_SECONDS: u64 = 2;

/// How many clients the merged refusals by client keep, as a worker does.
const TOP_CLIENTS: usize = 10;

/// One worker as last heard.
#[derive(Clone, Debug)]
struct Heard {
    /// When (console clock).
    at: UnixMillis,
    /// Its report.
    stats: WorkerStats,
}

/// The workers heard lately, by id (`""` for those that name none).
#[derive(Clone, Debug, Default)]
pub(super) struct Fleet {
    workers: BTreeMap<String, Heard>,
    /// Refusals the workers counted since the last sample.
    refused_since_sample: u64,
}

/// A report taken in: the fleet's merged report, and the second's sample
/// when this report was the leader's.
#[derive(Clone, Debug)]
pub(super) struct Observed {
    /// Every alive worker's newest report, merged.
    pub merged: WorkerStats,
    /// How many workers that is.
    pub workers: usize,
    /// When the report was the leader's: the refusals of the second.
    pub sample: Option<u64>,
}

impl Fleet {
    /// Takes `report`, received at `now`.
    pub(super) fn observe(&mut self, report: WorkerStats, now: UnixMillis) -> Observed {
        let id = report.worker.clone().unwrap_or_default();
        self.refused_since_sample += self.new_refusals(&id, &report);
        self.workers
            .retain(|_, heard| now.saturating_sub(heard.at) < ALIVE_WITHIN_MS);
        self.workers.insert(
            id.clone(),
            Heard {
                at: now,
                stats: report,
            },
        );
        let leader = self.workers.keys().next() == Some(&id);
        let sample = leader.then(|| std::mem::take(&mut self.refused_since_sample));
        Observed {
            merged: self.merged(&id),
            workers: self.workers.len(),
            sample,
        }
    }

    /// The refusals worker `id` counted since its last report.
    fn new_refusals(&self, id: &str, report: &WorkerStats) -> u64 {
        let total: u64 = report.rejections.iter().map(|c| c.count).sum();
        let before = self.workers.get(id).map(|heard| &heard.stats);
        let last = before.map(|b| b.rejections.iter().map(|c| c.count).sum::<u64>());
        match (before, last) {
            (Some(before), Some(last))
                if report.uptime_seconds >= before.uptime_seconds && total >= last =>
            {
                total - last
            }
            // A worker first seen (or started again) in its first seconds:
            // everything it counted is new.
            _ if report.uptime_seconds <= FIRST_SECONDS => total,
            _ => 0,
        }
    }

    /// The newest report (of `newest`), with every alive worker's own
    /// counters added up.
    fn merged(&self, newest: &str) -> WorkerStats {
        let Some(mut merged) = self.workers.get(newest).map(|h| h.stats.clone()) else {
            return WorkerStats::default();
        };
        if self.workers.len() < 2 {
            return merged;
        }
        let all: Vec<&WorkerStats> = self.workers.values().map(|h| &h.stats).collect();
        for queue in &mut merged.queues {
            let same: Vec<_> = all
                .iter()
                .filter_map(|w| w.queues.iter().find(|q| q.queue == queue.queue))
                .collect();
            queue.received = same.iter().map(|q| q.received).sum();
            queue.acked = same.iter().map(|q| q.acked).sum();
            queue.unacked = same.iter().map(|q| q.unacked).sum();
            queue.rate = same.iter().map(|q| q.rate).sum();
            queue.latency_p50_ms = worst(same.iter().map(|q| q.latency_p50_ms));
            queue.latency_p99_ms = worst(same.iter().map(|q| q.latency_p99_ms));
        }
        let mut by_code = BTreeMap::new();
        let mut by_client: BTreeMap<String, u64> = BTreeMap::new();
        for w in &all {
            for c in &w.rejections {
                *by_code.entry(c.code).or_insert(0) += c.count;
            }
            for c in &w.rejections_by_client {
                *by_client.entry(c.client_id.clone()).or_insert(0) += c.count;
            }
        }
        merged.rejections = by_code
            .into_iter()
            .map(|(code, count)| CodeCount { code, count })
            .collect();
        let mut clients: Vec<ClientCount> = by_client
            .into_iter()
            .map(|(client_id, count)| ClientCount { client_id, count })
            .collect();
        clients.sort_by(|a, b| b.count.cmp(&a.count).then(a.client_id.cmp(&b.client_id)));
        clients.truncate(TOP_CLIENTS);
        merged.rejections_by_client = clients;
        merged.dead_lettered = all.iter().map(|w| w.dead_lettered).sum();
        merged.uptime_seconds = all.iter().map(|w| w.uptime_seconds).max().unwrap_or(0);
        merged.cpu_percent = sum_known(all.iter().map(|w| w.cpu_percent));
        merged.rss_bytes = sum_known(all.iter().map(|w| w.rss_bytes));
        let refresh = &mut merged.refresh;
        refresh.concurrency = all.iter().map(|w| w.refresh.concurrency).sum();
        refresh.in_flight = all.iter().map(|w| w.refresh.in_flight).sum();
        refresh.refreshed = all.iter().map(|w| w.refresh.refreshed).sum();
        refresh.failed = all.iter().map(|w| w.refresh.failed).sum();
        refresh.skipped_records = all.iter().map(|w| w.refresh.skipped_records).sum();
        merged
    }
}

/// The largest of the values reported.
fn worst(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.flatten().reduce(f64::max)
}

/// The sum of the values reported; `None` when none was.
fn sum_known<T: std::iter::Sum<T>>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
    let known: Vec<T> = values.flatten().collect();
    (!known.is_empty()).then(|| known.into_iter().sum())
}
