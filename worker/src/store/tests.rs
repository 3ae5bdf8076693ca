//! Unit tests of the store: keys, round trips, counts, listing, corruption.

use super::keys::user_prefix;
use super::testing::when_unlocked;
use super::*;
use mmt_shared::wire::Scope;

#[test]
fn identities_differ_by_every_part_and_users_are_prefixes() {
    let base = Identity {
        client_id: "acme",
        end_user_id: "u1",
        broker_type: "coinbase",
        scope: Scope::Read,
        account_id: "a",
    };
    let variants = [
        Identity {
            client_id: "acme2",
            ..base.clone()
        },
        Identity {
            end_user_id: "u2",
            ..base.clone()
        },
        Identity {
            broker_type: "binance",
            ..base.clone()
        },
        Identity {
            scope: Scope::Write,
            ..base.clone()
        },
        Identity {
            account_id: "b",
            ..base.clone()
        },
    ];
    for v in &variants {
        assert_ne!(v.key(), base.key());
    }
    assert!(base.key().starts_with(&user_prefix("acme", "u1")));
    assert!(!user_prefix("ac", "meu1").starts_with(&user_prefix("acme", "u1")));
}

#[test]
fn a_wrong_key_is_refused_and_a_right_one_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("k");
    let data = dir.path().join("data");
    let (key, _) = KeyRing::load_or_create(&key_path).expect("key");
    drop(Store::open(&data, key).expect("opens"));
    assert!(matches!(
        when_unlocked(|| Store::open(&data, KeyRing::generate().expect("random key"))),
        Err(StoreError::WrongKey { .. })
    ));
    assert!(
        when_unlocked(|| Store::open(&data, KeyRing::load_or_create(&key_path).expect("key").0))
            .is_ok()
    );
}

#[test]
fn a_leftover_key_check_tmp_from_a_crashed_first_start_does_not_lock_out_an_empty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("key-check.tmp"), b"half written").expect("write");
    assert!(!holds_a_store(&data));
    let key_path = dir.path().join("k");
    let (key, _) = KeyRing::load_or_create(&key_path).expect("key");
    drop(Store::open(&data, key).expect("an empty store with a leftover tmp opens"));
    assert!(!data.join("key-check.tmp").exists());
    assert!(holds_a_store(&data));
    assert!(
        when_unlocked(|| Store::open(&data, KeyRing::load_or_create(&key_path).expect("key").0))
            .is_ok(),
        "its key check is the key's"
    );
}

#[test]
fn a_key_check_tmp_beside_data_still_refuses_to_guess_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("key-check.tmp"), b"x").expect("write");
    std::fs::write(dir.path().join("conf"), b"sled").expect("write");
    assert!(matches!(
        Store::open(dir.path(), KeyRing::generate().expect("random key")),
        Err(StoreError::MissingKeyCheck { .. })
    ));
}

#[test]
fn a_new_data_directory_is_created_0700() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a").join("data");
    drop(Store::open(&data, KeyRing::generate().expect("random key")).expect("opens"));
    let mode = std::fs::metadata(&data)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_garbled_store_is_refused_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("k");
    let data = dir.path().join("data");
    let (key, _) = KeyRing::load_or_create(&key_path).expect("key");
    drop(Store::open(&data, key).expect("opens"));
    let marker = data.join(kv::DIR).join("version");
    assert!(marker.is_file(), "fjall's version marker");
    std::fs::write(&marker, b"garbage that is not a fjall marker").expect("garble");
    let (key, _) = KeyRing::load_or_create(&key_path).expect("key");
    let opened = std::panic::catch_unwind(|| Store::open(&data, key).map(|_| ()));
    let result = opened.expect("opening a garbled store must not panic");
    let error = result.expect_err("a garbled store must be refused");
    assert!(
        matches!(error, StoreError::Corrupt { .. } | StoreError::Open { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&data.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("k");
    let data = dir.path().join("data");
    let key = || KeyRing::load_or_create(&key_path).expect("key").0;
    let first = Store::open(&data, key()).expect("opens");
    let second = Store::open(&data, key());
    assert!(
        matches!(second, Err(StoreError::Held { .. })),
        "{:?}",
        second.err()
    );
    drop(first);
    assert!(Store::open(&data, key()).is_ok(), "free again once dropped");
}

#[test]
fn a_tokens_secrets_are_encoded_in_one_buffer_of_their_full_size() {
    for (access, refresh) in [
        (String::new(), None),
        ("a".repeat(127), Some("r".repeat(128))),
        ("é".repeat(9000), Some("x".repeat(16_384))),
    ] {
        let secrets = TokenSecrets {
            access_token: Secret::new(access.clone()),
            refresh_token: refresh.clone().map(Secret::new),
        };
        let plain = secrets.to_plain().expect("encodes");
        // The capacity asked for: the buffer never grew (a grown buffer
        // leaves its old copy unwiped).
        assert_eq!(
            plain.capacity(),
            21 + access.len() + refresh.as_ref().map_or(0, String::len)
        );
        let back: TokenSecrets = postcard::from_bytes(&plain).expect("decodes");
        assert_eq!(back.access_token.expose(), access);
    }
}

/// A crash that loses audit lines the journal outlived (the two are synced
/// side by side) is found at the next start and said in the log, whose
/// chain still verifies.
#[test]
fn audit_lines_lost_in_a_crash_are_said_in_the_log_at_the_next_start() {
    use crate::rules::audit::{Event, Verifier};
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("k");
    let data = dir.path().join("data");
    let event = |i: u32| Event {
        kind: "connection.removed".into(),
        outcome: "token.revoked".into(),
        message_id: Some(format!("m-{i}")),
        ..Event::default()
    };
    {
        let store =
            Store::open(&data, KeyRing::load_or_create(&key_path).expect("key").0).expect("opens");
        for i in 0..3 {
            store
                .write(|tx| {
                    tx.audit(event(i), None)?;
                    Ok(Decision::Commit(()))
                })
                .expect("writes");
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(store.flush())
            .expect("flushes");
    }
    // The page cache lost the last line; the journal kept its batch.
    let path = data.join(audit_log::CURRENT);
    let text = std::fs::read_to_string(&path).expect("log");
    let kept: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, kept.join("\n") + "\n").expect("writes");

    let key = KeyRing::load_or_create(&key_path).expect("key").0;
    let audit_key = keycheck::audit_key(&data, &key).expect("audit key");
    drop(
        when_unlocked(|| Store::open(&data, KeyRing::load_or_create(&key_path).expect("key").0))
            .expect("opens again"),
    );
    drop(key);
    let text = std::fs::read_to_string(&path).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].contains("lines_lost") && lines[2].contains("lines 3 to 3"),
        "{text}"
    );
    let mut verifier = Verifier::new(&audit_key);
    for line in &lines {
        verifier.next(line.as_bytes()).expect("the chain verifies");
    }
}
