//! The embedded engine: one ordered key space in the data directory
//! ([`super::kv`], fjall), keys prefixed by what they hold (the table in
//! [`super`]). One process holds it (the directory's lock); its writer lock
//! makes every read-decide-write one unit, and each decision's operations
//! one atomic batch, durable at the next flush. A batch that destroys secret
//! material carries the purge mark and is noted for a purge ([`super::purge`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::TokenState;

use mmt_shared::wire::Scope;

use super::audit_log::{self, AuditLog};
use super::change::Op;
use super::copy::{Page, Row, Table};
use super::keys::{CountKey, Identity, expiry_key, prefixed, user_prefix};
use super::kv::{self, Kv};
use super::processed::PROCESSED;
use super::purge::{Deletions, PURGE_MARK};
use super::refresh::{DUE, REFRESH, due_key, split_time_key};
use super::upstream::{JobEntry, UPSTREAM};
use super::{COUNT, RecordRows, RefreshRecord, StoreError, TOKEN, from_sled, migrate};
use crate::rules::lifecycle::TokenMeta;
use crate::store::crypto::Macs;

type Counts = BTreeMap<Vec<u8>, u64>;

/// The open embedded engine.
pub(super) struct Embedded {
    pub(super) kv: Kv,
    writer: Mutex<()>,
    /// The token counts: a copy in memory of the `c` keys, so that a commit
    /// writes the new counts without reading them first and the console's
    /// counts read no record.
    counts: Mutex<Counts>,
    /// The data directory.
    pub(super) dir: PathBuf,
    /// The audit log beside the keyspace (`audit.jsonl`).
    pub(super) audit: Arc<Mutex<AuditLog>>,
    /// Deletions committed and not purged yet (boxed: the engine enum
    /// stays small).
    pub(super) deletions: Box<Deletions>,
    /// The data directory's lock, released when the store is dropped.
    _lock: kv::DirLock,
}

/// Proof that the caller holds the writer lock.
pub(super) struct WriteGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Embedded {
    /// Opens the keyspace of `dir` (the key already checked): moves a sled
    /// directory into fjall and migrates an older format first.
    pub(super) fn open(dir: &Path, macs: &Macs, cache_mb: u64) -> Result<Self, StoreError> {
        let lock = kv::lock(dir)?;
        from_sled::import(dir, cache_mb, usize::MAX)?;
        let kv = Kv::open(&dir.join(kv::DIR), cache_mb)?;
        migrate::to_current(&kv, macs, usize::MAX)?;
        let mut counts = Counts::new();
        for entry in kv.scan_prefix([COUNT]) {
            let (key, value) = entry?;
            if let Ok(bytes) = <[u8; 8]>::try_from(&value[..]) {
                counts.insert(key.to_vec(), u64::from_be_bytes(bytes));
            }
        }
        let audit_error = |source| StoreError::Audit {
            path: dir.join(audit_log::CURRENT),
            source,
        };
        let mut audit = AuditLog::open(dir, macs.audit_key()?).map_err(audit_error)?;
        if let Some(stored) = kv.get(mark_key(AUDIT_SEQ))? {
            let stored = <[u8; 8]>::try_from(&stored[..]).map_or(0, u64::from_be_bytes);
            if stored > audit.last_seq() {
                audit.note_lost(stored).map_err(audit_error)?;
            }
        }
        let deletions = Box::<Deletions>::default();
        if kv.get(mark_key(PURGE_MARK))?.is_some() {
            // Deleted before the last stop, not purged yet.
            deletions.note(Instant::now());
        }
        Ok(Self {
            kv,
            writer: Mutex::new(()),
            counts: Mutex::new(counts),
            dir: dir.to_owned(),
            audit: Arc::new(Mutex::new(audit)),
            deletions,
            _lock: lock,
        })
    }

    /// The audit log's current file (for errors).
    pub(super) fn audit_path(&self) -> PathBuf {
        self.dir.join(audit_log::CURRENT)
    }

    /// Takes the writer lock: held from the first read of a decision to its
    /// commit.
    pub(super) fn lock(&self) -> WriteGuard<'_> {
        WriteGuard(self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.kv.get(key)?.map(|v| v.to_vec()))
    }

    pub(super) fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(identity.key())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(super) fn record(&self, token_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(prefixed(TOKEN, token_id.as_bytes()))
    }

    /// The tokenIds of an end user's identities, in identity order.
    pub(super) fn user_token_ids(
        &self,
        client_id: &str,
        end_user_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix(user_prefix(client_id, end_user_id)) {
            let (_, token_id) = entry?;
            out.push(String::from_utf8_lossy(&token_id).into_owned());
        }
        Ok(out)
    }

    pub(super) fn counts(&self) -> Vec<(CountKey, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(key, n)| Some((CountKey::decode(key)?, *n)))
            .collect()
    }

    pub(super) fn refresh_record(
        &self,
        token_id: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        match self.kv.get(prefixed(REFRESH, token_id.as_bytes()))? {
            Some(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
            None => Ok(None),
        }
    }

    /// (time, tokenId) entries of the `d` or `e` index at or before `now`.
    pub(super) fn due_entries(
        &self,
        prefix: u8,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        let end = if prefix == DUE {
            due_key(now.saturating_add(1), "")
        } else {
            expiry_key(now.saturating_add(1), "")
        };
        let mut out = Vec::new();
        for entry in self.kv.range(vec![prefix]..end).take(limit) {
            let (key, _) = entry?;
            out.push(split_time_key(&key));
        }
        Ok(out)
    }

    pub(super) fn failing_refreshes(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, RefreshRecord)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix([REFRESH]) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let Ok(record) = postcard::from_bytes::<RefreshRecord>(&value) else {
                continue;
            };
            if record.attempts > 0 {
                let id = key.get(1..).unwrap_or_default();
                out.push((String::from_utf8_lossy(id).into_owned(), record));
            }
        }
        Ok(out)
    }

    pub(super) fn due_count(&self, until: UnixMillis, cap: usize) -> usize {
        let end = due_key(until.saturating_add(1), "");
        self.kv.range(vec![DUE]..end).take(cap).count()
    }

    pub(super) fn upstream_jobs(&self, limit: usize) -> Result<Vec<JobEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix([UPSTREAM]).take(limit) {
            let (key, value) = entry?;
            let token_id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            out.push((
                token_id,
                postcard::from_bytes(&value).map_err(StoreError::from),
            ));
        }
        Ok(out)
    }

    /// Up to `max` token records after `after`, in tokenId order, and
    /// whether more follow.
    pub(super) fn records_after(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<RecordRows, StoreError> {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(prefixed(TOKEN, after.as_bytes())),
            None => Bound::Included(vec![TOKEN]),
        };
        let mut records = self
            .kv
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![TOKEN + 1])));
        let mut out = Vec::new();
        while out.len() < max {
            let Some((key, value)) = records.next().transpose()? else {
                return Ok((out, false));
            };
            let token_id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            out.push((token_id, value.to_vec()));
        }
        Ok((out, records.next().is_some()))
    }

    /// Applies `ops` as one atomic batch, the counts with them. The caller
    /// holds the writer lock; the counts in memory follow the store once the
    /// batch is applied, and so do the deletions waiting for a purge.
    pub(super) fn apply(&self, ops: Vec<Op>, _lock: &WriteGuard<'_>) -> Result<(), StoreError> {
        let mut batch = self.kv.batch();
        let deletes = ops
            .iter()
            .any(|op| matches!(op, Op::Revoke { .. } | Op::EndJob { .. }));
        if deletes {
            batch.insert(mark_key(PURGE_MARK), []);
        }
        let mut deltas: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut count_in = |state: TokenState, scope: Scope, broker_type: &str, delta: i64| {
            let key = CountKey {
                state,
                scope,
                broker_type: broker_type.to_owned(),
            }
            .encode();
            *deltas.entry(key).or_default() += delta;
        };
        let mut audit = Vec::new();
        for op in ops {
            match op {
                Op::Audit(event) => audit.push(event),
                Op::PutToken {
                    token_id,
                    meta,
                    previous,
                    record,
                    key_id: _,
                } => {
                    if let Some(prev) = &previous {
                        if let Some(at) = prev.expires_at {
                            batch.remove(expiry_key(at, &token_id));
                        }
                        count_in(prev.state, prev.scope, &prev.broker_type, -1);
                    }
                    count_in(meta.state, meta.scope, &meta.broker_type, 1);
                    batch.insert(identity_of(&meta).key(), token_id.as_bytes());
                    batch.insert(prefixed(TOKEN, token_id.as_bytes()), record);
                    if let (TokenState::Active, Some(at)) = (meta.state, meta.expires_at) {
                        batch.insert(expiry_key(at, &token_id), []);
                    }
                }
                Op::Expire {
                    token_id,
                    previous,
                    meta,
                    record,
                } => {
                    if let Some(at) = previous.expires_at {
                        batch.remove(expiry_key(at, &token_id));
                    }
                    count_in(previous.state, previous.scope, &previous.broker_type, -1);
                    count_in(meta.state, meta.scope, &meta.broker_type, 1);
                    batch.insert(prefixed(TOKEN, token_id.as_bytes()), record);
                }
                Op::Revoke {
                    token_id,
                    meta,
                    record,
                } => {
                    batch.remove(identity_of(&meta).key());
                    if let Some(at) = meta.expires_at {
                        batch.remove(expiry_key(at, &token_id));
                    }
                    batch.insert(prefixed(TOKEN, token_id.as_bytes()), record);
                    count_in(meta.state, meta.scope, &meta.broker_type, -1);
                    count_in(TokenState::Revoked, meta.scope, &meta.broker_type, 1);
                }
                Op::Processed { key, reply } => batch.insert(key, reply),
                Op::PutRefresh {
                    token_id,
                    previous_due,
                    next,
                    expires_at,
                } => {
                    if let Some(due) = previous_due {
                        batch.remove(due_key(due, &token_id));
                    }
                    if let Some(at) = expires_at {
                        batch.remove(expiry_key(at, &token_id));
                    }
                    batch.insert(
                        prefixed(REFRESH, token_id.as_bytes()),
                        postcard::to_stdvec(&next)?,
                    );
                    batch.insert(due_key(next.due_at, &token_id), []);
                }
                Op::DropRefresh {
                    token_id,
                    previous_due,
                    expires_at,
                } => {
                    batch.remove(prefixed(REFRESH, token_id.as_bytes()));
                    batch.remove(due_key(previous_due, &token_id));
                    if let Some(at) = expires_at {
                        batch.insert(expiry_key(at, &token_id), []);
                    }
                }
                Op::SkipDue { token_id, due_at } => batch.remove(due_key(due_at, &token_id)),
                Op::SkipExpiry {
                    token_id,
                    expires_at,
                } => batch.remove(expiry_key(expires_at, &token_id)),
                Op::PutJob { token_id, job } => batch.insert(
                    prefixed(UPSTREAM, token_id.as_bytes()),
                    postcard::to_stdvec(&job)?,
                ),
                Op::EndJob { token_id } => batch.remove(prefixed(UPSTREAM, token_id.as_bytes())),
                Op::Rewrap {
                    token_id,
                    record,
                    key_id: _,
                } => batch.insert(prefixed(TOKEN, token_id.as_bytes()), record),
                Op::ImportToken {
                    token_id,
                    record,
                    key_id: _,
                    live,
                    revoked,
                    expiry_entry,
                } => {
                    if let Some(meta) = &live {
                        count_in(meta.state, meta.scope, &meta.broker_type, 1);
                        batch.insert(identity_of(meta).key(), token_id.as_bytes());
                    }
                    if let Some(tomb) = &revoked {
                        count_in(TokenState::Revoked, tomb.scope, &tomb.broker_type, 1);
                    }
                    if let Some(at) = expiry_entry {
                        batch.insert(expiry_key(at, &token_id), []);
                    }
                    batch.insert(prefixed(TOKEN, token_id.as_bytes()), record);
                }
                Op::Mark { name, value } => batch.insert(mark_key(&name), value),
            }
        }
        let mut current = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let next: Vec<(Vec<u8>, u64)> = deltas
            .into_iter()
            .map(|(key, delta)| {
                let n = current.get(&key).copied().unwrap_or(0);
                (key, n.saturating_add_signed(delta))
            })
            .collect();
        for (key, n) in &next {
            batch.insert(key.as_slice(), n.to_be_bytes());
        }
        // The audit lines go first: a crash between the two leaves a line
        // for a change that is applied again on redelivery (a line twice),
        // never a change without its line.
        if !audit.is_empty() {
            let mut log = self.audit.lock().unwrap_or_else(|e| e.into_inner());
            for event in audit {
                log.append(event).map_err(|source| StoreError::Audit {
                    path: self.audit_path(),
                    source,
                })?;
            }
            // The batch says how far the log goes: a crash that loses lines
            // the batch outlived is found (and said in the log) at start.
            batch.insert(mark_key(AUDIT_SEQ), log.last_seq().to_be_bytes());
        }
        self.kv.apply(batch)?;
        current.extend(next);
        if deletes {
            self.deletions.note(Instant::now());
        }
        Ok(())
    }

    /// Removes the purge mark after a purge, unless a deletion came since
    /// (noted under the writer lock, as every commit is).
    pub(super) fn clear_purge_mark(&self) -> Result<(), StoreError> {
        let _writer = self.lock();
        if self.deletions.is_pending() {
            return Ok(());
        }
        let mut batch = self.kv.batch();
        batch.remove(mark_key(PURGE_MARK));
        self.kv.apply(batch)
    }
}

/// The key of a named mark (`m` + its name).
pub(super) fn mark_key(name: &str) -> Vec<u8> {
    prefixed(MARK, name.as_bytes())
}

/// The mark of the last audit line the store's batches wrote.
const AUDIT_SEQ: &str = "audit-seq";

/// Marks (a copy's progress) are kept under this prefix.
const MARK: u8 = b'm';

impl Embedded {
    /// Up to `max` rows of `table` after the key `after`, and whether more
    /// follow.
    pub(super) fn export(
        &self,
        table: Table,
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let prefix = table_prefix(table);
        let start = match after {
            Some(after) => Bound::Excluded(prefixed(prefix, after)),
            None => Bound::Included(vec![prefix]),
        };
        let mut entries = self
            .kv
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![prefix + 1])));
        let mut out = Vec::new();
        while out.len() < max {
            let Some((key, value)) = entries.next().transpose()? else {
                return Ok((out, false));
            };
            out.push(row(table, &key, &value)?);
        }
        Ok((out, entries.next().is_some()))
    }

    /// Whether the token has its v1 expiry entry at `at`.
    pub(super) fn has_expiry_entry(
        &self,
        token_id: &str,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        Ok(self.kv.get(expiry_key(at, token_id))?.is_some())
    }
}

/// The prefix of a table's keys.
pub(super) fn table_prefix(table: Table) -> u8 {
    match table {
        Table::Tokens => TOKEN,
        Table::Processed => PROCESSED,
        Table::Refresh => REFRESH,
        Table::Jobs => UPSTREAM,
    }
}

/// A stored entry of `table` as a row, with its key less the prefix.
pub(super) fn row(table: Table, key: &[u8], value: &[u8]) -> Result<(Vec<u8>, Row), StoreError> {
    let id = key.get(1..).unwrap_or_default().to_vec();
    let text = String::from_utf8_lossy(&id).into_owned();
    let row = match table {
        // The expiry entry is looked up by the store, which can read the
        // record's expiry ([`Embedded::has_expiry_entry`]).
        Table::Tokens => Row::Token {
            token_id: text,
            record: value.to_vec(),
            expiry_entry: None,
        },
        Table::Processed => Row::Processed {
            key: key.to_vec(),
            reply: value.to_vec(),
        },
        Table::Refresh => Row::Refresh {
            token_id: text,
            record: postcard::from_bytes(value)?,
        },
        Table::Jobs => Row::Job {
            token_id: text,
            job: postcard::from_bytes(value)?,
        },
    };
    Ok((id, row))
}

/// The identity a token's metadata names.
pub(super) fn identity_of(meta: &TokenMeta) -> Identity<'_> {
    Identity {
        client_id: &meta.client_id,
        end_user_id: &meta.end_user_id,
        broker_type: &meta.broker_type,
        scope: meta.scope,
        account_id: &meta.account_id,
    }
}
