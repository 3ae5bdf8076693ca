//! Property tests of every stored record a reader decodes: token records,
//! processed-message replies, refresh records, upstream jobs, count keys and
//! the due and expiry indexes, the key check file, and the v1 records the
//! migration reads. Any bytes give a
//! value or an error, never a panic; a token record the key did not tag is
//! always an error; what is written comes back as it was.

use mmt_shared::wire::{ConnectedReply, IssuedToken, MessageKind, Scope, SdkAccessToken};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::crypto::{KeyRing, Macs, TAG_BYTES};
use super::kv::Kv;
use super::record::{self, FORMAT_V2, Record, RecordRef};
use super::testing::meta;
use super::upstream::UPSTREAM;
use super::{
    COUNT, CountKey, DATA_KEY, EXPIRY, PROCESSED_V1, Store, StoreError, TOKEN, TOMBSTONE, keys,
    migrate, processed, refresh,
};

fn key() -> KeyRing {
    KeyRing::generate().unwrap_or_else(|e| panic!("random key: {e}"))
}

fn macs() -> Macs {
    Macs::generate().unwrap_or_else(|e| panic!("random key: {e}"))
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Read), Just(Scope::Write)]
}

proptest! {
    #[test]
    fn a_token_record_the_key_did_not_tag_is_an_error(id in ".{0,40}", bytes in bytes(400)) {
        prop_assert!(record::decode(&macs(), &id, &bytes).is_err());
    }

    #[test]
    fn a_tagged_token_record_of_any_body_is_a_record_or_an_error(
        id in ".{0,40}", format in prop_oneof![Just(FORMAT_V2), any::<u8>()], body in bytes(400),
    ) {
        let key = macs();
        let mut bytes = vec![format];
        bytes.extend_from_slice(&body);
        let tag = key.record_tag(&id, &bytes)?;
        bytes.extend_from_slice(&tag);
        let decoded = record::decode(&key, &id, &bytes);
        if format != FORMAT_V2 {
            prop_assert!(decoded.is_err());
        }
    }

    #[test]
    fn a_token_record_round_trips_and_no_changed_byte_or_other_token_id_is_accepted(
        id in ".{0,40}", other_id in ".{0,40}",
        client in ".{0,20}", user in ".{0,20}", scope in scope(),
        wrapped in bytes(80), sealed in bytes(300),
        at in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let key = macs();
        let m = meta(&client, &user, scope);
        let bytes = record::encode(
            &key,
            &id,
            &RecordRef::Live { meta: &m, wrapped: &wrapped, sealed: &sealed },
        )?;
        let Record::Live { meta: got, wrapped: got_wrapped, sealed: got_sealed } =
            record::decode(&key, &id, &bytes)?
        else {
            return Err(TestCaseError::fail("a live record came back revoked"));
        };
        prop_assert_eq!(got, m);
        prop_assert_eq!(got_wrapped, wrapped);
        prop_assert_eq!(got_sealed, sealed);
        let mut changed = bytes.clone();
        let at = at.index(changed.len());
        changed[at] ^= 1 << bit;
        prop_assert!(record::decode(&key, &id, &changed).is_err());
        prop_assert!(record::decode(&key, &id, &bytes[..bytes.len() - TAG_BYTES]).is_err());
        if other_id != id {
            prop_assert!(record::decode(&key, &other_id, &bytes).is_err());
        }
    }

    #[test]
    fn any_stored_reply_bytes_are_a_reply_or_an_error(stored in bytes(400)) {
        let _ = processed::decode(&stored);
    }

    #[test]
    fn any_reply_comes_back_byte_for_byte(reply in bytes(400)) {
        let stored = processed::encode(&reply)?;
        prop_assert_eq!(processed::decode(&stored)?, reply);
    }

    #[test]
    fn any_connect_reply_comes_back_byte_for_byte(
        broker_type in ".{0,20}", scope in scope(), wallet in any::<bool>(),
        tokens in prop::collection::vec(
            (prop_oneof!["tok_[0-9a-f]{32}", "tok_[0-9a-fA-F]{31,33}", ".{0,40}"], ".{0,20}", any::<bool>()),
            0..5,
        ),
    ) {
        let tokens: Vec<IssuedToken> = tokens
            .into_iter()
            .map(|(token_id, account_id, created)| IssuedToken { token_id, account_id, created })
            .collect();
        let reply = serde_json::to_vec(&ConnectedReply {
            ok: true,
            access_tokens: tokens
                .iter()
                .map(|t| SdkAccessToken::new(&t.token_id, &broker_type))
                .collect(),
            broker_type,
            scope,
            tokens,
            wallet,
        })?;
        let stored = processed::encode(&reply)?;
        prop_assert_eq!(processed::decode(&stored)?, reply);
    }

    #[test]
    fn any_count_key_is_a_group_or_none(bytes in bytes(80)) {
        if let Some(group) = CountKey::decode(&bytes) {
            prop_assert_eq!(group.encode(), bytes);
        }
    }

    #[test]
    fn a_count_key_round_trips(broker_type in ".{0,30}", scope in scope(), state in 0usize..3) {
        use mmt_shared::wire::TokenState;
        let state = [TokenState::Active, TokenState::ReauthRequired, TokenState::Revoked][state];
        let group = CountKey { state, scope, broker_type };
        prop_assert_eq!(CountKey::decode(&group.encode()), Some(group));
    }

    #[test]
    fn any_due_or_expiry_key_splits_without_panic(bytes in bytes(60), at in any::<i64>(), id in ".{0,40}") {
        let _ = refresh::split_time_key(&bytes);
        prop_assert_eq!(refresh::split_time_key(&keys::expiry_key(at, &id)), (at.max(0), id.clone()));
        prop_assert_eq!(refresh::split_time_key(&refresh::due_key(at, &id)), (at.max(0), id));
    }

    #[test]
    fn any_key_check_file_but_the_keys_own_is_a_wrong_key(content in bytes(200)) {
        let dir = tempfile::tempdir()?;
        let key = key();
        std::fs::write(dir.path().join("key-check"), &content)?;
        let checked = super::check_key(dir.path(), &key, None);
        prop_assert!(matches!(checked, Err(StoreError::WrongKey { .. })), "{:?}", checked);
        std::fs::write(dir.path().join("key-check"), key.check_value(0)?)?;
        prop_assert!(super::check_key(dir.path(), &key, None).is_ok());
    }
}

/// Any bytes stored under a token, a refresh record, an upstream job, a
/// processed message, a count group or a due or expiry entry of a real
/// embedded store: every reader of them gives a value or an error, never a
/// panic, and a token record the key did not tag is an error.
#[test]
fn every_reader_of_a_real_store_takes_any_stored_bytes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let key_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let key_file = key_dir.path().join("mmt.key");
    let open = || {
        let (key, _) =
            KeyRing::load_or_create(&key_file).unwrap_or_else(|e| panic!("key file: {e}"));
        Store::open(dir.path(), key).unwrap_or_else(|e| panic!("opens: {e}"))
    };
    let store = open();
    let prefixes = prop_oneof![
        Just(TOKEN),
        Just(refresh::REFRESH),
        Just(UPSTREAM),
        Just(processed::PROCESSED),
        Just(COUNT),
        Just(refresh::DUE),
        Just(EXPIRY),
    ];
    let case = (prefixes, "[a-z0-9_]{0,12}", bytes(48), bytes(300));
    let mut runner = TestRunner::new(Config::default());
    let outcome = runner.run(&case, |(prefix, id, raw_key, value)| {
        let stored_key = match prefix {
            processed::PROCESSED => processed::key(MessageKind::ConnectionRemoved, &id),
            COUNT | refresh::DUE | EXPIRY => keys::prefixed(prefix, &raw_key),
            _ => keys::prefixed(prefix, id.as_bytes()),
        };
        let mut batch = store.kv().batch();
        batch.insert(&stored_key, &value);
        store.kv().apply(batch)?;
        if prefix == TOKEN {
            prop_assert!(store.find(&id).is_err());
        }
        let _ = store.refresh_record(&id);
        let _ = store.processed(MessageKind::ConnectionRemoved, &id);
        let _ = store.due_refreshes(i64::MAX, 50)?;
        let _ = store.due_expiry_entries(i64::MAX, 50)?;
        let _ = store.due_count(i64::MAX, 50)?;
        let _ = store.failing_refreshes(50);
        for (token_id, job) in store.upstream_jobs(50)? {
            if let Ok(job) = job {
                prop_assert!(store.open_job(&token_id, &job).is_err());
            }
        }
        let _ = store.list_tokens(None, 50, 50, &|_, _| true);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // Count groups are read when the store opens.
    drop(store);
    let store = open();
    assert!(store.counts().is_ok());
}

/// Any bytes under the keys of a v1 store (wrapped keys, records,
/// tombstones, processed replies, and any key after the prefix): the
/// migration that runs at open converts them or gives an error, never a
/// panic.
#[test]
fn the_v1_migration_takes_any_stored_bytes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kv = Kv::open(&dir.path().join("fjall"), 8).unwrap_or_else(|e| panic!("opens: {e}"));
    let key = key();
    let prefix = prop_oneof![
        Just(DATA_KEY),
        Just(TOKEN),
        Just(TOMBSTONE),
        Just(PROCESSED_V1)
    ];
    let entries = prop::collection::vec((prefix, bytes(24), bytes(300)), 1..6);
    let mut runner = TestRunner::new(Config::default());
    let outcome = runner.run(&entries, |entries| {
        let mut clear = kv.batch();
        for entry in kv.scan_prefix([]) {
            clear.remove(entry?.0);
        }
        kv.apply(clear)?;
        let mut batch = kv.batch();
        for (prefix, rest, value) in entries {
            batch.insert(keys::prefixed(prefix, &rest), value);
        }
        kv.apply(batch)?;
        let _ = migrate::to_current(&kv, &key.derive_macs(0)?, usize::MAX);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
