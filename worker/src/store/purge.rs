//! Physical deletion (CONTRACT.md §13): after a revocation, the revoked
//! token's wrapped data key and sealed secrets leave every file of the
//! embedded store, not only its answers.
//!
//! A change that destroys secret material (a revocation; the end of an
//! upstream revocation job, which kept the tokens sealed) writes the purge
//! mark in its own batch and, once committed, is noted in [`Deletions`]. A
//! purge ([`Store::purge`]) takes what is noted, has the engine drop every
//! replaced and removed version from its files (`kv::purge`), then clears
//! the mark unless another deletion came meanwhile; the mark makes a purge
//! due again after a restart that came first. The worker runs purges in the
//! background, within `--purge-within-secs` of a deletion (`app::purge`).
//! PostgreSQL keeps none of its files in the worker's hands: copies there
//! are shredded by retiring the key that wrapped them (docs/security.md).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Engine, Store, StoreError};

/// The name of the purge mark (under the store's marks).
pub(super) const PURGE_MARK: &str = "purge";

/// How long a purge waits for the engine's flush, and for the files its
/// compaction replaced to be deleted, before it gives up (and is run again).
const PATIENCE: Duration = Duration::from_secs(60);

/// The deletions not purged yet, and what the purges did.
#[derive(Default)]
pub struct Deletions {
    /// When the oldest deletion not purged yet was committed.
    pending: Mutex<Option<Instant>>,
    /// Told when a deletion becomes pending.
    wake: Notify,
    runs: AtomicU64,
    failed: AtomicU64,
    last: Mutex<Option<Purge>>,
}

/// What one purge did.
#[derive(Clone, Copy, Debug)]
pub struct Purge {
    /// From its start to its end.
    pub took: Duration,
    /// From the oldest deletion it covered to its end: how long that
    /// deletion's bytes stayed in the files.
    pub lag: Duration,
    /// The flush of the memtable (the journals deleted).
    pub flush: Duration,
    /// The compaction of every segment (the files it replaced deleted).
    pub compaction: Duration,
    /// Segment files the compaction rewrote.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The purges, as `worker.stats` shows them.
#[derive(Clone, Copy, Debug)]
pub struct PurgeStatus {
    /// Whether a deletion waits for a purge.
    pub pending: bool,
    /// Purges done since the store opened.
    pub runs: u64,
    /// Purges that failed (and were run again) since the store opened.
    pub failed: u64,
    /// The last purge done.
    pub last: Option<Purge>,
}

impl Deletions {
    /// Notes a deletion committed at `at`.
    pub(super) fn note(&self, at: Instant) {
        let mut pending = locked(&self.pending);
        if pending.is_none() {
            *pending = Some(at);
            drop(pending);
            self.wake.notify_one();
        }
    }

    /// Puts back the deletions of a purge that failed, committed since
    /// `since`.
    fn restore(&self, since: Instant) {
        let mut pending = locked(&self.pending);
        let was = *pending;
        *pending = Some(was.map_or(since, |at| at.min(since)));
        drop(pending);
        if was.is_none() {
            self.wake.notify_one();
        }
    }

    /// Whether a deletion waits for a purge.
    pub(super) fn is_pending(&self) -> bool {
        locked(&self.pending).is_some()
    }

    /// Waits until a deletion is pending; returns when the oldest was
    /// committed.
    pub async fn pending(&self) -> Instant {
        loop {
            if let Some(at) = *locked(&self.pending) {
                return at;
            }
            self.wake.notified().await;
        }
    }

    /// The purges so far.
    pub fn status(&self) -> PurgeStatus {
        PurgeStatus {
            pending: self.is_pending(),
            runs: self.runs.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last: *locked(&self.last),
        }
    }
}

impl Store {
    /// The embedded store's deletions waiting for a purge; `None` for
    /// PostgreSQL, which the worker does not purge.
    pub fn deletions(&self) -> Option<&Deletions> {
        match &self.engine {
            Engine::Embedded(e) => Some(&e.deletions),
            Engine::Postgres(_) => None,
        }
    }

    /// When a deletion is pending, removes from the store's files every
    /// version replaced or removed before the call, the deleted secrets
    /// with them, and returns what it did; `None` when nothing was pending.
    /// Blocking (seconds for a large store); the store serves meanwhile. A
    /// failed purge leaves its deletions pending.
    pub fn purge(&self) -> Result<Option<Purge>, StoreError> {
        let Engine::Embedded(e) = &self.engine else {
            return Ok(None);
        };
        let deletions = &e.deletions;
        // A deletion is noted after its batch is committed, so whatever is
        // taken here is in the memtable the engine's purge rotates (or older).
        let Some(since) = locked(&deletions.pending).take() else {
            return Ok(None);
        };
        let started = Instant::now();
        let purged = match e.kv.purge(PATIENCE) {
            Ok(purged) => purged,
            Err(error) => {
                deletions.failed.fetch_add(1, Ordering::Relaxed);
                deletions.restore(since);
                return Err(error);
            }
        };
        let purge = Purge {
            took: started.elapsed(),
            lag: since.elapsed(),
            flush: purged.flush,
            compaction: purged.compaction,
            segments: purged.segments,
            bytes: purged.bytes,
        };
        deletions.runs.fetch_add(1, Ordering::Relaxed);
        *locked(&deletions.last) = Some(purge);
        e.clear_purge_mark()?;
        Ok(Some(purge))
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
