//! `mmt-bench`: measures the worker next to the broker's own ceiling, in
//! namespaces of its own that it deletes afterwards (build with --release).
//! Glue over the `mmt_bench` library; the worker child processes of the
//! scale and refresh phases are the `mmt-worker` built beside this binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mmt_bench::{BenchConfig, Phase};
use mmt_shared::config::BrokerArgs;

/// The options of `mmt-bench`.
#[derive(Debug, Parser)]
#[command(name = "mmt-bench", version, about)]
struct BenchArgs {
    /// Broker connection; the bench's namespaces are
    /// `<namespace>-bench-<id>-<part>`, never the namespace itself.
    #[command(flatten)]
    broker: BrokerArgs,
    /// A small run (about half a minute) that shows the harness works.
    #[arg(long)]
    quick: bool,
    /// Also write every figure as one JSON object to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Messages per ceiling and ingest measurement [default: 20000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    messages: Option<u64>,
    /// Repetitions of every measurement; medians are reported [default: 5, quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    runs: Option<u64>,
    /// Tokens of the large store of the scale phase [default: 1000000, quick 20000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    scale_tokens: Option<u64>,
    /// Connects of the scale phase's footprint through the broker [default: 200000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    footprint_tokens: Option<u64>,
    /// Prefetch of the worker and of the no-op consumers.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,
    /// Also time each scale start after dropping the page cache (`sync`, then
    /// `3` into /proc/sys/vm/drop_caches: needs root).
    #[arg(long)]
    drop_caches: bool,
    /// Only these phases, comma-separated (`ingest` is ceiling and ingest
    /// together, also spelt `ceiling`) [default: every phase].
    #[arg(long, value_name = "PHASES", value_delimiter = ',')]
    phases: Vec<Phase>,
    /// Refresh throughput: tokens due at once per measurement [default: 10000, quick 300].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    refresh_tokens: Option<u64>,
    /// Refresh lapses: tokens with expiries over the compressed hour [default: 100000, quick 500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    lapse_tokens: Option<u64>,
    /// Refresh lapses: how many times faster the hour passes; must divide 3600
    /// into at least 2 s [default: 30, quick 900].
    #[arg(long, value_name = "F", value_parser = clap::value_parser!(u64).range(1..=1800))]
    compression: Option<u64>,
    /// Purge: tokens in the store [default: 100000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(4..))]
    purge_tokens: Option<u64>,
    /// Purge: the worker's --purge-within-secs [default: 60, quick 2].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    purge_within_secs: Option<u64>,
    /// Rewrap (key rotation): tokens in the store [default: 100000, quick 2000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rewrap_tokens: Option<u64>,
    /// The ingest phase's worker serves /metrics on a loopback port and is
    /// scraped every second (compare with a run without it).
    #[arg(long)]
    metrics: bool,
    /// Run the phases on worker child processes over the PostgreSQL server
    /// of this URL, next to one child on the embedded store: each
    /// measurement in a database `mmt_bench_<id>` the bench creates there
    /// (the URL's user must be allowed to) and drops afterwards. Ingest,
    /// resolve (concurrency 4 and 32) and, with `scale`, the footprint per
    /// token at --scale-tokens; refresh is not run.
    #[arg(long, value_name = "URL", env = "MMT_BENCH_STORE_URL")]
    store_url: Option<String>,
    /// With --store-url: the numbers of workers on PostgreSQL measured
    /// (each 1 to 3, comma-separated).
    #[arg(long, value_name = "N", value_delimiter = ',', requires = "store_url", value_parser = clap::value_parser!(u64).range(1..=3))]
    workers: Vec<u64>,
}

impl BenchArgs {
    /// The bench configuration these options describe; `worker_binary` is
    /// the `mmt-worker` the scale phase runs as a child process.
    fn config(&self, worker_binary: PathBuf) -> BenchConfig {
        let mut config = BenchConfig::new(
            self.broker.amqp_url.clone(),
            self.broker.namespace.clone(),
            worker_binary,
            self.quick,
        );
        config.drop_caches = self.drop_caches;
        config.metrics = self.metrics;
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
        if let Some(tokens) = self.purge_tokens {
            config.purge_tokens = count(tokens);
        }
        if let Some(secs) = self.purge_within_secs {
            config.purge_within = std::time::Duration::from_secs(secs);
        }
        if let Some(tokens) = self.rewrap_tokens {
            config.rewrap_tokens = count(tokens);
        }
        config.store_url.clone_from(&self.store_url);
        if !self.workers.is_empty() {
            config.workers = self.workers.iter().map(|&n| count(n)).collect();
        }
        config
    }
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    // The bench runs workers in process: their per-message log lines would
    // bury its output (and cost it time), so it logs warnings only by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MMT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mmt-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mmt-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `mmt-worker` beside this binary (cargo builds both into one
/// directory).
fn worker_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the mmt-bench binary")?;
    let binary = exe
        .parent()
        .context("the mmt-bench binary has no directory")?
        .join("mmt-worker");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release -p mmt-worker -p mmt-bench`",
        binary.display()
    );
    Ok(binary)
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "mmt-bench: this is a debug build; its figures say nothing about the release build"
        );
    }
    let binary = worker_binary()?;
    let report = mmt_bench::run(&args.config(binary)).await?;
    let mut out = std::io::stdout();
    write!(out, "{}", report.table())?;
    out.flush()?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
