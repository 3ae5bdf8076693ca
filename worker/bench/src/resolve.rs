//! Closed-loop `token.resolve`: C clients, each on its own channel with
//! direct reply-to, each sending one request, waiting for its reply, and
//! sending the next, for a warm-up and then a measured window. A request
//! counts when it starts after the warm-up and its reply arrives before the
//! window ends; throughput is those requests over the window.
//!
//! The same clients drive the real worker (over a store of 1,000 tokens,
//! random tokenIds) and a no-op echo responder on a queue declared the same
//! way, with the same prefetch and a reply of the real reply's size.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use mmt_shared::config::Namespace;
use mmt_shared::secret::Secret;
use mmt_shared::wire::{MessageKind, ResolveReply, Scope};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ceiling::NoopResponder;
use super::ingest::worker_config;
use super::report::{HEADLINE_CONCURRENCY, RunFigures, percentile};
use super::tokens::{CLIENT_ID, Preloaded, secret, token_id};
use super::{BenchConfig, BenchError, PATIENCE, mix};
use mmt_worker::amqp::topology::{self, QueueType, TopologyConfig};
use mmt_worker::app::Worker;
use mmt_worker::ops::fixtures::DIRECT_REPLY_TO;

/// One closed-loop measurement.
#[derive(Clone, Copy, Debug)]
pub struct Level {
    /// Requests answered per second.
    pub msgs_per_s: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The longest request (not recorded by [`Level::record`]).
    pub max_ms: f64,
    /// Replies that said the request failed, warm-up included: always 0
    /// from [`closed_loop`], which stops at the first; counted by
    /// [`closed_loop_counting`] (not recorded by [`Level::record`]).
    pub failed: u64,
}

impl Level {
    /// Records the level as `<prefix>_p50_ms`, ..., `<prefix>_msgs_per_s`.
    pub fn record(&self, figures: &mut RunFigures, prefix: &str) {
        figures.set(&format!("{prefix}_msgs_per_s"), self.msgs_per_s);
        figures.set(&format!("{prefix}_p50_ms"), self.p50_ms);
        figures.set(&format!("{prefix}_p95_ms"), self.p95_ms);
        figures.set(&format!("{prefix}_p99_ms"), self.p99_ms);
    }
}

/// A resolve request for one of the first `tokens` preloaded tokenIds.
pub fn request(tokens: usize, draw: u64) -> Vec<u8> {
    let index = mix(draw) % (tokens.max(1) as u64);
    serde_json::json!({
        "clientId": CLIENT_ID,
        "tokenId": token_id(index),
        "operation": "read",
    })
    .to_string()
    .into_bytes()
}

/// Runs `concurrency` closed-loop clients against `NS.token.resolve`; a
/// reply that says the request failed ends the measurement with an error.
pub async fn closed_loop(
    connection: &Connection,
    ns: &Namespace,
    tokens: usize,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    user_id: Option<&str>,
) -> Result<Level, BenchError> {
    let load = Load {
        tokens,
        concurrency,
        user_id,
        count_failures: false,
    };
    drive(connection, ns, &load, warmup, window).await
}

/// [`closed_loop`] without a broker user, but a reply that says the request
/// failed is counted ([`Level::failed`]) and the client goes on.
pub async fn closed_loop_counting(
    connection: &Connection,
    ns: &Namespace,
    tokens: usize,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Level, BenchError> {
    let load = Load {
        tokens,
        concurrency,
        user_id: None,
        count_failures: true,
    };
    drive(connection, ns, &load, warmup, window).await
}

/// What the clients of one closed loop send, and what a failed reply does.
struct Load<'a> {
    tokens: usize,
    concurrency: usize,
    user_id: Option<&'a str>,
    count_failures: bool,
}

async fn drive(
    connection: &Connection,
    ns: &Namespace,
    load: &Load<'_>,
    warmup: Duration,
    window: Duration,
) -> Result<Level, BenchError> {
    let mut clients = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let channel = connection.create_channel().await?;
        let replies = mmt_worker::amqp::rpc::direct_replies(&channel).await?;
        clients.push((channel, replies));
    }
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + window;
    let mut tasks = JoinSet::new();
    for (client, (channel, replies)) in clients.into_iter().enumerate() {
        let client = Client {
            channel,
            replies,
            exchange: ns.inbound_exchange(),
            tokens: load.tokens,
            id: client as u64,
            user_id: load.user_id.map(str::to_owned),
            count_failures: load.count_failures,
        };
        tasks.spawn(client.run(measured_from, end));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (client_latencies, client_failed) = joined??;
        latencies.extend(client_latencies);
        failed += client_failed;
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Level {
        msgs_per_s: latencies.len() as f64 / window.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p95_ms: percentile(&latencies, 0.95),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        failed,
    })
}

struct Client {
    channel: Channel,
    replies: Consumer,
    exchange: String,
    tokens: usize,
    id: u64,
    user_id: Option<String>,
    count_failures: bool,
}

impl Client {
    /// Latencies (ms) of the requests inside the window, and the failed
    /// replies counted.
    async fn run(
        mut self,
        measured_from: Instant,
        end: Instant,
    ) -> Result<(Vec<f64>, u64), BenchError> {
        let mut latencies = Vec::new();
        let mut failed = 0u64;
        let mut sequence = 0u64;
        loop {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            sequence += 1;
            let correlation_id = sequence.to_string();
            let body = request(self.tokens, (self.id << 40) ^ sequence);
            let mut properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_reply_to(DIRECT_REPLY_TO.into())
                .with_correlation_id(correlation_id.as_str().into());
            if let Some(user) = &self.user_id {
                properties = properties.with_user_id(user.as_str().into());
            }
            self.channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    MessageKind::TokenResolve.routing_key().into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?;
            let reply = loop {
                let delivery = match tokio::time::timeout(PATIENCE, self.replies.next()).await {
                    Ok(Some(delivery)) => delivery?,
                    Ok(None) | Err(_) => {
                        return Err(BenchError::Timeout {
                            phase: "resolve",
                            done: latencies.len(),
                            expected: latencies.len() + 1,
                        });
                    }
                };
                let ours = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .is_some_and(|c| c.as_str() == correlation_id);
                if ours {
                    break delivery.data;
                }
            };
            let done = Instant::now();
            if !reply.starts_with(br#"{"ok":true"#) {
                let reply = String::from_utf8_lossy(&reply).into_owned();
                if !self.count_failures {
                    return Err(BenchError::Failed {
                        phase: "resolve",
                        reply,
                    });
                }
                if failed == 0 {
                    eprintln!("bench: a resolve failed (each is counted): {reply}");
                }
                failed += 1;
            } else if sent >= measured_from && done <= end {
                latencies.push(done.duration_since(sent).as_secs_f64() * 1000.0);
            }
        }
        self.channel.close(200, "client done".into()).await?;
        Ok((latencies, failed))
    }
}

/// A reply of the size and shape the worker sends for a resolve.
pub fn resolve_reply() -> Result<Vec<u8>, BenchError> {
    let reply = ResolveReply {
        ok: true,
        token_id: token_id(0),
        broker_type: "coinbase".into(),
        account_id: "acct-0".into(),
        scope: Scope::Read,
        access_token: Secret::new(secret("cbat", 0)),
        expires_at: None,
    };
    Ok(serde_json::to_vec(&reply)?)
}

/// The worker (in process, over `store`) and the echo, at every
/// concurrency, in an order that alternates between runs.
pub async fn compare(
    config: &BenchConfig,
    connection: &Connection,
    worker_ns: &Namespace,
    echo_ns: &Namespace,
    store: &Preloaded,
    run: usize,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let setup = connection.create_channel().await?;
    topology::declare(
        &setup,
        &TopologyConfig {
            namespace: echo_ns.clone(),
            queue_type: QueueType::Quorum,
            delivery_limit: 5,
        },
    )
    .await?;
    setup.close(200, "declared".into()).await?;
    let echo = NoopResponder::start(
        connection,
        &echo_ns.queue(MessageKind::TokenResolve),
        config.prefetch,
        resolve_reply()?,
    )
    .await?;
    let stop = CancellationToken::new();
    let echo = tokio::spawn(echo.run(stop.clone()));
    let worker = Worker::start(&worker_config(
        config,
        worker_ns,
        QueueType::Quorum,
        &store.data_dir,
        &store.key_file,
    ))
    .await;
    let measured = match worker {
        Ok(worker) => {
            let measured = levels(config, connection, worker_ns, echo_ns, store, run).await;
            worker.stop().await?;
            measured
        }
        Err(error) => Err(error.into()),
    };
    stop.cancel();
    echo.await??;
    for (concurrency, worker, echo) in measured? {
        worker.record(figures, &format!("resolve_c{concurrency}"));
        echo.record(figures, &format!("echo_c{concurrency}"));
        if concurrency == HEADLINE_CONCURRENCY {
            worker.record(figures, "resolve");
            echo.record(figures, "echo");
            figures.set(
                "resolve_throughput_ratio",
                worker.msgs_per_s / echo.msgs_per_s,
            );
            figures.set("resolve_p99_ratio", worker.p99_ms / echo.p99_ms);
        }
    }
    Ok(())
}

async fn levels(
    config: &BenchConfig,
    connection: &Connection,
    worker_ns: &Namespace,
    echo_ns: &Namespace,
    store: &Preloaded,
    run: usize,
) -> Result<Vec<(usize, Level, Level)>, BenchError> {
    let mut out = Vec::new();
    for &concurrency in &config.concurrencies {
        let mut worker = None;
        let mut echo = None;
        for step in 0..2 {
            let (ns, slot) = if (step + run).is_multiple_of(2) {
                (worker_ns, &mut worker)
            } else {
                (echo_ns, &mut echo)
            };
            *slot = Some(
                closed_loop(
                    connection,
                    ns,
                    store.tokens,
                    concurrency,
                    config.warmup,
                    config.resolve_time,
                    None,
                )
                .await?,
            );
        }
        if let (Some(worker), Some(echo)) = (worker, echo) {
            out.push((concurrency, worker, echo));
        }
    }
    Ok(out)
}

/// The worker in strict mode (CONTRACT.md §10) over the same store, at the
/// headline concurrency, its requests naming the bench's broker user: what
/// the identity check costs, next to the open-mode figures of [`compare`]
/// (measured just before, on the same store and namespace).
pub async fn strict(
    config: &BenchConfig,
    connection: &Connection,
    worker_ns: &Namespace,
    store: &Preloaded,
    figures: &mut RunFigures,
) -> Result<(), BenchError> {
    let user = mmt_shared::broker::Broker::new(&config.amqp_url, &Default::default())?
        .username()
        .to_owned();
    let clients = store.data_dir.with_file_name("clients.toml");
    std::fs::write(
        &clients,
        format!("[clients.{}]\nbroker_users = [{user:?}]\n", CLIENT_ID),
    )
    .map_err(BenchError::io("cannot write the bench's clients file"))?;
    let mut worker_config = worker_config(
        config,
        worker_ns,
        QueueType::Quorum,
        &store.data_dir,
        &store.key_file,
    );
    worker_config.clients = Some(clients);
    let worker = Worker::start(&worker_config).await?;
    let measured = closed_loop(
        connection,
        worker_ns,
        store.tokens,
        HEADLINE_CONCURRENCY,
        config.warmup,
        config.resolve_time,
        Some(&user),
    )
    .await;
    worker.stop().await?;
    let level = measured?;
    level.record(figures, "strict_resolve");
    if let (Some(open_rate), Some(open_p99)) = (
        figures.get("resolve_msgs_per_s"),
        figures.get("resolve_p99_ms"),
    ) {
        figures.set("strict_throughput_ratio", level.msgs_per_s / open_rate);
        figures.set("strict_p99_ratio", level.p99_ms / open_p99);
    }
    Ok(())
}
