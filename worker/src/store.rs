//! The embedded sled store: one tree, keys prefixed by what they hold.
//!
//! Format v2 (the `v` key holds the format byte):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `i` | identity (client, end user, integration, scope, account) | tokenId |
//! | `t` | tokenId | the token's one [`record`]: live ([`TokenMeta`], wrapped data key, sealed secrets) or revoked ([`Tombstone`]), authenticated whole |
//! | `p` | kind, message id | the original reply (never a secret) |
//! | `e` | expiry (big-endian ms), tokenId | nothing: the expiry index |
//! | `c` | state, scope, integration | how many tokens are in that group |
//! | `r`, `d` | see [`refresh`] | the refresh engine's records and due index |
//! | `u` | see [`upstream`] | sealed upstream revocation jobs |
//! | `v` | | the format version |
//!
//! A v1 directory (wrapped keys under `k`, tombstones under `x`) is migrated
//! when it opens ([`migrate`]).
//!
//! Beside sled's files, `key-check` holds the key check value: it is read
//! before sled opens, so a wrong key is refused before anything is written.
//!
//! Every message's effect is one atomic [`sled::Batch`]. Writers take
//! [`Store::lock`] so that read-decide-write never interleaves (a revocation
//! racing a reconnection could otherwise bring a token back).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{MessageKind, Scope, TokenState};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, MasterKey};
use crate::lifecycle::{Lookup, TokenMeta, Tombstone};

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
pub mod upstream;

use record::{Record, RecordRef};
pub use refresh::{Lease, RefreshRecord};
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

const KEY_CHECK_FILE: &str = "key-check";

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled found corrupt data while opening.
    #[error("the store at {path} is corrupt ({detail}); restore it from a backup or move it away")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        detail: String,
    },
    /// The data directory could not be opened (missing permission, held by
    /// another worker, ...).
    #[error("cannot open the store at {path}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
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
    /// A read or write failed (disk full, I/O error): worth retrying.
    #[error("store I/O")]
    Io(#[from] sled::Error),
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
        matches!(self, StoreError::Io(_))
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

/// The identity of a token: (client, end user, integration, scope, account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The client.
    pub client_id: &'a str,
    /// The end user.
    pub end_user_id: &'a str,
    /// The integration.
    pub broker_type: &'a str,
    /// The scope.
    pub scope: Scope,
    /// The account.
    pub account_id: &'a str,
}

fn push_part(key: &mut Vec<u8>, part: &str) {
    key.extend_from_slice(&(part.len() as u32).to_be_bytes());
    key.extend_from_slice(part.as_bytes());
}

fn user_prefix(client_id: &str, end_user_id: &str) -> Vec<u8> {
    let mut key = vec![IDENTITY];
    push_part(&mut key, client_id);
    push_part(&mut key, end_user_id);
    key
}

impl Identity<'_> {
    fn key(&self) -> Vec<u8> {
        let mut key = user_prefix(self.client_id, self.end_user_id);
        push_part(&mut key, self.broker_type);
        push_part(&mut key, self.scope.as_str());
        push_part(&mut key, self.account_id);
        key
    }
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

fn expiry_key(expires_at: UnixMillis, token_id: &str) -> Vec<u8> {
    let mut key = vec![EXPIRY];
    key.extend_from_slice(&(expires_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(token_id.as_bytes());
    key
}

/// A group of the token counts: (state, scope, integration).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CountKey {
    /// The state.
    pub state: TokenState,
    /// The scope.
    pub scope: Scope,
    /// The integration.
    pub broker_type: String,
}

impl CountKey {
    fn encode(&self) -> Vec<u8> {
        let mut key = vec![COUNT];
        push_part(&mut key, self.state.as_str());
        push_part(&mut key, self.scope.as_str());
        key.extend_from_slice(self.broker_type.as_bytes());
        key
    }

    fn decode(key: &[u8]) -> Option<Self> {
        let mut rest = key.strip_prefix(&[COUNT])?;
        let mut part = || -> Option<&[u8]> {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let value = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some(value)
        };
        let state = match part()? {
            b"active" => TokenState::Active,
            b"reauth_required" => TokenState::ReauthRequired,
            b"revoked" => TokenState::Revoked,
            _ => return None,
        };
        let scope = match part()? {
            b"read" => Scope::Read,
            b"write" => Scope::Write,
            _ => return None,
        };
        let broker_type = String::from_utf8(rest.to_vec()).ok()?;
        Some(Self {
            state,
            scope,
            broker_type,
        })
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

/// The store: the sled database and the master key.
pub struct Store {
    db: sled::Db,
    key: MasterKey,
    writer: Mutex<()>,
    /// The token counts: a copy in memory of the `c` keys, so that a commit
    /// writes the new counts without reading them first and the console's
    /// counts read no record.
    counts: Mutex<Counts>,
}

type Counts = BTreeMap<Vec<u8>, u64>;

/// Proof that the caller holds the writer lock.
pub struct WriteGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Store {
    /// Opens (or creates) the store in `dir` and checks `key` against it
    /// before anything else is read or written.
    pub fn open(dir: &Path, key: MasterKey) -> Result<Self, StoreError> {
        check_key(dir, &key)?;
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                    path: dir.to_owned(),
                    detail: format!("corruption at {at:?}"),
                },
                other => StoreError::Open {
                    path: dir.to_owned(),
                    source: other,
                },
            })?;
        migrate::to_current(&db, &key, usize::MAX)?;
        let mut counts = Counts::new();
        for entry in db.scan_prefix([COUNT]) {
            let (key, value) = entry?;
            if let Ok(bytes) = <[u8; 8]>::try_from(&value[..]) {
                counts.insert(key.to_vec(), u64::from_be_bytes(bytes));
            }
        }
        Ok(Self {
            db,
            key,
            writer: Mutex::new(()),
            counts: Mutex::new(counts),
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
        self.db
            .get(processed::key(kind, message_id))?
            .map(|stored| processed::decode(&stored))
            .transpose()
    }

    /// The live tokenId of an identity.
    pub fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(identity.key())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// What is stored under `token_id`: one read of one value, so it is
    /// consistent even while a writer replaces the same token.
    pub fn find(&self, token_id: &str) -> Result<Found, StoreError> {
        let Some(bytes) = self.db.get(prefixed(TOKEN, token_id.as_bytes()))? else {
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
        for entry in self.db.scan_prefix(user_prefix(client_id, end_user_id)) {
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
        for entry in self.db.range(vec![EXPIRY]..end).take(limit) {
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
            batch: sled::Batch::default(),
            counts: BTreeMap::new(),
        }
    }

    /// Makes everything committed so far durable on disk.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.db.flush_async().await?)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// A token in a listing: its record without any sealed material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A live token (active or reauth_required).
    Live(TokenMeta),
    /// A revoked token.
    Revoked(Tombstone),
}

/// One page of [`Store::list_tokens`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPage {
    /// The kept tokens, ordered by tokenId.
    pub tokens: Vec<(String, Listed)>,
    /// The last tokenId examined, when the table goes on after it.
    pub next_after: Option<String>,
    /// How many records were examined.
    pub scanned: usize,
}

impl Store {
    /// A page of the tokens, live and revoked, ordered by tokenId, starting
    /// after `after`: at most `limit` tokens for which `keep` holds, after
    /// examining at most `max_scan` records. Only metadata is kept; the
    /// sealed secrets are never opened.
    pub fn list_tokens(
        &self,
        after: Option<&str>,
        limit: usize,
        max_scan: usize,
        keep: &dyn Fn(&str, &Listed) -> bool,
    ) -> Result<TokenPage, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(prefixed(TOKEN, after.as_bytes())),
            None => Bound::Included(vec![TOKEN]),
        };
        let mut records = self
            .db
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![TOKEN + 1])));
        let mut page = TokenPage {
            tokens: Vec::new(),
            next_after: None,
            scanned: 0,
        };
        while page.tokens.len() < limit && page.scanned < max_scan {
            let Some((key, value)) = records.next().transpose()? else {
                page.next_after = None;
                return Ok(page);
            };
            page.scanned += 1;
            let token_id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            let listed = match record::decode(&self.key, &token_id, &value)? {
                Record::Live { meta, .. } => Listed::Live(meta),
                Record::Revoked(tomb) => Listed::Revoked(tomb),
            };
            if keep(&token_id, &listed) {
                page.tokens.push((token_id.clone(), listed));
            }
            page.next_after = Some(token_id);
        }
        if records.next().is_none() {
            page.next_after = None;
        }
        Ok(page)
    }
}

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
fn check_key(dir: &Path, key: &MasterKey) -> Result<(), StoreError> {
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

fn binding(meta: &TokenMeta) -> Vec<u8> {
    let mut b = Vec::new();
    push_part(&mut b, &meta.client_id);
    push_part(&mut b, meta.scope.as_str());
    b
}

/// The writes of one message, applied atomically by [`Change::commit`].
pub struct Change<'a> {
    store: &'a Store,
    batch: sled::Batch,
    counts: BTreeMap<Vec<u8>, i64>,
}

impl Change<'_> {
    fn count(&mut self, state: TokenState, meta_scope: Scope, broker_type: &str, delta: i64) {
        let key = CountKey {
            state,
            scope: meta_scope,
            broker_type: broker_type.to_owned(),
        }
        .encode();
        *self.counts.entry(key).or_default() += delta;
    }

    /// Stores a token (new, or replacing the live one of the same tokenId)
    /// with fresh secrets under a fresh data key. `previous` is the record it
    /// replaces, if any.
    pub fn put_token(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        previous: Option<&TokenMeta>,
        secrets: &TokenSecrets,
    ) -> Result<(), StoreError> {
        let plain = Zeroizing::new(postcard::to_stdvec(secrets)?);
        let (sealed, wrapped) = self
            .store
            .key
            .seal_token(token_id, &binding(meta), &plain)?;
        let identity = Identity {
            client_id: &meta.client_id,
            end_user_id: &meta.end_user_id,
            broker_type: &meta.broker_type,
            scope: meta.scope,
            account_id: &meta.account_id,
        };
        if let Some(prev) = previous {
            if let Some(at) = prev.expires_at {
                self.batch.remove(expiry_key(at, token_id));
            }
            self.count(prev.state, prev.scope, &prev.broker_type, -1);
        }
        self.count(meta.state, meta.scope, &meta.broker_type, 1);
        self.batch.insert(identity.key(), token_id.as_bytes());
        self.record(
            token_id,
            &RecordRef::Live {
                meta,
                wrapped: &wrapped,
                sealed: &sealed,
            },
        )?;
        if let (TokenState::Active, Some(at)) = (meta.state, meta.expires_at) {
            self.batch.insert(expiry_key(at, token_id), &[]);
        }
        Ok(())
    }

    /// Moves a live token to `reauth_required` (its secrets stay sealed: a
    /// reconnection replaces them).
    pub fn expire(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        wrapped: &[u8],
        sealed: &[u8],
        now: UnixMillis,
    ) -> Result<TokenMeta, StoreError> {
        let mut next = meta.clone();
        next.state = TokenState::ReauthRequired;
        next.updated_at = now;
        if let Some(at) = meta.expires_at {
            self.batch.remove(expiry_key(at, token_id));
        }
        self.count(meta.state, meta.scope, &meta.broker_type, -1);
        self.count(next.state, next.scope, &next.broker_type, 1);
        self.record(
            token_id,
            &RecordRef::Live {
                meta: &next,
                wrapped,
                sealed,
            },
        )?;
        Ok(next)
    }

    /// Revokes a live token: its record (data key and secrets with it) is
    /// replaced by a tombstone without secrets, and its identity entry and
    /// expiry entry go, in the same batch.
    pub fn revoke(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let identity = Identity {
            client_id: &meta.client_id,
            end_user_id: &meta.end_user_id,
            broker_type: &meta.broker_type,
            scope: meta.scope,
            account_id: &meta.account_id,
        };
        self.batch.remove(identity.key());
        if let Some(at) = meta.expires_at {
            self.batch.remove(expiry_key(at, token_id));
        }
        let tomb = Tombstone {
            client_id: meta.client_id.clone(),
            broker_type: meta.broker_type.clone(),
            scope: meta.scope,
            revoked_at: now,
        };
        self.record(token_id, &RecordRef::Revoked(&tomb))?;
        self.count(meta.state, meta.scope, &meta.broker_type, -1);
        self.count(TokenState::Revoked, meta.scope, &meta.broker_type, 1);
        Ok(())
    }

    fn record(&mut self, token_id: &str, record: &RecordRef<'_>) -> Result<(), StoreError> {
        let value = record::encode(&self.store.key, token_id, record)?;
        self.batch
            .insert(prefixed(TOKEN, token_id.as_bytes()), value);
        Ok(())
    }

    /// Records that a message was processed, with its reply.
    pub fn processed(
        &mut self,
        kind: MessageKind,
        message_id: &str,
        reply: &[u8],
    ) -> Result<(), StoreError> {
        self.batch
            .insert(processed::key(kind, message_id), processed::encode(reply)?);
        Ok(())
    }

    /// Applies every write atomically. The caller holds the writer lock; the
    /// counts in memory follow the store once the batch is applied.
    pub fn commit(mut self, _lock: &WriteGuard<'_>) -> Result<(), StoreError> {
        let mut current = self.store.counts.lock().unwrap_or_else(|e| e.into_inner());
        let counts = std::mem::take(&mut self.counts);
        let next: Vec<(Vec<u8>, u64)> = counts
            .into_iter()
            .map(|(key, delta)| {
                let n = current.get(&key).copied().unwrap_or(0);
                (key, n.saturating_add_signed(delta))
            })
            .collect();
        for (key, n) in &next {
            self.batch.insert(key.as_slice(), &n.to_be_bytes());
        }
        self.store.db.apply_batch(self.batch)?;
        current.extend(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{meta, secrets, when_unlocked};
    use super::*;

    #[test]
    fn identities_differ_by_every_part_and_users_are_prefixes() {
        let base = Identity {
            client_id: "acme",
            end_user_id: "u1",
            broker_type: "coinbase",
            scope: Scope::Read,
            account_id: "a",
        };
        let variants = [
            Identity {
                client_id: "acme2",
                ..base.clone()
            },
            Identity {
                end_user_id: "u2",
                ..base.clone()
            },
            Identity {
                broker_type: "binance",
                ..base.clone()
            },
            Identity {
                scope: Scope::Write,
                ..base.clone()
            },
            Identity {
                account_id: "b",
                ..base.clone()
            },
        ];
        for v in &variants {
            assert_ne!(v.key(), base.key());
        }
        assert!(base.key().starts_with(&user_prefix("acme", "u1")));
        assert!(!user_prefix("ac", "meu1").starts_with(&user_prefix("acme", "u1")));
    }

    #[test]
    fn put_find_revoke_round_trip_with_counts_and_expiry_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), MasterKey::generate().expect("random key")).expect("opens");
        let m = meta("acme", "u1", Scope::Read);
        let lock = store.lock();
        let mut change = store.change();
        change
            .put_token("tok_1", &m, None, &secrets())
            .expect("puts");
        change.commit(&lock).expect("commits");
        let Found::Live {
            meta: got,
            sealed,
            wrapped,
        } = store.find("tok_1").expect("reads")
        else {
            panic!("expected a live token");
        };
        assert_eq!(got, m);
        let opened = store
            .open_secrets("tok_1", &got, &sealed, &wrapped)
            .expect("opens");
        assert_eq!(opened.access_token, "raw-access");
        assert_eq!(
            store.due_expiries(60_999, 10).expect("scans"),
            Vec::<String>::new()
        );
        assert_eq!(
            store.due_expiries(61_000, 10).expect("scans"),
            vec!["tok_1".to_owned()]
        );
        assert_eq!(store.tokens_of_user("acme", "u1").expect("scans").len(), 1);

        let mut change = store.change();
        change.revoke("tok_1", &m, 2_000).expect("revokes");
        change.commit(&lock).expect("commits");
        assert!(matches!(
            store.find("tok_1").expect("reads"),
            Found::Revoked(_)
        ));
        assert!(store.due_expiries(i64::MAX, 10).expect("scans").is_empty());
        assert!(
            store
                .tokens_of_user("acme", "u1")
                .expect("scans")
                .is_empty()
        );
        let counts = store.counts().expect("counts");
        assert_eq!(
            counts,
            vec![
                (
                    CountKey {
                        state: TokenState::Active,
                        scope: Scope::Read,
                        broker_type: "coinbase".into()
                    },
                    0
                ),
                (
                    CountKey {
                        state: TokenState::Revoked,
                        scope: Scope::Read,
                        broker_type: "coinbase".into()
                    },
                    1
                ),
            ]
        );
    }

    #[test]
    fn list_tokens_merges_live_and_revoked_in_token_id_order_page_by_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), MasterKey::generate().expect("random key")).expect("opens");
        let lock = store.lock();
        let mut change = store.change();
        for (i, user) in ["u1", "u2", "u3", "u4", "u5"].iter().enumerate() {
            change
                .put_token(
                    &format!("tok_{i}"),
                    &meta("acme", user, Scope::Read),
                    None,
                    &secrets(),
                )
                .expect("puts");
        }
        change.commit(&lock).expect("commits");
        let mut change = store.change();
        change
            .revoke("tok_2", &meta("acme", "u3", Scope::Read), 2_000)
            .expect("revokes");
        change.commit(&lock).expect("commits");
        let all = |_: &str, _: &Listed| true;
        let first = store.list_tokens(None, 3, 100, &all).expect("lists");
        let ids: Vec<_> = first.tokens.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["tok_0", "tok_1", "tok_2"]);
        assert!(matches!(first.tokens[2].1, Listed::Revoked(_)));
        assert_eq!(first.next_after.as_deref(), Some("tok_2"));
        let second = store
            .list_tokens(first.next_after.as_deref(), 3, 100, &all)
            .expect("lists");
        let ids: Vec<_> = second.tokens.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["tok_3", "tok_4"]);
        assert_eq!(second.next_after, None);
        let revoked_only = |_: &str, l: &Listed| matches!(l, Listed::Revoked(_));
        let bounded = store
            .list_tokens(None, 10, 2, &revoked_only)
            .expect("lists");
        assert!(bounded.tokens.is_empty());
        assert_eq!(
            (bounded.scanned, bounded.next_after.as_deref()),
            (2, Some("tok_1"))
        );
    }

    #[test]
    fn a_wrong_key_is_refused_and_a_right_one_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("k");
        let data = dir.path().join("data");
        let (key, _) = MasterKey::load_or_create(&key_path).expect("key");
        drop(Store::open(&data, key).expect("opens"));
        assert!(matches!(
            when_unlocked(|| Store::open(&data, MasterKey::generate().expect("random key"))),
            Err(StoreError::WrongKey { .. })
        ));
        assert!(
            when_unlocked(|| Store::open(
                &data,
                MasterKey::load_or_create(&key_path).expect("key").0
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_leftover_key_check_tmp_from_a_crashed_first_start_does_not_lock_out_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("key-check.tmp"), b"half written").expect("write");
        assert!(!holds_a_store(&data));
        let key_path = dir.path().join("k");
        let (key, _) = MasterKey::load_or_create(&key_path).expect("key");
        drop(Store::open(&data, key).expect("an empty store with a leftover tmp opens"));
        assert!(!data.join("key-check.tmp").exists());
        assert!(holds_a_store(&data));
        assert!(
            when_unlocked(|| Store::open(
                &data,
                MasterKey::load_or_create(&key_path).expect("key").0
            ))
            .is_ok(),
            "its key check is the key's"
        );
    }

    #[test]
    fn a_key_check_tmp_beside_data_still_refuses_to_guess_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("key-check.tmp"), b"x").expect("write");
        std::fs::write(dir.path().join("conf"), b"sled").expect("write");
        assert!(matches!(
            Store::open(dir.path(), MasterKey::generate().expect("random key")),
            Err(StoreError::MissingKeyCheck { .. })
        ));
    }

    #[test]
    fn a_new_data_directory_is_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a").join("data");
        drop(Store::open(&data, MasterKey::generate().expect("random key")).expect("opens"));
        let mode = std::fs::metadata(&data)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_record_moved_onto_another_token_id_does_not_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), MasterKey::generate().expect("random key")).expect("opens");
        let m = meta("acme", "u1", Scope::Read);
        let lock = store.lock();
        let mut change = store.change();
        change
            .put_token("tok_1", &m, None, &secrets())
            .expect("puts");
        change.commit(&lock).expect("commits");
        let Found::Live {
            sealed, wrapped, ..
        } = store.find("tok_1").expect("reads")
        else {
            panic!("expected a live token");
        };
        assert!(store.open_secrets("tok_2", &m, &sealed, &wrapped).is_err());
        let other_client = meta("evil", "u1", Scope::Read);
        assert!(
            store
                .open_secrets("tok_1", &other_client, &sealed, &wrapped)
                .is_err()
        );
    }
}

#[cfg(test)]
mod corruption_tests {
    use super::*;

    #[test]
    fn a_garbled_store_is_refused_with_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("k");
        let data = dir.path().join("data");
        let (key, _) = MasterKey::load_or_create(&key_path).expect("key");
        drop(Store::open(&data, key).expect("opens"));
        let conf = data.join("conf");
        std::fs::write(&conf, b"garbage that is not a sled config").expect("garble");
        let (key, _) = MasterKey::load_or_create(&key_path).expect("key");
        let opened = std::panic::catch_unwind(|| Store::open(&data, key).map(|_| ()));
        let result = opened.expect("opening a garbled store must not panic");
        let error = result.expect_err("a garbled store must be refused");
        assert!(
            matches!(error, StoreError::Corrupt { .. } | StoreError::Open { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains(&data.display().to_string()),
            "{error}"
        );
    }
}
