//! Backups through the real binary and the real broker (CONTRACT.md §13,
//! docs/security.md "Backups"): `mmt-worker backup` while a worker serves a
//! steady flow of connections, `restore` into a fresh directory, a worker
//! that refuses it until `store release` has applied the revocations made
//! after the backup (taken from an archive queue of `token.revoked`
//! events, as the procedure says), then books that balance: every token
//! answered before the backup began resolves, the ones revoked after it do
//! not, and the restored count lies between what was answered before the
//! backup and what was answered by its end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use crate::refresh_faults::Child;
use crate::util::{Bulk, PATIENCE, TestWorker, connections, token_id, worker_binary};

/// Tokens connected before the backup.
const BEFORE: usize = 5_000;
/// Connections per wave of the load that runs while the backup is taken.
const WAVE: usize = 50;
/// Tokens revoked after the backup.
const REVOKED_AFTER: usize = 5;

/// `mmt-worker run` on `w`'s namespace and key and the data directory
/// `data`, once it says it is ready; its log in the test's directory.
async fn start_worker(w: &TestWorker, data: &Path, log: &str) -> Child {
    Child::spawn(w.run_command_on(data), w.dir.path().join(log)).await
}

/// SIGTERM, and the worker's clean exit.
async fn stop(child: Child) {
    assert_eq!(child.terminate().await, Some(0));
}

/// `mmt-worker ARGS --key-file KEY`: its exit code and stderr.
async fn command(w: &TestWorker, args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(worker_binary())
        .args(args)
        .arg("--key-file")
        .arg(w.key_file())
        .env_remove("MMT_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The tokenIds of the connection replies so far, by message id.
fn issued(bulk: &Bulk) -> HashMap<String, String> {
    bulk.replies()
        .into_iter()
        .filter(|(id, _)| id.contains("-connect-"))
        .map(|(id, replies)| (id, token_id(&replies[0])))
        .collect()
}

/// The first number before `what` in `text` (`... 5012 tokens, ...`).
fn number_before(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("no {what} in {text}"));
    text[..at]
        .split_whitespace()
        .next_back()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {what} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_worker_that_answers_every_token_answered_before_it() {
    let mut w = TestWorker::start_idle("backup").await;
    // The operator's archive of revocations: a queue bound to NS.events
    // for token.revoked, there all along.
    let archive = w.connection.create_channel().await.expect("channel");
    let queue = archive
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("archive queue");
    archive
        .queue_bind(
            queue.name().clone(),
            w.ns.events_exchange().as_str().into(),
            "token.revoked".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bound");
    let first = start_worker(&w, &w.data_dir(), "worker-1.log").await;

    let bulk = Arc::new(Bulk::new(&w.connection, &w.ns).await);
    bulk.publish(&connections("before", BEFORE)).await;
    bulk.wait_answered(BEFORE, Duration::from_secs(120)).await;

    // Connections go on, a wave at a time, while the backup is taken.
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (bulk, stop_load) = (bulk.clone(), stop_load.clone());
        async move {
            let mut waves = 0;
            while !stop_load.load(Ordering::SeqCst) {
                let wave = connections(&format!("during{waves}"), WAVE);
                bulk.publish(&wave).await;
                waves += 1;
            }
            waves * WAVE
        }
    });
    bulk.wait_answered(BEFORE + WAVE, PATIENCE).await;
    let answered_before = issued(&bulk);
    let file = w.dir.path().join("backup.mmt");
    let data = w.data_dir();
    let (code, said) = command(
        &w,
        &[
            "backup",
            "--data-dir",
            &data.to_string_lossy(),
            "--to",
            &file.to_string_lossy(),
        ],
    )
    .await;
    let answered_by_end = bulk.answered();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("by the running worker"), "{said}");
    assert!(
        answered_by_end > answered_before.len(),
        "connections were answered while the backup was taken"
    );
    stop_load.store(true, Ordering::SeqCst);
    let published = load.await.expect("load ends");
    bulk.wait_answered(BEFORE + published, Duration::from_secs(120))
        .await;

    // Revocations after the backup: live in the backup, revoked since.
    let revoked: Vec<String> = answered_before
        .values()
        .take(REVOKED_AFTER)
        .cloned()
        .collect();
    for token in &revoked {
        assert_eq!(w.revoke("acme", token).await["revoked"], true);
    }
    stop(first).await;
    let mut consumer = archive
        .basic_consume(
            queue.name().clone(),
            "archive".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consumes");
    let mut lines = String::new();
    for _ in 0..REVOKED_AFTER {
        let delivery = tokio::time::timeout(PATIENCE, consumer.next())
            .await
            .expect("an archived revocation")
            .expect("open")
            .expect("delivery");
        lines.push_str(std::str::from_utf8(&delivery.data).expect("UTF-8"));
        lines.push('\n');
    }
    let archived = w.dir.path().join("revoked-since-backup.jsonl");
    std::fs::write(&archived, lines).expect("writes");

    let restored: PathBuf = w.dir.path().join("restored");
    let restored_arg = restored.to_string_lossy().into_owned();
    let (code, said) = command(
        &w,
        &[
            "restore",
            "--from",
            &file.to_string_lossy(),
            "--data-dir",
            &restored_arg,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{said}");
    // Between what was answered before the backup began and what had been
    // published by the end of the load (a connection is committed before
    // it is answered).
    let tokens = number_before(&said, "tokens,");
    assert!(
        tokens >= answered_before.len() as u64 && tokens <= (BEFORE + published) as u64,
        "{tokens} restored: between {} answered before the backup and {} published",
        answered_before.len(),
        BEFORE + published
    );

    let held = w
        .run_command_on(&restored)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("runs");
    assert_eq!(
        held.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    let (code, said) = command(
        &w,
        &[
            "store",
            "release",
            "--data-dir",
            &restored_arg,
            "--revoked",
            &archived.to_string_lossy(),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "{REVOKED_AFTER} tokens revoked, 0 already revoked"
        )),
        "{said}"
    );

    let second = start_worker(&w, &restored, "worker-2.log").await;
    let resolves: Vec<(&str, String, Value)> = answered_before
        .values()
        .map(|token| {
            (
                "token.resolve",
                format!("resolve-{token}"),
                json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
            )
        })
        .collect();
    let answers = Bulk::new(&w.connection, &w.ns).await;
    answers.publish(&resolves).await;
    answers
        .wait_answered(resolves.len(), Duration::from_secs(120))
        .await;
    let replies = answers.replies();
    for token in answered_before.values() {
        let reply = &replies[&format!("resolve-{token}")][0];
        if revoked.contains(token) {
            assert_eq!(reply["error"]["code"], "revoked", "{token}: {reply}");
        } else {
            assert_eq!(reply["ok"], true, "{token}: {reply}");
        }
    }
    stop(second).await;
    w.finish().await;
}
