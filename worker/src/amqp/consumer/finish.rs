//! The second half of a consumer: makes decided batches durable, then
//! answers them (dead letters, replies, events) and acknowledges them, in the
//! order they were taken.
//!
//! For the state-changing queues this runs as a task of its own, fed by the
//! reader: one flush covers every batch decided since the last one (a group
//! commit), so the flushes per message fall as the load rises, and the reader
//! decides the next batches while a group is being flushed and answered.

use std::sync::Arc;
use std::time::Instant;

use futures::future;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::ErrorCode;
use tokio::sync::mpsc;
use zeroize::Zeroize;

use super::dead::DeadLetters;
use super::{Applied, ConsumerError, Handled};
use crate::amqp::events::Events;
use crate::counters::queue::{Outcome as Ended, QueueCounters};
use crate::service::{Outcome, Service};

/// What answers and acknowledges one queue's batches.
pub(super) struct Finisher {
    pub(super) queue: String,
    pub(super) channel: Channel,
    pub(super) dead: DeadLetters,
    pub(super) events: Events,
    pub(super) service: Arc<Service>,
    pub(super) delivery_limit: Option<u32>,
    pub(super) counters: Arc<QueueCounters>,
}

impl Finisher {
    /// Takes every batch decided so far, flushes once if any changed or
    /// answered anything, then finishes them in order; until the reader
    /// hangs up and nothing is left.
    pub(super) async fn run(
        self,
        mut decided: mpsc::Receiver<Applied>,
    ) -> Result<(), ConsumerError> {
        let mut group = Vec::new();
        while let Some(first) = decided.recv().await {
            group.push(first);
            while let Ok(more) = decided.try_recv() {
                group.push(more);
            }
            let started = Instant::now();
            let flushed = group.iter().any(|applied| applied.needs_flush(true));
            if flushed {
                self.service
                    .store()
                    .flush()
                    .await
                    .map_err(ConsumerError::Store)?;
            }
            let flush_us = started.elapsed().as_micros();
            let batches = group.len();
            let mut messages = 0;
            for applied in group.drain(..) {
                messages += applied.batch.len();
                self.finish(applied).await?;
            }
            tracing::trace!(
                queue = %self.queue,
                batches,
                messages,
                flushed,
                flush_us,
                total_us = started.elapsed().as_micros(),
                "group finished"
            );
        }
        Ok(())
    }

    /// Answers a decided (and, where it changed anything, flushed) batch:
    /// dead-letters bad input (confirmed), replies, publishes events, then
    /// acknowledges: one `multiple` ack, or one by one when a failed message
    /// must go back.
    pub(super) async fn finish(&self, applied: Applied) -> Result<(), ConsumerError> {
        let Applied {
            mut batch,
            handled,
            received_at,
            taken,
        } = applied;
        let mut requeue = Vec::new();
        let mut unanswered = Vec::new();
        for (index, (delivery, this)) in batch.iter().zip(&handled).enumerate() {
            match this {
                Handled::Answered(Outcome::Done { .. }) => unanswered.push(index),
                Handled::Answered(Outcome::Invalid {
                    code,
                    reason,
                    client_id,
                }) => {
                    self.answer(&batch, &handled, &mut unanswered).await?;
                    let claimed = client_id.as_deref();
                    self.dead_letter(delivery, reason, Some(*code), claimed, received_at)
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
                        let claimed = event.client_id.as_deref();
                        self.dead_letter(delivery, reason, Some(*code), claimed, received_at)
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
                        self.dead_letter(delivery, &reason, None, None, received_at)
                            .await?;
                    } else {
                        requeue.push(index);
                    }
                }
            }
        }
        self.answer(&batch, &handled, &mut unanswered).await?;
        let answered = taken.elapsed();
        self.acknowledge(&batch, &requeue).await?;
        self.counters
            .acked(batch.len() - requeue.len(), received_at, answered);
        for (delivery, this) in batch.iter().zip(&handled) {
            self.counters
                .ended(ended(this, || self.exhausted(delivery)));
        }
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
        code: Option<ErrorCode>,
        client_id: Option<&str>,
        at: UnixMillis,
    ) -> Result<(), ConsumerError> {
        if !self.dead.send(delivery, &self.queue, reason).await? {
            return Err(ConsumerError::DeadLetterRefused {
                queue: self.queue.clone(),
            });
        }
        self.counters
            .dead_lettered(&self.queue, delivery, reason, code, client_id, at);
        let mut event = Event::new(EventKind::MessageDeadLettered, rfc3339(at));
        event.queue = Some(self.queue.clone());
        event.reason = Some(reason.to_owned());
        event.code = code;
        event.client_id = client_id.map(str::to_owned);
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
        crate::amqp::rpc::answer(&self.channel, delivery, body).await
    }
}

/// What became of one delivery, for the counters: `exhausted` tells
/// whether a failed one had its last try.
fn ended(handled: &Handled, exhausted: impl FnOnce() -> bool) -> Ended {
    match handled {
        Handled::Answered(Outcome::Done {
            events, applied, ..
        }) => {
            if events.iter().any(|e| e.kind == EventKind::RequestRejected) {
                Ended::Rejected
            } else if *applied {
                Ended::Applied
            } else {
                Ended::Replayed
            }
        }
        Handled::Answered(Outcome::Invalid { .. }) => Ended::DeadLettered,
        Handled::Answered(Outcome::Refused { dead_letter, .. }) => {
            if *dead_letter {
                Ended::DeadLettered
            } else {
                Ended::Rejected
            }
        }
        Handled::Failed(_) if exhausted() => Ended::DeadLettered,
        Handled::Failed(_) => Ended::Requeued,
    }
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
