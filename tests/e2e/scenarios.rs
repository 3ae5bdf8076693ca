//! Replays every fixture (scenarios and single messages) through a real
//! worker and asserts the expectations written beside them; then checks that
//! no raw token from any fixture, nor the key, is on disk in plain form.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mmt_worker::ops::fixtures::{self, Publisher};
use serde_json::Value;

use crate::util::{TestWorker, amqp_url, files_under, holds, repo_root, worker_binary};

fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every raw token in the fixtures: the `accessToken`/`refreshToken` strings
/// inside `accountTokens`.
fn raw_tokens(value: &Value, inside_account: bool, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("accessToken" | "refreshToken", Value::String(s)) if inside_account => {
                        out.push(s.clone())
                    }
                    ("accountTokens", _) => raw_tokens(v, true, out),
                    _ => raw_tokens(v, inside_account, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| raw_tokens(v, inside_account, out)),
        _ => {}
    }
}

/// Replays every fixture through `publisher`, asserts every expectation
/// written beside them, and gives the raw tokens they sent (those of 8
/// characters or more, to look for afterwards).
pub async fn replay_every_fixture(publisher: &mut Publisher) -> Vec<String> {
    let files = fixture_files(&repo_root().join("fixtures"));
    assert!(files.len() >= 20, "fixtures missing: {files:?}");
    let mut secrets = Vec::new();
    let mut failures = Vec::new();
    for path in &files {
        let scenario = fixtures::load(path).expect("fixture loads");
        for step in &scenario.steps {
            if let Some(body) = &step.body {
                raw_tokens(body, false, &mut secrets);
            }
        }
        for report in publisher.run(&scenario).await.expect("scenario replays") {
            if let Some(why) = report.mismatch {
                failures.push(format!("{}: {}: {why}", path.display(), report.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    secrets.retain(|s| s.len() >= 8);
    assert!(secrets.len() >= 20, "{secrets:?}");
    secrets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_with_its_expected_replies_and_nothing_is_plain_on_disk() {
    let mut w = TestWorker::start("fixtures").await;
    let connection = crate::util::connect().await;
    let mut publisher =
        Publisher::new(&connection, &w.ns, Duration::from_secs(15), "replay".into())
            .await
            .expect("publisher");
    let secrets = replay_every_fixture(&mut publisher).await;
    w.stop_worker().await;
    let key_hex = std::fs::read_to_string(w.key_file()).expect("key");
    let key_raw = hex::decode(key_hex.trim()).expect("hex key");
    for (path, bytes) in files_under(&w.data_dir()) {
        for secret in &secrets {
            assert!(
                !holds(&bytes, secret.as_bytes()),
                "{secret} is in {} in plain form",
                path.display()
            );
        }
        assert!(!holds(&bytes, &key_raw), "the key is in {}", path.display());
        assert!(
            !holds(&bytes, key_hex.trim().as_bytes()),
            "the key is in {}",
            path.display()
        );
    }
    let _ = connection.close(200, "done".into()).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_command_replays_the_scenarios_and_exits_zero() {
    let w = TestWorker::start("publish-cli").await;
    let scenarios = fixture_files(&repo_root().join("fixtures").join("scenarios"));
    let output = tokio::process::Command::new(worker_binary())
        .arg("publish")
        .arg("--namespace")
        .arg(w.ns.as_str())
        .args(&scenarios)
        .env("MMT_AMQP_URL", amqp_url())
        .output()
        .await
        .expect("mmt-worker publish runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok   write-refused token.resolve"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("cbat_"),
        "printed replies must not show raw tokens: {stdout}"
    );
    let again = tokio::process::Command::new(worker_binary())
        .arg("publish")
        .arg("--namespace")
        .arg(w.ns.as_str())
        .args(&scenarios)
        .env("MMT_AMQP_URL", amqp_url())
        .output()
        .await
        .expect("mmt-worker publish runs");
    assert!(
        again.status.success(),
        "scenarios replay again into the same worker: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_command_exits_6_when_a_reply_differs_from_its_expectation() {
    let w = TestWorker::start("publish-mismatch").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = dir.path().join("wrong.json");
    std::fs::write(
        &fixture,
        r#"{"routingKey":"token.resolve","body":{"clientId":"a","tokenId":"tok_none","operation":"read"},"expect":{"ok":true}}"#,
    )
    .expect("write");
    let output = tokio::process::Command::new(worker_binary())
        .args(["publish", "--namespace", w.ns.as_str()])
        .arg(&fixture)
        .env("MMT_AMQP_URL", amqp_url())
        .output()
        .await
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL"));
    w.finish().await;
}
