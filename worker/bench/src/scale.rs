//! Scale: a store loaded directly with many tokens, served by the worker as
//! a child process (so that its memory and start time are its own).
//! (loaded by [`super::tokens::Preloaded`])
//!
//! Per point: the time from spawning `mmt-worker run` to the reply to a
//! resolve request that was queued before the spawn: the first start after
//! the load (the engine replays the journal the load left; with
//! `--drop-caches` the page cache is dropped before it), a warm restart, and
//! a restart with the page cache dropped (`--drop-caches`); closed-loop resolve at the
//! headline concurrency; the console's frame time and its token search
//! ([`super::search`]); `VmRSS` and `VmHWM` of the child after that load; the
//! bytes of the data directory.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection};
use mmt_shared::config::Namespace;
use mmt_shared::wire::MessageKind;

use super::child::WorkerChild;
use super::report::{HEADLINE_CONCURRENCY, RunFigures};
use super::resolve::{closed_loop, request};
use super::tokens::Preloaded;
use super::{BenchConfig, BenchError, PATIENCE};
use mmt_worker::ops::fixtures::DIRECT_REPLY_TO;

/// Measures the worker child over `store`; records `<figure>_<point>`. The
/// first time after the load, first a start that replays the load's log
/// (`first_start_ms_<point>`; page cache dropped with `config.drop_caches`).
/// With `config.drop_caches`, last a start with the page cache dropped
/// (`cold_start_ms_<point>`), after everything else: the other figures are
/// those of a warm cache, as without the option.
pub async fn measure(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    store: &Preloaded,
    point: &str,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    if store.take_first_open() {
        if config.drop_caches {
            drop_page_cache()?;
        }
        let (mut first, first_ms) = start(config, connection, ns, store, point).await?;
        figures.set(&format!("first_start_ms_{point}"), first_ms);
        first.stop().await?;
    }
    let (mut worker, start_ms) = start(config, connection, ns, store, point).await?;
    figures.set(&format!("start_ms_{point}"), start_ms);
    let level = closed_loop(
        connection,
        ns,
        store.tokens,
        HEADLINE_CONCURRENCY,
        config.warmup,
        config.resolve_time,
        None,
    )
    .await?;
    level.record(figures, &format!("resolve_{point}"));
    figures.set(
        &format!("console_frame_ms_{point}"),
        console_frame_ms(config, ns).await?,
    );
    let (rss, peak) = memory(worker.pid)?;
    figures.set(&format!("rss_mb_{point}"), rss);
    figures.set(&format!("rss_peak_mb_{point}"), peak);
    // A console search reads every token: the block cache keeps what it read.
    super::search::measure(connection, ns, point, figures).await?;
    let (rss, _) = memory(worker.pid)?;
    figures.set(&format!("rss_after_search_mb_{point}"), rss);
    worker.stop().await?;
    let disk = bytes_under(&store.data_dir)? as f64;
    figures.set(&format!("disk_mb_{point}"), disk / (1024.0 * 1024.0));
    figures.set(
        &format!("disk_bytes_per_token_{point}"),
        disk / store.tokens.max(1) as f64,
    );
    if config.drop_caches {
        drop_page_cache()?;
        let (mut cold, cold_ms) = start(config, connection, ns, store, point).await?;
        figures.set(&format!("cold_start_ms_{point}"), cold_ms);
        cold.stop().await?;
    }
    Ok(())
}

/// Spawns `mmt-worker run` over `store` with a resolve request queued before
/// the spawn, and waits for its answer: the child and the milliseconds from
/// the spawn to the answer.
async fn start(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    store: &Preloaded,
    point: &str,
) -> Result<(WorkerChild, f64), BenchError> {
    let probe = connection.create_channel().await?;
    let mut probe_replies = mmt_worker::amqp::rpc::direct_replies(&probe).await?;
    probe
        .basic_publish(
            ns.inbound_exchange().into(),
            MessageKind::TokenResolve.routing_key().into(),
            BasicPublishOptions::default(),
            &request(store.tokens, 0),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_reply_to(DIRECT_REPLY_TO.into())
                .with_correlation_id("ready".into()),
        )
        .await?;
    let spawned = Instant::now();
    let mut worker = WorkerChild::spawn(
        config,
        ns,
        (&store.data_dir, &store.key_file),
        point,
        &[],
        &[],
    )?;
    let ready = tokio::select! {
        reply = tokio::time::timeout(PATIENCE, probe_replies.next()) => reply,
        status = worker.child.wait() => {
            return Err(BenchError::Child(format!(
                "exited before answering ({}): {}",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                worker.tail()
            )));
        }
    };
    match ready {
        Ok(Some(Ok(delivery))) if delivery.data.starts_with(br#"{"ok":true"#) => {}
        Ok(Some(Ok(delivery))) => {
            return Err(BenchError::Failed {
                phase: "scale",
                reply: String::from_utf8_lossy(&delivery.data).into_owned(),
            });
        }
        Ok(Some(Err(error))) => return Err(error.into()),
        Ok(None) | Err(_) => {
            return Err(BenchError::Child(format!(
                "no answer within {PATIENCE:?}: {}",
                worker.tail()
            )));
        }
    }
    let start_ms = spawned.elapsed().as_secs_f64() * 1000.0;
    probe.close(200, "ready".into()).await?;
    Ok((worker, start_ms))
}

/// Writes what is dirty and drops the page cache, dentries and inodes (as
/// root): the next start reads the store from the disk.
fn drop_page_cache() -> Result<(), BenchError> {
    let synced = std::process::Command::new("sync")
        .status()
        .map_err(BenchError::io("cannot run sync"))?;
    if !synced.success() {
        return Err(BenchError::Child(format!("sync failed: {synced}")));
    }
    std::fs::write("/proc/sys/vm/drop_caches", b"3").map_err(BenchError::io(
        "cannot drop the page cache (--drop-caches needs root): /proc/sys/vm/drop_caches",
    ))
}

/// The console's p99 frame time on its heaviest screen against the running
/// worker: `mmt-tui --frame-bench`, the binary beside `mmt-worker`.
async fn console_frame_ms(config: &BenchConfig, ns: &Namespace) -> Result<f64, BenchError> {
    let console = config.worker_binary.with_file_name("mmt-tui");
    let output = tokio::process::Command::new(&console)
        .args(["--frame-bench", "200", "--namespace", ns.as_str()])
        .env("MMT_AMQP_URL", &config.amqp_url)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(BenchError::io(format!(
            "cannot run {} (build it with `cargo build --release -p mmt-tui`)",
            console.display()
        )))?;
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|_| {
        BenchError::Child(format!(
            "mmt-tui --frame-bench failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })?;
    figures["heaviest_p99_ms"]
        .as_f64()
        .ok_or_else(|| BenchError::Child(format!("mmt-tui --frame-bench said {figures}")))
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
pub fn memory(pid: u32) -> Result<(f64, f64), BenchError> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(BenchError::io(format!("cannot read {path}")))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .ok_or_else(|| BenchError::Child(format!("no {name} in {path}")))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The bytes of every file under `dir`.
pub fn bytes_under(dir: &Path) -> Result<u64, BenchError> {
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
                total += meta.len();
            }
        }
    }
    Ok(total)
}
