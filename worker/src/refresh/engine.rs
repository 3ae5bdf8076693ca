//! The refresh scheduler: one loop per broker session that wakes on a tick
//! or when a request ends, runs the expiry pass and leases due tokens (store
//! work on blocking threads), and requests that outlive a session.
//!
//! Bounds: at most `refresh_concurrency` requests in flight (a semaphore)
//! and one per token (the `in_flight` set here, the durable lease across a
//! crash). Order per request: lease flushed, request sent, answer sealed and
//! flushed, then events; see docs/protocol.md "Refresh".
//!
//! Leases are taken ahead of free request slots ([`LEASE_AHEAD`] per slot)
//! and queued: a request that ends starts the next queued one at once, so
//! the request rate is not bound by how fast passes (and their flushes)
//! follow each other.
//!
//! Upstream revocation jobs share the request slots. A due job never waits
//! behind a backlog of refreshes: when no slot is free, one job is leased
//! anyway and waits for a slot, and every request slot that ends a refresh
//! while a job waits is handed to it instead of to the next queued lease.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mmt_shared::console::RefreshStats;
use mmt_shared::events::Event;
use mmt_shared::time_fmt::{UnixMillis, now_millis};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::amqp::consumer::ConsumerError;
use crate::amqp::events::Events;
use crate::refresh::health::Health;
use crate::refresh::oauth::{ClientError, OAuthClient};
use crate::refresh::pass::{self, Leased, PassOutcome};
use crate::refresh::upstream::{self, JobLease};
use crate::rules::refresh::{self as rules, Failure};
use crate::service::Service;
use crate::store::StoreError;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-flight mark of an upstream revocation job.
fn job_key(token_id: &str) -> String {
    format!("upstream:{token_id}")
}

/// "Due soon" in the stats: within this window.
const DUE_SOON_WINDOW_MS: UnixMillis = 60_000;
/// How often "due soon" is counted.
const DUE_SOON_EVERY: Duration = Duration::from_secs(1);
/// The most "due soon" counts (the index is read that far).
const DUE_SOON_CAP: usize = 100_000;
/// The most failing tokens a start reads back from the store.
const FAILING_CAP: usize = 100_000;
/// Leases queued ahead, per request slot.
const LEASE_AHEAD: usize = 4;

/// The refresh engine of one worker.
pub struct Refresher {
    service: Arc<Service>,
    client: OAuthClient,
    permits: Arc<Semaphore>,
    capacity: Mutex<usize>,
    in_flight: Mutex<HashSet<String>>,
    ready: Mutex<VecDeque<Leased>>,
    jobs_waiting: AtomicUsize,
    stopping: AtomicBool,
    restored: AtomicBool,
    wake: Notify,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    health: Health,
    settled: Mutex<Vec<Vec<Event>>>,
    due_counted: Mutex<Option<Instant>>,
}

impl Refresher {
    /// An engine over `service`, with its integrations' concurrency.
    pub fn new(service: Arc<Service>) -> Result<Arc<Self>, ClientError> {
        let capacity = service.integrations().concurrency;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            service,
            client: OAuthClient::new()?,
            permits: Arc::new(Semaphore::new(capacity)),
            capacity: Mutex::new(capacity),
            in_flight: Mutex::default(),
            ready: Mutex::default(),
            jobs_waiting: AtomicUsize::default(),
            stopping: AtomicBool::default(),
            restored: AtomicBool::default(),
            wake: Notify::new(),
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            health: Health::default(),
            settled: Mutex::default(),
            due_counted: Mutex::default(),
        }))
    }

    /// Applies a new `refresh_concurrency` (after a reload): requests in
    /// flight finish; new ones respect the new bound.
    pub fn resize(&self, concurrency: usize) {
        let mut capacity = locked(&self.capacity);
        if concurrency > *capacity {
            self.permits.add_permits(concurrency - *capacity);
        } else {
            let gone = self.permits.forget_permits(*capacity - concurrency);
            // Permits held by requests now are forgotten as they come back.
            let owed = *capacity - concurrency - gone;
            if owed > 0 {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(owed as u32).await {
                        p.forget();
                    }
                });
            }
        }
        *capacity = concurrency;
        self.wake.notify_one();
    }

    /// Refresh health now (no store read: `due_soon` is counted by the
    /// scheduler at most once a second).
    pub fn health(&self) -> RefreshStats {
        // Queued leases and jobs waiting for a slot are marked in flight
        // too, but not sent yet.
        let in_flight = locked(&self.in_flight)
            .len()
            .saturating_sub(locked(&self.ready).len())
            .saturating_sub(self.jobs_waiting.load(Ordering::Relaxed));
        self.health.stats(*locked(&self.capacity), in_flight)
    }

    /// Gives back the queued leases and waits (at most `patience`) for the
    /// requests in flight to end, so that a clean stop leaves no lease
    /// behind. No request starts after this is called.
    pub async fn drain(&self, patience: Duration) {
        let started = Instant::now();
        self.stopping.store(true, Ordering::SeqCst);
        let queued: Vec<Leased> = locked(&self.ready).drain(..).collect();
        if !queued.is_empty() {
            {
                let mut in_flight = locked(&self.in_flight);
                for lease in &queued {
                    in_flight.remove(&lease.token_id);
                }
            }
            let now = now_millis();
            if let Err(error) = self.blocking(move |s| pass::unlease(s, &queued, now)).await {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "queued leases could not be given back; they run out instead"
                );
            }
        }
        while !locked(&self.in_flight).is_empty() && started.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The scheduler loop of one session, until `stop`: publishes the
    /// engine's events on `events`, looks at the due index every `every` and
    /// whenever a request ends. A store I/O error ends it (the worker stops).
    pub async fn run(
        self: Arc<Self>,
        events: Events,
        every: Duration,
        stop: CancellationToken,
    ) -> Result<(), ConsumerError> {
        let mut rx = self.events_rx.lock().await;
        if !self.restored.swap(true, Ordering::SeqCst) {
            self.restore().await.map_err(ConsumerError::Store)?;
        }
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(()),
                Some(event) = rx.recv() => {
                    events.emit(&event).await;
                    continue;
                }
                _ = ticks.tick() => {}
                () = self.wake.notified() => {}
            }
            self.tick(&events).await.map_err(ConsumerError::Store)?;
        }
    }

    /// Reads back from the store which tokens were failing and their last
    /// error codes (once, before the first pass), so that the health a
    /// restart shows is the one it stopped with.
    async fn restore(&self) -> Result<(), StoreError> {
        if let Some(found) = self.blocking(|s| pass::failing(s, FAILING_CAP)).await? {
            self.health.restore(found);
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Service) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let service = self.service.clone();
        match tokio::task::spawn_blocking(move || work(&service)).await {
            Ok(result) => result.map(Some),
            Err(error) => {
                tracing::error!(%error, "a refresh pass panicked; trying again at the next tick");
                Ok(None)
            }
        }
    }

    async fn settle(&self, outcome: PassOutcome, events: &Events) -> Result<(), StoreError> {
        self.health.skipped(outcome.skipped);
        if outcome.changed {
            self.service.store().flush().await?;
        }
        for event in &outcome.events {
            events.emit(event).await;
        }
        Ok(())
    }

    async fn tick(self: &Arc<Self>, events: &Events) -> Result<(), StoreError> {
        // Answers applied since the last tick: one flush makes them all
        // durable before their events go out (and before a lease of the
        // same tokens, whose own flush comes later still).
        let settled: Vec<Event> = std::mem::take(&mut *locked(&self.settled))
            .into_iter()
            .flatten()
            .collect();
        if !settled.is_empty() {
            self.settle(
                PassOutcome {
                    events: settled,
                    skipped: 0,
                    changed: true,
                },
                events,
            )
            .await?;
        }
        let now = now_millis();
        if let Some(outcome) = self.blocking(move |s| pass::expiry_pass(s, now)).await? {
            self.settle(outcome, events).await?;
        }
        self.count_due_soon(now).await?;
        self.revoke_upstream(now, events).await?;
        let room = (self.permits.available_permits() + *locked(&self.capacity) * LEASE_AHEAD)
            .saturating_sub(locked(&self.ready).len());
        if room > 0 {
            let busy = locked(&self.in_flight).clone();
            if let Some((leased, outcome)) = self
                .blocking(move |s| pass::lease_pass(s, now, room, &|id| busy.contains(id)))
                .await?
            {
                {
                    let mut in_flight = locked(&self.in_flight);
                    for lease in &leased {
                        in_flight.insert(lease.token_id.clone());
                    }
                }
                // The leases are durable before any request goes out.
                self.settle(outcome, events).await?;
                locked(&self.ready).extend(leased);
            }
        }
        self.dispatch();
        Ok(())
    }

    /// Starts a request for queued leases while request slots are free.
    fn dispatch(self: &Arc<Self>) {
        while let Ok(permit) = self.permits.clone().try_acquire_owned() {
            let Some(next) = self.next_ready() else {
                return;
            };
            tokio::spawn(self.clone().request(next, permit));
        }
    }

    /// The next queued lease whose request may still go out; the others are
    /// let run out (the token is leased again then).
    fn next_ready(&self) -> Option<Leased> {
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let now = now_millis();
        loop {
            let next = locked(&self.ready).pop_front()?;
            let timeout = self
                .service
                .integrations()
                .get(&next.broker_type)
                .map_or(Duration::ZERO, |i| i.timeout);
            if now <= rules::send_by(&next.lease, timeout) {
                return Some(next);
            }
            tracing::debug!(
                token_id = next.token_id,
                "a queued lease waited too long; it runs out and is taken again"
            );
            locked(&self.in_flight).remove(&next.token_id);
        }
    }

    /// Leases due upstream revocation jobs: as many as request slots are
    /// free, or one that waits for a slot when none is (unless one waits
    /// already).
    async fn revoke_upstream(
        self: &Arc<Self>,
        now: UnixMillis,
        events: &Events,
    ) -> Result<(), StoreError> {
        let limit = match self.permits.available_permits() {
            0 if self.jobs_waiting.load(Ordering::SeqCst) > 0 => return Ok(()),
            0 => 1,
            free => free,
        };
        let busy = locked(&self.in_flight).clone();
        let Some((jobs, ended, skipped)) = self
            .blocking(move |s| {
                upstream::lease_jobs(s, now, limit, &|id| busy.contains(&job_key(id)))
            })
            .await?
        else {
            return Ok(());
        };
        let outcome = PassOutcome {
            changed: !jobs.is_empty() || !ended.is_empty() || skipped > 0,
            events: ended,
            skipped,
        };
        self.settle(outcome, events).await?;
        for job in jobs {
            locked(&self.in_flight).insert(job_key(&job.token_id));
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(self.clone().revoke(job, permit));
                }
                Err(_) => {
                    self.jobs_waiting.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(self.clone().revoke_when_free(job));
                }
            }
        }
        Ok(())
    }

    /// Waits for a request slot (one that ends a refresh comes here), then
    /// revokes; at a stop the job is left to its lease.
    async fn revoke_when_free(self: Arc<Self>, job: JobLease) {
        let permit = self.permits.clone().acquire_owned().await;
        self.jobs_waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(permit) if !self.stopping.load(Ordering::SeqCst) => self.revoke(job, permit).await,
            _ => {
                locked(&self.in_flight).remove(&job_key(&job.token_id));
            }
        }
    }

    async fn revoke(self: Arc<Self>, job: JobLease, permit: OwnedSemaphorePermit) {
        let integration = self
            .service
            .integrations()
            .get(&job.job.broker_type)
            .cloned();
        let result = match &integration {
            Some(integration) => upstream::attempt(&self.client, integration, &job.secrets).await,
            None => Err(Failure::Refused(0)),
        };
        if let Err(failure) = &result {
            tracing::warn!(
                token_id = job.token_id,
                broker_type = job.job.broker_type,
                code = failure.code(),
                "upstream revocation failed"
            );
        }
        let key = job_key(&job.token_id);
        let now = now_millis();
        let finished = self
            .blocking(move |s| upstream::finish(s, &job, &result, now))
            .await;
        self.deliver(finished, &key).await;
        drop(permit);
        self.wake.notify_one();
    }

    /// Flushes what an answer wrote, then queues its events; the in-flight
    /// mark `key` goes either way.
    async fn deliver(&self, stored: Result<Option<Vec<Event>>, StoreError>, key: &str) {
        match stored {
            Ok(Some(events)) => locked(&self.settled).push(events),
            Ok(None) => {}
            Err(error) => tracing::error!(
                key,
                error = &error as &dyn std::error::Error,
                "an answer could not be stored; the lease runs out and it is tried again"
            ),
        }
        locked(&self.in_flight).remove(key);
    }

    /// Counts the tokens due within a minute, at most once a second.
    async fn count_due_soon(&self, now: UnixMillis) -> Result<(), StoreError> {
        {
            let mut counted = locked(&self.due_counted);
            if counted.is_some_and(|at| at.elapsed() < DUE_SOON_EVERY) {
                return Ok(());
            }
            *counted = Some(Instant::now());
        }
        let until = now.saturating_add(DUE_SOON_WINDOW_MS);
        if let Some(n) = self
            .blocking(move |s| s.store().due_count(until, DUE_SOON_CAP))
            .await?
        {
            self.health.set_due_soon(n as u64);
        }
        Ok(())
    }

    /// Runs `first`, then the queued leases while there are any, in one
    /// request slot; the slot goes to a revocation job that waits for one.
    async fn request(self: Arc<Self>, first: Leased, permit: OwnedSemaphorePermit) {
        let mut next = Some(first);
        while let Some(leased) = next {
            self.refresh(leased).await;
            self.wake.notify_one();
            if self.jobs_waiting.load(Ordering::SeqCst) > 0 {
                break;
            }
            next = self.next_ready();
        }
        drop(permit);
    }

    async fn refresh(&self, leased: Leased) {
        let integration = self
            .service
            .integrations()
            .get(&leased.broker_type)
            .cloned();
        let answer = match &integration {
            Some(integration) => {
                self.client
                    .refresh(integration, &leased.refresh_token)
                    .await
            }
            None => Err(Failure::Transient {
                code: "not_configured".into(),
                retry_after: None,
            }),
        };
        if let Some(event) = self.health.observe(&leased, &answer) {
            let _ = self.events_tx.send(event);
        }
        let token_id = leased.token_id.clone();
        let now = now_millis();
        let applied = self
            .blocking(move |s| pass::apply(s, &leased, &answer, now))
            .await;
        self.deliver(applied, &token_id).await;
    }
}
