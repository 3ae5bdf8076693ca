//! The AMQP edge of one inbound queue: take deliveries in batches, let the
//! [`Service`] decide (on a blocking thread), make the batch durable with one
//! flush while the next batch is applied, dead-letter bad input with
//! publisher confirms, reply, publish events, then acknowledge the batch with
//! one `multiple` ack.

use std::sync::Arc;

use futures::{FutureExt, StreamExt, future};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Confirmation, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, now_millis, rfc3339};
use mmt_shared::wire::MessageKind;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroize;

use crate::events::Events;
use crate::service::{Inbound, Outcome, Service};
use crate::stats::QueueCounters;
use crate::store::StoreError;

/// Why a consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The broker link failed.
    #[error("AMQP")]
    Amqp(#[from] lapin::Error),
    /// The broker did not take an acknowledgement: the channel is gone.
    #[error("the broker did not take the acknowledgement of {queue}: channel lost")]
    AckLost {
        /// The queue.
        queue: String,
    },
    /// The broker cancelled the consumer (its queue was deleted, say).
    #[error("the broker cancelled the consumer of {queue}")]
    Cancelled {
        /// The queue.
        queue: String,
    },
    /// The broker did not confirm a dead letter (`NS.dead` missing?).
    #[error("the broker did not take a dead letter from {queue}")]
    DeadLetterRefused {
        /// The queue.
        queue: String,
    },
    /// A task ended without being asked to.
    #[error("a consumer ended without being asked to")]
    Ended,
    /// The store failed to read or write (disk full, I/O error): sled keeps
    /// failing after that, so the worker stops without acknowledging.
    #[error("store")]
    Store(#[source] StoreError),
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
    /// The queue's delivery limit, where the broker counts deliveries
    /// (`x-delivery-count`); `None` where only `redelivered` is known.
    pub delivery_limit: Option<u32>,
    /// What the console is told about this queue.
    pub counters: Arc<QueueCounters>,
}

/// What became of one delivery of a batch.
enum Handled {
    /// The service answered.
    Answered(Outcome),
    /// Processing failed for this message (a record that does not decode,
    /// a seal that does not open): retried up to the delivery limit.
    Failed(String),
}

/// A batch the service has decided on, not yet answered.
struct Applied {
    batch: Vec<Delivery>,
    handled: Vec<Handled>,
    received_at: UnixMillis,
}

/// An applied batch whose flush is in flight.
struct Pending {
    applied: Applied,
    flush: JoinHandle<Result<usize, StoreError>>,
}

/// The outcome of the pending batch's flush; never resolves without one.
async fn flushed(pending: &mut Option<Pending>) -> Result<Result<usize, StoreError>, JoinError> {
    match pending.as_mut() {
        Some(p) => (&mut p.flush).await,
        None => std::future::pending().await,
    }
}

impl QueueConsumer {
    /// Consumes until `shutdown` fires (finishing the batches in hand) or the
    /// link fails. State-changing queues are pipelined: batch k+1 is taken
    /// and applied while batch k's flush is in flight; batch k is answered
    /// and acknowledged only once its flush has completed, and always before
    /// batch k+1.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut pending: Option<Pending> = None;
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    if let Some(p) = pending.take() {
                        self.complete(p.applied, p.flush.await).await?;
                    }
                    // Unacknowledged prefetched deliveries go back to the queue.
                    self.channel.close(200, "mmt-worker stopping".into()).await?;
                    return Ok(());
                }
                result = flushed(&mut pending) => {
                    if let Some(p) = pending.take() {
                        self.complete(p.applied, result).await?;
                    }
                    continue;
                }
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
            self.counters.received(batch.len());
            let applied = self.apply(batch).await?;
            if let Some(p) = pending.take() {
                self.complete(p.applied, p.flush.await).await?;
            }
            // A repeated message id is answered from the store, and what it
            // answers from must be on disk too (an earlier flush may have
            // failed), so every batch with an answer is flushed, not only
            // applied ones.
            let answered = applied
                .handled
                .iter()
                .any(|h| matches!(h, Handled::Answered(Outcome::Done { .. })));
            if self.kind.mutates() && answered {
                let service = self.service.clone();
                let flush = tokio::spawn(async move { service.store().flush().await });
                pending = Some(Pending { applied, flush });
            } else {
                self.finish(applied).await?;
            }
        }
    }

    /// Lets the service decide on every delivery of a batch: on a blocking
    /// thread for state-changing queues (sealing, sled writes), in place for
    /// reads.
    async fn apply(&self, batch: Vec<Delivery>) -> Result<Applied, ConsumerError> {
        let (service, kind, queue) = (self.service.clone(), self.kind, self.queue.clone());
        if !kind.mutates() {
            // A read (resolve, link) is a sled lookup and one seal opened:
            // a hop to the blocking pool would cost more than the work
            // (measured: resolve at concurrency 4 fell from 0.90x to 0.78x
            // of the echo with it).
            return decide(&service, kind, &queue, batch);
        }
        tokio::task::spawn_blocking(move || decide(&service, kind, &queue, batch))
            .await
            .map_err(|_| ConsumerError::Ended)?
    }

    /// Finishes a batch once its flush has come back.
    async fn complete(
        &self,
        applied: Applied,
        flushed: Result<Result<usize, StoreError>, JoinError>,
    ) -> Result<(), ConsumerError> {
        flushed
            .map_err(|_| ConsumerError::Ended)?
            .map_err(ConsumerError::Store)?;
        self.finish(applied).await
    }

    /// Answers an applied (and, where it changed anything, flushed) batch:
    /// dead-letters bad input (confirmed), replies, publishes events, then
    /// acknowledges: one `multiple` ack, or one by one when a failed message
    /// must go back.
    async fn finish(&self, applied: Applied) -> Result<(), ConsumerError> {
        let Applied {
            mut batch,
            handled,
            received_at,
        } = applied;
        let mut requeue = Vec::new();
        let mut unanswered = Vec::new();
        for (index, (delivery, this)) in batch.iter().zip(&handled).enumerate() {
            match this {
                Handled::Answered(Outcome::Done { .. }) => unanswered.push(index),
                Handled::Answered(Outcome::Invalid { code, reason }) => {
                    self.answer(&batch, &handled, &mut unanswered).await?;
                    self.dead_letter(delivery, reason, Some(*code), received_at)
                        .await?;
                    self.reply(delivery, &Outcome::error_reply(*code, reason))
                        .await?;
                }
                Handled::Answered(Outcome::Refused {
                    code,
                    reason,
                    event,
                    dead_letter,
                }) => {
                    self.answer(&batch, &handled, &mut unanswered).await?;
                    if *dead_letter {
                        self.dead_letter(delivery, reason, Some(*code), received_at)
                            .await?;
                    }
                    self.reply(delivery, &Outcome::error_reply(*code, reason))
                        .await?;
                    self.events.emit(event).await;
                }
                Handled::Failed(reason) => {
                    self.answer(&batch, &handled, &mut unanswered).await?;
                    if self.exhausted(delivery) {
                        let reason = format!("processing failed on every delivery: {reason}");
                        self.dead_letter(delivery, &reason, None, received_at)
                            .await?;
                    } else {
                        requeue.push(index);
                    }
                }
            }
        }
        self.answer(&batch, &handled, &mut unanswered).await?;
        self.acknowledge(&batch, &requeue).await?;
        self.counters
            .acked(batch.len() - requeue.len(), received_at);
        for delivery in &mut batch {
            delivery.data.zeroize();
        }
        Ok(())
    }

    /// Sends the replies, then the events, of the answered deliveries at
    /// `indices`, all in flight at once and in order: a publish resolves only
    /// once lapin's I/O thread has written it, so awaiting them one by one
    /// costs a thread hand-off per message.
    async fn answer(
        &self,
        batch: &[Delivery],
        handled: &[Handled],
        indices: &mut Vec<usize>,
    ) -> Result<(), lapin::Error> {
        let mut replies = Vec::with_capacity(indices.len());
        let mut events = Vec::new();
        for &index in indices.iter() {
            if let (
                Some(delivery),
                Some(Handled::Answered(Outcome::Done {
                    reply,
                    events: emitted,
                    ..
                })),
            ) = (batch.get(index), handled.get(index))
            {
                replies.push(self.reply(delivery, reply));
                events.extend(emitted.iter().map(|event| self.events.emit(event)));
            }
        }
        indices.clear();
        future::try_join_all(replies).await?;
        future::join_all(events).await;
        Ok(())
    }

    /// Whether a failed delivery has had its last try.
    fn exhausted(&self, delivery: &Delivery) -> bool {
        match self.delivery_limit {
            Some(limit) => {
                let count = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-delivery-count"))
                    .and_then(amqp_count)
                    .unwrap_or(0);
                count.saturating_add(1) >= u64::from(limit)
            }
            None => delivery.redelivered,
        }
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        code: Option<mmt_shared::wire::ErrorCode>,
        at: mmt_shared::time_fmt::UnixMillis,
    ) -> Result<(), ConsumerError> {
        if !self.dead.send(delivery, &self.queue, reason).await? {
            return Err(ConsumerError::DeadLetterRefused {
                queue: self.queue.clone(),
            });
        }
        self.counters
            .dead_lettered(&self.queue, delivery, reason, code, at);
        let mut event = Event::new(EventKind::MessageDeadLettered, rfc3339(at));
        event.queue = Some(self.queue.clone());
        event.reason = Some(reason.to_owned());
        event.code = code;
        event.message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string());
        event.broker_user = delivery
            .properties
            .user_id()
            .as_ref()
            .map(|u| u.to_string());
        self.events.emit(&event).await;
        Ok(())
    }

    /// Acknowledges the batch: one `multiple` ack when nothing goes back,
    /// else each delivery alone (the ones in `requeue` are returned).
    async fn acknowledge(
        &self,
        batch: &[Delivery],
        requeue: &[usize],
    ) -> Result<(), ConsumerError> {
        let lost = || ConsumerError::AckLost {
            queue: self.queue.clone(),
        };
        if requeue.is_empty() {
            if let Some(last) = batch.last()
                && !last.acker.ack(BasicAckOptions { multiple: true }).await?
            {
                return Err(lost());
            }
            return Ok(());
        }
        for (index, delivery) in batch.iter().enumerate() {
            let taken = if requeue.contains(&index) {
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await?
            } else {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: false })
                    .await?
            };
            if !taken {
                return Err(lost());
            }
        }
        Ok(())
    }

    async fn reply(&self, delivery: &Delivery, body: &[u8]) -> Result<(), lapin::Error> {
        crate::rpc::answer(&self.channel, delivery, body).await
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

/// The service's decision on every delivery of a batch.
fn decide(
    service: &Service,
    kind: MessageKind,
    queue: &str,
    batch: Vec<Delivery>,
) -> Result<Applied, ConsumerError> {
    let received_at = now_millis();
    let mut handled = Vec::with_capacity(batch.len());
    for delivery in &batch {
        let inbound = Inbound {
            kind,
            body: &delivery.data,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str()),
            timestamp: *delivery.properties.timestamp(),
            received_at,
            user_id: delivery.properties.user_id().as_ref().map(|u| u.as_str()),
        };
        match service.handle(&inbound) {
            Ok(outcome) => handled.push(Handled::Answered(outcome)),
            Err(error) if error.is_transient() => return Err(ConsumerError::Store(error)),
            Err(error) => {
                tracing::error!(%queue, error = &error as &dyn std::error::Error, "processing failed");
                handled.push(Handled::Failed(error.to_string()));
            }
        }
    }
    Ok(Applied {
        batch,
        handled,
        received_at,
    })
}

fn amqp_count(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        _ => None,
    }
}
