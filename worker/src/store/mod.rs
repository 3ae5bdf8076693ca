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
//! | `m` | a name: `copy:<table>`, `purge` | a `store copy`'s progress; the purge mark, written with a deletion until it is purged ([`purge`]) |
//! | `v` | | the format version |
//!
//! The data directory holds `keyring`, what the store knows of the key
//! ring ([`ring`], [`keycheck`]; `key-check` before key rings), read before
//! anything else, so a wrong key is refused before anything is written;
//! `lock`, held while the store is open; and `fjall/`, the keyspace. Key
//! rotation (adopting a ring, counting and rewrapping data keys) is in
//! [`rotation`]. A directory written by sled (mmt before the
//! engine switch) is moved into fjall when it opens ([`from_sled`]), and a v1
//! directory (wrapped keys under `k`, tombstones under `x`) is then migrated
//! to v2 ([`migrate`]). Key encodings are in [`keys`], the writes of one
//! message in [`change`], the token table in [`list`].
//!
//! Every message's effect is one atomic [`kv::Batch`], made through
//! [`Store::write`]: it holds the writer lock from the first read of a
//! decision to its commit, so that read-decide-write never interleaves (a
//! revocation racing a reconnection could otherwise bring a token back).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mmt_shared::secret::Secret;
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::MessageKind;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::counters::histogram::{FLUSH_BUCKETS, Histogram};
use crate::rules::audit::AuditKey;
use crate::rules::lifecycle::{Lookup, TokenMeta, Tombstone};
use crate::store::crypto::{CryptoError, KeyRing, Macs};
use embedded::Embedded;
use postgres::{PgConfig, Postgres};

pub mod audit_log;
pub mod backup;
mod change;
#[cfg(test)]
mod conformance;
pub mod copy;
pub mod crypto;
#[cfg(test)]
mod decode_props;
mod embedded;
mod from_sled;
mod keycheck;
mod keys;
mod kv;
mod list;
mod migrate;
#[cfg(test)]
mod migrate_tests;
pub mod postgres;
mod processed;
mod purge;
#[cfg(test)]
mod purge_tests;
mod record;
pub mod refresh;
pub mod restored;
pub mod ring;
#[cfg(test)]
mod ring_fixture_tests;
mod rotation;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod upstream;
mod write;

pub use crate::rules::refresh::{Lease, RefreshRecord};
pub use change::Change;
use keycheck::check_key;
pub use keycheck::{audit_key as audit_key_of, holds_a_store, read_state};
use keys::push_part;
pub use keys::{CountKey, Identity};
pub use list::{Listed, TokenPage};
pub use purge::{Deletions, Purge, PurgeStatus};
use record::Record;
pub use rotation::RewrapPage;
pub use upstream::UpstreamJob;

/// (tokenId, its record) as an engine reads them.
type RecordRow = (String, Vec<u8>);

/// A page of [`RecordRow`]s, and whether more follow.
type RecordRows = (Vec<RecordRow>, bool);

/// [`RecordRow`]s to rewrap, and the tokenId to go on after (`None`: the
/// end).
type RewrapRows = (Vec<RecordRow>, Option<String>);
pub use write::{Decision, Group, Tx};

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
    /// The key file lacks a key that records of the store still need
    /// (CONTRACT.md §11).
    #[error(
        "the key file lacks key {id}, which still wraps {records} records of the store: put its line back (a key's line may be deleted once no record needs it: see `keys` in worker.stats)"
    )]
    MissingKey {
        /// The key id.
        id: crate::store::crypto::KeyId,
        /// How many records it wraps.
        records: u64,
    },
    /// The key file lacks the key that seals the store's own keys (the
    /// newest key the store was run with).
    #[error(
        "the key file lacks key {id}, which seals the store's own keys (the newest key it was run with): put its line back"
    )]
    MacsKeyMissing {
        /// The key id.
        id: crate::store::crypto::KeyId,
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
    /// The data directory was restored from a backup and not released yet
    /// (docs/security.md, "Backups").
    #[error(
        "the store at {path} was restored from a backup taken at {taken_at}: a token revoked after that moment would be served again; apply the revocations since then and release it with `mmt-worker store release` (docs/security.md, \"Backups\")"
    )]
    Restored {
        /// The data directory.
        path: PathBuf,
        /// When the backup was taken (RFC 3339).
        taken_at: String,
    },
    /// The restore mark could not be read or written.
    #[error("restore mark {path}")]
    RestoredMark {
        /// The mark's file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A release was asked of a store that was not restored.
    #[error("the store at {path} carries no restore mark: there is nothing to release")]
    NotRestored {
        /// The data directory.
        path: PathBuf,
    },
    /// The engine cannot do this.
    #[error("this store engine cannot do {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// A read or write failed (disk full, I/O error): worth retrying after a
    /// restart (after a failed flush the engine refuses every later write,
    /// "Poisoned", until it is opened again).
    #[error("store I/O")]
    Io(#[from] fjall::Error),
    /// The audit log could not be read or written (disk full, I/O error):
    /// nothing is applied without its line, so the write fails and its
    /// message is retried.
    #[error("audit log {path}")]
    Audit {
        /// The log's file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A flush did not finish in time: a flush this late means the disk has
    /// failed.
    #[error(
        "the store did not finish a flush within {} s: the disk is failing or full",
        .0.as_secs()
    )]
    Stalled(Duration),
    /// A purge (physical deletion) did not see its step through in time;
    /// what it was to delete stays pending and the purge is run again.
    #[error(
        "the store's purge did not finish {step} within {} s",
        .patience.as_secs()
    )]
    PurgeStalled {
        /// The step: the memtable's flush, or the compaction.
        step: &'static str,
        /// How long it was given.
        patience: Duration,
    },
    /// A record did not decode.
    #[error("store record does not decode")]
    Decode(#[from] postcard::Error),
    /// A seal did not open or could not be made.
    #[error("store crypto")]
    Crypto(#[from] CryptoError),
    /// The shared store's URL is not one (never shown: it may hold a
    /// password).
    #[error("the store URL is not usable: {detail}")]
    BadUrl {
        /// What is wrong with it.
        detail: String,
    },
    /// The shared store's TLS settings are not usable.
    #[error("the store's TLS settings are not usable: {detail}")]
    Tls {
        /// What is wrong.
        detail: String,
    },
    /// The shared store's engine could not start its runtime.
    #[error("cannot start the store's runtime")]
    Runtime {
        /// The I/O error.
        source: std::io::Error,
    },
    /// No connection to the shared store could be had.
    #[error("the store at {store} cannot be reached: {detail}")]
    Pool {
        /// The store's URL, password hidden.
        store: String,
        /// Why.
        detail: String,
    },
    /// A statement of the shared store failed.
    #[error("store statement")]
    Postgres(#[from] tokio_postgres::Error),
    /// A transaction was used after its end (a defect, never input).
    #[error("the store transaction is already over")]
    Closed,
    /// A column held a value no worker writes.
    #[error("the store's {column} column holds a value this worker does not know")]
    Column {
        /// The column.
        column: &'static str,
    },
    /// The shared store's schema is newer than this worker's.
    #[error(
        "the store's schema is version {found}, this worker knows up to {known}: run the mmt version that migrated it"
    )]
    Schema {
        /// The version found.
        found: i32,
        /// The newest this worker knows.
        known: i32,
    },
    /// The key does not match the shared store's key check.
    #[error(
        "the key does not match the store at {store}: refusing to serve (start with the key file this store was created with)"
    )]
    WrongKeyFor {
        /// The store's URL, password hidden.
        store: String,
    },
    /// The shared store holds tokens but no key check value.
    #[error("the store at {store} holds tokens but no key check; refusing to guess the key")]
    MissingKeyCheckFor {
        /// The store's URL, password hidden.
        store: String,
    },
}

impl StoreError {
    /// Whether retrying the same work later may succeed.
    /// Whether the store is out of reach for now (the shared store's
    /// connection, a restart or failover, too many conflicts): the worker
    /// stops consuming, waits until it answers again, and goes on; nothing
    /// that did not commit was acknowledged.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Pool { .. } => true,
            StoreError::Postgres(error) => postgres::is_transient(error),
            _ => false,
        }
    }

    /// Whether retrying the same work later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io(_)
            | StoreError::Stalled(_)
            | StoreError::Pool { .. }
            | StoreError::Audit { .. } => true,
            StoreError::Postgres(error) => postgres::is_transient(error),
            _ => false,
        }
    }
}

/// The secrets of one token, sealed at rest. Each is a [`Secret`]: wiped
/// when dropped, never printed; no `Debug` here either. Encoded (postcard)
/// exactly as two plain strings were, so the records on disk are unchanged.
#[derive(Serialize, Deserialize)]
pub struct TokenSecrets {
    /// The raw exchange access token.
    pub access_token: Secret,
    /// The raw refresh token.
    pub refresh_token: Option<Secret>,
}

impl TokenSecrets {
    /// The plain bytes to seal, in a buffer wiped on drop and allocated
    /// once at its full size, so that no copy is left behind by a growing
    /// buffer (postcard: each string is a varint length of at most 10 bytes
    /// and its bytes; the option one byte).
    fn to_plain(&self) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let size = 21
            + self.access_token.expose().len()
            + self.refresh_token.as_ref().map_or(0, |r| r.expose().len());
        Ok(Zeroizing::new(postcard::to_extend(
            self,
            Vec::with_capacity(size),
        )?))
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

/// The store: its engine and the key ring. Every record is sealed and
/// opened here, the same way whatever engine holds it.
pub struct Store {
    /// The key ring, replaced whole when the key file is reloaded
    /// ([`Store::adopt_ring`]).
    keys: RwLock<Arc<KeyRing>>,
    /// The store's own keys (record tags, the audit log's key), which
    /// outlive any one key of the ring ([`ring`]).
    macs: Macs,
    /// The audit log's key, derived from `macs` once.
    audit_key: AuditKey,
    /// The key file, read again when a record names a key the ring lacks
    /// (another worker of a shared store rotated first); `None` in tests.
    key_file: std::sync::Mutex<Option<rotation::KeyFileReload>>,
    /// The key ring's figures (`worker.stats`).
    key_counters: crate::counters::keys::KeyCounters,
    engine: Engine,
    /// How long each flush took (`/metrics`).
    flush_times: Histogram,
}

/// The engine under the store.
enum Engine {
    /// fjall in the data directory: one worker.
    Embedded(Embedded),
    /// PostgreSQL: any number of workers.
    Postgres(Box<Postgres>),
}

/// The engine's block cache when nothing else is asked for, in MiB.
pub const DEFAULT_CACHE_MB: u64 = 64;

impl Store {
    /// Opens (or creates) the store in `dir` with the default page cache
    /// ([`DEFAULT_CACHE_MB`]); see [`Store::open_with_cache`].
    pub fn open(dir: &Path, key: KeyRing) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, key, DEFAULT_CACHE_MB)
    }

    /// Opens (or creates) the store in `dir` with a block cache of
    /// `cache_mb` MiB, and checks `key` against it before anything else is
    /// read or written.
    /// A directory restored from a backup and not released yet is refused
    /// ([`restored`]).
    pub fn open_with_cache(dir: &Path, key: KeyRing, cache_mb: u64) -> Result<Self, StoreError> {
        let macs = check_key(dir, &key, None)?;
        restored::refuse_held(dir)?;
        Self::open_engine(dir, key, macs, cache_mb)
    }

    /// Opens the store in `dir` as [`Store::open`] does, but a new store
    /// takes the key ring state `seed` (its own keys: a copy or a restore
    /// keeps its source's, so that records and audit references stay
    /// valid).
    pub fn open_seeded(
        dir: &Path,
        key: KeyRing,
        seed: &ring::RingState,
    ) -> Result<Self, StoreError> {
        let macs = check_key(dir, &key, Some(seed))?;
        restored::refuse_held(dir)?;
        Self::open_engine(dir, key, macs, DEFAULT_CACHE_MB)
    }

    /// Opens the embedded engine in `dir`, the key checked and the store's
    /// own keys opened; the ring is then settled with the store
    /// ([`Store::adopt_ring`]).
    fn open_engine(
        dir: &Path,
        key: KeyRing,
        macs: Macs,
        cache_mb: u64,
    ) -> Result<Self, StoreError> {
        let engine = Embedded::open(dir, &macs, cache_mb)?;
        let store = Self::with_engine(Engine::Embedded(engine), key, macs)?;
        store.adopt_ring(store.ring())?;
        Ok(store)
    }

    fn with_engine(engine: Engine, key: KeyRing, macs: Macs) -> Result<Self, StoreError> {
        Ok(Self {
            audit_key: macs.audit_key()?,
            macs,
            keys: RwLock::new(Arc::new(key)),
            key_file: std::sync::Mutex::new(None),
            key_counters: crate::counters::keys::KeyCounters::default(),
            engine,
            flush_times: Histogram::new(FLUSH_BUCKETS),
        })
    }

    /// Connects to the PostgreSQL store `config` names: its schema migrated
    /// (once, however many workers start together), `key` checked against
    /// it before anything else is read or written.
    pub fn connect(config: &PgConfig, key: KeyRing) -> Result<Self, StoreError> {
        Self::connect_seeded(config, key, None)
    }

    /// [`Store::connect`]; a new store takes the key ring state `seed` when
    /// given (see [`Store::open_seeded`]).
    pub fn connect_seeded(
        config: &PgConfig,
        key: KeyRing,
        seed: Option<&ring::RingState>,
    ) -> Result<Self, StoreError> {
        let (engine, macs) = Postgres::connect(config, &key, seed)?;
        let store = Self::with_engine(Engine::Postgres(Box::new(engine)), key, macs)?;
        store.adopt_ring(store.ring())?;
        Ok(store)
    }

    /// The key ring in use.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Up to `max` lines of the shared store's audit table after `after`
    /// (chain, seq), in chain and seq order; the embedded store's log is
    /// its files ([`audit_log::files`]), so it has none here.
    pub fn audit_page(
        &self,
        after: Option<&(String, i64)>,
        max: usize,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        match &self.engine {
            Engine::Embedded(_) => Ok(Vec::new()),
            Engine::Postgres(pg) => pg.audit_page(after, max),
        }
    }

    /// Rotates the embedded store's audit log past `bytes` (the shared
    /// store's log is a table: nothing to rotate).
    pub fn set_audit_max_bytes(&self, bytes: u64) {
        if let Engine::Embedded(e) = &self.engine {
            e.audit
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_max_bytes(bytes);
        }
    }

    /// The audit log's key: how the log names tokens.
    pub fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    /// The engine's name (`fjall` or `postgres`), for `worker.stats` and
    /// the metrics.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Embedded(_) => "fjall",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// The stored reply of an already processed message.
    pub fn processed(
        &self,
        kind: MessageKind,
        message_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = processed::key(kind, message_id);
        let stored = match &self.engine {
            Engine::Embedded(e) => e.get(&key)?,
            Engine::Postgres(pg) => pg.processed(&key)?,
        };
        stored.map(|stored| processed::decode(&stored)).transpose()
    }

    /// The live tokenId of an identity.
    pub fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.token_of(identity),
            Engine::Postgres(pg) => pg.token_of(identity),
        }
    }

    /// What is stored under `token_id`: one read of one value, so it is
    /// consistent even while a writer replaces the same token.
    pub fn find(&self, token_id: &str) -> Result<Found, StoreError> {
        let record = match &self.engine {
            Engine::Embedded(e) => e.record(token_id)?,
            Engine::Postgres(pg) => pg.record(token_id)?,
        };
        self.decode_found(token_id, record)
    }

    /// A token's record, as read, decoded and checked.
    fn decode_found(&self, token_id: &str, record: Option<Vec<u8>>) -> Result<Found, StoreError> {
        let Some(bytes) = record else {
            return Ok(Found::Missing);
        };
        Ok(match record::decode(&self.macs, token_id, &bytes)? {
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
            self.with_ring(|ring| ring.open_token(token_id, &binding(meta), sealed, wrapped))?;
        Ok(postcard::from_bytes(&plain)?)
    }

    /// The live tokens of an end user at a client, in identity order.
    pub fn tokens_of_user(
        &self,
        client_id: &str,
        end_user_id: &str,
    ) -> Result<Vec<(String, TokenMeta)>, StoreError> {
        let records = match &self.engine {
            Engine::Embedded(e) => {
                let mut records = Vec::new();
                for token_id in e.user_token_ids(client_id, end_user_id)? {
                    let record = e.record(&token_id)?;
                    records.push((token_id, record));
                }
                records
            }
            Engine::Postgres(pg) => pg.user_records(client_id, end_user_id)?,
        };
        let mut out = Vec::new();
        for (token_id, record) in records {
            if let Found::Live { meta, .. } = self.decode_found(&token_id, record)? {
                out.push((token_id, meta));
            }
        }
        Ok(out)
    }

    /// TokenIds whose expiry is at or before `now`, oldest first, at most
    /// `limit`.
    pub fn due_expiries(&self, now: UnixMillis, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .due_expiry_entries(now, limit)?
            .into_iter()
            .map(|(_, token_id)| token_id)
            .collect())
    }

    /// The token counts by (state, scope, integration), revoked included
    /// (from memory: no read of the store).
    pub fn counts(&self) -> Result<Vec<(CountKey, u64)>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => Ok(e.counts()),
            Engine::Postgres(pg) => pg.counts(),
        }
    }

    /// Makes everything committed so far durable on disk (PostgreSQL: a
    /// commit is durable when it returns, nothing is left to do).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let Engine::Embedded(e) = &self.engine else {
            return Ok(());
        };
        let flusher = e.kv.flusher();
        let audit = e.audit.clone();
        let audit_path = e.audit_path();
        let started = std::time::Instant::now();
        // The audit log and the journal are synced side by side (one sync's
        // wait, not two), on threads of the blocking pool; a crash between
        // them that loses lines is found at the next start from the
        // journal's audit mark and said in the log (embedded.rs: `open`).
        let lines = tokio::task::spawn_blocking(move || {
            audit_log::AuditLog::sync_shared(&audit).map_err(|source| StoreError::Audit {
                path: audit_path,
                source,
            })
        });
        let journal = tokio::task::spawn_blocking(move || flusher.flush());
        let both = async { tokio::join!(lines, journal) };
        match tokio::time::timeout(FLUSH_PATIENCE, both).await {
            Ok((Ok(lines), Ok(journal))) => {
                self.flush_times.observe(started.elapsed(), 1);
                lines.and(journal)
            }
            Ok((Err(join), _) | (_, Err(join))) => Err(StoreError::Io(fjall::Error::Io(
                std::io::Error::other(join),
            ))),
            Err(_) => Err(StoreError::Stalled(FLUSH_PATIENCE)),
        }
    }

    /// How long the flushes took, since the store opened.
    pub fn flush_times(&self) -> &Histogram {
        &self.flush_times
    }

    /// Whether the store answers (the shared store: one round trip).
    pub fn ping(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Embedded(_) => Ok(()),
            Engine::Postgres(pg) => pg.ping(),
        }
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.kv.size_on_disk(),
            Engine::Postgres(pg) => pg.size_on_disk(),
        }
    }
}

#[cfg(test)]
impl Store {
    /// Every audit line as written and the chain it is on (the embedded
    /// log's one chain is `""`), chain by chain, each in its order.
    pub(crate) fn audit_lines_for_tests(&self) -> Vec<(String, String)> {
        match &self.engine {
            Engine::Embedded(e) => audit_log::files(&e.dir)
                .expect("lists the log's files")
                .iter()
                .flat_map(|file| {
                    let text = std::fs::read_to_string(file).expect("reads the log");
                    text.lines()
                        .map(|line| (String::new(), line.to_owned()))
                        .collect::<Vec<_>>()
                })
                .collect(),
            Engine::Postgres(_) => self
                .audit_page(None, 10_000)
                .expect("reads the log")
                .into_iter()
                .map(|(chain, _, line)| (chain, line))
                .collect(),
        }
    }

    /// The store's own keys, for tests that check tags.
    pub(crate) fn macs_for_tests(&self) -> &Macs {
        &self.macs
    }

    /// The embedded engine's key space, for tests that look at raw keys.
    fn kv(&self) -> &kv::Kv {
        match &self.engine {
            Engine::Embedded(e) => &e.kv,
            Engine::Postgres(_) => panic!("not the embedded engine"),
        }
    }
}

fn binding(meta: &TokenMeta) -> Vec<u8> {
    let mut b = Vec::new();
    push_part(&mut b, &meta.client_id);
    push_part(&mut b, meta.scope.as_str());
    b
}
