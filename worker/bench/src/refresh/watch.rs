//! What the refresh phase sees of the worker: its `token.refreshed`,
//! `token.expired`, `token.refresh_failed` and `worker.stats` events, on a
//! queue of the bench's own (server-named, exclusive: it goes with its
//! channel) bound to `NS.events`, each stamped with the time it arrived.

use std::time::Instant;

use futures::StreamExt;
use lapin::{Channel, Connection, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, now_millis};

use super::super::{BenchError, tap};

/// One event the bench looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// `token.refreshed` of this tokenId.
    Refreshed(String),
    /// `token.expired` (the token went to `reauth_required`).
    Expired(String),
    /// `token.refresh_failed`.
    Failed(String),
    /// `worker.stats`: the worker is up.
    Stats,
}

/// The bench's events queue.
pub struct Watch {
    channel: Channel,
    consumer: Consumer,
}

impl Watch {
    /// Binds a queue of the bench to `ns`'s events (the exchange must exist).
    pub async fn bind(connection: &Connection, ns: &Namespace) -> Result<Self, BenchError> {
        let channel = connection.create_channel().await?;
        let kinds = [
            EventKind::TokenRefreshed,
            EventKind::TokenExpired,
            EventKind::TokenRefreshFailed,
            EventKind::WorkerStats,
        ]
        .map(EventKind::routing_key);
        let (_, consumer) = tap::consume(
            &channel,
            &ns.events_exchange(),
            &kinds,
            "mmt-bench-refresh-events",
        )
        .await?;
        Ok(Self { channel, consumer })
    }

    /// The next event and when it arrived; `None` once `until` has passed
    /// without one.
    pub async fn next(&mut self, until: Instant) -> Result<Option<(UnixMillis, Seen)>, BenchError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let delivery = match tokio::time::timeout(left, self.consumer.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(BenchError::Child("the events queue was closed".into())),
                Ok(Some(delivery)) => delivery?,
            };
            let at = now_millis();
            if delivery.routing_key.as_str() == EventKind::WorkerStats.routing_key() {
                return Ok(Some((at, Seen::Stats)));
            }
            let Ok(event) = serde_json::from_slice::<Event>(&delivery.data) else {
                continue;
            };
            let Some(token_id) = event.token_id else {
                continue;
            };
            let seen = match event.kind {
                EventKind::TokenRefreshed => Seen::Refreshed(token_id),
                EventKind::TokenExpired => Seen::Expired(token_id),
                EventKind::TokenRefreshFailed => Seen::Failed(token_id),
                _ => continue,
            };
            return Ok(Some((at, seen)));
        }
    }

    /// The next event within `PATIENCE` of now, or a timeout error naming
    /// what was awaited.
    pub async fn next_patiently(
        &mut self,
        done: usize,
        expected: usize,
    ) -> Result<(UnixMillis, Seen), BenchError> {
        let until = Instant::now() + super::super::PATIENCE;
        self.next(until).await?.ok_or(BenchError::Timeout {
            phase: "refresh",
            done,
            expected,
        })
    }

    /// Closes the queue's channel (the queue goes with it).
    pub async fn close(self) -> Result<(), BenchError> {
        self.channel
            .close(200, "refresh events done".into())
            .await?;
        Ok(())
    }
}
