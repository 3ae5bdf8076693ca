//! Data written before key rings still opens (CONTRACT.md §11: key id 0),
//! against a data directory written by the worker just before them
//! (`fixtures/stores/v2`): every live token's secrets open, the audit
//! chain verifies, and after a rotation and its rewrap the first key's line
//! can go: the store, its tokens and its audit chain (old lines and new)
//! need only the new key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::copy::{Row, Table};
use super::testing::when_unlocked;
use super::*;
use crate::ops::audit::{Source, verify};

/// A copy of the fixture in a fresh directory: (tempdir, data, key file).
fn v2_copy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stores/v2");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture.join("data"), &dir.path().join("data"));
    let key = dir.path().join("mmt.key");
    std::fs::copy(fixture.join("mmt.key"), &key).expect("copies");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let data = dir.path().join("data");
    (dir, data, key)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("lists") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies");
        }
    }
}

/// Opens every live token's secrets; gives how many.
fn open_every_token(store: &Store) -> usize {
    let page = store.export(Table::Tokens, None, 10_000).expect("exports");
    let mut live = 0;
    for (_, row) in page.0 {
        let Row::Token { token_id, .. } = row else {
            continue;
        };
        if let Found::Live {
            meta,
            sealed,
            wrapped,
        } = store.find(&token_id).expect("reads")
        {
            store
                .open_secrets(&token_id, &meta, &sealed, &wrapped)
                .expect("its secrets open");
            live += 1;
        }
    }
    live
}

fn audit_verifies(data: &Path, ring: &KeyRing) -> u64 {
    let key = keycheck::audit_key(data, ring).expect("the audit key");
    verify(&Source::Dir(data), &key)
        .expect("the chain verifies")
        .lines
}

#[test]
fn a_store_written_before_key_rings_opens_rotates_and_retires_its_first_key() {
    let (_dir, data, key_file) = v2_copy();
    let ring = KeyRing::load(&key_file, &data).expect("a v1 key file is key 0");
    let lines_before = audit_verifies(&data, &ring);
    assert!(lines_before > 0);

    let store = Store::open(&data, KeyRing::load(&key_file, &data).expect("key")).expect("opens");
    assert!(data.join("keyring").exists() && !data.join("key-check").exists());
    let live = open_every_token(&store);
    assert!(live > 0, "the fixture holds live tokens");
    let jobs = store.upstream_jobs(100).expect("jobs").len() as u64;
    assert_eq!(
        store.count_wrapped().expect("counts"),
        [(0, live as u64 + jobs)].into()
    );

    let rotated = Arc::new(store.ring().rotated());
    store.adopt_ring(rotated.clone()).expect("adopts");
    let mut after: Option<String> = None;
    loop {
        let page = store.rewrap_page(after.as_deref(), 3).expect("a page");
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    store.rewrap_jobs(100).expect("jobs");
    assert_eq!(
        store.count_wrapped().expect("counts"),
        [(1, live as u64 + jobs)].into()
    );
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(store.flush())
        .expect("flushes");
    drop(store);

    let only_new = rotated.without(0);
    assert!(audit_verifies(&data, &only_new) > lines_before);
    let store =
        when_unlocked(|| Store::open(&data, rotated.without(0))).expect("opens without key 0");
    assert_eq!(open_every_token(&store), live);
}
