//! Publishes [`Event`]s on `NS.events`, and logs each one with the same
//! fields (never a secret: an event has no field that could hold one).

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use mmt_shared::config::Namespace;
use mmt_shared::events::{Event, EventKind};

/// The publisher of events.
#[derive(Clone)]
pub struct Events {
    channel: Channel,
    exchange: String,
}

impl Events {
    /// Events go out on `channel` to `NS.events`.
    pub fn new(channel: Channel, namespace: &Namespace) -> Self {
        Self {
            channel,
            exchange: namespace.events_exchange(),
        }
    }

    /// Logs and publishes one event. Events are telemetry: a failure to
    /// publish is logged, never fatal to the message that caused it.
    pub async fn emit(&self, event: &Event) {
        if matches!(event.kind, EventKind::TokenIssued | EventKind::TokenRotated) {
            tracing::debug!(
                event = event.kind.routing_key(),
                token_id = event.token_id.as_deref(),
                client_id = event.client_id.as_deref(),
                broker_type = event.broker_type.as_deref(),
                "event"
            );
        } else {
            self.log(event);
        }
        self.publish(event).await;
    }

    /// Refusals, revocations, expiries and dead letters are worth a line at
    /// `info`; issuing and rotating (the bulk of a busy day) only at `debug`.
    fn log(&self, event: &Event) {
        tracing::info!(
            event = event.kind.routing_key(),
            token_id = event.token_id.as_deref(),
            client_id = event.client_id.as_deref(),
            broker_type = event.broker_type.as_deref(),
            scope = event.scope.map(|s| s.as_str()),
            state = event.state.map(|s| s.as_str()),
            code = event.code.map(|c| c.as_str()),
            reason = event.reason.as_deref(),
            "event"
        );
    }

    async fn publish(&self, event: &Event) {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "event did not serialize");
                return;
            }
        };
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Err(error) = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                event.kind.routing_key().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
        {
            tracing::warn!(%error, event = event.kind.routing_key(), "event not published");
        }
    }
}
