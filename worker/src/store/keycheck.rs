//! What the embedded store knows of the key ring ([`super::ring`]), in its
//! data directory: `keyring` (JSON: the key check value of every key it has
//! seen, its own keys sealed), read before the engine opens, so a wrong
//! key is refused before anything is written, and readable while a worker
//! holds the store (`audit verify` takes the audit key from it). A store
//! from before key rings has `key-check` instead (the check value of key
//! 0): it is read as such and replaced by `keyring` at its first start.
//! Each write is a temporary file synced and renamed over the old one.

use std::path::Path;

use super::StoreError;
use super::ring::{self, RingState};
use crate::store::crypto::{KeyRing, Macs};

const LEGACY_FILE: &str = "key-check";
const RING_FILE: &str = "keyring";

/// Whether `dir` already holds a store: anything in it but the temporary
/// file of a first start that crashed before its key check was in place.
pub fn holds_a_store(dir: &Path) -> bool {
    let tmps = [
        std::ffi::OsString::from(format!("{LEGACY_FILE}.tmp")),
        std::ffi::OsString::from(format!("{RING_FILE}.tmp")),
    ];
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| !tmps.contains(&entry.file_name()))
    })
}

/// What the store in `dir` knows of the ring; `None` for a new, empty data
/// directory.
pub fn read_state(dir: &Path) -> Result<Option<RingState>, StoreError> {
    let path = dir.join(RING_FILE);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::KeyCheck { path, source }
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    detail: format!("the key ring file does not parse: {e}"),
                });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&path)(e)),
    }
    let legacy = dir.join(LEGACY_FILE);
    match std::fs::read(&legacy) {
        Ok(check) => Ok(Some(RingState {
            checks: [(0, check)].into(),
            macs: None,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if holds_a_store(dir) {
                return Err(StoreError::MissingKeyCheck {
                    path: dir.to_owned(),
                });
            }
            Ok(None)
        }
        Err(e) => Err(io_error(&legacy)(e)),
    }
}

/// Replaces what the store in `dir` knows of the ring (atomically; the
/// legacy `key-check` goes once `keyring` is in place).
pub(super) fn write_state(dir: &Path, state: &RingState) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(RING_FILE);
    let tmp = dir.join(format!("{RING_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        match std::fs::remove_file(dir.join(LEGACY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| StoreError::KeyCheck { path, source })
}

/// Checks `ring` against the data directory and opens the store's own keys,
/// or, for a new, empty data directory, creates it (mode 0700) with the
/// ring's state. A `keyring.tmp` or `key-check.tmp` alone is what a first
/// start that crashed leaves: it is replaced. A new store takes `seed`
/// when given (a copy or a restore keeps its source's own keys), else the
/// ring's. Returns the store's keys.
pub(super) fn check_key(
    dir: &Path,
    ring: &KeyRing,
    seed: Option<&RingState>,
) -> Result<Macs, StoreError> {
    if let Some(state) = read_state(dir)? {
        return ring::open_macs(&state, ring, |_| StoreError::WrongKey {
            path: dir.to_owned(),
        });
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::KeyCheck {
            path: dir.to_owned(),
            source,
        })?;
    let _ = std::fs::remove_file(dir.join(format!("{LEGACY_FILE}.tmp")));
    let wrong = |_| StoreError::WrongKey {
        path: dir.to_owned(),
    };
    let (state, macs) = match seed {
        Some(seed) => (seed.clone(), ring::open_macs(seed, ring, wrong)?),
        None => ring::fresh(ring)?,
    };
    write_state(dir, &state)?;
    Ok(macs)
}

/// The audit log's key of the store in `dir`, from what it knows of the
/// ring (read while a worker holds the store: `audit verify`).
pub fn audit_key(dir: &Path, ring: &KeyRing) -> Result<crate::rules::audit::AuditKey, StoreError> {
    let state = read_state(dir)?.ok_or_else(|| StoreError::MissingKeyCheck {
        path: dir.to_owned(),
    })?;
    let macs = ring::open_macs(&state, ring, |_| StoreError::WrongKey {
        path: dir.to_owned(),
    })?;
    Ok(macs.audit_key()?)
}
