//! A read of the keyspace frozen at one moment (a backup's): one iterator
//! per key prefix, all of them reading the versions written before one
//! sequence number, whatever is written or compacted while they are read.
//!
//! How it holds: each iterator keeps the memtables and the segments that
//! existed when it was made (lsm-tree 2.10's `IterState`; a segment file
//! that a compaction replaces is deleted only when its last holder lets go,
//! `segment/inner.rs`), and filters out every version at or above the
//! sequence number taken with them. So the iterators are made together
//! while no batch is being applied (the caller holds the store's writer
//! lock), and nothing done after that changes what they read. What it
//! costs: the segment files replaced meanwhile stay on disk until the read
//! ends.
//!
//! A purge (`purge`) waits for every file it replaced to be deleted, so it
//! and a frozen read never overlap: the read holds [`Hold`], shared, and
//! the purge takes it alone, after the read and before the next one.
//!
//! Why not `fjall::Snapshot`: fjall 2.11.2 registers a snapshot with its
//! snapshot tracker, and from the first one on its monitor no longer pulls
//! the compaction's garbage-collection watermark up (`monitor.rs` does so
//! only while the tracker holds no entry, and `snapshot_tracker.rs` keeps
//! closed snapshots' entries): compactions would keep every replaced
//! version until the store is reopened. Nor would a snapshot read that is
//! made page by page be consistent: each page's iterator reads the segments
//! of its own time, and a compaction drops an old version once a newer one
//! exists and the old one is below the watermark
//! (`compaction/stream.rs`), even if the snapshot needs it.

use fjall::AbstractTree;

use super::{Entry, Kv};
use crate::store::StoreError;

/// One prefix's entries, in key order, as they were when it was made.
pub(in crate::store) struct Frozen(Box<dyn DoubleEndedIterator<Item = Entry>>);

impl Iterator for Frozen {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.0.next()
    }
}

/// Keeps purges off while a frozen read lasts.
pub(in crate::store) struct Hold<'a>(#[allow(dead_code)] std::sync::RwLockReadGuard<'a, ()>);

impl Kv {
    /// Waits for a purge in progress to end, then keeps purges off until
    /// the hold is dropped: taken before the frozen iterators are made,
    /// dropped after them.
    pub(in crate::store) fn hold(&self) -> Hold<'_> {
        Hold(self.files.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The entries under `prefix` as they are now, whatever is done
    /// afterwards. Iterators made one after the other while the caller holds
    /// the writer lock read the same moment (no batch is applied meanwhile).
    pub(in crate::store) fn frozen(&self, prefix: u8) -> Frozen {
        let entries = self
            .part
            .tree
            .prefix([prefix], Some(self.keyspace.instant()), None);
        Frozen(Box::new(entries.map(|e| {
            e.map_err(|e| StoreError::from(fjall::Error::from(e)))
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Keys under `prefix` with their values, as text.
    fn read(frozen: Frozen) -> Vec<(String, String)> {
        frozen
            .map(|e| {
                let (k, v) = e.expect("reads");
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }

    fn write(kv: &Kv, puts: &[(&str, &str)], removes: &[&str]) {
        let mut batch = kv.batch();
        for (k, v) in puts {
            batch.insert(k, v);
        }
        for k in removes {
            batch.remove(k);
        }
        kv.apply(batch).expect("applies");
    }

    #[test]
    fn a_purge_waits_for_a_frozen_read_however_long_and_then_purges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(&dir.path().join("fjall"), 8).expect("opens");
        write(&kv, &[("a1", "old")], &[]);
        kv.part.rotate_memtable_and_wait().expect("flushes");
        write(&kv, &[("a1", "new")], &[]);
        let patience = Duration::from_millis(100);
        std::thread::scope(|scope| {
            let hold = kv.hold();
            let a = kv.frozen(b'a');
            let purge = scope.spawn(|| kv.purge(patience));
            // The read lasts longer than the purge's patience: a purge that
            // started meanwhile would wait for the read's files in vain.
            std::thread::sleep(patience * 3);
            assert!(!purge.is_finished());
            assert_eq!(read(a), [("a1".to_owned(), "new".to_owned())]);
            drop(hold);
            purge
                .join()
                .expect("joins")
                .expect("purges once the read ends");
        });
    }

    #[test]
    fn a_frozen_read_sees_neither_later_writes_nor_the_compactions_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(&dir.path().join("fjall"), 8).expect("opens");
        write(&kv, &[("a1", "old"), ("a2", "old"), ("b1", "old")], &[]);
        // Some versions in a segment, some in the memtable.
        kv.part.rotate_memtable_and_wait().expect("flushes");
        write(&kv, &[("a3", "old")], &[]);
        let moment = kv.keyspace.instant();
        let (a, b) = (kv.frozen(b'a'), kv.frozen(b'b'));
        write(&kv, &[("a1", "new"), ("a4", "new"), ("b2", "new")], &["a2"]);
        kv.part.rotate_memtable_and_wait().expect("flushes");
        // Everything into one segment, old versions dropped (the watermark
        // at the newest write).
        kv.part
            .tree
            .major_compact(u64::MAX, kv.keyspace.instant())
            .expect("compacts");
        // The same moment read by an iterator made after the compaction has
        // lost a1 and a2, whose old versions were dropped (the reason the
        // iterators are made up front).
        let late = kv.part.tree.prefix([b'a'], Some(moment), None);
        let late: Vec<_> = late
            .map(|e| String::from_utf8_lossy(&e.expect("reads").0).into_owned())
            .collect();
        assert_eq!(late, ["a3"]);
        assert_eq!(
            read(a),
            [("a1", "old"), ("a2", "old"), ("a3", "old")].map(|(k, v)| (k.into(), v.into()))
        );
        assert_eq!(read(b), [("b1".to_owned(), "old".to_owned())]);
        let now = kv.frozen(b'a');
        assert_eq!(
            read(now),
            [("a1", "new"), ("a3", "old"), ("a4", "new")].map(|(k, v)| (k.into(), v.into()))
        );
    }
}
