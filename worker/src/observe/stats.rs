//! The worker's counters for the console: deliveries per queue, rejections
//! by code, dead letters, and the rings of recent rejections and lifecycle
//! events; published as `worker.stats` every second.
//!
//! The counters are fed from two places only: the consumers count what they
//! take and acknowledge, and [`Events`] hands every event it publishes to
//! [`Stats::observe`]. An event never holds a secret, so neither does
//! anything kept here. The counts themselves are [`crate::counters`]; `/metrics`
//! ([`super::metrics`]) reads the same ones through [`Stats::queues`] and
//! [`Stats::refusals`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use mmt_shared::config::Namespace;
use mmt_shared::console::{
    ClientCount, CodeCount, CountRow, DeadLetterRow, IdentityMode, PurgeStats, QueueStats,
    RECENT_CAPACITY, ReasonCount, RefreshStats, WorkerStats,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{now_millis, rfc3339};
use mmt_shared::wire::{ErrorCode, MessageKind};
use tokio_util::sync::CancellationToken;

use crate::amqp::events::{Events, Observer};
use crate::counters::queue::{DeadLog, QueueCounters};
use crate::counters::refusals::Refusals;
use crate::observe::process::Process;
use crate::refresh::Refresher;
use crate::service::Service;
use crate::store::{PurgeStatus, StoreError};

/// How often `worker.stats` goes out.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

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
    /// This process's id in every `worker.stats`, new at every start.
    id: String,
    started: Instant,
    queues: Vec<(String, Arc<QueueCounters>)>,
    refusals: Refusals,
    rejections_by_client: Mutex<BTreeMap<String, u64>>,
    dead: Arc<DeadLog>,
    recent_rejections: Mutex<Ring>,
    recent_lifecycle: Mutex<Ring>,
    last: Mutex<WorkerStats>,
    identity: IdentityMode,
}

impl Stats {
    /// Counters for the inbound queues of `namespace`.
    pub fn new(namespace: &Namespace) -> Self {
        let dead = Arc::new(DeadLog::default());
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            started: Instant::now(),
            queues: MessageKind::ALL
                .iter()
                .map(|kind| {
                    let counters = QueueCounters::sharing(dead.clone());
                    (namespace.queue(*kind), Arc::new(counters))
                })
                .collect(),
            refusals: Refusals::default(),
            rejections_by_client: Mutex::default(),
            dead,
            recent_rejections: Mutex::default(),
            recent_lifecycle: Mutex::default(),
            last: Mutex::default(),
            identity: IdentityMode::Open,
        }
    }

    /// Says `identity` in every `worker.stats`.
    pub fn with_identity(mut self, identity: IdentityMode) -> Self {
        self.identity = identity;
        self
    }

    /// Every inbound queue's full name and counters, in
    /// [`MessageKind::ALL`] order.
    pub fn queues(&self) -> &[(String, Arc<QueueCounters>)] {
        &self.queues
    }

    /// Refusals by code and dead letters.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
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
    /// refusal or a lifecycle event. A refusal is a `request.rejected`, or a
    /// dead letter of bad input (it carries the code the sender was
    /// answered), so the console's refusals include `invalid_message` and
    /// `invalid_request`.
    pub fn observe(&self, event: &Event) {
        match event.kind {
            EventKind::RequestRejected => self.refused(event),
            EventKind::MessageDeadLettered => {
                self.refusals.dead_lettered();
                // A refused state change is also dead-lettered: its
                // `request.rejected` already counted it.
                if matches!(
                    event.code,
                    Some(ErrorCode::InvalidMessage | ErrorCode::InvalidRequest)
                ) {
                    self.refused(event);
                }
            }
            EventKind::TokenIssued
            | EventKind::TokenRotated
            | EventKind::TokenReconnected
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

    fn refused(&self, event: &Event) {
        if let Some(code) = event.code {
            self.refusals.refused(code);
        }
        if let Some(client) = &event.client_id {
            *locked(&self.rejections_by_client)
                .entry(client.clone())
                .or_default() += 1;
        }
        locked(&self.recent_rejections).push(event);
    }

    /// The latest `n` dead letters, oldest first.
    pub fn dead_letters(&self, n: usize) -> Vec<DeadLetterRow> {
        self.dead.recent(n)
    }

    /// Dead letters by kind of reason, most first.
    pub fn dead_by_reason(&self) -> Vec<ReasonCount> {
        self.dead.by_reason()
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
            queue.consumers = published.consumers;
            queue.latency_p50_ms = published.latency_p50_ms;
            queue.latency_p99_ms = published.latency_p99_ms;
        }
        now.dead_depth = last.dead_depth;
        now.store_bytes = last.store_bytes;
        now.store_engine.clone_from(&last.store_engine);
        now.cpu_percent = last.cpu_percent;
        now.rss_bytes = last.rss_bytes;
        now.refresh = last.refresh;
        now.purge = last.purge;
        now.keys = last.keys;
        now
    }

    fn totals(&self) -> Vec<u64> {
        self.queues
            .iter()
            .map(|(_, c)| c.received_total())
            .collect()
    }

    /// Reads every counter into a `worker.stats` body. `previous` holds the
    /// received totals of the last reading, `elapsed` the time since.
    fn read(&self, previous: &[u64], elapsed: Duration, depths: &[Depth]) -> WorkerStats {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, (queue, counters))| {
                let received = counters.received_total();
                let before = previous.get(i).copied().unwrap_or(received);
                let acked = counters.acked_total();
                let (depth, consumers) = depths.get(i).copied().unwrap_or_default();
                QueueStats {
                    queue: queue.clone(),
                    received,
                    acked,
                    rate: received.saturating_sub(before) as f64 / seconds,
                    depth,
                    consumers,
                    unacked: received.saturating_sub(acked),
                    latency_p50_ms: None,
                    latency_p99_ms: None,
                }
            })
            .collect();
        WorkerStats {
            at: rfc3339(now_millis()),
            worker: Some(self.id.clone()),
            uptime_seconds: self.started.elapsed().as_secs(),
            queues,
            rejections: self
                .refusals
                .by_code()
                .into_iter()
                .map(|(code, count)| CodeCount { code, count })
                .collect(),
            dead_lettered: self.refusals.dead_lettered_total(),
            dead_depth: depths.get(self.queues.len()).and_then(|d| d.0),
            store_bytes: 0,
            store_engine: None,
            rejections_by_client: top_clients(&locked(&self.rejections_by_client)),
            cpu_percent: None,
            rss_bytes: None,
            identity: self.identity,
            refresh: RefreshStats::default(),
            purge: None,
            keys: None,
        }
    }
}

/// How many clients `worker.stats` names in `rejectionsByClient`.
pub const TOP_CLIENTS: usize = 10;

fn top_clients(counts: &BTreeMap<String, u64>) -> Vec<ClientCount> {
    let mut top: Vec<ClientCount> = counts
        .iter()
        .map(|(client_id, count)| ClientCount {
            client_id: client_id.clone(),
            count: *count,
        })
        .collect();
    top.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    top.truncate(TOP_CLIENTS);
    top
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

/// A queue's ready messages and consumers, when the broker told.
type Depth = (Option<u64>, Option<u32>);

async fn depth(channel: &Channel, queue: &str) -> Depth {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(queue) => (
            Some(u64::from(queue.message_count())),
            Some(queue.consumer_count()),
        ),
        Err(error) => {
            tracing::debug!(%error, queue, "queue depth unavailable");
            (None, None)
        }
    }
}

/// Publishes `worker.stats` every [`STATS_INTERVAL`] until `shutdown`.
/// `channel` is used for passive declarations that read queue depths.
///
/// Nothing here reads the store's records: a read may wait behind a disk
/// that is failing, and a stats tick stuck there could not be stopped. Token counts are read on request instead (the console's
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
    let mut process = Process::default();
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
        for (queue, (_, counters)) in body.queues.iter_mut().zip(&stats.queues) {
            (queue.latency_p50_ms, queue.latency_p99_ms) = counters.take_latencies();
        }
        (body.cpu_percent, body.rss_bytes) = process.sample();
        body.store_bytes = service.store().size_on_disk().unwrap_or_default();
        body.store_engine = Some(service.store().engine_name().to_owned());
        body.refresh = refresher.health();
        body.purge = service.store().deletions().map(|d| purge_stats(d.status()));
        body.keys = Some(service.store().key_counters().snapshot());
        *locked(&stats.last) = body.clone();
        events.emit_stats(&body).await;
    }
}

impl Observer for Stats {
    fn observe(&self, event: &Event) {
        Stats::observe(self, event);
    }
}

/// The store's purges as `worker.stats` shows them.
pub(crate) fn purge_stats(status: PurgeStatus) -> PurgeStats {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    PurgeStats {
        pending: status.pending,
        runs: status.runs,
        failed: status.failed,
        last_ms: status.last.map(|p| millis(p.took)),
        last_lag_ms: status.last.map(|p| millis(p.lag)),
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use mmt_shared::wire::ErrorCode;

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
    fn a_refused_message_that_is_also_dead_lettered_counts_once() {
        let stats = Stats::new(&ns());
        let mut refused = Event::new(EventKind::RequestRejected, "t".into());
        refused.code = Some(ErrorCode::Forbidden);
        refused.client_id = Some("acme".into());
        stats.observe(&refused);
        let mut dead = refused.clone();
        dead.kind = EventKind::MessageDeadLettered;
        stats.observe(&dead);
        let body = stats.read(&[], Duration::from_secs(1), &[]);
        assert_eq!(
            body.rejections,
            vec![CodeCount {
                code: ErrorCode::Forbidden,
                count: 1
            }]
        );
        assert_eq!(body.rejections_by_client[0].count, 1);
        assert_eq!(stats.recent(10).0.len(), 1);
        assert_eq!(body.dead_lettered, 1);
    }

    #[test]
    fn bad_input_dead_letters_count_as_refusals_by_code_and_client() {
        let stats = Stats::new(&ns());
        let mut bad = Event::new(EventKind::MessageDeadLettered, "t".into());
        bad.code = Some(ErrorCode::InvalidMessage);
        stats.observe(&bad);
        let mut failed = Event::new(EventKind::MessageDeadLettered, "t".into());
        failed.reason = Some("processing failed on every delivery".into());
        stats.observe(&failed);
        let mut refused = Event::new(EventKind::RequestRejected, "t".into());
        refused.code = Some(ErrorCode::NotFound);
        refused.client_id = Some("acme".into());
        stats.observe(&refused);
        let body = stats.read(&[], Duration::from_secs(1), &[]);
        for code in [ErrorCode::InvalidMessage, ErrorCode::NotFound] {
            assert!(body.rejections.contains(&CodeCount { code, count: 1 }));
        }
        assert_eq!(body.rejections.len(), 2);
        assert_eq!(
            body.rejections_by_client,
            vec![ClientCount {
                client_id: "acme".into(),
                count: 1
            }]
        );
        assert_eq!(stats.recent(10).0.len(), 2);
        assert_eq!(body.dead_lettered, 2);
    }

    #[test]
    fn rates_are_deliveries_per_second_since_the_last_reading() {
        let stats = Stats::new(&ns());
        let resolve = stats.counters("t.token.resolve");
        let before = stats.totals();
        resolve.received(30);
        resolve.acked(30, now_millis(), Duration::from_millis(2));
        let body = stats.read(&before, Duration::from_secs(2), &[(Some(4), Some(1))]);
        let queue = body
            .queues
            .iter()
            .find(|q| q.queue == "t.token.resolve")
            .expect("listed");
        assert_eq!((queue.received, queue.acked, queue.rate), (30, 30, 15.0));
        assert_eq!(body.queues[0].depth, Some(4));
        assert_eq!(body.queues[0].consumers, Some(1));
        assert_eq!(queue.unacked, 0);
        assert!(resolve.take_latencies().0.is_some());
    }
}
