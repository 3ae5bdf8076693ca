//! The key ring and envelope encryption (orion XChaCha20-Poly1305).
//!
//! Each token's secrets are sealed under a fresh per-token data key; the data
//! key is sealed (wrapped) under the ring's active key, and the wrapped key
//! names the key that wrapped it (CONTRACT.md §11), so a ring of several keys
//! opens every record and a rotation rewraps data keys without touching the
//! secrets. Both seals bind the tokenId as associated data, so neither a
//! sealed record nor a wrapped key can be moved onto another tokenId. A key
//! check value per key lets the store refuse a wrong key before anything is
//! read or written.
//!
//! The store's own keys ([`Macs`]: the record tag that authenticates each
//! stored record whole, metadata and tombstones included, and the audit
//! log's key) are derived once from the key that was active when the store
//! began (HKDF-SHA256) and kept sealed under the active key, so that they
//! outlive a key's retirement: deleting a retired key's line leaves every
//! copy of what it wrapped unreadable, and the store readable.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use orion::hazardous::aead::xchacha20poly1305::{Nonce, SecretKey, XChaCha20Poly1305};
use orion::hazardous::kdf::hkdf::{Hkdf, SHA256};
use orion::hazardous::mac::poly1305::POLY1305_OUTSIZE;
use orion::hazardous::stream::xchacha20::XCHACHA_NONCESIZE;
use zeroize::Zeroizing;

pub mod keyfile;

/// Length of a key in bytes.
pub const KEY_BYTES: usize = 32;

/// A key's id in the ring (CONTRACT.md §11): `0` for a v1 key file.
pub type KeyId = u32;

const KCV_PLAINTEXT: &[u8] = b"mmt key check value v1";
const KCV_AD: &[u8] = b"mmt-kcv-v1";
const MACS_AD: &[u8] = b"mmt-macs-v1";
const RECORD_MAC_SALT: &[u8] = b"mmt-record-mac";
const RECORD_MAC_INFO: &[u8] = b"v2";
/// What derives the audit log's key (CONTRACT.md §12) from the master key.
const AUDIT_SALT: &[u8] = b"mmt-audit";
const AUDIT_INFO: &[u8] = b"v1";

/// A wrapped data key: `nonce || sealed key || tag`.
const WRAPPED_BYTES: usize = XCHACHA_NONCESIZE + KEY_BYTES + POLY1305_OUTSIZE;
/// The first byte of a wrapped key that names its key id (`K`, then the id
/// in 4 bytes big-endian, then the wrapped key); one of key id 0 is the
/// wrapped key alone, as every mmt before key rings wrote it.
const WRAPPED_WITH_ID: u8 = b'K';

/// Length of a record tag in bytes.
pub const TAG_BYTES: usize = 32;

/// What can go wrong with keys and seals.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read or created.
    #[error("key file {path}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold a key ring.
    #[error(
        "key file {path}, line {line}: {why} (a key file holds 64 hexadecimal characters, or lines <keyId>:<64 hex>)"
    )]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A seal did not open: wrong key, or bytes that were tampered with or
    /// moved onto another token.
    #[error("authentication failed: wrong key or tampered data")]
    Unseal,
    /// A record is wrapped under a key the ring does not hold.
    #[error("the key ring has no key {id}, which wraps this record")]
    MissingKey {
        /// The key id.
        id: KeyId,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:04o}: it must not be accessible to group or others (chmod 600 it)"
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is absent but the data directory already holds a store:
    /// a new key could never open it.
    #[error(
        "key file {path} does not exist but {data_dir} already holds a store: refusing to create a new key for it (is --key-file right?)"
    )]
    NoKeyForStore {
        /// The key file.
        path: PathBuf,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("random source or cipher failure")]
    Cipher,
}

/// The master keys of a key file: every key by its id, and the active one
/// (the file's last line), which wraps every new data key. Wiped on drop,
/// never printed.
pub struct KeyRing {
    keys: BTreeMap<KeyId, SecretKey>,
    active: KeyId,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing(active {}, ids {:?}, ***)",
            self.active,
            self.keys.keys().collect::<Vec<_>>()
        )
    }
}

impl KeyRing {
    /// Loads the ring from `path`, or creates it (mode 0600, one key of 32
    /// random bytes written as 64 hex characters and a newline: a v1 file,
    /// key id 0) when the file is absent. Returns the ring and whether it
    /// was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        let key_file_error = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(key_file_error)?;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let key = SecretKey::generate().map_err(|_| CryptoError::Cipher)?;
                let hex = Zeroizing::new(hex::encode(key_bytes(&key)));
                file.write_all(hex.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(key_file_error)?;
                Ok((Self::one(key), true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::read(path)?, false))
            }
            Err(e) => Err(key_file_error(e)),
        }
    }

    /// Loads the ring of the store in `data_dir` from `path`; an absent file
    /// is an error, never a new key.
    pub fn load(path: &Path, data_dir: &Path) -> Result<Self, CryptoError> {
        if !path.exists() {
            return Err(CryptoError::NoKeyForStore {
                path: path.to_owned(),
                data_dir: data_dir.to_owned(),
            });
        }
        Self::read(path)
    }

    /// Reads the key file, refusing one that group or others can access.
    pub fn read(path: &Path) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        let mut active = 0;
        for (id, bytes) in keyfile::load(path)? {
            let key = SecretKey::try_from(&bytes[..]).map_err(|_| CryptoError::Cipher)?;
            keys.insert(id, key);
            active = id;
        }
        Ok(Self { keys, active })
    }

    /// A ring of one fresh random key, id 0 (for tests and benchmarks).
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::one(
            SecretKey::generate().map_err(|_| CryptoError::Cipher)?,
        ))
    }

    fn one(key: SecretKey) -> Self {
        Self {
            keys: BTreeMap::from([(0, key)]),
            active: 0,
        }
    }

    /// The id of the key that wraps new data keys.
    pub fn active(&self) -> KeyId {
        self.active
    }

    /// Every key id of the ring, in order.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Whether the ring holds key `id`.
    pub fn has(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    fn key(&self, id: KeyId) -> Result<&SecretKey, CryptoError> {
        self.keys.get(&id).ok_or(CryptoError::MissingKey { id })
    }

    fn active_key(&self) -> Result<&SecretKey, CryptoError> {
        self.key(self.active)
    }

    /// The store's own keys, derived from key `id` (the store's first key).
    pub fn derive_macs(&self, id: KeyId) -> Result<Macs, CryptoError> {
        Macs::derive(key_bytes(self.key(id)?))
    }

    /// `macs` sealed under the active key, naming it: what the store keeps.
    pub fn seal_macs(&self, macs: &Macs) -> Result<Vec<u8>, CryptoError> {
        let mut plain = Zeroizing::new([0u8; 2 * KEY_BYTES]);
        plain[..KEY_BYTES].copy_from_slice(macs.record_mac.unprotected_as_ref::<[u8]>());
        plain[KEY_BYTES..].copy_from_slice(&macs.audit[..]);
        let mut out = self.active.to_be_bytes().to_vec();
        out.extend(seal(self.active_key()?, &plain[..], MACS_AD)?);
        Ok(out)
    }

    /// The id of the key that sealed `sealed` ([`KeyRing::seal_macs`]).
    pub fn macs_key_id(sealed: &[u8]) -> Result<KeyId, CryptoError> {
        sealed
            .get(..4)
            .and_then(|id| id.try_into().ok())
            .map(KeyId::from_be_bytes)
            .ok_or(CryptoError::Unseal)
    }

    /// Opens what [`KeyRing::seal_macs`] sealed.
    pub fn open_macs(&self, sealed: &[u8]) -> Result<Macs, CryptoError> {
        let id = Self::macs_key_id(sealed)?;
        let plain = open(self.key(id)?, &sealed[4..], MACS_AD)?;
        if plain.len() != 2 * KEY_BYTES {
            return Err(CryptoError::Unseal);
        }
        Macs::from_parts(&plain[..KEY_BYTES], &plain[KEY_BYTES..])
    }

    /// The key check value of key `id`, to store beside the data.
    pub fn check_value(&self, id: KeyId) -> Result<Vec<u8>, CryptoError> {
        seal(self.key(id)?, KCV_PLAINTEXT, KCV_AD)
    }

    /// Whether `kcv` was made by key `id` of this ring (false when the ring
    /// has no such key).
    pub fn verify_check_value(&self, id: KeyId, kcv: &[u8]) -> bool {
        self.keys.get(&id).is_some_and(
            |key| matches!(open(key, kcv, KCV_AD), Ok(plain) if plain.as_slice() == KCV_PLAINTEXT),
        )
    }

    /// Seals `secrets` for `token_id` under a fresh data key, wrapped by the
    /// active key. `binding` (the clientId and scope, say) is bound too.
    /// Returns (sealed secrets, wrapped data key).
    pub fn seal_token(
        &self,
        token_id: &str,
        binding: &[u8],
        secrets: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let data_key = SecretKey::generate().map_err(|_| CryptoError::Cipher)?;
        let sealed = seal(&data_key, secrets, &record_ad(token_id, binding))?;
        Ok((sealed, self.wrap(token_id, &data_key)?))
    }

    /// Opens what [`KeyRing::seal_token`] sealed, with the key its wrapped
    /// data key names.
    pub fn open_token(
        &self,
        token_id: &str,
        binding: &[u8],
        sealed: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let data_key = self.unwrap(token_id, wrapped)?;
        open(&data_key, sealed, &record_ad(token_id, binding))
    }

    /// `wrapped` wrapped again under the active key, when an older key
    /// wraps it; `None` when the active key (or a newer one) already does.
    pub fn rewrap(&self, token_id: &str, wrapped: &[u8]) -> Result<Option<Vec<u8>>, CryptoError> {
        if wrapped_key_id(wrapped)? >= self.active {
            return Ok(None);
        }
        let data_key = self.unwrap(token_id, wrapped)?;
        self.wrap(token_id, &data_key).map(Some)
    }

    fn wrap(&self, token_id: &str, data_key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        let sealed = seal(self.active_key()?, key_bytes(data_key), &wrap_ad(token_id))?;
        if self.active == 0 {
            return Ok(sealed);
        }
        let mut out = Vec::with_capacity(5 + sealed.len());
        out.push(WRAPPED_WITH_ID);
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, token_id: &str, wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        let id = wrapped_key_id(wrapped)?;
        let body = if id == 0 { wrapped } else { &wrapped[5..] };
        let bytes = open(self.key(id)?, body, &wrap_ad(token_id))?;
        SecretKey::try_from(bytes.as_slice()).map_err(|_| CryptoError::Unseal)
    }
}

#[cfg(test)]
impl KeyRing {
    /// The same ring with a fresh key after the last, active (a rotation
    /// without a file, for tests).
    pub(crate) fn rotated(&self) -> Self {
        let mut keys = self.copied();
        let id = self.keys.keys().next_back().map_or(0, |last| last + 1);
        keys.insert(id, SecretKey::generate().expect("random key"));
        Self { keys, active: id }
    }

    /// The same ring without key `id` (its line deleted).
    pub(crate) fn without(&self, id: KeyId) -> Self {
        let mut keys = self.copied();
        keys.remove(&id);
        Self {
            keys,
            active: self.active,
        }
    }

    fn copied(&self) -> BTreeMap<KeyId, SecretKey> {
        self.keys
            .iter()
            .map(|(id, key)| (*id, SecretKey::try_from(key_bytes(key)).expect("a key")))
            .collect()
    }
}

/// The id of the key that wraps `wrapped` (a data key as
/// [`KeyRing::seal_token`] returns it).
pub fn wrapped_key_id(wrapped: &[u8]) -> Result<KeyId, CryptoError> {
    match wrapped.len() {
        WRAPPED_BYTES => Ok(0),
        n if n == WRAPPED_BYTES + 5 && wrapped[0] == WRAPPED_WITH_ID => wrapped[1..5]
            .try_into()
            .map(KeyId::from_be_bytes)
            .map_err(|_| CryptoError::Unseal),
        _ => Err(CryptoError::Unseal),
    }
}

/// The store's own keys: the record tag's key and the audit log's key.
/// Derived once from the store's first key, then kept sealed under the
/// active key ([`KeyRing::seal_macs`]). Wiped on drop, never printed.
pub struct Macs {
    record_mac: orion::auth::SecretKey,
    audit: Zeroizing<[u8; KEY_BYTES]>,
}

impl std::fmt::Debug for Macs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Macs(***)")
    }
}

impl Macs {
    fn derive(master: &[u8]) -> Result<Self, CryptoError> {
        let mut record = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<SHA256>::derive_key(
            RECORD_MAC_SALT,
            master,
            Some(RECORD_MAC_INFO),
            &mut record[..],
        )
        .map_err(|_| CryptoError::Cipher)?;
        let mut audit = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<SHA256>::derive_key(AUDIT_SALT, master, Some(AUDIT_INFO), &mut audit[..])
            .map_err(|_| CryptoError::Cipher)?;
        Self::from_parts(&record[..], &audit[..])
    }

    fn from_parts(record: &[u8], audit: &[u8]) -> Result<Self, CryptoError> {
        let record_mac =
            orion::auth::SecretKey::try_from(record).map_err(|_| CryptoError::Cipher)?;
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        if audit.len() != KEY_BYTES {
            return Err(CryptoError::Cipher);
        }
        bytes.copy_from_slice(audit);
        Ok(Self {
            record_mac,
            audit: bytes,
        })
    }

    /// Fresh store keys derived from a fresh random key (tests).
    pub fn generate() -> Result<Self, CryptoError> {
        let key = SecretKey::generate().map_err(|_| CryptoError::Cipher)?;
        Self::derive(key_bytes(&key))
    }

    /// The audit log's key: it names tokens in the log and chains its lines.
    pub fn audit_key(&self) -> Result<crate::rules::audit::AuditKey, CryptoError> {
        crate::rules::audit::AuditKey::from_bytes(&self.audit).ok_or(CryptoError::Cipher)
    }

    /// The tag that authenticates a stored record of `token_id`.
    pub fn record_tag(&self, token_id: &str, record: &[u8]) -> Result<Vec<u8>, CryptoError> {
        orion::auth::authenticate(&self.record_mac, &record_mac_input(token_id, record))
            .map(|tag| tag.unprotected_as_ref::<[u8]>().to_vec())
            .map_err(|_| CryptoError::Cipher)
    }

    /// Checks a tag made by [`Macs::record_tag`].
    pub fn verify_record_tag(
        &self,
        token_id: &str,
        record: &[u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let tag = orion::auth::Tag::try_from(tag).map_err(|_| CryptoError::Unseal)?;
        orion::auth::authenticate_verify(
            &tag,
            &self.record_mac,
            &record_mac_input(token_id, record),
        )
        .map_err(|_| CryptoError::Unseal)
    }
}

fn record_mac_input(token_id: &str, record: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(16 + token_id.len() + record.len());
    input.extend_from_slice(b"mmt-record-v2\0");
    input.extend_from_slice(&(token_id.len() as u32).to_be_bytes());
    input.extend_from_slice(token_id.as_bytes());
    input.extend_from_slice(record);
    input
}

fn key_bytes(key: &SecretKey) -> &[u8] {
    key.unprotected_as_ref::<[u8]>()
}

fn record_ad(token_id: &str, binding: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(16 + token_id.len() + binding.len());
    ad.extend_from_slice(b"mmt-rec-v1\0");
    ad.extend_from_slice(&(token_id.len() as u32).to_be_bytes());
    ad.extend_from_slice(token_id.as_bytes());
    ad.extend_from_slice(binding);
    ad
}

fn wrap_ad(token_id: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(16 + token_id.len());
    ad.extend_from_slice(b"mmt-dk-v1\0");
    ad.extend_from_slice(token_id.as_bytes());
    ad
}

/// `nonce || ciphertext || tag`.
fn seal(key: &SecretKey, plaintext: &[u8], ad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = Nonce::generate().map_err(|_| CryptoError::Cipher)?;
    let mut out = vec![0u8; XCHACHA_NONCESIZE + plaintext.len() + POLY1305_OUTSIZE];
    out[..XCHACHA_NONCESIZE].copy_from_slice(nonce.as_ref());
    XChaCha20Poly1305::seal(
        key,
        &nonce,
        plaintext,
        Some(ad),
        &mut out[XCHACHA_NONCESIZE..],
    )
    .map_err(|_| CryptoError::Cipher)?;
    Ok(out)
}

fn open(key: &SecretKey, sealed: &[u8], ad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < XCHACHA_NONCESIZE + POLY1305_OUTSIZE {
        return Err(CryptoError::Unseal);
    }
    let (nonce, body) = sealed.split_at(XCHACHA_NONCESIZE);
    let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Unseal)?;
    let mut out = Zeroizing::new(vec![0u8; body.len() - POLY1305_OUTSIZE]);
    XChaCha20Poly1305::open(key, &nonce, body, Some(ad), &mut out)
        .map_err(|_| CryptoError::Unseal)?;
    Ok(out)
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A ring of keys 0 and 1 (1 active) sharing key 0 with `ring`.
    fn rotated(dir: &Path) -> (KeyRing, KeyRing) {
        let path = dir.join("mmt.key");
        let (old, _) = KeyRing::load_or_create(&path).expect("creates");
        keyfile::rotate(&path).expect("rotates");
        (old, KeyRing::read(&path).expect("reads"))
    }

    #[test]
    fn token_round_trips_and_is_bound_to_its_token_id() {
        let key = KeyRing::generate().expect("random key");
        let (sealed, wrapped) = key
            .seal_token("tok_a", b"acme|read", b"secret")
            .expect("seals");
        let plain = key
            .open_token("tok_a", b"acme|read", &sealed, &wrapped)
            .expect("opens");
        assert_eq!(plain.as_slice(), b"secret");
        assert!(
            key.open_token("tok_b", b"acme|read", &sealed, &wrapped)
                .is_err()
        );
        assert!(
            key.open_token("tok_a", b"acme|write", &sealed, &wrapped)
                .is_err()
        );
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn another_key_fails_the_check_value_and_the_seals() {
        let key = KeyRing::generate().expect("random key");
        let other = KeyRing::generate().expect("random key");
        let kcv = key.check_value(0).expect("seals");
        assert!(key.verify_check_value(0, &kcv));
        assert!(!other.verify_check_value(0, &kcv));
        assert!(!key.verify_check_value(1, &kcv));
        let (sealed, wrapped) = key.seal_token("t", b"", b"x").expect("seals");
        assert!(other.open_token("t", b"", &sealed, &wrapped).is_err());
    }

    #[test]
    fn a_rotated_ring_opens_old_data_keys_wraps_new_ones_under_its_active_key_and_rewraps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, ring) = rotated(dir.path());
        assert_eq!((old.active(), ring.active()), (0, 1));
        let (sealed, wrapped) = old.seal_token("t", b"b", b"x").expect("seals");
        assert_eq!(
            wrapped.len(),
            WRAPPED_BYTES,
            "key 0 wraps as every mmt before rings did"
        );
        assert_eq!(wrapped_key_id(&wrapped).expect("an id"), 0);
        assert_eq!(
            &ring
                .open_token("t", b"b", &sealed, &wrapped)
                .expect("opens")[..],
            b"x"
        );
        let rewrapped = ring.rewrap("t", &wrapped).expect("rewraps").expect("older");
        assert_eq!(wrapped_key_id(&rewrapped).expect("an id"), 1);
        assert_eq!(
            &ring
                .open_token("t", b"b", &sealed, &rewrapped)
                .expect("opens")[..],
            b"x"
        );
        assert!(ring.rewrap("t", &rewrapped).expect("rewraps").is_none());
        assert!(matches!(
            old.open_token("t", b"b", &sealed, &rewrapped),
            Err(CryptoError::MissingKey { id: 1 })
        ));
        assert!(ring.rewrap("u", &wrapped).is_err(), "bound to its tokenId");
        let (_, new) = ring.seal_token("t", b"b", b"y").expect("seals");
        assert_eq!(wrapped_key_id(&new).expect("an id"), 1);
        let mut renamed = new.clone();
        renamed[4] = 0;
        assert!(matches!(
            ring.open_token("t", b"b", &sealed, &renamed),
            Err(CryptoError::MissingKey { id: 0x0100_0000 }) | Err(CryptoError::Unseal)
        ));
    }

    #[test]
    fn the_store_keys_outlive_the_key_that_sealed_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, ring) = rotated(dir.path());
        let macs = old.derive_macs(0).expect("derives");
        let tag = macs.record_tag("t", b"record").expect("tags");
        let sealed = ring.seal_macs(&macs).expect("seals");
        assert_eq!(KeyRing::macs_key_id(&sealed).expect("an id"), 1);
        let opened = ring.open_macs(&sealed).expect("opens");
        assert!(opened.verify_record_tag("t", b"record", &tag).is_ok());
        assert!(matches!(
            old.open_macs(&sealed),
            Err(CryptoError::MissingKey { id: 1 })
        ));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ring.open_macs(&bad).is_err());
        assert_eq!(
            macs.audit_key().expect("key").token_ref("t"),
            opened.audit_key().expect("key").token_ref("t")
        );
    }

    #[test]
    fn record_tags_bind_the_token_id_the_bytes_and_the_key() {
        let key = Macs::generate().expect("random key");
        let other = Macs::generate().expect("random key");
        let tag = key.record_tag("tok_a", b"record").expect("tags");
        assert_eq!(tag.len(), TAG_BYTES);
        assert!(key.verify_record_tag("tok_a", b"record", &tag).is_ok());
        assert!(key.verify_record_tag("tok_b", b"record", &tag).is_err());
        assert!(key.verify_record_tag("tok_a", b"recorD", &tag).is_err());
        assert!(other.verify_record_tag("tok_a", b"record", &tag).is_err());
        assert!(
            key.verify_record_tag("tok_a", b"record", &tag[1..])
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        let (key, created) = KeyRing::load_or_create(&path).expect("creates");
        assert!(created);
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = KeyRing::load_or_create(&path).expect("loads");
        assert!(!created);
        assert!(again.verify_check_value(0, &key.check_value(0).expect("seals")));
        assert_eq!(
            std::fs::read_to_string(&path).expect("reads").trim().len(),
            64
        );
    }

    #[test]
    fn a_key_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        KeyRing::load_or_create(&path).expect("creates");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match KeyRing::load_or_create(&path) {
                Err(error @ CryptoError::KeyFileMode { .. }) => {
                    let text = error.to_string();
                    assert!(text.contains(&path.display().to_string()), "{text}");
                    assert!(text.contains(&format!("{mode:04o}")), "{text}");
                }
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(KeyRing::load_or_create(&path).is_ok());
    }

    #[test]
    fn an_absent_key_file_for_an_existing_store_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.key");
        assert!(matches!(
            KeyRing::load(&path, dir.path()),
            Err(CryptoError::NoKeyForStore { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn a_key_file_without_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        std::fs::write(&path, "not hex").expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            KeyRing::load_or_create(&path),
            Err(CryptoError::KeyFormat { line: 1, .. })
        ));
    }
}
