//! Footprint through the broker (issue 11 asks for both paths): N
//! `integration.connected` messages published to `NS.in` and drained by a
//! `mmt-worker run` child over an empty store, then the child's `VmRSS` and
//! `VmHWM` and the data directory's bytes per token; beside them the bytes
//! per token of a direct load of the same N (the scale phase's load path).

use std::path::Path;
use std::time::Instant;

use lapin::Connection;
use mmt_shared::config::Namespace;

use super::child::WorkerChild;
use super::ingest::{Replies, connected_messages, preload};
use super::report::RunFigures;
use super::scale::{bytes_under, memory};
use super::tokens::Preloaded;
use super::{BenchConfig, BenchError};
use mmt_worker::store::crypto::KeyRing;

/// Measures run `run` into `figures` (`broker_*`).
pub async fn measure(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    root: &Path,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let n = config.footprint_tokens;
    super::refresh::declare(connection, ns).await?;
    let dir = root.join(format!("footprint-{run}"));
    let (data_dir, key_file) = (dir.join("data"), dir.join("mmt.key"));
    KeyRing::load_or_create(&key_file)?;
    let messages = connected_messages(&format!("fp-{}-{run}", ns.as_str()), n);
    let mut replies = Replies::new(connection).await?;
    let mut worker = WorkerChild::spawn(config, ns, (&data_dir, &key_file), "footprint", &[], &[])?;
    let started = Instant::now();
    preload(connection, ns, &messages, replies.queue()).await?;
    drop(messages);
    let drained = replies.collect("footprint", n).await;
    let secs = started.elapsed().as_secs_f64();
    let memory = memory(worker.pid);
    worker.stop().await?;
    replies.close().await?;
    drained?;
    let (rss, peak) = memory?;
    figures.set("broker_msgs_per_s", n as f64 / secs.max(f64::MIN_POSITIVE));
    figures.set("broker_rss_mb", rss);
    figures.set("broker_rss_peak_mb", peak);
    figures.set(
        "broker_disk_bytes_per_token",
        bytes_under(&data_dir)? as f64 / n.max(1) as f64,
    );
    std::fs::remove_dir_all(&dir)
        .map_err(BenchError::io(format!("cannot remove {}", dir.display())))?;
    let direct_name = format!("footprint-direct-{run}");
    let direct = Preloaded::load(root, &direct_name, n).await?;
    figures.set(
        "broker_direct_disk_bytes_per_token",
        bytes_under(&direct.data_dir)? as f64 / n.max(1) as f64,
    );
    let direct_dir = root.join(direct_name);
    std::fs::remove_dir_all(&direct_dir).map_err(BenchError::io(format!(
        "cannot remove {}",
        direct_dir.display()
    )))?;
    Ok(())
}
