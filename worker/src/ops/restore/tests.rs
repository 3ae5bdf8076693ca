//! A backup restores into a fresh data directory, held until released, or
//! not at all: a wrong key, a damaged file, a destination that holds
//! something and a stopped restore leave no data directory behind.

use std::path::{Path, PathBuf};

use mmt_shared::secret::Secret;
use mmt_shared::wire::{MessageKind, Scope};

use super::*;
use crate::ops::backup::{TakeError, take};
use crate::ops::release::{self, Revocations};
use crate::rules::lifecycle::{self, ConnectInput, TokenMeta};
use crate::store::TokenSecrets;

const TOKENS: usize = 2_500;

fn meta(user: &str) -> TokenMeta {
    let input = ConnectInput {
        client_id: "acme",
        end_user_id: user,
        broker_type: "coinbase",
        broker_name: "Coinbase",
        account_id: "cb-1",
        account_name: "Main",
        scope: Scope::Read,
        expires_in_seconds: Some(3_600),
        refresh_expires_in_seconds: None,
        has_refresh_token: true,
        at: 1_000,
    };
    lifecycle::connect(None, &input, 1_000, String::new).meta
}

fn secrets(i: usize) -> TokenSecrets {
    TokenSecrets {
        access_token: Secret::new(format!("raw-access-{i}")),
        refresh_token: Some(Secret::new(format!("raw-refresh-{i}"))),
    }
}

fn token_id(i: usize) -> String {
    format!("tok_{i:05}")
}

/// A deployment: its key file and a stopped store of `TOKENS` tokens, the
/// eighth revoked.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        let this = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        KeyRing::load_or_create(&this.key_file()).expect("key");
        let store = this.open(&this.data());
        for chunk in (0..TOKENS).collect::<Vec<_>>().chunks(1_000) {
            store
                .write(|tx| {
                    for i in chunk {
                        let id = token_id(*i);
                        tx.put_token(&id, &meta(&format!("u{i}")), None, &secrets(*i))?;
                        tx.record_processed(
                            MessageKind::IntegrationConnected,
                            &format!("m-{i}"),
                            br#"{"ok":true}"#,
                        )?;
                    }
                    Ok(Decision::Commit(()))
                })
                .expect("fills");
        }
        this.revoke(&store, &token_id(7));
        this
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("mmt.key")
    }

    fn key(&self) -> KeyRing {
        KeyRing::load(&self.key_file(), &self.data()).expect("key")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn open(&self, dir: &Path) -> Store {
        Store::open(dir, self.key()).expect("opens")
    }

    fn revoke(&self, store: &Store, token_id: &str) {
        store
            .write(|tx| {
                if let Found::Live { meta, .. } = tx.find(token_id)? {
                    tx.revoke(token_id, &meta, 2_000)?;
                }
                Ok(Decision::Commit(()))
            })
            .expect("revokes");
    }

    /// A backup of the stopped store.
    fn backup(&self, name: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        let taken = take(&self.data(), &file, self.key(), &mut |_| {}).expect("backs up");
        assert!(!taken.from_worker);
        assert_eq!(taken.totals, [TOKENS as u64, TOKENS as u64, 0, 0]);
        file
    }

    fn restore(&self, file: &Path, into: &Path) -> Result<Done, RestoreError> {
        restore(file, into, &self.key_file(), 100, &mut |_| true)
    }

    /// Every entry of the directory that holds the deployment.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("reads")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn secrets_of(store: &Store, token_id: &str) -> Option<String> {
    match store.find(token_id).expect("reads") {
        Found::Live {
            meta,
            sealed,
            wrapped,
        } => Some(
            store
                .open_secrets(token_id, &meta, &sealed, &wrapped)
                .expect("opens with the key")
                .access_token
                .expose()
                .to_owned(),
        ),
        _ => None,
    }
}

#[test]
fn a_restore_holds_every_token_opening_with_the_key_and_is_held_until_released() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let into = d.dir.path().join("restored");
    let done = d.restore(&file, &into).expect("restores");
    assert_eq!(done.totals, [TOKENS as u64, TOKENS as u64, 0, 0]);
    assert_eq!(done.header.tokens(), TOKENS as u64);
    assert_eq!(done.opened, 100);
    assert_eq!(done.mark.backup_taken_at, done.header.taken_at);
    assert!(matches!(
        Store::open(&into, d.key()),
        Err(StoreError::Restored { .. })
    ));
    release::release(&into, &d.key_file(), &Revocations::default()).expect("releases");
    let restored = d.open(&into);
    let source = d.open(&d.data());
    assert_eq!(
        counts_of(&restored.counts().expect("counts")),
        counts_of(&source.counts().expect("counts"))
    );
    for i in 0..TOKENS {
        let id = token_id(i);
        assert_eq!(secrets_of(&restored, &id), secrets_of(&source, &id), "{id}");
    }
    assert_eq!(secrets_of(&restored, &token_id(7)), None);
    assert_eq!(
        secrets_of(&restored, &token_id(8)).as_deref(),
        Some("raw-access-8")
    );
    assert_eq!(d.entries(), ["backup.mmt", "data", "mmt.key", "restored"]);
}

#[test]
fn a_release_revokes_the_tokens_revoked_after_the_backup() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    // After the backup: three revocations the backup cannot know of.
    let source = d.open(&d.data());
    for i in [10, 11, 12] {
        d.revoke(&source, &token_id(i));
    }
    let (revoked, issued) = (
        source.audit_key().token_ref(&token_id(12)),
        source.audit_key().token_ref(&token_id(13)),
    );
    drop(source);
    let into = d.dir.path().join("restored");
    d.restore(&file, &into).expect("restores");
    let events = d.dir.path().join("revoked.jsonl");
    // An event, a bare tokenId, a token minted after the backup, and two
    // lines of the lost store's audit log (tokens named by reference).
    std::fs::write(
        &events,
        format!(
            "{{\"kind\":\"token.revoked\",\"tokenId\":\"{}\",\"clientId\":\"acme\"}}\n{}\ntok_minted_later\n\
             {{\"at\":\"x\",\"seq\":4,\"kind\":\"connection.removed\",\"clientId\":\"acme\",\"tokenId\":\"{revoked}\",\"outcome\":\"token.revoked\",\"prev\":\"y\"}}\n\
             {{\"at\":\"x\",\"seq\":5,\"kind\":\"integration.connected\",\"clientId\":\"acme\",\"tokenId\":\"{issued}\",\"outcome\":\"token.issued\",\"prev\":\"z\"}}\n",
            token_id(10),
            token_id(11)
        ),
    )
    .expect("writes");
    let revocations = release::revocations(&[events]).expect("reads");
    let released = release::release(&into, &d.key_file(), &revocations).expect("releases");
    assert_eq!(
        (
            released.revoked,
            released.already_revoked,
            released.not_found
        ),
        (3, 0, 1)
    );
    let restored = d.open(&into);
    for i in [7, 10, 11, 12] {
        assert!(
            matches!(restored.find(&token_id(i)), Ok(Found::Revoked(_))),
            "{i}"
        );
    }
    assert_eq!(
        secrets_of(&restored, &token_id(13)).as_deref(),
        Some("raw-access-13")
    );
    drop(restored);
    let audit = std::fs::read_to_string(into.join("audit.jsonl")).expect("audited");
    assert_eq!(
        audit.matches(r#""kind":"store.release""#).count(),
        3,
        "{audit}"
    );
    assert!(!audit.contains(&token_id(10)), "tokenIds by reference only");
    assert!(matches!(
        release::release(&into, &d.key_file(), &revocations),
        Err(release::ReleaseError::Store(StoreError::NotRestored { .. }))
    ));
}

#[test]
fn a_wrong_key_is_refused_before_anything_is_written() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let other = d.dir.path().join("other.key");
    KeyRing::load_or_create(&other).expect("key");
    let into = d.dir.path().join("restored");
    let refused = restore(&file, &into, &other, 100, &mut |_| true);
    assert!(
        matches!(refused, Err(RestoreError::Backup(BackupError::WrongKey))),
        "{refused:?}"
    );
    assert_eq!(d.entries(), ["backup.mmt", "data", "mmt.key", "other.key"]);
}

#[test]
fn a_flipped_byte_is_refused_and_leaves_no_data_directory() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let mut bytes = std::fs::read(&file).expect("reads");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, &bytes).expect("writes");
    let refused = d.restore(&file, &d.dir.path().join("restored"));
    assert!(
        matches!(
            refused,
            Err(RestoreError::Backup(BackupError::Damaged { .. }))
        ),
        "{refused:?}"
    );
    let cut = d.dir.path().join("cut.mmt");
    std::fs::write(&cut, &bytes[..middle]).expect("writes");
    let refused = d.restore(&cut, &d.dir.path().join("restored"));
    assert!(
        matches!(refused, Err(RestoreError::Backup(BackupError::Truncated))),
        "{refused:?}"
    );
    assert_eq!(d.entries(), ["backup.mmt", "cut.mmt", "data", "mmt.key"]);
}

#[test]
fn a_destination_that_holds_anything_is_refused_and_left_untouched() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let into = d.dir.path().join("restored");
    std::fs::create_dir(&into).expect("mkdir");
    std::fs::write(into.join("notes"), "mine").expect("writes");
    let refused = d.restore(&file, &into);
    assert!(
        matches!(refused, Err(RestoreError::NotEmpty { .. })),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("notes")).expect("reads"),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&into).expect("reads").count(), 1);
    assert!(matches!(
        d.restore(&file, &d.data()),
        Err(RestoreError::NotEmpty { .. })
    ));
    // An empty directory is taken.
    std::fs::remove_file(into.join("notes")).expect("removes");
    d.restore(&file, &into)
        .expect("restores into an empty directory");
}

#[test]
fn a_restore_stopped_half_way_leaves_no_data_directory() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let into = d.dir.path().join("restored");
    let mut pages = 0;
    let stopped = restore(&file, &into, &d.key_file(), 100, &mut |progress| {
        pages += 1;
        assert!(progress.done > 0);
        pages < 2
    });
    assert!(matches!(stopped, Err(RestoreError::Stopped)), "{stopped:?}");
    assert_eq!(pages, 2);
    assert_eq!(d.entries(), ["backup.mmt", "data", "mmt.key"]);
}

#[test]
fn what_a_killed_restore_left_is_removed_by_the_next_and_a_running_one_is_not() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    let into = d.dir.path().join("restored");
    let left = d.dir.path().join(".restored.restore-0123456789ab");
    std::fs::create_dir(&left).expect("mkdir");
    std::fs::write(left.join("lock"), "").expect("writes");
    let running = std::fs::File::options()
        .write(true)
        .open(left.join("lock"))
        .expect("opens");
    running.lock().expect("locks");
    assert!(matches!(
        d.restore(&file, &into),
        Err(RestoreError::Busy { .. })
    ));
    drop(running);
    d.restore(&file, &into).expect("restores");
    assert_eq!(d.entries(), ["backup.mmt", "data", "mmt.key", "restored"]);
}

#[test]
fn a_backup_never_replaces_a_file_and_a_held_store_without_a_socket_is_named() {
    let d = Deployment::new();
    let file = d.backup("backup.mmt");
    assert!(matches!(
        take(&d.data(), &file, d.key(), &mut |_| {}),
        Err(TakeError::Exists { .. })
    ));
    let held = d.open(&d.data());
    let refused = take(
        &d.data(),
        &d.dir.path().join("b2.mmt"),
        d.key(),
        &mut |_| {},
    );
    assert!(
        matches!(refused, Err(TakeError::Unanswered { .. })),
        "{refused:?}"
    );
    drop(held);
    assert_eq!(d.entries(), ["backup.mmt", "data", "mmt.key"]);
}
