//! Request/reply: an answer goes to the default exchange with the request's
//! `reply_to` as routing key and its `correlation_id` (CONTRACT.md §3), which
//! also serves RabbitMQ's direct reply-to.

use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};

/// RabbitMQ's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Consumes the answers to requests sent on `channel` with `reply_to` set to
/// [`DIRECT_REPLY_TO`] (no acks: direct reply-to has none).
pub async fn direct_replies(channel: &Channel) -> Result<Consumer, lapin::Error> {
    channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Sends `body` as the answer to `request` on `channel`; nothing when the
/// request asked for no answer.
pub async fn answer(
    channel: &Channel,
    request: &Delivery,
    body: &[u8],
) -> Result<(), lapin::Error> {
    let Some(reply_to) = request.properties.reply_to() else {
        return Ok(());
    };
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(correlation_id) = request.properties.correlation_id() {
        properties = properties.with_correlation_id(correlation_id.clone());
    }
    channel
        .basic_publish(
            "".into(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?;
    Ok(())
}
