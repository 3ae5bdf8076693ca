//! Faults: link cuts through a proxy, SIGTERM and kill -9 under load, a
//! poison message, a full disk. After each, the books must balance: every
//! published message applied exactly once (all its replies identical) or
//! dead-lettered with a reason, nothing acknowledged lost, nothing revoked
//! brought back.
//!
//! CI runs few rounds; `MMT_FAULT_ROUNDS=20 MMT_KILL_ROUNDS=10
//! MMT_KILL_MESSAGES=100000 cargo test --release --test e2e faults --
//! --nocapture` runs the full counts and prints the figures.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::proxy::Proxy;
use crate::util::{Bulk, PATIENCE, TestWorker, code, connected, connections, token_id};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every message id has replies, all identical; returns the one reply of
/// each id.
fn balanced(replies: &HashMap<String, Vec<Value>>, ids: &[String]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for id in ids {
        let all = replies
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never answered: lost"));
        assert!(
            all.iter().all(|r| r == &all[0]),
            "{id} was answered differently: applied twice? {all:?}"
        );
        out.insert(id.clone(), all[0].clone());
    }
    out
}

fn median(values: &mut [u128]) -> u128 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cuts_under_load_lose_nothing_and_recover_within_5_s() {
    let rounds = env_count("MMT_FAULT_ROUNDS", 4);
    let proxy = Proxy::start().await;
    let mut w = TestWorker::start_via("link-cuts", proxy.url()).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let messages = connections("cut", rounds * 500);
    let ids: Vec<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    bulk.publish(&messages).await;
    let mut recovery_ms = Vec::new();
    for round in 0..rounds {
        bulk.wait_answered(1 + round * messages.len() / (rounds + 1), PATIENCE * 4)
            .await;
        let before = bulk.answered();
        proxy.cut();
        let cut_at = Instant::now();
        let probe = w.link("acme", "nobody").await;
        assert_eq!(probe["ok"], true, "{probe}");
        recovery_ms.push(cut_at.elapsed().as_millis());
        assert!(
            before < messages.len(),
            "the cut came after the load: raise the message count"
        );
    }
    bulk.wait_answered(messages.len(), PATIENCE * 8).await;
    let replies = balanced(&bulk.replies(), &ids);
    assert!(
        replies.values().all(|r| r["tokens"][0]["created"] == true),
        "a connection was applied twice"
    );
    let recoveries = w
        .worker()
        .link()
        .recoveries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(recoveries, rounds as u64, "one recovery per cut");
    assert!(proxy.accepted() > rounds as u64);
    let max = recovery_ms.iter().copied().max().unwrap_or(0);
    println!(
        "link cuts: {rounds} under load of {} messages, recovery median {} ms, max {max} ms, 0 lost, 0 applied twice",
        messages.len(),
        median(&mut recovery_ms.clone())
    );
    assert!(max < 5_000, "recovery took {max} ms: {recovery_ms:?}");
    w.finish().await;
}

/// `mmt-worker run` as a child process, its log in the test's directory.
struct Child {
    process: tokio::process::Child,
}

impl Child {
    /// Starts the binary on `w`'s namespace, data directory and key, and
    /// waits for its "worker ready" line.
    async fn start(w: &TestWorker) -> Self {
        let log_path = w.dir.path().join("worker.log");
        let mut process = w
            .run_command()
            .arg("--prefetch")
            .arg("128")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mmt-worker starts");
        let stderr = process.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let ready = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                append(&log_path, &line);
                if line.contains("worker ready") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "the worker did not get ready; log: {}",
            log_path.display()
        );
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                append(&log_path, &line);
            }
        });
        Self { process }
    }

    /// Waits (at most `patience`) for the process to exit by itself.
    async fn exits(mut self, patience: Duration) -> Option<i32> {
        tokio::time::timeout(patience, self.process.wait())
            .await
            .expect("the worker exits by itself")
            .expect("reaped")
            .code()
    }

    async fn kill_9(mut self) {
        self.process.start_kill().expect("SIGKILL sent");
        self.process.wait().await.expect("reaped");
    }

    /// Sends SIGTERM; returns the exit code and how long the exit took.
    async fn terminate(mut self) -> (Option<i32>, Duration) {
        let pid = self.process.id().expect("running");
        let sent = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(PATIENCE, self.process.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("reaped");
        (exit.code(), sent.elapsed())
    }
}

fn append(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_within_5_s_and_loses_nothing() {
    let mut w = TestWorker::start_idle("sigterm").await;
    let child = Child::start(&w).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let messages = connections("term", 4000);
    let ids: Vec<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    bulk.publish(&messages).await;
    bulk.wait_answered(200, PATIENCE).await;
    let (code, took) = child.terminate().await;
    let answered_at_stop = bulk.answered();
    println!(
        "SIGTERM under load: exit {code:?} after {} ms, {answered_at_stop} of {} answered",
        took.as_millis(),
        messages.len()
    );
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "SIGTERM exit took {took:?}");
    w.start_worker().await;
    bulk.wait_answered(messages.len(), PATIENCE * 4).await;
    let replies = balanced(&bulk.replies(), &ids);
    assert!(replies.values().all(|r| r["tokens"][0]["created"] == true));
    w.finish().await;
}

/// Issue 19: a clean stop logged lapin's "invalid channel state: Closing" as
/// an ERROR about every other time (a channel whose last handle went after
/// the connection began closing). Six stops right after the start (where
/// it showed most: 5 of 6 before the fix), none may log an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_logs_no_error_line() {
    let w = TestWorker::start_idle("clean-stop").await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    for round in 0..4 {
        let child = Child::start(&w).await;
        let messages = connections(&format!("stop{round}"), 20);
        bulk.publish(&messages).await;
        bulk.wait_answered((round + 1) * messages.len(), PATIENCE)
            .await;
        let (code, _) = child.terminate().await;
        assert_eq!(code, Some(0));
    }
    let log = std::fs::read_to_string(w.dir.path().join("worker.log")).expect("log");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_during_ingest_and_revocation_balance_the_books() {
    let rounds = env_count("MMT_KILL_ROUNDS", 3);
    let total = env_count("MMT_KILL_MESSAGES", 3000);
    let mut w = TestWorker::start_idle("kill-9").await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let messages = connections("k9", total);
    let ids: Vec<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    let mut child = Child::start(&w).await;
    bulk.publish(&messages).await;
    for round in 1..=rounds {
        bulk.wait_answered(round * total / (rounds + 1), PATIENCE * 4)
            .await;
        child.kill_9().await;
        child = Child::start(&w).await;
    }
    bulk.wait_answered(total, PATIENCE * 8).await;
    let connected_replies = balanced(&bulk.replies(), &ids);
    assert!(
        connected_replies
            .values()
            .all(|r| r["tokens"][0]["created"] == true),
        "a connection was applied twice"
    );

    let revocations: Vec<(&str, String, Value)> = ids
        .iter()
        .step_by(2)
        .map(|id| {
            let token = token_id(&connected_replies[id]);
            (
                "connection.removed",
                format!("{id}-revoke"),
                json!({"clientId": "acme", "tokenId": token}),
            )
        })
        .collect();
    let revoke_ids: Vec<String> = revocations.iter().map(|(_, id, _)| id.clone()).collect();
    bulk.publish(&revocations).await;
    bulk.wait_answered(total + revocations.len() / 2, PATIENCE * 4)
        .await;
    child.kill_9().await;
    let child = Child::start(&w).await;
    bulk.wait_answered(total + revocations.len(), PATIENCE * 8)
        .await;
    let revoke_replies = balanced(&bulk.replies(), &revoke_ids);
    assert!(
        revoke_replies
            .values()
            .all(|r| r == &json!({"ok": true, "revoked": true})),
        "a revocation was applied twice or refused"
    );
    // Redeliver the original connections of revoked tokens: nothing comes back.
    let redelivered: Vec<_> = messages.iter().step_by(2).take(200).cloned().collect();
    bulk.publish(&redelivered).await;
    child.kill_9().await;
    w.start_worker().await;
    for (index, id) in ids.iter().enumerate().take(400) {
        let token = token_id(&connected_replies[id]);
        let resolved = w.resolve("acme", &token, "read").await;
        if index % 2 == 0 {
            assert_eq!(code(&resolved), "revoked", "{token} came back");
        } else {
            assert_eq!(resolved["accessToken"], format!("raw-k9-{index}"));
        }
    }
    println!(
        "kill -9: {rounds} rounds during {total} connections and {} revocations: 0 lost, 0 applied twice, 0 resurrected",
        revocations.len()
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_with_its_reason_at_the_delivery_limit() {
    let mut w = TestWorker::start("poison").await;
    let id = w
        .issue("acme", "u", "read", "coinbase", "cb-1", "raw-poison")
        .await;
    w.stop_worker().await;
    crate::util::garble_record(&w.data_dir(), &id);
    w.start_worker().await;
    let mut revoke = mmt_worker::ops::fixtures::Step::new(
        "connection.removed",
        json!({"clientId": "acme", "tokenId": id}),
    );
    revoke.reply = Some(false);
    revoke.message_id = Some("poison-1".into());
    w.send_no_reply(revoke).await;
    let dead = w.dead_letter().await;
    let headers = dead.properties.headers().clone().unwrap_or_default();
    let reason = match headers.inner().get("x-mmt-error") {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => panic!("no reason: {other:?}"),
    };
    assert!(
        reason.contains("processing failed on every delivery"),
        "{reason}"
    );
    assert!(reason.contains("does not decode"), "{reason}");
    let event = w.event("message.dead_lettered").await;
    assert_eq!(event["messageId"], "poison-1");
    let other = w
        .issue("acme", "u2", "read", "coinbase", "cb-1", "raw-fine")
        .await;
    assert_eq!(
        w.resolve("acme", &other, "read").await["accessToken"],
        "raw-fine"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_worker_with_exit_4_without_ack_and_nothing_is_lost_once_there_is_room()
 {
    let w = TestWorker::start_idle("full-disk").await;
    let mount = w.data_dir();
    std::fs::create_dir_all(&mount).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "this test needs to mount a small tmpfs (root)"
    );
    let _unmount = Unmount(mount.clone());
    let child = Child::start(&w).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let mut body = connected("acme", "u", "read", "coinbase", "cb-1", "");
    let padding = "p".repeat(15_000);
    let messages: Vec<_> = (0..400)
        .map(|i| {
            body["endUserId"] = json!(format!("disk-user-{i}"));
            body["accessToken"]["accountTokens"][0]["accessToken"] =
                json!(format!("raw-{i}-{padding}"));
            ("integration.connected", format!("disk-{i}"), body.clone())
        })
        .collect();
    let ids: Vec<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    bulk.publish(&messages).await;
    // A store whose flush stalls after the I/O error counts as failed after
    // 20 s (StoreError::Stalled).
    let code = child.exits(Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(w.dir.path().join("worker.log")).unwrap_or_default();
    assert_eq!(
        code,
        Some(4),
        "a full disk is a store problem: exit 4; log:\n{log}"
    );
    assert!(
        log.contains("No space left on device") || log.contains("did not finish a flush"),
        "{log}"
    );
    let answered = bulk.answered();
    assert!(answered < messages.len(), "the disk never filled up");
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mount)
        .status()
        .expect("remount runs");
    assert!(grown.success());
    let child = Child::start(&w).await;
    bulk.wait_answered(messages.len(), PATIENCE * 4).await;
    let replies = balanced(&bulk.replies(), &ids);
    assert!(replies.values().all(|r| r["tokens"][0]["created"] == true));
    println!(
        "full disk: exit 4 after {answered} of {} answered; all {} applied once after more room",
        messages.len(),
        messages.len()
    );
    child.terminate().await;
    w.finish().await;
}

/// Unmounts the tmpfs when dropped (also when the test fails).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Whether `pid` catches `signal` (its bit in `SigCgt` of /proc/PID/status).
fn catches(pid: u32, signal: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_the_worker_starts_is_harmless_and_a_sigterm_stops_it_cleanly() {
    // A "broker" that takes the connection and never answers: the worker
    // stays in its start, connecting.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = silent.local_addr().expect("address").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let w = TestWorker::start_idle("fault-term-at-start").await;
    let mut child = w
        .run_command()
        .env(
            "MMT_AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        )
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns");
    let pid = child.id().expect("pid");
    let deadline = Instant::now() + PATIENCE;
    while !(accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
        && catches(pid, 15)
        && catches(pid, 1))
    {
        assert!(
            Instant::now() < deadline,
            "the worker, connecting, does not listen for SIGTERM and SIGHUP (connections: {})",
            accepted.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kill = |signal: &'static str| {
        let pid = pid.to_string();
        async move {
            let sent = tokio::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .await
                .expect("kill runs");
            assert!(sent.success());
        }
    };
    // A SIGHUP while starting does not end it.
    kill("-HUP").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), child.wait())
            .await
            .is_err(),
        "the worker ended on a SIGHUP while starting"
    );
    kill("-TERM").await;
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("reaped");
    assert_eq!(status.code(), Some(0), "{status:?}");
    holder.abort();
    w.finish().await;
}
