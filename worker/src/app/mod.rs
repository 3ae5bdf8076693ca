//! Assembles a running worker: key, store, and a supervised broker session
//! (connection, topology, one consumer per inbound queue, the refresh
//! scheduler)
//! that is rebuilt with backoff and jitter whenever the link fails; the
//! embedded store's purges ([`purge`]) and its backup socket
//! ([`backups`]); and, with a metrics address, the HTTP edge of `/metrics`
//! and the probes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lapin::Connection;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use mmt_shared::backoff::Backoff;
use mmt_shared::broker::ConnectError;
use mmt_shared::config::BrokerArgs;
use mmt_shared::tomlfile::FileError;
use mmt_shared::wire::MessageKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::amqp::consumer::{ConsumerError, DeadLetters, QueueConsumer};
use crate::amqp::events::Events;
use crate::amqp::topology::{self, QueueType, TopologyConfig};
use crate::config::clients_file;
use crate::config::clients_reload;
use crate::config::integrations::Integrations;
pub use crate::counters::link::LinkStats;
use crate::counters::link::Readiness;
use crate::observe::probes::{self, BindError, Probes};
use crate::observe::server::{ConsoleServer, Request};
use crate::observe::stats::{self, Stats};
use crate::refresh::oauth::ClientError;
use crate::refresh::{self, Refresher};
use crate::rules::identity::{Gate, Mode};
use crate::service::Service;
use crate::store::crypto::{CryptoError, KeyRing};
use crate::store::postgres::PgConfig;
use crate::store::{Store, StoreError};

mod keys;
mod purge;
pub use keys::DEFAULT_REWRAP_PER_SEC;
pub use purge::DEFAULT_PURGE_WITHIN;

/// Heartbeat asked of the broker when the URL does not say (seconds): a dead
/// link is noticed within about twice this.
const HEARTBEAT_SECS: u16 = 10;

/// How long closing the broker connection may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything `mmt-worker run` is configured with.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Broker URL and namespace.
    pub broker: BrokerArgs,
    /// The data directory (the key check, the lock and the keyspace) of the
    /// embedded store.
    pub data_dir: PathBuf,
    /// The shared store (PostgreSQL); `None`: the embedded store in
    /// `data_dir`.
    pub store: Option<PgConfig>,
    /// The store's block cache, in MiB.
    pub store_cache_mb: u64,
    /// The size past which the embedded store's audit log is rotated.
    pub audit_max_bytes: u64,
    /// The master key file.
    pub key_file: PathBuf,
    /// Queue type of the state-changing queues.
    pub queue_type: QueueType,
    /// Quorum queue delivery limit.
    pub delivery_limit: u32,
    /// Unacknowledged deliveries per queue.
    pub prefetch: u16,
    /// Wallet integrations beyond the built-in ones.
    pub wallet_types: Vec<String>,
    /// How often the due index is looked at (expiries, refreshes).
    pub sweep_interval: Duration,
    /// The clients file (CONTRACT.md §10): strict mode; `None` is open mode.
    pub clients: Option<PathBuf>,
    /// The integrations file (CONTRACT.md §9), reloaded on SIGHUP.
    pub integrations: Option<PathBuf>,
    /// How long a revoked token's secret material may stay in the embedded
    /// store's files (CONTRACT.md §13, "Physical deletion").
    pub purge_within: Duration,
    /// How many data keys a second a rotation's rewrap takes (CONTRACT.md
    /// §11).
    pub rewrap_per_sec: u32,
}

/// How the worker is watched in a fleet, and how long it waits for the
/// broker (issue 20): kept apart from [`WorkerConfig`] so that the callers
/// that build one need not change.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: not
    /// served.
    pub metrics_addr: Option<SocketAddr>,
    /// How long one connect (TCP, TLS handshake, AMQP handshake) may take
    /// before it is given up and tried again with the reconnect backoff.
    pub connect_timeout: Duration,
}

/// The connect timeout when nothing else is asked for.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

pub mod backups;

/// Opens the store the configuration names. A store that exists never gets
/// a freshly minted key: a mistyped --key-file must not leave a new key
/// behind (the shared store's key check tells only once connected, so a key
/// made for it is removed again when the store refuses it).
fn open_store(config: &WorkerConfig) -> Result<Store, WorkerError> {
    let Some(shared) = &config.store else {
        let (key, created) = if crate::store::holds_a_store(&config.data_dir) {
            (KeyRing::load(&config.key_file, &config.data_dir)?, false)
        } else {
            KeyRing::load_or_create(&config.key_file)?
        };
        if created {
            tracing::warn!(key_file = %config.key_file.display(), "created a new master key: back it up, the data is unreadable without it");
        }
        let store = Store::open_with_cache(&config.data_dir, key, config.store_cache_mb)?;
        store.set_audit_max_bytes(config.audit_max_bytes);
        return Ok(store);
    };
    let (key, created) = KeyRing::load_or_create(&config.key_file)?;
    match Store::connect(shared, key) {
        Ok(store) => {
            if created {
                tracing::warn!(key_file = %config.key_file.display(), "created a new master key for a new shared store: back it up and give it to every worker, the data is unreadable without it");
            }
            Ok(store)
        }
        Err(error) => {
            if created {
                let _ = std::fs::remove_file(&config.key_file);
            }
            Err(error.into())
        }
    }
}

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The shared store's password file could not be read.
    #[error("cannot read the store's password file")]
    StorePassword {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker link (at start: unreachable or refusing the topology).
    #[error("broker")]
    Amqp(#[from] lapin::Error),
    /// The broker cannot be reached (its URL redacted), or its URL or TLS
    /// files are unusable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A consumer stopped for a reason a new session cannot fix.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The clients file cannot be used (exit code 2).
    #[error("clients file")]
    Clients(#[source] FileError),
    /// The SIGHUP handler cannot be installed.
    #[error("cannot listen for SIGHUP")]
    Signal(#[source] std::io::Error),
    /// A task panicked.
    #[error("worker task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The integrations file is refused.
    #[error("integrations file")]
    Integrations(#[source] FileError),
    /// The HTTP client of the refresh engine.
    #[error(transparent)]
    Http(#[from] ClientError),
    /// The metrics address cannot be listened on (exit code 2).
    #[error(transparent)]
    Metrics(#[from] BindError),
    /// The broker took the TCP connection but did not complete the TLS or
    /// AMQP handshake in time.
    #[error("the broker did not complete the connection within {0:?}")]
    ConnectTimedOut(Duration),
}

impl WorkerError {
    /// The one line `/readyz` says while a session cannot be opened: from
    /// the kind of failure, never from a library's text (no URL in it).
    fn not_ready(&self) -> String {
        match self {
            WorkerError::ConnectTimedOut(after) => {
                format!("broker: connect timed out after {after:?}; retrying")
            }
            WorkerError::Connect(_) => "broker: cannot connect; retrying".to_owned(),
            _ => "broker: the session could not be set up; retrying".to_owned(),
        }
    }
}

/// A running worker.
pub struct Worker {
    shutdown: CancellationToken,
    supervisor: tokio::task::JoinHandle<Result<(), WorkerError>>,
    service: Arc<Service>,
    refresher: Arc<Refresher>,
    link: Arc<LinkStats>,
    /// The purge schedule's task.
    purger: tokio::task::JoinHandle<()>,
    /// The key ring's task: reload on SIGHUP, rewrap.
    keys: tokio::task::JoinHandle<()>,
}

/// How long a clean stop waits for refreshes in flight.
const DRAIN_PATIENCE: Duration = Duration::from_secs(15);

impl Worker {
    /// Checks the key against the store, connects, declares the topology and
    /// starts consuming. Returns once every consumer is registered. A broker
    /// that cannot be reached now is an error; one lost later is recovered.
    pub async fn start(config: &WorkerConfig) -> Result<Self, WorkerError> {
        Self::start_with(config, &FleetConfig::default()).await
    }

    /// [`Worker::start`], serving `/metrics` and the probes when `fleet`
    /// names an address (listened on before anything else is done). A
    /// connect that times out is tried again with the reconnect backoff
    /// until it succeeds (`/readyz` says why meanwhile); a broker that
    /// refuses is still an error.
    pub async fn start_with(
        config: &WorkerConfig,
        fleet: &FleetConfig,
    ) -> Result<Self, WorkerError> {
        let listener = match fleet.metrics_addr {
            Some(addr) => Some(probes::bind(addr).await?),
            None => None,
        };
        // The integrations file is checked before anything is created.
        let integrations = match &config.integrations {
            Some(path) => Integrations::load(path).map_err(WorkerError::Integrations)?,
            None => Integrations::none(),
        };
        let mode = match &config.clients {
            Some(path) => Mode::Strict(clients_file::load(path).map_err(WorkerError::Clients)?),
            None => Mode::Open,
        };
        let identity = mode.name();
        let gate = Gate::new(mode);
        let store = open_store(config)?;
        let service = Arc::new(
            Service::new(store, config.wallet_types.clone())
                .with_identity(gate.clone())
                .with_integrations(integrations),
        );
        let refresher = Refresher::new(service.clone())?;
        let stats = Arc::new(Stats::new(&config.broker.namespace).with_identity(identity));
        let shutdown = CancellationToken::new();
        if config.store.is_none() {
            backups::start(&config.data_dir, &service, &shutdown);
        }
        let link = Arc::new(LinkStats::default());
        let readiness = Arc::new(Readiness::default());
        if let Some(listener) = listener {
            let probes = Probes {
                stats: stats.clone(),
                service: service.clone(),
                refresher: refresher.clone(),
                link: link.clone(),
                readiness: readiness.clone(),
            };
            tokio::spawn(probes::serve(listener, probes, shutdown.clone()));
        }
        let open = || Session::open(config, fleet, &service, &refresher, &stats);
        let mut attempt: u32 = 0;
        let session = loop {
            match open().await {
                Ok(session) => break session,
                Err(error @ WorkerError::ConnectTimedOut(_)) => {
                    tracing::warn!(
                        attempt,
                        error = &error as &dyn std::error::Error,
                        "connect timed out at start; retrying"
                    );
                    readiness.not_consuming(error.not_ready());
                    tokio::time::sleep(RECONNECT.delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(error) => {
                    shutdown.cancel();
                    return Err(error);
                }
            }
        };
        readiness.consuming();
        match &config.clients {
            Some(path) => {
                clients_reload::listen(path.clone(), gate, shutdown.clone())
                    .map_err(WorkerError::Signal)?;
            }
            None => tracing::warn!(
                "identity: open mode (no --clients file): the clientId of every message is trusted as claimed"
            ),
        }
        if let Some(path) = &config.integrations {
            refresh::reload::on_sighup(
                service.clone(),
                refresher.clone(),
                path.clone(),
                shutdown.clone(),
            );
        }
        let purger = tokio::spawn(purge::run(
            service.clone(),
            config.purge_within,
            shutdown.clone(),
        ));
        let keys = keys::start(
            service.clone(),
            config.key_file.clone(),
            config.rewrap_per_sec,
            shutdown.clone(),
        )
        .map_err(WorkerError::Signal)?;
        let supervisor = tokio::spawn(supervise(
            config.clone(),
            fleet.clone(),
            service.clone(),
            refresher.clone(),
            stats,
            session,
            shutdown.clone(),
            link.clone(),
            readiness,
        ));
        tracing::info!(namespace = %config.broker.namespace, store = service.store().engine_name(), identity = identity.as_str(), "worker ready");
        Ok(Self {
            shutdown,
            supervisor,
            service,
            refresher,
            link,
            purger,
            keys,
        })
    }

    /// A token that stops the worker when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The service (for the bench and tests that look at the store).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The refresh engine.
    pub fn refresher(&self) -> &Arc<Refresher> {
        &self.refresher
    }

    /// The link counters.
    pub fn link(&self) -> &Arc<LinkStats> {
        &self.link
    }

    /// Runs until the shutdown token fires or a failure no new session can
    /// fix, then stops cleanly: in-hand batches finish, the store is flushed,
    /// the connection closed (unacknowledged prefetched messages return to
    /// their queues).
    pub async fn run(self) -> Result<(), WorkerError> {
        let outcome = self
            .supervisor
            .await
            .map_err(WorkerError::from)
            .and_then(|r| r);
        // The purge schedule stops too (a purge in hand is finished).
        self.shutdown.cancel();
        // After an I/O error the engine refuses every later write and flush:
        // stop without one; what was acknowledged is already on disk.
        if matches!(outcome, Err(WorkerError::Store(_))) {
            // Dropping the store waits for the engine's background threads,
            // which may be stuck on the failing disk: keep it alive so the
            // process can exit.
            std::mem::forget(self.service.clone());
        } else {
            if let Err(error) = self.purger.await {
                tracing::debug!(%error, "the purge schedule ended abnormally");
            }
            if let Err(error) = self.keys.await {
                tracing::debug!(%error, "the key task ended abnormally");
            }
            self.refresher.drain(DRAIN_PATIENCE).await;
            self.service.store().flush().await?;
        }
        outcome
    }

    /// Asks the worker to stop and waits until it has.
    pub async fn stop(self) -> Result<(), WorkerError> {
        self.shutdown.cancel();
        self.run().await
    }
}

/// One connection to the broker and what runs on it.
struct Session {
    connection: Connection,
    stop: CancellationToken,
    tasks: JoinSet<Result<(), ConsumerError>>,
    /// The channels that outlive the session's tasks (events, dead letters,
    /// stats: refresh requests in flight still hold the events publisher).
    /// Closed before the connection: lapin closes a channel when its last
    /// handle goes, and one that went after the connection began closing
    /// was reported as a connection error at every clean stop.
    shared_channels: Vec<lapin::Channel>,
}

/// How a session ended.
enum SessionEnd {
    /// Asked to stop.
    Stopped,
    /// The link failed: open a new session.
    LinkLost(ConsumerError),
    /// The shared store is out of reach: wait until it answers, then open a
    /// new session.
    StoreLost(StoreError),
    /// Something a new session cannot fix.
    Fatal(WorkerError),
}

impl Session {
    async fn open(
        config: &WorkerConfig,
        fleet: &FleetConfig,
        service: &Arc<Service>,
        refresher: &Arc<Refresher>,
        stats: &Arc<Stats>,
    ) -> Result<Self, WorkerError> {
        let broker = config
            .broker
            .broker()?
            .with_default_heartbeat(HEARTBEAT_SECS);
        let connection = tokio::time::timeout(fleet.connect_timeout, broker.connect("mmt-worker"))
            .await
            .map_err(|_| WorkerError::ConnectTimedOut(fleet.connect_timeout))??;
        let namespace = &config.broker.namespace;
        let setup = connection.create_channel().await?;
        topology::declare(
            &setup,
            &TopologyConfig {
                namespace: namespace.clone(),
                queue_type: config.queue_type,
                delivery_limit: config.delivery_limit,
            },
        )
        .await?;
        setup.close(200, "topology declared".into()).await?;
        let events_channel = connection.create_channel().await?;
        let events = Events::new(events_channel.clone(), namespace).with_observer(stats.clone());
        let dead_channel = connection.create_channel().await?;
        dead_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let dead = DeadLetters::new(dead_channel.clone(), namespace);
        let stats_channel = connection.create_channel().await?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // The console's servers and the stats come before the consumers: once
        // a consumer is registered, the session is serving, and nothing may
        // fail between that and the session being counted as open.
        for request in Request::ALL {
            let server = ConsoleServer::start(
                &connection,
                namespace,
                request,
                service.clone(),
                stats.clone(),
            )
            .await?;
            tasks.spawn(server.run(stop.clone()));
        }
        let publish_stats = stats::publish(
            stats.clone(),
            service.clone(),
            refresher.clone(),
            events.clone(),
            stats_channel.clone(),
            namespace.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            publish_stats.await;
            Ok(())
        });
        for kind in MessageKind::ALL {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await?;
            let queue = namespace.queue(kind);
            let counters = stats.counters(&queue);
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("mmt-worker.{}", kind.routing_key()).into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let queue_consumer = QueueConsumer {
                kind,
                queue,
                channel,
                consumer,
                dead: dead.clone(),
                events: events.clone(),
                service: service.clone(),
                // A pipelined queue has two batches unacknowledged at once.
                max_batch: if kind.mutates() {
                    usize::from(config.prefetch / 2).max(1)
                } else {
                    usize::from(config.prefetch.max(1))
                },
                delivery_limit: match config.queue_type {
                    QueueType::Quorum if kind.mutates() => Some(config.delivery_limit),
                    _ => None,
                },
                counters,
            };
            tasks.spawn(queue_consumer.run(stop.clone()));
        }
        tasks.spawn(
            refresher
                .clone()
                .run(events, config.sweep_interval, stop.clone()),
        );
        Ok(Self {
            connection,
            stop,
            tasks,
            shared_channels: vec![events_channel, dead_channel, stats_channel],
        })
    }

    /// Waits until `shutdown` fires or a task ends, then stops every task.
    async fn wait(&mut self, shutdown: &CancellationToken) -> SessionEnd {
        let end = tokio::select! {
            biased;
            () = shutdown.cancelled() => SessionEnd::Stopped,
            Some(joined) = self.tasks.join_next() => match joined {
                Ok(Ok(())) if shutdown.is_cancelled() => SessionEnd::Stopped,
                Ok(Ok(())) => SessionEnd::LinkLost(ConsumerError::Ended),
                Ok(Err(ConsumerError::Store(error))) if error.is_unreachable() => {
                    SessionEnd::StoreLost(error)
                }
                Ok(Err(ConsumerError::Store(error))) => SessionEnd::Fatal(error.into()),
                Ok(Err(error)) => SessionEnd::LinkLost(error),
                Err(error) => SessionEnd::Fatal(error.into()),
            },
        };
        self.stop.cancel();
        match end {
            SessionEnd::Stopped => {
                // Let every consumer finish the batch in hand and close its
                // channel; a link that fails meanwhile changes nothing.
                while let Some(joined) = self.tasks.join_next().await {
                    if let Ok(Err(error)) = joined {
                        tracing::debug!(
                            error = &error as &dyn std::error::Error,
                            "consumer ended with an error while stopping"
                        );
                    }
                }
            }
            SessionEnd::LinkLost(_) | SessionEnd::StoreLost(_) | SessionEnd::Fatal(_) => {
                // Deliveries of a dead channel are never acknowledged: the
                // broker hands them out again.
                self.tasks.abort_all();
                while self.tasks.join_next().await.is_some() {}
            }
        }
        end
    }

    async fn close(self) {
        for channel in &self.shared_channels {
            if channel.status().connected() {
                let closing = channel.close(200, "mmt-worker stopping".into());
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
            }
        }
        let closing = self.connection.close(200, "mmt-worker stopping".into());
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "connection already closed"),
            Err(_) => tracing::warn!("the broker did not answer the connection close in time"),
        }
    }
}

/// Waits, with the reconnect backoff, until the store answers; `false` when
/// the worker is stopped meanwhile.
async fn store_answers(service: &Arc<Service>, shutdown: &CancellationToken) -> bool {
    let mut attempt: u32 = 0;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(RECONNECT.delay(attempt)) => {}
        }
        attempt = attempt.saturating_add(1);
        let probe = service.clone();
        match tokio::task::spawn_blocking(move || probe.store().ping()).await {
            Ok(Ok(())) => return true,
            Ok(Err(error)) => tracing::debug!(
                attempt,
                error = &error as &dyn std::error::Error,
                "the store does not answer yet"
            ),
            Err(error) => tracing::debug!(%error, "store probe ended"),
        }
    }
}

/// Reconnects wait 100 ms doubling up to 5 s, jittered.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Runs sessions until shutdown: when one loses its link, a new one is opened
/// with exponential backoff ([`RECONNECT`]).
#[allow(clippy::too_many_arguments)]
async fn supervise(
    config: WorkerConfig,
    fleet: FleetConfig,
    service: Arc<Service>,
    refresher: Arc<Refresher>,
    stats: Arc<Stats>,
    mut session: Session,
    shutdown: CancellationToken,
    link: Arc<LinkStats>,
    readiness: Arc<Readiness>,
) -> Result<(), WorkerError> {
    loop {
        let end = session.wait(&shutdown).await;
        readiness.not_consuming(match &end {
            SessionEnd::Stopped => "stopping",
            SessionEnd::Fatal(_) => "stopping: a failure that needs an operator",
            SessionEnd::LinkLost(_) => "broker: link lost; reconnecting",
            SessionEnd::StoreLost(_) => "store: unreachable; waiting for it",
        });
        match end {
            SessionEnd::Stopped => {
                session.close().await;
                return Ok(());
            }
            SessionEnd::Fatal(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "stopping: this failure needs an operator"
                );
                session.close().await;
                return Err(error);
            }
            SessionEnd::LinkLost(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "broker link lost; reconnecting"
                );
                session.close().await;
            }
            SessionEnd::StoreLost(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "store unreachable: stopped consuming (nothing uncommitted was acknowledged); waiting for it"
                );
                session.close().await;
                if !store_answers(&service, &shutdown).await {
                    return Ok(());
                }
                tracing::info!("store answers again");
            }
        }
        let lost_at = Instant::now();
        let mut attempt: u32 = 0;
        session = loop {
            let wait = RECONNECT.delay(attempt);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            attempt = attempt.saturating_add(1);
            match Session::open(&config, &fleet, &service, &refresher, &stats).await {
                Ok(session) => break session,
                Err(error) => {
                    tracing::warn!(
                        attempt,
                        error = &error as &dyn std::error::Error,
                        "reconnect failed"
                    );
                    readiness.not_consuming(error.not_ready());
                }
            }
        };
        readiness.consuming();
        let took = u64::try_from(lost_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let count = link.recoveries.fetch_add(1, Ordering::Relaxed) + 1;
        link.last_recovery_ms.store(took, Ordering::Relaxed);
        tracing::info!(
            recoveries = count,
            recovery_ms = took,
            attempts = attempt,
            "broker link recovered; consuming again"
        );
    }
}
