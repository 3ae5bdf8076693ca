//! The engine under the store: ordered bytes to bytes in one fjall
//! partition, atomic batches, an explicit durable flush, and a purge of
//! replaced and removed versions ([`purge`]). The only module (with its
//! child) that names fjall.
//!
//! The keyspace lives in `fjall/` inside the data directory. fjall takes no
//! lock of its own, so the store holds an exclusive lock on the data
//! directory's `lock` file ([`DirLock`]) for as long as it is open: a second
//! worker on the same directory is refused instead of corrupting it.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};

use super::StoreError;

mod purge;

/// The keyspace's directory inside the data directory.
pub(super) const DIR: &str = "fjall";
/// The one partition every key lives in (the prefixes tell them apart).
pub(super) const PARTITION: &str = "mmt";
const LOCK_FILE: &str = "lock";

mod frozen;
pub(super) use frozen::{Frozen, Hold};

/// A stored key or value.
pub(super) type Bytes = fjall::Slice;

/// One key and its value, or a read error.
pub(super) type Entry = Result<(Bytes, Bytes), StoreError>;

/// The open engine.
pub(super) struct Kv {
    keyspace: fjall::Keyspace,
    part: fjall::PartitionHandle,
    path: PathBuf,
    /// Shared by frozen reads (a backup's), taken alone by a purge: the
    /// segment files a purge waits to see deleted are the ones a frozen
    /// read holds ([`frozen`]).
    files: std::sync::RwLock<()>,
}

/// The data directory's lock, held until dropped.
pub(super) struct DirLock(#[allow(dead_code)] std::fs::File);

/// The writes of one atomic batch.
pub(super) struct Batch<'a> {
    inner: fjall::Batch,
    part: &'a fjall::PartitionHandle,
}

impl Batch<'_> {
    /// Sets `key` to `value`.
    pub(super) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.inner.insert(self.part, key.as_ref(), value.as_ref());
    }

    /// Removes `key`.
    pub(super) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.inner.remove(self.part, key.as_ref());
    }

    /// How many writes the batch holds.
    pub(super) fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Takes the data directory's lock, or says that another process holds it.
pub(super) fn lock(data: &Path) -> Result<DirLock, StoreError> {
    let path = data.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Lock {
            path: data.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Held {
            path: data.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock {
            path: data.to_owned(),
            source,
        }),
    }
}

impl Kv {
    /// Opens (or creates) the keyspace at `keyspace` with a block cache of
    /// `cache_mb` MiB. The caller holds the data directory's [`DirLock`].
    pub(super) fn open(keyspace: &Path, cache_mb: u64) -> Result<Self, StoreError> {
        let open_error = |source| match source {
            fjall::Error::JournalRecovery(_)
            | fjall::Error::InvalidVersion(_)
            | fjall::Error::Decode(_) => StoreError::Corrupt {
                path: keyspace.to_owned(),
                detail: format!("{source:?}"),
            },
            source => StoreError::Open {
                path: keyspace.to_owned(),
                source,
            },
        };
        // Two cores: one thread flushes memtables and one compacts, so the
        // consumer and the broker connection keep the rest.
        let keyspace_handle = fjall::Config::new(keyspace)
            .cache_size(cache_mb.saturating_mul(1024 * 1024))
            .max_write_buffer_size(WRITE_BUFFER)
            .flush_workers(1)
            .compaction_workers(1)
            .fsync_ms(None)
            .open()
            .map_err(open_error)?;
        let part = keyspace_handle
            .open_partition(
                PARTITION,
                fjall::PartitionCreateOptions::default().max_memtable_size(MEMTABLE),
            )
            .map_err(open_error)?;
        Ok(Self {
            keyspace: keyspace_handle,
            part,
            path: keyspace.to_owned(),
            files: std::sync::RwLock::default(),
        })
    }

    /// The value of `key`.
    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, StoreError> {
        Ok(self.part.get(key)?)
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub(super) fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl DoubleEndedIterator<Item = Entry> + 'static {
        self.part
            .prefix(prefix.as_ref().to_vec())
            .map(|e| e.map_err(StoreError::from))
    }

    /// The entries in `range`, in key order.
    pub(super) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Entry> + 'static {
        use std::ops::Bound;
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let bounds = (owned(range.start_bound()), owned(range.end_bound()));
        self.part.range(bounds).map(|e| e.map_err(StoreError::from))
    }

    /// An empty batch.
    pub(super) fn batch(&self) -> Batch<'_> {
        Batch {
            inner: self.keyspace.batch(),
            part: &self.part,
        }
    }

    /// Applies `batch` atomically: readers see all of it or none of it. It
    /// is durable after the next [`Kv::flush`].
    pub(super) fn apply(&self, batch: Batch<'_>) -> Result<(), StoreError> {
        Ok(batch.inner.commit()?)
    }

    /// Makes every applied batch durable (the journal is written and
    /// fsynced). Blocking: the async store runs it on a blocking thread.
    pub(super) fn flush_blocking(&self) -> Result<(), StoreError> {
        self.flusher().flush()
    }

    /// A handle to flush from another thread.
    pub(super) fn flusher(&self) -> Flusher {
        Flusher(self.keyspace.clone())
    }

    /// Bytes the keyspace's files take on disk (blocks allocated: fjall
    /// sizes a new journal ahead, and those bytes are not used until
    /// written).
    pub(super) fn size_on_disk(&self) -> Result<u64, StoreError> {
        allocated(&self.path).map_err(|e| StoreError::Io(fjall::Error::Io(e)))
    }
}

/// Flushes a keyspace from a blocking thread.
pub(super) struct Flusher(fjall::Keyspace);

impl Flusher {
    /// See [`Kv::flush_blocking`].
    pub(super) fn flush(&self) -> Result<(), StoreError> {
        Ok(self.0.persist(fjall::PersistMode::SyncAll)?)
    }
}

/// Memtables (all partitions together) before the oldest is written out.
const WRITE_BUFFER: u64 = 32 * 1024 * 1024;
/// One memtable's size before it is sealed and a new one started.
const MEMTABLE: u32 = 8 * 1024 * 1024;

/// Bytes allocated on disk under `path` (files and directories, walked).
fn allocated(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Compaction removes segments while the walk runs.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}
