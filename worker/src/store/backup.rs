//! Backups of the embedded store: every row as it was at one moment, in one
//! file, still sealed under the master key, with a digest and a tag over the
//! whole.
//!
//! - [`Store::backup`] takes the moment ([`snapshot`]): under the writer
//!   lock, so that no batch is half applied, the engine's frozen iterators
//!   are made, one per table, and nothing written afterwards is seen. A
//!   running worker serves it from its own process (the data directory is
//!   locked; `app::backups`), while it goes on serving messages.
//! - [`Backup::write`] writes the file ([`format`]): the rows of
//!   [`super::copy`], the ones `store copy` moves, each token record as its
//!   stored bytes. A backup is no more readable than the store it was taken
//!   from.
//! - [`Reader`] reads one back, checking the key before anything else and
//!   the digest and tag at its end; `mmt-worker restore` imports its rows
//!   with [`super::Change::import`], which rebuilds the indexes and counts.

use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use serde::{Deserialize, Serialize};

use super::copy::Table;
use super::ring::RingState;
use super::{CountKey, Store, StoreError, migrate};

mod format;
mod snapshot;

pub use format::{FORMAT, Reader};
use snapshot::Snapshot;

/// Rows of each table, in [`Table::ALL`] order.
pub type Totals = [u64; 4];

/// Why a backup could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file (or the stream it is written to) failed.
    #[error("backup file I/O")]
    Io(#[source] std::io::Error),
    /// The file does not start as a backup does.
    #[error("not an mmt backup file")]
    NotABackup,
    /// The file was written by a newer mmt.
    #[error(
        "the backup file's format is {found}, this worker reads format {FORMAT}: use the mmt version that wrote it"
    )]
    Format {
        /// The format found.
        found: u16,
    },
    /// The file ends before its end.
    #[error("the backup file is truncated: it ends before its end")]
    Truncated,
    /// The file's bytes are not the ones written.
    #[error("the backup file is damaged: {what}")]
    Damaged {
        /// What does not hold.
        what: &'static str,
    },
    /// The key is not the key of the store the backup was taken from.
    #[error(
        "the key does not open this backup: it was taken from a store with another key (give the key file of the store it was taken from)"
    )]
    WrongKey,
    /// The write was stopped before the end (the worker is stopping).
    #[error("the backup was stopped before its end")]
    Stopped,
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}

/// What a backup says of itself before its rows: enough to check the key,
/// show progress, and compare a restored store with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// The moment the backup holds (RFC 3339, UTC): nothing written after
    /// it is in the backup.
    pub taken_at: String,
    /// The same, in Unix milliseconds.
    pub taken_at_ms: UnixMillis,
    /// The mmt version that wrote it.
    pub written_by: String,
    /// The store's record format.
    pub store_format: u8,
    /// A key check value (hex) made with the store's active key when the
    /// backup was taken (before key rings: its one key, id 0).
    pub key_check: String,
    /// What the store knew of its key ring ([`RingState`]): the check value
    /// of each key and the store's own keys, sealed; absent in a backup from
    /// before key rings, whose one key is `key_check`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<RingState>,
    /// The tokens by (state, scope, integration), revoked ones included.
    pub counts: Vec<Count>,
}

/// One group of the token counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    /// The state.
    pub state: String,
    /// The scope.
    pub scope: String,
    /// The integration.
    pub broker_type: String,
    /// How many tokens.
    pub tokens: u64,
}

impl Header {
    /// What the store the backup was taken from knew of its key ring.
    pub fn ring_state(&self) -> Result<RingState, BackupError> {
        if let Some(state) = &self.keyring {
            return Ok(state.clone());
        }
        let check = hex::decode(&self.key_check).map_err(|_| BackupError::Damaged {
            what: "its key check is not hexadecimal",
        })?;
        Ok(RingState {
            checks: [(0, check)].into(),
            macs: None,
        })
    }

    /// Every token the backup holds, revoked ones included.
    pub fn tokens(&self) -> u64 {
        self.counts.iter().map(|c| c.tokens).sum()
    }
}

/// The counts that are not zero, as a backup's header gives them.
pub fn counts_of(counts: &[(CountKey, u64)]) -> Vec<Count> {
    let mut out: Vec<Count> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(key, n)| Count {
            state: key.state.as_str().to_owned(),
            scope: key.scope.as_str().to_owned(),
            broker_type: key.broker_type.clone(),
            tokens: *n,
        })
        .collect();
    out.sort();
    out
}

/// A backup being taken: the moment is fixed, the rows not yet written.
pub struct Backup<'a> {
    snapshot: Snapshot<'a>,
    header: Header,
}

/// Rows between two calls of a write's `go_on`.
const EVERY: u64 = 1_000;

impl Store {
    /// Takes a backup's moment: the rows are read as they are now, whatever
    /// is written while they are written out. The embedded store only
    /// (PostgreSQL has `pg_dump`).
    pub fn backup(&self) -> Result<Backup<'_>, BackupError> {
        let snapshot = self.snapshot()?;
        let header = Header {
            taken_at: rfc3339(snapshot.taken_at),
            taken_at_ms: snapshot.taken_at,
            written_by: env!("CARGO_PKG_VERSION").to_owned(),
            store_format: migrate::FORMAT,
            key_check: hex::encode(
                self.ring()
                    .check_value(self.ring().active())
                    .map_err(StoreError::from)?,
            ),
            keyring: Some(self.ring_state()?),
            counts: counts_of(&snapshot.counts),
        };
        Ok(Backup { snapshot, header })
    }
}

impl Backup<'_> {
    /// What the backup says of itself.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Writes the backup to `out`; `go_on` is told every thousand rows of a
    /// table and at its end (the table, its rows so far) and stops the
    /// write by answering `false` ([`BackupError::Stopped`]). Gives `out`
    /// back, flushed, with the rows written.
    pub fn write<W: std::io::Write>(
        mut self,
        out: W,
        go_on: &mut dyn FnMut(Table, u64) -> bool,
    ) -> Result<(W, Totals), BackupError> {
        let store = self.snapshot.store;
        let mut writer = format::Writer::start(out, &self.header)?;
        let mut table = None;
        let mut rows = 0u64;
        while let Some(row) = self.snapshot.next_row() {
            let row = row?;
            if table != Some(row.table()) {
                if let Some(done) = table
                    && !go_on(done, rows)
                {
                    return Err(BackupError::Stopped);
                }
                table = Some(row.table());
                rows = 0;
            }
            writer.row(&row)?;
            rows += 1;
            if rows.is_multiple_of(EVERY) && !go_on(row.table(), rows) {
                return Err(BackupError::Stopped);
            }
        }
        if let Some(done) = table
            && !go_on(done, rows)
        {
            return Err(BackupError::Stopped);
        }
        writer.finish(&store.macs)
    }
}

#[cfg(test)]
mod tests;
