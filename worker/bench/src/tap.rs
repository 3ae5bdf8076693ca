//! A queue of the bench's own: exclusive (deleted with its channel), bound
//! to an exchange under some routing keys, consumed without
//! acknowledgements. The replies, the stats and the events the phases read
//! all come in on one.

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

use super::BenchError;

/// Declares the queue on `channel`, binds it to `exchange` under each of
/// `keys` (none: a queue addressed by its name alone) and consumes it as
/// `tag`; gives its name and the consumer.
pub async fn consume(
    channel: &Channel,
    exchange: &str,
    keys: &[&str],
    tag: &str,
) -> Result<(String, Consumer), BenchError> {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for key in keys {
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            tag.into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((queue.name().to_string(), consumer))
}
