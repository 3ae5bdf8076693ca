//! The AMQP edge of one inbound queue: take deliveries in batches, let the
//! [`Service`] decide, make the batch durable with one flush, dead-letter bad
//! input with publisher confirms, reply, publish events, then acknowledge the
//! batch with one `multiple` ack.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Confirmation, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{now_millis, rfc3339};
use mmt_shared::wire::MessageKind;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroize;

use crate::events::Events;
use crate::service::{Inbound, Outcome, Service};
use crate::store::StoreError;

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The broker link failed.
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker did not take an acknowledgement: the channel is gone.
    #[error("the broker did not take the acknowledgement of {queue}: channel lost")]
    AckLost {
        /// The queue.
        queue: String,
    },
    /// The broker cancelled the consumer (queue deleted).
    #[error("the broker cancelled the consumer of {queue}")]
    Cancelled {
        /// The queue.
        queue: String,
    },
}

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
        let properties = delivery.properties.clone().with_headers(headers);
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

/// One inbound queue's consumer.
pub struct QueueConsumer {
    /// Which messages the queue holds.
    pub kind: MessageKind,
    /// The queue's full name.
    pub queue: String,
    /// The channel the consumer, its acks and its replies use.
    pub channel: Channel,
    /// The delivery stream.
    pub consumer: Consumer,
    /// Where bad input goes.
    pub dead: DeadLetters,
    /// Where events go.
    pub events: Events,
    /// The rules and the store.
    pub service: Arc<Service>,
    /// The largest batch taken at once.
    pub max_batch: usize,
}

impl QueueConsumer {
    /// Consumes until `shutdown` fires (finishing the batch in hand) or the
    /// link fails.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut failures: u32 = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                next = self.consumer.next() => next,
            };
            let Some(first) = next else {
                return if shutdown.is_cancelled() {
                    Ok(())
                } else {
                    Err(ConsumerError::Cancelled {
                        queue: self.queue.clone(),
                    })
                };
            };
            let mut batch = vec![first?];
            while batch.len() < self.max_batch {
                match self.consumer.next().now_or_never() {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            let finished = self.process(&mut batch).await?;
            if finished < batch.len() {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(50u64 << failures.min(7));
                tracing::warn!(queue = %self.queue, retry_in_ms = backoff.as_millis() as u64, "store failure, messages returned to the queue");
                tokio::time::sleep(backoff).await;
                if let Some(last) = batch.last() {
                    last.acker
                        .nack(BasicNackOptions {
                            multiple: true,
                            requeue: true,
                        })
                        .await?;
                }
            } else {
                failures = 0;
            }
            for delivery in &mut batch {
                delivery.data.zeroize();
            }
        }
    }

    /// Handles a batch; returns how many deliveries, from the first, are
    /// finished and acknowledged (the rest must be returned to the queue).
    async fn process(&self, batch: &mut [Delivery]) -> Result<usize, ConsumerError> {
        let received_at = now_millis();
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch.iter() {
            let inbound = Inbound {
                kind: self.kind,
                body: &delivery.data,
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str()),
                timestamp: *delivery.properties.timestamp(),
                received_at,
            };
            match self.service.handle(&inbound) {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    log_store_error(&self.queue, &error);
                    break;
                }
            }
        }
        // A repeated message id is answered from the store, and what it
        // answers from must be on disk too (an earlier flush may have failed),
        // so every batch with an answer is flushed, not only applied ones.
        let answered = outcomes.iter().any(|o| matches!(o, Outcome::Done { .. }));
        if self.kind.mutates()
            && answered
            && let Err(error) = self.service.store().flush().await
        {
            log_store_error(&self.queue, &error);
            return Ok(0);
        }
        let mut finished: usize = 0;
        let mut unanswered = 0;
        for (index, (delivery, outcome)) in batch.iter().zip(&outcomes).enumerate() {
            if let Outcome::Invalid { code, reason } = outcome {
                self.answer(&batch[unanswered..index], &outcomes[unanswered..index])
                    .await?;
                unanswered = index;
                if !self.dead.send(delivery, &self.queue, reason).await? {
                    tracing::error!(queue = %self.queue, "dead letter not confirmed by the broker");
                    break;
                }
                self.reply(delivery, &Outcome::error_reply(*code, reason))
                    .await?;
                let mut event = Event::new(EventKind::MessageDeadLettered, rfc3339(received_at));
                event.queue = Some(self.queue.clone());
                event.reason = Some(reason.clone());
                event.code = Some(*code);
                event.message_id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string());
                self.events.emit(&event).await;
                unanswered = index + 1;
            }
            finished += 1;
        }
        self.answer(
            &batch[unanswered..finished],
            &outcomes[unanswered..finished],
        )
        .await?;
        if let Some(last) = finished.checked_sub(1).and_then(|i| batch.get(i)) {
            let taken = last.acker.ack(BasicAckOptions { multiple: true }).await?;
            if !taken {
                return Err(ConsumerError::AckLost {
                    queue: self.queue.clone(),
                });
            }
        }
        Ok(finished)
    }

    /// Sends the replies, then the events, of consecutive answered
    /// deliveries, each group in flight at once and in order: a publish
    /// resolves only once lapin's I/O thread has written it, so awaiting them
    /// one by one costs a thread hand-off per message.
    async fn answer(
        &self,
        deliveries: &[Delivery],
        outcomes: &[Outcome],
    ) -> Result<(), lapin::Error> {
        let mut replies = Vec::with_capacity(deliveries.len());
        let mut events = Vec::new();
        for (delivery, outcome) in deliveries.iter().zip(outcomes) {
            if let Outcome::Done {
                reply,
                events: emitted,
                ..
            } = outcome
            {
                replies.push(self.reply(delivery, reply));
                events.extend(emitted.iter().map(|event| self.events.emit(event)));
            }
        }
        future::try_join_all(replies).await?;
        future::join_all(events).await;
        Ok(())
    }

    async fn reply(&self, delivery: &Delivery, body: &[u8]) -> Result<(), lapin::Error> {
        let Some(reply_to) = delivery.properties.reply_to() else {
            return Ok(());
        };
        let mut properties =
            BasicProperties::default().with_content_type("application/json".into());
        if let Some(correlation_id) = delivery.properties.correlation_id() {
            properties = properties.with_correlation_id(correlation_id.clone());
        }
        self.channel
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
}

fn log_store_error(queue: &str, error: &StoreError) {
    tracing::error!(queue, %error, transient = error.is_transient(), "store failure");
}
