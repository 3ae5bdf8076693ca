//! The store's one way to change anything: [`Store::write`] runs a decision
//! with the store's reads at hand ([`Tx`]) and commits the [`Change`] it
//! made as one atomic unit, or nothing.
//!
//! This is the interface every engine keeps. The embedded engine holds its
//! writer lock from the first read to the commit, so nothing read can
//! change before the decision is applied. The shared engine (PostgreSQL)
//! runs the decision in one serializable transaction and runs it again when
//! another worker's commit conflicted with it: a decision has no effect
//! besides its change and the value it returns.

use std::ops::{Deref, DerefMut};

use mmt_shared::wire::MessageKind;

use super::postgres::{MAX_ATTEMPTS, Txn, is_conflict};
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
    pg: Option<Txn<'a>>,
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

    /// Up to `limit` upstream revocation jobs, in tokenId order.
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
        let change = || Change {
            store: self,
            ops: Vec::new(),
        };
        match &self.engine {
            Engine::Embedded(engine) => {
                let guard = engine.lock();
                let mut tx = Tx {
                    store: self,
                    change: change(),
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
                    let mut tx = Tx {
                        store: self,
                        change: change(),
                        pg: Some(engine.begin()?),
                    };
                    let decided = decide(&mut tx).and_then(|decision| match decision {
                        Decision::Commit(value) => {
                            let txn = tx.pg.take().ok_or(StoreError::Closed)?;
                            txn.apply(std::mem::take(&mut tx.change.ops))?;
                            txn.commit()?;
                            Ok(value)
                        }
                        Decision::Discard(value) => Ok(value),
                    });
                    match decided {
                        Err(error) if is_conflict(&error) && attempt < MAX_ATTEMPTS => {
                            // Another worker's commit came first: decide
                            // again on what it left (after a short pause,
                            // longer each time, so two do not collide again).
                            drop(tx);
                            std::thread::sleep(std::time::Duration::from_millis(
                                u64::from(attempt) * rand::random_range(1..=5),
                            ));
                        }
                        other => return other,
                    }
                }
            }
        }
    }
}
