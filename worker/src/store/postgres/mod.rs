//! The shared engine: PostgreSQL, so that any number of workers serve one
//! store (CONTRACT.md §13). tokio-postgres over rustls (ring), pooled by
//! deadpool-postgres, on a small runtime of the engine's own: the store's
//! callers are blocking threads (the service, the refresh passes), and each
//! call waits here for its statements.
//!
//! Every [`Store::write`](super::Store::write) is one `SERIALIZABLE`
//! transaction: the decision's reads and its writes commit together or not
//! at all, and a decision that raced another worker's (a serialization
//! failure, a deadlock, a unique identity taken meanwhile) is run again from
//! the start, so it sees the other worker's commit. That is what keeps one
//! tokenId per identity, no token brought back after its revocation, and no
//! message applied twice across workers, and what makes a refresh lease a
//! single flight across workers. Every statement has a timeout.

mod apply;
mod connect;
mod reads;
pub mod schema;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;

use super::StoreError;
use crate::store::crypto::MasterKey;

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
    pub(super) fn connect(config: &PgConfig, key: &MasterKey) -> Result<Self, StoreError> {
        connect::open(config, key)
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

    /// Begins a write transaction.
    pub(super) fn begin(&self) -> Result<Txn<'_>, StoreError> {
        self.block(async {
            let client = self.connection().await?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                .await
                .map_err(StoreError::from)?;
            Ok(Txn {
                engine: self,
                client: Some(client),
            })
        })
    }
}

/// An open write transaction on one pooled connection. Dropped without
/// [`Txn::commit`], it is rolled back.
pub(crate) struct Txn<'a> {
    engine: &'a Postgres,
    client: Option<Object>,
}

impl Txn<'_> {
    /// The engine.
    pub(super) fn engine(&self) -> &Postgres {
        self.engine
    }

    /// The transaction's connection.
    pub(super) fn client(&self) -> Result<&tokio_postgres::Client, StoreError> {
        self.client
            .as_deref()
            .map(|wrapper| &**wrapper)
            .ok_or(StoreError::Closed)
    }

    /// Commits: durable when it returns.
    pub(super) fn commit(mut self) -> Result<(), StoreError> {
        let client = self.client.take().ok_or(StoreError::Closed)?;
        self.engine.block(async move {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(StoreError::from)
        })
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
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
