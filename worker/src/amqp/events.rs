//! Publishes [`Event`]s on `NS.events`, and logs each one with the same
//! fields (never a secret: an event has no field that could hold one).

use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use mmt_shared::config::Namespace;
use mmt_shared::console::WorkerStats;
use mmt_shared::events::{Event, EventKind};

/// What is told of every event published (the layer above implements it:
/// this one does not know who counts).
pub trait Observer: Send + Sync {
    /// `event` is being published.
    fn observe(&self, event: &Event);
}

/// The publisher of events.
#[derive(Clone)]
pub struct Events {
    channel: Channel,
    exchange: String,
    observer: Option<Arc<dyn Observer>>,
}

impl Events {
    /// Events go out on `channel` to `NS.events`.
    pub fn new(channel: Channel, namespace: &Namespace) -> Self {
        Self {
            channel,
            exchange: namespace.events_exchange(),
            observer: None,
        }
    }

    /// Also hands every event to `observer` (the counters and recent events
    /// of `worker.stats`).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Logs and publishes one event. Events are telemetry: a failure to
    /// publish is logged, never fatal to the message that caused it.
    pub async fn emit(&self, event: &Event) {
        if matches!(
            event.kind,
            EventKind::TokenIssued
                | EventKind::TokenRotated
                | EventKind::TokenReconnected
                | EventKind::TokenRefreshed
        ) {
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
        if let Some(observer) = &self.observer {
            observer.observe(event);
        }
        self.publish(event).await;
    }

    /// Publishes a `worker.stats` body (not logged: it comes every second).
    pub async fn emit_stats(&self, stats: &WorkerStats) {
        match serde_json::to_vec(stats) {
            Ok(body) => self.send(EventKind::WorkerStats.routing_key(), &body).await,
            Err(error) => tracing::error!(%error, "worker.stats did not serialize"),
        }
    }

    /// Refusals, revocations, expiries and dead letters are worth a line at
    /// `info`; issuing, rotating and refreshing (the bulk of a busy day) only
    /// at `debug`.
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
        self.send(event.kind.routing_key(), &body).await;
    }

    async fn send(&self, routing_key: &str, body: &[u8]) {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Err(error) = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
        {
            tracing::warn!(%error, event = routing_key, "event not published");
        }
    }
}
