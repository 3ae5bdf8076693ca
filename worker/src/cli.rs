//! The command line of `mmt-worker` (clap, with the environment variables of
//! CONTRACT.md §8 as fallbacks).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mmt_shared::config::{BrokerArgs, Namespace};

use crate::bench::{BenchConfig, Phase};
use crate::topology::QueueType;
use crate::worker::WorkerConfig;

/// The mmt managed-token worker.
#[derive(Debug, Parser)]
#[command(name = "mmt-worker", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format (text is coloured only when stderr is a terminal).
    #[arg(long, global = true, env = "MMT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Publish fixture files (messages or scenarios) with publisher confirms,
    /// print the replies and check the expectations.
    Publish(PublishArgs),
    /// Measure the worker against the broker's own ceiling, in namespaces
    /// of its own that it deletes afterwards (build with --release).
    Bench(BenchArgs),
    /// Print (or apply with rabbitmqctl) the least-privilege broker users,
    /// permissions and topic permissions of a deployment (docs/security.md).
    BrokerSetup(BrokerSetupArgs),
}

/// Options of `mmt-worker broker-setup`.
#[derive(Debug, Args)]
pub struct BrokerSetupArgs {
    /// The clients file: every broker user in it gets publisher rights.
    #[arg(long, env = "MMT_CLIENTS", value_name = "FILE")]
    pub clients: PathBuf,
    /// The namespace the rights are for.
    #[arg(long, env = "MMT_NAMESPACE", default_value = "mmt", value_parser = |s: &str| Namespace::new(s))]
    pub namespace: Namespace,
    /// The virtual host.
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// The worker's broker user.
    #[arg(long, default_value = "mmt-worker")]
    pub worker_user: String,
    /// The console's broker user.
    #[arg(long, default_value = "mmt-console")]
    pub console_user: String,
    /// Run the commands with rabbitmqctl instead of printing them (again and
    /// again: it is idempotent).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: create missing users, each with a random password
    /// written to DIR/<user> (mode 0600).
    #[arg(long, value_name = "DIR", requires = "apply")]
    pub passwords_dir: Option<PathBuf>,
}

/// Options of `mmt-worker run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Broker connection.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Directory of the embedded store (created with mode 0700 when absent).
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// The store's block cache in MiB (fjall's cache of decompressed blocks;
    /// reads beyond it come from the operating system's page cache).
    #[arg(long, env = "MMT_STORE_CACHE_MB", default_value_t = crate::store::DEFAULT_CACHE_MB, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub store_cache_mb: u64,
    /// Master key file: 64 hex characters; created with mode 0600 when absent
    /// (never for a data directory that already holds a store); refused when
    /// group or others can access it. Keep it outside the data directory.
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
    /// Queue type of the state-changing queues and NS.dead.
    #[arg(long, env = "MMT_QUEUE_TYPE", value_enum, default_value = "quorum")]
    pub queue_type: QueueType,
    /// Deliveries of one message before a quorum queue dead-letters it.
    #[arg(long, env = "MMT_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
    /// Unacknowledged deliveries per queue: the largest batch of a read
    /// queue, twice the largest batch of a state-changing queue (one batch
    /// is applied while the one before it is flushed).
    #[arg(long, env = "MMT_PREFETCH", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// More self-custody wallet integrations (comma-separated), beyond
    /// deFiWallet, cryptocurrencyWallet and cryptocurrencyAddress.
    #[arg(long, env = "MMT_WALLET_BROKER_TYPES", value_delimiter = ',')]
    pub wallet_broker_types: Vec<String>,
    /// How often the due index is looked at (expiries, refreshes), in ms.
    #[arg(long, env = "MMT_SWEEP_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub sweep_interval_ms: u64,
    /// The clients file (TOML, CONTRACT.md §10): who may act for which
    /// clientId. Without it the worker runs in open mode and trusts the
    /// clientId of every message. SIGHUP reloads it.
    #[arg(long, env = "MMT_CLIENTS", value_name = "FILE")]
    pub clients: Option<PathBuf>,
    /// The integrations file (TOML, CONTRACT.md §9): how to refresh tokens
    /// at their providers. Reloaded on SIGHUP.
    #[arg(long, env = "MMT_INTEGRATIONS", value_name = "FILE")]
    pub integrations: Option<PathBuf>,
}

impl RunArgs {
    /// The worker configuration these options describe.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            broker: self.broker.clone(),
            data_dir: self.data_dir.clone(),
            store_cache_mb: self.store_cache_mb,
            key_file: self.key_file.clone(),
            queue_type: self.queue_type,
            delivery_limit: self.delivery_limit,
            prefetch: self.prefetch,
            wallet_types: self
                .wallet_broker_types
                .iter()
                .map(|w| w.trim().to_owned())
                .filter(|w| !w.is_empty())
                .collect(),
            sweep_interval: Duration::from_millis(self.sweep_interval_ms),
            clients: self.clients.clone(),
            integrations: self.integrations.clone(),
        }
    }
}

/// Options of `mmt-worker publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Broker connection.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// Fixture files: one message or one scenario each.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Options of `mmt-worker bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Broker connection; the bench's namespaces are
    /// `<namespace>-bench-<id>-<part>`, never the namespace itself.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// A small run (about half a minute) that shows the harness works.
    #[arg(long)]
    pub quick: bool,
    /// Also write every figure as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Messages per ceiling and ingest measurement [default: 20000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub messages: Option<u64>,
    /// Repetitions of every measurement; medians are reported [default: 5, quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: Option<u64>,
    /// Tokens of the large store of the scale phase [default: 1000000, quick 20000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub scale_tokens: Option<u64>,
    /// Connects of the scale phase's footprint through the broker [default: 200000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub footprint_tokens: Option<u64>,
    /// Prefetch of the worker and of the no-op consumers.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Also time each scale start after dropping the page cache (`sync`, then
    /// `3` into /proc/sys/vm/drop_caches: needs root).
    #[arg(long)]
    pub drop_caches: bool,
    /// Only these phases, comma-separated (`ingest` is ceiling and ingest
    /// together, also spelt `ceiling`) [default: every phase].
    #[arg(long, value_name = "PHASES", value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// Refresh throughput: tokens due at once per measurement [default: 10000, quick 300].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    pub refresh_tokens: Option<u64>,
    /// Refresh lapses: tokens with expiries over the compressed hour [default: 100000, quick 500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub lapse_tokens: Option<u64>,
    /// Refresh lapses: how many times faster the hour passes; must divide 3600
    /// into at least 2 s [default: 30, quick 900].
    #[arg(long, value_name = "F", value_parser = clap::value_parser!(u64).range(1..=1800))]
    pub compression: Option<u64>,
}

impl BenchArgs {
    /// The bench configuration these options describe; `worker_binary` is
    /// the `mmt-worker` the scale phase runs as a child process.
    pub fn config(&self, worker_binary: PathBuf) -> BenchConfig {
        let mut config = BenchConfig::new(
            self.broker.amqp_url.clone(),
            self.broker.namespace.clone(),
            worker_binary,
            self.quick,
        );
        config.drop_caches = self.drop_caches;
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(messages) = self.messages {
            config.messages = count(messages);
        }
        if let Some(runs) = self.runs {
            config.runs = count(runs);
        }
        if let Some(tokens) = self.scale_tokens {
            config.scale_tokens = count(tokens);
        }
        if let Some(tokens) = self.footprint_tokens {
            config.footprint_tokens = count(tokens);
        }
        config.prefetch = self.prefetch;
        if !self.phases.is_empty() {
            config.phases.clone_from(&self.phases);
        }
        if let Some(tokens) = self.refresh_tokens {
            config.refresh_tokens = count(tokens);
        }
        if let Some(tokens) = self.lapse_tokens {
            config.lapse_tokens = count(tokens);
        }
        if let Some(factor) = self.compression {
            config.compression = factor;
        }
        config
    }
}
