//! Property tests of the envelope encryption and the key file: sealing then
//! opening gives the bytes back; another tokenId, another binding, another
//! key, any flipped bit, a cut or any bytes at all never open; record tags
//! and the key check value bind what they cover; a key file is a key exactly
//! when it holds 64 hex digits, and its error never quotes it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use proptest::prelude::*;

use super::{CryptoError, KeyRing, Macs};

fn key() -> KeyRing {
    KeyRing::generate().unwrap_or_else(|e| panic!("random key: {e}"))
}

fn token_id() -> impl Strategy<Value = String> {
    prop_oneof!["tok_[0-9a-f]{32}", ".{0,40}"]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// `bytes` with bit `bit` of byte `at` flipped.
fn flipped(bytes: &[u8], at: prop::sample::Index, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = at.index(out.len());
    out[at] ^= 1 << (bit % 8);
    out
}

proptest! {
    #[test]
    fn sealed_secrets_open_to_the_same_bytes(
        id in token_id(), binding in bytes(64), secrets in bytes(2048),
    ) {
        let key = key();
        let (sealed, wrapped) = key.seal_token(&id, &binding, &secrets)?;
        let plain = key.open_token(&id, &binding, &sealed, &wrapped)?;
        prop_assert_eq!(plain.as_slice(), secrets.as_slice());
        // Two seals of the same bytes differ (fresh data key, fresh nonce).
        let (again, rewrapped) = key.seal_token(&id, &binding, &secrets)?;
        prop_assert_ne!(&again, &sealed);
        prop_assert_ne!(&rewrapped, &wrapped);
    }

    #[test]
    fn another_token_id_binding_or_key_never_opens(
        id in token_id(), other_id in token_id(),
        binding in bytes(64), other_binding in bytes(64),
        secrets in bytes(256),
    ) {
        let key = key();
        let (sealed, wrapped) = key.seal_token(&id, &binding, &secrets)?;
        if other_id != id {
            prop_assert!(key.open_token(&other_id, &binding, &sealed, &wrapped).is_err());
        }
        if other_binding != binding {
            prop_assert!(key.open_token(&id, &other_binding, &sealed, &wrapped).is_err());
        }
        prop_assert!(self::key().open_token(&id, &binding, &sealed, &wrapped).is_err());
        // A data key wrapped for another token does not open this one's
        // secrets, even with the right tokenId.
        let (_, other_wrapped) = key.seal_token(&id, &binding, &secrets)?;
        prop_assert!(key.open_token(&id, &binding, &sealed, &other_wrapped).is_err());
    }

    #[test]
    fn any_flipped_bit_or_cut_never_opens(
        id in token_id(), binding in bytes(32), secrets in bytes(256),
        at in any::<prop::sample::Index>(), bit in any::<u8>(), keep in any::<prop::sample::Index>(),
    ) {
        let key = key();
        let (sealed, wrapped) = key.seal_token(&id, &binding, &secrets)?;
        let bad_sealed = flipped(&sealed, at, bit);
        prop_assert!(key.open_token(&id, &binding, &bad_sealed, &wrapped).is_err());
        let bad_wrapped = flipped(&wrapped, at, bit);
        prop_assert!(key.open_token(&id, &binding, &sealed, &bad_wrapped).is_err());
        let cut = keep.index(sealed.len());
        prop_assert!(key.open_token(&id, &binding, &sealed[..cut], &wrapped).is_err());
        let cut = keep.index(wrapped.len());
        prop_assert!(key.open_token(&id, &binding, &sealed, &wrapped[..cut]).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        prop_assert!(key.open_token(&id, &binding, &longer, &wrapped).is_err());
    }

    #[test]
    fn any_bytes_never_open(
        id in token_id(), sealed in bytes(200), wrapped in bytes(200),
    ) {
        let opened = key().open_token(&id, b"", &sealed, &wrapped);
        prop_assert!(matches!(opened, Err(CryptoError::Unseal)), "{:?}", opened.map(|_| ()));
    }

    #[test]
    fn a_record_tag_binds_the_token_id_the_bytes_and_the_key(
        id in token_id(), other_id in token_id(), record in bytes(512),
        at in any::<prop::sample::Index>(), bit in any::<u8>(),
    ) {
        let key = Macs::generate()?;
        let tag = key.record_tag(&id, &record)?;
        prop_assert!(key.verify_record_tag(&id, &record, &tag).is_ok());
        prop_assert!(Macs::generate()?.verify_record_tag(&id, &record, &tag).is_err());
        prop_assert!(key.verify_record_tag(&id, &record, &flipped(&tag, at, bit)).is_err());
        if !record.is_empty() {
            prop_assert!(key.verify_record_tag(&id, &flipped(&record, at, bit), &tag).is_err());
        }
        if other_id != id {
            prop_assert!(key.verify_record_tag(&other_id, &record, &tag).is_err());
        }
    }

    #[test]
    fn the_key_check_value_holds_for_its_key_only(
        at in any::<prop::sample::Index>(), bit in any::<u8>(), junk in bytes(128),
    ) {
        let key = key();
        let kcv = key.check_value(0)?;
        prop_assert!(key.verify_check_value(0, &kcv));
        prop_assert!(!self::key().verify_check_value(0, &kcv));
        prop_assert!(!key.verify_check_value(0, &flipped(&kcv, at, bit)));
        prop_assert!(!key.verify_check_value(0, &junk));
    }

    #[test]
    fn a_key_file_is_a_key_exactly_when_it_holds_64_hex_digits(content in key_file()) {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mmt.key");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(&content)?;
        drop(file);
        let is_key = std::str::from_utf8(&content)
            .map(str::trim)
            .is_ok_and(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        match KeyRing::load(&path, dir.path()) {
            Ok(key) => {
                prop_assert!(is_key);
                // The same file gives the same key.
                let again = KeyRing::load(&path, dir.path())?;
                prop_assert!(again.verify_check_value(0, &key.check_value(0)?));
            }
            Err(error) => {
                prop_assert!(!is_key, "{:#}", error);
                let refused = matches!(
                    error,
                    CryptoError::KeyFormat { .. } | CryptoError::KeyFile { .. }
                );
                prop_assert!(refused, "{:?}", error);
                let text = format!("{error} {:?}", std::error::Error::source(&error));
                let quoted = String::from_utf8_lossy(&content);
                let quoted = quoted.trim();
                prop_assert!(
                    quoted.len() < 8 || !text.contains(quoted),
                    "{} quotes the file", text
                );
            }
        }
    }
}

/// Key file contents: keys with whitespace around them (either case of hex),
/// near misses (a digit too many or too few, a non-hex character) and any
/// bytes.
fn key_file() -> impl Strategy<Value = Vec<u8>> {
    let space = || prop::sample::select(vec!["", " ", "\n", "\r\n", "\t", "\u{a0}"]);
    prop_oneof![
        (space(), "[0-9a-fA-F]{64}", space())
            .prop_map(|(a, k, b)| format!("{a}{k}{b}").into_bytes()),
        "[0-9a-f]{60,68}".prop_map(String::into_bytes),
        "[0-9a-f]{30}[g-zG-Z ][0-9a-f]{33}".prop_map(String::into_bytes),
        bytes(100),
    ]
}
