//! Dead letters: a delivery's body unchanged on `NS.dead`, with why and
//! where it came from, published with a publisher confirm.

use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Confirmation};
use mmt_shared::config::Namespace;

/// Publishes dead letters to `NS.dead` on a channel in confirm mode.
#[derive(Clone)]
pub struct DeadLetters {
    channel: Channel,
    exchange: String,
}

impl DeadLetters {
    /// `channel` must be in confirm mode.
    pub fn new(channel: Channel, namespace: &Namespace) -> Self {
        Self {
            channel,
            exchange: namespace.dead_exchange(),
        }
    }

    /// Sends the delivery's body unchanged, with its properties and the
    /// `x-mmt-error` and `x-mmt-queue` headers; true once the broker has
    /// confirmed it.
    pub async fn send(
        &self,
        delivery: &Delivery,
        queue: &str,
        reason: &str,
    ) -> Result<bool, lapin::Error> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert("x-mmt-error".into(), AMQPValue::LongString(reason.into()));
        headers.insert("x-mmt-queue".into(), AMQPValue::LongString(queue.into()));
        if let Some(user) = delivery.properties.user_id() {
            headers.insert(
                "x-mmt-user-id".into(),
                AMQPValue::LongString(user.as_str().into()),
            );
        }
        let properties = without_user_id(&delivery.properties).with_headers(headers);
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                delivery.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        Ok(matches!(confirm, Confirmation::Ack(None)))
    }
}

/// The properties without `user_id`: the broker refuses a publish whose
/// `user_id` is not the publishing connection's user, so a dead letter keeps
/// the original publisher in the `x-mmt-user-id` header instead.
fn without_user_id(p: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    macro_rules! copy {
        ($($get:ident => $set:ident),*) => {
            $(if let Some(v) = p.$get() { out = out.$set(v.clone()); })*
        };
    }
    copy!(
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        headers => with_headers,
        delivery_mode => with_delivery_mode,
        priority => with_priority,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        expiration => with_expiration,
        message_id => with_message_id,
        timestamp => with_timestamp,
        kind => with_type,
        app_id => with_app_id,
        cluster_id => with_cluster_id
    );
    out
}
