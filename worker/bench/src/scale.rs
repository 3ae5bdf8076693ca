//! Scale: a store loaded directly with many tokens, served by the worker as
//! a child process (so that its memory and start time are its own).
//!
//! The load goes through the store's only write path
//! ([`Store::change`], [`Change::put_token`](mmt_worker::store::Change::put_token),
//! [`Change::processed`](mmt_worker::store::Change::processed), commit), 1,000
//! tokens per commit on two threads, with the records one
//! `integration.connected` message would leave: the sealed token, its
//! wrapped data key, the identity index, the counts and the processed-message
//! reply. It does not go through the broker.
//!
//! Per point: the time from spawning `mmt-worker run` to the reply to a
//! resolve request that was queued before the spawn: the first start after
//! the load (the engine replays the journal the load left; with
//! `--drop-caches` the page cache is dropped before it), a warm restart, and
//! a restart with the page cache dropped (`--drop-caches`); closed-loop resolve at the
//! headline concurrency; the console's frame time and its token search
//! ([`super::search`]); `VmRSS` and `VmHWM` of the child after that load; the
//! bytes of the data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection};
use mmt_shared::config::Namespace;
use mmt_shared::time_fmt::now_millis;
use mmt_shared::wire::{ConnectedReply, IssuedToken, MessageKind, Scope, SdkAccessToken};

use super::child::WorkerChild;
use super::report::RunFigures;
use super::resolve::{HEADLINE_CONCURRENCY, closed_loop, request};
use super::{BenchConfig, BenchError, PATIENCE, mix};
use mmt_worker::ops::fixtures::DIRECT_REPLY_TO;
use mmt_worker::rules::lifecycle::{self, ConnectInput};
use mmt_worker::store::crypto::MasterKey;
use mmt_worker::store::{Store, TokenSecrets};

/// The client every preloaded token belongs to.
pub const CLIENT_ID: &str = "bench-client";

/// Tokens per commit of the direct load.
const CHUNK: usize = 1_000;

/// The tokenId of the `index`-th preloaded token: random-looking (so that
/// the keys spread over the tree as uuids do), unique, and computable
/// without keeping a million ids in memory.
pub fn token_id(index: u64) -> String {
    format!(
        "tok_{:016x}{:016x}",
        mix(index),
        mix(index ^ 0x5555_5555_5555_5555)
    )
}

/// A raw-looking token of the `index`-th preloaded token.
pub fn secret(prefix: &str, index: u64) -> String {
    format!(
        "{prefix}_{:016x}{:016x}{:016x}",
        mix(index ^ 1),
        mix(index ^ 2),
        mix(index ^ 3)
    )
}

/// A data directory and key file loaded with `tokens` tokens.
pub struct Preloaded {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The master key file.
    pub key_file: PathBuf,
    /// How many tokens it holds.
    pub tokens: usize,
    /// How long the load took, in seconds.
    pub load_secs: f64,
    /// Whether no worker has opened it since the load.
    fresh: AtomicBool,
}

impl Preloaded {
    /// Loads `tokens` tokens into `root/name`.
    pub async fn load(root: &Path, name: &str, tokens: usize) -> Result<Self, BenchError> {
        let data_dir = root.join(name).join("data");
        let key_file = root.join(name).join("mmt.key");
        let (key, _) = MasterKey::load_or_create(&key_file)?;
        let store = Arc::new(Store::open(&data_dir, key)?);
        let started = Instant::now();
        let filling = store.clone();
        tokio::task::spawn_blocking(move || {
            let workers = 2;
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|worker| {
                        let store = &*filling;
                        scope.spawn(move || fill(store, tokens, worker, workers))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(BenchError::Panicked("a preload thread")))
                    })
                    .collect::<Result<Vec<()>, BenchError>>()
            })
        })
        .await??;
        store.flush().await?;
        let load_secs = started.elapsed().as_secs_f64();
        drop(store);
        Ok(Self {
            data_dir,
            key_file,
            tokens,
            load_secs,
            fresh: AtomicBool::new(true),
        })
    }

    /// Tokens loaded per second.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.load_secs.max(f64::MIN_POSITIVE)
    }
}

/// Loads every `workers`-th chunk of tokens, starting at chunk `worker`.
fn fill(store: &Store, tokens: usize, worker: usize, workers: usize) -> Result<(), BenchError> {
    let now = now_millis();
    for chunk in (worker..tokens.div_ceil(CHUNK)).step_by(workers) {
        let mut change = store.change();
        for index in chunk * CHUNK..((chunk + 1) * CHUNK).min(tokens) {
            let index = index as u64;
            let token_id = token_id(index);
            let end_user_id = format!("user-{index}");
            let account_id = format!("acct-{index}");
            let input = ConnectInput {
                client_id: CLIENT_ID,
                end_user_id: &end_user_id,
                broker_type: "coinbase",
                broker_name: "Coinbase",
                account_id: &account_id,
                account_name: "Coinbase Main",
                scope: Scope::Read,
                expires_in_seconds: None,
                refresh_expires_in_seconds: None,
                has_refresh_token: true,
                at: now,
            };
            let plan = lifecycle::connect(None, &input, now, String::new);
            let secrets = TokenSecrets {
                access_token: secret("cbat", index),
                refresh_token: Some(secret("cbrt", index)),
            };
            change.put_token(&token_id, plan.meta(), None, &secrets)?;
            let reply = ConnectedReply {
                ok: true,
                broker_type: "coinbase".into(),
                scope: Scope::Read,
                tokens: vec![IssuedToken {
                    token_id: token_id.clone(),
                    account_id: account_id.clone(),
                    created: true,
                }],
                access_tokens: vec![SdkAccessToken::new(&token_id, "coinbase")],
                wallet: false,
            };
            change.processed(
                MessageKind::IntegrationConnected,
                &format!("bench-load-{index}"),
                &serde_json::to_vec(&reply)?,
            )?;
        }
        let lock = store.lock();
        change.commit(&lock)?;
    }
    Ok(())
}

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
    if store.fresh.swap(false, Ordering::SeqCst) {
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
