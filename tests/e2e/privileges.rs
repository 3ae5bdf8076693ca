//! `mmt-worker broker-setup --apply` with real users: the worker serves
//! with its own rights, a publisher reaches the worker only through `NS.in`
//! and cannot read the worker's queues, and a console with read-only rights
//! sees what it shows today (snapshot, token listing, live events).

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use mmt_worker::ops::fixtures::{Publisher, Step};
use serde_json::{Value, json};

use crate::brokeruser::{BrokerUser, raw_call};
use crate::util::{PATIENCE, TestWorker, bound_tap, connected, token_id, worker_binary};

const NONE: [&str; 3] = ["^$", "^$", "^$"];

/// Whether `attempt` is refused by the broker (the channel it used closes).
async fn refused<T>(attempt: impl std::future::Future<Output = Result<T, lapin::Error>>) -> bool {
    tokio::time::timeout(PATIENCE, attempt)
        .await
        .expect("the broker answers")
        .is_err()
}

async fn publish_refused(connection: &Connection, exchange: &str, routing_key: &str) -> bool {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let publish = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default(),
            )
            .await?
            .await
    };
    refused(publish).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_from_broker_setup_serve_and_confine() {
    let worker = BrokerUser::create_with("lp-worker", NONE);
    let console = BrokerUser::create_with("lp-console", NONE);
    let acme = BrokerUser::create_with("lp-acme", NONE);
    let mut w = TestWorker::start_idle("least_privilege").await;
    let file = w.dir.path().join("clients.toml");
    std::fs::write(
        &file,
        format!("[clients.acme]\nbroker_users = [{:?}]\n", acme.name),
    )
    .expect("clients file");
    let setup = tokio::process::Command::new(worker_binary())
        .args(["broker-setup", "--apply", "--namespace", w.ns.as_str()])
        .arg("--clients")
        .arg(&file)
        .args([
            "--worker-user",
            &worker.name,
            "--console-user",
            &console.name,
        ])
        .output()
        .await
        .expect("broker-setup runs");
    assert!(
        setup.status.success(),
        "{}{}",
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );
    w.worker_url = worker.url();
    w.clients = Some(file);
    w.start_worker().await;

    // The publisher is served through NS.in.
    let acme_conn = acme.connect().await;
    let mut publisher = Publisher::new(&acme_conn, &w.ns, PATIENCE, "t".into())
        .await
        .expect("a publisher may use direct reply-to")
        .with_user_id(Some(acme.name.clone()));
    let mut call = async |routing_key: &str, body: Value| {
        let mut step = Step::new(routing_key, body);
        step.message_id = Some(uuid::Uuid::new_v4().to_string());
        publisher
            .send("t", &step)
            .await
            .expect("answered")
            .expect("reply")
    };
    let token = token_id(
        &call(
            "integration.connected",
            connected("acme", "u", "read", "coinbase", "cb-1", "raw-lp"),
        )
        .await,
    );
    let resolved = call(
        "token.resolve",
        json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
    )
    .await;
    assert_eq!(resolved["accessToken"], "raw-lp", "{resolved}");

    // ... and confined: no reading the worker's queues, no events, no console
    // requests, no listening to events.
    for queue in [
        w.ns.queue(mmt_shared::wire::MessageKind::TokenResolve),
        w.ns.dead_queue(),
        format!("{}.console.tokens", w.ns),
    ] {
        let channel = acme_conn.create_channel().await.expect("channel");
        let consume = channel.basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        assert!(refused(consume).await, "the publisher reads {queue}");
    }
    assert!(publish_refused(&acme_conn, &w.ns.events_exchange(), "token.issued").await);
    assert!(publish_refused(&acme_conn, &w.ns.inbound_exchange(), "console.tokens").await);
    let channel = acme_conn.create_channel().await.expect("channel");
    let own = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a server-named queue of its own");
    let bind = channel.queue_bind(
        own.name().clone(),
        w.ns.events_exchange().as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    );
    assert!(refused(bind).await, "the publisher listens to events");

    // The console with read-only rights: the real `mmt-tui --dump`, the token
    // listing and the live events feed, as the console asks for them.
    let dump = tokio::process::Command::new(worker_binary().with_file_name("mmt-tui"))
        .args(["--dump", "--json", "--namespace", w.ns.as_str()])
        .env("MMT_AMQP_URL", console.url())
        .output()
        .await
        .expect("mmt-tui runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let snapshot: Value = serde_json::from_slice(&dump.stdout).expect("JSON snapshot");
    assert!(
        snapshot["counts"]
            .as_array()
            .is_some_and(|c| c.iter().any(|r| r["count"] == 1)),
        "{snapshot}"
    );
    // The live feed of the real console (its off-screen frame bench waits
    // for the snapshot and the first token page through it).
    let live = tokio::process::Command::new(worker_binary().with_file_name("mmt-tui"))
        .args(["--frame-bench", "1", "--timeout-secs", "15"])
        .args(["--namespace", w.ns.as_str()])
        .env("MMT_AMQP_URL", console.url())
        .output()
        .await
        .expect("mmt-tui runs");
    assert!(
        live.status.success(),
        "the live console with read-only rights: {}",
        String::from_utf8_lossy(&live.stderr)
    );
    let console_conn = console.connect().await;
    let page: Value = serde_json::from_slice(
        &raw_call(&console_conn, &w.ns, "console.tokens", b"{}", None).await,
    )
    .expect("JSON page");
    assert_eq!(page["tokens"][0]["tokenId"], token.as_str(), "{page}");
    let channel = console_conn.create_channel().await.expect("channel");
    let mut events = bound_tap(&channel, &w.ns.events_exchange()).await;
    let first = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("an event (worker.stats at least) in time")
        .expect("open")
        .expect("delivery");
    assert!(first.routing_key.as_str().contains('.'));
    assert!(
        publish_refused(&console_conn, &w.ns.inbound_exchange(), "token.resolve").await,
        "the console may not ask for raw tokens"
    );
    let channel = console_conn.create_channel().await.expect("channel");
    let consume = channel.basic_consume(
        w.ns.queue(mmt_shared::wire::MessageKind::TokenResolve)
            .as_str()
            .into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    assert!(
        refused(consume).await,
        "the console reads the worker's queues"
    );

    let _ = acme_conn.close(200, "done".into()).await;
    let _ = console_conn.close(200, "done".into()).await;
    w.finish().await;
}
