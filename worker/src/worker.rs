//! Assembles a running worker: key, store, broker link, topology, one
//! consumer per inbound queue, and the expiry sweep.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use mmt_shared::config::BrokerArgs;
use mmt_shared::time_fmt::now_millis;
use mmt_shared::wire::MessageKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consumer::{ConsumerError, DeadLetters, QueueConsumer};
use crate::crypto::{CryptoError, MasterKey};
use crate::events::Events;
use crate::service::Service;
use crate::store::{Store, StoreError};
use crate::topology::{self, QueueType, TopologyConfig};

/// Everything `mmt-worker run` is configured with.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Broker URL and namespace.
    pub broker: BrokerArgs,
    /// The sled data directory.
    pub data_dir: PathBuf,
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
    /// How often expired tokens are moved to `reauth_required`.
    pub sweep_interval: Duration,
}

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker link.
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    /// A consumer stopped.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// A task panicked or was aborted.
    #[error("worker task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running worker.
pub struct Worker {
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), WorkerError>>,
    connection: Connection,
    service: Arc<Service>,
}

impl Worker {
    /// Checks the key against the store, connects, declares the topology and
    /// starts consuming. Returns once every consumer is registered.
    pub async fn start(config: &WorkerConfig) -> Result<Self, WorkerError> {
        let (key, created) = MasterKey::load_or_create(&config.key_file)?;
        if created {
            tracing::warn!(key_file = %config.key_file.display(), "created a new master key: back it up, the data is unreadable without it");
        }
        let store = Store::open(&config.data_dir, key)?;
        let service = Arc::new(Service::new(store, config.wallet_types.clone()));
        let connection = Connection::connect(
            &config.broker.amqp_url,
            ConnectionProperties::default().with_connection_name("mmt-worker".into()),
        )
        .await?;
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
        let events = Events::new(connection.create_channel().await?, namespace);
        let dead_channel = connection.create_channel().await?;
        dead_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let dead = DeadLetters::new(dead_channel, namespace);
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for kind in MessageKind::ALL {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await?;
            let queue = namespace.queue(kind);
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
                max_batch: usize::from(config.prefetch.max(1)),
            };
            let token = shutdown.clone();
            tasks.spawn(async move { Ok(queue_consumer.run(token).await?) });
        }
        tasks.spawn(sweep(
            service.clone(),
            events,
            config.sweep_interval,
            shutdown.clone(),
        ));
        tracing::info!(namespace = %namespace, data_dir = %config.data_dir.display(), "worker ready");
        Ok(Self {
            shutdown,
            tasks,
            connection,
            service,
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

    /// Runs until the shutdown token fires or a task fails, then stops
    /// cleanly: in-hand batches finish, the store is flushed, the connection
    /// closed (unacknowledged prefetched messages return to their queues).
    pub async fn run(mut self) -> Result<(), WorkerError> {
        let mut outcome = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(error) = joined.map_err(WorkerError::from).and_then(|r| r) {
                if outcome.is_ok() {
                    tracing::error!(%error, "worker task failed, stopping");
                    outcome = Err(error);
                }
                self.shutdown.cancel();
            }
        }
        self.service.store().flush().await?;
        if let Err(error) = self
            .connection
            .close(200, "mmt-worker stopping".into())
            .await
        {
            tracing::debug!(%error, "connection already closed");
        }
        outcome
    }

    /// Asks the worker to stop and waits until it has.
    pub async fn stop(self) -> Result<(), WorkerError> {
        self.shutdown.cancel();
        self.run().await
    }
}

async fn sweep(
    service: Arc<Service>,
    events: Events,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let expired = match service.sweep_expired(now_millis()) {
            Ok(expired) => expired,
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "expiry sweep failed, retrying next tick");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if !expired.is_empty() {
            service.store().flush().await?;
            for event in &expired {
                events.emit(event).await;
            }
        }
    }
}
