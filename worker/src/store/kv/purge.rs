//! Physical deletion in the engine: what fjall keeps of a value that was
//! replaced or removed, and [`Kv::purge`], after which none of it is left
//! in the keyspace's files.
//!
//! fjall 2.11.2 (over lsm-tree 2.10.4) keeps an old version in three places:
//!
//! - **The journal** (`journals/<n>`): every batch is appended to the active
//!   journal. A journal is sealed when the memtable it feeds is rotated and
//!   deleted only once that memtable is flushed into a segment
//!   (`fjall/src/journal/manager.rs`, `maintenance`, run by the flush worker
//!   in `fjall/src/flush/worker.rs`). A memtable rotates when it reaches its
//!   size (8 MiB here), so with little traffic one journal lives for days.
//! - **Segments** (`partitions/mmt/segments/<n>`): a flush or a compaction
//!   drops a version only when a newer version of the same key is in the
//!   same run and the older one is below the garbage-collection watermark
//!   (`lsm-tree/src/compaction/stream.rs`). With no snapshot open that
//!   watermark trails the newest write by 100 sequence numbers; an open
//!   snapshot holds it back (`fjall/src/monitor.rs`,
//!   `fjall/src/snapshot_tracker.rs`). A compaction reads only the segments
//!   it picked, so a version in a level no compaction reaches stays, and a
//!   removal's tombstone leaves only at the last level
//!   (`lsm-tree/src/compaction/worker.rs`).
//! - **Replaced segment files** are deleted when the last reader holding
//!   them lets go (`lsm-tree/src/segment/inner.rs`, `Drop`).
//!
//! The store opens no snapshot and no transaction, so no reader ever needs
//! a version older than the newest. A purge therefore rotates the memtable
//! (sealing the journal that holds everything written so far), waits until
//! the flush has written it out and every journal that existed is deleted,
//! compacts every segment into the last level with the watermark at the
//! newest committed write (`major_compact` of lsm-tree, which fjall's own
//! wrapper calls with its trailing watermark instead), and waits until every
//! segment file that existed before is deleted. Writers are not held back:
//! batches go on into the new memtable and journal while it runs.
//! `rotate_memtable`, the partition's `tree` and `major_compact` are hidden
//! from fjall's documentation, which is one more reason the engine's version
//! is pinned; the store's purge test fails if they stop doing this.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use fjall::AbstractTree;

use super::Kv;
use crate::store::StoreError;

/// The keyspace's journals, inside its directory.
const JOURNALS: &str = "journals";
/// A partition's segment files, inside the partition's directory.
const SEGMENTS: &str = "segments";
/// How often a wait looks again (there is no event to wait on: fjall's own
/// `rotate_memtable_and_wait` polls too).
const POLL: Duration = Duration::from_millis(5);

/// What one purge did.
#[derive(Clone, Copy, Debug)]
pub(in crate::store) struct Purged {
    /// From the rotation until every older journal was deleted (the
    /// memtable flushed).
    pub(in crate::store) flush: Duration,
    /// The compaction, until every older segment file was deleted.
    pub(in crate::store) compaction: Duration,
    /// Segment files rewritten.
    pub(in crate::store) segments: usize,
    /// Their bytes.
    pub(in crate::store) bytes: u64,
}

impl Kv {
    /// Leaves in the keyspace's files only the newest version of every key
    /// written before the call (removed keys: nothing). Blocking, seconds
    /// for a large store; each of its two waits gives up after `patience`
    /// ([`StoreError::PurgeStalled`]).
    pub(in crate::store) fn purge(&self, patience: Duration) -> Result<Purged, StoreError> {
        // Not while a backup reads: its files would never go (`frozen`).
        let _alone = self.files.write().unwrap_or_else(|e| e.into_inner());
        let journals = self.path.join(JOURNALS);
        let before = file_ids(&journals)?;
        let started = Instant::now();
        self.part.rotate_memtable()?;
        wait("the memtable's flush", patience, || {
            // The newest journal is the active one: written since the
            // rotation (or empty, when there was nothing to rotate).
            let now = file_ids(&journals)?;
            let active = now.last().copied();
            Ok(before
                .iter()
                .all(|id| !now.contains(id) || Some(*id) == active))
        })?;
        let flush = started.elapsed();

        let segments = self.part.path().join(SEGMENTS);
        let before = file_ids(&segments)?;
        let bytes = before
            .iter()
            .map(|id| std::fs::metadata(segments.join(id.to_string())).map_or(0, |m| m.len()))
            .sum();
        let started = Instant::now();
        let target = match &self.part.config.compaction_strategy {
            fjall::compaction::Strategy::Leveled(leveled) => u64::from(leveled.target_size),
            _ => u64::MAX,
        };
        // Every committed batch has a sequence number below this one.
        let watermark = self.keyspace.instant();
        self.part
            .tree
            .major_compact(target, watermark)
            .map_err(fjall::Error::from)?;
        wait("the compaction", patience, || {
            let now = file_ids(&segments)?;
            Ok(before.iter().all(|id| !now.contains(id)))
        })?;
        Ok(Purged {
            flush,
            compaction: started.elapsed(),
            segments: before.len(),
            bytes,
        })
    }
}

/// Polls `done` until it holds, for at most `patience`.
fn wait(
    step: &'static str,
    patience: Duration,
    mut done: impl FnMut() -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + patience;
    while !done()? {
        if Instant::now() >= deadline {
            return Err(StoreError::PurgeStalled { step, patience });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The numeric file names in `dir` (journals and segments are numbered),
/// in order; none when `dir` does not exist yet.
fn file_ids(dir: &Path) -> Result<BTreeSet<u64>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(StoreError::Io(fjall::Error::Io(e))),
    };
    let mut ids = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::Io(fjall::Error::Io(e)))?;
        if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.insert(id);
        }
    }
    Ok(ids)
}
