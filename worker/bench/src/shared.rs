//! `--store-url`: the worker on the shared PostgreSQL store, with 1, 2 or 3
//! `mmt-worker run --store-url` child processes consuming the same queues,
//! next to one child on the embedded store, in the same run, in an order
//! that rotates between runs.
//!
//! - ingest ([`ingest`]): N `integration.connected` preloaded as in
//!   [`super::ingest`], drained by the no-op consumer (the broker's ceiling),
//!   by one embedded child, and by 1..=3 PostgreSQL children, each over an
//!   empty store (a fresh data directory, or a fresh database). The window
//!   starts at the first reply after every child of the measurement consumes
//!   (the queue's consumer count, polled every 10 ms), so a child's slower
//!   start does not count as a slower drain;
//! - resolve ([`resolve`]): the closed loop of [`super::resolve`] at each of
//!   `shared_concurrencies` over 1,000 directly loaded tokens (one embedded
//!   data directory, one PostgreSQL database, loaded the same way);
//! - takeover ([`takeover`], `--phases takeover`): two PostgreSQL children
//!   under closed-loop resolve at concurrency 4; one is killed with SIGKILL a
//!   third into the measured window; the longest any resolve of the window
//!   waited for its answer is the gap the kill caused (the goal: none over
//!   2 s);
//! - footprint ([`footprint`]): `scale_tokens` loaded directly into a fresh
//!   database, and `pg_total_relation_size` of each table;
//! - rewrap (`--phases rewrap`): [`super::rewrap`] over `rewrap_tokens`
//!   loaded directly into a database of its own, in process and with one
//!   PostgreSQL child (`pg_rewrap_*`).
//!
//! For every measurement, CPU time between the window's ends: the worker
//! children's (`/proc/<pid>/stat`), PostgreSQL's (the postmaster and every
//! process it forked, and the backends of the measurement's database alone),
//! the broker's (`beam.smp`), the bench process's, and the machine's busy
//! time (`/proc/stat`, every process, other people's included), each per
//! message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use mmt_shared::config::Namespace;
use mmt_shared::wire::{MessageKind, TokenState};

use super::child::WorkerChild;
use super::ingest::{Replies, connected_messages, preload, process_cpu};
use super::pg::{Server, ServerCpu, TempDb};
use super::report::RunFigures;
use super::resolve::closed_loop;
use super::tokens::Preloaded;
use super::{BenchConfig, BenchError, Namespaces, PATIENCE, Phase, ceiling};
use mmt_worker::observe::process::{USER_HZ, cpu_ticks};
use mmt_worker::store::Store;
use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::postgres::{PgConfig, redact};

/// What serves the queues in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The no-op consumer (ingest only): the broker's ceiling.
    Ceiling,
    /// One child on the embedded store.
    Embedded,
    /// This many children on one PostgreSQL database.
    Postgres(usize),
}

impl Engine {
    /// The figures' infix: `ceiling`, `embedded`, `pg1`, `pg2`, `pg3`.
    pub fn label(self) -> String {
        match self {
            Engine::Ceiling => "ceiling".into(),
            Engine::Embedded => "embedded".into(),
            Engine::Postgres(n) => format!("pg{n}"),
        }
    }

    fn children(self) -> usize {
        match self {
            Engine::Ceiling => 0,
            Engine::Embedded => 1,
            Engine::Postgres(n) => n,
        }
    }
}

/// The engines of a run, rotated by `run` so that none is always first.
fn order(config: &BenchConfig, with_ceiling: bool, run: usize) -> Vec<Engine> {
    let mut engines = Vec::new();
    if with_ceiling {
        engines.push(Engine::Ceiling);
    }
    engines.push(Engine::Embedded);
    engines.extend(config.workers.iter().map(|&n| Engine::Postgres(n)));
    let len = engines.len();
    engines.rotate_left(run % len.max(1));
    engines
}

/// The CPU times one probe reads.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The worker children's, in seconds.
    workers: f64,
    /// PostgreSQL's processes, when `/proc` shows them.
    server: Option<ServerCpu>,
    /// The broker's (`beam.smp`), in seconds.
    broker: f64,
    /// The bench process's.
    bench: Option<Duration>,
    /// The machine's busy and total time, in seconds (every CPU).
    machine: Option<(f64, f64)>,
}

/// What a probe reads: the children, the postmaster and the broker.
#[derive(Clone, Debug)]
struct Probe {
    children: Vec<u32>,
    postmaster: Option<u32>,
    broker: Vec<u32>,
}

impl Probe {
    fn new(children: Vec<u32>, postmaster: Option<u32>) -> Self {
        Self {
            children,
            postmaster,
            broker: pids_named("beam.smp"),
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            workers: self.children.iter().map(|&pid| cpu_secs(pid)).sum(),
            server: self.postmaster.map(ServerCpu::sample),
            broker: self.broker.iter().map(|&pid| cpu_secs(pid)).sum(),
            bench: process_cpu(),
            machine: machine_busy(),
        }
    }
}

/// A process's CPU time so far in seconds; 0 when it cannot be read.
fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| cpu_ticks(&stat))
        .map_or(0.0, |ticks| ticks as f64 / USER_HZ)
}

/// The pids of the processes called `name`.
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// The machine's busy (not idle, not waiting for I/O) and total CPU time
/// over every CPU, in seconds, from the first line of `/proc/stat`.
fn machine_busy() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(((total - idle) as f64 / USER_HZ, total as f64 / USER_HZ))
}

/// Records the CPU per message between two samples as
/// `<prefix>_{worker,pg,pgdb,broker,bench}_cpu_us_per_msg`, and the cores
/// the machine was busy on as `<prefix>_machine_busy_cores`.
fn record_cpu(
    figures: &mut RunFigures,
    prefix: &str,
    (first, last): (&Sample, &Sample),
    messages: f64,
    backends: &[u32],
) {
    if messages < 1.0 {
        return;
    }
    let per = |secs: f64| secs * 1e6 / messages;
    if !first.workers.is_nan() && last.workers > 0.0 {
        figures.set(
            &format!("{prefix}_worker_cpu_us_per_msg"),
            per(last.workers - first.workers),
        );
    }
    if let (Some(a), Some(b)) = (&first.server, &last.server) {
        figures.set(
            &format!("{prefix}_pg_cpu_us_per_msg"),
            per(b.secs_since(a, |_| true)),
        );
        figures.set(
            &format!("{prefix}_pgdb_cpu_us_per_msg"),
            per(b.secs_since(a, |pid| backends.contains(&pid))),
        );
    }
    figures.set(
        &format!("{prefix}_broker_cpu_us_per_msg"),
        per(last.broker - first.broker),
    );
    if let (Some(a), Some(b)) = (first.bench, last.bench) {
        figures.set(
            &format!("{prefix}_bench_cpu_us_per_msg"),
            per(b.saturating_sub(a).as_secs_f64()),
        );
    }
    if let (Some((busy_a, total_a)), Some((busy_b, total_b))) = (first.machine, last.machine) {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let wall = (total_b - total_a) / cpus;
        if wall > 0.0 {
            figures.set(
                &format!("{prefix}_machine_busy_cores"),
                (busy_b - busy_a) / wall,
            );
        }
    }
}

/// Runs the phases of `config` on the PostgreSQL server of `url`.
pub async fn phases(
    config: &BenchConfig,
    connection: &Connection,
    namespaces: &mut Namespaces,
    root: &Path,
    url: &str,
) -> Result<(Vec<RunFigures>, Vec<String>), BenchError> {
    let server = Server::connect(url).await?;
    let mut made = Vec::new();
    let outcome = phases_on(
        config, connection, namespaces, root, url, &server, &mut made,
    )
    .await;
    for db in &made {
        if let Err(error) = server.drop_db(db).await {
            eprintln!("bench: {error}");
        }
    }
    server.close().await;
    outcome
}

async fn phases_on(
    config: &BenchConfig,
    connection: &Connection,
    namespaces: &mut Namespaces,
    root: &Path,
    url: &str,
    server: &Server,
    made: &mut Vec<TempDb>,
) -> Result<(Vec<RunFigures>, Vec<String>), BenchError> {
    let mut notes = vec![format!(
        "store: PostgreSQL at {} ({}); worker children `mmt-worker run --store-url`, {:?} of them next to one child on the embedded store; each ingest measurement on an empty store (a fresh database, dropped afterwards)",
        redact(url),
        server.settings().await?,
        config.workers,
    )];
    if server.postmaster().is_none() {
        notes.push(
            "PostgreSQL's CPU time not measured: its postmaster is not visible in /proc".into(),
        );
    }
    if config.runs_phase(Phase::Refresh) {
        notes.push("refresh: not measured on PostgreSQL by this bench".into());
    }
    let mut once = RunFigures::default();
    if config.runs_phase(Phase::Scale) {
        footprint(config, root, server, made, &mut once, &mut notes).await?;
    }
    let stores = if config.runs_phase(Phase::Resolve) || config.runs_phase(Phase::Takeover) {
        let embedded = Preloaded::load(root, "small", config.small_tokens).await?;
        let db = server.create_db().await?;
        made.push(db.clone());
        let shared = Preloaded::load_pg(root, "pg-small", &db.url, config.small_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into a store and into {}",
            config.small_tokens, db.name
        );
        Some((embedded, shared, db))
    } else {
        None
    };
    let rewrapped = if config.runs_phase(Phase::Rewrap) {
        let db = server.create_db().await?;
        made.push(db.clone());
        let loaded = Preloaded::load_pg(root, "pg-rewrap", &db.url, config.rewrap_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into {} in {:.1} s",
            config.rewrap_tokens, db.name, loaded.load_secs
        );
        Some(loaded)
    } else {
        None
    };
    let mut runs = Vec::with_capacity(config.runs);
    for run in 0..config.runs {
        let mut figures = if run == 0 {
            once.clone()
        } else {
            RunFigures::default()
        };
        if config.runs_phase(Phase::Ingest) {
            let ns = namespaces.part("shared")?;
            ingest(config, connection, server, &ns, root, run, &mut figures).await?;
        }
        if let Some((embedded, shared, db)) = &stores {
            let ns = namespaces.part("sresolve")?;
            let stores = Stores {
                embedded,
                shared,
                db,
            };
            if config.runs_phase(Phase::Resolve) {
                resolve(
                    config,
                    connection,
                    server,
                    &ns,
                    root,
                    &stores,
                    run,
                    &mut figures,
                )
                .await?;
            }
            if config.runs_phase(Phase::Takeover) {
                takeover(config, connection, &ns, root, &stores, run, &mut figures).await?;
            }
        }
        if let Some(store) = &rewrapped {
            let ns = namespaces.part("srewrap")?;
            let store = (store, "pg_rewrap");
            super::rewrap::measure(config, connection, &ns, store, run, &mut figures).await?;
        }
        runs.push(figures);
    }
    Ok((runs, notes))
}

/// The worker children of one measurement.
struct Children(Vec<WorkerChild>);

impl Children {
    /// Spawns `engine`'s children over `embedded` (its data directory and
    /// key) or the database of `url` (with the key file `key_file`).
    fn spawn(
        config: &BenchConfig,
        ns: &Namespace,
        engine: Engine,
        dir: &Path,
        (data_dir, key_file): (&Path, &Path),
        url: Option<&str>,
    ) -> Result<Self, BenchError> {
        let mut children = Vec::new();
        for i in 0..engine.children() {
            let child = match url {
                None => {
                    WorkerChild::spawn(config, ns, (data_dir, key_file), &engine.label(), &[], &[])?
                }
                Some(url) => {
                    // Unused on PostgreSQL; a directory of each child's own
                    // for its log.
                    let own = dir.join(format!("w{i}"));
                    std::fs::create_dir_all(&own)
                        .map_err(BenchError::io(format!("cannot create {}", own.display())))?;
                    WorkerChild::spawn(
                        config,
                        ns,
                        (&own.join("data"), key_file),
                        &format!("{}-{i}", engine.label()),
                        &["--store-url".as_ref(), url.as_ref()],
                        &[],
                    )?
                }
            };
            children.push(child);
        }
        Ok(Self(children))
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(|c| c.pid).collect()
    }

    async fn stop(mut self) -> Result<(), BenchError> {
        let mut first_error = None;
        for child in &mut self.0 {
            if let Err(error) = child.stop().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Sets `ready` once `queue` has at least `consumers` consumers (polled
/// every 10 ms, for at most [`PATIENCE`]).
async fn watch_consumers(
    connection: &Connection,
    queue: String,
    consumers: usize,
) -> Result<(Arc<AtomicBool>, tokio::task::JoinHandle<()>), BenchError> {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let channel = connection.create_channel().await?;
    let task = tokio::spawn(async move {
        let give_up = Instant::now() + PATIENCE;
        while Instant::now() < give_up {
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(q) if q.consumer_count() as usize >= consumers => {
                    flag.store(true, Ordering::SeqCst);
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(_) => return,
            }
        }
        let _ = channel.close(200, "watched".into()).await;
    });
    Ok((ready, task))
}

/// Waits until `queue` has `consumers` consumers.
async fn wait_consumers(
    connection: &Connection,
    queue: String,
    consumers: usize,
) -> Result<(), BenchError> {
    let (ready, task) = watch_consumers(connection, queue.clone(), consumers).await?;
    task.await?;
    if ready.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(BenchError::Child(format!(
            "{queue} did not have {consumers} consumers within {PATIENCE:?}"
        )))
    }
}

/// The tokens the worker stored, by reading the store after it stopped.
async fn stored_tokens(
    data_dir: PathBuf,
    key_file: PathBuf,
    url: Option<String>,
) -> Result<u64, BenchError> {
    tokio::task::spawn_blocking(move || {
        let (key, _) = KeyRing::load_or_create(&key_file)?;
        let store = match url {
            None => Store::open(&data_dir, key)?,
            Some(url) => Store::connect(&PgConfig::new(url), key)?,
        };
        let counts = store.counts()?;
        Ok::<u64, BenchError>(
            counts
                .iter()
                .filter(|(key, _)| key.state == TokenState::Active)
                .map(|(_, n)| *n)
                .sum(),
        )
    })
    .await?
}

/// One ingest run: the ceiling, the embedded child and the PostgreSQL
/// children on the same messages, each over an empty store.
pub async fn ingest(
    config: &BenchConfig,
    connection: &Connection,
    server: &Server,
    ns: &Namespace,
    root: &Path,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    let messages = connected_messages(&format!("{}-{run}", ns.as_str()), config.messages);
    let mut replies = Replies::new(connection).await?;
    for engine in order(config, true, run) {
        preload(connection, ns, &messages, replies.queue()).await?;
        let prefix = format!("shared_ingest_{}", engine.label());
        if engine == Engine::Ceiling {
            let drained = ceiling::drain(
                connection,
                ns,
                config.prefetch,
                &mut replies,
                messages.len(),
            )
            .await?;
            figures.set(&format!("{prefix}_msgs_per_s"), drained.rate());
            figures.set(
                &format!("{prefix}_bench_cpu_us_per_msg"),
                drained.cpu_us_per_msg(),
            );
            eprintln!(
                "bench: run {}/{} ingest ceiling: {:.0} msg/s",
                run + 1,
                config.runs,
                drained.rate()
            );
            continue;
        }
        let dir = root.join(format!("shared-ingest-{run}-{}", engine.label()));
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
        let key_file = dir.join("mmt.key");
        KeyRing::load_or_create(&key_file)?;
        let data_dir = dir.join("data");
        let db = match engine {
            Engine::Postgres(_) => Some(server.create_db().await?),
            _ => None,
        };
        let measured = ingest_one(
            config,
            connection,
            server,
            ns,
            engine,
            (&dir, &data_dir, &key_file),
            db.as_ref(),
            &mut replies,
            messages.len(),
            (figures, &prefix),
        )
        .await;
        if let Some(db) = &db {
            server.drop_db(db).await?;
        }
        measured?;
        std::fs::remove_dir_all(&dir)
            .map_err(BenchError::io(format!("cannot remove {}", dir.display())))?;
        let figure = |name: &str| figures.get(&format!("{prefix}_{name}")).unwrap_or(f64::NAN);
        eprintln!(
            "bench: run {}/{} ingest {}: {:.0} msg/s; CPU per message: workers {:.0} us, PostgreSQL {:.0} us, broker {:.0} us; machine busy {:.2} cores; per message {:.2} commits, {:.2} rollbacks, {:.1} rows written",
            run + 1,
            config.runs,
            engine.label(),
            figure("msgs_per_s"),
            figure("worker_cpu_us_per_msg"),
            figure("pg_cpu_us_per_msg"),
            figure("broker_cpu_us_per_msg"),
            figure("machine_busy_cores"),
            figure("commits_per_msg"),
            figure("rollbacks_per_msg"),
            figure("rows_written_per_msg"),
        );
    }
    replies.close().await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn ingest_one(
    config: &BenchConfig,
    connection: &Connection,
    server: &Server,
    ns: &Namespace,
    engine: Engine,
    (dir, data_dir, key_file): (&Path, &Path, &Path),
    db: Option<&TempDb>,
    replies: &mut Replies,
    expected: usize,
    (figures, prefix): (&mut RunFigures, &str),
) -> Result<(), BenchError> {
    let url = db.map(|db| db.url.as_str());
    let children = Children::spawn(config, ns, engine, dir, (data_dir, key_file), url)?;
    let probe = Probe::new(children.pids(), db.and(server.postmaster()));
    let (ready, watching) = watch_consumers(
        connection,
        ns.queue(MessageKind::IntegrationConnected),
        engine.children(),
    )
    .await?;
    let window = replies
        .collect_window(
            "ingest",
            expected,
            || ready.load(Ordering::SeqCst),
            || probe.sample(),
        )
        .await;
    if ready.load(Ordering::SeqCst) {
        let _ = watching.await;
    } else {
        watching.abort();
    }
    let backends = match db {
        Some(db) => server.backends(db).await?,
        None => Vec::new(),
    };
    let stopped = children.stop().await;
    let window = window?;
    stopped?;
    let stored = stored_tokens(
        data_dir.to_owned(),
        key_file.to_owned(),
        url.map(str::to_owned),
    )
    .await?;
    if stored != expected as u64 {
        return Err(BenchError::Failed {
            phase: "ingest",
            reply: format!("{stored} tokens stored for {expected} messages"),
        });
    }
    if let Some(db) = db {
        // The children's backends have exited: their counters are in.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (commits, rollbacks, rows) = server.db_stats(db).await?;
        let per = |n: i64| n as f64 / expected.max(1) as f64;
        figures.set(&format!("{prefix}_commits_per_msg"), per(commits));
        figures.set(&format!("{prefix}_rollbacks_per_msg"), per(rollbacks));
        figures.set(&format!("{prefix}_rows_written_per_msg"), per(rows));
    }
    figures.set(&format!("{prefix}_msgs_per_s"), window.rate());
    figures.set(&format!("{prefix}_window_msgs"), window.messages());
    record_cpu(
        figures,
        prefix,
        (&window.at_first, &window.at_last),
        window.messages(),
        &backends,
    );
    Ok(())
}

/// The stores of the resolve measurements.
pub struct Stores<'a> {
    /// The embedded store.
    pub embedded: &'a Preloaded,
    /// The PostgreSQL store.
    pub shared: &'a Preloaded,
    /// Its database.
    pub db: &'a TempDb,
}

/// One resolve run: the embedded child and the PostgreSQL children, at
/// every concurrency of `config.shared_concurrencies`.
#[allow(clippy::too_many_arguments)]
pub async fn resolve(
    config: &BenchConfig,
    connection: &Connection,
    server: &Server,
    ns: &Namespace,
    root: &Path,
    stores: &Stores<'_>,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    for engine in order(config, false, run) {
        let (store, db) = match engine {
            Engine::Postgres(_) => (stores.shared, Some(stores.db)),
            _ => (stores.embedded, None),
        };
        let dir = root.join(format!("shared-resolve-{run}-{}", engine.label()));
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
        let children = Children::spawn(
            config,
            ns,
            engine,
            &dir,
            (&store.data_dir, &store.key_file),
            store.store_url.as_deref(),
        )?;
        let probe = Probe::new(children.pids(), db.and(server.postmaster()));
        let measured = async {
            wait_consumers(
                connection,
                ns.queue(MessageKind::TokenResolve),
                engine.children(),
            )
            .await?;
            for &concurrency in &config.shared_concurrencies {
                let measured_from = tokio::time::Instant::now() + config.warmup;
                let end = measured_from + config.resolve_time;
                let sampling = {
                    let probe = probe.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(measured_from).await;
                        let first = probe.sample();
                        tokio::time::sleep_until(end).await;
                        (first, probe.sample())
                    })
                };
                let level = closed_loop(
                    connection,
                    ns,
                    store.tokens,
                    concurrency,
                    config.warmup,
                    config.resolve_time,
                    None,
                )
                .await?;
                let (first, last) = sampling.await?;
                let backends = match db {
                    Some(db) => server.backends(db).await?,
                    None => Vec::new(),
                };
                let prefix = format!("shared_resolve_{}_c{concurrency}", engine.label());
                level.record(figures, &prefix);
                record_cpu(
                    figures,
                    &prefix,
                    (&first, &last),
                    level.msgs_per_s * config.resolve_time.as_secs_f64(),
                    &backends,
                );
                eprintln!(
                    "bench: run {}/{} resolve {} at concurrency {concurrency}: {:.0} msg/s, p99 {:.2} ms; CPU per resolve: workers {:.0} us, PostgreSQL {:.0} us",
                    run + 1,
                    config.runs,
                    engine.label(),
                    level.msgs_per_s,
                    level.p99_ms,
                    figures.get(&format!("{prefix}_worker_cpu_us_per_msg")).unwrap_or(f64::NAN),
                    figures.get(&format!("{prefix}_pg_cpu_us_per_msg")).unwrap_or(f64::NAN),
                );
            }
            Ok::<(), BenchError>(())
        }
        .await;
        let stopped = children.stop().await;
        measured?;
        stopped?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// `config.scale_tokens` loaded directly into a fresh database: the load
/// rate and the bytes per token, in all and per table.
async fn footprint(
    config: &BenchConfig,
    root: &Path,
    server: &Server,
    made: &mut Vec<TempDb>,
    figures: &mut RunFigures,
    notes: &mut Vec<String>,
) -> Result<(), BenchError> {
    let db = server.create_db().await?;
    made.push(db.clone());
    let tokens = config.scale_tokens;
    let loaded = Preloaded::load_pg(root, "pg-footprint", &db.url, tokens).await?;
    let sizes = server.table_sizes(&db).await?;
    let total: i64 = sizes.iter().map(|(_, bytes)| bytes).sum();
    let per_token = |bytes: i64| bytes as f64 / tokens.max(1) as f64;
    figures.set("pg_footprint_tokens", tokens as f64);
    figures.set("pg_load_tokens_per_s", loaded.tokens_per_s());
    figures.set("pg_bytes_per_token", per_token(total));
    for (table, bytes) in &sizes {
        figures.set(&format!("pg_bytes_per_token_{table}"), per_token(*bytes));
    }
    notes.push(format!(
        "footprint: {tokens} tokens loaded directly into {} (Store::connect, the same writes as the embedded load, 1,000 per transaction, 2 threads) in {:.1} s; pg_total_relation_size: {}",
        db.name,
        loaded.load_secs,
        sizes
            .iter()
            .map(|(table, bytes)| format!("{table} {bytes} B"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    eprintln!(
        "bench: {tokens} tokens in PostgreSQL: {:.0} bytes per token, loaded at {:.0} tokens/s",
        per_token(total),
        loaded.tokens_per_s()
    );
    server.drop_db(&db).await?;
    made.retain(|d| d.name != db.name);
    Ok(())
}

/// Two PostgreSQL children under closed-loop resolve at concurrency 4; one
/// killed with SIGKILL a third into the measured window. Records
/// `takeover_max_ms` (the longest resolve of the window, the kill's
/// included), `takeover_p99_ms`, `takeover_msgs_per_s`, and the longest
/// resolve and p99 of a window of the same length with both alive, just
/// before (`takeover_before_max_ms`, `takeover_before_p99_ms`).
pub async fn takeover(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    root: &Path,
    stores: &Stores<'_>,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    super::refresh::declare(connection, ns).await?;
    let dir = root.join(format!("shared-takeover-{run}"));
    std::fs::create_dir_all(&dir)
        .map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
    let store = stores.shared;
    let mut children = Children::spawn(
        config,
        ns,
        Engine::Postgres(2),
        &dir,
        (&store.data_dir, &store.key_file),
        store.store_url.as_deref(),
    )?;
    // Never 0: `kill -KILL 0` would kill the bench's own process group.
    let victim = children
        .0
        .first()
        .map(|c| c.pid)
        .filter(|&pid| pid > 0)
        .ok_or_else(|| BenchError::Child("no worker to kill".into()))?;
    let measured = async {
        wait_consumers(connection, ns.queue(MessageKind::TokenResolve), 2).await?;
        let concurrency = super::report::HEADLINE_CONCURRENCY;
        let before = closed_loop(
            connection,
            ns,
            store.tokens,
            concurrency,
            config.warmup,
            config.resolve_time,
            None,
        )
        .await?;
        let kill_at = tokio::time::Instant::now() + config.warmup + config.resolve_time / 3;
        let killing = tokio::spawn(async move {
            tokio::time::sleep_until(kill_at).await;
            tokio::process::Command::new("kill")
                .arg("-KILL")
                .arg(victim.to_string())
                .status()
                .await
        });
        let level = closed_loop(
            connection,
            ns,
            store.tokens,
            concurrency,
            config.warmup,
            config.resolve_time,
            None,
        )
        .await?;
        let killed = killing.await?.map_err(BenchError::io("cannot run kill"))?;
        if !killed.success() {
            return Err(BenchError::Child(format!("kill -KILL {victim} failed")));
        }
        figures.set("takeover_before_max_ms", before.max_ms);
        figures.set("takeover_before_p99_ms", before.p99_ms);
        figures.set("takeover_max_ms", level.max_ms);
        figures.set("takeover_p99_ms", level.p99_ms);
        figures.set("takeover_msgs_per_s", level.msgs_per_s);
        eprintln!(
            "bench: run {}/{} takeover: longest resolve {:.0} ms with a worker killed (both alive before: {:.0} ms), {:.0} msg/s",
            run + 1,
            config.runs,
            level.max_ms,
            before.max_ms,
            level.msgs_per_s
        );
        Ok::<(), BenchError>(())
    }
    .await;
    // The killed child is reaped; the survivor is stopped as an operator
    // would.
    if !children.0.is_empty() {
        let mut killed = children.0.remove(0);
        let _ = killed.child.kill().await;
        let _ = killed.child.wait().await;
    }
    let stopped = children.stop().await;
    measured?;
    stopped?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
