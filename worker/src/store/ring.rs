//! What a store knows of the key ring (CONTRACT.md §11), the same for every
//! engine: a key check value per key id it has seen, and the store's own
//! keys ([`Macs`]) sealed under the newest of them. The embedded engine
//! keeps it in its data directory ([`super::keycheck`]), the shared one in
//! its `mmt_meta` table.
//!
//! A ring is adopted in two steps. [`open_macs`], before the engine is
//! opened: every key both know must be the same key (else the ring is
//! refused as a wrong key), and the store's keys are opened (or, for a
//! store from before key rings, derived from key 0 as they always were).
//! [`settle`], once the engine can count its records by key: a key the
//! store knows and the ring lacks is refused while a record needs it, and
//! forgotten (retired) once none does; the ring's new keys are learnt; the
//! store's keys are sealed again under the active key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::store::crypto::{KeyId, KeyRing, Macs};

/// What a store keeps of the key ring.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// The key check value of every key the store has seen, by id.
    #[serde(with = "hex_map")]
    pub checks: BTreeMap<KeyId, Vec<u8>>,
    /// The store's own keys, sealed ([`KeyRing::seal_macs`]); `None` for a
    /// store from before key rings, whose keys derive from key 0.
    #[serde(default, with = "hex_opt")]
    pub macs: Option<Vec<u8>>,
}

/// The state of a new store: the ring's keys, the store's keys derived from
/// its active key.
pub fn fresh(ring: &KeyRing) -> Result<(RingState, Macs), StoreError> {
    let macs = ring.derive_macs(ring.active())?;
    let mut state = RingState {
        checks: BTreeMap::new(),
        macs: Some(ring.seal_macs(&macs)?),
    };
    for id in ring.ids() {
        state.checks.insert(id, ring.check_value(id)?);
    }
    Ok((state, macs))
}

/// Checks `ring` against what the store knows and opens the store's keys.
/// `wrong` is the error of a key that is not the store's.
pub fn open_macs(
    state: &RingState,
    ring: &KeyRing,
    wrong: impl Fn(KeyId) -> StoreError,
) -> Result<Macs, StoreError> {
    for (id, check) in &state.checks {
        if ring.has(*id) && !ring.verify_check_value(*id, check) {
            return Err(wrong(*id));
        }
    }
    match &state.macs {
        None => {
            if !ring.has(0) {
                return Err(StoreError::MacsKeyMissing { id: 0 });
            }
            Ok(ring.derive_macs(0)?)
        }
        Some(sealed) => {
            let id = KeyRing::macs_key_id(sealed)?;
            if !ring.has(id) {
                return Err(StoreError::MacsKeyMissing { id });
            }
            Ok(ring.open_macs(sealed)?)
        }
    }
}

/// What the store should keep once `ring` is adopted, or `None` when
/// nothing changes. `count` gives how many records each of the given key
/// ids wraps; it is asked only when the store knows keys the ring lacks.
pub fn settle(
    state: &RingState,
    ring: &KeyRing,
    macs: &Macs,
    count: impl FnOnce(&[KeyId]) -> Result<BTreeMap<KeyId, u64>, StoreError>,
) -> Result<Option<RingState>, StoreError> {
    let mut next = state.clone();
    let lacking: Vec<KeyId> = state
        .checks
        .keys()
        .copied()
        .filter(|id| !ring.has(*id))
        .collect();
    if !lacking.is_empty() {
        let counts = count(&lacking)?;
        for id in &lacking {
            match counts.get(id).copied().unwrap_or(0) {
                0 => {
                    next.checks.remove(id);
                }
                records => return Err(StoreError::MissingKey { id: *id, records }),
            }
        }
    }
    for id in ring.ids() {
        if let std::collections::btree_map::Entry::Vacant(entry) = next.checks.entry(id) {
            entry.insert(ring.check_value(id)?);
        }
    }
    let sealed_under = match &state.macs {
        None => None,
        Some(sealed) => Some(KeyRing::macs_key_id(sealed)?),
    };
    if sealed_under.is_none_or(|id| id < ring.active()) {
        next.macs = Some(ring.seal_macs(macs)?);
    }
    Ok((next != *state).then_some(next))
}

/// A map of byte strings by key id, as JSON (`{"0": "<hex>"}`).
mod hex_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::store::crypto::KeyId;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<KeyId, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            map.iter()
                .map(|(id, bytes)| (id.to_string(), hex::encode(bytes))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<KeyId, Vec<u8>>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(id, hex)| {
                Ok((
                    id.parse().map_err(serde::de::Error::custom)?,
                    hex::decode(hex).map_err(serde::de::Error::custom)?,
                ))
            })
            .collect()
    }
}

/// An optional byte string, as JSON hex.
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|hex| hex::decode(hex).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::keyfile;

    fn rings() -> (tempfile::TempDir, KeyRing, KeyRing, KeyRing) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        let (v1, _) = KeyRing::load_or_create(&path).expect("creates");
        keyfile::rotate(&path).expect("rotates");
        let both = KeyRing::read(&path).expect("reads");
        let text = std::fs::read_to_string(&path).expect("reads");
        let second = text.lines().nth(1).expect("two lines").to_owned();
        std::fs::write(&path, format!("{second}\n")).expect("writes");
        let only_new = KeyRing::read(&path).expect("reads");
        (dir, v1, both, only_new)
    }

    fn never(_: &[KeyId]) -> Result<BTreeMap<KeyId, u64>, StoreError> {
        panic!("nothing to count")
    }

    #[test]
    fn a_legacy_store_opens_with_key_zero_and_learns_a_rotation() {
        let (_dir, v1, both, only_new) = rings();
        let legacy = RingState {
            checks: BTreeMap::from([(0, v1.check_value(0).expect("kcv"))]),
            macs: None,
        };
        let wrong = |id| StoreError::MissingKey { id, records: 0 };
        let macs = open_macs(&legacy, &v1, wrong).expect("opens");
        let same = open_macs(&legacy, &both, wrong).expect("opens");
        let tag = macs.record_tag("t", b"r").expect("tags");
        assert!(same.verify_record_tag("t", b"r", &tag).is_ok());
        assert!(matches!(
            open_macs(&legacy, &only_new, wrong),
            Err(StoreError::MacsKeyMissing { id: 0 })
        ));
        let other = KeyRing::generate().expect("key");
        assert!(matches!(
            open_macs(&legacy, &other, wrong),
            Err(StoreError::MissingKey { id: 0, .. })
        ));

        let learnt = settle(&legacy, &both, &same, never)
            .expect("settles")
            .expect("changes");
        assert_eq!(learnt.checks.keys().copied().collect::<Vec<_>>(), [0, 1]);
        let sealed = learnt.macs.clone().expect("sealed");
        assert_eq!(KeyRing::macs_key_id(&sealed).expect("id"), 1);
        assert!(
            settle(&learnt, &both, &same, never)
                .expect("settles")
                .is_none()
        );

        // Key 0's line deleted: refused while records need it, forgotten once none does.
        let again = open_macs(&learnt, &only_new, wrong).expect("opens without key 0");
        assert!(again.verify_record_tag("t", b"r", &tag).is_ok());
        let refused = settle(&learnt, &only_new, &again, |ids| {
            assert_eq!(ids, [0]);
            Ok(BTreeMap::from([(0, 7), (1, 3)]))
        });
        assert!(matches!(
            refused,
            Err(StoreError::MissingKey { id: 0, records: 7 })
        ));
        let retired = settle(&learnt, &only_new, &again, |_| {
            Ok(BTreeMap::from([(1, 10)]))
        })
        .expect("settles")
        .expect("changes");
        assert_eq!(retired.checks.keys().copied().collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_fresh_store_knows_its_ring_and_survives_json() {
        let (_dir, _, both, _) = rings();
        let (state, macs) = fresh(&both).expect("fresh");
        let text = serde_json::to_string(&state).expect("json");
        let back: RingState = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, state);
        let opened =
            open_macs(&back, &both, |id| StoreError::MissingKey { id, records: 0 }).expect("opens");
        let tag = macs.record_tag("t", b"r").expect("tags");
        assert!(opened.verify_record_tag("t", b"r", &tag).is_ok());
    }
}
