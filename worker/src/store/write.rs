//! The store's one way to change anything: [`Store::write`] runs a decision
//! with the store's reads at hand ([`Tx`]) and commits the [`Change`] it
//! made as one atomic unit, or nothing.
//!
//! This is the interface every engine keeps. The embedded engine holds its
//! writer lock from the first read to the commit, so nothing read can
//! change before the decision is applied. The shared engine (PostgreSQL)
//! runs the decision in one transaction whose reads lock what they find,
//! and runs it again when another worker's commit conflicted with it: a
//! decision has no effect besides its change and the value it returns.
//!
//! A consumer's batch is one [`Group`] (group commit): on the shared engine
//! its decisions share one transaction, each seeing the ones before, and the
//! batch commits once; a conflict runs the whole batch again, twice at
//! most, and then one transaction per decision. The embedded engine applies
//! each decision at once and makes the batch durable with one flush (the
//! consumer's), so a group there is its writes one after the other.

use std::ops::{Deref, DerefMut};

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::MessageKind;

use super::postgres::{Failed, Lock, MAX_ATTEMPTS, Postgres, Txn, is_conflict};
use super::upstream::JobEntry;
use super::{Change, Engine, Found, Identity, RefreshRecord, Store, StoreError, processed};

/// What a decision settled on.
pub enum Decision<T> {
    /// Commit the change, then return the value.
    Commit(T),
    /// Leave the store as it was (bad input, a repeated message, nothing to
    /// do), and return the value.
    Discard(T),
}

/// A decision's view of the store: reads consistent with the commit, and
/// the change being built (through `Deref`).
pub struct Tx<'a> {
    store: &'a Store,
    change: Change<'a>,
    /// The open transaction of the shared engine; `None` for the embedded
    /// one, whose writer lock the caller holds.
    pg: Option<&'a Txn<'a>>,
}

impl<'a> Deref for Tx<'a> {
    type Target = Change<'a>;

    fn deref(&self) -> &Change<'a> {
        &self.change
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.change
    }
}

impl Tx<'_> {
    /// The stored reply of an already processed message.
    pub fn processed(
        &self,
        kind: MessageKind,
        message_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.pg {
            None => self.store.processed(kind, message_id),
            Some(txn) => txn
                .processed(&processed::key(kind, message_id))?
                .map(|stored| processed::decode(&stored))
                .transpose(),
        }
    }

    /// The live tokenId of an identity.
    pub fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        match &self.pg {
            None => self.store.token_of(identity),
            Some(txn) => txn.token_of(identity),
        }
    }

    /// What is stored under `token_id`.
    pub fn find(&self, token_id: &str) -> Result<Found, StoreError> {
        match &self.pg {
            None => self.store.find(token_id),
            Some(txn) => self.store.decode_found(token_id, txn.record(token_id)?),
        }
    }

    /// The refresh record of a token, if the engine owns it.
    pub fn refresh_record(&self, token_id: &str) -> Result<Option<RefreshRecord>, StoreError> {
        match &self.pg {
            None => self.store.refresh_record(token_id),
            Some(txn) => txn.refresh_record(token_id),
        }
    }

    /// Up to `limit` due refresh entries (due time, tokenId), in due order;
    /// on the shared engine only those no other worker is deciding on, and
    /// locked with their tokens until the commit.
    pub fn due_refreshes(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        match &self.pg {
            None => self.store.due_refreshes(now, limit),
            Some(txn) => txn.due_refreshes(now, limit),
        }
    }

    /// Up to `max` live tokens after `after` (tokenId order) whose data key
    /// a key older than `active` wraps, as (tokenId, record); on the shared
    /// engine locked until the commit, those another worker holds skipped.
    /// With the tokenId to go on after, `None` at the end.
    pub(super) fn rewrap_candidates(
        &self,
        after: Option<&str>,
        max: usize,
        active: crate::store::crypto::KeyId,
    ) -> Result<super::RewrapRows, StoreError> {
        let Some(txn) = &self.pg else {
            let Engine::Embedded(e) = &self.store.engine else {
                return Err(StoreError::Closed);
            };
            let (rows, more) = e.records_after(after, max)?;
            let next = more
                .then(|| rows.last().map(|(id, _)| id.clone()))
                .flatten();
            let older = rows
                .into_iter()
                .filter(|(_, record)| {
                    super::record::wrapped_key_of(record).is_some_and(|id| id < active)
                })
                .collect();
            return Ok((older, next));
        };
        txn.rewrap_candidates(after, max, active)
    }

    /// Up to `limit` upstream revocation jobs, in tokenId order (on the
    /// shared engine, those no other worker holds).
    pub fn upstream_jobs(&self, limit: usize) -> Result<Vec<JobEntry>, StoreError> {
        match &self.pg {
            None => self.store.upstream_jobs(limit),
            Some(txn) => txn.upstream_jobs(limit),
        }
    }
}

impl Store {
    /// Runs `decide` and commits the change it made when it says
    /// [`Decision::Commit`]. `decide` may run more than once (see the
    /// module's documentation), so it must not act on anything but `tx`.
    pub fn write<T>(
        &self,
        mut decide: impl FnMut(&mut Tx<'_>) -> Result<Decision<T>, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.engine {
            Engine::Embedded(engine) => {
                let guard = engine.lock();
                let mut tx = Tx {
                    store: self,
                    change: Change::new(self),
                    pg: None,
                };
                match decide(&mut tx)? {
                    Decision::Commit(value) => {
                        engine.apply(tx.change.ops, &guard)?;
                        Ok(value)
                    }
                    Decision::Discard(value) => Ok(value),
                }
            }
            Engine::Postgres(engine) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let decided = engine.begin(Lock::Wait).and_then(|txn| {
                        let (value, changed) = decide_in(self, &txn, &mut decide)?;
                        if changed {
                            txn.commit()?;
                        }
                        Ok(value)
                    });
                    match decided {
                        Err(error) if is_conflict(&error) && attempt < MAX_ATTEMPTS => {
                            backoff(attempt);
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    /// Runs `batch`, whose writes go through the [`Group`] it is given, and
    /// commits them as one (see the module's documentation). `batch` may run
    /// more than once, so it must not act on anything but the group's
    /// writes; the value of its last run is returned.
    pub fn group<T>(&self, mut batch: impl FnMut(&mut Group<'_>) -> T) -> T {
        let Engine::Postgres(engine) = &self.engine else {
            return batch(&mut Group::alone(self));
        };
        for attempt in 1..=GROUP_ATTEMPTS {
            let mut group = Group {
                store: self,
                shared: Some(Shared { engine, txn: None }),
            };
            let value = batch(&mut group);
            match group.commit() {
                Ok(()) => return value,
                Err(Failed::Conflict) => backoff(attempt),
                Err(Failed::Other) => break,
            }
        }
        // Conflicting again and again, or failing: one transaction per
        // decision, so that each conflict is settled alone and a failure is
        // the one decision's.
        batch(&mut Group::alone(self))
    }
}

/// How often a group's shared transaction is tried before its decisions run
/// one transaction each.
const GROUP_ATTEMPTS: u32 = 2;

/// A pause before running a decision again after a conflict, longer each
/// time, so two workers do not collide again.
fn backoff(attempt: u32) {
    std::thread::sleep(std::time::Duration::from_millis(
        u64::from(attempt) * rand::random_range(1..=5),
    ));
}

/// Runs `decide` once in `txn` and applies its change there (not yet
/// committed); says whether it changed anything.
fn decide_in<T>(
    store: &Store,
    txn: &Txn<'_>,
    decide: &mut impl FnMut(&mut Tx<'_>) -> Result<Decision<T>, StoreError>,
) -> Result<(T, bool), StoreError> {
    let mut tx = Tx {
        store,
        change: Change::new(store),
        pg: Some(txn),
    };
    match decide(&mut tx)? {
        Decision::Commit(value) => {
            txn.apply(std::mem::take(&mut tx.change.ops))?;
            Ok((value, true))
        }
        Decision::Discard(value) => Ok((value, false)),
    }
}

/// The writes of one batch, committed together (see [`Store::group`]).
pub struct Group<'a> {
    store: &'a Store,
    /// The shared engine's transaction, begun at the first write; `None`
    /// when each write is its own.
    shared: Option<Shared<'a>>,
}

/// The shared engine's part of a group.
struct Shared<'a> {
    engine: &'a Postgres,
    txn: Option<Txn<'a>>,
}

impl<'a> Group<'a> {
    fn alone(store: &'a Store) -> Self {
        Self {
            store,
            shared: None,
        }
    }

    /// Runs `decide` as [`Store::write`] does, in the group's transaction.
    /// After a failed statement the group is lost: later writes fail at
    /// once, and the batch runs again.
    pub fn write<T>(
        &mut self,
        mut decide: impl FnMut(&mut Tx<'_>) -> Result<Decision<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(shared) = &mut self.shared else {
            return self.store.write(decide);
        };
        if shared.txn.is_none() {
            shared.txn = Some(shared.engine.begin(Lock::NoWait)?);
        }
        let txn = shared.txn.as_ref().ok_or(StoreError::Closed)?;
        decide_in(self.store, txn, &mut decide).map(|(value, _)| value)
    }

    /// Commits the shared transaction, if one was begun; on failure, how.
    fn commit(self) -> Result<(), Failed> {
        let Some(Shared { txn: Some(txn), .. }) = self.shared else {
            return Ok(());
        };
        if let Some(failed) = txn.failed() {
            return Err(failed);
        }
        txn.commit().map_err(|error| {
            if is_conflict(&error) {
                Failed::Conflict
            } else {
                Failed::Other
            }
        })
    }
}
