//! What `mmt-worker store copy` needs of the store: every stored row, table
//! by table in key order ([`Store::export`]), written as it is into another
//! store ([`Change::import`]) with a mark of the last row copied in the same
//! commit ([`Change::mark_copied`]), so a copy killed half-way resumes where
//! its last commit ended. Records are copied as their bytes: the same key
//! opens them in either engine (their tag is checked on the way).

use mmt_shared::time_fmt::UnixMillis;
use serde::{Deserialize, Serialize};

use super::change::Op;
use super::record::{self, Record};
use super::{Change, Engine, RefreshRecord, Store, StoreError, UpstreamJob};
use crate::store::crypto::wrapped_key_id;

/// The tables, in the order they are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Token records.
    Tokens,
    /// Processed messages' replies.
    Processed,
    /// The refresh engine's records.
    Refresh,
    /// Upstream revocation jobs.
    Jobs,
}

impl Table {
    /// Every table, in copy order.
    pub const ALL: [Table; 4] = [Table::Tokens, Table::Processed, Table::Refresh, Table::Jobs];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Tokens => "tokens",
            Table::Processed => "processed",
            Table::Refresh => "refresh",
            Table::Jobs => "jobs",
        }
    }

    /// The name of its copy mark.
    pub(super) fn mark(self) -> String {
        format!("copy:{}", self.name())
    }
}

/// One stored row, as both engines keep it (and as a backup file holds it,
/// [`super::backup`]).
#[derive(Clone, Serialize, Deserialize)]
pub enum Row {
    /// A token's record, and its v1 expiry entry if it has one.
    Token {
        /// The tokenId.
        token_id: String,
        /// The record's bytes.
        record: Vec<u8>,
        /// The v1 expiry entry's time.
        expiry_entry: Option<UnixMillis>,
    },
    /// A processed message's compact reply under its key.
    Processed {
        /// The processed key.
        key: Vec<u8>,
        /// The stored reply.
        reply: Vec<u8>,
    },
    /// A refresh record.
    Refresh {
        /// The tokenId.
        token_id: String,
        /// The record.
        record: RefreshRecord,
    },
    /// An upstream revocation job.
    Job {
        /// The tokenId.
        token_id: String,
        /// The job.
        job: UpstreamJob,
    },
}

impl Row {
    /// The table the row belongs to.
    pub fn table(&self) -> Table {
        match self {
            Row::Token { .. } => Table::Tokens,
            Row::Processed { .. } => Table::Processed,
            Row::Refresh { .. } => Table::Refresh,
            Row::Job { .. } => Table::Jobs,
        }
    }
}

/// A page of rows with each one's key, and whether more follow.
pub type Page = (Vec<(Vec<u8>, Row)>, bool);

impl Store {
    /// Up to `max` rows of `table` after the row whose key is `after`, in
    /// key order.
    pub fn export(
        &self,
        table: Table,
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Page, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => {
                let (mut rows, more) = e.export(table, after, max)?;
                for (_, row) in &mut rows {
                    self.find_expiry_entry(row, |token_id, at| e.has_expiry_entry(token_id, at))?;
                }
                Ok((rows, more))
            }
            Engine::Postgres(pg) => pg.export(table, after, max),
        }
    }

    /// Sets a token row's v1 expiry entry when `has` finds one at its
    /// record's expiry (the record is decoded and checked against the key).
    pub(super) fn find_expiry_entry(
        &self,
        row: &mut Row,
        has: impl FnOnce(&str, UnixMillis) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if let Row::Token {
            token_id,
            record,
            expiry_entry,
        } = row
            && let Record::Live { meta, .. } = record::decode(&self.macs, token_id, record)?
            && let Some(at) = meta.expires_at
            && has(token_id, at)?
        {
            *expiry_entry = Some(at);
        }
        Ok(())
    }

    /// The key of the last row of `table` a copy into this store committed.
    pub fn copy_mark(&self, table: Table) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.get(super::embedded::mark_key(&table.mark())),
            Engine::Postgres(pg) => pg.meta(&table.mark()),
        }
    }
}

impl Change<'_> {
    /// Writes `row` as it is (a token's record is checked against the key,
    /// and its counts and indexes follow it).
    pub fn import(&mut self, row: Row) -> Result<(), StoreError> {
        let op = match row {
            Row::Token {
                token_id,
                record,
                expiry_entry,
            } => {
                let (live, revoked, key_id) =
                    match record::decode(&self.store.macs, &token_id, &record)? {
                        Record::Live { meta, wrapped, .. } => {
                            (Some(meta), None, wrapped_key_id(&wrapped)?)
                        }
                        Record::Revoked(tomb) => (None, Some(tomb), 0),
                    };
                Op::ImportToken {
                    token_id,
                    record,
                    key_id,
                    live,
                    revoked,
                    expiry_entry,
                }
            }
            Row::Processed { key, reply } => Op::Processed { key, reply },
            Row::Refresh { token_id, record } => Op::PutRefresh {
                token_id,
                previous_due: None,
                next: record,
                expires_at: None,
            },
            Row::Job { token_id, job } => Op::PutJob { token_id, job },
        };
        self.ops.push(op);
        Ok(())
    }

    /// Marks `last_key` as the last row of `table` copied.
    pub fn mark_copied(&mut self, table: Table, last_key: &[u8]) {
        self.ops.push(Op::Mark {
            name: table.mark(),
            value: last_key.to_vec(),
        });
    }
}
