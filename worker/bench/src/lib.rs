//! `mmt-bench`: the worker's performance next to the broker's own
//! ceiling, measured in one run, on one machine, against the local broker.
//!
//! Phases (`--phases` picks some), each in namespaces of its own
//! (`<namespace>-bench-<id>-<part>`), deleted at the end, also when a phase
//! fails:
//! - [`ceiling`]: a no-op consumer drains N `integration.connected` messages
//!   (reply, one multiple-ack per batch): the broker's ceiling;
//! - [`ingest`]: the real worker drains the same N messages; both queue types;
//! - [`resolve`]: closed-loop `token.resolve` at several concurrencies, next
//!   to a no-op echo responder driven the same way;
//! - [`scale`]: a store loaded directly with 1,000,000 tokens, served by a
//!   worker child process: start time, memory, disk, resolve latency against
//!   the same at 1,000 tokens; and [`footprint`]: memory and disk after N
//!   connects through the broker, beside a direct load of the same N;
//! - [`refresh`]: the refresh engine against the local token server, the
//!   worker a child process: refreshes per second, lapses at 100,000 tokens
//!   in compressed time, CPU per refresh;
//! - [`purge`]: physical deletion on a worker child over a large store;
//! - [`rewrap`]: key rotation, every data key wrapped again under a new
//!   key, in process (unbounded) and by a worker child at its rate bound
//!   while it serves resolves;
//! - [`shared`] (`--store-url`): ingest, resolve and footprint on the
//!   shared PostgreSQL store with 1, 2 or 3 worker children, next to one
//!   child on the embedded store, and the rewrap on PostgreSQL; [`pg`]: the
//!   server's databases and CPU;
//! - [`report`]: medians over the runs, their spread, the [`goals`], the
//!   table and the JSON object; [`child`]: the worker child processes,
//!   [`stats`]: their `worker.stats`; [`tap`]: the bench's own queues.
//!
//! `--phases` runs some of them only.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod ceiling;
pub mod child;
pub mod footprint;
pub mod goals;
pub mod ingest;
pub mod pairs;
pub mod pg;
pub mod purge;
pub mod refresh;
pub mod report;
pub mod resolve;
pub mod rewrap;
pub mod scale;
pub mod search;
pub mod shared;
pub mod stats;
pub mod tap;
pub mod tokens;

use std::path::PathBuf;
use std::time::Duration;

use lapin::Connection;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use mmt_shared::broker::{Broker, ConnectError, TlsArgs};
use mmt_shared::config::{BadNamespace, Namespace};

use mmt_worker::amqp::topology::QueueType;
use mmt_worker::app::WorkerError;
use mmt_worker::store::StoreError;
use mmt_worker::store::crypto::CryptoError;

use self::report::{Report, RunFigures};

/// How long any single wait of the bench may take before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A part of the bench that `--phases` can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Ceiling and ingest, both queue types (measured together: the ratio
    /// needs both from the same run).
    #[value(alias = "ceiling")]
    Ingest,
    /// Resolve against the echo, open and strict mode.
    Resolve,
    /// The worker child process over the small and the large store.
    Scale,
    /// The refresh engine against the local token server.
    Refresh,
    /// Physical deletion: revocations purged from the store's files, on the
    /// worker child over a large store.
    Purge,
    /// Key rotation: every data key wrapped again under a new key, in
    /// process and by the worker child while it serves (on PostgreSQL with
    /// `--store-url`).
    Rewrap,
    /// With `--store-url` only (not part of every phase): kill -9 of one of
    /// two workers on PostgreSQL under closed-loop resolve, and the longest
    /// a resolve then waited for its answer.
    Takeover,
}

impl Phase {
    /// Every phase, in the order a run takes them.
    pub const ALL: [Phase; 6] = [
        Phase::Ingest,
        Phase::Resolve,
        Phase::Scale,
        Phase::Refresh,
        Phase::Purge,
        Phase::Rewrap,
    ];
}

/// What a bench run does.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The phases run (every one unless `--phases` says otherwise).
    pub phases: Vec<Phase>,
    /// The broker.
    pub amqp_url: String,
    /// The prefix of the bench's own namespaces.
    pub namespace: Namespace,
    /// Messages per ceiling and ingest measurement.
    pub messages: usize,
    /// How many times every measurement is repeated (medians are reported).
    pub runs: usize,
    /// Prefetch of the worker and of the no-op consumers alike.
    pub prefetch: u16,
    /// Closed-loop resolve concurrencies.
    pub concurrencies: Vec<usize>,
    /// Resolve measurement time per concurrency, after the warm-up.
    pub resolve_time: Duration,
    /// Resolve warm-up per concurrency (not measured).
    pub warmup: Duration,
    /// Tokens in the store of the resolve phase and of the small scale point.
    pub small_tokens: usize,
    /// Tokens of the large scale point.
    pub scale_tokens: usize,
    /// Connects of the footprint through the broker.
    pub footprint_tokens: usize,
    /// The `mmt-worker` binary the scale phase runs as a child process.
    pub worker_binary: PathBuf,
    /// A small run (CI): the figures only show that the harness works.
    pub quick: bool,
    /// Also measure each scale start with the page cache dropped (root).
    pub drop_caches: bool,
    /// Refresh throughput: tokens all due at once per measurement.
    pub refresh_tokens: usize,
    /// Refresh throughput: the `refresh_concurrency` values measured.
    pub refresh_concurrencies: Vec<usize>,
    /// Refresh lapses: tokens whose expiries are spread over the hour.
    pub lapse_tokens: usize,
    /// Refresh lapses: how many times faster than real time the hour passes.
    pub compression: u64,
    /// Refresh lapses: `refresh_concurrency` (the default of the file).
    pub lapse_concurrency: usize,
    /// How long the local token server takes to answer a refresh.
    pub provider_latency: Duration,
    /// The ingest phase's worker serves `/metrics`, scraped every second
    /// (issue 20: the metrics' cost on ingest).
    pub metrics: bool,
    /// `--store-url`: the phases run on worker children over fresh
    /// databases of this PostgreSQL server, next to the embedded store
    /// ([`shared`]); `None`: the bench as without the option.
    pub store_url: Option<String>,
    /// With `store_url`: the numbers of PostgreSQL workers measured.
    pub workers: Vec<usize>,
    /// With `store_url`: the closed-loop resolve concurrencies.
    pub shared_concurrencies: Vec<usize>,
    /// Purge: tokens in the store.
    pub purge_tokens: usize,
    /// Purge: tokens revoked per purge measured.
    pub purge_revocations: usize,
    /// Purge: the worker's `--purge-within-secs`.
    pub purge_within: Duration,
    /// Rewrap: tokens in the store.
    pub rewrap_tokens: usize,
    /// Rewrap: the worker child's `--rewrap-per-sec`.
    pub rewrap_per_sec: u32,
}

impl BenchConfig {
    /// Whether `phase` is one of the phases run.
    pub fn runs_phase(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    /// The full run, or the quick one, with the given broker and binary.
    pub fn new(
        amqp_url: String,
        namespace: Namespace,
        worker_binary: PathBuf,
        quick: bool,
    ) -> Self {
        Self {
            phases: Phase::ALL.to_vec(),
            amqp_url,
            namespace,
            messages: if quick { 2_000 } else { 20_000 },
            runs: if quick { 1 } else { 5 },
            prefetch: 256,
            concurrencies: if quick { vec![1, 4] } else { vec![1, 4, 16] },
            resolve_time: Duration::from_millis(if quick { 1_000 } else { 5_000 }),
            warmup: Duration::from_millis(if quick { 200 } else { 1_000 }),
            small_tokens: 1_000,
            scale_tokens: if quick { 20_000 } else { 1_000_000 },
            footprint_tokens: if quick { 2_000 } else { 200_000 },
            worker_binary,
            quick,
            drop_caches: false,
            refresh_tokens: if quick { 300 } else { 10_000 },
            refresh_concurrencies: vec![16, 64],
            lapse_tokens: if quick { 500 } else { 100_000 },
            compression: if quick { 900 } else { 30 },
            lapse_concurrency: mmt_worker::config::integrations::DEFAULT_CONCURRENCY,
            provider_latency: Duration::from_millis(5),
            metrics: false,
            store_url: None,
            workers: vec![1, 2, 3],
            shared_concurrencies: if quick { vec![4] } else { vec![4, 32] },
            purge_tokens: if quick { 2_000 } else { 100_000 },
            purge_revocations: if quick { 10 } else { 100 },
            purge_within: if quick {
                Duration::from_secs(2)
            } else {
                mmt_worker::app::DEFAULT_PURGE_WITHIN
            },
            rewrap_tokens: if quick { 2_000 } else { 100_000 },
            rewrap_per_sec: mmt_worker::app::DEFAULT_REWRAP_PER_SEC,
        }
    }
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The broker link.
    #[error("broker")]
    Amqp(#[from] lapin::Error),
    /// The broker cannot be reached.
    #[error("broker")]
    Connect(#[from] ConnectError),
    /// The in-process worker.
    #[error("worker")]
    Worker(#[from] WorkerError),
    /// The store (direct preload).
    #[error("store")]
    Store(#[from] StoreError),
    /// The master key.
    #[error("key")]
    Key(#[from] CryptoError),
    /// A file or directory.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker refused or could not route a message.
    #[error("{phase}: the broker did not confirm a message ({detail})")]
    Unconfirmed {
        /// The phase.
        phase: &'static str,
        /// The confirmation.
        detail: String,
    },
    /// Fewer replies than messages arrived in time.
    #[error("{phase}: {done} of {expected} replies within {PATIENCE:?} of the previous one")]
    Timeout {
        /// The phase.
        phase: &'static str,
        /// Replies received.
        done: usize,
        /// Replies expected.
        expected: usize,
    },
    /// A reply said the request failed: the figure would not mean anything.
    #[error("{phase}: a request failed: {reply}")]
    Failed {
        /// The phase.
        phase: &'static str,
        /// The reply (never a raw token: only error replies are shown).
        reply: String,
    },
    /// The worker child process.
    #[error("worker process: {0}")]
    Child(String),
    /// A thread of the bench panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// A background task panicked.
    #[error("bench task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The JSON report.
    #[error("JSON report")]
    Json(#[from] serde_json::Error),
    /// The refresh phase's integrations file.
    #[error("integrations file")]
    Integrations(#[from] mmt_shared::tomlfile::FileError),
    /// The PostgreSQL server of `--store-url`.
    #[error(transparent)]
    Pg(#[from] pg::PgError),
    /// A bench namespace (the prefix is too long).
    #[error(transparent)]
    Namespace(#[from] BadNamespace),
    /// A request sent with the fixture publisher.
    #[error("publisher")]
    Publish(#[from] mmt_worker::ops::fixtures::FixtureError),
}

impl BenchError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// The namespaces of one bench run; every one is deleted by [`Namespaces::delete_all`].
pub struct Namespaces {
    base: String,
    made: Vec<Namespace>,
}

impl Namespaces {
    fn new(prefix: &Namespace) -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let prefix: String = prefix.as_str().chars().take(60).collect();
        Self {
            base: format!("{prefix}-bench-{id}"),
            made: Vec::new(),
        }
    }

    /// The namespace of one part of the bench (`<base>-<part>`).
    pub fn part(&mut self, part: &str) -> Result<Namespace, BadNamespace> {
        let namespace = Namespace::new(&format!("{}-{part}", self.base))?;
        if !self.made.contains(&namespace) {
            self.made.push(namespace.clone());
        }
        Ok(namespace)
    }

    /// Deletes every queue and exchange of every namespace handed out. A
    /// failed deletion (which closes its channel) does not stop the others;
    /// the first error is returned.
    pub async fn delete_all(&self, connection: &Connection) -> Result<(), lapin::Error> {
        let mut first_error = None;
        for ns in &self.made {
            for queue in mmt_worker::amqp::topology::queues(ns) {
                let deleted = async {
                    let channel = connection.create_channel().await?;
                    channel
                        .queue_delete(queue.into(), QueueDeleteOptions::default())
                        .await?;
                    channel.close(200, "deleted".into()).await
                };
                if let Err(error) = deleted.await {
                    first_error.get_or_insert(error);
                }
            }
            for exchange in mmt_worker::amqp::topology::exchanges(ns) {
                let deleted = async {
                    let channel = connection.create_channel().await?;
                    channel
                        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                        .await?;
                    channel.close(200, "deleted".into()).await
                };
                if let Err(error) = deleted.await {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A bijective 64-bit mix (splitmix64's finalizer): deterministic
/// pseudo-random ids and bodies without keeping them in memory.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Connects to the bench's broker (the URL redacted in any error).
pub async fn connect(amqp_url: &str, name: &str) -> Result<Connection, ConnectError> {
    Broker::new(amqp_url, &TlsArgs::default())?
        .connect(name)
        .await
}

/// Runs every phase `config.runs` times and reports the medians. The bench's
/// namespaces and temporary directories are removed afterwards, whether the
/// phases succeeded or not.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let connection = connect(&config.amqp_url, "mmt-bench").await?;
    let mut namespaces = Namespaces::new(&config.namespace);
    eprintln!("bench: namespaces {}-*", namespaces.base);
    let root = tempfile::Builder::new()
        .prefix("mmt-bench-")
        .tempdir()
        .map_err(BenchError::io(
            "cannot create the bench's temporary directory",
        ))?;
    let machine = report::Machine::read();
    let outcome = phases(config, &connection, &mut namespaces, root.path()).await;
    let cleanup = namespaces.delete_all(&connection).await;
    let _ = connection.close(200, "bench done".into()).await;
    let removed = root.close();
    let (runs, scale_notes) = outcome?;
    cleanup?;
    removed.map_err(BenchError::io(
        "cannot remove the bench's temporary directory",
    ))?;
    Ok(Report::new(config, machine.finish(), &runs, scale_notes))
}

async fn phases(
    config: &BenchConfig,
    connection: &Connection,
    namespaces: &mut Namespaces,
    root: &std::path::Path,
) -> Result<(Vec<RunFigures>, Vec<String>), BenchError> {
    if let Some(url) = &config.store_url {
        return shared::phases(config, connection, namespaces, root, url).await;
    }
    let small = if config.runs_phase(Phase::Resolve) || config.runs_phase(Phase::Scale) {
        let small = tokens::Preloaded::load(root, "small", config.small_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into a store",
            config.small_tokens
        );
        Some(small)
    } else {
        None
    };
    let large = if config.runs_phase(Phase::Scale) {
        let large = tokens::Preloaded::load(root, "large", config.scale_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into a store in {:.1} s",
            config.scale_tokens, large.load_secs
        );
        Some(large)
    } else {
        None
    };
    let purged = if config.runs_phase(Phase::Purge) {
        let purged = tokens::Preloaded::load(root, "purge", config.purge_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into a store in {:.1} s",
            config.purge_tokens, purged.load_secs
        );
        Some(purged)
    } else {
        None
    };
    let rewrapped = if config.runs_phase(Phase::Rewrap) {
        let rewrapped = tokens::Preloaded::load(root, "rewrap", config.rewrap_tokens).await?;
        eprintln!(
            "bench: loaded {} tokens directly into a store in {:.1} s",
            config.rewrap_tokens, rewrapped.load_secs
        );
        Some(rewrapped)
    } else {
        None
    };
    let mut runs = Vec::with_capacity(config.runs);
    for run in 0..config.runs {
        let mut figures = RunFigures::default();
        if config.runs_phase(Phase::Ingest) {
            ingest_phase(config, connection, namespaces, root, run, &mut figures).await?;
        }
        if let (true, Some(small)) = (config.runs_phase(Phase::Resolve), &small) {
            let worker_ns = namespaces.part("resolve")?;
            let echo_ns = namespaces.part("echo")?;
            resolve::compare(
                config,
                connection,
                &worker_ns,
                &echo_ns,
                small,
                run,
                &mut figures,
            )
            .await?;
            resolve::strict(config, connection, &worker_ns, small, &mut figures).await?;
            eprintln!("bench: run {}/{} resolve done", run + 1, config.runs);
        }
        if let (Some(small), Some(large)) = (&small, &large) {
            figures.set("preload_tokens_per_s", large.tokens_per_s());
            let scale_ns = namespaces.part("scale")?;
            for (point, store) in [("1k", small), ("1m", large)] {
                scale::measure(config, connection, &scale_ns, store, point, &mut figures).await?;
            }
            footprint::measure(config, connection, &scale_ns, root, run, &mut figures).await?;
            eprintln!("bench: run {}/{} scale done", run + 1, config.runs);
        }
        if config.runs_phase(Phase::Refresh) {
            refresh_phase(config, connection, namespaces, root, run, &mut figures).await?;
        }
        if let Some(purged) = &purged {
            let ns = namespaces.part("purge")?;
            purge::measure(config, connection, &ns, purged, run, &mut figures).await?;
        }
        if let Some(store) = &rewrapped {
            let ns = namespaces.part("rewrap")?;
            rewrap::measure(
                config,
                connection,
                &ns,
                (store, "rewrap"),
                run,
                &mut figures,
            )
            .await?;
        }
        runs.push(figures);
    }
    let mut notes = Vec::new();
    if config.runs_phase(Phase::Takeover) {
        notes.push("takeover: measured only with --store-url; not run".to_owned());
    }
    if config.runs_phase(Phase::Scale) {
        notes.push(format!(
            "scale: the stores were loaded directly through Store::change/put_token/commit ({} and {} tokens, with a processed-message record each as the real path writes), not through the broker",
            config.small_tokens, config.scale_tokens
        ));
    }
    if config.runs_phase(Phase::Refresh) {
        notes.push(refresh::note(config));
    }
    Ok((runs, notes))
}

/// Ceiling and ingest of one run, quorum then classic queues.
async fn ingest_phase(
    config: &BenchConfig,
    connection: &Connection,
    namespaces: &mut Namespaces,
    root: &std::path::Path,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    for queue_type in [QueueType::Quorum, QueueType::Classic] {
        let (part, prefix) = match queue_type {
            QueueType::Quorum => ("quorum", ""),
            QueueType::Classic => ("classic", "classic_"),
        };
        let ns = namespaces.part(part)?;
        let drained =
            pairs::ceiling_and_ingest(config, connection, &ns, queue_type, run, root).await?;
        let (ceiling, ingest) = (drained.ceiling.rate(), drained.ingest.rate());
        figures.set(&format!("{prefix}ceiling_msgs_per_s"), ceiling);
        figures.set(&format!("{prefix}ingest_msgs_per_s"), ingest);
        figures.set(&format!("{prefix}ingest_ratio"), ingest / ceiling);
        let cpu = (
            drained.ceiling.cpu_us_per_msg(),
            drained.ingest.cpu_us_per_msg(),
        );
        figures.set(&format!("{prefix}ceiling_cpu_us_per_msg"), cpu.0);
        figures.set(&format!("{prefix}ingest_cpu_us_per_msg"), cpu.1);
        eprintln!(
            "bench: run {}/{} {part}: ceiling {ceiling:.0} msg/s, ingest {ingest:.0} msg/s; bench process CPU per message {:.0} / {:.0} us",
            run + 1,
            config.runs,
            cpu.0,
            cpu.1,
        );
    }
    Ok(())
}

async fn refresh_phase(
    config: &BenchConfig,
    connection: &Connection,
    namespaces: &mut Namespaces,
    root: &std::path::Path,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let ns = namespaces.part("refresh")?;
    let mut load_rate = 0.0;
    for &concurrency in &config.refresh_concurrencies {
        load_rate =
            refresh::throughput(config, connection, &ns, root, concurrency, figures).await?;
        eprintln!(
            "bench: run {}/{} refresh at concurrency {concurrency}: {:.0} refreshes/s",
            run + 1,
            config.runs,
            figures
                .get(&format!("refresh_c{concurrency}_per_s"))
                .unwrap_or(f64::NAN)
        );
    }
    refresh::lapse::measure(config, connection, &ns, root, load_rate, figures).await?;
    eprintln!(
        "bench: run {}/{} refresh lapses at {} tokens: {}",
        run + 1,
        config.runs,
        config.lapse_tokens,
        figures.get("refresh_lapses").unwrap_or(f64::NAN)
    );
    Ok(())
}
