//! The key check file beside sled's files: read before sled opens, so a
//! wrong key is refused before anything is written.

use std::path::Path;

use super::StoreError;
use crate::store::crypto::MasterKey;

const KEY_CHECK_FILE: &str = "key-check";

/// Whether `dir` already holds a store: anything in it but the temporary
/// file of a first start that crashed before its key check was in place.
pub fn holds_a_store(dir: &Path) -> bool {
    let tmp = std::ffi::OsString::from(format!("{KEY_CHECK_FILE}.tmp"));
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| entry.file_name() != tmp)
    })
}

/// Verifies `key` against the data directory's key check file, or creates
/// the file (and the directory, mode 0700) for a new, empty data directory.
/// A `key-check.tmp` alone is what a first start that crashed leaves: it is
/// replaced.
pub(super) fn check_key(dir: &Path, key: &MasterKey) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let path = dir.join(KEY_CHECK_FILE);
    let io_error = |source| StoreError::KeyCheck {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(kcv) if key.verify_check_value(&kcv) => Ok(()),
        Ok(_) => Err(StoreError::WrongKey {
            path: dir.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if holds_a_store(dir) {
                return Err(StoreError::MissingKeyCheck {
                    path: dir.to_owned(),
                });
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error)?;
            let tmp = dir.join(format!("{KEY_CHECK_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(
                    &mut file,
                    &key.check_value().map_err(std::io::Error::other)?,
                )?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(io_error)
        }
        Err(e) => Err(io_error(e)),
    }
}
