//! What one consumer counts: deliveries taken and acknowledged, what became
//! of each, their latency (percentiles per interval for `worker.stats`, a
//! cumulative histogram for `/metrics`), and the dead letters (shared by
//! every queue's counters).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lapin::message::Delivery;
use mmt_shared::console::{DeadLetterRow, RECENT_CAPACITY, ReasonCount, reason_kind};
use mmt_shared::time_fmt::{UnixMillis, now_millis, rfc3339};
use mmt_shared::wire::ErrorCode;

use super::histogram::{Histogram, REQUEST_BUCKETS, Reading};
use super::latency::Latencies;

/// What became of one delivery, as `/metrics` labels it (`outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its change was applied (or its read answered).
    Applied,
    /// A repeated message id: the stored reply was sent again.
    Replayed,
    /// Answered with an error code, not dead-lettered.
    Rejected,
    /// Sent to `NS.dead` (bad input, refused state change, or failing on
    /// every delivery).
    DeadLettered,
    /// Processing failed; handed back to the broker for another delivery.
    Requeued,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Applied,
        Outcome::Replayed,
        Outcome::Rejected,
        Outcome::DeadLettered,
        Outcome::Requeued,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Replayed => "replayed",
            Outcome::Rejected => "rejected",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Requeued => "requeued",
        }
    }
}

/// What one consumer counts.
#[derive(Debug)]
pub struct QueueCounters {
    received: AtomicU64,
    acked: AtomicU64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    dead: Arc<DeadLog>,
    latencies: Latencies,
    durations: Histogram,
}

impl Default for QueueCounters {
    fn default() -> Self {
        Self {
            received: AtomicU64::default(),
            acked: AtomicU64::default(),
            outcomes: Default::default(),
            dead: Arc::default(),
            latencies: Latencies::default(),
            durations: Histogram::new(REQUEST_BUCKETS),
        }
    }
}

/// The worker's own record of what it dead-lettered: the latest
/// [`RECENT_CAPACITY`] (never a body) and the counts by reason; one for
/// every queue's counters.
#[derive(Debug, Default)]
pub struct DeadLog {
    recent: Mutex<VecDeque<DeadLetterRow>>,
    by_reason: Mutex<BTreeMap<String, u64>>,
}

impl QueueCounters {
    /// Counters that record their dead letters in `dead`.
    pub fn sharing(dead: Arc<DeadLog>) -> Self {
        Self {
            dead,
            ..Self::default()
        }
    }

    /// Deliveries taken so far.
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Deliveries acknowledged so far.
    pub fn acked_total(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Deliveries by outcome so far, in [`Outcome::ALL`] order.
    pub fn outcomes(&self) -> [(Outcome, u64); Outcome::ALL.len()] {
        Outcome::ALL.map(|o| (o, self.outcomes[o as usize].load(Ordering::Relaxed)))
    }

    /// Delivery-to-reply durations since start.
    pub fn durations(&self) -> Reading {
        self.durations.read()
    }

    /// p50 and p99 in milliseconds since the last call (see
    /// [`Latencies::take`]).
    pub fn take_latencies(&self) -> (Option<f64>, Option<f64>) {
        self.latencies.take()
    }

    /// The broker confirmed the dead letter of `delivery` from `queue`.
    pub fn dead_lettered(
        &self,
        queue: &str,
        delivery: &Delivery,
        reason: &str,
        code: Option<ErrorCode>,
        client_id: Option<&str>,
        at: UnixMillis,
    ) {
        let row = DeadLetterRow {
            at: rfc3339(at),
            queue: queue.to_owned(),
            reason: reason.to_owned(),
            code,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string()),
            size: delivery.data.len() as u64,
            broker_user: delivery
                .properties
                .user_id()
                .as_ref()
                .map(|u| u.to_string()),
            client_id: client_id.map(str::to_owned),
        };
        *locked(&self.dead.by_reason)
            .entry(reason_kind(reason).to_owned())
            .or_default() += 1;
        let mut recent = locked(&self.dead.recent);
        if recent.len() == RECENT_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(row);
    }

    /// `n` deliveries were taken from the queue.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One delivery came to `outcome`.
    pub fn ended(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` deliveries taken at `received_at` were acknowledged, `answered`
    /// after they were taken (their replies sent).
    pub fn acked(&self, n: usize, received_at: UnixMillis, answered: Duration) {
        self.acked.fetch_add(n as u64, Ordering::Relaxed);
        let took = u64::try_from(now_millis().saturating_sub(received_at)).unwrap_or(0);
        self.latencies.record(took, n);
        self.durations.observe(answered, n as u64);
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl DeadLog {
    /// The latest `n` dead letters, oldest first.
    pub fn recent(&self, n: usize) -> Vec<DeadLetterRow> {
        let recent = locked(&self.recent);
        recent
            .iter()
            .skip(recent.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Dead letters by kind of reason, most first.
    pub fn by_reason(&self) -> Vec<ReasonCount> {
        let mut counts: Vec<ReasonCount> = locked(&self.by_reason)
            .iter()
            .map(|(reason, count)| ReasonCount {
                reason: reason.clone(),
                count: *count,
            })
            .collect();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        counts
    }
}
