//! CONTRACT.md §13 "Metrics and probes": a scrape after a scripted run,
//! parsed by a Prometheus text parser, shows the run's counts; `/readyz`
//! follows the broker link (through the proxy) and says why it is not
//! ready; a broker that takes TCP and says nothing is timed out and retried;
//! no series or body holds a tokenId, a raw token or the broker password;
//! an address in use stops the binary with exit code 2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mmt_worker::Worker;
use mmt_worker::ops::fixtures::Step;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

use crate::proxy::{Mode, Proxy};
use crate::util::{PATIENCE, TestWorker, code, connected, token_id, worker_binary};

/// A loopback address nobody listens on now.
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// `GET path` on the worker's metrics address: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("a text body"))
}

/// A scrape, parsed by the Prometheus text parser.
async fn scrape(addr: SocketAddr) -> (Scrape, String) {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let parsed = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    (parsed, body)
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s: &&Sample| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .and_then(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            Value::Histogram(_) | Value::Summary(_) => None,
        })
}

/// Polls `check` until it holds (at most `within`); panics with the last
/// answer otherwise.
async fn until<F, Fut>(within: Duration, what: &str, mut check: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let started = Instant::now();
    loop {
        let (done, seen) = check().await;
        if done {
            return seen;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; last seen:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready_is(addr: SocketAddr, status: u16) -> (bool, String) {
    let (got, body) = get(addr, "/readyz").await;
    (got == status, format!("{got} {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_scripted_run_shows_the_counts_the_run_produced() {
    let addr = free_addr();
    let mut w = TestWorker::start_idle("metrics-scrape").await;
    w.fleet.metrics_addr = Some(addr);
    w.start_worker().await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));

    let raws = ["RAW-ALPHA-1", "RAW-ALPHA-2", "RAW-ALPHA-3"];
    let mut ids = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        ids.push(
            w.issue("acme", "u1", "read", "coinbase", &format!("acc{i}"), raw)
                .await,
        );
    }
    // One more connection, sent twice under one message id: one applied,
    // one replayed.
    let mut step = Step::new(
        "integration.connected",
        connected("acme", "u2", "read", "coinbase", "acc9", "RAW-ALPHA-4"),
    );
    step.message_id = Some("metrics-replay".into());
    let first = w.send(step.clone()).await;
    ids.push(token_id(&first));
    let again = w.send(step).await;
    assert_eq!(token_id(&again), ids[3]);
    // token.resolve: one answered, one refused (not_found).
    let resolved = w.resolve("acme", &ids[0], "read").await;
    assert_eq!(resolved["ok"], true, "{resolved}");
    let unknown = w.resolve("acme", "tok_doesnotexist", "read").await;
    assert_eq!(code(&unknown), "not_found");
    // Bad input: dead-lettered, answered invalid_message.
    let mut bad = Step::new("integration.connected", json!(null));
    bad.body = None;
    bad.raw_body = Some("{broken".into());
    bad.message_id = Some("metrics-bad".into());
    assert_eq!(code(&w.send(bad).await), "invalid_message");

    // The counts land once the batches are acknowledged, just after the
    // replies: wait for the last of them.
    let connected_q = [("queue", "integration.connected")];
    let body = until(PATIENCE, "the run's counts", || async {
        let (s, body) = scrape(addr).await;
        let dead = value(
            &s,
            "mmt_messages_total",
            &[connected_q[0], ("outcome", "dead_lettered")],
        );
        let rejected = value(
            &s,
            "mmt_messages_total",
            &[("queue", "token.resolve"), ("outcome", "rejected")],
        );
        (dead == Some(1.0) && rejected == Some(1.0), body)
    })
    .await;
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let messages = |queue: &str, outcome: &str| {
        value(
            &s,
            "mmt_messages_total",
            &[("queue", queue), ("outcome", outcome)],
        )
    };
    assert_eq!(
        messages("integration.connected", "applied"),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        messages("integration.connected", "replayed"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        messages("integration.connected", "rejected"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(messages("token.resolve", "applied"), Some(1.0), "{body}");
    assert_eq!(
        messages("connection.removed", "applied"),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        value(&s, "mmt_rejections_total", &[("code", "invalid_message")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "mmt_rejections_total", &[("code", "not_found")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "mmt_rejections_total", &[("code", "revoked")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "mmt_tokens", &[("state", "active")]),
        Some(4.0),
        "{body}"
    );
    assert_eq!(value(&s, "mmt_tokens", &[("state", "revoked")]), Some(0.0));
    assert_eq!(
        value(
            &s,
            "mmt_request_duration_seconds_count",
            &[("queue", "token.resolve")]
        ),
        Some(2.0),
        "{body}"
    );
    let buckets = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "mmt_request_duration_seconds"
                && x.labels.get("queue") == Some("integration.connected")
        })
        .map(|x| x.value.clone());
    match buckets {
        Some(Value::Histogram(counts)) => {
            let all = counts.iter().map(|c| c.count).fold(0.0, f64::max);
            assert_eq!(all, 6.0, "6 connected deliveries: {body}");
        }
        other => panic!("no histogram for integration.connected: {other:?}\n{body}"),
    }
    assert!(value(&s, "mmt_store_flush_duration_seconds_count", &[]).is_some_and(|n| n >= 1.0));
    assert!(
        value(&s, "mmt_store_bytes", &[]).is_some_and(|n| n > 0.0),
        "{body}"
    );
    assert_eq!(
        value(&s, "mmt_refresh_total", &[("outcome", "failed")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "mmt_refresh_in_flight", &[]), Some(0.0));
    assert_eq!(value(&s, "mmt_broker_reconnects_total", &[]), Some(0.0));
    assert_eq!(value(&s, "mmt_up", &[]), Some(1.0));
    assert_eq!(
        value(
            &s,
            "mmt_build_info",
            &[("engine", "fjall"), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Nothing secret or identifying in any label value or body.
    let (_, ready) = get(addr, "/readyz").await;
    let (_, health) = get(addr, "/healthz").await;
    for text in [&body, &ready, &health] {
        for id in &ids {
            assert!(!text.contains(id.as_str()), "tokenId {id} in:\n{text}");
        }
        assert!(!text.contains("RAW-ALPHA"), "a raw token in:\n{text}");
        assert!(
            !text.contains("guest"),
            "the broker credentials in:\n{text}"
        );
        assert!(!text.contains("acme"), "a clientId in:\n{text}");
        assert!(!text.contains(w.ns.as_str()), "the namespace in:\n{text}");
    }
    for sample in &s.samples {
        for (key, label) in sample.labels.iter() {
            assert!(
                !label.contains("://") && !label.starts_with("tok_"),
                "{key}={label} in {}",
                sample.metric
            );
        }
    }
    assert_eq!(get(addr, "/nope").await.0, 404);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_within_5_s_of_a_cut_and_200_once_the_link_is_back() {
    let addr = free_addr();
    let proxy = Proxy::start().await;
    let mut w = TestWorker::start_idle("metrics-cut").await;
    w.worker_url = proxy.url();
    w.fleet.metrics_addr = Some(addr);
    w.start_worker().await;
    assert_eq!(get(addr, "/readyz").await.0, 200);

    proxy.set_mode(Mode::Refuse);
    proxy.cut();
    let cut_at = Instant::now();
    let seen = until(Duration::from_secs(5), "503 after the cut", || {
        ready_is(addr, 503)
    })
    .await;
    println!(
        "readyz 503 {} ms after the cut: {seen}",
        cut_at.elapsed().as_millis()
    );
    assert!(seen.contains("not ready: broker: "), "{seen}");
    assert!(
        !seen.contains("127.0.0.1") && !seen.contains("guest"),
        "{seen}"
    );
    let (s, body) = scrape(addr).await;
    assert_eq!(value(&s, "mmt_up", &[]), Some(0.0), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while not ready");

    proxy.set_mode(Mode::Pass);
    until(PATIENCE, "200 after recovery", || ready_is(addr, 200)).await;
    let (s, body) = scrape(addr).await;
    assert_eq!(value(&s, "mmt_up", &[]), Some(1.0), "{body}");
    assert_eq!(
        value(&s, "mmt_broker_reconnects_total", &[]),
        Some(1.0),
        "{body}"
    );
    let probe = w.link("acme", "nobody").await;
    assert_eq!(probe["ok"], true, "{probe}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_accepts_tcp_and_says_nothing_is_timed_out_and_retried_until_one_answers() {
    let addr = free_addr();
    let proxy = Proxy::start().await;
    proxy.set_mode(Mode::Silent);
    let mut w = TestWorker::start_idle("metrics-silent").await;
    w.worker_url = proxy.url();
    w.fleet.metrics_addr = Some(addr);
    w.fleet.connect_timeout = Duration::from_secs(1);
    let (config, fleet) = (w.config(), w.fleet.clone());
    let starting = tokio::spawn(async move { Worker::start_with(&config, &fleet).await });

    let seen = until(PATIENCE, "503 naming the timeout", || async {
        let (status, body) = match tokio::time::timeout(
            Duration::from_secs(5),
            reqwest::get(format!("http://{addr}/readyz")),
        )
        .await
        {
            Ok(Ok(response)) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            // Not listening yet: the store is still opening.
            _ => (0, String::new()),
        };
        (
            status == 503 && body.contains("connect timed out"),
            format!("{status} {body}"),
        )
    })
    .await;
    assert_eq!(
        seen,
        "503 not ready: broker: connect timed out after 1s; retrying\n"
    );
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while it waits");
    until(PATIENCE, "a second connect attempt", || async {
        (proxy.accepted() >= 2, proxy.accepted().to_string())
    })
    .await;
    assert!(!starting.is_finished(), "the start waits for a broker");

    proxy.set_mode(Mode::Pass);
    let worker = tokio::time::timeout(PATIENCE, starting)
        .await
        .expect("started once the broker answers")
        .expect("start task")
        .expect("worker starts");
    w.adopt(worker);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    let probe = w.link("acme", "nobody").await;
    assert_eq!(probe["ok"], true, "{probe}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_address_in_use_stops_the_start_with_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address");
    let w = TestWorker::start_idle("metrics-in-use").await;
    assert!(worker_binary().exists());
    let output = tokio::time::timeout(
        PATIENCE,
        w.run_command()
            .arg("--metrics-addr")
            .arg(addr.to_string())
            .output(),
    )
    .await
    .expect("exits at once")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for metrics and probes on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        !w.data_dir().exists(),
        "nothing was created before the address was checked"
    );
    drop(taken);
    w.finish().await;
}
