//! Ceiling and ingest measured together: the same messages drained by the
//! no-op consumer ([`super::ceiling`]) and by the worker ([`super::ingest`]),
//! in an order that alternates between runs, so that their ratio compares
//! like with like.

use std::path::Path;

use lapin::Connection;
use mmt_shared::config::Namespace;
use mmt_worker::amqp::topology::{self, QueueType, TopologyConfig};

use super::ceiling;
use super::ingest::{Drain, Replies, connected_messages, drain_worker, preload};
use super::{BenchConfig, BenchError};

/// Ceiling and ingest drains of one run.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    /// The no-op consumer.
    pub ceiling: Drain,
    /// The worker.
    pub ingest: Drain,
}

/// Measures the ceiling and the ingest rate of `queue_type` on the same
/// messages, in an order that alternates between runs.
pub async fn ceiling_and_ingest(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    queue_type: QueueType,
    run: usize,
    root: &Path,
) -> Result<Drained, BenchError> {
    let setup = connection.create_channel().await?;
    topology::declare(
        &setup,
        &TopologyConfig {
            namespace: ns.clone(),
            queue_type,
            delivery_limit: 5,
        },
    )
    .await?;
    setup.close(200, "declared".into()).await?;
    let messages = connected_messages(&format!("{}-{run}", ns.as_str()), config.messages);
    let mut replies = Replies::new(connection).await?;
    let mut step = async |ceiling_step: bool| -> Result<Drain, BenchError> {
        preload(connection, ns, &messages, replies.queue()).await?;
        if ceiling_step {
            return ceiling::drain(
                connection,
                ns,
                config.prefetch,
                &mut replies,
                messages.len(),
            )
            .await;
        }
        let dir = root.join(format!("ingest-{}-{run}", ns.as_str()));
        let drained =
            drain_worker(config, ns, queue_type, &dir, &mut replies, messages.len()).await?;
        std::fs::remove_dir_all(&dir)
            .map_err(BenchError::io(format!("cannot remove {}", dir.display())))?;
        Ok(drained)
    };
    let ceiling_first = run.is_multiple_of(2);
    let first = step(ceiling_first).await?;
    let second = step(!ceiling_first).await?;
    replies.close().await?;
    let (ceiling, ingest) = if ceiling_first {
        (first, second)
    } else {
        (second, first)
    };
    Ok(Drained { ceiling, ingest })
}
