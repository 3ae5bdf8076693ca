//! Ceiling and ingest on the same N `integration.connected` messages.
//!
//! Each measurement preloads the N messages into `NS.integration.connected`
//! (publisher confirms; persistent; `reply_to` a reply queue of the bench),
//! then lets a consumer drain the backlog: the no-op consumer of
//! [`super::ceiling`], or the real worker (decode, rules, encrypt, store,
//! durable flush, reply, events, multiple-ack). The rate is taken between the
//! first and the last reply the bench receives, so connection and start-up
//! costs count for neither.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use mmt_shared::config::{BrokerArgs, Namespace};
use mmt_shared::wire::{MessageKind, TokenState};

use super::{BenchConfig, BenchError, PATIENCE, mix, tap};
use mmt_worker::amqp::topology::QueueType;
use mmt_worker::app::{FleetConfig, Worker, WorkerConfig};
use mmt_worker::store::crypto::KeyRing;
use tokio_util::sync::CancellationToken;

/// Publishes outstanding before the bench waits for confirms.
const CONFIRM_WINDOW: usize = 1024;

/// One message of the workload.
pub struct Message {
    /// Its `message_id`.
    pub id: String,
    /// Its JSON body.
    pub body: Vec<u8>,
}

/// N `integration.connected` messages shaped like the Link SDK's payload
/// (brand info, fund and cash fields, a refresh token): each a new end user,
/// so each mints a token.
pub fn connected_messages(tag: &str, count: usize) -> Vec<Message> {
    (0..count)
        .map(|i| {
            let seed = mix(i as u64 ^ mix(tag.len() as u64));
            let body = serde_json::json!({
                "clientId": "bench-client",
                "endUserId": format!("user-{tag}-{i}"),
                "scope": if i % 4 == 0 { "write" } else { "read" },
                "accessToken": {
                    "brokerType": "coinbase",
                    "brokerName": "Coinbase",
                    "brokerBrandInfo": { "brokerLogo": "https://example.invalid/coinbase.svg" },
                    "accountTokens": [{
                        "account": {
                            "accountId": format!("cb-{seed:016x}"),
                            "accountName": "Coinbase Main",
                            "fund": 1520.44,
                            "cash": 310.0,
                            "isReconnected": false,
                            "meshAccountId": format!("{:016x}-{:016x}", mix(seed), mix(seed ^ 1)),
                        },
                        "accessToken": format!("cbat_{:016x}{:016x}{:016x}", mix(seed ^ 2), mix(seed ^ 3), mix(seed ^ 4)),
                        "refreshToken": format!("cbrt_{:016x}{:016x}{:016x}", mix(seed ^ 5), mix(seed ^ 6), mix(seed ^ 7)),
                    }],
                    "expiresInSeconds": 7200,
                    "refreshTokenExpiresInSeconds": 7_776_000,
                },
            });
            Message {
                id: format!("bench-{tag}-{i}"),
                body: body.to_string().into_bytes(),
            }
        })
        .collect()
}

/// Publishes `messages` to `NS.in` as `integration.connected`, with
/// confirms, replies going to `reply_to`.
pub async fn preload(
    connection: &Connection,
    ns: &Namespace,
    messages: &[Message],
    reply_to: &str,
) -> Result<(), BenchError> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let exchange = ns.inbound_exchange();
    let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW);
    for (i, message) in messages.iter().enumerate() {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(message.id.as_str().into())
            .with_correlation_id(i.to_string().into())
            .with_reply_to(reply_to.into());
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                MessageKind::IntegrationConnected.routing_key().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= CONFIRM_WINDOW
            && let Some(oldest) = pending.pop_front()
        {
            confirmed(oldest.await?)?;
        }
    }
    for confirm in pending {
        confirmed(confirm.await?)?;
    }
    channel.close(200, "preloaded".into()).await?;
    Ok(())
}

fn confirmed(confirmation: Confirmation) -> Result<(), BenchError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        other => Err(BenchError::Unconfirmed {
            phase: "preload",
            detail: format!("{other:?}"),
        }),
    }
}

/// The bench's reply queue (server-named, exclusive, auto-delete).
pub struct Replies {
    channel: Channel,
    consumer: Consumer,
    queue: String,
}

/// When the replies of one drain arrived.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    first: Instant,
    last: Instant,
    count: usize,
    /// The bench process's CPU time at the first and the last reply.
    cpu: Option<(Duration, Duration)>,
}

impl Drain {
    /// Messages per second between the first and the last reply.
    pub fn rate(&self) -> f64 {
        let span = self.last.duration_since(self.first).as_secs_f64();
        if span > 0.0 {
            (self.count.saturating_sub(1)) as f64 / span
        } else {
            0.0
        }
    }

    /// CPU time of the whole bench process (consumer, broker client, store,
    /// the bench's own reply consumer) per message between the first and
    /// the last reply, in microseconds: unlike the rate, it hardly depends
    /// on what else the machine runs. NaN where `/proc` cannot say.
    pub fn cpu_us_per_msg(&self) -> f64 {
        match self.cpu {
            Some((first, last)) if self.count > 1 => {
                last.saturating_sub(first).as_secs_f64() * 1e6 / (self.count - 1) as f64
            }
            _ => f64::NAN,
        }
    }
}

/// The replies of a drain from the moment every worker consumed.
#[derive(Debug)]
pub struct Window<S> {
    /// The first reply of the window.
    pub first: Instant,
    /// The last reply.
    pub last: Instant,
    /// Replies in the window, the first included.
    pub count: usize,
    /// The sample at the first reply of the window.
    pub at_first: S,
    /// The sample at the last reply.
    pub at_last: S,
}

impl<S> Window<S> {
    /// Messages per second between the first and the last reply.
    pub fn rate(&self) -> f64 {
        let span = self.last.duration_since(self.first).as_secs_f64();
        if span > 0.0 {
            self.count.saturating_sub(1) as f64 / span
        } else {
            0.0
        }
    }

    /// The messages the CPU times between the two samples are divided by.
    pub fn messages(&self) -> f64 {
        self.count.saturating_sub(1) as f64
    }
}

/// The CPU time (user and system, every thread) this process has used so
/// far, from `/proc/self/stat` (in the kernel's fixed 100 Hz `USER_HZ`
/// ticks, so to 10 ms).
pub fn process_cpu() -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: the fields start after its `)`.
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1000 / USER_HZ))
}

impl Replies {
    /// Declares the reply queue and consumes it.
    pub async fn new(connection: &Connection) -> Result<Self, BenchError> {
        let channel = connection.create_channel().await?;
        let (queue, consumer) = tap::consume(&channel, "", &[], "mmt-bench-replies").await?;
        Ok(Self {
            channel,
            queue,
            consumer,
        })
    }

    /// The queue's name, for `reply_to`.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Waits for `expected` replies; every one must be `{"ok":true,...}`.
    pub async fn collect(
        &mut self,
        phase: &'static str,
        expected: usize,
    ) -> Result<Drain, BenchError> {
        let mut first = None;
        let mut last = Instant::now();
        let mut count = 0;
        let (mut cpu_first, mut cpu_last) = (None, None);
        while count < expected {
            let delivery = match tokio::time::timeout(PATIENCE, self.consumer.next()).await {
                Ok(Some(delivery)) => delivery?,
                Ok(None) | Err(_) => {
                    return Err(BenchError::Timeout {
                        phase,
                        done: count,
                        expected,
                    });
                }
            };
            last = Instant::now();
            if first.is_none() {
                first = Some(last);
                cpu_first = process_cpu();
            }
            if !delivery.data.starts_with(br#"{"ok":true"#) {
                return Err(BenchError::Failed {
                    phase,
                    reply: String::from_utf8_lossy(&delivery.data).into_owned(),
                });
            }
            count += 1;
            if count == expected {
                cpu_last = process_cpu();
            }
        }
        Ok(Drain {
            first: first.unwrap_or(last),
            last,
            count,
            cpu: cpu_first.zip(cpu_last),
        })
    }

    /// Waits for `expected` replies, every one `{"ok":true,...}`, and
    /// measures from the first reply at which `ready()` holds (every worker
    /// consuming) to the last: `sample()` is taken at both ends.
    pub async fn collect_window<S>(
        &mut self,
        phase: &'static str,
        expected: usize,
        ready: impl Fn() -> bool,
        mut sample: impl FnMut() -> S,
    ) -> Result<Window<S>, BenchError> {
        let mut count = 0;
        let mut start: Option<(Instant, usize, S)> = None;
        while count < expected {
            let delivery = match tokio::time::timeout(PATIENCE, self.consumer.next()).await {
                Ok(Some(delivery)) => delivery?,
                Ok(None) | Err(_) => {
                    return Err(BenchError::Timeout {
                        phase,
                        done: count,
                        expected,
                    });
                }
            };
            let at = Instant::now();
            if !delivery.data.starts_with(br#"{"ok":true"#) {
                return Err(BenchError::Failed {
                    phase,
                    reply: String::from_utf8_lossy(&delivery.data).into_owned(),
                });
            }
            count += 1;
            if start.is_none() && ready() {
                start = Some((at, count, sample()));
            }
        }
        let at_last = sample();
        let last = Instant::now();
        let Some((first, first_count, at_first)) = start else {
            return Err(BenchError::Failed {
                phase,
                reply: "every reply came before all the workers consumed".into(),
            });
        };
        Ok(Window {
            first,
            last,
            count: count - first_count + 1,
            at_first,
            at_last,
        })
    }

    /// Closes the queue's channel (the queue goes with it).
    pub async fn close(self) -> Result<(), BenchError> {
        self.channel.close(200, "replies done".into()).await?;
        Ok(())
    }
}

/// The worker configuration of the bench's in-process workers.
pub fn worker_config(
    config: &BenchConfig,
    ns: &Namespace,
    queue_type: QueueType,
    data_dir: &Path,
    key_file: &Path,
) -> WorkerConfig {
    WorkerConfig {
        broker: BrokerArgs::new(config.amqp_url.clone(), ns.clone()),
        data_dir: data_dir.to_owned(),
        store: None,
        store_cache_mb: mmt_worker::store::DEFAULT_CACHE_MB,
        audit_max_bytes: mmt_worker::store::audit_log::DEFAULT_MAX_BYTES,
        key_file: key_file.to_owned(),
        queue_type,
        delivery_limit: 5,
        prefetch: config.prefetch,
        wallet_types: Vec::new(),
        sweep_interval: Duration::from_secs(1),
        clients: None,
        integrations: None,
        purge_within: mmt_worker::app::DEFAULT_PURGE_WITHIN,
        rewrap_per_sec: mmt_worker::app::DEFAULT_REWRAP_PER_SEC,
    }
}

/// Drains `expected` messages of `ns` through an in-process worker over
/// `dir`, and checks that it stored one token each.
pub async fn drain_worker(
    config: &BenchConfig,
    ns: &Namespace,
    queue_type: QueueType,
    dir: &Path,
    replies: &mut Replies,
    expected: usize,
) -> Result<Drain, BenchError> {
    let key_file = dir.join("mmt.key");
    KeyRing::load_or_create(&key_file)?;
    let mut fleet = FleetConfig::default();
    let scraping = CancellationToken::new();
    if config.metrics {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|source| BenchError::Io {
                what: "a free loopback port for /metrics".into(),
                source,
            })?;
        fleet.metrics_addr = Some(addr);
        tokio::spawn(scrape_every_second(addr, scraping.clone()));
    }
    let worker = Worker::start_with(
        &worker_config(config, ns, queue_type, &dir.join("data"), &key_file),
        &fleet,
    )
    .await?;
    let drained = replies.collect("ingest", expected).await;
    scraping.cancel();
    let stored = worker.service().store().counts().map(|counts| {
        counts
            .iter()
            .filter(|(key, _)| key.state == TokenState::Active)
            .map(|(_, n)| *n)
            .sum::<u64>()
    });
    worker.stop().await?;
    let drained = drained?;
    let stored = stored?;
    if stored != expected as u64 {
        return Err(BenchError::Failed {
            phase: "ingest",
            reply: format!("{stored} tokens stored for {expected} messages"),
        });
    }
    Ok(drained)
}

/// GETs `/metrics` of `addr` every second until `stop`, as a Prometheus
/// server would (more often than the usual 15 s, to make any cost show).
async fn scrape_every_second(addr: std::net::SocketAddr, stop: CancellationToken) {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let scraped = client
            .get(format!("http://{addr}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        // A worker not listening yet (still starting) is tried again at the
        // next tick.
        if let Ok(response) = scraped {
            let _ = response.bytes().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_time_grows_while_this_thread_computes() {
        let before = process_cpu().expect("/proc/self/stat has the CPU times");
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        let mut now = before;
        while now < before + Duration::from_millis(50) && Instant::now() < give_up {
            for _ in 0..100_000 {
                x = std::hint::black_box(super::super::mix(x));
            }
            now = process_cpu().expect("/proc/self/stat has the CPU times");
        }
        assert!(
            now >= before + Duration::from_millis(50),
            "CPU time went from {before:?} to {now:?} in 20 s of computing"
        );
    }

    #[test]
    fn cpu_per_message_spans_the_messages_after_the_first() {
        let at = Instant::now();
        let drain = |count, cpu| Drain {
            first: at,
            last: at,
            count,
            cpu,
        };
        let span = Some((Duration::from_secs(1), Duration::from_millis(1_500)));
        assert!((drain(11, span).cpu_us_per_msg() - 50_000.0).abs() < 1e-6);
        assert!(drain(1, span).cpu_us_per_msg().is_nan());
        assert!(drain(11, None).cpu_us_per_msg().is_nan());
    }
}
