//! `mmt-worker restore --from FILE --data-dir D`: a backup file into a new
//! data directory, never half written.
//!
//! The key is checked against the backup's header before anything is
//! written (a wrong key: nothing happens). The rows are imported
//! (`Change::import`, as `store copy` does: indexes and counts rebuilt, each
//! token record checked against the key) into a directory of its own beside
//! `D`, `.D.restore-<id>`; the file's digest and tag are checked at its end,
//! then the restored store against the backup (the counts, a sample of
//! tokens opened with the key). Only then is the directory marked restored
//! (`store::restored`: no worker serves it before `store release`), synced,
//! and renamed to `D`, which must be absent or empty. A restore that fails
//! removes its directory; one that is killed leaves it beside `D` (never
//! `D`), and the next restore into `D` removes it.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use mmt_shared::time_fmt::{now_millis, rfc3339};

use super::progress::Progress;
use super::store_copy::sampled;
use crate::store::backup::{BackupError, Header, Reader, Totals, counts_of};
use crate::store::copy::Table;
use crate::store::crypto::{CryptoError, KeyRing, Macs};
use crate::store::restored::{self, Restored};
use crate::store::{Decision, Found, Store, StoreError};

/// Rows per commit.
const PAGE: usize = 1_000;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup file.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The restored store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file.
    #[error(transparent)]
    Key(#[from] CryptoError),
    /// The destination holds something.
    #[error(
        "the data directory {path} is not empty: a restore writes only into an absent or empty directory"
    )]
    NotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// Another restore into the same destination is running.
    #[error("another restore into {path} is running")]
    Busy {
        /// The destination.
        path: PathBuf,
    },
    /// A directory could not be read, made, removed or renamed.
    #[error("cannot prepare {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The restored store does not match the backup.
    #[error("the restored store does not match the backup: {0}")]
    Mismatch(String),
    /// The restore was stopped before its end.
    #[error("the restore was stopped before its end")]
    Stopped,
}

/// A restore done.
#[derive(Debug)]
pub struct Done {
    /// What the backup says of itself.
    pub header: Header,
    /// The rows restored, by table.
    pub totals: Totals,
    /// Tokens whose secrets were opened with the key after the restore.
    pub opened: usize,
    /// The mark the data directory carries.
    pub mark: Restored,
}

/// Restores the backup `from` into `data_dir` with the key in `key_file`,
/// then opens `sample` tokens with it; `go_on` is told the progress after
/// each commit and stops the restore by answering `false` (nothing is left
/// behind).
pub fn restore(
    from: &Path,
    data_dir: &Path,
    key_file: &Path,
    sample: usize,
    go_on: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Done, RestoreError> {
    let dir_error = |path: &Path| {
        let path = path.to_owned();
        move |source| RestoreError::Dir { path, source }
    };
    if holds_anything(data_dir).map_err(dir_error(data_dir))? {
        return Err(RestoreError::NotEmpty {
            path: data_dir.to_owned(),
        });
    }
    // A key file that is absent is named with the backup, which holds the
    // store that needs it.
    let key = KeyRing::load(key_file, from)?;
    let file = File::open(from).map_err(BackupError::Io)?;
    let reader = Reader::open(BufReader::with_capacity(1 << 16, file))?;
    let macs = reader.check_key(&key)?;
    let seed = reader.header().ring_state()?;
    let (parent, name) = split(data_dir);
    remove_leftovers(&parent, &name, data_dir)?;
    let work = parent.join(format!(
        ".{name}.restore-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    let done = (|| {
        let store = Store::open_seeded(&work, KeyRing::load(key_file, from)?, &seed)?;
        let done = into(reader, &macs, store, &work, sample, go_on)?;
        move_into_place(&work, data_dir, &parent)?;
        Ok(done)
    })();
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    done
}

/// Whether `dir` exists and holds anything.
fn holds_anything(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The destination's parent directory and name.
fn split(data_dir: &Path) -> (PathBuf, String) {
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = data_dir
        .file_name()
        .map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned());
    (parent, name)
}

/// Removes what killed restores into `data_dir` left beside it; refuses
/// when another restore is running (its store's lock is held).
fn remove_leftovers(parent: &Path, name: &str, data_dir: &Path) -> Result<(), RestoreError> {
    let prefix = format!(".{name}.restore-");
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RestoreError::Dir {
                path: parent.to_owned(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        if in_use(&path) {
            return Err(RestoreError::Busy {
                path: data_dir.to_owned(),
            });
        }
        std::fs::remove_dir_all(&path).map_err(|source| RestoreError::Dir { path, source })?;
    }
    Ok(())
}

/// Whether a process holds the store in `dir` (its lock file locked).
fn in_use(dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(dir.join("lock")) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Imports the backup into a new store in `work`, checks the file's end and
/// the store against it, and marks it restored.
fn into<R: std::io::Read>(
    mut reader: Reader<R>,
    key: &Macs,
    store: Store,
    work: &Path,
    sample: usize,
    go_on: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Done, RestoreError> {
    let header = reader.header().clone();
    let mut progress = Progress::start(Table::Tokens, header.tokens(), "restored");
    loop {
        let mut rows = Vec::with_capacity(PAGE);
        while rows.len() < PAGE {
            match reader.next_row()? {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        let Some(first) = rows.first() else {
            break;
        };
        progress.at(first.table());
        store
            .write(|tx| {
                for row in &rows {
                    tx.import(row.clone())?;
                }
                Ok(Decision::Commit(()))
            })
            .map_err(|e| match e {
                // The key is the backup's (its header said so): a record
                // that does not open with it was changed.
                StoreError::Crypto(_) | StoreError::Decode(_) => {
                    RestoreError::Backup(BackupError::Damaged {
                        what: "a token record does not verify with the key",
                    })
                }
                e => e.into(),
            })?;
        for row in &rows {
            progress.at(row.table());
            progress.done += 1;
        }
        if !go_on(&progress) {
            return Err(RestoreError::Stopped);
        }
    }
    let totals = reader.finish(key)?;
    let counts = counts_of(&store.counts()?);
    if counts != header.counts {
        return Err(RestoreError::Mismatch(format!(
            "counts differ: backup {:?}, restored {counts:?}",
            header.counts
        )));
    }
    let opened = sampled(&store, sample, |token_id| opens(&store, token_id))?;
    let mark = Restored {
        backup_taken_at: header.taken_at.clone(),
        backup_taken_at_ms: header.taken_at_ms,
        restored_at: rfc3339(now_millis()),
    };
    restored::write(work, &mark)?;
    store.flush_blocking()?;
    drop(store);
    Ok(Done {
        header,
        totals,
        opened,
        mark,
    })
}

/// Opens a live token's secrets with the store's key.
fn opens(store: &Store, token_id: &str) -> Result<(), RestoreError> {
    match store.find(token_id)? {
        Found::Live {
            meta,
            sealed,
            wrapped,
        } => {
            store.open_secrets(token_id, &meta, &sealed, &wrapped)?;
            Ok(())
        }
        Found::Revoked(_) => Ok(()),
        Found::Missing => Err(RestoreError::Mismatch(format!(
            "token {token_id} is listed but not found"
        ))),
    }
}

/// Renames `work` to `data_dir` (absent, or an empty directory) and syncs
/// their parent.
fn move_into_place(work: &Path, data_dir: &Path, parent: &Path) -> Result<(), RestoreError> {
    if holds_anything(data_dir).map_err(|source| RestoreError::Dir {
        path: data_dir.to_owned(),
        source,
    })? {
        return Err(RestoreError::NotEmpty {
            path: data_dir.to_owned(),
        });
    }
    std::fs::rename(work, data_dir)
        .and_then(|()| File::open(parent)?.sync_all())
        .map_err(|source| RestoreError::Dir {
            path: data_dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
