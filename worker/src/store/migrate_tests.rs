//! The move from sled to fjall and the v1 -> v2 migration, against a data
//! directory written by the v1 worker on sled (`fixtures/stores/v1`: the v1
//! `mmt-worker run` fed every fixture message, revocations and expiries
//! included, and its test-only key).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mmt_shared::wire::Scope;

use super::kv::Kv;
use super::testing::{self, when_unlocked};
use super::*;

const UPHOLD_ACCESS: &str = "upat_VXBob2xkQ2FyZFVTRF9yZWFkX2FjY2Vzcw";

/// A copy of the v1 fixture in a fresh directory: (tempdir, data, key file).
fn v1_copy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stores/v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    for name in ["conf", "db", "key-check"] {
        std::fs::copy(fixture.join("data").join(name), data.join(name)).expect("copies");
    }
    let key = dir.path().join("mmt.key");
    std::fs::copy(fixture.join("mmt.key"), &key).expect("copies");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, data, key)
}

fn key(path: &Path) -> KeyRing {
    KeyRing::load_or_create(path).expect("key").0
}

fn v1_keys(data: &Path) -> (usize, usize) {
    let db = when_unlocked(|| sled::open(data)).expect("opens");
    (
        db.scan_prefix([DATA_KEY]).count(),
        db.scan_prefix([TOMBSTONE]).count(),
    )
}

/// The v1 processed records: ((kind, message id), reply bytes).
fn v1_replies(data: &Path) -> Vec<((MessageKind, String), Vec<u8>)> {
    let db = when_unlocked(|| sled::open(data)).expect("opens");
    db.scan_prefix([PROCESSED_V1])
        .map(|entry| {
            let (key, reply) = entry.expect("reads");
            let rest = &key[1..];
            let len = u32::from_be_bytes(rest[..4].try_into().expect("length")) as usize;
            let kind = match &rest[4..4 + len] {
                b"integration.connected" => MessageKind::IntegrationConnected,
                b"connection.removed" => MessageKind::ConnectionRemoved,
                other => panic!("unexpected kind {other:?}"),
            };
            let id = String::from_utf8(rest[4 + len..].to_vec()).expect("utf-8");
            ((kind, id), reply.to_vec())
        })
        .collect()
}

/// Every v1 reply comes back byte for byte from the migrated store.
fn check_replies(store: &Store, replies: &[((MessageKind, String), Vec<u8>)]) {
    for ((kind, id), reply) in replies {
        assert_eq!(
            store.processed(*kind, id).expect("reads").as_deref(),
            Some(reply.as_slice()),
            "{id}"
        );
    }
    assert!(store.kv().scan_prefix([PROCESSED_V1]).next().is_none());
}

/// Everything the migrated store holds, checked: every live token opens,
/// every count matches the records, no v1 key is left.
fn check_migrated(store: &Store) -> (usize, usize) {
    let page = store
        .list_tokens(None, usize::MAX, usize::MAX, &|_, _| true)
        .expect("lists");
    let (mut live, mut revoked, mut uphold) = (0, 0, false);
    for (token_id, listed) in &page.tokens {
        match (listed, store.find(token_id).expect("reads")) {
            (
                Listed::Live(_),
                Found::Live {
                    meta,
                    sealed,
                    wrapped,
                },
            ) => {
                let secrets = store
                    .open_secrets(token_id, &meta, &sealed, &wrapped)
                    .expect("a migrated token opens");
                uphold |= secrets.access_token.expose() == UPHOLD_ACCESS;
                live += 1;
            }
            (Listed::Revoked(_), Found::Revoked(_)) => revoked += 1,
            _ => panic!("{token_id}: the listing and find disagree"),
        }
    }
    assert!(uphold, "the Uphold fixture token must come through");
    let counted: u64 = store.counts().expect("counts").iter().map(|(_, n)| n).sum();
    assert_eq!(counted as usize, live + revoked);
    assert!(store.kv().scan_prefix([DATA_KEY]).next().is_none());
    assert!(store.kv().scan_prefix([TOMBSTONE]).next().is_none());
    assert_eq!(
        store
            .kv()
            .get(migrate::FORMAT_KEY)
            .expect("reads")
            .as_deref(),
        Some(&[migrate::FORMAT][..])
    );
    (live, revoked)
}

#[test]
fn a_v1_directory_opens_migrated_with_every_token_and_tombstone() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    let replies = v1_replies(&data);
    assert!(wrapped >= 5 && tombstones >= 1, "{wrapped} {tombstones}");
    assert!(replies.iter().any(|((_, id), _)| id == "fx-uphold-read-1"));
    let store = when_unlocked(|| Store::open(&data, key(&key_file))).expect("a v1 store opens");
    assert_eq!(check_migrated(&store), (wrapped, tombstones));
    check_replies(&store, &replies);
    drop(store);
    let again = when_unlocked(|| Store::open(&data, key(&key_file))).expect("reopens");
    assert_eq!(check_migrated(&again), (wrapped, tombstones));
    check_replies(&again, &replies);
}

/// sled's files left in `data`.
fn sled_files_in(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data)
        .expect("lists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "conf" || n == "db" || n == "blobs" || n.starts_with("snap."))
        .collect();
    names.sort();
    names
}

#[test]
fn a_sled_directory_is_moved_into_fjall_and_its_files_removed() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    drop(when_unlocked(|| Store::open(&data, key(&key_file))).expect("opens"));
    assert!(data.join(kv::DIR).is_dir());
    assert!(!data.join("fjall.import").exists());
    assert_eq!(sled_files_in(&data), Vec::<String>::new());
    let store = Store::open(&data, key(&key_file)).expect("reopens without sled");
    assert_eq!(check_migrated(&store), (wrapped, tombstones));
}

#[test]
fn an_import_killed_half_way_starts_again_from_sleds_untouched_files() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    let replies = v1_replies(&data);
    let _lock = kv::lock(&data).expect("locks");
    let (n, done) = when_unlocked(|| from_sled::import(&data, 8, 4)).expect("imports");
    assert_eq!((n, done), (4, false));
    drop(_lock);
    assert!(data.join("fjall.import").is_dir());
    assert!(!data.join(kv::DIR).exists());
    let sled = sled_files_in(&data);
    assert!(
        sled.iter().any(|n| n == "db") && sled.iter().any(|n| n == "conf"),
        "{sled:?}"
    );
    let store = when_unlocked(|| Store::open(&data, key(&key_file))).expect("imports again");
    assert_eq!(check_migrated(&store), (wrapped, tombstones));
    check_replies(&store, &replies);
    assert!(!data.join("fjall.import").exists());
}

#[test]
fn sled_files_left_beside_a_finished_import_are_removed_and_not_read_again() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    let store = when_unlocked(|| Store::open(&data, key(&key_file))).expect("opens");
    store
        .write(|change| {
            change.put_token(
                "tok_after",
                &testing::meta("acme", "later", Scope::Read),
                None,
                &testing::secrets(),
            )?;
            Ok(Decision::Commit(()))
        })
        .expect("commits");
    drop(store);
    // A kill between the rename and the removal of sled's files leaves them.
    let (_fixture_dir, fixture, _) = v1_copy();
    for name in ["conf", "db"] {
        std::fs::copy(fixture.join(name), data.join(name)).expect("copies");
    }
    let store = Store::open(&data, key(&key_file)).expect("opens");
    assert_eq!(sled_files_in(&data), Vec::<String>::new());
    assert!(matches!(
        store.find("tok_after").expect("reads"),
        Found::Live { .. }
    ));
    assert_eq!(check_migrated(&store), (wrapped + 1, tombstones));
}

#[test]
fn a_migration_killed_half_way_resumes_at_the_next_open() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    let replies = v1_replies(&data);
    {
        let _lock = kv::lock(&data).expect("locks");
        when_unlocked(|| from_sled::import(&data, 8, usize::MAX)).expect("imports");
        let kv = Kv::open(&data.join(kv::DIR), 8).expect("opens");
        let (n, done) = migrate::to_current(&kv, &key(&key_file).derive_macs(0).expect("key 0"), 3)
            .expect("migrates");
        assert_eq!((n, done), (3, false));
        kv.flush_blocking().expect("flushes");
        let left = kv.scan_prefix([DATA_KEY]).count() + kv.scan_prefix([TOMBSTONE]).count();
        assert_eq!(left, wrapped + tombstones - 3);
    }
    let store = Store::open(&data, key(&key_file)).expect("resumes");
    assert_eq!(check_migrated(&store), (wrapped, tombstones));
    check_replies(&store, &replies);
}

/// A random key is refused for `data`, and sled's `db` file is unchanged.
fn refuses_a_wrong_key(data: &Path) {
    let before = std::fs::read(data.join("db")).expect("reads");
    let wrong = KeyRing::generate().expect("random key");
    assert!(matches!(
        Store::open(data, wrong),
        Err(StoreError::WrongKey { .. })
    ));
    assert_eq!(std::fs::read(data.join("db")).expect("reads"), before);
}

#[test]
fn a_wrong_key_refuses_a_v1_directory_before_anything_is_written() {
    let (_dir, data, key_file) = v1_copy();
    refuses_a_wrong_key(&data);
    assert!(!data.join(kv::DIR).exists() && !data.join("fjall.import").exists());
    assert!(!data.join("lock").exists());
    assert!(when_unlocked(|| Store::open(&data, key(&key_file))).is_ok());
}

#[test]
fn a_wrong_key_after_a_killed_import_is_refused_and_the_right_one_finishes_it() {
    let (_dir, data, key_file) = v1_copy();
    let (wrapped, tombstones) = v1_keys(&data);
    {
        let _lock = kv::lock(&data).expect("locks");
        when_unlocked(|| from_sled::import(&data, 8, 4)).expect("imports");
    }
    refuses_a_wrong_key(&data);
    assert!(data.join("fjall.import").is_dir() && !data.join(kv::DIR).exists());
    let store = when_unlocked(|| Store::open(&data, key(&key_file))).expect("finishes");
    assert_eq!(check_migrated(&store), (wrapped, tombstones));
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, key_file) = (dir.path().join("data"), dir.path().join("mmt.key"));
    drop(Store::open(&data, key(&key_file)).expect("opens"));
    {
        let kv = Kv::open(&data.join(kv::DIR), 8).expect("opens");
        let mut batch = kv.batch();
        batch.insert(migrate::FORMAT_KEY, [9]);
        kv.apply(batch).expect("writes");
        kv.flush_blocking().expect("flushes");
    }
    assert!(matches!(
        Store::open(&data, key(&key_file)),
        Err(StoreError::Format { found: 9 })
    ));
}
