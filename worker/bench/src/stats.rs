//! A worker child's `worker.stats` (published once a second), on a queue of
//! the bench's own bound to the namespace's events exchange: the purge and
//! rewrap phases wait on them for what the worker says it has done.

use std::time::Duration;

use futures::StreamExt;
use lapin::{Channel, Connection, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::console::WorkerStats;
use mmt_shared::events::EventKind;

use super::BenchError;
use super::child::WorkerChild;
use super::tap;

/// The `worker.stats` of one namespace.
pub struct StatsTap {
    channel: Channel,
    consumer: Consumer,
}

impl StatsTap {
    /// Binds an exclusive queue to `ns`'s `worker.stats`; `tag` names the
    /// consumer.
    pub async fn bind(
        connection: &Connection,
        ns: &Namespace,
        tag: &str,
    ) -> Result<Self, BenchError> {
        let channel = connection.create_channel().await?;
        let (_, consumer) = tap::consume(
            &channel,
            &ns.events_exchange(),
            &[EventKind::WorkerStats.routing_key()],
            tag,
        )
        .await?;
        Ok(Self { channel, consumer })
    }

    /// What `pick` finds in the first `worker.stats` within `patience` for
    /// which it finds anything; an error naming `what` when none comes in
    /// time, or when the worker exits first.
    pub async fn until<T>(
        &mut self,
        worker: &mut WorkerChild,
        patience: Duration,
        what: &str,
        mut pick: impl FnMut(&WorkerStats) -> Option<T>,
    ) -> Result<T, BenchError> {
        let wait = async {
            while let Some(delivery) = self.consumer.next().await {
                let delivery = delivery?;
                let Ok(stats) = serde_json::from_slice::<WorkerStats>(&delivery.data) else {
                    continue;
                };
                if let Some(found) = pick(&stats) {
                    return Ok(found);
                }
            }
            Err(BenchError::Child("the stats queue was closed".into()))
        };
        let exited = tokio::select! {
            seen = tokio::time::timeout(patience, wait) => {
                return seen.map_err(|_| BenchError::Child(format!(
                    "no worker.stats with {what} within {patience:?}: {}",
                    worker.tail()
                )))?;
            }
            status = worker.child.wait() => status.map_or_else(|e| e.to_string(), |s| s.to_string()),
        };
        Err(BenchError::Child(format!(
            "exited ({exited}): {}",
            worker.tail()
        )))
    }

    /// Closes the queue's channel.
    pub async fn close(self) -> Result<(), BenchError> {
        self.channel.close(200, "stats done".into()).await?;
        Ok(())
    }
}
