//! The worker's counters for the console: deliveries per queue, rejections
//! by code, dead letters, and the rings of recent rejections and lifecycle
//! events; published as `worker.stats` every second.
//!
//! The counters are fed from two places only: the consumers count what they
//! take and acknowledge, and [`Events`] hands every event it publishes to
//! [`Stats::observe`]. An event never holds a secret, so neither does
//! anything kept here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use mmt_shared::config::Namespace;
use mmt_shared::console::{
    CodeCount, CountRow, QueueStats, RECENT_CAPACITY, RefreshStats, WorkerStats,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{now_millis, rfc3339};
use mmt_shared::wire::{ErrorCode, MessageKind};
use tokio_util::sync::CancellationToken;

use crate::events::Events;
use crate::refresh::Refresher;
use crate::service::Service;
use crate::store::StoreError;

/// How often `worker.stats` goes out.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What one consumer counts.
#[derive(Debug, Default)]
pub struct QueueCounters {
    received: AtomicU64,
    acked: AtomicU64,
}

impl QueueCounters {
    /// `n` deliveries were taken from the queue.
    pub fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` deliveries were acknowledged.
    pub fn acked(&self, n: usize) {
        self.acked.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The latest events of one kind, oldest first, at most
/// [`RECENT_CAPACITY`].
#[derive(Debug, Default)]
struct Ring(VecDeque<Event>);

impl Ring {
    fn push(&mut self, event: &Event) {
        if self.0.len() == RECENT_CAPACITY {
            self.0.pop_front();
        }
        self.0.push_back(event.clone());
    }

    fn latest(&self, n: usize) -> Vec<Event> {
        self.0
            .iter()
            .skip(self.0.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Everything the console learns about the worker besides the store.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    queues: Vec<(String, Arc<QueueCounters>)>,
    rejections: Mutex<BTreeMap<ErrorCode, u64>>,
    dead_lettered: AtomicU64,
    recent_rejections: Mutex<Ring>,
    recent_lifecycle: Mutex<Ring>,
    last: Mutex<WorkerStats>,
}

impl Stats {
    /// Counters for the inbound queues of `namespace`.
    pub fn new(namespace: &Namespace) -> Self {
        Self {
            started: Instant::now(),
            queues: MessageKind::ALL
                .iter()
                .map(|kind| (namespace.queue(*kind), Arc::default()))
                .collect(),
            rejections: Mutex::default(),
            dead_lettered: AtomicU64::default(),
            recent_rejections: Mutex::default(),
            recent_lifecycle: Mutex::default(),
            last: Mutex::default(),
        }
    }

    /// The counters of one inbound queue (by its full name).
    pub fn counters(&self, queue: &str) -> Arc<QueueCounters> {
        self.queues
            .iter()
            .find(|(name, _)| name == queue)
            .map(|(_, counters)| counters.clone())
            .unwrap_or_default()
    }

    /// Counts an event the worker publishes and keeps it if it is a
    /// rejection or a lifecycle event.
    pub fn observe(&self, event: &Event) {
        match event.kind {
            EventKind::RequestRejected => {
                if let Some(code) = event.code {
                    *locked(&self.rejections).entry(code).or_default() += 1;
                }
                locked(&self.recent_rejections).push(event);
            }
            EventKind::MessageDeadLettered => {
                self.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            EventKind::TokenIssued
            | EventKind::TokenRotated
            | EventKind::TokenRefreshed
            | EventKind::TokenExpired
            | EventKind::TokenRevoked
            | EventKind::TokenRefreshFailed
            | EventKind::TokenRevokedUpstream => locked(&self.recent_lifecycle).push(event),
            EventKind::WorkerStats
            | EventKind::IntegrationUnhealthy
            | EventKind::IntegrationHealthy => {}
        }
    }

    /// The latest `n` rejections and lifecycle events, oldest first.
    pub fn recent(&self, n: usize) -> (Vec<Event>, Vec<Event>) {
        (
            locked(&self.recent_rejections).latest(n),
            locked(&self.recent_lifecycle).latest(n),
        )
    }

    /// The counters as they are now, with the rates, depths and store
    /// figures of the last publication.
    pub fn current(&self) -> WorkerStats {
        let last = locked(&self.last).clone();
        let mut now = self.read(&[], STATS_INTERVAL, &[]);
        for (queue, published) in now.queues.iter_mut().zip(&last.queues) {
            queue.rate = published.rate;
            queue.depth = published.depth;
        }
        now.dead_depth = last.dead_depth;
        now.store_bytes = last.store_bytes;
        now.refresh = last.refresh;
        now
    }

    fn totals(&self) -> Vec<u64> {
        self.queues
            .iter()
            .map(|(_, c)| c.received.load(Ordering::Relaxed))
            .collect()
    }

    /// Reads every counter into a `worker.stats` body. `previous` holds the
    /// received totals of the last reading, `elapsed` the time since.
    fn read(&self, previous: &[u64], elapsed: Duration, depths: &[Option<u64>]) -> WorkerStats {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, (queue, counters))| {
                let received = counters.received.load(Ordering::Relaxed);
                let before = previous.get(i).copied().unwrap_or(received);
                QueueStats {
                    queue: queue.clone(),
                    received,
                    acked: counters.acked.load(Ordering::Relaxed),
                    rate: received.saturating_sub(before) as f64 / seconds,
                    depth: depths.get(i).copied().flatten(),
                }
            })
            .collect();
        WorkerStats {
            at: rfc3339(now_millis()),
            uptime_seconds: self.started.elapsed().as_secs(),
            queues,
            rejections: locked(&self.rejections)
                .iter()
                .map(|(code, count)| CodeCount {
                    code: *code,
                    count: *count,
                })
                .collect(),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            dead_depth: depths.get(self.queues.len()).copied().flatten(),
            store_bytes: 0,
            refresh: RefreshStats::default(),
        }
    }
}

/// The token counts of the store, as the console shows them.
pub fn count_rows(service: &Service) -> Result<Vec<CountRow>, StoreError> {
    Ok(service
        .store()
        .counts()?
        .into_iter()
        .map(|(key, count)| CountRow {
            state: key.state,
            scope: key.scope,
            broker_type: key.broker_type,
            count,
        })
        .collect())
}

async fn depth(channel: &Channel, queue: &str) -> Option<u64> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(queue) => Some(u64::from(queue.message_count())),
        Err(error) => {
            tracing::debug!(%error, queue, "queue depth unavailable");
            None
        }
    }
}

/// Publishes `worker.stats` every [`STATS_INTERVAL`] until `shutdown`.
/// `channel` is used for passive declarations that read queue depths.
///
/// Nothing here reads the store's records: a sled read waits behind a write
/// that the disk cannot take, and a stats tick stuck there could not be
/// stopped. Token counts are read on request instead (the console's
/// snapshot). The store's size is file metadata, which takes no lock.
pub async fn publish(
    stats: Arc<Stats>,
    service: Arc<Service>,
    refresher: Arc<Refresher>,
    events: Events,
    channel: Channel,
    namespace: Namespace,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(STATS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = stats.totals();
    let mut since = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let mut depths = Vec::with_capacity(stats.queues.len() + 1);
        for (queue, _) in &stats.queues {
            depths.push(depth(&channel, queue).await);
        }
        depths.push(depth(&channel, &namespace.dead_queue()).await);
        let mut body = stats.read(&previous, since.elapsed(), &depths);
        previous = stats.totals();
        since = Instant::now();
        body.store_bytes = service.store().size_on_disk().unwrap_or_default();
        body.refresh = refresher.health();
        *locked(&stats.last) = body.clone();
        events.emit_stats(&body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new("t").expect("valid")
    }

    #[test]
    fn rejections_are_counted_by_code_and_kept_in_a_bounded_ring() {
        let stats = Stats::new(&ns());
        for i in 0..(RECENT_CAPACITY + 5) {
            let mut event = Event::new(EventKind::RequestRejected, format!("t{i}"));
            event.code = Some(if i % 2 == 0 {
                ErrorCode::ScopeMismatch
            } else {
                ErrorCode::NotFound
            });
            stats.observe(&event);
        }
        stats.observe(&Event::new(EventKind::TokenRevoked, "r".into()));
        stats.observe(&Event::new(EventKind::MessageDeadLettered, "d".into()));
        let (rejections, lifecycle) = stats.recent(usize::MAX);
        assert_eq!(rejections.len(), RECENT_CAPACITY);
        assert_eq!(rejections.last().map(|e| e.at.as_str()), Some("t204"));
        assert_eq!(lifecycle.len(), 1);
        let body = stats.read(&[], Duration::from_secs(1), &[]);
        assert_eq!(
            body.rejections,
            vec![
                CodeCount {
                    code: ErrorCode::ScopeMismatch,
                    count: 103
                },
                CodeCount {
                    code: ErrorCode::NotFound,
                    count: 102
                },
            ]
        );
        assert_eq!(body.dead_lettered, 1);
    }

    #[test]
    fn rates_are_deliveries_per_second_since_the_last_reading() {
        let stats = Stats::new(&ns());
        let resolve = stats.counters("t.token.resolve");
        let before = stats.totals();
        resolve.received(30);
        resolve.acked(30);
        let body = stats.read(&before, Duration::from_secs(2), &[Some(4)]);
        let queue = body
            .queues
            .iter()
            .find(|q| q.queue == "t.token.resolve")
            .expect("listed");
        assert_eq!((queue.received, queue.acked, queue.rate), (30, 30, 15.0));
        assert_eq!(body.queues[0].depth, Some(4));
    }
}
