//! `mmt-bench --quick`, the way CI runs it: it must run against the
//! real broker, write one JSON object holding every figure of issues #4 and
//! #9, and leave no namespace behind. Only the presence of the figures is
//! checked, never their speed (a debug build on a busy machine says nothing
//! about it); what must hold at any speed is checked too: no refresh token
//! presented twice, at most `refresh_concurrency` refreshes in flight.

use std::process::Command;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use mmt_shared::config::Namespace;
use serde_json::Value;

use crate::util;

/// The figures the JSON object must hold (medians at the top level).
const FIGURES: [&str; 62] = [
    "ceiling_msgs_per_s",
    "ingest_msgs_per_s",
    "ingest_ratio",
    "classic_ceiling_msgs_per_s",
    "classic_ingest_msgs_per_s",
    "classic_ingest_ratio",
    "resolve_p50_ms",
    "resolve_p95_ms",
    "resolve_p99_ms",
    "resolve_msgs_per_s",
    "echo_p50_ms",
    "echo_p95_ms",
    "echo_p99_ms",
    "echo_msgs_per_s",
    "resolve_throughput_ratio",
    "resolve_p99_ratio",
    "strict_resolve_msgs_per_s",
    "strict_resolve_p99_ms",
    "strict_throughput_ratio",
    "strict_p99_ratio",
    "resolve_1k_p99_ms",
    "resolve_1m_p50_ms",
    "resolve_1m_p99_ms",
    "resolve_1m_msgs_per_s",
    "resolve_p99_ratio_1m",
    "start_ms_1k",
    "first_start_ms_1k",
    "start_ms_1m",
    "first_start_ms_1m",
    "rss_mb_1k",
    "rss_mb_1m",
    "rss_peak_mb_1m",
    "disk_bytes_per_token_1m",
    "rss_after_search_mb_1m",
    "disk_mb_1k",
    "disk_mb_1m",
    "preload_tokens_per_s",
    "console_frame_ms_1m",
    "console_search_ms_1m",
    "console_search_first_ms_1m",
    "console_sort_ms_1m",
    "console_sort_first_ms_1m",
    "broker_msgs_per_s",
    "broker_rss_mb",
    "broker_rss_peak_mb",
    "broker_disk_bytes_per_token",
    "broker_direct_disk_bytes_per_token",
    "refresh_c16_per_s",
    "refresh_c16_cpu_us",
    "refresh_c16_peak_in_flight",
    "refresh_c64_per_s",
    "refresh_c64_cpu_us",
    "refresh_c64_peak_in_flight",
    "refresh_lapses",
    "refresh_lapse_late",
    "refresh_lapse_unrefreshed",
    "refresh_lapse_min_margin_ms",
    "refresh_lapse_needed_per_s",
    "refresh_lapse_cpu_us",
    "refresh_lapse_peak_in_flight",
    "refresh_reuses",
    "refresh_errors",
];

#[tokio::test]
async fn quick_bench_writes_every_figure_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("bench.json");
    let namespace = util::namespace("bench");
    let output = quick_bench(
        &["--messages", "500", "--scale-tokens", "5000"],
        &namespace,
        &json_path,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("Goals"), "no goals in the table:\n{table}");

    let text = std::fs::read_to_string(&json_path).expect("JSON written");
    let report: Value = serde_json::from_str(&text).expect("one JSON object");
    let object = report.as_object().expect("a JSON object");
    for figure in FIGURES {
        assert!(object.contains_key(figure), "{figure} missing from {text}");
    }
    assert!(
        report["console_frame_ms_1m"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "the console's frame time is measured: {}",
        report["console_frame_ms_1m"]
    );
    for section in ["spread", "goals", "config", "machine", "notes"] {
        assert!(
            object.contains_key(section),
            "{section} missing from {text}"
        );
    }
    assert_eq!(report["goals"].as_array().map(Vec::len), Some(18));
    assert_eq!(report["config"]["quick"], true);
    assert_eq!(report["refresh_reuses"], 0.0, "a refresh token was reused");
    for (figure, bound) in [
        ("refresh_c16_peak_in_flight", 16.0),
        ("refresh_c64_peak_in_flight", 64.0),
        ("refresh_lapse_peak_in_flight", 16.0),
    ] {
        assert!(
            report[figure]
                .as_f64()
                .is_some_and(|peak| (1.0..=bound).contains(&peak)),
            "{figure}: {}",
            report[figure]
        );
    }
    for figure in [
        "refresh_c16_per_s",
        "refresh_c64_per_s",
        "refresh_c16_cpu_us",
    ] {
        assert!(
            report[figure].as_f64().is_some_and(|v| v > 0.0),
            "{figure}: {}",
            report[figure]
        );
    }
    assert!(
        report["refresh_lapses"]
            .as_f64()
            .is_some_and(|n| (0.0..=500.0).contains(&n)),
        "lapses are counted over the 500 tokens: {}",
        report["refresh_lapses"]
    );

    let base = stderr
        .lines()
        .find_map(|line| line.strip_prefix("bench: namespaces "))
        .and_then(|rest| rest.strip_suffix("-*"))
        .unwrap_or_else(|| panic!("the bench did not name its namespaces:\n{stderr}"));
    assert!(base.starts_with(namespace.as_str()), "{base}");
    let connection = util::connect().await;
    for part in ["quorum", "classic", "resolve", "echo", "scale", "refresh"] {
        let ns = Namespace::new(&format!("{base}-{part}")).expect("valid namespace");
        for queue in mmt_worker::amqp::topology::queues(&ns) {
            let channel = connection.create_channel().await.expect("channel");
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            assert!(declared.is_err(), "{queue} left behind");
        }
    }
    let _ = connection.close(200, "test done".into()).await;
}

/// The figures `mmt-bench --store-url` must write.
const SHARED_FIGURES: [&str; 12] = [
    "shared_ingest_ceiling_msgs_per_s",
    "shared_ingest_embedded_msgs_per_s",
    "shared_ingest_pg1_msgs_per_s",
    "shared_ingest_pg2_msgs_per_s",
    "shared_ingest_pg1_worker_cpu_us_per_msg",
    "shared_ingest_pg2_commits_per_msg",
    "shared_resolve_embedded_c4_msgs_per_s",
    "shared_resolve_pg1_c4_p99_ms",
    "shared_resolve_pg2_c4_msgs_per_s",
    "takeover_max_ms",
    "pg_bytes_per_token",
    "pg_load_tokens_per_s",
];

/// The bench's own databases on the server of `url`.
fn bench_databases(url: &str) -> Vec<String> {
    mmt_pg_fixture::query_texts(
        url,
        "SELECT datname FROM pg_database WHERE datname LIKE 'mmt\\_bench\\_%'",
    )
    .into_iter()
    .flatten()
    .collect()
}

/// `--store-url`: ingest, resolve, the footprint and the takeover on
/// worker children over PostgreSQL, next to the embedded store; every
/// database the bench made is dropped.
/// Runs `mmt-bench --quick` with `args` in `namespace`, its JSON to
/// `json_path`; a run that fails fails the test.
fn quick_bench(
    args: &[&str],
    namespace: &Namespace,
    json_path: &std::path::Path,
) -> std::process::Output {
    let output = Command::new(util::bench_binary())
        .arg("--quick")
        .args(args)
        .arg("--namespace")
        .arg(namespace.as_str())
        .arg("--json")
        .arg(json_path)
        .env("MMT_AMQP_URL", util::amqp_url())
        .output()
        .expect("mmt-bench runs");
    assert!(
        output.status.success(),
        "bench failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_on_postgres_writes_its_figures_and_drops_its_databases() {
    let Some(db) = mmt_pg_fixture::TestDatabase::create("bench") else {
        return;
    };
    let before = bench_databases(&db.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("bench.json");
    let namespace = util::namespace("pgbench");
    quick_bench(
        &[
            "--messages",
            "300",
            "--scale-tokens",
            "2000",
            "--phases",
            "ingest,resolve,scale,takeover",
            "--workers",
            "1,2",
            "--store-url",
            &db.url,
        ],
        &namespace,
        &json_path,
    );
    let text = std::fs::read_to_string(&json_path).expect("JSON written");
    let report: Value = serde_json::from_str(&text).expect("one JSON object");
    for figure in SHARED_FIGURES {
        assert!(
            report[figure].as_f64().is_some_and(|v| v > 0.0),
            "{figure} missing from {text}"
        );
    }
    assert_eq!(report["config"]["workers"], serde_json::json!([1, 2]));
    let left: Vec<String> = bench_databases(&db.url)
        .into_iter()
        .filter(|name| !before.contains(name))
        .collect();
    assert!(left.is_empty(), "databases left behind: {left:?}");
}
