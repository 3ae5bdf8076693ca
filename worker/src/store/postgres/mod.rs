//! The shared engine: PostgreSQL, so that any number of workers serve one
//! store (CONTRACT.md §13). tokio-postgres over rustls (ring), pooled by
//! deadpool-postgres, on a small runtime of the engine's own: the store's
//! callers are blocking threads (the service, the refresh passes), and each
//! call waits here for its statements.
//!
//! Every [`Store::write`](super::Store::write) is one transaction (a
//! consumer's batch is one for all its decisions: group commit): the
//! decision's reads and its writes commit together or not at all. Its reads
//! lock what they find (`SELECT ... FOR UPDATE`) until the commit, so no
//! other worker changes a token, its refresh record or its upstream job
//! between a decision's read and its write; what a decision finds absent is
//! guarded by a unique key (one live token per identity, one processed row
//! per message id, one row per tokenId). A decision that raced another
//! worker's (a unique key taken meanwhile, a deadlock, a lock a group would
//! have waited for) is run again from the start, so it sees the other
//! worker's commit. That is what keeps one tokenId per identity, no token
//! brought back after its revocation, and no message applied twice across
//! workers. The refresh and upstream passes take their rows with
//! `FOR UPDATE SKIP LOCKED`: a lease, or an upstream job, is one worker's.
//! Every statement has a timeout.

mod apply;
mod audit;
mod connect;
mod keys;
mod prepared;
mod reads;
pub mod schema;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use tokio_postgres::error::SqlState;

use super::StoreError;
use crate::store::crypto::{KeyRing, Macs};

pub use connect::{PgConfig, redact};

/// How often a decision is run again after a conflict before the conflict
/// is the caller's (as a transient store error).
pub(super) const MAX_ATTEMPTS: u32 = 20;

/// The open shared engine.
pub(crate) struct Postgres {
    /// The engine's own runtime: the connections' tasks run here. Taken
    /// only when the engine is dropped (shut down in the background: a
    /// runtime may not be dropped where blocking is not allowed).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The store's URL, password hidden, for errors and logs.
    shown: String,
    /// The worker's audit chains.
    chains: audit::Chains,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Connects, migrates the schema and checks `key` (see
    /// [`connect::open`]).
    pub(super) fn connect(
        config: &PgConfig,
        key: &KeyRing,
        seed: Option<&crate::store::ring::RingState>,
    ) -> Result<(Self, Macs), StoreError> {
        connect::open(config, key, seed)
    }

    /// Runs `future` to its end on the engine's runtime, from whatever
    /// thread asks: a blocking thread, a plain thread, or a worker thread of
    /// another multi-threaded runtime (which is told that it blocks).
    pub(super) fn block<F: Future>(&self, future: F) -> F::Output {
        let Some(runtime) = &self.runtime else {
            unreachable!("the runtime is taken only when the engine is dropped")
        };
        let handle = runtime.handle();
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| handle.block_on(future))
            }
            _ => handle.block_on(future),
        }
    }

    /// A pooled connection.
    pub(super) async fn connection(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|source| StoreError::Pool {
            store: self.shown.clone(),
            detail: pool_error(&source),
        })
    }

    /// Begins a write transaction whose reads lock as `lock` says.
    pub(super) fn begin(&self, lock: Lock) -> Result<Txn<'_>, StoreError> {
        self.block(async {
            let client = self.connection().await?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                .await
                .map_err(StoreError::from)?;
            Ok(Txn {
                engine: self,
                client: Some(client),
                lock,
                failed: Cell::new(None),
                deltas: RefCell::default(),
                audit: RefCell::default(),
                chain: RefCell::new(None),
            })
        })
    }
}

/// An open write transaction on one pooled connection. Dropped without
/// [`Txn::commit`], it is rolled back.
///
/// A statement that fails aborts a PostgreSQL transaction, and a `COMMIT`
/// of an aborted transaction rolls back without an error. So every
/// statement runs through [`Txn::run`], which remembers a failure, and
/// [`Txn::commit`] refuses to commit after one: a decision that set a
/// failed read aside cannot have the writes of its group silently dropped.
pub(crate) struct Txn<'a> {
    engine: &'a Postgres,
    client: Option<Object>,
    /// How its reads lock the rows they find.
    lock: Lock,
    /// Whether a statement failed, and if so whether it was a conflict.
    failed: Cell<Option<Failed>>,
    /// The count deltas of every change applied so far: written once, at
    /// the commit.
    deltas: RefCell<apply::Deltas>,
    /// The audit lines of every change applied so far: written once, at
    /// the commit.
    audit: RefCell<audit::AuditLines>,
    /// The audit chain its lines go on, once it has one.
    chain: RefCell<Option<audit::Chain>>,
}

/// A `SELECT` with each [`Lock`], in the enum's order, as constants.
macro_rules! locked {
    ($select:literal) => {
        [
            $select,
            concat!($select, " FOR UPDATE"),
            concat!($select, " FOR UPDATE NOWAIT"),
            concat!($select, " FOR UPDATE SKIP LOCKED"),
        ]
    };
}
pub(super) use locked;

/// How a read locks the rows it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Not at all (reads outside a decision).
    None,
    /// Until the commit, waiting for another transaction's lock (a decision
    /// alone).
    Wait,
    /// Until the commit, failing at once where another transaction holds
    /// the row (a group: it runs again rather than wait in a cycle).
    NoWait,
    /// Until the commit, leaving out the rows another transaction holds.
    SkipLocked,
}

impl Lock {
    /// The one of `variants` (a query as [`locked!`] writes it) with this
    /// lock: chosen, not built, for every statement.
    pub(super) fn pick(self, variants: &[&'static str; 4]) -> &'static str {
        variants[self as usize]
    }
}

/// How a transaction's statement failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Another worker's commit conflicted with it: worth running again.
    Conflict,
    /// Anything else.
    Other,
}

impl Txn<'_> {
    /// How the transaction's reads lock.
    pub(super) fn lock(&self) -> Lock {
        self.lock
    }

    /// The transaction's connection.
    fn client(&self) -> Result<&ClientWrapper, StoreError> {
        self.client.as_deref().ok_or(StoreError::Closed)
    }

    /// Runs the statements `call` makes on the transaction's connection,
    /// and remembers their failure.
    pub(super) fn run<'s, T, F: Future<Output = Result<T, StoreError>>>(
        &'s self,
        call: impl FnOnce(&'s ClientWrapper) -> F,
    ) -> Result<T, StoreError> {
        if self.failed.get().is_some() {
            return Err(StoreError::Closed);
        }
        let result = self.client().and_then(|c| self.engine.block(call(c)));
        if let Err(error) = &result {
            self.failed.set(Some(if is_conflict(error) {
                Failed::Conflict
            } else {
                Failed::Other
            }));
        }
        result
    }

    /// How a statement of the transaction failed, if one did.
    pub(crate) fn failed(&self) -> Option<Failed> {
        self.failed.get()
    }

    /// Writes the counts and the audit lines, then commits: durable when
    /// it returns.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        if self.failed.get().is_some() {
            return Err(StoreError::Closed);
        }
        let deltas = std::mem::take(&mut *self.deltas.borrow_mut());
        self.run(|c| apply::add_counts(c, deltas))?;
        let lines = std::mem::take(&mut *self.audit.borrow_mut());
        self.run(|c| apply::add_audit(c, lines))?;
        let client = self.client.take().ok_or(StoreError::Closed)?;
        let committed = self.engine.block(async move {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(StoreError::from)
        });
        if committed.is_err() {
            self.failed.set(Some(Failed::Other));
        }
        self.end_chain(committed.is_ok());
        committed
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        self.end_chain(false);
        if let Some(client) = self.client.take() {
            // A connection whose rollback fails is closed, and the pool
            // drops it rather than hand it out again.
            let _ = self
                .engine
                .block(async move { client.batch_execute("ROLLBACK").await });
        }
    }
}

/// Whether a failed write is a conflict with another worker's, worth
/// running again from the start.
pub(super) fn is_conflict(error: &StoreError) -> bool {
    let StoreError::Postgres(error) = error else {
        return false;
    };
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::LOCK_NOT_AVAILABLE
    )
}

/// Whether a PostgreSQL error may pass by itself: the connection, the
/// server going away or restarting, too many connections, a timeout.
pub(super) fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // No SQLSTATE: the connection or I/O failed.
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "53" | "57" | "40")
        }
    }
}

/// What a pool error says, without the URL.
fn pool_error(error: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Timeout(kind) => format!("no connection within the timeout ({kind:?})"),
        PoolError::Backend(error) => match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None if error.is_closed() => "the connection closed".to_owned(),
            None => {
                use std::error::Error as _;
                match error.source() {
                    Some(cause) => format!("{error} ({cause})"),
                    None => error.to_string(),
                }
            }
        },
        PoolError::Closed => "the pool is closed".to_owned(),
        PoolError::NoRuntimeSpecified => "no runtime".to_owned(),
        PoolError::PostCreateHook(_) => "a new connection could not be set up".to_owned(),
    }
}

/// Milliseconds as PostgreSQL's `integer` for a statement timeout.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lock_picks_its_own_select() {
        let variants = locked!("SELECT 1");
        assert_eq!(Lock::None.pick(&variants), "SELECT 1");
        assert_eq!(Lock::Wait.pick(&variants), "SELECT 1 FOR UPDATE");
        assert_eq!(Lock::NoWait.pick(&variants), "SELECT 1 FOR UPDATE NOWAIT");
        assert_eq!(
            Lock::SkipLocked.pick(&variants),
            "SELECT 1 FOR UPDATE SKIP LOCKED"
        );
    }
}
