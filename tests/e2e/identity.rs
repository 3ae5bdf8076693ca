//! CONTRACT.md §10 through the real broker with real broker users: strict
//! mode's `forbidden` on every queue, the reply that says nothing about the
//! token, the clients file refused at start and reloaded on SIGHUP.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lapin::Connection;
use lapin::types::AMQPValue;
use mmt_worker::ops::fixtures::{Publisher, Step};
use mmt_worker::rules::identity::{NO_USER_ID, NOT_THIS_CLIENT};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::brokeruser::{BrokerUser, raw_call};
use crate::util::{PATIENCE, TestWorker, amqp_url, code, connected, token_id, worker_binary};

/// A publisher logged in as `user` that names it in `user_id` (or not).
async fn publisher(connection: &Connection, w: &TestWorker, user: Option<&str>) -> Publisher {
    Publisher::new(connection, &w.ns, PATIENCE, "t".into())
        .await
        .expect("publisher")
        .with_user_id(user.map(str::to_owned))
}

async fn call(publisher: &mut Publisher, routing_key: &str, body: Value) -> Value {
    let mut step = Step::new(routing_key, body);
    step.message_id = Some(uuid::Uuid::new_v4().to_string());
    publisher
        .send("test", &step)
        .await
        .expect("answered")
        .expect("a reply was asked for")
}

fn clients_toml(clients: &[(&str, &[&str])]) -> String {
    clients
        .iter()
        .map(|(client, users)| {
            let users: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
            format!(
                "[clients.{client}]\nbroker_users = [{}]\n",
                users.join(", ")
            )
        })
        .collect()
}

/// A strict worker whose file gives `acme` to one user and `globex` to
/// another, and a publisher for each.
struct Strict {
    w: TestWorker,
    acme: BrokerUser,
    globex: BrokerUser,
    acme_conn: Connection,
    globex_conn: Connection,
    as_acme: Publisher,
    as_globex: Publisher,
}

impl Strict {
    async fn start(test: &str) -> Self {
        let acme = BrokerUser::create("acme");
        let globex = BrokerUser::create("globex");
        let mut w = TestWorker::start_idle(test).await;
        let file = w.dir.path().join("clients.toml");
        std::fs::write(
            &file,
            clients_toml(&[("acme", &[&acme.name]), ("globex", &[&globex.name])]),
        )
        .expect("clients file");
        w.clients = Some(file);
        w.start_worker().await;
        let acme_conn = acme.connect().await;
        let globex_conn = globex.connect().await;
        let as_acme = publisher(&acme_conn, &w, Some(&acme.name)).await;
        let as_globex = publisher(&globex_conn, &w, Some(&globex.name)).await;
        Self {
            w,
            acme,
            globex,
            acme_conn,
            globex_conn,
            as_acme,
            as_globex,
        }
    }

    async fn issue_as_acme(&mut self, raw: &str) -> String {
        token_id(
            &call(
                &mut self.as_acme,
                "integration.connected",
                connected("acme", "user-1", "read", "coinbase", "cb-1", raw),
            )
            .await,
        )
    }

    async fn finish(self) {
        let _ = self.acme_conn.close(200, "done".into()).await;
        let _ = self.globex_conn.close(200, "done".into()).await;
        self.w.finish().await;
    }
}

fn header<'a>(delivery: &'a lapin::message::Delivery, name: &str) -> Option<&'a str> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_a_broker_user_of_the_claimed_client_is_served_as_in_v1() {
    let mut s = Strict::start("strict_served").await;
    let token = s.issue_as_acme("raw-acme-1").await;
    let issued = s.w.event("token.issued").await;
    assert_eq!(issued["brokerUser"], s.acme.name.as_str(), "{issued}");
    let resolved = call(
        &mut s.as_acme,
        "token.resolve",
        json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
    )
    .await;
    assert_eq!(resolved["accessToken"], "raw-acme-1", "{resolved}");
    let linked = call(
        &mut s.as_acme,
        "link.access_tokens",
        json!({"clientId": "acme", "endUserId": "user-1"}),
    )
    .await;
    assert_eq!(linked["accessTokens"].as_array().map(Vec::len), Some(1));
    let removed = call(
        &mut s.as_acme,
        "connection.removed",
        json!({"clientId": "acme", "tokenId": token}),
    )
    .await;
    assert_eq!(removed["revoked"], true, "{removed}");
    let revoked = s.w.event("token.revoked").await;
    assert_eq!(revoked["brokerUser"], s.acme.name.as_str());
    let stats = s.w.event("worker.stats").await;
    assert_eq!(stats["identity"], "strict", "{stats}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_is_said_in_worker_stats() {
    let mut w = TestWorker::start("open_mode_stats").await;
    let stats = w.event("worker.stats").await;
    assert_eq!(stats["identity"], "open", "{stats}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_impersonating_another_client_is_forbidden_on_every_queue() {
    let mut s = Strict::start("strict_impersonation").await;
    let token = s.issue_as_acme("raw-acme-orig").await;
    let attempts = [
        (
            "integration.connected",
            connected("acme", "user-1", "read", "coinbase", "cb-1", "raw-evil"),
        ),
        (
            "connection.removed",
            json!({"clientId": "acme", "tokenId": token}),
        ),
        (
            "token.resolve",
            json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
        ),
        (
            "link.access_tokens",
            json!({"clientId": "acme", "endUserId": "user-1"}),
        ),
    ];
    for (routing_key, body) in attempts {
        let reply = call(&mut s.as_globex, routing_key, body).await;
        assert_eq!(code(&reply), "forbidden", "{routing_key}: {reply}");
        assert_eq!(reply["error"]["message"], NOT_THIS_CLIENT);
        let rejected = s.w.event("request.rejected").await;
        assert_eq!(rejected["code"], "forbidden", "{rejected}");
        assert_eq!(rejected["queue"], routing_key);
        assert_eq!(rejected["clientId"], "acme");
        assert_eq!(rejected["brokerUser"], s.globex.name.as_str());
        assert!(rejected.get("tokenId").is_none(), "{rejected}");
        let operation = (routing_key == "token.resolve").then_some("read");
        assert_eq!(rejected["operation"].as_str(), operation, "{rejected}");
    }
    // The state-changing ones are kept in NS.dead, in order, to be replayed.
    for queue in ["integration.connected", "connection.removed"] {
        let dead = s.w.dead_letter().await;
        assert_eq!(dead.routing_key.as_str(), queue);
        assert_eq!(header(&dead, "x-mmt-error"), Some(NOT_THIS_CLIENT));
        assert_eq!(header(&dead, "x-mmt-user-id"), Some(s.globex.name.as_str()));
        assert_eq!(
            header(&dead, "x-mmt-queue"),
            Some(format!("{}.{queue}", s.w.ns).as_str())
        );
    }
    // Nothing changed: same raw token, still live, one token listed.
    let resolved = call(
        &mut s.as_acme,
        "token.resolve",
        json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
    )
    .await;
    assert_eq!(resolved["accessToken"], "raw-acme-orig", "{resolved}");
    let events = s.w.drain_events().await;
    assert!(
        !events.iter().any(|(k, _)| k.starts_with("token.")),
        "{events:?}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_a_message_without_user_id_is_forbidden() {
    let mut s = Strict::start("strict_no_user_id").await;
    let token = s.issue_as_acme("raw-acme-2").await;
    let mut anonymous = publisher(&s.acme_conn, &s.w, None).await;
    let reply = call(
        &mut anonymous,
        "token.resolve",
        json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
    )
    .await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    assert_eq!(reply["error"]["message"], NO_USER_ID);
    let reply = call(
        &mut anonymous,
        "integration.connected",
        connected("acme", "user-2", "read", "coinbase", "cb-2", "raw-x"),
    )
    .await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    let dead = s.w.dead_letter().await;
    assert_eq!(header(&dead, "x-mmt-error"), Some(NO_USER_ID));
    let linked = call(
        &mut s.as_acme,
        "link.access_tokens",
        json!({"clientId": "acme", "endUserId": "user-2"}),
    )
    .await;
    assert_eq!(
        linked["accessTokens"],
        json!([]),
        "nothing stored: {linked}"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_guest_is_forbidden() {
    let mut s = Strict::start("strict_guest").await;
    let token = s.issue_as_acme("raw-acme-3").await;
    let mut guest = publisher(&s.w.connection, &s.w, Some("guest")).await;
    for (routing_key, body) in [
        (
            "token.resolve",
            json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
        ),
        (
            "connection.removed",
            json!({"clientId": "acme", "tokenId": token}),
        ),
    ] {
        let reply = call(&mut guest, routing_key, body).await;
        assert_eq!(code(&reply), "forbidden", "{routing_key}: {reply}");
    }
    let resolved = call(
        &mut s.as_acme,
        "token.resolve",
        json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
    )
    .await;
    assert_eq!(resolved["ok"], true, "the revoke did nothing: {resolved}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_forbidden_replies_are_byte_identical_for_existing_and_missing_tokens() {
    let mut s = Strict::start("strict_no_oracle").await;
    let token = s.issue_as_acme("raw-acme-4").await;
    let missing = "tok_00000000000000000000000000000000";
    for routing_key in ["token.resolve", "connection.removed"] {
        let body = |t: &str| {
            json!({"clientId": "acme", "tokenId": t, "operation": "read"})
                .to_string()
                .into_bytes()
        };
        let user = Some(s.globex.name.as_str());
        let existing = raw_call(&s.globex_conn, &s.w.ns, routing_key, &body(&token), user).await;
        let absent = raw_call(&s.globex_conn, &s.w.ns, routing_key, &body(missing), user).await;
        assert_eq!(
            existing,
            absent,
            "{routing_key}: {} vs {}",
            String::from_utf8_lossy(&existing),
            String::from_utf8_lossy(&absent)
        );
        let reply: Value = serde_json::from_slice(&existing).expect("JSON");
        assert_eq!(code(&reply), "forbidden");
    }
    s.finish().await;
}

/// `mmt-worker run --clients FILE` as a child process.
async fn start_binary(
    w: &TestWorker,
    clients: &std::path::Path,
) -> (tokio::process::Child, Arc<std::sync::Mutex<String>>) {
    let mut child = w
        .run_command()
        .arg("--clients")
        .arg(clients)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mmt-worker starts");
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("worker ready") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "the worker did not get ready");
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    (child, log)
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_broker_user_while_messages_flow() {
    let old = BrokerUser::create("sighup-old");
    let new = BrokerUser::create("sighup-new");
    let w = TestWorker::start_idle("sighup_reload").await;
    let file = w.dir.path().join("clients.toml");
    std::fs::write(&file, clients_toml(&[("acme", &[&old.name])])).expect("file");
    let (mut child, log) = start_binary(&w, &file).await;

    let old_conn = old.connect().await;
    let mut as_old = publisher(&old_conn, &w, Some(&old.name)).await;
    let token = token_id(
        &call(
            &mut as_old,
            "integration.connected",
            connected("acme", "u", "read", "coinbase", "cb-1", "raw-sighup"),
        )
        .await,
    );
    // The old user resolves without pause through every reload.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let flow = tokio::spawn({
        let (stop, served, token) = (stop.clone(), served.clone(), token.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = call(
                    &mut as_old,
                    "token.resolve",
                    json!({"clientId": "acme", "tokenId": token, "operation": "read"}),
                )
                .await;
                assert_eq!(
                    reply["accessToken"], "raw-sighup",
                    "refused wrongly: {reply}"
                );
                served.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let new_conn = new.connect().await;
    let mut as_new = publisher(&new_conn, &w, Some(&new.name)).await;
    let resolve = json!({"clientId": "acme", "tokenId": token, "operation": "read"});
    let reply = call(&mut as_new, "token.resolve", resolve.clone()).await;
    assert_eq!(code(&reply), "forbidden", "{reply}");

    std::fs::write(&file, clients_toml(&[("acme", &[&old.name, &new.name])])).expect("file");
    signal(&child, "-HUP");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = call(&mut as_new, "token.resolve", resolve.clone()).await;
        if reply["ok"] == true {
            break;
        }
        assert_eq!(code(&reply), "forbidden", "{reply}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never let the new user in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file keeps the configuration in force and says why.
    std::fs::write(&file, "[clients.acme]\nbroker_users = [\"x\"]\nbogus = 1\n").expect("file");
    signal(&child, "-HUP");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !log
        .lock()
        .expect("log")
        .contains("clients file not reloaded")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line about the bad reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = call(&mut as_new, "token.resolve", resolve).await;
    assert_eq!(reply["ok"], true, "the old configuration stays: {reply}");
    assert!(
        log.lock().expect("log").contains("clients.toml:3"),
        "{}",
        log.lock().expect("log")
    );

    stop.store(true, Ordering::Relaxed);
    flow.await
        .expect("no resolve of the old user was refused or lost");
    assert!(served.load(Ordering::Relaxed) > 0);
    signal(&child, "-TERM");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits")
        .expect("reaped");
    assert!(status.success(), "{status:?}");
    let _ = old_conn.close(200, "done".into()).await;
    let _ = new_conn.close(200, "done".into()).await;
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_clients_file_is_refused_at_start_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clients.toml");
    std::fs::write(
        &file,
        "[clients.acme]\nbroker_users = [\"a\"]\n\n[clients.acme.webhook]\nurl = \"http://hooks.example/x\"\nsecret_env = \"S\"\n",
    )
    .expect("file");
    let out = tokio::process::Command::new(worker_binary())
        .arg("run")
        .arg("--namespace")
        .arg("t-bad-clients-never-declared")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("mmt.key"))
        .arg("--clients")
        .arg(&file)
        .env("MMT_AMQP_URL", amqp_url())
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("clients.toml:5"), "{stderr}");
    assert!(stderr.contains("clients.acme.webhook.url"), "{stderr}");
}

/// Regression: a dead letter copied the `user_id` property, which the broker
/// refuses from the worker's own connection: the dead-letter channel closed
/// and the bad message of any publisher that names itself was never
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_from_a_publisher_naming_its_user_is_dead_lettered() {
    let user = BrokerUser::create("dead-letter");
    let mut w = TestWorker::start("dead_letter_user_id").await;
    let connection = user.connect().await;
    let mut named = publisher(&connection, &w, Some(&user.name)).await;
    let reply = call(&mut named, "integration.connected", json!({"clientId": 7})).await;
    assert_eq!(code(&reply), "invalid_message", "{reply}");
    let dead = w.dead_letter().await;
    assert_eq!(header(&dead, "x-mmt-user-id"), Some(user.name.as_str()));
    assert_eq!(dead.properties.user_id(), &None);
    let _ = connection.close(200, "done".into()).await;
    w.finish().await;
}
