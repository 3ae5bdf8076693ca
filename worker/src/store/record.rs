//! The v2 token record: the one value stored under a tokenId, live or
//! revoked, authenticated whole.
//!
//! Layout: `[FORMAT_V2] postcard(record) tag`, where the tag is the master
//! key's record tag over the tokenId and everything before it. A reader
//! therefore sees one consistent value (its metadata, wrapped data key and
//! sealed secrets were written together), and no byte of it (a state, an
//! expiry, a tombstone) can be changed on disk without the key.

use serde::{Deserialize, Serialize};

use crate::rules::lifecycle::{TokenMeta, Tombstone};
use crate::store::crypto::{KeyId, Macs, TAG_BYTES, wrapped_key_id};

use super::StoreError;

/// The first byte of a v2 record.
pub(super) const FORMAT_V2: u8 = 2;

/// A record as it is decoded.
#[derive(Deserialize)]
pub(super) enum Record {
    /// A live token: its metadata, its data key wrapped by the master key,
    /// and its secrets sealed under the data key.
    Live {
        meta: TokenMeta,
        wrapped: Vec<u8>,
        sealed: Vec<u8>,
    },
    /// A revoked token: no secret left.
    Revoked(Tombstone),
}

/// A record as it is written (borrowing, so nothing is copied to encode it).
/// Serializes exactly as [`Record`] decodes.
#[derive(Serialize)]
pub(super) enum RecordRef<'a> {
    Live {
        meta: &'a TokenMeta,
        wrapped: &'a [u8],
        sealed: &'a [u8],
    },
    Revoked(&'a Tombstone),
}

/// Encodes and tags a record of `token_id`.
pub(super) fn encode(
    key: &Macs,
    token_id: &str,
    record: &RecordRef<'_>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = postcard::to_extend(record, vec![FORMAT_V2])?;
    let tag = key.record_tag(token_id, &out)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Checks the tag of a record of `token_id` and decodes it.
pub(super) fn decode(key: &Macs, token_id: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    let split = bytes
        .len()
        .checked_sub(TAG_BYTES)
        .filter(|at| *at > 0)
        .ok_or(StoreError::Decode(
            postcard::Error::DeserializeUnexpectedEnd,
        ))?;
    let (body, tag) = bytes.split_at(split);
    if body.first() != Some(&FORMAT_V2) {
        return Err(StoreError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    key.verify_record_tag(token_id, body, tag)?;
    Ok(postcard::from_bytes(&body[1..])?)
}

/// The id of the key that wraps a live record's data key, read without
/// checking the record's tag (to count records by key: what is rewrapped or
/// opened is checked); `None` for a tombstone or bytes that do not decode.
pub(super) fn wrapped_key_of(bytes: &[u8]) -> Option<KeyId> {
    let body = bytes.get(1..bytes.len().checked_sub(TAG_BYTES)?)?;
    match postcard::from_bytes(body).ok()? {
        Record::Live { wrapped, .. } => wrapped_key_id(&wrapped).ok(),
        Record::Revoked(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use mmt_shared::wire::Scope;

    use super::super::testing::meta;
    use super::*;

    #[test]
    fn a_live_record_round_trips() {
        let key = Macs::generate().expect("random key");
        let m = meta("acme", "u1", Scope::Read);
        let live = RecordRef::Live {
            meta: &m,
            wrapped: b"wrapped",
            sealed: b"sealed",
        };
        let bytes = encode(&key, "tok_1", &live).expect("encodes");
        let Record::Live {
            meta: got,
            wrapped,
            sealed,
        } = decode(&key, "tok_1", &bytes).expect("decodes")
        else {
            panic!("expected a live record");
        };
        assert_eq!(
            (got, wrapped.as_slice(), sealed.as_slice()),
            (m, &b"wrapped"[..], &b"sealed"[..])
        );
    }

    #[test]
    fn any_changed_byte_another_token_id_or_another_key_is_refused() {
        let key = Macs::generate().expect("random key");
        let tomb = Tombstone {
            client_id: "acme".into(),
            broker_type: "coinbase".into(),
            scope: Scope::Read,
            revoked_at: 9,
        };
        let bytes = encode(&key, "tok_1", &RecordRef::Revoked(&tomb)).expect("encodes");
        assert!(matches!(decode(&key, "tok_1", &bytes), Ok(Record::Revoked(t)) if t == tomb));
        for at in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[at] ^= 0x01;
            assert!(decode(&key, "tok_1", &garbled).is_err(), "byte {at}");
        }
        assert!(decode(&key, "tok_2", &bytes).is_err());
        let other = Macs::generate().expect("random key");
        assert!(decode(&other, "tok_1", &bytes).is_err());
        assert!(decode(&key, "tok_1", &bytes[..TAG_BYTES]).is_err());
        assert!(decode(&key, "tok_1", b"").is_err());
    }
}
