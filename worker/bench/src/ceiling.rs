//! The broker's ceiling: a no-op consumer that does what the worker's
//! consumer does on the AMQP side and nothing else. It takes a batch of up to
//! `prefetch` deliveries (the first awaited, the rest already at hand),
//! publishes a canned reply of the real reply's size to each `reply_to` on
//! the consuming channel (all of a batch's replies in flight at once, as the
//! worker sends them), and acknowledges the batch with one `multiple` ack.
//! The same responder, with a resolve-sized reply, is the echo of
//! [`super::resolve`].

use futures::{FutureExt, StreamExt, future};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::wire::{ConnectedReply, IssuedToken, MessageKind, Scope, SdkAccessToken};
use tokio_util::sync::CancellationToken;

use super::BenchError;
use super::ingest::{Drain, Replies};

/// A consumer that answers every request with the same body.
pub struct NoopResponder {
    channel: Channel,
    consumer: Consumer,
    reply: Vec<u8>,
    max_batch: usize,
}

impl NoopResponder {
    /// Consumes `queue` with `prefetch` on a channel of its own.
    pub async fn start(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        reply: Vec<u8>,
    ) -> Result<Self, BenchError> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "mmt-bench-noop".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            channel,
            consumer,
            reply,
            max_batch: usize::from(prefetch.max(1)),
        })
    }

    /// Answers until `stop` fires (finishing the batch in hand); returns how
    /// many deliveries it acknowledged.
    pub async fn run(mut self, stop: CancellationToken) -> Result<u64, BenchError> {
        let mut acknowledged = 0u64;
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                next = self.consumer.next() => next,
            };
            let Some(first) = next else { break };
            let mut batch = vec![first?];
            while batch.len() < self.max_batch {
                match self.consumer.next().now_or_never() {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            let mut replies = Vec::with_capacity(batch.len());
            for delivery in &batch {
                let Some(reply_to) = delivery.properties.reply_to() else {
                    continue;
                };
                let mut properties =
                    BasicProperties::default().with_content_type("application/json".into());
                if let Some(correlation_id) = delivery.properties.correlation_id() {
                    properties = properties.with_correlation_id(correlation_id.clone());
                }
                replies.push(self.channel.basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    &self.reply,
                    properties,
                ));
            }
            future::try_join_all(replies).await?;
            if let Some(last) = batch.last() {
                last.acker.ack(BasicAckOptions { multiple: true }).await?;
                acknowledged += batch.len() as u64;
            }
        }
        self.channel
            .close(200, "no-op consumer done".into())
            .await?;
        Ok(acknowledged)
    }
}

/// A reply of the size and shape the worker sends for a one-account
/// `integration.connected`.
pub fn connected_reply() -> Result<Vec<u8>, BenchError> {
    let token_id = format!("tok_{}", "0".repeat(32));
    let reply = ConnectedReply {
        ok: true,
        broker_type: "coinbase".into(),
        scope: Scope::Read,
        tokens: vec![IssuedToken {
            token_id: token_id.clone(),
            account_id: format!("cb-{}", "0".repeat(16)),
            created: true,
        }],
        access_tokens: vec![SdkAccessToken::new(&token_id, "coinbase")],
        wallet: false,
    };
    Ok(serde_json::to_vec(&reply)?)
}

/// Drains `expected` preloaded messages from `NS.integration.connected` with
/// the no-op consumer.
pub async fn drain(
    connection: &Connection,
    ns: &Namespace,
    prefetch: u16,
    replies: &mut Replies,
    expected: usize,
) -> Result<Drain, BenchError> {
    let responder = NoopResponder::start(
        connection,
        &ns.queue(MessageKind::IntegrationConnected),
        prefetch,
        connected_reply()?,
    )
    .await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(responder.run(stop.clone()));
    let drained = replies.collect("ceiling", expected).await;
    stop.cancel();
    task.await??;
    drained
}
