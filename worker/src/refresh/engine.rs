//! The refresh scheduler: one loop per broker session that wakes on a tick
//! or when a request ends, runs the expiry pass and leases due tokens (store
//! work on blocking threads), and requests that outlive a session.
//!
//! Bounds: at most `refresh_concurrency` requests in flight (a semaphore)
//! and one per token (the `in_flight` set here, the durable lease across a
//! crash). Order per request: lease flushed, request sent, answer sealed and
//! flushed, then events; see docs/protocol.md "Refresh".

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{now_millis, rfc3339};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::consumer::ConsumerError;
use crate::events::Events;
use crate::oauth::{ClientError, Failure, Grant, OAuthClient};
use crate::refresh::pass::{self, Leased, PassOutcome};
use crate::service::Service;
use crate::store::StoreError;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refresh health, for `worker.stats` and the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Requests in flight now.
    pub in_flight: u64,
    /// Successful refreshes since start.
    pub refreshed: u64,
    /// Failed refreshes since start.
    pub failed: u64,
    /// Records skipped because they did not decode, since start.
    pub skipped_records: u64,
    /// Tokens whose last refresh failed, by integration.
    pub failing: BTreeMap<String, u64>,
    /// The last failure code, by integration.
    pub last_error: BTreeMap<String, String>,
    /// Integrations whose credentials the provider refuses.
    pub unhealthy: Vec<String>,
}

/// The refresh engine of one worker.
pub struct Refresher {
    service: Arc<Service>,
    client: OAuthClient,
    permits: Arc<Semaphore>,
    capacity: Mutex<usize>,
    in_flight: Mutex<HashSet<String>>,
    wake: Notify,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    unhealthy: Mutex<HashSet<String>>,
    failing: Mutex<BTreeMap<String, String>>,
    last_error: Mutex<BTreeMap<String, String>>,
    refreshed: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
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
            wake: Notify::new(),
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            unhealthy: Mutex::default(),
            failing: Mutex::default(),
            last_error: Mutex::default(),
            refreshed: AtomicU64::default(),
            failed: AtomicU64::default(),
            skipped: AtomicU64::default(),
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

    /// Refresh health now.
    pub fn health(&self) -> Health {
        let mut failing = BTreeMap::new();
        for broker_type in locked(&self.failing).values() {
            *failing.entry(broker_type.clone()).or_default() += 1;
        }
        Health {
            in_flight: locked(&self.in_flight).len() as u64,
            refreshed: self.refreshed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped_records: self.skipped.load(Ordering::Relaxed),
            failing,
            last_error: locked(&self.last_error).clone(),
            unhealthy: locked(&self.unhealthy).iter().cloned().collect(),
        }
    }

    /// Waits (at most `patience`) for the requests in flight to end, so that
    /// a clean stop leaves no lease behind.
    pub async fn drain(&self, patience: Duration) {
        let started = Instant::now();
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
        self.skipped.fetch_add(outcome.skipped, Ordering::Relaxed);
        if outcome.changed {
            self.service.store().flush().await?;
        }
        for event in &outcome.events {
            events.emit(event).await;
        }
        Ok(())
    }

    async fn tick(self: &Arc<Self>, events: &Events) -> Result<(), StoreError> {
        let now = now_millis();
        if let Some(outcome) = self.blocking(move |s| pass::expiry_pass(s, now)).await? {
            self.settle(outcome, events).await?;
        }
        let free = self.permits.available_permits();
        if free == 0 {
            return Ok(());
        }
        let busy = locked(&self.in_flight).clone();
        let leased = self
            .blocking(move |s| pass::lease_pass(s, now, free, &|id| busy.contains(id)))
            .await?;
        let Some((leased, outcome)) = leased else {
            return Ok(());
        };
        // The leases are durable before any request goes out.
        self.settle(outcome, events).await?;
        for lease in leased {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Shrunk meanwhile: the lease runs out and the token is
                // taken again then.
                break;
            };
            locked(&self.in_flight).insert(lease.token_id.clone());
            tokio::spawn(self.clone().request(lease, permit));
        }
        Ok(())
    }

    async fn request(self: Arc<Self>, leased: Leased, permit: OwnedSemaphorePermit) {
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
        self.observe(&leased, &answer);
        let token_id = leased.token_id.clone();
        let now = now_millis();
        let applied = self
            .blocking(move |s| pass::apply(s, &leased, &answer, now))
            .await;
        let flushed = match applied {
            Ok(Some(events)) => self.service.store().flush().await.map(|_| events),
            Ok(None) => Ok(Vec::new()),
            Err(error) => Err(error),
        };
        match flushed {
            Ok(events) => {
                for event in events {
                    let _ = self.events_tx.send(event);
                }
            }
            Err(error) => {
                tracing::error!(token_id, %error, "a refresh answer could not be stored; the lease runs out and the refresh is tried again");
            }
        }
        locked(&self.in_flight).remove(&token_id);
        drop(permit);
        self.wake.notify_one();
    }

    fn observe(&self, leased: &Leased, answer: &Result<Grant, Failure>) {
        let broker_type = &leased.broker_type;
        let at = rfc3339(now_millis());
        let health = |kind: EventKind, reason: Option<String>| {
            let mut event = Event::new(kind, at.clone());
            event.broker_type = Some(broker_type.clone());
            event.reason = reason;
            let _ = self.events_tx.send(event);
        };
        match answer {
            Ok(_) => {
                self.refreshed.fetch_add(1, Ordering::Relaxed);
                locked(&self.failing).remove(&leased.token_id);
                if locked(&self.unhealthy).remove(broker_type) {
                    health(EventKind::IntegrationHealthy, None);
                }
            }
            Err(failure) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let code = failure.code();
                tracing::warn!(
                    token_id = leased.token_id,
                    broker_type,
                    code,
                    "refresh failed"
                );
                locked(&self.last_error).insert(broker_type.clone(), code.clone());
                if *failure == Failure::InvalidGrant {
                    locked(&self.failing).remove(&leased.token_id);
                } else {
                    locked(&self.failing).insert(leased.token_id.clone(), broker_type.clone());
                }
                if *failure == Failure::InvalidClient
                    && locked(&self.unhealthy).insert(broker_type.clone())
                {
                    health(EventKind::IntegrationUnhealthy, Some(code));
                }
            }
        }
    }
}
