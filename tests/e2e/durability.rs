//! The promises of CONTRACT.md §3 (idempotency) and §7 (durability and
//! secrecy): redelivery, restarts, the wrong key, nothing plain on disk.

use mmt_worker::ops::fixtures::Step;
use serde_json::json;

use crate::util::{PATIENCE, TestWorker, code, connected, files_under, token_id, worker_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_already_processed_is_not_applied_again_and_gets_its_original_reply() {
    let mut w = TestWorker::start("redelivery").await;
    let mut first = Step::new(
        "integration.connected",
        connected("acme", "u", "read", "coinbase", "cb-1", "raw-original"),
    );
    first.message_id = Some("msg-1".into());
    let reply = w.send(first).await;
    let id = token_id(&reply);
    let mut replay = Step::new(
        "integration.connected",
        connected("acme", "u", "read", "coinbase", "cb-1", "raw-replayed"),
    );
    replay.message_id = Some("msg-1".into());
    assert_eq!(
        w.send(replay).await,
        reply,
        "the original reply, byte for byte"
    );
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-original"
    );
    let issued: Vec<_> = w
        .drain_events()
        .await
        .into_iter()
        .filter(|(kind, _)| kind.starts_with("token."))
        .collect();
    assert_eq!(
        issued.len(),
        1,
        "one lifecycle event for one applied message: {issued:?}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_an_id_gets_one_derived_from_routing_key_and_body() {
    let mut w = TestWorker::start("derived-id").await;
    let body = connected("acme", "u", "read", "coinbase", "cb-1", "raw-same");
    let once = w
        .send(Step::new("integration.connected", body.clone()))
        .await;
    let twice = w.send(Step::new("integration.connected", body)).await;
    assert_eq!(once, twice);
    assert_eq!(
        twice["tokens"][0]["created"], true,
        "the original reply, not a rotation"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_never_resurrected_by_redelivery_of_its_connection() {
    let mut w = TestWorker::start("no-resurrection").await;
    let mut connect = Step::new(
        "integration.connected",
        connected("acme", "u", "read", "coinbase", "cb-1", "raw-gone"),
    );
    connect.message_id = Some("connect-1".into());
    let id = token_id(&w.send(connect.clone()).await);
    let mut revoke = Step::new(
        "connection.removed",
        json!({"clientId": "acme", "tokenId": id}),
    );
    revoke.message_id = Some("revoke-1".into());
    assert_eq!(w.send(revoke.clone()).await["revoked"], true);
    let again = w.send(connect.clone()).await;
    assert_eq!(token_id(&again), id, "the original reply is sent again");
    assert_eq!(code(&w.resolve("acme", &id, "read").await), "revoked");
    assert_eq!(w.link("acme", "u").await["accessTokens"], json!([]));
    w.restart().await;
    w.send(connect).await;
    assert_eq!(
        w.send(revoke).await["revoked"],
        true,
        "the revocation's original reply"
    );
    assert_eq!(code(&w.resolve("acme", &id, "read").await), "revoked");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_dir_keeps_everything() {
    let mut w = TestWorker::start("restart").await;
    let kept = w
        .issue("acme", "u", "write", "kraken", "kr-1", "raw-kept")
        .await;
    let revoked = w
        .issue("acme", "u", "read", "kraken", "kr-1", "raw-revoked")
        .await;
    w.revoke("acme", &revoked).await;
    w.restart().await;
    let resolved = w.resolve("acme", &kept, "write").await;
    assert_eq!(resolved["accessToken"], "raw-kept");
    assert_eq!(code(&w.resolve("acme", &revoked, "read").await), "revoked");
    let links = w.link("acme", "u").await;
    assert_eq!(
        links["accessTokens"].as_array().map(Vec::len),
        Some(1),
        "{links}"
    );
    let again = w
        .connect(connected(
            "acme",
            "u",
            "write",
            "kraken",
            "kr-1",
            "raw-kept-2",
        ))
        .await;
    assert_eq!(token_id(&again), kept);
    w.finish().await;
}

/// Each file's path, length and hash (a readable diff when they differ).
fn fingerprint(dir: &std::path::Path) -> Vec<(std::path::PathBuf, usize, u64)> {
    use std::hash::{Hash, Hasher};
    files_under(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            (path, bytes.len(), hasher.finish())
        })
        .collect()
}

/// Runs a second `mmt-worker run` process on `w`'s namespace and data
/// directory with `key_file`, until it exits (it must be refused: one still
/// running after [`PATIENCE`] fails the test and is killed).
async fn run_another_worker(w: &TestWorker, key_file: &std::path::Path) -> std::process::Output {
    let run = tokio::process::Command::new(worker_binary())
        .arg("run")
        .arg("--namespace")
        .arg(w.ns.as_str())
        .arg("--data-dir")
        .arg(w.data_dir())
        .arg("--key-file")
        .arg(key_file)
        .env("MMT_AMQP_URL", crate::util::amqp_url())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the second worker was not refused: it kept running")
        .expect("mmt-worker runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_key_is_refused_at_start_and_the_data_is_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = TestWorker::start("wrong-key").await;
    let id = w
        .issue("acme", "u", "read", "coinbase", "cb-1", "raw-locked")
        .await;
    w.stop_worker().await;
    let before = fingerprint(&w.data_dir());
    let wrong_key = w.dir.path().join("wrong.key");
    std::fs::write(&wrong_key, format!("{}\n", "ab".repeat(32))).expect("write key");
    std::fs::set_permissions(&wrong_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = run_another_worker(&w, &wrong_key).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "exit code 3 for a key problem; stderr: {stderr}"
    );
    assert!(
        stderr.contains("the key does not match the store"),
        "{stderr}"
    );
    assert_eq!(
        fingerprint(&w.data_dir()),
        before,
        "a refused start must not write"
    );
    w.start_worker().await;
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-locked"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_on_the_same_data_directory_is_refused_and_the_first_keeps_serving() {
    let mut w = TestWorker::start("second-worker").await;
    let id = w
        .issue("acme", "u", "read", "coinbase", "cb-1", "raw-held")
        .await;
    let before = fingerprint(&w.data_dir());
    let output = run_another_worker(&w, &w.key_file()).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "a store problem; {stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert_eq!(fingerprint(&w.data_dir()), before, "the refused one wrote");
    assert_eq!(
        w.resolve("acme", &id, "read").await["accessToken"],
        "raw-held"
    );
    w.finish().await;
}

#[test]
fn a_key_file_is_created_0600_when_absent_and_refused_when_malformed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key").expect("write");
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = std::process::Command::new(worker_binary())
        .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(&bad)
        .output()
        .expect("mmt-worker runs");
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("64 hexadecimal characters"));
    let fresh = dir.path().join("keys").join("fresh.key");
    let output = std::process::Command::new(worker_binary())
        .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(&fresh)
        .output()
        .expect("mmt-worker runs");
    assert_eq!(
        output.status.code(),
        Some(5),
        "no broker on port 1: exit code 5"
    );
    let mode = std::fs::metadata(&fresh)
        .expect("key created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&fresh).expect("key").trim().len(),
        64
    );
}

#[test]
fn a_mistyped_key_file_for_an_existing_store_mints_no_key_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (key, _) = mmt_worker::store::crypto::KeyRing::load_or_create(&dir.path().join("mmt.key"))
        .expect("key");
    drop(mmt_worker::store::Store::open(&data, key).expect("a store"));
    let before = fingerprint(&data);
    let typo = dir.path().join("keys").join("mmt.kye");
    let output = std::process::Command::new(worker_binary())
        .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
        .arg(&data)
        .arg("--key-file")
        .arg(&typo)
        .output()
        .expect("mmt-worker runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "key file {} does not exist but {} already holds a store",
            typo.display(),
            data.display()
        )),
        "{stderr}"
    );
    assert!(!typo.exists(), "no key may be minted for an existing store");
    assert!(!dir.path().join("keys").exists());
    assert_eq!(fingerprint(&data), before);
}

#[test]
fn a_key_file_readable_by_group_or_others_refuses_to_start_with_exit_7() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("mmt.key");
    mmt_worker::store::crypto::KeyRing::load_or_create(&key).expect("key");
    for mode in [0o644, 0o640, 0o606] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = std::process::Command::new(worker_binary())
            .args(["run", "--amqp-url", "amqp://127.0.0.1:1/%2f", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--key-file")
            .arg(&key)
            .output()
            .expect("mmt-worker runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(7), "{stderr}");
        assert!(
            stderr.contains(&format!("key file {} has mode {mode:04o}", key.display())),
            "{stderr}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "refused before the store"
        );
    }
}
