//! The harness: a worker in its own namespace, data directory and key, run in
//! process against the real broker, with a publisher, an events tap and a
//! dead-letter tap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer, ExchangeKind};
use mmt_shared::broker::TlsArgs;
use mmt_shared::config::{BrokerArgs, DEFAULT_AMQP_URL, Namespace};
use mmt_worker::amqp::topology::QueueType;
use mmt_worker::ops::fixtures::{Publisher, Step};
use mmt_worker::{FleetConfig, Worker, WorkerConfig};
use serde_json::Value;
use tempfile::TempDir;

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The broker the tests use: `MMT_TEST_AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("MMT_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// Connects to the test broker, failing the test (never skipping it) when
/// there is none.
pub async fn connect() -> Connection {
    match Connection::connect(&amqp_url(), ConnectionProperties::default()).await {
        Ok(connection) => connection,
        Err(error) => panic!(
            "no RabbitMQ at {} ({error}); these tests need the real broker: start it with `rabbitmq-server -detached` (bash .ci/run does)",
            amqp_url()
        ),
    }
}

/// A namespace unique to this test run.
pub fn namespace(test: &str) -> Namespace {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let name = format!("t-{}-{suffix}", test.replace('_', "-"));
    let name: String = name.chars().take(100).collect();
    Namespace::new(&name).expect("test namespaces are valid")
}

/// A worker under test and the taps around it.
pub struct TestWorker {
    pub ns: Namespace,
    pub dir: TempDir,
    pub queue_type: QueueType,
    /// The URL the worker connects with (a proxy's, in fault tests).
    pub worker_url: String,
    /// The integrations file the worker starts with.
    pub integrations: Option<PathBuf>,
    pub connection: Connection,
    /// The clients file the worker starts with (strict mode), if any.
    pub clients: Option<PathBuf>,
    /// The worker's TLS options (for an amqps:// `worker_url`).
    pub tls: TlsArgs,
    /// The worker's metrics address and connect timeout.
    pub fleet: FleetConfig,
    /// The shared store's URL (PostgreSQL); `None`: the embedded store.
    pub store_url: Option<String>,
    worker: Option<Worker>,
    publisher: Publisher,
    events: Consumer,
    dead: Option<Consumer>,
}

impl TestWorker {
    /// Starts a worker with quorum queues.
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, QueueType::Quorum).await
    }

    /// Starts a worker with the given queue type.
    pub async fn start_with(test: &str, queue_type: QueueType) -> Self {
        let mut this = Self::start_idle(test).await;
        this.queue_type = queue_type;
        this.start_worker().await;
        this
    }

    /// `mmt-worker run` on this test's namespace, data directory, key and
    /// broker, stdin closed; callers add their options and outputs.
    pub fn run_command(&self) -> tokio::process::Command {
        self.run_command_on(&self.data_dir())
    }

    /// [`TestWorker::run_command`] on another data directory.
    pub fn run_command_on(&self, data_dir: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(worker_binary());
        command
            .arg("run")
            .arg("--namespace")
            .arg(self.ns.as_str())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--key-file")
            .arg(self.key_file())
            .env("MMT_AMQP_URL", amqp_url())
            .stdin(std::process::Stdio::null());
        if let Some(url) = &self.store_url {
            command.arg("--store-url").arg(url);
        }
        command
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("keys").join("mmt.key")
    }

    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            broker: BrokerArgs {
                tls: self.tls.clone(),
                ..BrokerArgs::new(self.worker_url.clone(), self.ns.clone())
            },
            data_dir: self.data_dir(),
            store: self
                .store_url
                .clone()
                .map(mmt_worker::store::postgres::PgConfig::new),
            store_cache_mb: mmt_worker::store::DEFAULT_CACHE_MB,
            audit_max_bytes: mmt_worker::store::audit_log::DEFAULT_MAX_BYTES,
            key_file: self.key_file(),
            queue_type: self.queue_type,
            delivery_limit: 5,
            prefetch: 64,
            wallet_types: vec!["ledgerLive".to_owned()],
            sweep_interval: Duration::from_millis(50),
            clients: self.clients.clone(),
            integrations: self.integrations.clone(),
            purge_within: mmt_worker::app::DEFAULT_PURGE_WITHIN,
            rewrap_per_sec: mmt_worker::app::DEFAULT_REWRAP_PER_SEC,
        }
    }

    /// Starts a worker that reaches the broker through `url` (the test's own
    /// connections go straight to the broker).
    pub async fn start_via(test: &str, url: String) -> Self {
        let mut this = Self::start_idle(test).await;
        this.worker_url = url;
        this.start_worker().await;
        this
    }

    /// The taps and the publisher, but no worker yet.
    pub async fn start_idle(test: &str) -> Self {
        let ns = namespace(test);
        let dir = tempfile::tempdir().expect("tempdir");
        let connection = connect().await;
        let events = events_tap(&connection, &ns).await;
        Self {
            publisher: Publisher::new(&connection, &ns, PATIENCE, "t".into())
                .await
                .expect("publisher"),
            ns,
            dir,
            queue_type: QueueType::Quorum,
            worker_url: amqp_url(),
            integrations: None,
            connection,
            clients: None,
            tls: TlsArgs::default(),
            fleet: FleetConfig::default(),
            store_url: None,
            worker: None,
            events,
            dead: None,
        }
    }

    /// The running worker.
    pub fn worker(&self) -> &Worker {
        self.worker.as_ref().expect("worker running")
    }

    /// Starts the worker (again) on the same data directory and key.
    pub async fn start_worker(&mut self) {
        assert!(self.worker.is_none(), "worker already running");
        let worker = Worker::start_with(&self.config(), &self.fleet)
            .await
            .expect("worker starts");
        self.worker = Some(worker);
    }

    /// Takes a worker started elsewhere (by a task of the test) as this
    /// one's.
    pub fn adopt(&mut self, worker: Worker) {
        assert!(self.worker.is_none(), "worker already running");
        self.worker = Some(worker);
    }

    /// Stops the worker cleanly (the store is flushed and closed).
    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop().await.expect("worker stops cleanly");
        }
    }

    pub async fn restart(&mut self) {
        self.stop_worker().await;
        self.start_worker().await;
    }

    /// Sends a step and returns its reply.
    pub async fn send(&mut self, step: Step) -> Value {
        self.publisher
            .send("test", &step)
            .await
            .expect("request answered")
            .expect("a reply was asked for")
    }

    /// Sends a step that asks for no reply (publisher confirms only).
    pub async fn send_no_reply(&mut self, step: Step) {
        let reply = self.publisher.send("test", &step).await.expect("published");
        assert!(reply.is_none());
    }

    /// Sends `body` on `routing_key` with a fresh message id; returns the reply.
    pub async fn request(&mut self, routing_key: &str, body: Value) -> Value {
        let mut step = Step::new(routing_key, body);
        step.message_id = Some(uuid::Uuid::new_v4().to_string());
        self.send(step).await
    }

    /// Connects one account; returns the reply.
    pub async fn connect(&mut self, body: Value) -> Value {
        self.request("integration.connected", body).await
    }

    /// Connects one account and returns its tokenId.
    pub async fn issue(
        &mut self,
        client: &str,
        user: &str,
        scope: &str,
        broker_type: &str,
        account: &str,
        raw: &str,
    ) -> String {
        token_id(
            &self
                .connect(connected(client, user, scope, broker_type, account, raw))
                .await,
        )
    }

    pub async fn resolve(&mut self, client: &str, token_id: &str, operation: &str) -> Value {
        self.request(
            "token.resolve",
            serde_json::json!({"clientId": client, "tokenId": token_id, "operation": operation}),
        )
        .await
    }

    pub async fn revoke(&mut self, client: &str, token_id: &str) -> Value {
        self.request(
            "connection.removed",
            serde_json::json!({"clientId": client, "tokenId": token_id}),
        )
        .await
    }

    pub async fn link(&mut self, client: &str, user: &str) -> Value {
        self.request(
            "link.access_tokens",
            serde_json::json!({"clientId": client, "endUserId": user}),
        )
        .await
    }

    /// Waits for the next event of `kind`, skipping others.
    pub async fn event(&mut self, kind: &str) -> Value {
        let wait = async {
            while let Some(delivery) = self.events.next().await {
                let delivery = delivery.expect("event delivery");
                if delivery.routing_key.as_str() == kind {
                    return serde_json::from_slice::<Value>(&delivery.data).expect("event is JSON");
                }
            }
            panic!("events tap closed")
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {PATIENCE:?}"))
    }

    /// Every event up to and including the first of `kind`, in the order
    /// they were published (routing key and body).
    pub async fn events_until(&mut self, kind: &str) -> Vec<(String, Value)> {
        let wait = async {
            let mut seen = Vec::new();
            while let Some(delivery) = self.events.next().await {
                let delivery = delivery.expect("event delivery");
                let key = delivery.routing_key.to_string();
                let body = serde_json::from_slice::<Value>(&delivery.data).expect("event is JSON");
                let last = key == kind;
                seen.push((key, body));
                if last {
                    return seen;
                }
            }
            panic!("events tap closed")
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {PATIENCE:?}"))
    }

    /// Every event published so far that is already in the tap, without
    /// waiting.
    pub async fn drain_events(&mut self) -> Vec<(String, Value)> {
        use futures::FutureExt;
        let mut out = Vec::new();
        while let Some(Some(Ok(delivery))) = self.events.next().now_or_never() {
            out.push((
                delivery.routing_key.to_string(),
                serde_json::from_slice(&delivery.data).expect("event is JSON"),
            ));
        }
        out
    }

    /// Waits for the next message on `NS.dead`.
    pub async fn dead_letter(&mut self) -> Delivery {
        if self.dead.is_none() {
            let channel = self.connection.create_channel().await.expect("channel");
            let consumer = consume(&channel, self.ns.dead_queue(), "consume NS.dead").await;
            self.dead = Some(consumer);
        }
        let dead = self.dead.as_mut().expect("dead tap");
        tokio::time::timeout(PATIENCE, dead.next())
            .await
            .expect("a dead letter in time")
            .expect("dead tap open")
            .expect("dead letter delivery")
    }

    /// Stops the worker and deletes this namespace's exchanges and queues.
    pub async fn finish(mut self) {
        self.stop_worker().await;
        let channel = self.connection.create_channel().await.expect("channel");
        for queue in mmt_worker::amqp::topology::queues(&self.ns) {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in mmt_worker::amqp::topology::exchanges(&self.ns) {
            let _ = channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "test done".into()).await;
    }
}

/// An exclusive queue bound to every event of `ns`, declared before the
/// worker starts so that no event is missed.
async fn events_tap(connection: &Connection, ns: &Namespace) -> Consumer {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            ns.events_exchange().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("events exchange");
    bound_tap(&channel, &ns.events_exchange()).await
}

/// An exclusive queue of its own bound to every key of `exchange`, consumed
/// without acknowledgement (declares nothing but that queue, so a user with
/// read-only rights can use it).
pub async fn bound_tap(channel: &lapin::Channel, exchange: &str) -> Consumer {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("tap binding");
    consume(channel, queue.name().clone(), "tap consumer").await
}

/// A one-account `integration.connected` body.
pub fn connected(
    client: &str,
    user: &str,
    scope: &str,
    broker_type: &str,
    account: &str,
    raw: &str,
) -> Value {
    serde_json::json!({
        "clientId": client,
        "endUserId": user,
        "scope": scope,
        "accessToken": {
            "brokerType": broker_type,
            "brokerName": broker_type,
            "accountTokens": [{
                "account": {"accountId": account, "accountName": "Main"},
                "accessToken": raw,
            }],
        },
    })
}

/// The first tokenId of an `integration.connected` reply.
pub fn token_id(reply: &Value) -> String {
    reply["tokens"][0]["tokenId"]
        .as_str()
        .unwrap_or_else(|| panic!("no tokenId in {reply}"))
        .to_owned()
}

/// The error code of an error reply.
pub fn code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "expected an error reply, got {reply}");
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {reply}"))
}

/// Replaces the stored record of `token_id` in the (stopped) worker's store
/// at `data` with bytes that do not decode: the store's layout as
/// worker/src/store.rs documents it (fjall keyspace `fjall`, partition
/// `mmt`, token records under `t`).
pub fn garble_record(data: &Path, token_id: &str) {
    let keyspace = fjall::Config::new(data.join("fjall"))
        .open()
        .expect("store opens");
    let part = keyspace
        .open_partition("mmt", fjall::PartitionCreateOptions::default())
        .expect("partition opens");
    let mut key = b"t".to_vec();
    key.extend_from_slice(token_id.as_bytes());
    part.insert(key, b"not a record".to_vec())
        .expect("corrupts");
    keyspace
        .persist(fjall::PersistMode::SyncAll)
        .expect("flushed");
}

/// Every file under `dir`, with its bytes (a running worker's backup
/// socket is no file).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("readable dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).expect("readable file");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Whether `haystack` holds `needle` anywhere (memchr's substring search:
/// a data directory holds a 32 MiB journal allocated ahead, which a
/// byte-by-byte `windows` scan of an unoptimized test build takes seconds
/// to read, once per needle).
pub fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The `mmt-worker` binary that `cargo test --workspace` builds beside this
/// test binary (the worker package's own CLI tests make cargo build it).
pub fn worker_binary() -> PathBuf {
    built_binary("mmt-worker")
}

/// The `mmt-bench` binary, built beside it the same way (by the bench
/// package's own CLI tests).
pub fn bench_binary() -> PathBuf {
    built_binary("mmt-bench")
}

fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the suite with `cargo test --workspace`",
        binary.display()
    );
    binary
}

/// The repository root (for fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Publishes many requests at once (confirms awaited together) and collects
/// every reply by message id, duplicates included.
pub struct Bulk {
    channel: lapin::Channel,
    exchange: String,
    replies: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Value>>>>,
    answered: tokio::sync::watch::Receiver<usize>,
}

impl Bulk {
    pub async fn new(connection: &Connection, ns: &Namespace) -> Self {
        use lapin::options::ConfirmSelectOptions;
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let mut consumer = consume(
            &channel,
            mmt_worker::ops::fixtures::DIRECT_REPLY_TO,
            "reply consumer",
        )
        .await;
        let replies = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            Vec<Value>,
        >::new()));
        let (tell, answered) = tokio::sync::watch::channel(0usize);
        let sink = replies.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let Some(id) = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.to_string())
                else {
                    continue;
                };
                let reply: Value = serde_json::from_slice(&delivery.data).expect("reply is JSON");
                let count = {
                    let mut map = sink.lock().expect("replies lock");
                    map.entry(id).or_default().push(reply);
                    map.len()
                };
                tell.send_replace(count);
            }
        });
        Self {
            channel,
            exchange: ns.inbound_exchange(),
            replies,
            answered,
        }
    }

    /// Publishes every (routing key, message id, body) and waits for the
    /// broker's confirms (not for the replies).
    pub async fn publish(&self, messages: &[(&str, String, Value)]) {
        self.publish_at(messages, None).await;
    }

    /// As [`Bulk::publish`], every message with this `timestamp` property
    /// (seconds) when given.
    pub async fn publish_at(&self, messages: &[(&str, String, Value)], timestamp: Option<u64>) {
        use lapin::BasicProperties;
        use lapin::options::BasicPublishOptions;
        let mut confirms = Vec::with_capacity(messages.len());
        for (routing_key, id, body) in messages {
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(id.as_str().into())
                .with_correlation_id(id.as_str().into())
                .with_reply_to(mmt_worker::ops::fixtures::DIRECT_REPLY_TO.into());
            let properties = match timestamp {
                Some(t) => properties.with_timestamp(t),
                None => properties,
            };
            let confirm = self
                .channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    (*routing_key).into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body.to_string().as_bytes(),
                    properties,
                )
                .await
                .expect("published");
            confirms.push(confirm);
        }
        for confirm in futures::future::join_all(confirms).await {
            let confirmation = confirm.expect("confirmed");
            assert!(
                matches!(confirmation, lapin::Confirmation::Ack(None)),
                "{confirmation:?}"
            );
        }
    }

    /// How many distinct message ids have a reply.
    pub fn answered(&self) -> usize {
        *self.answered.borrow()
    }

    /// Waits until `n` distinct message ids have a reply.
    pub async fn wait_answered(&self, n: usize, within: Duration) {
        let mut answered = self.answered.clone();
        let reached = tokio::time::timeout(within, answered.wait_for(|count| *count >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "only {} of {n} messages answered within {within:?}",
            self.answered()
        );
    }

    /// Every reply so far, by message id.
    pub fn replies(&self) -> std::collections::HashMap<String, Vec<Value>> {
        self.replies.lock().expect("replies lock").clone()
    }
}

/// `n` connections of distinct identities: (routing key, message id, body).
pub fn connections(prefix: &str, n: usize) -> Vec<(&'static str, String, Value)> {
    (0..n)
        .map(|i| {
            (
                "integration.connected",
                format!("{prefix}-connect-{i}"),
                connected(
                    "acme",
                    &format!("{prefix}-user-{i}"),
                    "read",
                    "coinbase",
                    "cb-1",
                    &format!("raw-{prefix}-{i}"),
                ),
            )
        })
        .collect()
}

/// Consumes `queue` on `channel` with automatic acknowledgement (taps and
/// reply queues, where the test only reads).
async fn consume(
    channel: &lapin::Channel,
    queue: impl Into<lapin::types::ShortString>,
    what: &str,
) -> Consumer {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"))
}
