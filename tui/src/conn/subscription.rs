//! The console's events queue: exclusive, capped at the broker, its
//! overflow (drop-head) dead-lettered through the default exchange to a
//! second exclusive queue that the feed counts, so "dropped" in the header
//! includes what the broker dropped.

use lapin::Channel;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use mmt_shared::config::Namespace;

/// The console's two exclusive queues.
pub struct Subscription {
    /// Bound to every event; at most `max_length` waiting.
    pub events: String,
    /// Where the broker dead-letters what the cap drops (drop-head), to be
    /// counted.
    pub overflow: String,
}

/// Declares the events queue, capped at `max_length` with its overflow
/// dead-lettered (through the default exchange) to a queue of its own.
pub async fn subscribe(
    channel: &Channel,
    ns: &Namespace,
    max_length: i64,
) -> Result<Subscription, lapin::Error> {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let overflow = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await?;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(max_length));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(overflow.name().as_str().into()),
    );
    let events = channel.queue_declare("".into(), exclusive, args).await?;
    channel
        .queue_bind(
            events.name().clone(),
            ns.events_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(Subscription {
        events: events.name().as_str().to_owned(),
        overflow: overflow.name().as_str().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        ExchangeDeleteOptions,
    };
    use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

    use super::*;

    /// Through the real broker: with the cap at 3, publishing 10 events
    /// while nothing consumes drops 7 at the broker, and all 7 reach the
    /// overflow queue, where the feed counts them.
    #[tokio::test]
    async fn what_the_broker_drops_from_the_capped_events_queue_is_counted() {
        let url = std::env::var("MMT_AMQP_URL")
            .unwrap_or_else(|_| mmt_shared::config::DEFAULT_AMQP_URL.to_owned());
        let name = format!("tui-overflow-{}", uuid::Uuid::new_v4().simple());
        let ns = Namespace::new(&name).expect("valid namespace");
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("the broker answers on MMT_AMQP_URL (is RabbitMQ running?)");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                ns.events_exchange().as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        let queues = subscribe(&channel, &ns, 3).await.expect("subscribed");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for i in 0..10 {
            channel
                .basic_publish(
                    ns.events_exchange().as_str().into(),
                    "token.issued".into(),
                    BasicPublishOptions::default(),
                    format!("{{\"n\":{i}}}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("published")
                .await
                .expect("confirmed");
        }
        let mut overflow = channel
            .basic_consume(
                queues.overflow.as_str().into(),
                "overflow-test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut counted = 0;
        while counted < 7 {
            tokio::time::timeout(Duration::from_secs(10), overflow.next())
                .await
                .expect("every drop is dead-lettered in time")
                .expect("stream open")
                .expect("delivery");
            counted += 1;
        }
        let events = channel
            .queue_declare(
                queues.events.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("events queue");
        assert_eq!(events.message_count(), 3, "the newest 3 stay");
        channel
            .exchange_delete(
                ns.events_exchange().as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .expect("exchange deleted");
        let _ = connection.close(200, "test done".into()).await;
    }
}
