//! Physical deletion (CONTRACT.md §13): after `connection.removed`, the
//! revoked token's wrapped data key and sealed secrets are gone from every
//! file of the data directory within the worker's `--purge-within-secs`,
//! checked on the raw files with the real `mmt-worker` binary.
//!
//! The bytes looked for are the token's record as stored, which only the
//! store's API can read, and the running worker holds the store: the test
//! stops the worker after the connection, reads the record, starts the
//! worker again and revokes. (The raw access token would prove nothing: it
//! is never on disk in the clear.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mmt_worker::store::crypto::KeyRing;
use mmt_worker::store::{Found, Store};
use serde_json::Value;

use crate::refresh_faults::Child;
use crate::util::{PATIENCE, TestWorker, files_under, holds};

/// The bound the worker runs with here.
const WITHIN: Duration = Duration::from_secs(2);

/// `mmt-worker run` with the short bound, as a child process.
async fn start(w: &TestWorker, run: u32) -> Child {
    let mut command = w.run_command();
    command
        .arg("--purge-within-secs")
        .arg(WITHIN.as_secs().to_string());
    Child::spawn(command, w.dir.path().join(format!("worker-{run}.log"))).await
}

/// A token's wrapped data key and sealed secrets, read through the store's
/// API from the stopped worker's data directory.
fn stored_secret_material(w: &TestWorker, token_id: &str) -> [Vec<u8>; 2] {
    let key = KeyRing::load(&w.key_file(), &w.data_dir()).expect("the worker's key");
    let store = Store::open(&w.data_dir(), key).expect("the stopped worker's store opens");
    let Found::Live {
        wrapped, sealed, ..
    } = store.find(token_id).expect("reads")
    else {
        panic!("{token_id} is not live");
    };
    [wrapped, sealed]
}

/// The files under `dir` that hold any of `needles`, read raw.
fn files_holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|(_, bytes)| needles.iter().any(|needle| holds(bytes, needle)))
        .map(|(path, _)| path)
        .collect()
}

/// Waits for a `worker.stats` whose purge figures satisfy `done`.
async fn stats_until(w: &mut TestWorker, done: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let stats = w.event("worker.stats").await;
            if done(&stats["purge"]) {
                return stats;
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the purge's figures in worker.stats in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tokens_wrapped_key_and_sealed_secrets_leave_every_file_within_the_bound() {
    let mut w = TestWorker::start_idle("physical-deletion").await;
    let worker = start(&w, 1).await;
    let raw = format!("raw-physical-deletion-{}", uuid::Uuid::new_v4().simple());
    let id = w
        .issue("acme", "u-1", "read", "coinbase", "cb-1", &raw)
        .await;
    assert_eq!(worker.terminate().await, Some(0));
    let material = stored_secret_material(&w, &id);
    assert!(
        !files_holding(&w.data_dir(), &material).is_empty(),
        "the control: a live token's wrapped key and sealed secrets are in the files"
    );

    let worker = start(&w, 2).await;
    let revoking = Instant::now();
    assert_eq!(w.revoke("acme", &id).await["revoked"], true);
    // The first stats of this run with a purge done: this worker has seen
    // one deletion, the revocation, so that purge covered it.
    let stats = stats_until(&mut w, |purge| {
        purge["runs"].as_u64() >= Some(1) && purge["pending"] == false
    })
    .await;
    let seen_after = revoking.elapsed();
    let lag_ms = stats["purge"]["lastLagMs"]
        .as_u64()
        .expect("the last purge's lag");
    assert!(
        lag_ms <= u64::try_from(WITHIN.as_millis()).unwrap_or(u64::MAX),
        "purged {lag_ms} ms after the revocation, beyond the {WITHIN:?} bound: {stats}"
    );
    assert_eq!(
        files_holding(&w.data_dir(), &material),
        Vec::<PathBuf>::new(),
        "while the worker runs"
    );
    eprintln!(
        "physical deletion: purged {lag_ms} ms after the revocation (bound {} ms; seen in worker.stats after {} ms); purge took {} ms",
        WITHIN.as_millis(),
        seen_after.as_millis(),
        stats["purge"]["lastMs"]
    );
    assert_eq!(worker.terminate().await, Some(0));
    assert_eq!(
        files_holding(&w.data_dir(), &material),
        Vec::<PathBuf>::new(),
        "after a clean stop"
    );
    w.finish().await;
}
