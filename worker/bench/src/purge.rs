//! Purge (issue 21, physical deletion): the worker child over a store
//! loaded with `purge_tokens` tokens, run with `--purge-within-secs`, and
//! revocations through the broker.
//!
//! Per run: `purge_revocations` tokens revoked on an idle worker, then the
//! time from the first revocation until `worker.stats` says the purge that
//! covered them is done (`purge_gone_ms`, seen by the bench: an upper bound,
//! stats come once a second) and the worker's own figures for that purge
//! (`purge_lag_ms` from the first revocation's commit to the purge's end,
//! `purge_took_ms`), the child's CPU seconds from the first revocation to
//! then (`purge_cpu_s`: the revocations, the purge and the stats ticks),
//! and the bytes the data directory's files take on disk before and after;
//! then closed-loop resolve at the headline concurrency without a purge
//! (`purge_resolve_idle_*`) and over a window in which as many tokens again
//! are revoked and purged (`purge_resolve_during_*`, with the longest
//! request). Resolved tokens are the first half of the store, revoked ones
//! the second half.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use lapin::Connection;
use mmt_shared::config::Namespace;
use mmt_shared::console::PurgeStats;
use mmt_worker::ops::fixtures::{Publisher, Step};

use super::child::WorkerChild;
use super::report::{HEADLINE_CONCURRENCY, RunFigures};
use super::resolve::closed_loop;
use super::stats::StatsTap;
use super::tokens::{CLIENT_ID, Preloaded, token_id};
use super::{BenchConfig, BenchError, PATIENCE};

/// Measures one run over `store`; revokes the tokens of run `run`.
pub async fn measure(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    store: &Preloaded,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    let mut stats = StatsTap::bind(connection, ns, "mmt-bench-purge-stats").await?;
    let within = config.purge_within.as_secs().to_string();
    let mut worker = WorkerChild::spawn(
        config,
        ns,
        (&store.data_dir, &store.key_file),
        "purge",
        &[OsStr::new("--purge-within-secs"), OsStr::new(&within)],
        &[],
    )?;
    let patience = config.purge_within + PATIENCE;
    purge_done(&mut stats, &mut worker, patience, |_| true).await?;
    let mut publisher = Publisher::new(connection, ns, PATIENCE, "bench".into()).await?;
    let per_round = config.purge_revocations;
    let first = store.tokens / 2 + run * 2 * per_round;
    let resolved = store.tokens / 2;

    let disk_before = allocated_under(&store.data_dir)? as f64;
    let cpu_before = worker.cpu_secs()?;
    let revoking = Instant::now();
    revoke(&mut publisher, first..first + per_round).await?;
    let purge = purge_done(&mut stats, &mut worker, patience, |p| {
        p.runs >= 1 && !p.pending
    })
    .await?;
    let gone_ms = revoking.elapsed().as_secs_f64() * 1000.0;
    figures.set("purge_cpu_s", worker.cpu_secs()? - cpu_before);
    figures.set("purge_gone_ms", gone_ms);
    figures.set("purge_lag_ms", purge.last_lag_ms.unwrap_or(0) as f64);
    let took_ms = purge.last_ms.unwrap_or(0) as f64;
    figures.set("purge_took_ms", took_ms);
    let mib = 1024.0 * 1024.0;
    figures.set("purge_disk_mb_before", disk_before / mib);
    figures.set(
        "purge_disk_mb_after",
        allocated_under(&store.data_dir)? as f64 / mib,
    );

    let idle = closed_loop(
        connection,
        ns,
        resolved,
        HEADLINE_CONCURRENCY,
        config.warmup,
        config.resolve_time,
        None,
    )
    .await?;
    idle.record(figures, "purge_resolve_idle");
    figures.set("purge_resolve_idle_max_ms", idle.max_ms);
    // The window holds the wait before the purge (half the bound), the
    // purge as long as it just took, and a second more.
    let window = config.purge_within / 2 + Duration::from_secs_f64(took_ms / 1000.0 + 1.0);
    let second = first + per_round;
    let loaded = closed_loop(
        connection,
        ns,
        resolved,
        HEADLINE_CONCURRENCY,
        config.warmup,
        window,
        None,
    );
    let purged = async {
        tokio::time::sleep(config.warmup).await;
        revoke(&mut publisher, second..second + per_round).await?;
        purge_done(&mut stats, &mut worker, patience, |p| {
            p.runs >= 2 && !p.pending
        })
        .await
    };
    let (during, purged) = tokio::join!(loaded, purged);
    let (during, _) = (during?, purged?);
    during.record(figures, "purge_resolve_during");
    figures.set("purge_resolve_during_max_ms", during.max_ms);
    stats.close().await?;
    worker.stop().await?;
    eprintln!(
        "bench: run {}/{} purge at {} tokens: revoked {per_round}, gone after {gone_ms:.0} ms (bound {} s), the purge took {took_ms:.0} ms",
        run + 1,
        config.runs,
        store.tokens,
        config.purge_within.as_secs(),
    );
    Ok(())
}

/// The bytes allocated on disk to the files under `dir` (a new journal is
/// 32 MiB long but sparse until written).
fn allocated_under(dir: &std::path::Path) -> Result<u64, BenchError> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let entries = std::fs::read_dir(&path)
            .map_err(BenchError::io(format!("cannot list {}", path.display())))?;
        for entry in entries {
            let entry = entry.map_err(BenchError::io(format!("cannot list {}", path.display())))?;
            let meta = entry.metadata().map_err(BenchError::io(format!(
                "cannot stat {}",
                entry.path().display()
            )))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// The purge figures of the first `worker.stats` within `patience` that
/// satisfy `done`.
async fn purge_done(
    stats: &mut StatsTap,
    worker: &mut WorkerChild,
    patience: Duration,
    done: impl Fn(&PurgeStats) -> bool,
) -> Result<PurgeStats, BenchError> {
    stats
        .until(worker, patience, "the purge done", |s| {
            s.purge.clone().filter(|p| done(p))
        })
        .await
}

/// Revokes the preloaded tokens of `indexes`, one request at a time.
async fn revoke(
    publisher: &mut Publisher,
    indexes: std::ops::Range<usize>,
) -> Result<(), BenchError> {
    for index in indexes {
        let step = Step::new(
            "connection.removed",
            serde_json::json!({"clientId": CLIENT_ID, "tokenId": token_id(index as u64)}),
        );
        let reply = publisher.send("purge", &step).await?;
        if reply.as_ref().and_then(|r| r.get("revoked")) != Some(&serde_json::Value::Bool(true)) {
            return Err(BenchError::Failed {
                phase: "purge",
                reply: reply.map(|r| r.to_string()).unwrap_or_default(),
            });
        }
    }
    Ok(())
}
