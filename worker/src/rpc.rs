//! Request/reply: an answer goes to the default exchange with the request's
//! `reply_to` as routing key and its `correlation_id` (CONTRACT.md §3), which
//! also serves RabbitMQ's direct reply-to.

use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

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
