//! The refresh engine under faults: kill -9 of the real binary while
//! refreshes are in flight, a clean stop with leases queued, and many tokens
//! due at once against a slow provider; and the promise that no secret
//! leaves the worker.
//!
//! What a kill can and cannot cost (CONTRACT.md §9): a request whose answer
//! the provider produced but the worker had not yet made durable is lost
//! against a provider without a reuse grace period (the next attempt
//! presents a rotated-away token: `invalid_grant`, one reconnect). The kill
//! test therefore kills only where the design guarantees that nothing is
//! lost: every answer the provider gave is durable (its `token.refreshed`
//! event, published after the flush, has been seen) and the requests in
//! flight are held by the provider unanswered ([`Mode::Hang`]), the state
//! of a request cut off on its way. A restart must then wait for the
//! durable leases, send each refresh token once, and lose no token.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mmt_oauth_fixture::{Mode, Options, Provider};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::refresh::{BROKER, Setup, due_at_once, integrations_file, oauth_connected, until};
use crate::util::{Bulk, PATIENCE, TestWorker, files_under, token_id};

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::SeqCst)
}

/// `mmt-worker run` with the test's integrations file, its log kept.
pub struct Child {
    process: tokio::process::Child,
}

impl Child {
    async fn start(w: &TestWorker) -> Self {
        let mut command = w.run_command();
        command
            .arg("--sweep-interval-ms")
            .arg("50")
            .arg("--integrations")
            .arg(w.integrations.as_ref().expect("an integrations file"));
        Self::spawn(command, w.dir.path().join("worker.log")).await
    }

    /// Spawns `command` (an `mmt-worker run`), its log appended to
    /// `log_path`, and waits until it says it is ready.
    pub async fn spawn(mut command: tokio::process::Command, log_path: PathBuf) -> Self {
        let mut process = command
            .env("MMT_LOG", "info,mmt_worker=debug,lapin=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mmt-worker starts");
        let stderr = process.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let append = move |line: &str| {
            use std::io::Write;
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
            {
                let _ = writeln!(file, "{line}");
            }
        };
        let ready = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                append(&line);
                if line.contains("worker ready") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(ready, Ok(true)), "the worker did not get ready");
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                append(&line);
            }
        });
        Self { process }
    }

    /// Sends SIGHUP (the worker reads its key file and its other files
    /// again).
    pub fn hangup(&self) {
        let pid = self.process.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub async fn kill_9(mut self) {
        self.process.start_kill().expect("SIGKILL sent");
        self.process.wait().await.expect("reaped");
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.process.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(PATIENCE, self.process.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("reaped")
            .code()
    }
}

/// Every event seen so far, kept by the test.
async fn seen(w: &mut TestWorker, all: &mut Vec<(String, Value)>) {
    all.extend(w.drain_events().await);
}

fn refreshed(all: &[(String, Value)]) -> u64 {
    all.iter().filter(|(k, _)| k == "token.refreshed").count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_refreshes_are_in_flight_never_reuses_a_refresh_token_nor_loses_a_token() {
    let rounds = 3;
    let tokens = 40;
    let provider = Provider::start(Options {
        expires_in: Some(2),
        ..Options::default()
    })
    .await
    .expect("provider");
    let mut w = TestWorker::start_idle("refresh-kill-9").await;
    let setup = Setup {
        timeout_ms: 1_000,
        ..Setup::default()
    };
    w.integrations = Some(integrations_file(w.dir.path(), &provider, &setup));
    let mut child = Child::start(&w).await;
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..tokens {
        let refresh = provider.issue_refresh_token();
        let access = format!("raw-k9-access-{i}");
        ids.push(token_id(
            &w.connect(oauth_connected(
                &format!("u{i}"),
                &access,
                &refresh,
                2,
                None,
            ))
            .await,
        ));
        secrets.extend([refresh, access]);
    }
    let mut all = Vec::new();
    for round in 1..=rounds {
        let before = refreshed(&all);
        provider.set_mode(Mode::Normal);
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        while refreshed(&all) < before + tokens as u64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: refreshes stalled: {} events, provider {:?}, log {}",
                refreshed(&all),
                provider.counters(),
                std::fs::read_to_string(w.dir.path().join("worker.log"))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .filter(|l| !l.contains("DEBUG"))
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen(&mut w, &mut all).await;
        }
        provider.set_mode(Mode::Hang);
        let hung = count(&provider.counters().hung);
        until("requests held in flight", || {
            count(&provider.counters().hung) >= hung + 3
        })
        .await;
        // Every answer given is durable once its event is out.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while refreshed(&all) < count(&provider.counters().refreshes) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "answers not made durable"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen(&mut w, &mut all).await;
        }
        child.kill_9().await;
        provider.set_mode(Mode::Normal);
        child = Child::start(&w).await;
    }
    // Every token goes on refreshing after the last restart: each one has a
    // token.refreshed event of its own after it (a count of events could be
    // made up by fast tokens refreshed twice while a stuck one never is).
    let after_restart = all.len();
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        seen(&mut w, &mut all).await;
        let refreshed_since: HashSet<&str> = all[after_restart..]
            .iter()
            .filter(|(k, _)| k == "token.refreshed")
            .filter_map(|(_, e)| e["tokenId"].as_str())
            .collect();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !refreshed_since.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not refreshed after the last restart: {missing:?}, provider {:?}",
            provider.counters()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill_9().await;
    assert_eq!(
        count(&provider.counters().reuses),
        0,
        "a rotated-away refresh token was sent"
    );
    assert_eq!(count(&provider.counters().unknown), 0);
    let expired: Vec<_> = all.iter().filter(|(k, _)| k == "token.expired").collect();
    assert!(
        expired.is_empty(),
        "tokens lost to reauth_required: {expired:?}"
    );
    let log = std::fs::read_to_string(w.dir.path().join("worker.log")).expect("log");
    for secret in secrets.iter().chain([&provider.client_secret()]) {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
        assert!(
            !all.iter()
                .any(|(_, e)| e.to_string().contains(secret.as_str()))
        );
    }
    for (path, bytes) in files_under(&w.data_dir()) {
        for secret in &secrets {
            assert!(
                !crate::util::holds(&bytes, secret.as_bytes()),
                "{} holds a raw token",
                path.display()
            );
        }
    }
    println!(
        "kill -9: {rounds} rounds with {tokens} tokens refreshing every second: {} refreshes, {} held requests cut off, 0 reuses, 0 lost",
        count(&provider.counters().refreshes),
        count(&provider.counters().hung)
    );
    w.finish().await;
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tokens' lifetime from their messages' timestamp, and how long before
/// their publication that timestamp is (seconds): they expire 90 s after
/// they are published. (Stamped at publication with 90 s to live, they
/// would be due 45 s out: the time ahead is at most half the lifetime.)
const LIFETIME: i64 = 120;
const ISSUED_BEFORE: i64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tokens_due_together_against_a_slow_provider_stay_bounded_and_none_lapses() {
    let n = env_count("MMT_REFRESH_MANY", 10_000);
    let concurrency = 64;
    let provider = Provider::start(Options::default()).await.expect("provider");
    provider.set_mode(Mode::Slow(Duration::from_millis(20)));
    let mut w = TestWorker::start_idle("refresh-10k").await;
    // Due 30 s after they are published, expiring 60 s later: the headroom
    // a loaded 2-core machine needs for 10,000 refreshes of a debug build.
    let setup = Setup {
        concurrency,
        refresh_ahead_seconds: 60,
        ..Setup::default()
    };
    w.integrations = Some(integrations_file(w.dir.path(), &provider, &setup));
    w.start_worker().await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let messages: Vec<(&str, String, Value)> = (0..n)
        .map(|i| {
            (
                "integration.connected",
                format!("many-{i}"),
                oauth_connected(
                    &format!("u{i}"),
                    "raw",
                    &provider.issue_refresh_token(),
                    u64::try_from(LIFETIME).expect("positive"),
                    None,
                ),
            )
        })
        .collect();
    // One timestamp for all: every token expires in the same second, and is
    // due 60 s before (less the jitter).
    let published = mmt_shared::time_fmt::now_millis();
    let t0 = published / 1000 - ISSUED_BEFORE;
    let expiry = (t0 + LIFETIME) * 1000;
    bulk.publish_at(&messages, Some(u64::try_from(t0).expect("positive")))
        .await;
    bulk.wait_answered(n, PATIENCE * 8).await;
    let ingested = mmt_shared::time_fmt::now_millis();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(100);
    while count(&provider.counters().refreshes) < n as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refreshes stalled: {:?}, ingest took {} ms, health {:?}, due {:?}",
            provider.counters(),
            ingested - published,
            w.worker().refresher().health(),
            w.worker().service().store().due_refreshes(i64::MAX, 3),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = mmt_shared::time_fmt::now_millis();
    let peak = count(&provider.counters().max_in_flight);
    println!(
        "{n} tokens due together: refreshed {} s before their expiry, peak {peak} in flight (bound {concurrency})",
        (expiry - done) / 1000
    );
    assert!(peak <= concurrency as u64, "peak {peak}");
    assert!(done < expiry, "a token lapsed");
    let failed = w
        .drain_events()
        .await
        .into_iter()
        .filter(|(k, _)| k == "token.refresh_failed" || k == "token.expired")
        .count();
    assert_eq!(failed, 0);
    assert_eq!(count(&provider.counters().reuses), 0);
    let health = w.worker().refresher().health();
    assert!(
        health
            .integrations
            .iter()
            .all(|i| i.broker_type != BROKER || i.failing == 0)
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_integrations_file_keeps_the_one_in_force_and_says_why() {
    let provider = Provider::start(Options::default()).await.expect("provider");
    let mut w = TestWorker::start_idle("refresh-sighup").await;
    let path = integrations_file(w.dir.path(), &provider, &Setup::default());
    w.integrations = Some(path.clone());
    let mut child = Child::start(&w).await;
    std::fs::write(&path, "refresh_concurrency = \"many\"\n").expect("breaks");
    let pid = child.process.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let log_path = w.dir.path().join("worker.log");
    until("the refusal in the log", || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("integrations file refused; keeping the one in force")
    })
    .await;
    assert!(
        child.process.try_wait().expect("waits").is_none(),
        "still running"
    );
    let id = token_id(
        &w.connect(oauth_connected(
            "u1",
            "raw-a",
            &provider.issue_refresh_token(),
            2,
            None,
        ))
        .await,
    );
    assert_eq!(w.event("token.refreshed").await["tokenId"], id.as_str());
    child.kill_9().await;
    w.finish().await;
}

/// Tokens of `ids` whose refresh record holds a lease.
fn leased(w: &mmt_worker::service::Service, ids: &[String]) -> usize {
    ids.iter()
        .filter(|id| {
            w.store()
                .refresh_record(id)
                .expect("record reads")
                .is_some_and(|r| r.lease.is_some())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_gives_queued_leases_back_and_the_restart_refreshes_each_once() {
    let n = 20;
    let setup = Setup {
        concurrency: 2,
        ..Setup::default()
    };
    let (mut w, p, ids) =
        due_at_once("refresh-queued-stop", setup, Duration::from_millis(400), n).await;
    let service = w.worker().service().clone();
    // Two requests in flight and leases queued behind them (4 per slot).
    until("leases queued behind the requests in flight", || {
        leased(&service, &ids) > 2
    })
    .await;
    w.stop_worker().await;
    assert_eq!(
        leased(&service, &ids),
        0,
        "a clean stop leaves no lease: the answered ones are applied, the queued ones given back"
    );
    drop(service);
    let before = count(&p.counters().refreshes);
    assert!(before < n, "the stop came before every refresh");
    p.set_mode(Mode::Normal);
    w.start_worker().await;
    until("every token refreshed once", || {
        count(&p.counters().refreshes) >= n
    })
    .await;
    assert_eq!(count(&p.counters().refreshes), n);
    assert_eq!(count(&p.counters().reuses), 0);
    w.finish().await;
}
