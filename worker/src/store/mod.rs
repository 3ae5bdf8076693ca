//! The embedded store: one ordered key space ([`kv`], fjall), keys prefixed
//! by what they hold.
//!
//! Format v2 (the `v` key holds the format byte):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `i` | identity (client, end user, integration, scope, account) | tokenId |
//! | `t` | tokenId | the token's one [`record`]: live ([`TokenMeta`], wrapped data key, sealed secrets) or revoked ([`Tombstone`]), authenticated whole |
//! | `q` | hash of (kind, message id), see [`processed`] | the original reply, compact (never a secret) |
//! | `e` | expiry (big-endian ms), tokenId | nothing: the expiry index |
//! | `c` | state, scope, integration | how many tokens are in that group |
//! | `r`, `d` | see [`refresh`] | the refresh engine's records and due index |
//! | `u` | see [`upstream`] | sealed upstream revocation jobs |
//! | `v` | | the format version |
//!
//! The data directory holds `key-check`, the key check value
//! ([`keycheck`]), read before anything else, so a wrong key is refused
//! before anything is written; `lock`, held while the store is open; and
//! `fjall/`, the keyspace. A directory written by sled (mmt before the
//! engine switch) is moved into fjall when it opens ([`from_sled`]), and a v1
//! directory (wrapped keys under `k`, tombstones under `x`) is then migrated
//! to v2 ([`migrate`]). Key encodings are in [`keys`], the writes of one
//! message in [`change`], the token table in [`list`].
//!
//! Every message's effect is one atomic [`kv::Batch`]. Writers take
//! [`Store::lock`] so that read-decide-write never interleaves (a revocation
//! racing a reconnection could otherwise bring a token back).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::MessageKind;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::counters::histogram::{FLUSH_BUCKETS, Histogram};
use crate::rules::lifecycle::{Lookup, TokenMeta, Tombstone};
use crate::store::crypto::{CryptoError, MasterKey};

mod change;
pub mod crypto;
mod from_sled;
mod keycheck;
mod keys;
mod kv;
mod list;
mod migrate;
#[cfg(test)]
mod migrate_tests;
mod processed;
#[cfg(test)]
mod race_tests;
mod record;
pub mod refresh;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod upstream;

pub use crate::rules::refresh::{Lease, RefreshRecord};
pub use change::Change;
use keycheck::check_key;
pub use keycheck::holds_a_store;
pub use keys::{CountKey, Identity};
use keys::{expiry_key, prefixed, push_part, user_prefix};
use kv::Kv;
pub use list::{Listed, TokenPage};
use record::Record;
pub use upstream::UpstreamJob;

const IDENTITY: u8 = b'i';
const TOKEN: u8 = b't';
/// v1 only: a token's wrapped data key.
const DATA_KEY: u8 = b'k';
/// v1 only: a revoked token's tombstone.
const TOMBSTONE: u8 = b'x';
/// v1 only: a processed message's reply, under its full id.
const PROCESSED_V1: u8 = b'p';
const EXPIRY: u8 = b'e';
const COUNT: u8 = b'c';

/// The longest a flush may take before the store counts as failed
/// ([`StoreError::Stalled`]); a healthy disk takes milliseconds.
const FLUSH_PATIENCE: Duration = Duration::from_secs(20);

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine found corrupt data while opening.
    #[error("the store at {path} is corrupt ({detail}); restore it from a backup or move it away")]
    Corrupt {
        /// The keyspace directory.
        path: PathBuf,
        /// What the engine said.
        detail: String,
    },
    /// The store could not be opened (missing permission, ...).
    #[error("cannot open the store at {path}")]
    Open {
        /// The keyspace directory.
        path: PathBuf,
        /// What the engine said.
        source: fjall::Error,
    },
    /// Another process has the data directory open.
    #[error(
        "the store at {path} is in use by another process (another mmt-worker on the same --data-dir?)"
    )]
    Held {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory's lock file could not be opened or locked.
    #[error("cannot lock the store at {path}")]
    Lock {
        /// The data directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A directory written by sled could not be moved into fjall; sled's
    /// files are untouched and the next start tries again.
    #[error(
        "cannot move the sled store at {path} into fjall ({detail}); its files are untouched and the next start tries again"
    )]
    Import {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The key does not match the one the store was written with.
    #[error(
        "the key does not match the store at {path}: refusing to serve (start with the key file this data directory was created with)"
    )]
    WrongKey {
        /// The data directory.
        path: PathBuf,
    },
    /// The key check file could not be read or written.
    #[error("key check file {path}")]
    KeyCheck {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store was written in a format this worker does not know (by a
    /// newer mmt).
    #[error(
        "the store's format is {found}, this worker knows format {}: run the mmt version that wrote it",
        migrate::FORMAT
    )]
    Format {
        /// The format byte found.
        found: u8,
    },
    /// The store holds tokens but no key check value.
    #[error(
        "the data directory {path} is not empty but has no key-check file; refusing to guess the key"
    )]
    MissingKeyCheck {
        /// The data directory.
        path: PathBuf,
    },
    /// A read or write failed (disk full, I/O error): worth retrying after a
    /// restart (after a failed flush the engine refuses every later write,
    /// "Poisoned", until it is opened again).
    #[error("store I/O")]
    Io(#[from] fjall::Error),
    /// A flush did not finish in time: a flush this late means the disk has
    /// failed.
    #[error(
        "the store did not finish a flush within {} s: the disk is failing or full",
        .0.as_secs()
    )]
    Stalled(Duration),
    /// A record did not decode.
    #[error("store record does not decode")]
    Decode(#[from] postcard::Error),
    /// A seal did not open or could not be made.
    #[error("store crypto")]
    Crypto(#[from] CryptoError),
}

impl StoreError {
    /// Whether retrying the same work later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Stalled(_))
    }
}

/// The secrets of one token, sealed at rest.
#[derive(Serialize, Deserialize)]
pub struct TokenSecrets {
    /// The raw exchange access token.
    pub access_token: String,
    /// The raw refresh token.
    pub refresh_token: Option<String>,
}

impl Drop for TokenSecrets {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(r) = self.refresh_token.as_mut() {
            r.zeroize();
        }
    }
}

/// What is stored under a tokenId.
pub enum Found {
    /// A live token with its sealed secrets.
    Live {
        /// The record.
        meta: TokenMeta,
        /// The secrets, sealed under the data key.
        sealed: Vec<u8>,
        /// The data key, wrapped by the master key.
        wrapped: Vec<u8>,
    },
    /// A revoked token.
    Revoked(Tombstone),
    /// Nothing.
    Missing,
}

impl Found {
    /// The view the lifecycle rules take.
    pub fn lookup(&self) -> Lookup<'_> {
        match self {
            Found::Live { meta, .. } => Lookup::Live(meta),
            Found::Revoked(tomb) => Lookup::Revoked(tomb),
            Found::Missing => Lookup::Missing,
        }
    }
}

/// The store: the keyspace and the master key.
pub struct Store {
    kv: Kv,
    key: MasterKey,
    writer: Mutex<()>,
    /// The token counts: a copy in memory of the `c` keys, so that a commit
    /// writes the new counts without reading them first and the console's
    /// counts read no record.
    counts: Mutex<Counts>,
    /// How long each flush took (`/metrics`).
    flush_times: Histogram,
    /// The data directory's lock, released when the store is dropped.
    _lock: kv::DirLock,
}

/// The engine that holds the store, as `/metrics` names it
/// (`mmt_build_info{engine}`).
pub const ENGINE: &str = "fjall";

type Counts = BTreeMap<Vec<u8>, u64>;

/// Proof that the caller holds the writer lock.
pub struct WriteGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

/// The engine's block cache when nothing else is asked for, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 64;

impl Store {
    /// Opens (or creates) the store in `dir` with the default page cache
    /// ([`DEFAULT_CACHE_MB`]); see [`Store::open_with_cache`].
    pub fn open(dir: &Path, key: MasterKey) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, key, DEFAULT_CACHE_MB)
    }

    /// Opens (or creates) the store in `dir` with a block cache of
    /// `cache_mb` MiB, and checks `key` against it before anything else is
    /// read or written.
    pub fn open_with_cache(dir: &Path, key: MasterKey, cache_mb: u64) -> Result<Self, StoreError> {
        check_key(dir, &key)?;
        let lock = kv::lock(dir)?;
        from_sled::import(dir, cache_mb, usize::MAX)?;
        let kv = Kv::open(&dir.join(kv::DIR), cache_mb)?;
        migrate::to_current(&kv, &key, usize::MAX)?;
        let mut counts = Counts::new();
        for entry in kv.scan_prefix([COUNT]) {
            let (key, value) = entry?;
            if let Ok(bytes) = <[u8; 8]>::try_from(&value[..]) {
                counts.insert(key.to_vec(), u64::from_be_bytes(bytes));
            }
        }
        Ok(Self {
            kv,
            key,
            writer: Mutex::new(()),
            counts: Mutex::new(counts),
            flush_times: Histogram::new(FLUSH_BUCKETS),
            _lock: lock,
        })
    }

    /// Takes the writer lock: hold it from the first read of a decision to
    /// its [`Store::commit`].
    pub fn lock(&self) -> WriteGuard<'_> {
        WriteGuard(self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The stored reply of an already processed message.
    pub fn processed(
        &self,
        kind: MessageKind,
        message_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv
            .get(processed::key(kind, message_id))?
            .map(|stored| processed::decode(&stored))
            .transpose()
    }

    /// The live tokenId of an identity.
    pub fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(identity.key())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// What is stored under `token_id`: one read of one value, so it is
    /// consistent even while a writer replaces the same token.
    pub fn find(&self, token_id: &str) -> Result<Found, StoreError> {
        let Some(bytes) = self.kv.get(prefixed(TOKEN, token_id.as_bytes()))? else {
            return Ok(Found::Missing);
        };
        Ok(match record::decode(&self.key, token_id, &bytes)? {
            Record::Live {
                meta,
                wrapped,
                sealed,
            } => Found::Live {
                meta,
                sealed,
                wrapped,
            },
            Record::Revoked(tomb) => Found::Revoked(tomb),
        })
    }

    /// Opens a live token's secrets.
    pub fn open_secrets(
        &self,
        token_id: &str,
        meta: &TokenMeta,
        sealed: &[u8],
        wrapped: &[u8],
    ) -> Result<TokenSecrets, StoreError> {
        let plain: Zeroizing<Vec<u8>> =
            self.key
                .open_token(token_id, &binding(meta), sealed, wrapped)?;
        Ok(postcard::from_bytes(&plain)?)
    }

    /// The live tokens of an end user at a client, in identity order.
    pub fn tokens_of_user(
        &self,
        client_id: &str,
        end_user_id: &str,
    ) -> Result<Vec<(String, TokenMeta)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix(user_prefix(client_id, end_user_id)) {
            let (_, token_id) = entry?;
            let token_id = String::from_utf8_lossy(&token_id).into_owned();
            if let Found::Live { meta, .. } = self.find(&token_id)? {
                out.push((token_id, meta));
            }
        }
        Ok(out)
    }

    /// TokenIds whose expiry is at or before `now`, oldest first, at most
    /// `limit`.
    pub fn due_expiries(&self, now: UnixMillis, limit: usize) -> Result<Vec<String>, StoreError> {
        let end = expiry_key(now.saturating_add(1), "");
        let mut out = Vec::new();
        for entry in self.kv.range(vec![EXPIRY]..end).take(limit) {
            let (key, _) = entry?;
            out.push(String::from_utf8_lossy(&key[9..]).into_owned());
        }
        Ok(out)
    }

    /// The token counts by (state, scope, integration), revoked included
    /// (from memory: no read of the store).
    pub fn counts(&self) -> Result<Vec<(CountKey, u64)>, StoreError> {
        Ok(self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(key, n)| Some((CountKey::decode(key)?, *n)))
            .collect())
    }

    /// Starts the atomic change of one message.
    pub fn change(&self) -> Change<'_> {
        Change {
            store: self,
            batch: self.kv.batch(),
            counts: BTreeMap::new(),
        }
    }

    /// Makes everything committed so far durable on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let flusher = self.kv.flusher();
        let started = std::time::Instant::now();
        let flush = tokio::task::spawn_blocking(move || flusher.flush());
        match tokio::time::timeout(FLUSH_PATIENCE, flush).await {
            Ok(Ok(flushed)) => {
                self.flush_times.observe(started.elapsed(), 1);
                flushed
            }
            Ok(Err(join)) => Err(StoreError::Io(fjall::Error::Io(std::io::Error::other(
                join,
            )))),
            Err(_) => Err(StoreError::Stalled(FLUSH_PATIENCE)),
        }
    }

    /// How long the flushes took, since the store opened.
    pub fn flush_times(&self) -> &Histogram {
        &self.flush_times
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.kv.size_on_disk()
    }
}

fn binding(meta: &TokenMeta) -> Vec<u8> {
    let mut b = Vec::new();
    push_part(&mut b, &meta.client_id);
    push_part(&mut b, meta.scope.as_str());
    b
}
