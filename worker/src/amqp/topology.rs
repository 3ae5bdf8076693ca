//! Declares the AMQP topology of CONTRACT.md §3, idempotently.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use mmt_shared::config::Namespace;
use mmt_shared::console::{SNAPSHOT_ROUTING_KEY, TOKENS_ROUTING_KEY};
use mmt_shared::wire::MessageKind;

/// The queue type of the state-changing queues and `NS.dead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Replicated, durable, with a delivery limit (the default).
    Quorum,
    /// Classic durable queues (no delivery limit: RabbitMQ 3.10 classic
    /// queues do not support one).
    Classic,
}

/// How the topology is shaped.
#[derive(Clone, Debug)]
pub struct TopologyConfig {
    /// The namespace prefixing every name.
    pub namespace: Namespace,
    /// Queue type of the state-changing queues and `NS.dead`.
    pub queue_type: QueueType,
    /// How often a quorum queue redelivers a message before dead-lettering it.
    pub delivery_limit: u32,
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn durable_args(config: &TopologyConfig, dead_letter: bool) -> FieldTable {
    let mut args = FieldTable::default();
    match config.queue_type {
        QueueType::Quorum => {
            args.insert("x-queue-type".into(), text("quorum"));
            if dead_letter {
                args.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
                );
                args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
                args.insert("x-overflow".into(), text("reject-publish"));
            }
        }
        QueueType::Classic => {
            args.insert("x-queue-type".into(), text("classic"));
        }
    }
    if dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            text(&config.namespace.dead_exchange()),
        );
    }
    args
}

fn read_args(config: &TopologyConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("classic"));
    args.insert(
        "x-dead-letter-exchange".into(),
        text(&config.namespace.dead_exchange()),
    );
    args
}

/// Declares the exchanges, queues and bindings. Safe to call at every start:
/// declaring what exists with the same arguments changes nothing.
pub async fn declare(channel: &Channel, config: &TopologyConfig) -> Result<(), lapin::Error> {
    let ns = &config.namespace;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            ns.inbound_exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            ns.events_exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            ns.dead_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            ns.dead_queue().into(),
            queue_options,
            durable_args(config, false),
        )
        .await?;
    channel
        .queue_bind(
            ns.dead_queue().into(),
            ns.dead_exchange().into(),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for kind in MessageKind::ALL {
        let args = if kind.mutates() {
            durable_args(config, true)
        } else {
            read_args(config)
        };
        channel
            .queue_declare(ns.queue(kind).into(), queue_options, args)
            .await?;
        channel
            .queue_bind(
                ns.queue(kind).into(),
                ns.inbound_exchange().into(),
                kind.routing_key().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    declare_console(channel, config).await
}

/// Every queue the worker declares in `ns` (for tools and tests that clean
/// a namespace up).
pub fn queues(ns: &Namespace) -> Vec<String> {
    MessageKind::ALL
        .iter()
        .map(|kind| ns.queue(*kind))
        .chain(
            [SNAPSHOT_ROUTING_KEY, TOKENS_ROUTING_KEY]
                .iter()
                .map(|key| console_queue(ns, key)),
        )
        .chain([ns.dead_queue()])
        .collect()
}

/// Every exchange the worker declares in `ns`.
pub fn exchanges(ns: &Namespace) -> [String; 3] {
    [
        ns.inbound_exchange(),
        ns.events_exchange(),
        ns.dead_exchange(),
    ]
}

/// The console's request queues: classic, bound to `NS.in`; a request nobody
/// took within 10 s expires (its asker has given up). Durable like every
/// queue of the namespace, though they are never worth keeping full.
async fn declare_console(channel: &Channel, config: &TopologyConfig) -> Result<(), lapin::Error> {
    let ns = &config.namespace;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("classic"));
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(10_000));
    for routing_key in [SNAPSHOT_ROUTING_KEY, TOKENS_ROUTING_KEY] {
        let queue = console_queue(ns, routing_key);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args.clone(),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                ns.inbound_exchange().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// The full name of a console queue: `NS.console.snapshot` or
/// `NS.console.tokens`.
pub fn console_queue(namespace: &Namespace, routing_key: &str) -> String {
    format!("{}.{routing_key}", namespace.as_str())
}
