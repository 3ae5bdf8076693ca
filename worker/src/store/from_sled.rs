//! Moving a data directory written by sled (mmt up to the engine switch)
//! into fjall: every key is copied as it is (a v1 directory's keys too; the
//! format migration runs on fjall afterwards, see [`super::migrate`]).
//!
//! The copy goes to `fjall.import` beside sled's files, in batches, and is
//! made durable; only then is it renamed to `fjall` (one atomic rename), and
//! only after that are sled's files removed. So a worker killed at any point
//! loses nothing: a `fjall.import` left behind is an unfinished copy,
//! discarded and started again from sled's untouched files at the next open;
//! sled files beside a `fjall` directory are the leftovers of a finished
//! import, removed at the next open.

use std::path::Path;

use super::StoreError;
use super::kv::{self, Kv};

/// The copy in progress.
const IMPORT_DIR: &str = "fjall.import";
/// Keys copied in one batch.
const BATCH: usize = 4096;

/// Whether `data` holds sled's files.
fn has_sled_files(data: &Path) -> bool {
    data.join("conf").exists() || data.join("db").exists()
}

/// sled's files and directories in `data`.
fn sled_files(data: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.") {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Imports sled's files in `data` into fjall when they are there and no
/// finished import is (the caller holds the data directory's lock); copies at most `limit` keys (the worker passes
/// `usize::MAX`; tests stop early to play a kill). Returns how many keys it
/// copied, and whether the import is finished (or there was none to do).
pub(super) fn import(
    data: &Path,
    cache_mb: u64,
    limit: usize,
) -> Result<(usize, bool), StoreError> {
    let io = |source: std::io::Error| StoreError::Import {
        path: data.to_owned(),
        detail: source.to_string(),
    };
    let target = data.join(kv::DIR);
    let staging = data.join(IMPORT_DIR);
    if target.exists() {
        for leftover in sled_files(data).map_err(io)? {
            remove(&leftover).map_err(io)?;
        }
        return Ok((0, true));
    }
    if !has_sled_files(data) {
        return Ok((0, true));
    }
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io)?;
    }
    let copied = copy(data, &staging, cache_mb, limit)?;
    if copied.1 {
        std::fs::rename(&staging, &target).map_err(io)?;
        std::fs::File::open(data)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        for file in sled_files(data).map_err(io)? {
            remove(&file).map_err(io)?;
        }
        tracing::info!(keys = copied.0, "store moved from sled to fjall");
    }
    Ok(copied)
}

/// Copies sled's keys into a fresh keyspace at `staging`.
fn copy(
    data: &Path,
    staging: &Path,
    cache_mb: u64,
    limit: usize,
) -> Result<(usize, bool), StoreError> {
    let sled_error = |e: sled::Error| StoreError::Import {
        path: data.to_owned(),
        detail: e.to_string(),
    };
    let db = sled::Config::new()
        .path(data)
        .cache_capacity(cache_mb.saturating_mul(1024 * 1024))
        .open()
        .map_err(sled_error)?;
    let kv = Kv::open(staging, cache_mb)?;
    let mut batch = kv.batch();
    let mut copied = 0;
    let mut finished = true;
    for entry in db.iter() {
        if copied == limit {
            finished = false;
            break;
        }
        let (key, value) = entry.map_err(sled_error)?;
        batch.insert(&key, &value);
        copied += 1;
        if batch.len() == BATCH {
            kv.apply(std::mem::replace(&mut batch, kv.batch()))?;
        }
    }
    if batch.len() > 0 {
        kv.apply(batch)?;
    }
    kv.flush_blocking()?;
    Ok((copied, finished))
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}
