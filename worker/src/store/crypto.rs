//! The master key and envelope encryption (orion XChaCha20-Poly1305).
//!
//! Each token's secrets are sealed under a fresh per-token data key; the data
//! key is sealed (wrapped) under the master key. Both seals bind the tokenId as
//! associated data, so neither a sealed record nor a wrapped key can be moved
//! onto another tokenId. A key check value, sealed under the master key, lets
//! the store refuse a wrong key before anything is read or written. A record
//! tag (keyed BLAKE2b under a key derived from the master key) authenticates
//! each stored record whole, metadata and tombstones included.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use orion::hazardous::aead::xchacha20poly1305::{Nonce, SecretKey, XChaCha20Poly1305};
use orion::hazardous::kdf::hkdf::{Hkdf, SHA256};
use orion::hazardous::mac::poly1305::POLY1305_OUTSIZE;
use orion::hazardous::stream::xchacha20::XCHACHA_NONCESIZE;
use zeroize::Zeroizing;

/// Length of a key in bytes.
pub const KEY_BYTES: usize = 32;

const KCV_PLAINTEXT: &[u8] = b"mmt key check value v1";
const KCV_AD: &[u8] = b"mmt-kcv-v1";
const RECORD_MAC_SALT: &[u8] = b"mmt-record-mac";
const RECORD_MAC_INFO: &[u8] = b"v2";
/// What derives the audit log's key (CONTRACT.md §12) from the master key.
const AUDIT_SALT: &[u8] = b"mmt-audit";
const AUDIT_INFO: &[u8] = b"v1";

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
    /// The key file does not hold a key.
    #[error("key file {path} must hold 64 hexadecimal characters (32 bytes)")]
    KeyFormat {
        /// The key file.
        path: PathBuf,
    },
    /// A seal did not open: wrong key, or bytes that were tampered with or
    /// moved onto another token.
    #[error("authentication failed: wrong key or tampered data")]
    Unseal,
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

/// The master key. It never leaves this module in plain form and is wiped on
/// drop. Beside it, the key that authenticates the store's records, derived
/// from it (HKDF-SHA256), so that no metadata on disk can be changed without
/// the key.
pub struct MasterKey {
    key: SecretKey,
    record_mac: orion::auth::SecretKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Loads the key from `path`, or creates it (mode 0600, 32 random bytes
    /// written as 64 hex characters and a newline) when the file is absent.
    /// Returns the key and whether it was created.
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
                Ok((Self::from_key(key)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::read(path)?, false))
            }
            Err(e) => Err(key_file_error(e)),
        }
    }

    /// Loads the key of the store in `data_dir` from `path`; an absent file
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
    fn read(path: &Path) -> Result<Self, CryptoError> {
        use std::os::unix::fs::PermissionsExt;
        let key_file_error = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(key_file_error)?;
        let mode = file
            .metadata()
            .map_err(key_file_error)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(key_file_error)?;
        let format_error = || CryptoError::KeyFormat {
            path: path.to_owned(),
        };
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| format_error())?);
        let key = SecretKey::try_from(bytes.as_slice()).map_err(|_| format_error())?;
        Self::from_key(key)
    }

    /// A fresh random key (for tests and benchmarks).
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_key(SecretKey::generate().map_err(|_| CryptoError::Cipher)?)
    }

    fn from_key(key: SecretKey) -> Result<Self, CryptoError> {
        let mut derived = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<SHA256>::derive_key(
            RECORD_MAC_SALT,
            key_bytes(&key),
            Some(RECORD_MAC_INFO),
            &mut derived[..],
        )
        .map_err(|_| CryptoError::Cipher)?;
        let record_mac =
            orion::auth::SecretKey::try_from(&derived[..]).map_err(|_| CryptoError::Cipher)?;
        Ok(Self { key, record_mac })
    }

    /// The audit log's key, derived from this one (HKDF-SHA256): it names
    /// tokens in the log and chains its lines.
    pub fn audit_key(&self) -> Result<crate::rules::audit::AuditKey, CryptoError> {
        let mut derived = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<SHA256>::derive_key(
            AUDIT_SALT,
            key_bytes(&self.key),
            Some(AUDIT_INFO),
            &mut derived[..],
        )
        .map_err(|_| CryptoError::Cipher)?;
        crate::rules::audit::AuditKey::from_bytes(&derived).ok_or(CryptoError::Cipher)
    }

    /// The tag that authenticates a stored record of `token_id`.
    pub fn record_tag(&self, token_id: &str, record: &[u8]) -> Result<Vec<u8>, CryptoError> {
        orion::auth::authenticate(&self.record_mac, &record_mac_input(token_id, record))
            .map(|tag| tag.unprotected_as_ref::<[u8]>().to_vec())
            .map_err(|_| CryptoError::Cipher)
    }

    /// Checks a tag made by [`MasterKey::record_tag`].
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

    /// The key check value to store beside the data.
    pub fn check_value(&self) -> Result<Vec<u8>, CryptoError> {
        seal(&self.key, KCV_PLAINTEXT, KCV_AD)
    }

    /// Whether `kcv` was made by this key.
    pub fn verify_check_value(&self, kcv: &[u8]) -> bool {
        matches!(open(&self.key, kcv, KCV_AD), Ok(plain) if plain.as_slice() == KCV_PLAINTEXT)
    }

    /// Seals `secrets` for `token_id` under a fresh data key. `binding` (the
    /// clientId and scope, say) is bound too. Returns (sealed secrets,
    /// wrapped data key).
    pub fn seal_token(
        &self,
        token_id: &str,
        binding: &[u8],
        secrets: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let data_key = SecretKey::generate().map_err(|_| CryptoError::Cipher)?;
        let sealed = seal(&data_key, secrets, &record_ad(token_id, binding))?;
        let wrapped = seal(&self.key, key_bytes(&data_key), &wrap_ad(token_id))?;
        Ok((sealed, wrapped))
    }

    /// Opens what [`MasterKey::seal_token`] sealed.
    pub fn open_token(
        &self,
        token_id: &str,
        binding: &[u8],
        sealed: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let data_key_bytes = open(&self.key, wrapped, &wrap_ad(token_id))?;
        let data_key =
            SecretKey::try_from(data_key_bytes.as_slice()).map_err(|_| CryptoError::Unseal)?;
        open(&data_key, sealed, &record_ad(token_id, binding))
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

    #[test]
    fn token_round_trips_and_is_bound_to_its_token_id() {
        let key = MasterKey::generate().expect("random key");
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
        let key = MasterKey::generate().expect("random key");
        let other = MasterKey::generate().expect("random key");
        let kcv = key.check_value().expect("seals");
        assert!(key.verify_check_value(&kcv));
        assert!(!other.verify_check_value(&kcv));
        let (sealed, wrapped) = key.seal_token("t", b"", b"x").expect("seals");
        assert!(other.open_token("t", b"", &sealed, &wrapped).is_err());
    }

    #[test]
    fn record_tags_bind_the_token_id_the_bytes_and_the_key() {
        let key = MasterKey::generate().expect("random key");
        let other = MasterKey::generate().expect("random key");
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
        let (key, created) = MasterKey::load_or_create(&path).expect("creates");
        assert!(created);
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, created) = MasterKey::load_or_create(&path).expect("loads");
        assert!(!created);
        assert!(again.verify_check_value(&key.check_value().expect("seals")));
    }

    #[test]
    fn a_key_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mmt.key");
        MasterKey::load_or_create(&path).expect("creates");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match MasterKey::load_or_create(&path) {
                Err(error @ CryptoError::KeyFileMode { .. }) => {
                    let text = error.to_string();
                    assert!(text.contains(&path.display().to_string()), "{text}");
                    assert!(text.contains(&format!("{mode:04o}")), "{text}");
                }
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(MasterKey::load_or_create(&path).is_ok());
    }

    #[test]
    fn an_absent_key_file_for_an_existing_store_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.key");
        assert!(matches!(
            MasterKey::load(&path, dir.path()),
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
            MasterKey::load_or_create(&path),
            Err(CryptoError::KeyFormat { .. })
        ));
    }
}
