//! The shared store (PostgreSQL, CONTRACT.md §13) through the real broker:
//! the fixtures' contract on a worker over PostgreSQL, and several workers
//! on one store and one namespace, competing for the same queues, keeping
//! the rules of §2-§7 across them. Each test has a database of its own on
//! the server `.ci/run` starts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mmt_oauth_fixture::{Mode, Options, Provider};
use mmt_pg_fixture::{Cluster, TestDatabase, query_texts};
use mmt_worker::Worker;
use mmt_worker::ops::fixtures::Publisher;
use serde_json::{Value, json};

use crate::refresh::{Setup, count, integrations_file, oauth_connected, until_within};
use crate::refresh_faults::Child;
use crate::scenarios::replay_every_fixture;
use crate::util::{
    Bulk, PATIENCE, TestWorker, amqp_url, code, connected, connections, token_id, worker_binary,
};

/// How long a burst may take to be answered (a debug build, three workers
/// and PostgreSQL on two cores).
const BURST: Duration = Duration::from_secs(120);

/// How many times the default size the books run: `MMT_BOOK_SCALE=33`
/// runs the kill -9 book at about 100,000 connects and 10,000 revocations
/// and the refresh book at about 20,000 due tokens (docs/scale-out.md).
fn book_scale() -> usize {
    std::env::var("MMT_BOOK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// A worker on a fresh database, and the database.
async fn on_postgres(test: &str) -> Option<(TestWorker, TestDatabase)> {
    let db = TestDatabase::create(test)?;
    let mut w = TestWorker::start_idle(test).await;
    w.store_url = Some(db.url.clone());
    w.start_worker().await;
    Some((w, db))
}

/// `n` more workers on the same store, namespace and key.
async fn more_workers(w: &TestWorker, n: usize) -> Vec<Worker> {
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        workers.push(
            Worker::start_with(&w.config(), &w.fleet)
                .await
                .expect("another worker starts"),
        );
    }
    workers
}

/// The books of `total` connects of new identities on the store at `url`:
/// every message answered alike each time, each with a new tokenId, and
/// each token and processed message stored once. Returns the tokenIds.
fn check_new_connects(bulk: &Bulk, url: &str, total: usize) -> HashSet<String> {
    let replies = bulk.replies();
    let mut ids = HashSet::new();
    for (id, got) in &replies {
        assert!(got.iter().all(|r| r == &got[0]), "{id}: {got:?}");
        assert_eq!(got[0]["tokens"][0]["created"], true, "{id}: {got:?}");
        ids.insert(token_id(&got[0]));
    }
    assert_eq!(ids.len(), total, "one new tokenId per identity");
    for table in ["tokens", "processed"] {
        assert_eq!(
            query_texts(url, &format!("SELECT count(*) FROM {table}")),
            vec![Some(total.to_string())],
            "{table}"
        );
    }
    ids
}

/// How often the workers lost their store or broker and came back.
fn recoveries(w: &TestWorker, others: &[Worker]) -> u64 {
    w.worker().link().recoveries_total()
        + others
            .iter()
            .map(|o| o.link().recoveries_total())
            .sum::<u64>()
}

async fn stop(workers: Vec<Worker>) {
    for worker in workers {
        worker.stop().await.expect("worker stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_on_the_shared_store_and_no_raw_token_is_in_it() {
    let Some((w, db)) = on_postgres("pg-fixtures").await else {
        return;
    };
    let connection = crate::util::connect().await;
    let mut publisher =
        Publisher::new(&connection, &w.ns, Duration::from_secs(15), "replay".into())
            .await
            .expect("publisher");
    let secrets = replay_every_fixture(&mut publisher).await;
    // Every byte the store keeps, as hex: no raw token in any of it.
    let stored = db.query_texts(
        "SELECT string_agg(encode(t.record, 'hex'), '') FROM tokens t
         UNION ALL SELECT string_agg(encode(p.reply, 'hex'), '') FROM processed p
         UNION ALL SELECT string_agg(encode(u.sealed, 'hex') || encode(u.wrapped, 'hex'), '')
                   FROM upstream_jobs u",
    );
    let stored: String = stored.into_iter().flatten().collect();
    assert!(stored.len() > 1_000, "the store holds the replayed tokens");
    for secret in &secrets {
        assert!(
            !stored.contains(&hex::encode(secret)),
            "{secret} is in the shared store in plain form"
        );
    }
    let _ = connection.close(200, "done".into()).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_connecting_one_identity_at_once_mint_one_token_id() {
    const IDENTITIES: usize = 1_000;
    let Some((w, db)) = on_postgres("pg-mint-once").await else {
        return;
    };
    let others = more_workers(&w, 2).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let mut messages = Vec::new();
    for round in 0..3 {
        for i in 0..IDENTITIES {
            messages.push((
                "integration.connected",
                format!("mint-{i}-{round}"),
                connected(
                    "acme",
                    &format!("user-{i}"),
                    "read",
                    "coinbase",
                    "cb-1",
                    &format!("raw-mint-{i}-{round}"),
                ),
            ));
        }
    }
    bulk.publish(&messages).await;
    bulk.wait_answered(messages.len(), BURST).await;
    let replies = bulk.replies();
    for i in 0..IDENTITIES {
        let got: Vec<&Value> = (0..3)
            .map(|round| &replies[&format!("mint-{i}-{round}")][0])
            .collect();
        let ids: HashSet<String> = got.iter().map(|r| token_id(r)).collect();
        assert_eq!(ids.len(), 1, "identity {i} got {ids:?}");
        let created = got
            .iter()
            .filter(|r| r["tokens"][0]["created"] == true)
            .count();
        assert_eq!(created, 1, "identity {i}: created {created} times: {got:?}");
    }
    let live = db.query_texts("SELECT count(*) FROM tokens WHERE state = 'active'");
    assert_eq!(live, vec![Some(IDENTITIES.to_string())]);
    let counted = db.query_texts(
        "SELECT sum(n) FROM token_counts WHERE state = 'active' AND broker_type = 'coinbase'",
    );
    assert_eq!(counted, vec![Some(IDENTITIES.to_string())]);
    stop(others).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_reconnections_never_brings_the_token_back() {
    const ROUNDS: usize = 20;
    let Some((mut w, _db)) = on_postgres("pg-no-resurrection").await else {
        return;
    };
    let others = more_workers(&w, 2).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    for round in 0..ROUNDS {
        let user = format!("racer-{round}");
        let first = w
            .connect(connected(
                "acme", &user, "read", "coinbase", "cb-1", "raw-0",
            ))
            .await;
        let revoked = token_id(&first);
        let mut messages = vec![(
            "connection.removed",
            format!("revoke-{round}"),
            json!({"clientId": "acme", "tokenId": revoked}),
        )];
        for k in 0..4 {
            messages.push((
                "integration.connected",
                format!("reconnect-{round}-{k}"),
                connected(
                    "acme",
                    &user,
                    "read",
                    "coinbase",
                    "cb-1",
                    &format!("raw-{k}"),
                ),
            ));
        }
        bulk.publish(&messages).await;
        bulk.wait_answered((round + 1) * messages.len(), BURST)
            .await;
        let replies = bulk.replies();
        assert_eq!(replies[&format!("revoke-{round}")][0]["revoked"], true);
        let resolved = w.resolve("acme", &revoked, "read").await;
        assert_eq!(code(&resolved), "revoked", "round {round}: {resolved}");
        // A reconnection either came first (the old tokenId, rotated) or
        // after (a new one, minted once, for every later one).
        let later: HashSet<String> = (0..4)
            .map(|k| token_id(&replies[&format!("reconnect-{round}-{k}")][0]))
            .filter(|id| *id != revoked)
            .collect();
        assert!(later.len() <= 1, "round {round}: {later:?}");
        let now = w
            .connect(connected(
                "acme", &user, "read", "coinbase", "cb-1", "raw-9",
            ))
            .await;
        assert_ne!(
            token_id(&now),
            revoked,
            "round {round}: the revoked token came back"
        );
        if let Some(new) = later.iter().next() {
            assert_eq!(&token_id(&now), new, "round {round}");
        }
    }
    stop(others).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_to_several_workers_is_applied_once_with_one_reply() {
    let Some((w, db)) = on_postgres("pg-applied-once").await else {
        return;
    };
    let others = more_workers(&w, 2).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let body = connected("acme", "twice", "read", "coinbase", "cb-1", "raw-twice");
    let messages: Vec<_> = (0..6)
        .map(|_| ("integration.connected", "same-id".to_owned(), body.clone()))
        .collect();
    bulk.publish(&messages).await;
    let deadline = tokio::time::Instant::now() + BURST;
    while bulk.replies().get("same-id").map_or(0, Vec::len) < 6 {
        assert!(tokio::time::Instant::now() < deadline, "replies missing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replies: HashMap<String, Vec<Value>> = bulk.replies();
    let all = &replies["same-id"];
    assert!(all.iter().all(|r| r == &all[0]), "{all:#?}");
    assert_eq!(all[0]["tokens"][0]["created"], true);
    assert_eq!(
        db.query_texts("SELECT count(*) FROM tokens"),
        vec![Some("1".to_owned())]
    );
    stop(others).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_key_is_refused_with_exit_3_and_leaves_no_key_behind() {
    let Some((w, db)) = on_postgres("pg-wrong-key").await else {
        return;
    };
    let other = tempfile::tempdir().expect("tempdir");
    let fresh = other.path().join("mmt.key");
    let output = tokio::process::Command::new(worker_binary())
        .arg("run")
        .arg("--namespace")
        .arg(w.ns.as_str())
        .arg("--data-dir")
        .arg(other.path().join("data"))
        .arg("--key-file")
        .arg(&fresh)
        .arg("--store-url")
        .arg(&db.url)
        .env("MMT_AMQP_URL", amqp_url())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the worker exits by itself")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the key does not match the store"),
        "{stderr}"
    );
    assert!(
        !fresh.exists(),
        "a key made for a store that refused it stays behind"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_load_loses_nothing_and_applies_nothing_twice() {
    const WAVE: usize = 1_000;
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    let mut w = TestWorker::start_idle("pg-restart").await;
    w.store_url = Some(cluster.url());
    w.start_worker().await;
    let others = more_workers(&w, 1).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let mut total = 0;
    // A restart while each of the first two waves is being applied: a fast
    // one (sessions ended), then a crash (`immediate`: WAL recovery).
    for (wave, restart) in [(0, Some("fast")), (1, Some("immediate")), (2, None)] {
        let messages = connections(&format!("wave{wave}"), WAVE);
        bulk.publish(&messages).await;
        if let Some(mode) = restart {
            bulk.wait_answered(total + 20, BURST).await;
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.restart(mode))
                .await
                .expect("restarted");
        }
        total += messages.len();
        bulk.wait_answered(total, BURST).await;
    }
    check_new_connects(&bulk, &cluster.url(), total);
    // The workers saw the store go and come back: they stopped consuming
    // and started again by themselves.
    let recovered = recoveries(&w, &others);
    assert!(recovered >= 2, "recoveries: {recovered}");
    stop(others).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_under_load_loses_nothing_and_applies_nothing_twice() {
    const WAVE: usize = 1_000;
    let Some(primary) = Cluster::start_primary() else {
        return;
    };
    // Before anything commits: the primary's commits wait for it.
    let standby = std::sync::Arc::new(primary.standby());
    let mut w = TestWorker::start_idle("pg-failover").await;
    // Both servers in one URL; the workers keep to the one that takes
    // writes.
    w.store_url = Some(format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    ));
    w.start_worker().await;
    let others = more_workers(&w, 1).await;
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let first = connections("before", WAVE);
    bulk.publish(&first).await;
    bulk.wait_answered(20, BURST).await;
    // The primary is lost mid-wave (a crash: nothing shut down cleanly),
    // and the standby is promoted.
    let primary = tokio::task::spawn_blocking(move || {
        primary.stop("immediate");
        primary
    })
    .await
    .expect("primary stopped");
    let promoted = standby.clone();
    tokio::task::spawn_blocking(move || promoted.promote())
        .await
        .expect("standby promoted");
    bulk.wait_answered(WAVE, BURST).await;
    let second = connections("after", WAVE);
    bulk.publish(&second).await;
    bulk.wait_answered(2 * WAVE, BURST).await;
    // Every acknowledged commit reached the standby before it was
    // acknowledged: the promoted server holds each of them, once.
    let ids = check_new_connects(&bulk, &standby.url(), 2 * WAVE);
    for id in ids.iter().step_by(100) {
        assert_eq!(
            w.resolve("acme", id, "read").await["ok"],
            true,
            "{id} resolves on the promoted server"
        );
    }
    let recovered = recoveries(&w, &others);
    assert!(recovered >= 1, "recoveries: {recovered}");
    stop(others).await;
    w.finish().await;
    drop(primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_refresh_each_due_token_once_and_never_send_a_refresh_token_twice() {
    let tokens = 600 * book_scale();
    const CONCURRENCY: u64 = 4;
    let Some(db) = TestDatabase::create("pg-refresh") else {
        return;
    };
    let provider = Provider::start(Options {
        expires_in: Some(3600),
        ..Options::default()
    })
    .await
    .expect("provider starts");
    let mut w = TestWorker::start_idle("pg-refresh").await;
    w.store_url = Some(db.url.clone());
    let setup = Setup {
        concurrency: usize::try_from(CONCURRENCY).expect("small"),
        ..Setup::default()
    };
    w.integrations = Some(integrations_file(w.dir.path(), &provider, &setup));
    w.start_worker().await;
    let others = more_workers(&w, 2).await;
    // Requests take a while, so that leases of the three workers overlap.
    provider.set_mode(Mode::Slow(Duration::from_millis(20)));
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let messages: Vec<_> = (0..tokens)
        .map(|i| {
            (
                "integration.connected",
                format!("due-{i}"),
                oauth_connected(
                    &format!("u{i}"),
                    "raw",
                    &provider.issue_refresh_token(),
                    2,
                    None,
                ),
            )
        })
        .collect();
    bulk.publish(&messages).await;
    bulk.wait_answered(tokens, BURST).await;
    let counters = provider.counters();
    // 20 ms a request, 3 x CONCURRENCY at once: 1 s per 600 tokens at the
    // least, and as much again for slack.
    let patience = PATIENCE + Duration::from_secs(2 * book_scale() as u64);
    until_within(patience, "every due token refreshed", || {
        count(&counters.refreshes) >= tokens as u64
    })
    .await;
    until_within(patience, "every refresh recorded", || {
        db.query_texts("SELECT count(*) FROM refresh WHERE last_refreshed_at IS NOT NULL")
            == vec![Some(tokens.to_string())]
    })
    .await;
    assert_eq!(
        count(&counters.refreshes),
        tokens as u64,
        "a token refreshed twice"
    );
    assert_eq!(count(&counters.reuses), 0, "a refresh token sent twice");
    assert_eq!(count(&counters.unknown), 0);
    let peak = count(&counters.max_in_flight);
    assert!(
        peak <= 3 * CONCURRENCY,
        "peak in flight {peak} over three workers of {CONCURRENCY}"
    );
    eprintln!("refresh book: {tokens} tokens refreshed once each, peak in flight {peak}");
    stop(others).await;
    w.finish().await;
}

/// Worker processes on one store, killed -9 and started again while the
/// messages of a wave are being applied.
struct KillBook<'a> {
    w: &'a TestWorker,
    bulk: &'a Bulk,
    children: Vec<Child>,
    kills: usize,
    expected: usize,
}

impl KillBook<'_> {
    /// Publishes `part` and kills a worker after every 150 answers (about a
    /// second's worth on this machine at the default scale) and at most
    /// once a second, so the books always move between two kills; returns
    /// once every message so far is answered.
    async fn wave(&mut self, part: &[(&'static str, String, serde_json::Value)]) {
        self.bulk.publish(part).await;
        self.expected += part.len();
        let mut last_kill = tokio::time::Instant::now();
        while self.bulk.answered() < self.expected {
            let next = (self.bulk.answered() + 150).min(self.expected);
            self.bulk.wait_answered(next, BURST).await;
            if next == self.expected {
                break;
            }
            tokio::time::sleep_until(last_kill + Duration::from_secs(1)).await;
            last_kill = tokio::time::Instant::now();
            let victim = self.kills % self.children.len();
            self.children.remove(victim).kill_9().await;
            let log = self
                .w
                .dir
                .path()
                .join(format!("worker-{}.log", 3 + self.kills));
            self.children
                .insert(victim, Child::spawn(self.w.run_command(), log).await);
            self.kills += 1;
        }
        self.bulk.wait_answered(self.expected, BURST).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_9_book_three_worker_processes_lose_nothing_apply_nothing_twice_revive_nothing() {
    let connects_n = 3_000 * book_scale();
    let revoked_n = 300 * book_scale();
    let Some(db) = TestDatabase::create("pg-kill9") else {
        return;
    };
    let mut w = TestWorker::start_idle("pg-kill9").await;
    w.store_url = Some(db.url.clone());
    let log = |i: usize| w.dir.path().join(format!("worker-{i}.log"));
    // The first one makes the key; the others share it.
    let mut children = Vec::new();
    for i in 0..3 {
        children.push(Child::spawn(w.run_command(), log(i)).await);
    }
    let bulk = Bulk::new(&w.connection, &w.ns).await;
    let connects = connections("book", connects_n);
    let (first, second) = connects.split_at(connects_n / 2);
    let mut book = KillBook {
        w: &w,
        bulk: &bulk,
        children,
        kills: 0,
        expected: 0,
    };
    book.wave(first).await;
    book.wave(second).await;
    let replies = bulk.replies();
    let token_of = |i: usize| token_id(&replies[&format!("book-connect-{i}")][0]);
    let revocations: Vec<_> = (0..revoked_n)
        .map(|i| {
            (
                "connection.removed",
                format!("book-revoke-{i}"),
                json!({"clientId": "acme", "tokenId": token_of(i)}),
            )
        })
        .collect();
    book.wave(&revocations).await;
    let KillBook {
        children,
        kills,
        expected,
        ..
    } = book;
    let replies = bulk.replies();
    // Every message answered, and a message answered twice (its worker died
    // between the reply and the ack) got its original reply again.
    for (id, got) in &replies {
        assert!(got.iter().all(|r| r == &got[0]), "{id}: {got:#?}");
    }
    let ids: HashSet<String> = (0..connects_n).map(token_of).collect();
    assert_eq!(ids.len(), connects_n, "one tokenId per identity");
    for i in 0..connects_n {
        assert_eq!(
            replies[&format!("book-connect-{i}")][0]["tokens"][0]["created"],
            true,
            "connect {i}"
        );
    }
    for i in 0..revoked_n {
        assert_eq!(replies[&format!("book-revoke-{i}")][0]["revoked"], true);
    }
    assert_eq!(
        db.query_texts(
            "SELECT count(*) FILTER (WHERE state = 'active') || ' ' || count(*) FILTER (WHERE state = 'revoked') FROM tokens"
        ),
        vec![Some(format!("{} {revoked_n}", connects_n - revoked_n))]
    );
    assert_eq!(
        db.query_texts("SELECT count(*) FROM processed"),
        vec![Some(expected.to_string())]
    );
    // No revoked token back: each revoked identity connects to a new one.
    w.start_worker().await;
    for i in (0..revoked_n).step_by(30) {
        let again = w
            .connect(connected(
                "acme",
                &format!("book-user-{i}"),
                "read",
                "coinbase",
                "cb-1",
                "raw",
            ))
            .await;
        assert_ne!(
            token_id(&again),
            token_of(i),
            "identity {i}: a revoked token came back"
        );
        assert_eq!(
            code(&w.resolve("acme", &token_of(i), "read").await),
            "revoked"
        );
    }
    assert!(kills >= 2, "workers killed: {kills}");
    eprintln!("kill -9 book: {connects_n} connects, {revoked_n} revocations, {kills} kills");
    for child in children {
        child.kill_9().await;
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_moves_from_the_embedded_store_to_postgres_with_store_copy() {
    let Some(db) = TestDatabase::create("pg-copy") else {
        return;
    };
    let mut w = TestWorker::start("pg-copy").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let raw = format!("raw-moving-{i}");
        ids.push(token_id(
            &w.connect(connected(
                "acme",
                &format!("mover-{i}"),
                "read",
                "coinbase",
                "cb-1",
                &raw,
            ))
            .await,
        ));
    }
    let gone = ids[0].clone();
    assert_eq!(w.revoke("acme", &gone).await["revoked"], true);
    w.stop_worker().await;
    let output = tokio::process::Command::new(worker_binary())
        .args(["store", "copy", "--from"])
        .arg(w.data_dir())
        .arg("--to")
        .arg(&db.url)
        .arg("--key-file")
        .arg(w.key_file())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the copy ends by itself")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("store copy: 30 tokens, 31 processed messages"),
        "{stderr}"
    );
    assert!(stderr.contains("verified"), "{stderr}");
    // The same deployment, on PostgreSQL now.
    w.store_url = Some(db.url.clone());
    w.start_worker().await;
    for (i, id) in ids.iter().enumerate().skip(1) {
        let resolved = w.resolve("acme", id, "read").await;
        assert_eq!(resolved["accessToken"], format!("raw-moving-{i}"));
    }
    assert_eq!(code(&w.resolve("acme", &gone, "read").await), "revoked");
    let again = w
        .connect(connected(
            "acme",
            "mover-5",
            "read",
            "coinbase",
            "cb-1",
            "raw-again",
        ))
        .await;
    assert_eq!(token_id(&again), ids[5], "the identity index came along");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_password_is_never_printed_by_run_or_store_copy() {
    const SECRET: &str = "hunter2-STORE-SECRET";
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 on loopback refuses at once: the store is unreachable.
    let url = format!("postgres://mmt:{SECRET}@127.0.0.1:1/mmt");
    let key = dir.path().join("mmt.key");
    mmt_worker::store::crypto::KeyRing::load_or_create(&key).expect("key");
    let to = dir.path().join("to");
    let missing = dir.path().join("missing.key");
    let from = dir.path().join("from");
    let runs: [Vec<&std::ffi::OsStr>; 3] = [
        vec![
            "run".as_ref(),
            "--namespace".as_ref(),
            "t-store-url-redaction".as_ref(),
            "--key-file".as_ref(),
            key.as_os_str(),
            "--store-url".as_ref(),
            url.as_ref(),
        ],
        vec![
            "store".as_ref(),
            "copy".as_ref(),
            "--from".as_ref(),
            url.as_ref(),
            "--to".as_ref(),
            to.as_os_str(),
            "--key-file".as_ref(),
            missing.as_os_str(),
        ],
        vec![
            "store".as_ref(),
            "copy".as_ref(),
            "--from".as_ref(),
            from.as_os_str(),
            "--to".as_ref(),
            url.as_ref(),
            "--key-file".as_ref(),
            key.as_os_str(),
        ],
    ];
    for args in runs {
        let output = tokio::process::Command::new(worker_binary())
            .args(&args)
            .env("MMT_AMQP_URL", amqp_url())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("ends by itself")
            .expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_ne!(output.status.code(), Some(0), "{args:?}: {text}");
        assert!(
            !text.contains(SECRET),
            "{args:?} printed the password: {text}"
        );
        assert!(text.contains("mmt:***@127.0.0.1:1"), "{args:?}: {text}");
    }
}
