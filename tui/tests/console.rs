//! End to end, against the real local RabbitMQ: the real `mmt-tui` runs in a
//! pseudo-terminal (a detached tmux pane, which is also the VT parser we read
//! the screen from) next to a real worker. Each test has its own namespace.
//! Without a reachable broker these tests fail; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mmt_shared::config::{BrokerArgs, DEFAULT_AMQP_URL, Namespace};
use mmt_shared::wire::MessageKind;
use mmt_worker::amqp::topology::QueueType;
use mmt_worker::ops::fixtures::{Publisher, Step};
use mmt_worker::{Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn amqp_url() -> String {
    std::env::var("MMT_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

struct RunningWorker {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl RunningWorker {
    async fn start(namespace: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = WorkerConfig {
            broker: BrokerArgs::new(
                amqp_url(),
                Namespace::new(namespace).expect("valid namespace"),
            ),
            data_dir: dir.path().join("data"),
            store: None,
            store_cache_mb: mmt_worker::store::DEFAULT_CACHE_MB,
            audit_max_bytes: mmt_worker::store::audit_log::DEFAULT_MAX_BYTES,
            key_file: dir.path().join("mmt.key"),
            queue_type: QueueType::Classic,
            delivery_limit: 5,
            prefetch: 64,
            wallet_types: Vec::new(),
            sweep_interval: Duration::from_millis(200),
            clients: None,
            integrations: None,
            purge_within: mmt_worker::app::DEFAULT_PURGE_WITHIN,
            rewrap_per_sec: mmt_worker::app::DEFAULT_REWRAP_PER_SEC,
        };
        let worker = Worker::start(&config)
            .await
            .expect("the worker starts (is RabbitMQ running on 127.0.0.1:5672?)");
        let shutdown = worker.shutdown_token();
        let task = tokio::spawn(async move {
            worker.run().await.expect("the worker stops cleanly");
        });
        Self {
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Stops the worker, leaving the namespace as it is.
    async fn halt(self) {
        self.shutdown.cancel();
        self.task.await.expect("worker task");
    }

    /// Stops the worker and deletes the namespace's queues and exchanges.
    async fn stop(self, namespace: &str) {
        self.halt().await;
        let ns = Namespace::new(namespace).expect("valid namespace");
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("broker reachable");
        let channel = connection.create_channel().await.expect("channel");
        let queues = MessageKind::ALL
            .iter()
            .map(|kind| ns.queue(*kind))
            .chain([ns.dead_queue()])
            .chain(["console.snapshot", "console.tokens"].map(|q| format!("{namespace}.{q}")));
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .expect("queue deleted");
        }
        for exchange in [
            ns.inbound_exchange(),
            ns.events_exchange(),
            ns.dead_exchange(),
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .expect("exchange deleted");
        }
        let _ = connection.close(200, "test done".into()).await;
    }
}

/// The console in a detached tmux pane of 80x24.
struct Pane {
    socket: String,
}

impl Pane {
    fn start(namespace: &str) -> Self {
        let socket = unique("mmt-tui-test");
        let bin = env!("CARGO_BIN_EXE_mmt-tui");
        let command = format!(
            "env MMT_NAMESPACE={namespace} MMT_AMQP_URL='{}' {bin}",
            amqp_url()
        );
        let pane = Self { socket };
        let out = pane.tmux(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "80",
            "-y",
            "24",
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pane
    }

    fn tmux(&self, args: &[&str]) -> Output {
        // A server of its own (`-L`, a unique socket) that reads no
        // configuration (`-f /dev/null`): never the user's tmux server.
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs (apt-get install -y tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "tui"]).stdout)
            .into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(
            self.tmux(&["send-keys", "-t", "tui", keys])
                .status
                .success()
        );
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "tui"]).status.success()
    }

    /// Closes the detail pane and waits until it is gone: a key sent right
    /// after Escape can reach the console in the same read and parse as Alt
    /// plus that key (seen under a loaded CI run: Escape then `5` left the
    /// pane open).
    async fn close_detail(&self) {
        self.keys("Escape");
        self.wait_for("the detail pane to close", |s| {
            !s.contains("Token (y copies")
        })
        .await;
    }

    /// Waits until the screen satisfies `what`; returns it.
    async fn wait_for(&self, label: &str, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            let screen = self.screen();
            if what(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {label}; screen:\n{screen}"
            );
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

async fn publisher(namespace: &str) -> (Connection, Publisher) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("broker reachable");
    let publisher = Publisher::new(
        &connection,
        &Namespace::new(namespace).expect("valid"),
        Duration::from_secs(10),
        unique("run"),
    )
    .await
    .expect("publisher");
    (connection, publisher)
}

fn step(routing_key: &str, body: Value) -> Step {
    serde_json::from_value(json!({
        "routingKey": routing_key,
        "messageId": unique("msg"),
        "body": body,
    }))
    .expect("a valid step")
}

/// Connects a read token holding `raw`, asks to write with it, revokes it.
/// Returns the tokenId.
async fn scope_mismatch_then_revocation(publisher: &mut Publisher, raw: &str) -> String {
    let connected = publisher
        .send(
            "connect",
            &step(
                "integration.connected",
                json!({
                    "clientId": "acme", "endUserId": "user-42", "scope": "read",
                    "accessToken": {"brokerType": "coinbase", "accountTokens": [
                        {"account": {"accountId": "cb-1"}, "accessToken": raw, "refreshToken": format!("{raw}-refresh")}
                    ]}
                }),
            ),
        )
        .await
        .expect("connect")
        .expect("a reply");
    let token_id = connected["tokens"][0]["tokenId"]
        .as_str()
        .expect("a tokenId")
        .to_owned();
    let refused = publisher
        .send(
            "write",
            &step(
                "token.resolve",
                json!({"clientId": "acme", "tokenId": token_id, "operation": "write"}),
            ),
        )
        .await
        .expect("resolve")
        .expect("a reply");
    assert_eq!(refused["error"]["code"], "scope_mismatch");
    let revoked = publisher
        .send(
            "revoke",
            &step(
                "connection.removed",
                json!({"clientId": "acme", "tokenId": token_id}),
            ),
        )
        .await
        .expect("revoke")
        .expect("a reply");
    assert_eq!(revoked["revoked"], true);
    token_id
}

/// Closes the console's broker connection (named after its namespace), as a
/// broker restart or a network cut would.
fn drop_console_link(namespace: &str) {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "--quiet", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let name = format!("mmt-tui {namespace}");
    let listing = String::from_utf8_lossy(&out.stdout);
    let pid = listing
        .lines()
        .find(|line| line.contains(&name))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {name}:\n{listing}"));
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test: link dropped"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
}

/// The "all" line of the counts box: no active token, one revoked.
fn counts_one_revoked(line: &str) -> bool {
    let counts = line.split("││").next().unwrap_or_default();
    counts.split_whitespace().collect::<Vec<_>>() == ["│all", "0", "0", "1"]
}

fn dump(namespace: &str, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmt-tui"));
    command
        .args([
            "--dump",
            "--namespace",
            namespace,
            "--amqp-url",
            &amqp_url(),
        ])
        .env_remove("NO_COLOR");
    if json {
        command.arg("--json");
    }
    let out = command.output().expect("mmt-tui runs");
    assert!(
        out.status.success(),
        "mmt-tui --dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_scope_mismatch_and_a_revocation_from_a_real_worker() {
    let namespace = unique("tui-e2e");
    let raw = unique("RAW-SECRET");
    let pane = Pane::start(&namespace);
    let screen = pane
        .wait_for("the broker link, before any worker", |s| {
            s.contains("broker up") && s.contains("worker not seen")
        })
        .await;
    assert!(screen.contains("1 Overview"), "{screen}");

    let worker = RunningWorker::start(&namespace).await;
    pane.wait_for("the worker to be picked up", |s| {
        s.contains("worker last heard")
    })
    .await;
    let (connection, mut publisher) = publisher(&namespace).await;
    let token_id = scope_mismatch_then_revocation(&mut publisher, &raw).await;
    let shown_id = &token_id[..20];

    pane.keys("3");
    let rejections = pane
        .wait_for(
            "the scope mismatch and its count on the rejections screen",
            |s| {
                s.contains("scope_mismatch 1")
                    && s.lines().any(|l| {
                        l.contains(shown_id)
                            && l.contains("! scope_mismatch")
                            && l.contains("write")
                    })
            },
        )
        .await;

    pane.keys("1");
    let overview = pane
        .wait_for("the revocation and its count on the overview", |s| {
            s.lines()
                .any(|l| l.contains("revoked") && l.contains(shown_id))
                && s.lines().any(counts_one_revoked)
        })
        .await;

    drop_console_link(&namespace);
    pane.wait_for("the reconnection in the header", |s| {
        s.contains("broker up, 1 reconnect")
    })
    .await;

    pane.keys("2");
    let tokens = pane
        .wait_for("the revoked token in the listing", |s| {
            s.lines()
                .any(|l| l.contains("revoked") && l.contains("acme"))
        })
        .await;

    // At 80x24 the popup fits by scrolling: its first keys, then its last.
    pane.keys("?");
    let help = pane
        .wait_for("the help popup", |s| {
            s.contains("Keys 1-21 of 25 (↑↓ scroll · Esc or ? closes)")
        })
        .await;
    assert_eq!(help.lines().count(), 24, "{help}");
    pane.keys("End");
    pane.wait_for("the help popup's last key", |s| {
        s.contains("Keys 5-25 of 25") && s.contains("close the help")
    })
    .await;
    pane.keys("Escape");

    let text_dump = dump(&namespace, false);
    assert!(
        text_dump.contains("scope_mismatch") && text_dump.contains(&token_id),
        "{text_dump}"
    );
    let json_dump: Value = serde_json::from_str(&dump(&namespace, true)).expect("--json is JSON");
    assert_eq!(json_dump["ok"], true);
    assert!(
        json_dump["recentLifecycle"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|e| e["kind"] == "token.revoked" && e["tokenId"] == token_id.as_str())
    );

    for (name, text) in [
        ("rejections", &rejections),
        ("overview", &overview),
        ("tokens", &tokens),
        ("help", &help),
        ("dump", &text_dump),
    ] {
        assert!(
            !text.contains(&raw),
            "the raw token reached the {name} output"
        );
    }

    pane.keys("q");
    let deadline = Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while pane.alive() {
        ticks.tick().await;
        assert!(Instant::now() < deadline, "q did not quit the console");
    }
    let _ = connection.close(200, "done".into()).await;
    worker.stop(&namespace).await;
}

/// Connects one token for `client` (user `user-of-<client>`, scope
/// `scope`); returns its tokenId.
async fn connect(publisher: &mut Publisher, client: &str, scope: &str) -> String {
    let reply = publisher
        .send(
            "connect",
            &step(
                "integration.connected",
                json!({
                    "clientId": client, "endUserId": format!("user-of-{client}"), "scope": scope,
                    "accessToken": {"brokerType": "kraken", "accountTokens": [
                        {"account": {"accountId": format!("acct-{client}")}, "accessToken": unique("raw")}
                    ]}
                }),
            ),
        )
        .await
        .expect("connect")
        .expect("a reply");
    reply["tokens"][0]["tokenId"]
        .as_str()
        .expect("a tokenId")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_searches_every_token_opens_a_detail_pane_and_lists_a_dead_letter() {
    let namespace = unique("tui-e2e-v2");
    let pane = Pane::start(&namespace);
    let worker = RunningWorker::start(&namespace).await;
    pane.wait_for("the worker to be picked up", |s| {
        s.contains("worker last heard")
    })
    .await;
    let (connection, mut publisher) = publisher(&namespace).await;
    connect(&mut publisher, "acme", "read").await;
    let globex = connect(&mut publisher, "globex", "write").await;
    connect(&mut publisher, "initech", "read").await;

    pane.keys("2");
    pane.wait_for("the first page of three tokens", |s| {
        s.contains("Tokens 1-3 of 3")
    })
    .await;
    pane.keys("/");
    pane.keys("client:globex");
    pane.keys("Enter");
    let searched = pane
        .wait_for("the worker's search: one token of three", |s| {
            s.contains("Tokens 1-1 of 1") && s.contains("over all tokens")
        })
        .await;
    assert!(
        searched
            .lines()
            .any(|l| l.contains("globex") && l.contains("write")),
        "{searched}"
    );
    assert!(!searched.contains("initech"), "{searched}");

    pane.keys("Enter");
    let detail = pane
        .wait_for("the detail pane with the full tokenId", |s| {
            s.contains("Token (y copies") && s.contains(&globex)
        })
        .await;
    for field in ["user-of-globex", "acct-globex", "kraken", "never", "UTC"] {
        assert!(detail.contains(field), "{field} missing:\n{detail}");
    }
    pane.close_detail().await;

    let bad_id = unique("bad");
    let bad: Step = serde_json::from_value(json!({
        "routingKey": "integration.connected",
        "messageId": bad_id,
        "rawBody": "{not json",
    }))
    .expect("a valid step");
    let refused = publisher
        .send("bad", &bad)
        .await
        .expect("sent")
        .expect("a reply");
    assert_eq!(refused["error"]["code"], "invalid_message");
    pane.keys("4");
    let dead = pane
        .wait_for("the dead letter with its queue, code and size", |s| {
            s.contains("by reason: body is not valid JSON")
                && s.lines().any(|l| {
                    l.contains("integration.connected")
                        && l.contains("invalid_message")
                        && l.contains("9 B")
                })
        })
        .await;
    assert!(!dead.contains("{not json"), "never the body:\n{dead}");
    pane.keys("3");
    pane.wait_for("bad input among the refusals", |s| {
        s.contains("invalid_message 1")
            && s.lines()
                .any(|l| l.contains("connect") && l.contains("invalid_message"))
    })
    .await;

    // The newest lifecycle event is initech's token, not on the searched
    // page: its details come from the worker by tokenId; `y` puts the
    // tokenId on the clipboard (tmux keeps what OSC 52 sets as a buffer).
    assert!(
        pane.tmux(&["set-option", "-g", "set-clipboard", "on"])
            .status
            .success()
    );
    pane.keys("1");
    pane.keys("Enter");
    let looked_up = pane
        .wait_for("the details of a token asked by id", |s| {
            s.contains("Token (y copies") && s.contains("user-of-initech")
        })
        .await;
    pane.keys("y");
    let deadline = Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let copied = loop {
        ticks.tick().await;
        let buffer = pane.tmux(&["show-buffer"]);
        let text = String::from_utf8_lossy(&buffer.stdout).into_owned();
        if text.starts_with("tok_") {
            break text;
        }
        assert!(Instant::now() < deadline, "nothing copied:\n{looked_up}");
    };
    assert!(looked_up.contains(&copied), "{copied} is the token shown");
    pane.close_detail().await;

    pane.keys("5");
    pane.wait_for("the health screen with the top clients by tokens", |s| {
        s.contains("cpu ")
            && s.contains("consumers")
            && s.lines()
                .any(|l| l.contains("│globex") && l.contains(" 1││"))
    })
    .await;

    pane.keys("q");
    let deadline = Instant::now() + WAIT;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while pane.alive() {
        ticks.tick().await;
        assert!(Instant::now() < deadline, "q did not quit the console");
    }
    let _ = connection.close(200, "done".into()).await;
    worker.stop(&namespace).await;
}

/// Everything the console can receive, captured the way the console does:
/// all of `NS.events` on an exclusive queue, and the replies to snapshot and
/// listing requests.
async fn console_inputs(
    connection: &Connection,
    namespace: &Namespace,
) -> (lapin::Consumer, lapin::Channel, lapin::Consumer) {
    let channel = connection.create_channel().await.expect("channel");
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
        .expect("queue");
    channel
        .queue_bind(
            queue.name().clone(),
            namespace.events_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let events = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .expect("consume events");
    let rpc = connection.create_channel().await.expect("channel");
    let replies = rpc
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    (events, rpc, replies)
}

async fn ask(
    rpc: &lapin::Channel,
    replies: &mut lapin::Consumer,
    namespace: &Namespace,
    routing_key: &str,
    body: Value,
) -> Vec<u8> {
    rpc.basic_publish(
        namespace.inbound_exchange().into(),
        routing_key.into(),
        BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id(routing_key.into()),
    )
    .await
    .expect("publish");
    let delivery = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("the worker answers")
        .expect("a reply")
        .expect("a delivery");
    delivery.data
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_token_ever_reaches_the_console() {
    let name = unique("tui-secret");
    let namespace = Namespace::new(&name).expect("valid");
    let raw = unique("RAW-SECRET");
    let worker = RunningWorker::start(&name).await;
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("broker reachable");
    let (mut events, rpc, mut replies) = console_inputs(&connection, &namespace).await;
    let (_publishing, mut publisher) = publisher(&name).await;
    let token_id = scope_mismatch_then_revocation(&mut publisher, &raw).await;
    let live = unique("RAW-LIVE");
    let connected = publisher
        .send(
            "connect live",
            &step(
                "integration.connected",
                json!({
                    "clientId": "acme", "endUserId": "user-7", "scope": "write",
                    "accessToken": {"brokerType": "binance", "expiresInSeconds": 3600, "accountTokens": [
                        {"account": {"accountId": "bn-1"}, "accessToken": live}
                    ]}
                }),
            ),
        )
        .await
        .expect("connect")
        .expect("a reply");
    let live_id = connected["tokens"][0]["tokenId"]
        .as_str()
        .expect("a tokenId")
        .to_owned();
    let resolved = publisher
        .send(
            "resolve",
            &step(
                "token.resolve",
                json!({"clientId": "acme", "tokenId": live_id, "operation": "read"}),
            ),
        )
        .await
        .expect("resolve")
        .expect("a reply");
    assert_eq!(
        resolved["accessToken"],
        live.as_str(),
        "the gateway does get the raw token"
    );

    let snapshot = ask(
        &rpc,
        &mut replies,
        &namespace,
        "console.snapshot",
        json!({}),
    )
    .await;
    let listing = ask(
        &rpc,
        &mut replies,
        &namespace,
        "console.tokens",
        json!({"limit": 1000}),
    )
    .await;
    let filtered = ask(
        &rpc,
        &mut replies,
        &namespace,
        "console.tokens",
        json!({"filter": "REVOKED"}),
    )
    .await;
    let listed: Value = serde_json::from_slice(&listing).expect("json");
    let ids: Vec<&str> = listed["tokens"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["tokenId"].as_str())
        .collect();
    let mut expected = vec![token_id.as_str(), live_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "live and revoked tokens, ordered by tokenId");
    let filtered: Value = serde_json::from_slice(&filtered).expect("json");
    assert_eq!(filtered["tokens"][0]["tokenId"], token_id.as_str());
    assert_eq!(filtered["tokens"].as_array().map(Vec::len), Some(1));

    let mut seen = vec![snapshot, listing];
    let mut stats_seen = false;
    let deadline = Instant::now() + WAIT;
    while !stats_seen {
        let delivery = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            events.next(),
        )
        .await
        .expect("worker.stats within the wait")
        .expect("an event")
        .expect("a delivery");
        stats_seen = delivery.routing_key.as_str() == "worker.stats";
        seen.push(delivery.data);
    }
    for body in &seen {
        for secret in [raw.as_str(), live.as_str()] {
            assert!(
                !contains(body, secret),
                "a raw token reached the console: {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    assert!(
        seen.iter().any(|b| contains(b, &token_id)),
        "the console does see tokenIds"
    );
    let _ = connection.close(200, "done".into()).await;
    worker.stop(&name).await;
}

#[test]
fn dump_fails_without_a_worker() {
    let namespace = unique("tui-nobody");
    let out = Command::new(env!("CARGO_BIN_EXE_mmt-tui"))
        .args([
            "--dump",
            "--timeout-secs",
            "2",
            "--namespace",
            &namespace,
            "--amqp-url",
            &amqp_url(),
        ])
        .output()
        .expect("mmt-tui runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mmt-tui:"), "{stderr}");
}

/// Two workers on one namespace are one fleet on the health screen; one
/// stopped, it drops out within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_are_one_fleet_on_the_health_screen_and_a_stopped_one_drops_out() {
    let namespace = unique("tui-fleet");
    let pane = Pane::start(&namespace);
    let first = RunningWorker::start(&namespace).await;
    let second = RunningWorker::start(&namespace).await;
    pane.keys("5");
    pane.wait_for("both workers on the health screen", |s| {
        s.contains("2 workers together cpu")
    })
    .await;
    second.halt().await;
    pane.wait_for("the stopped worker to drop out", |s| {
        s.contains(" worker cpu") && !s.contains("workers together")
    })
    .await;
    first.stop(&namespace).await;
}
