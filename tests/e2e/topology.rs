//! The AMQP topology of CONTRACT.md §3, read back from the broker.

use mmt_worker::amqp::topology::QueueType;
use serde_json::Value;

use crate::util::TestWorker;

/// `rabbitmqctl list_queues` for the namespace: name -> (type, arguments).
fn queues(ns: &str) -> Vec<(String, String, Value)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "--quiet",
            "--formatter",
            "json",
            "name",
            "type",
            "arguments",
            "durable",
        ])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&output.stdout).expect("rabbitmqctl json");
    let mut out: Vec<_> = all
        .into_iter()
        .filter(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{ns}.")))
        })
        .map(|q| {
            assert_eq!(q["durable"], true, "{q}");
            (
                q["name"].as_str().unwrap_or_default().to_owned(),
                q["type"].as_str().unwrap_or_default().to_owned(),
                arguments(&q["arguments"]),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// rabbitmqctl's `[[name, type, value], ...]` as a JSON object.
fn arguments(list: &Value) -> Value {
    let mut map = serde_json::Map::new();
    for item in list.as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (item[0].as_str(), item.get(2)) {
            map.insert(name.to_owned(), value.clone());
        }
    }
    Value::Object(map)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_queues_are_quorum_with_a_delivery_limit_and_dead_lettering() {
    let w = TestWorker::start("topology-quorum").await;
    let ns = w.ns.to_string();
    let found = queues(&ns);
    let names: Vec<_> = found.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(
        names,
        [
            "connection.removed",
            "console.snapshot",
            "console.tokens",
            "dead",
            "integration.connected",
            "link.access_tokens",
            "token.resolve"
        ]
        .map(|s| format!("{ns}.{s}"))
    );
    for (name, kind, args) in &found {
        let mutating =
            name.ends_with("integration.connected") || name.ends_with("connection.removed");
        if mutating {
            assert_eq!(kind, "quorum", "{name}");
            assert_eq!(args["x-delivery-limit"], 5, "{name}: {args}");
            assert_eq!(
                args["x-dead-letter-exchange"],
                format!("{ns}.dead"),
                "{name}"
            );
        } else if name.ends_with(".dead") {
            assert_eq!(kind, "quorum", "{name}");
        } else if name.contains(".console.") {
            assert_eq!(kind, "classic", "{name}");
            assert_eq!(
                args["x-message-ttl"], 10_000,
                "{name}: a stale console request expires"
            );
        } else {
            assert_eq!(kind, "classic", "{name}: reads need no quorum durability");
            assert_eq!(
                args["x-dead-letter-exchange"],
                format!("{ns}.dead"),
                "{name}"
            );
        }
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_twice_is_idempotent_and_classic_queues_work_end_to_end() {
    let mut w = TestWorker::start_with("topology-classic", QueueType::Classic).await;
    w.restart().await;
    let found = queues(w.ns.as_str());
    assert!(
        found.iter().all(|(_, kind, _)| kind == "classic"),
        "{found:?}"
    );
    let id = w
        .issue("acme", "u", "read", "coinbase", "cb-1", "raw-classic")
        .await;
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-classic"
    );
    w.finish().await;
}
