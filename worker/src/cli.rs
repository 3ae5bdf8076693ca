//! The command line of `mmt-worker` (clap, with the environment variables of
//! CONTRACT.md §8 as fallbacks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mmt_shared::config::{BrokerArgs, Namespace};

use crate::amqp::topology::QueueType;
use crate::app::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PURGE_WITHIN, DEFAULT_REWRAP_PER_SEC, FleetConfig,
    WorkerConfig,
};
use crate::store::postgres::PgConfig;
use zeroize::Zeroizing;

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
    Run(Box<RunArgs>),
    /// Publish fixture files (messages or scenarios) with publisher confirms,
    /// print the replies and check the expectations.
    Publish(PublishArgs),
    /// The store: `store copy` moves a deployment between the embedded
    /// store and PostgreSQL; `store release` lets a worker serve a restored
    /// store again.
    Store(StoreArgs),
    /// The audit log (CONTRACT.md §12): `audit verify` checks its chains,
    /// `audit query` prints the lines asked for; both work while workers
    /// run.
    Audit(AuditArgs),
    /// Write a backup file of the embedded store: from the running worker
    /// (through its backup socket in the data directory; it goes on
    /// serving), or from a stopped worker's data directory. A consistent
    /// moment, still sealed under the key. PostgreSQL: use pg_dump.
    Backup(BackupArgs),
    /// Restore a backup file into an absent or empty data directory (never
    /// half written). No worker starts on it until `store release` has
    /// applied the revocations made since the backup was taken.
    Restore(RestoreArgs),
    /// The key ring (CONTRACT.md §11): `key rotate` appends a fresh key to
    /// the key file, which running workers take on SIGHUP.
    Key(KeyArgs),
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
    /// Directory of the embedded store (created with mode 0700 when absent);
    /// unused with --store-url.
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// The shared store instead of the embedded one:
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]. Any
    /// number of workers may share one store and one namespace. Shown only
    /// with its password hidden.
    #[arg(
        long,
        env = "MMT_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store_url: Option<String>,
    /// The shared store's password, when it is not in the URL (the
    /// environment's MMT_STORE_PASSWORD, or this file's first line).
    #[arg(
        long,
        env = "MMT_STORE_PASSWORD_FILE",
        value_name = "FILE",
        requires = "store_url"
    )]
    pub store_password_file: Option<PathBuf>,
    /// A CA certificate (PEM) the shared store's certificate must chain to:
    /// TLS is then required (rustls, host name checked).
    #[arg(
        long,
        env = "MMT_STORE_CA",
        value_name = "FILE",
        requires = "store_url"
    )]
    pub store_ca: Option<PathBuf>,
    /// Connections this worker keeps to the shared store.
    #[arg(long, env = "MMT_STORE_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub store_pool_size: u16,
    /// The longest one statement of the shared store may run, in ms (also
    /// the wait for a connection).
    #[arg(long, env = "MMT_STORE_STATEMENT_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub store_statement_timeout_ms: u64,
    /// The store's block cache in MiB (fjall's cache of decompressed blocks;
    /// reads beyond it come from the operating system's page cache).
    #[arg(long, env = "MMT_STORE_CACHE_MB", default_value_t = crate::store::DEFAULT_CACHE_MB, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub store_cache_mb: u64,
    /// The size in bytes past which the embedded store's audit log
    /// (`DATA_DIR/audit.jsonl`) is renamed `audit.<first seq>.jsonl` and a
    /// new file begun; the chain goes on across the files.
    #[arg(long, env = "MMT_AUDIT_MAX_BYTES", default_value_t = crate::store::audit_log::DEFAULT_MAX_BYTES, value_parser = clap::value_parser!(u64).range(4096..))]
    pub audit_max_bytes: u64,
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
    /// Serve /metrics (Prometheus), /healthz and /readyz over plain HTTP on
    /// HOST:PORT (e.g. 127.0.0.1:9464). Off when absent.
    #[arg(long, env = "MMT_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds one broker connect (TCP, TLS and AMQP handshakes) may take
    /// before it is retried with the reconnect backoff.
    #[arg(long, env = "MMT_CONNECT_TIMEOUT", value_name = "SECONDS", default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// Seconds within which a revoked token's wrapped data key and sealed
    /// secrets are gone from every file of the embedded store (a purge
    /// starts half of it after a revocation; unused with --store-url).
    #[arg(long, env = "MMT_PURGE_WITHIN_SECS", value_name = "SECONDS", default_value_t = DEFAULT_PURGE_WITHIN.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub purge_within_secs: u64,
    /// How many data keys a second the worker rewraps under the active key
    /// after a rotation (CONTRACT.md §11), in the background while it
    /// serves.
    #[arg(long, env = "MMT_REWRAP_PER_SEC", value_name = "N", default_value_t = DEFAULT_REWRAP_PER_SEC, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rewrap_per_sec: u32,
}

impl RunArgs {
    /// The metrics address and the connect timeout these options describe.
    pub fn fleet(&self) -> FleetConfig {
        FleetConfig {
            metrics_addr: self.metrics_addr,
            connect_timeout: Duration::from_secs(self.connect_timeout),
        }
    }

    /// The worker configuration these options describe; `Err` when the
    /// store's password file cannot be read.
    pub fn config(&self) -> Result<WorkerConfig, std::io::Error> {
        let store = match &self.store_url {
            Some(url) => {
                let mut store = shared_store(
                    url,
                    self.store_password_file.as_deref(),
                    self.store_ca.as_deref(),
                )?;
                store.pool_size = usize::from(self.store_pool_size);
                store.statement_timeout = Duration::from_millis(self.store_statement_timeout_ms);
                Some(store)
            }
            None => None,
        };
        Ok(WorkerConfig {
            broker: self.broker.clone(),
            data_dir: self.data_dir.clone(),
            store,
            store_cache_mb: self.store_cache_mb,
            audit_max_bytes: self.audit_max_bytes,
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
            purge_within: Duration::from_secs(self.purge_within_secs),
            rewrap_per_sec: self.rewrap_per_sec,
        })
    }
}

/// The shared store at `url`, its password from `password_file` (first
/// line) or the environment's `MMT_STORE_PASSWORD` when the URL has none.
pub fn shared_store(
    url: &str,
    password_file: Option<&std::path::Path>,
    ca: Option<&std::path::Path>,
) -> Result<PgConfig, std::io::Error> {
    let mut store = PgConfig::new(url);
    store.password = match (password_file, std::env::var("MMT_STORE_PASSWORD")) {
        (Some(file), _) => Some(Zeroizing::new(
            std::fs::read_to_string(file)?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        )),
        (None, Ok(password)) => Some(Zeroizing::new(password)),
        (None, Err(_)) => None,
    };
    store.ca = ca.map(std::path::Path::to_path_buf);
    Ok(store)
}

/// Options of `mmt-worker key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// What to do with the key file.
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The key file's commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Append a fresh random key to the key file: it becomes the active key
    /// (the file rewritten atomically, mode 0600; a v1 file becomes a ring
    /// whose key 0 is its key). Works while workers run: send them SIGHUP
    /// (give every worker of a shared store the new file first); they wrap
    /// new data keys under it and rewrap the older ones in the background.
    Rotate(KeyRotateArgs),
}

/// Options of `mmt-worker key rotate`.
#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// The key file.
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
}

/// Options of `mmt-worker store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do with the store.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The store's commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a store into an empty one, offline: the embedded store (a data
    /// directory) to PostgreSQL (a postgres:// URL) or back. Stop the
    /// workers first. A copy that is stopped goes on where it stopped when
    /// run again; the two stores are compared at the end.
    Copy(CopyArgs),
    /// Release a restored store: revoke the tokens revoked since its backup
    /// was taken (--revoked: tokenIds, token.revoked events or audit lines,
    /// one a line), or say there were none (--none-revoked); then a worker
    /// may start on it.
    Release(ReleaseArgs),
}

/// Options of `mmt-worker backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The embedded store's data directory (of the running worker, or of a
    /// stopped one).
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// The backup file to write (never replaced when it exists).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// The store's master key (the backup is checked with it).
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
}

/// Options of `mmt-worker restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to restore into: absent or empty.
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// The master key of the store the backup was taken from.
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
    /// Tokens opened with the key after the restore.
    #[arg(long, default_value_t = 1000)]
    pub verify_sample: usize,
}

/// Options of `mmt-worker store release`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("since").required(true).args(["revoked", "none_revoked"])))]
pub struct ReleaseArgs {
    /// The restored data directory.
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// Its master key.
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
    /// A file of the revocations made since the backup was taken: one a
    /// line, a tokenId, a token.revoked event as published on NS.events
    /// (JSON), or a line of the lost store's audit log. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub revoked: Vec<PathBuf>,
    /// No token was revoked since the backup was taken.
    #[arg(long)]
    pub none_revoked: bool,
}

/// Options of `mmt-worker audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do with the log.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The audit log's commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain of the log from its first line: exit 0, or 1
    /// naming the first line that was edited, moved or follows a deleted
    /// one.
    Verify(AuditLogArgs),
    /// Print the lines of the log that match, as they are written.
    Query(AuditQueryArgs),
}

/// Where the audit log is, and its key.
#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// The embedded store's data directory (its `audit*.jsonl` files).
    #[arg(long, env = "MMT_DATA_DIR", default_value = "mmt-data")]
    pub data_dir: PathBuf,
    /// The shared store instead (its `audit` table): a postgres:// URL.
    #[arg(long, env = "MMT_STORE_URL", value_name = "URL")]
    pub store_url: Option<String>,
    /// The shared store's password, when not in its URL (or
    /// MMT_STORE_PASSWORD).
    #[arg(long, env = "MMT_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// A CA certificate (PEM) the shared store's certificate must chain to.
    #[arg(long, env = "MMT_STORE_CA", value_name = "FILE")]
    pub store_ca: Option<PathBuf>,
    /// The master key: the log's key is derived from it.
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
}

/// Options of `mmt-worker audit query`.
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// Where the log is.
    #[command(flatten)]
    pub log: AuditLogArgs,
    /// Only this client's lines.
    #[arg(long)]
    pub client: Option<String>,
    /// Only this token's lines (the log names it by a keyed reference).
    #[arg(long)]
    pub token_id: Option<String>,
    /// Only lines appended at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
}

/// Options of `mmt-worker store copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store copied: a data directory or a postgres:// URL.
    #[arg(long, value_name = "DIR|URL")]
    pub from: String,
    /// The store written: an empty (or half-copied) data directory or
    /// PostgreSQL database.
    #[arg(long, value_name = "DIR|URL")]
    pub to: String,
    /// The master key of the source (the copy is sealed under the same).
    #[arg(long, env = "MMT_KEY_FILE", default_value = "mmt.key")]
    pub key_file: PathBuf,
    /// The PostgreSQL side's password, when not in its URL (or
    /// MMT_STORE_PASSWORD).
    #[arg(long, env = "MMT_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// A CA certificate (PEM) the PostgreSQL side's certificate must chain to.
    #[arg(long, env = "MMT_STORE_CA", value_name = "FILE")]
    pub store_ca: Option<PathBuf>,
    /// Tokens compared in both stores after the copy.
    #[arg(long, default_value_t = 1000)]
    pub verify_sample: usize,
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
