//! The refresh engine's figures (issue 9), against the local token server
//! ([`mmt_oauth_fixture::Provider`]) started in this process on 127.0.0.1,
//! answering every refresh after a fixed latency, rotating every refresh
//! token and counting any reuse. The worker is a child process
//! (`mmt-worker run --integrations FILE`, its real store and broker) so that
//! its CPU time is its own.
//!
//! - throughput ([`throughput`]): a store of N tokens all due at once; the
//!   rate between the first and the last `token.refreshed` the bench
//!   receives, at each `refresh_concurrency`;
//! - lapses ([`lapse`]): 100,000 tokens whose expiries are spread over a
//!   compressed hour; every token's one refresh must be seen before its
//!   `expiresAt`;
//! - CPU per refresh: the child's user + system time over the refreshes;
//! - [`load`]: the stores, loaded directly; [`watch`]: the events.

pub mod lapse;
pub mod load;
pub mod watch;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapin::Connection;
use mmt_oauth_fixture::{Mode, Options, Provider};
use mmt_shared::config::Namespace;
use mmt_shared::time_fmt::now_millis;
use mmt_shared::tomlfile::TomlFile;

use self::load::{BROKER_TYPE, Loaded, Plan, Schedule};
use self::watch::{Seen, Watch};
use super::child::WorkerChild;
use super::report::RunFigures;
use super::{BenchConfig, BenchError};
use mmt_worker::amqp::topology::{self, QueueType, TopologyConfig};
use mmt_worker::config::integrations::{Integration, Integrations};

/// The environment variable the child reads the fixture's client secret from.
const SECRET_ENV: &str = "MMT_BENCH_FIXTURE_SECRET";

/// The provider of one measurement and the integrations file naming it.
pub struct Fixture {
    /// The running provider.
    pub provider: Provider,
    file: PathBuf,
    integration: Integration,
}

/// How the fixture integration is set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// `refresh_concurrency`.
    pub concurrency: usize,
    /// `refresh_ahead_seconds`.
    pub ahead_secs: u64,
    /// `expires_in` of the access tokens the provider issues.
    pub expires_in: u64,
    /// How long the provider takes to answer.
    pub latency: Duration,
}

impl Fixture {
    /// Starts a provider and writes `dir/integrations.toml` for it.
    pub async fn start(dir: &Path, setup: Setup) -> Result<Self, BenchError> {
        let provider = Provider::start(Options {
            expires_in: Some(setup.expires_in),
            ..Options::default()
        })
        .await
        .map_err(BenchError::io("cannot start the local token server"))?;
        provider.set_mode(Mode::Slow(setup.latency));
        std::fs::create_dir_all(dir)
            .map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
        let file = dir.join("integrations.toml");
        let text = format!(
            "refresh_concurrency = {}\n\n[integrations.{BROKER_TYPE}]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret_env = \"{SECRET_ENV}\"\nrefresh_ahead_seconds = {}\n",
            setup.concurrency,
            provider.token_url(),
            provider.client_id(),
            setup.ahead_secs,
        );
        std::fs::write(&file, &text)
            .map_err(BenchError::io(format!("cannot write {}", file.display())))?;
        let secret = provider.client_secret();
        let parsed =
            Integrations::from_file(&TomlFile::from_text(&file, text), &|_| Some(secret.clone()))?;
        let integration = parsed
            .get(BROKER_TYPE)
            .cloned()
            .ok_or_else(|| BenchError::Child("the fixture integration did not parse".into()))?;
        Ok(Self {
            provider,
            file,
            integration,
        })
    }

    /// `tokens` refresh tokens, issued as if that many users had connected.
    pub fn issue(&self, tokens: usize) -> Vec<String> {
        (0..tokens)
            .map(|_| self.provider.issue_refresh_token())
            .collect()
    }

    /// The load plan of `tokens` tokens.
    pub fn plan(&self, tokens: usize, schedule: Schedule) -> Plan<'_> {
        Plan {
            integration: &self.integration,
            refresh_tokens: self.issue(tokens),
            schedule,
        }
    }

    /// `mmt-worker run` over `store` with this integrations file.
    pub fn worker(
        &self,
        config: &BenchConfig,
        ns: &Namespace,
        store: &Loaded,
        name: &str,
    ) -> Result<WorkerChild, BenchError> {
        let secret = self.provider.client_secret();
        WorkerChild::spawn(
            config,
            ns,
            (&store.data_dir, &store.key_file),
            name,
            &[OsStr::new("--integrations"), self.file.as_os_str()],
            &[(SECRET_ENV, secret.as_str())],
        )
    }

    /// Adds the provider's reuse and error counts to the run's figures.
    pub fn count(&self, figures: &mut RunFigures, worker_errors: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let c = self.provider.counters();
        let add = |figures: &mut RunFigures, name: &str, n: u64| {
            let before = figures.get(name).unwrap_or(0.0);
            figures.set(name, before + n as f64);
        };
        add(figures, "refresh_reuses", c.reuses.load(SeqCst));
        let refused = c.unknown.load(SeqCst) + c.bad_client.load(SeqCst);
        add(figures, "refresh_errors", refused + worker_errors);
    }
}

/// Declares `ns`'s topology (the events exchange must exist before the
/// bench binds to it).
pub async fn declare(connection: &Connection, ns: &Namespace) -> Result<(), BenchError> {
    let setup = connection.create_channel().await?;
    topology::declare(
        &setup,
        &TopologyConfig {
            namespace: ns.clone(),
            queue_type: QueueType::Quorum,
            delivery_limit: 5,
        },
    )
    .await?;
    setup.close(200, "declared".into()).await?;
    Ok(())
}

/// The next event, or an error when the worker exits first.
pub async fn next_event(
    watch: &mut Watch,
    worker: &mut WorkerChild,
    done: usize,
    expected: usize,
) -> Result<(i64, Seen), BenchError> {
    let exited = tokio::select! {
        next = watch.next_patiently(done, expected) => return next,
        status = worker.child.wait() => status.map_or_else(|e| e.to_string(), |s| s.to_string()),
    };
    Err(BenchError::Child(format!(
        "exited during the refresh phase ({exited}): {}",
        worker.tail()
    )))
}

/// Refreshes per second at `concurrency`, over `config.refresh_tokens`
/// tokens all due at once; records `refresh_c<C>_per_s`, `_cpu_us` and
/// `_peak_in_flight`. Returns the load's tokens per second.
pub async fn throughput(
    config: &BenchConfig,
    connection: &Connection,
    ns: &Namespace,
    root: &Path,
    concurrency: usize,
    figures: &mut RunFigures,
) -> Result<f64, BenchError> {
    let tokens = config.refresh_tokens.max(2);
    let dir = root.join(format!("refresh-c{concurrency}-{}", now_millis()));
    let fixture = Fixture::start(
        &dir,
        Setup {
            concurrency,
            ahead_secs: 300,
            expires_in: 3600,
            latency: config.provider_latency,
        },
    )
    .await?;
    let store = load::load(
        &dir,
        fixture.plan(
            tokens,
            Schedule::AllDue {
                expires_at: now_millis() + 3_600_000,
            },
        ),
    )
    .await?;
    declare(connection, ns).await?;
    let mut watch = Watch::bind(connection, ns).await?;
    let mut worker = fixture.worker(config, ns, &store, &format!("refresh-c{concurrency}"))?;
    let measured = drain(&mut watch, &mut worker, tokens).await;
    let stopped = worker.stop().await;
    watch.close().await?;
    let (drained, errors) = measured?;
    stopped?;
    let prefix = format!("refresh_c{concurrency}");
    figures.set(&format!("{prefix}_per_s"), drained.per_s);
    figures.set(&format!("{prefix}_cpu_us"), drained.cpu_us);
    let peak = fixture
        .provider
        .counters()
        .max_in_flight
        .load(std::sync::atomic::Ordering::SeqCst);
    figures.set(&format!("{prefix}_peak_in_flight"), peak as f64);
    fixture.count(figures, errors);
    std::fs::remove_dir_all(&dir)
        .map_err(BenchError::io(format!("cannot remove {}", dir.display())))?;
    Ok(store.tokens_per_s)
}

/// A drained backlog.
struct Drained {
    per_s: f64,
    cpu_us: f64,
}

/// Waits for `tokens` distinct `token.refreshed`; the rate and the worker's
/// CPU time per refresh between the first and the last, and the failures
/// seen (`token.refresh_failed`, `token.expired`, repeated refreshes).
async fn drain(
    watch: &mut Watch,
    worker: &mut WorkerChild,
    tokens: usize,
) -> Result<(Drained, u64), BenchError> {
    let mut seen = HashSet::with_capacity(tokens);
    let mut first = None;
    let mut errors = 0u64;
    while seen.len() < tokens {
        match next_event(watch, worker, seen.len(), tokens).await?.1 {
            Seen::Refreshed(token_id) => {
                if !seen.insert(token_id) {
                    errors += 1;
                }
                if first.is_none() {
                    first = Some((Instant::now(), worker.cpu_secs()?));
                }
            }
            Seen::Expired(_) | Seen::Failed(_) => errors += 1,
            Seen::Stats => {}
        }
    }
    let (last, cpu) = (Instant::now(), worker.cpu_secs()?);
    let (first, cpu_first) = first.unwrap_or((last, cpu));
    let span = last
        .duration_since(first)
        .as_secs_f64()
        .max(f64::MIN_POSITIVE);
    let counted = (tokens - 1) as f64;
    Ok((
        Drained {
            per_s: counted / span,
            cpu_us: (cpu - cpu_first) * 1e6 / counted,
        },
        errors,
    ))
}

/// How the refresh phase measured, for the report's notes.
pub fn note(config: &BenchConfig) -> String {
    let time = lapse::Compressed::new(config.compression).map_or_else(
        || "an invalid compression".to_owned(),
        |t| {
            format!(
                "1-hour expiries compressed {}x (hour {} s, refresh-ahead window {} s), concurrency {}",
                config.compression, t.hour_secs, t.ahead_secs, config.lapse_concurrency
            )
        },
    );
    format!(
        "refresh: the local token server (mmt-oauth-fixture) runs in the bench's process on 127.0.0.1 and answers every refresh after {} ms, rotating refresh tokens; the worker is a child process (mmt-worker run --integrations); stores loaded directly; throughput over {} tokens all due at once; lapses over {} tokens, {time}, the provider giving refreshed tokens two compressed hours",
        config.provider_latency.as_millis(),
        config.refresh_tokens,
        config.lapse_tokens,
    )
}
