//! The feed: one AMQP connection with least privilege. It subscribes to
//! `NS.events` with its own exclusive queue and asks the worker for
//! snapshots and token pages through direct reply-to. It never opens the
//! store and never holds a key. When the link drops it says so and comes
//! back by itself, with backoff.
//!
//! Its events queue is capped at the broker; what the broker drops there is
//! dead-lettered to a second exclusive queue and counted, so "dropped" in
//! the header counts every event the console did not see.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use mmt_shared::backoff::Backoff;
use mmt_shared::broker::{Broker, ConnectError};
use mmt_shared::config::Namespace;
use mmt_shared::console::{
    RECENT_CAPACITY, SNAPSHOT_ROUTING_KEY, SnapshotReply, SnapshotRequest, TOKENS_ROUTING_KEY,
    TokensReply, TokensRequest, WorkerStats,
};
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::ErrorReply;
use tokio::sync::mpsc;

use crate::state::{Link, Msg};

mod subscription;

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How long a request waits for the worker.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a search over every token waits for the worker (it scans the
/// whole table).
const SEARCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How many messages wait for the model before events are dropped.
const FEED_CAPACITY: usize = 8192;

/// Events the broker keeps for a console that does not keep up.
const QUEUE_MAX_LENGTH: i64 = 100_000;

/// What the model asks of the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// A snapshot.
    Snapshot,
    /// A snapshot without the recent events: the token counts.
    Counts,
    /// The token counts and the recent dead letters.
    DeadLetters,
    /// A page of the token listing.
    Tokens(TokensRequest),
}

impl Ask {
    /// How long the worker may take to answer.
    fn timeout(&self) -> Duration {
        match self {
            Ask::Tokens(request) if request.sort.is_some() || request.by_client => SEARCH_TIMEOUT,
            _ => REQUEST_TIMEOUT,
        }
    }

    /// The listing request, when this is one.
    fn listing(&self) -> Option<TokensRequest> {
        match self {
            Ask::Snapshot | Ask::Counts | Ask::DeadLetters => None,
            Ask::Tokens(request) => Some(request.clone()),
        }
    }
}

/// Why a session with the broker ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The broker refused or lost the link.
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker cannot be reached (its URL redacted).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The broker closed a stream.
    #[error("the broker closed the {0} stream")]
    Closed(&'static str),
    /// The console itself is shutting down.
    #[error("console stopped")]
    Stopped,
}

/// The handle of a running feed.
pub struct Feed {
    /// What the feed says, in order.
    pub messages: mpsc::Receiver<Msg>,
    /// Where to send requests.
    pub asks: mpsc::UnboundedSender<Ask>,
    /// How many events were dropped because the model did not keep up.
    pub dropped: Arc<AtomicU64>,
}

/// Starts the feed for `namespace` on `broker`.
pub fn spawn(broker: Broker, namespace: Namespace) -> Feed {
    let (tx, messages) = mpsc::channel(FEED_CAPACITY);
    let (asks, asks_rx) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let feeder = Feeder {
        broker,
        namespace,
        tx,
        dropped: dropped.clone(),
    };
    tokio::spawn(feeder.run(asks_rx));
    Feed {
        messages,
        asks,
        dropped,
    }
}

struct Feeder {
    broker: Broker,
    namespace: Namespace,
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

const BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), MAX_BACKOFF);

impl Feeder {
    async fn run(self, mut asks: mpsc::UnboundedReceiver<Ask>) {
        let mut attempt: u32 = 0;
        let mut error = None;
        loop {
            if self
                .say(Msg::Link(Link::Connecting { attempt, error }))
                .await
                .is_err()
            {
                return;
            }
            let started = Instant::now();
            let outcome = self.session(&mut asks).await;
            if matches!(outcome, Err(ConnError::Stopped)) {
                return;
            }
            error = outcome.err().map(|e| e.to_string());
            tracing::warn!(error = error.as_deref(), "broker link lost");
            attempt = if started.elapsed() > MAX_BACKOFF {
                0
            } else {
                attempt.saturating_add(1)
            };
            let wait = tokio::time::sleep(BACKOFF.delay(attempt));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    ask = asks.recv() => match ask {
                        None => return,
                        Some(ask) => {
                            if self.say(Msg::RequestFailed(ask.listing(), "broker link down: request not sent".into())).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
        }
    }

    async fn say(&self, msg: Msg) -> Result<(), ConnError> {
        self.tx.send(msg).await.map_err(|_| ConnError::Stopped)
    }

    /// Events may be dropped (and counted) when the model lags; nothing else
    /// is.
    fn offer(&self, msg: Msg) -> Result<(), ConnError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ConnError::Stopped),
        }
    }

    async fn session(&self, asks: &mut mpsc::UnboundedReceiver<Ask>) -> Result<(), ConnError> {
        let connection = self
            .broker
            .connect(&format!("mmt-tui {}", self.namespace))
            .await?;
        let result = self.serve(&connection, asks).await;
        let _ = connection.close(200, "mmt-tui".into()).await;
        result
    }

    async fn serve(
        &self,
        connection: &Connection,
        asks: &mut mpsc::UnboundedReceiver<Ask>,
    ) -> Result<(), ConnError> {
        let ns = &self.namespace;
        let events_channel = exchanges_channel(connection, ns).await?;
        let queues = subscription::subscribe(&events_channel, ns, QUEUE_MAX_LENGTH).await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut events = events_channel
            .basic_consume(
                queues.events.as_str().into(),
                "mmt-tui.events".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        let mut overflow = events_channel
            .basic_consume(
                queues.overflow.as_str().into(),
                "mmt-tui.overflow".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        let rpc = connection.create_channel().await?;
        let mut replies = rpc
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "mmt-tui.replies".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        self.say(Msg::Link(Link::Up)).await?;
        let mut pending: HashMap<String, (Ask, Instant)> = HashMap::new();
        let mut next_id: u64 = 0;
        let mut sweep = tokio::time::interval(Duration::from_millis(500));
        loop {
            // Replies and requests first: they are rare, and a flood of
            // events must not starve them.
            tokio::select! {
                biased;
                delivery = replies.next() => {
                    let delivery = delivery.ok_or(ConnError::Closed("replies"))??;
                    let ask = delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .and_then(|id| pending.remove(id.as_str()));
                    if let Some((ask, _)) = ask {
                        self.say(reply_msg(ask, &delivery.data)).await?;
                    }
                }
                ask = asks.recv() => {
                    let ask = ask.ok_or(ConnError::Stopped)?;
                    next_id += 1;
                    let id = format!("mmt-tui-{next_id}");
                    request(&rpc, &self.namespace, &ask, &id).await?;
                    pending.insert(id, (ask, Instant::now()));
                }
                _ = sweep.tick() => {
                    let late: Vec<String> = pending
                        .iter()
                        .filter(|(_, (ask, sent))| sent.elapsed() > ask.timeout())
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in late {
                        if let Some((ask, _)) = pending.remove(&id) {
                            let what = match ask { Ask::Snapshot | Ask::Counts | Ask::DeadLetters => "snapshot", Ask::Tokens(_) => "token page" };
                            let why = format!("the worker did not answer the {what} request");
                            self.say(Msg::RequestFailed(ask.listing(), why)).await?;
                        }
                    }
                }
                delivery = overflow.next() => {
                    delivery.ok_or(ConnError::Closed("overflow"))??;
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                delivery = events.next() => {
                    let delivery = delivery.ok_or(ConnError::Closed("events"))??;
                    if let Some(msg) = event_msg(&delivery) {
                        self.offer(msg)?;
                    }
                }
            }
        }
    }
}

async fn request(
    channel: &Channel,
    namespace: &Namespace,
    ask: &Ask,
    id: &str,
) -> Result<(), lapin::Error> {
    let (routing_key, body) = match ask {
        Ask::Snapshot => (
            SNAPSHOT_ROUTING_KEY,
            serde_json::to_vec(&SnapshotRequest::default()),
        ),
        Ask::Counts => (
            SNAPSHOT_ROUTING_KEY,
            serde_json::to_vec(&SnapshotRequest {
                recent: Some(0),
                dead_letters: Some(0),
            }),
        ),
        Ask::DeadLetters => (
            SNAPSHOT_ROUTING_KEY,
            serde_json::to_vec(&SnapshotRequest {
                recent: Some(0),
                dead_letters: Some(RECENT_CAPACITY),
            }),
        ),
        Ask::Tokens(request) => (TOKENS_ROUTING_KEY, serde_json::to_vec(request)),
    };
    let body = body.unwrap_or_else(|_| b"{}".to_vec());
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_reply_to(DIRECT_REPLY_TO.into())
        .with_correlation_id(id.into())
        .with_expiration(ask.timeout().as_millis().to_string().as_str().into());
    channel
        .basic_publish(
            namespace.inbound_exchange().as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?;
    Ok(())
}

fn event_msg(delivery: &Delivery) -> Option<Msg> {
    let parsed = if delivery.routing_key.as_str() == EventKind::WorkerStats.routing_key() {
        serde_json::from_slice::<WorkerStats>(&delivery.data).map(Msg::Stats)
    } else {
        serde_json::from_slice::<Event>(&delivery.data).map(Msg::Event)
    };
    parsed
        .inspect_err(
            |error| tracing::debug!(%error, routing_key = %delivery.routing_key, "event ignored"),
        )
        .ok()
}

fn reply_msg(ask: Ask, data: &[u8]) -> Msg {
    if let Ok(error) = serde_json::from_slice::<ErrorReply>(data) {
        return Msg::RequestFailed(
            ask.listing(),
            format!("the worker refused: {}", error.error.message),
        );
    }
    let listing = ask.listing();
    let parsed = match ask {
        Ask::Snapshot | Ask::Counts | Ask::DeadLetters => {
            serde_json::from_slice::<SnapshotReply>(data).map(Msg::Snapshot)
        }
        Ask::Tokens(request) => {
            serde_json::from_slice::<TokensReply>(data).map(|reply| Msg::Tokens(request, reply))
        }
    };
    parsed.unwrap_or_else(|error| {
        Msg::RequestFailed(
            listing,
            format!("unreadable reply from the worker: {error}"),
        )
    })
}

/// A channel on which `NS.in` and `NS.events` exist: declared when the
/// console's rights allow it (so it may start before the worker), else
/// checked passively on a fresh channel: a console with read-only rights
/// (docs/security.md) waits for the worker to have declared them.
async fn exchanges_channel(connection: &Connection, ns: &Namespace) -> Result<Channel, ConnError> {
    async fn declare(channel: &Channel, ns: &Namespace, passive: bool) -> Result<(), lapin::Error> {
        let options = ExchangeDeclareOptions {
            passive,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [ns.inbound_exchange(), ns.events_exchange()] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    options,
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
    let channel = connection.create_channel().await?;
    if declare(&channel, ns, false).await.is_ok() {
        return Ok(channel);
    }
    let channel = connection.create_channel().await?;
    declare(&channel, ns, true).await?;
    Ok(channel)
}

/// Connects once, asks for a snapshot and returns it (for `--dump`).
pub async fn snapshot_once(
    broker: &Broker,
    namespace: &Namespace,
    timeout: Duration,
) -> Result<SnapshotReply, DumpError> {
    let work = async {
        let connection = broker.connect("mmt-tui --dump").await?;
        let channel = connection.create_channel().await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        request(&channel, namespace, &Ask::Snapshot, "mmt-tui-dump").await?;
        let delivery = replies.next().await.ok_or(DumpError::NoAnswer)??;
        let _ = connection.close(200, "mmt-tui --dump".into()).await;
        match reply_msg(Ask::Snapshot, &delivery.data) {
            Msg::Snapshot(snapshot) => Ok(snapshot),
            Msg::RequestFailed(_, why) => Err(DumpError::Refused(why)),
            _ => Err(DumpError::NoAnswer),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DumpError::NoAnswer)?
}

/// Why `--dump` got no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The broker could not be reached.
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker cannot be reached (its URL redacted).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No worker answered in time.
    #[error("no worker answered the snapshot request (is mmt-worker running on this namespace?)")]
    NoAnswer,
    /// The worker answered with an error.
    #[error("{0}")]
    Refused(String),
}
