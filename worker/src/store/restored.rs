//! The mark a restore leaves in a data directory: the file `restored`
//! (JSON: when the backup was taken, when it was restored). Tokens revoked
//! after the backup was taken are live again in a restored store, so
//! [`Store::open`] refuses a directory that carries the mark, whoever opens
//! it (the worker, `store copy`, a backup), until `mmt-worker store release`
//! has applied the revocations since then ([`Store::open_restored`]) and
//! removed it (docs/security.md, "Backups").

use std::path::Path;

use mmt_shared::time_fmt::UnixMillis;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, check_key};
use crate::store::crypto::KeyRing;

/// The mark's file name in the data directory.
const FILE: &str = "restored";

/// What the mark says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// When the backup was taken (RFC 3339): revocations after it are not
    /// in the store.
    pub backup_taken_at: String,
    /// The same, in Unix milliseconds.
    pub backup_taken_at_ms: UnixMillis,
    /// When it was restored (RFC 3339).
    pub restored_at: String,
}

fn io_error(dir: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::RestoredMark {
        path: dir.join(FILE),
        source,
    }
}

/// The mark of `dir`, if it has one. A mark that does not parse still
/// holds the directory (its moment unknown).
pub fn read(dir: &Path) -> Result<Option<Restored>, StoreError> {
    match std::fs::read(dir.join(FILE)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Restored {
                backup_taken_at: "an unknown time (the mark does not parse)".to_owned(),
                backup_taken_at_ms: 0,
                restored_at: String::new(),
            }
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// Refuses a data directory that carries the mark.
pub(super) fn refuse_held(dir: &Path) -> Result<(), StoreError> {
    match read(dir)? {
        Some(mark) => Err(StoreError::Restored {
            path: dir.to_owned(),
            taken_at: mark.backup_taken_at,
        }),
        None => Ok(()),
    }
}

/// Marks `dir` (durably: the file and the directory are synced).
pub fn write(dir: &Path, mark: &Restored) -> Result<(), StoreError> {
    let error = io_error(dir);
    let bytes = serde_json::to_vec_pretty(mark).map_err(|e| error(e.into()))?;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(dir.join(FILE))?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(error)
}

/// Removes the mark of `dir` (durably).
pub fn remove(dir: &Path) -> Result<(), StoreError> {
    let remove = || -> std::io::Result<()> {
        std::fs::remove_file(dir.join(FILE))?;
        std::fs::File::open(dir)?.sync_all()
    };
    remove().map_err(io_error(dir))
}

impl Store {
    /// Makes everything committed so far durable, from a blocking thread
    /// (restore and release, which write and then close the store).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        match &self.engine {
            super::Engine::Embedded(e) => e.kv.flush_blocking(),
            super::Engine::Postgres(_) => Ok(()),
        }
    }

    /// Opens a restored store to release it: as [`Store::open`], but a
    /// directory that carries the mark is opened (one without is refused:
    /// there is nothing to release). Gives the mark.
    pub fn open_restored(dir: &Path, key: KeyRing) -> Result<(Self, Restored), StoreError> {
        let Some(mark) = read(dir)? else {
            return Err(StoreError::NotRestored {
                path: dir.to_owned(),
            });
        };
        let macs = check_key(dir, &key, None)?;
        Ok((
            Self::open_engine(dir, key, macs, super::DEFAULT_CACHE_MB)?,
            mark,
        ))
    }
}
