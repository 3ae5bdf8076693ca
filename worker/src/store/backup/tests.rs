//! A backup holds the store as it was at its moment, reads back into a
//! fresh store row for row, and refuses a wrong key, a flipped byte, a cut
//! and an altered file.

use mmt_shared::secret::Secret;
use mmt_shared::wire::{MessageKind, Scope};

use super::*;
use crate::rules::refresh::RefreshRecord;
use crate::store::copy::Row;
use crate::store::crypto::{KeyRing, Macs};
use crate::store::testing::{meta, secrets};
use crate::store::{Decision, Found, TokenSecrets};

fn key(dir: &std::path::Path) -> KeyRing {
    KeyRing::load_or_create(&dir.join("mmt.key"))
        .expect("key")
        .0
}

fn store(dir: &std::path::Path, name: &str) -> Store {
    Store::open(&dir.join(name), key(dir)).expect("opens")
}

fn secrets_of(i: usize) -> TokenSecrets {
    TokenSecrets {
        access_token: Secret::new(format!("raw-access-{i}")),
        refresh_token: Some(Secret::new(format!("raw-refresh-{i}"))),
    }
}

/// `n` live tokens (every other one with a v1 expiry entry, every fifth
/// one owned by the refresh engine), a processed reply each, and the third
/// revoked with an upstream job.
fn fill(store: &Store, n: usize) {
    store
        .write(|tx| {
            for i in 0..n {
                let mut m = meta("acme", &format!("u{i}"), Scope::Read);
                if i % 2 == 1 {
                    m.expires_at = None;
                }
                let id = format!("tok_{i:04}");
                tx.put_token(&id, &m, None, &secrets_of(i))?;
                tx.record_processed(
                    MessageKind::IntegrationConnected,
                    &format!("m-{i}"),
                    br#"{"ok":true}"#,
                )?;
                if i % 5 == 0 {
                    let record = RefreshRecord {
                        due_at: 30_000 + i as i64,
                        ..RefreshRecord::default()
                    };
                    tx.put_refresh(&id, None, &record, m.expires_at)?;
                }
            }
            Ok(Decision::Commit(()))
        })
        .expect("fills");
    if n > 2 {
        store
            .write(|tx| {
                let Found::Live { meta, .. } = tx.find("tok_0002")? else {
                    panic!("tok_0002 is live");
                };
                tx.revoke("tok_0002", &meta, 5_000)?;
                tx.start_upstream_job("tok_0002", &meta, &secrets(), 5_000)?;
                Ok(Decision::Commit(()))
            })
            .expect("revokes");
    }
}

/// Every row of `store`, as text, in table order.
fn everything(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let (rows, _) = store.export(table, None, 100_000).expect("exports");
        out.extend(rows.into_iter().map(|(_, row)| text(&row)));
    }
    out
}

fn text(row: &Row) -> String {
    match row {
        Row::Token {
            token_id,
            record,
            expiry_entry,
        } => format!("t {token_id} {} {expiry_entry:?}", hex::encode(record)),
        Row::Processed { key, reply } => format!("q {} {}", hex::encode(key), hex::encode(reply)),
        Row::Refresh { token_id, record } => format!("r {token_id} {record:?}"),
        Row::Job { token_id, job } => format!("u {token_id} {job:?}"),
    }
}

fn backup_of(store: &Store) -> (Vec<u8>, Totals) {
    store
        .backup()
        .expect("takes the moment")
        .write(Vec::new(), &mut |_, _| true)
        .expect("writes")
}

/// Reads `file` into `into` (a thousand rows a commit), checking it
/// whole with `key`.
fn read_into(file: &[u8], key: &KeyRing, into: &Store) -> Result<(Header, Totals), BackupError> {
    let mut reader = Reader::open(file)?;
    let macs = reader.check_key(key)?;
    let header = reader.header().clone();
    loop {
        let mut rows = Vec::new();
        while rows.len() < 1_000 {
            match reader.next_row()? {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        if rows.is_empty() {
            break;
        }
        into.write(|tx| {
            for row in &rows {
                tx.import(row.clone())?;
            }
            Ok(Decision::Commit(()))
        })?;
    }
    Ok((header, reader.finish(&macs)?))
}

/// Every error a read of `file` into a fresh store meets, from the header to
/// the tag (`Ok` when it reads whole).
fn read(file: &[u8], dir: &std::path::Path, name: &str) -> Result<Totals, BackupError> {
    let target = store(dir, name);
    read_into(file, &key(dir), &target).map(|(_, totals)| totals)
}

#[test]
fn a_backup_read_into_a_fresh_store_gives_every_row_back_and_every_token_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 40);
    let (file, totals) = backup_of(&source);
    assert_eq!(totals, [40, 40, 8, 1]);
    let target = store(dir.path(), "b");
    let (header, read) = read_into(&file, &key(dir.path()), &target).expect("reads");
    assert_eq!(read, totals);
    assert_eq!(header.tokens(), 40);
    assert_eq!(header.counts, counts_of(&source.counts().expect("counts")));
    assert_eq!(counts_of(&target.counts().expect("counts")), header.counts);
    assert_eq!(everything(&target), everything(&source));
    assert!(
        everything(&source)
            .iter()
            .any(|row| row.ends_with("Some(61000)"))
    );
    for i in (0..40).filter(|i| *i != 2) {
        let id = format!("tok_{i:04}");
        let Found::Live {
            meta,
            sealed,
            wrapped,
        } = target.find(&id).expect("reads")
        else {
            panic!("{id} is live in the copy");
        };
        let opened = target
            .open_secrets(&id, &meta, &sealed, &wrapped)
            .expect("opens with the key");
        assert_eq!(opened.access_token.expose(), format!("raw-access-{i}"));
    }
    assert!(matches!(target.find("tok_0002"), Ok(Found::Revoked(_))));
    assert_eq!(
        source.due_refreshes(i64::MAX, 100).expect("due"),
        target.due_refreshes(i64::MAX, 100).expect("due")
    );
    assert_eq!(
        source.due_expiry_entries(i64::MAX, 100).expect("due"),
        target.due_expiry_entries(i64::MAX, 100).expect("due")
    );
}

#[test]
fn what_is_written_after_the_backups_moment_is_not_in_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 30);
    let before = everything(&source);
    let counts = counts_of(&source.counts().expect("counts"));
    let backup = source.backup().expect("takes the moment");
    source
        .write(|tx| {
            for i in 0..5 {
                let id = format!("tok_{i:04}");
                if let Found::Live { meta, .. } = tx.find(&id)? {
                    tx.revoke(&id, &meta, 9_000)?;
                }
            }
            let m = meta("acme", "late", Scope::Write);
            tx.put_token("tok_late", &m, None, &secrets())?;
            Ok(Decision::Commit(()))
        })
        .expect("writes after the moment");
    assert_ne!(everything(&source), before);
    let (file, _) = backup.write(Vec::new(), &mut |_, _| true).expect("writes");
    let target = store(dir.path(), "b");
    let (header, _) = read_into(&file, &key(dir.path()), &target).expect("reads");
    assert_eq!(header.counts, counts);
    assert_eq!(everything(&target), before);
}

#[test]
fn a_wrong_key_is_refused_from_the_header_before_any_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 3);
    let (file, _) = backup_of(&source);
    let reader = Reader::open(&file[..]).expect("a backup");
    let other = KeyRing::generate().expect("key");
    assert!(matches!(
        reader.check_key(&other),
        Err(BackupError::WrongKey)
    ));
    assert!(matches!(
        reader.finish(&Macs::generate().expect("keys")),
        Err(BackupError::Damaged { .. })
    ));
}

#[test]
fn a_flipped_byte_anywhere_is_refused_and_never_taken_for_a_wrong_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 3);
    let (file, _) = backup_of(&source);
    read(&file, dir.path(), "whole").expect("the file as written reads");
    for at in 0..file.len() {
        let mut damaged = file.clone();
        damaged[at] ^= 0x20;
        let key = key(dir.path());
        let outcome = Reader::open(&damaged[..]).and_then(|mut reader| {
            let macs = reader.check_key(&key)?;
            while reader.next_row()?.is_some() {}
            reader.finish(&macs)
        });
        match outcome {
            Err(
                BackupError::Damaged { .. }
                | BackupError::Truncated
                | BackupError::NotABackup
                | BackupError::Format { .. },
            ) => {}
            other => panic!("byte {at} of {} flipped: {other:?}", file.len()),
        }
    }
}

#[test]
fn a_cut_file_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 3);
    let (file, _) = backup_of(&source);
    let key = source.macs_for_tests();
    for end in 0..file.len() {
        let outcome = Reader::open(&file[..end]).and_then(|reader| reader.finish(key));
        match outcome {
            Err(BackupError::Truncated) => {}
            Err(BackupError::NotABackup) if end < 11 => {}
            other => panic!("cut at {end} of {}: {other:?}", file.len()),
        }
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        Reader::open(&longer[..]).and_then(|reader| reader.finish(key)),
        Err(BackupError::Damaged { .. })
    ));
}

/// A backup written before key rings (its header without `keyring`: the
/// store's own keys derive from key 0, whose check value is `key_check`)
/// still reads whole and restores.
#[test]
fn a_backup_from_before_key_rings_still_reads_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 3);
    let (file, totals) = backup_of(&source);
    let mut reader = Reader::open(&file[..]).expect("a backup");
    let mut header = reader.header().clone();
    header.keyring = None;
    let mut legacy = Vec::new();
    let mut writer = format::Writer::start(&mut legacy, &header).expect("starts");
    while let Some(row) = reader.next_row().expect("reads") {
        writer.row(&row).expect("writes");
    }
    writer.finish(source.macs_for_tests()).expect("ends");
    assert_eq!(read(&legacy, dir.path(), "b").expect("restores"), totals);
    let without_key_0 = source.ring().rotated().without(0);
    assert!(matches!(
        Reader::open(&legacy[..])
            .expect("a backup")
            .check_key(&without_key_0),
        Err(BackupError::Store(StoreError::MacsKeyMissing { id: 0 }))
    ));
}

#[test]
fn rows_changed_with_the_digest_made_again_fail_the_tag() {
    use orion::hazardous::hash::sha2::sha256::Sha256;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = store(dir.path(), "a");
    fill(&source, 3);
    let (file, _) = backup_of(&source);
    // Drop the tombstone's row and its job's, as one splicing an older
    // backup's live record in would: the totals and the digest made again.
    let mut reader = Reader::open(&file[..]).expect("a backup");
    let header = reader.header().clone();
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row().expect("reads") {
        if !matches!(&row, Row::Token { token_id, .. } | Row::Job { token_id, .. } if token_id == "tok_0002")
        {
            rows.push(row);
        }
    }
    let mut forged = Vec::new();
    let mut writer = format::Writer::start(&mut forged, &header).expect("starts");
    for row in &rows {
        writer.row(row).expect("writes");
    }
    let other = Macs::generate().expect("keys");
    writer.finish(&other).expect("ends");
    let mut digest = Sha256::new();
    let body = forged.len() - 64;
    digest.update(&forged[..body]).expect("hashes");
    assert_eq!(
        digest.finalize().expect("digest").as_ref(),
        &forged[body..body + 32],
        "the digest is right: only the tag is wrong"
    );
    assert!(matches!(
        read(&forged, dir.path(), "b"),
        Err(BackupError::Damaged {
            what: "its tag does not verify with this key: it was altered"
        })
    ));
}
