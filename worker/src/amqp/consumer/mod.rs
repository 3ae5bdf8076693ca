//! The AMQP edge of one inbound queue: take deliveries in batches, let the
//! [`Service`] decide (on a blocking thread for the state-changing queues),
//! make them durable with one flush per group of batches, dead-letter bad
//! input with publisher confirms, reply, publish events, then acknowledge
//! each batch with one `multiple` ack.
//!
//! A state-changing queue runs as two tasks: this reader takes and decides
//! batches while the [`finish`] task flushes and answers the ones decided
//! before, in order.

mod dead;
mod finish;

use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::{Channel, Consumer};
use mmt_shared::time_fmt::{UnixMillis, now_millis};
use mmt_shared::wire::MessageKind;
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

pub use self::dead::DeadLetters;
use self::finish::Finisher;
use crate::amqp::events::Events;
use crate::counters::queue::QueueCounters;
use crate::service::{Inbound, Outcome, Service};
use crate::store::StoreError;

/// Decided batches waiting for the finisher at most (the prefetch bounds
/// them anyway).
const DECIDED_QUEUE: usize = 16;

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
    /// The store failed to read or write (disk full, I/O error): the engine
    /// refuses every later write after that, so the worker stops without
    /// acknowledging.
    #[error("store")]
    Store(#[source] StoreError),
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
    /// When the service started on the batch (its deliveries' durations run
    /// from here to their replies).
    taken: Instant,
}

impl Applied {
    /// Whether the batch must be on disk before it is answered. A refusal
    /// or bad input wrote its audit line, on any queue. On a queue that
    /// `mutates`, a repeated message id is answered from the store, and
    /// what it answers from must be on disk too (an earlier flush may have
    /// failed), so every batch with an answer is flushed, not only applied
    /// ones; a read's answer changed nothing.
    fn needs_flush(&self, mutates: bool) -> bool {
        self.handled.iter().any(|h| match h {
            Handled::Answered(Outcome::Done { .. }) => mutates,
            Handled::Answered(Outcome::Invalid { .. } | Outcome::Refused { .. }) => true,
            Handled::Failed(_) => false,
        })
    }
}

/// The part of a consumer that takes and decides batches.
struct Reader {
    kind: MessageKind,
    queue: String,
    consumer: Consumer,
    service: Arc<Service>,
    max_batch: usize,
    counters: Arc<QueueCounters>,
}

impl QueueConsumer {
    /// Consumes until `shutdown` fires (finishing the batches in hand) or the
    /// link fails. Every batch is answered and acknowledged in the order it
    /// was taken, and on a state-changing queue only once a flush that
    /// started after it was decided has completed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let channel = self.channel.clone();
        let (reader, finisher) = self.split();
        if reader.kind.mutates() {
            reader.pipelined(finisher, &shutdown).await?;
        } else {
            reader.in_place(&finisher, &shutdown).await?;
        }
        // Unacknowledged prefetched deliveries go back to the queue.
        channel.close(200, "mmt-worker stopping".into()).await?;
        Ok(())
    }

    fn split(self) -> (Reader, Finisher) {
        let reader = Reader {
            kind: self.kind,
            queue: self.queue.clone(),
            consumer: self.consumer,
            service: self.service.clone(),
            max_batch: self.max_batch,
            counters: self.counters.clone(),
        };
        let finisher = Finisher {
            queue: self.queue,
            channel: self.channel,
            dead: self.dead,
            events: self.events,
            service: self.service,
            delivery_limit: self.delivery_limit,
            counters: self.counters,
        };
        (reader, finisher)
    }
}

impl Reader {
    /// Reads (resolve, link): each batch decided and answered in place (a
    /// hop to another task or to the blocking pool would cost more than the
    /// work: measured, resolve at concurrency 4 fell from 0.90x to 0.78x of
    /// the echo with the blocking pool). Returns once asked to stop.
    async fn in_place(
        mut self,
        finisher: &Finisher,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        while let Some(batch) = self.take(shutdown).await? {
            let applied = decide(&self.service, self.kind, &self.queue, batch)?;
            if applied.needs_flush(false) {
                self.service
                    .store()
                    .flush()
                    .await
                    .map_err(ConsumerError::Store)?;
            }
            finisher.finish(applied).await?;
        }
        Ok(())
    }

    /// State changes: batches decided here on the blocking pool, flushed and
    /// answered by the finisher task meanwhile. Returns once asked to stop
    /// and every decided batch is finished; on a failure the finisher is
    /// stopped too (what it had not acknowledged is delivered again).
    async fn pipelined(
        self,
        finisher: Finisher,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        let (decided, to_finish) = mpsc::channel(DECIDED_QUEUE);
        let mut finishing = tokio::spawn(finisher.run(to_finish));
        let reading = self.feed(decided, shutdown);
        tokio::pin!(reading);
        let read = tokio::select! {
            read = &mut reading => read,
            finished = &mut finishing => return Err(ended(finished)),
        };
        match read {
            // The reader hung up: the finisher finishes what is left.
            Ok(()) => finishing
                .await
                .map_err(|_| ConsumerError::Ended)
                .and_then(|r| r),
            // A finisher that failed first has the better error.
            Err(_) if finishing.is_finished() => Err(ended(finishing.await)),
            Err(error) => {
                finishing.abort();
                Err(error)
            }
        }
    }

    /// Takes and decides batches, handing each to the finisher, until asked
    /// to stop.
    async fn feed(
        mut self,
        decided: mpsc::Sender<Applied>,
        shutdown: &CancellationToken,
    ) -> Result<(), ConsumerError> {
        while let Some(batch) = self.take(shutdown).await? {
            let (service, kind, queue) = (self.service.clone(), self.kind, self.queue.clone());
            let started = Instant::now();
            let messages = batch.len();
            let applied =
                tokio::task::spawn_blocking(move || decide(&service, kind, &queue, batch))
                    .await
                    .map_err(|_| ConsumerError::Ended)??;
            tracing::trace!(queue = %self.queue, messages, decide_us = started.elapsed().as_micros(), "batch decided");
            decided
                .send(applied)
                .await
                .map_err(|_| ConsumerError::Ended)?;
        }
        Ok(())
    }

    /// The next batch: the first delivery awaited, then those already at
    /// hand, up to `max_batch`; `None` once asked to stop.
    async fn take(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Delivery>>, ConsumerError> {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(None),
            next = self.consumer.next() => next,
        };
        let Some(first) = next else {
            return if shutdown.is_cancelled() {
                Ok(None)
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
        Ok(Some(batch))
    }
}

/// The error of a finisher that ended before the reader hung up.
fn ended(finished: Result<Result<(), ConsumerError>, JoinError>) -> ConsumerError {
    match finished {
        Ok(Err(error)) => error,
        Ok(Ok(())) | Err(_) => ConsumerError::Ended,
    }
}

/// The service's decision on every delivery of a batch.
fn decide(
    service: &Service,
    kind: MessageKind,
    queue: &str,
    batch: Vec<Delivery>,
) -> Result<Applied, ConsumerError> {
    let received_at = now_millis();
    let taken = Instant::now();
    let inbound: Vec<Inbound<'_>> = batch
        .iter()
        .map(|delivery| Inbound {
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
        })
        .collect();
    let mut handled = Vec::with_capacity(batch.len());
    for result in service.handle_batch(&inbound) {
        match result {
            Ok(outcome) => handled.push(Handled::Answered(outcome)),
            Err(error) if error.is_transient() => return Err(ConsumerError::Store(error)),
            Err(error) => {
                tracing::error!(%queue, error = &error as &dyn std::error::Error, "processing failed");
                handled.push(Handled::Failed(error.to_string()));
            }
        }
    }
    drop(inbound);
    Ok(Applied {
        batch,
        handled,
        received_at,
        taken,
    })
}
