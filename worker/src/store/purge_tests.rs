//! Physical deletion, checked on the bytes: a revoked token's wrapped data
//! key and sealed secrets are in the data directory's files after the
//! revocation and in none of them after the purge.

use mmt_shared::secret::Secret;
use std::path::Path;

use mmt_shared::wire::Scope;

use super::testing::{meta, when_unlocked};
use super::*;

/// A token's stored secret material: its wrapped data key and its sealed
/// secrets, as the store holds them.
struct Stored {
    wrapped: Vec<u8>,
    sealed: Vec<u8>,
}

fn put(store: &Store, token_id: &str, meta: &TokenMeta, raw: &str) -> Stored {
    let secrets = TokenSecrets {
        access_token: Secret::new(raw.to_owned()),
        refresh_token: Some(Secret::new(format!("{raw}-refresh"))),
    };
    store
        .write(|tx| {
            tx.put_token(token_id, meta, None, &secrets)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let Found::Live {
        wrapped, sealed, ..
    } = store.find(token_id).expect("reads")
    else {
        panic!("expected a live token");
    };
    Stored { wrapped, sealed }
}

fn revoke(store: &Store, token_id: &str, meta: &TokenMeta) {
    store
        .write(|tx| {
            tx.revoke(token_id, meta, 2_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
}

/// Every file under `dir` (recursively) that holds `needle`, read raw.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if holds(&std::fs::read(&path).expect("readable file"), needle) {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `bytes` holds `needle`. A journal is allocated ahead (32 MiB
/// of zeros): the zeros after its last written byte are skipped, all but
/// the needle's length of them.
fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    // Whole blocks of zeros, compared a block at a time (a test build is
    // not optimized: byte by byte, 32 MiB take seconds).
    let zero_blocks = bytes
        .rchunks(ZEROS.len())
        .take_while(|block| *block == &ZEROS[..block.len()])
        .count();
    let written = bytes.len().saturating_sub(zero_blocks * ZEROS.len());
    let end = bytes.len().min(written + needle.len());
    bytes[..end].windows(needle.len()).any(|w| w == needle)
}

/// The files holding either part of `stored`.
fn holding(dir: &Path, stored: &Stored) -> Vec<std::path::PathBuf> {
    let mut out = files_holding(dir, &stored.wrapped);
    out.extend(files_holding(dir, &stored.sealed));
    out
}

fn open(data: &Path, key_file: &Path) -> Store {
    when_unlocked(|| Store::open(data, KeyRing::load_or_create(key_file).expect("key").0))
        .expect("opens")
}

#[tokio::test]
async fn a_revoked_tokens_wrapped_key_and_sealed_secrets_leave_every_file_after_the_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store = open(&data, &dir.path().join("key"));
    let (m1, m2) = (
        meta("acme", "u1", Scope::Read),
        meta("acme", "u2", Scope::Read),
    );
    // One token whose old version will be in the journal only, one whose
    // old version will have been compacted into a segment first.
    let journal_only = put(&store, "tok_journal", &m1, "raw-journal-only-5f1c");
    let in_segment = put(&store, "tok_segment", &m2, "raw-in-segment-9a7e");
    store.flush().await.expect("flushes");
    for stored in [&journal_only, &in_segment] {
        assert!(
            !holding(&data, stored).is_empty(),
            "the control: a live token's secret material is in the files"
        );
    }
    assert!(store.purge().expect("purges").is_none(), "nothing pending");

    revoke(&store, "tok_segment", &m2);
    store.flush().await.expect("flushes");
    assert!(
        !holding(&data, &in_segment).is_empty(),
        "a revocation alone leaves the old version in the files"
    );
    let purge = store.purge().expect("purges").expect("a purge was pending");
    assert!(purge.segments >= 1, "{purge:?}");
    assert_eq!(
        holding(&data, &in_segment),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        !holding(&data, &journal_only).is_empty(),
        "a live token's secret material stays (now in a segment)"
    );

    revoke(&store, "tok_journal", &m1);
    store.flush().await.expect("flushes");
    assert!(!holding(&data, &journal_only).is_empty());
    store.purge().expect("purges").expect("a purge was pending");
    assert_eq!(
        holding(&data, &journal_only),
        Vec::<std::path::PathBuf>::new()
    );
    let status = store.deletions().expect("the embedded store").status();
    assert!(!status.pending);
    assert_eq!((status.runs, status.failed), (2, 0));
    assert!(matches!(
        store.find("tok_journal").expect("reads"),
        Found::Revoked(_)
    ));
}

#[tokio::test]
async fn a_revocation_not_purged_before_a_stop_is_purged_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let key_file = dir.path().join("key");
    let store = open(&data, &key_file);
    let m = meta("acme", "u1", Scope::Write);
    let stored = put(&store, "tok_1", &m, "raw-across-a-restart-77d2");
    revoke(&store, "tok_1", &m);
    store.flush().await.expect("flushes");
    drop(store);

    let store = open(&data, &key_file);
    let deletions = store.deletions().expect("the embedded store");
    assert!(deletions.status().pending, "the purge mark survived");
    assert!(!holding(&data, &stored).is_empty());
    store.purge().expect("purges").expect("a purge was pending");
    assert_eq!(holding(&data, &stored), Vec::<std::path::PathBuf>::new());
    drop(store);

    let store = open(&data, &key_file);
    let deletions = store.deletions().expect("the embedded store");
    assert!(!deletions.status().pending, "the mark left with the purge");
    assert!(store.purge().expect("purges").is_none());
}

#[tokio::test]
async fn a_purge_is_due_once_a_deletion_commits_and_not_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("data"), &dir.path().join("key"));
    let deletions = store.deletions().expect("the embedded store");
    let m = meta("acme", "u1", Scope::Read);
    put(&store, "tok_1", &m, "raw-1");
    assert!(!deletions.status().pending, "a put deletes nothing");
    let pending = tokio::time::timeout(std::time::Duration::from_millis(50), deletions.pending());
    assert!(pending.await.is_err(), "nothing to wait for yet");
    let before = std::time::Instant::now();
    revoke(&store, "tok_1", &m);
    let since = deletions.pending().await;
    assert!(since >= before, "noted when it committed");
}

#[tokio::test]
async fn an_upstream_jobs_sealed_tokens_stay_while_it_runs_and_leave_after_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store = open(&data, &dir.path().join("key"));
    let m = meta("acme", "u1", Scope::Read);
    let token = put(&store, "tok_1", &m, "raw-upstream-3c9b");
    let secrets = TokenSecrets {
        access_token: Secret::new("raw-upstream-3c9b".into()),
        refresh_token: None,
    };
    store
        .write(|tx| {
            tx.revoke("tok_1", &m, 2_000)?;
            tx.start_upstream_job("tok_1", &m, &secrets, 2_000)?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    let job = match store.upstream_jobs(1).expect("reads").pop() {
        Some((_, Ok(job))) => Stored {
            wrapped: job.wrapped,
            sealed: job.sealed,
        },
        _ => panic!("expected the job"),
    };
    store
        .purge()
        .expect("purges")
        .expect("the revocation was pending");
    assert_eq!(holding(&data, &token), Vec::<std::path::PathBuf>::new());
    assert!(
        !holding(&data, &job).is_empty(),
        "the job keeps the tokens, sealed, until the provider answers"
    );
    let deletions = store.deletions().expect("the embedded store");
    assert!(!deletions.status().pending);

    store
        .write(|tx| {
            tx.end_upstream_job("tok_1");
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    assert!(deletions.status().pending, "the job's end is a deletion");
    store
        .purge()
        .expect("purges")
        .expect("the job's end was pending");
    assert_eq!(holding(&data, &job), Vec::<std::path::PathBuf>::new());
}
