//! What one consumer counts: deliveries taken and acknowledged, their
//! latency, and the dead letters (shared by every queue's counters).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lapin::message::Delivery;
use mmt_shared::console::{DeadLetterRow, RECENT_CAPACITY, ReasonCount, reason_kind};
use mmt_shared::time_fmt::{UnixMillis, now_millis, rfc3339};
use mmt_shared::wire::ErrorCode;

use super::latency::Latencies;

/// What one consumer counts.
#[derive(Debug, Default)]
pub struct QueueCounters {
    received: AtomicU64,
    acked: AtomicU64,
    dead: Arc<DeadLog>,
    latencies: Latencies,
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

    /// `n` deliveries taken at `received_at` were acknowledged.
    pub fn acked(&self, n: usize, received_at: UnixMillis) {
        self.acked.fetch_add(n as u64, Ordering::Relaxed);
        let took = u64::try_from(now_millis().saturating_sub(received_at)).unwrap_or(0);
        self.latencies.record(took, n);
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
