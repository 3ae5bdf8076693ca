//! The store's one way to change anything: [`Store::write`] runs a decision
//! with the store's reads at hand ([`Tx`]) and commits the [`Change`] it
//! made as one atomic unit, or nothing.
//!
//! This is the interface every engine keeps. The embedded engine holds its
//! writer lock from the first read to the commit, so nothing read can
//! change before the decision is applied. An engine shared by several
//! workers (PostgreSQL) runs the same decision in one transaction and may
//! run it again after a serialization failure: a decision has no effect
//! besides its change and the value it returns.

use std::ops::{Deref, DerefMut};

use mmt_shared::wire::MessageKind;

use super::upstream::JobEntry;
use super::{Change, Found, Identity, RefreshRecord, Store, StoreError};

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
        self.store.processed(kind, message_id)
    }

    /// The live tokenId of an identity.
    pub fn token_of(&self, identity: &Identity<'_>) -> Result<Option<String>, StoreError> {
        self.store.token_of(identity)
    }

    /// What is stored under `token_id`.
    pub fn find(&self, token_id: &str) -> Result<Found, StoreError> {
        self.store.find(token_id)
    }

    /// The refresh record of a token, if the engine owns it.
    pub fn refresh_record(&self, token_id: &str) -> Result<Option<RefreshRecord>, StoreError> {
        self.store.refresh_record(token_id)
    }

    /// Up to `limit` upstream revocation jobs, in tokenId order.
    pub fn upstream_jobs(&self, limit: usize) -> Result<Vec<JobEntry>, StoreError> {
        self.store.upstream_jobs(limit)
    }

    /// The store, for what needs no consistency with the commit (opening
    /// sealed secrets, reading the key).
    pub fn store(&self) -> &Store {
        self.store
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
        let guard = self.lock();
        let mut tx = Tx {
            store: self,
            change: self.change(),
        };
        match decide(&mut tx)? {
            Decision::Commit(value) => {
                tx.change.commit(&guard)?;
                Ok(value)
            }
            Decision::Discard(value) => Ok(value),
        }
    }
}
