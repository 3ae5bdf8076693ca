//! The embedded store's rows at one moment: the engine's frozen iterators
//! (`kv::frozen`), made under the writer lock, one per table plus the
//! counts and the v1 expiry index, which a token's row carries.

use std::collections::HashSet;

use mmt_shared::time_fmt::{UnixMillis, now_millis};

use super::BackupError;
use crate::store::copy::{Row, Table};
use crate::store::embedded::{row, table_prefix};
use crate::store::keys::expiry_key;
use crate::store::kv::{Frozen, Hold};
use crate::store::{COUNT, CountKey, EXPIRY, Engine, Store, StoreError};

/// The rows of every table as they were at `taken_at`.
pub(super) struct Snapshot<'a> {
    pub(super) store: &'a Store,
    /// Purges wait while the backup reads (`kv::frozen`).
    _hold: Hold<'a>,
    pub(super) taken_at: UnixMillis,
    /// The token counts at that moment.
    pub(super) counts: Vec<(CountKey, u64)>,
    /// The v1 expiry index's keys at that moment (in memory: a token's row
    /// says whether it has one, and the index is in time order, not in
    /// tokenId order).
    expiries: HashSet<Vec<u8>>,
    /// The tables not read yet, in [`Table::ALL`] order.
    tables: std::array::IntoIter<(Table, Frozen), 4>,
    current: Option<(Table, Frozen)>,
}

impl Store {
    /// Fixes the moment of a backup.
    pub(super) fn snapshot(&self) -> Result<Snapshot<'_>, BackupError> {
        let Engine::Embedded(e) = &self.engine else {
            return Err(StoreError::Unsupported {
                what: "a backup file of PostgreSQL (use pg_dump)",
            }
            .into());
        };
        let hold = e.kv.hold();
        let (taken_at, counted, expiring, tables) = {
            let _writer = e.lock();
            (
                now_millis(),
                e.kv.frozen(COUNT),
                e.kv.frozen(EXPIRY),
                Table::ALL.map(|table| (table, e.kv.frozen(table_prefix(table)))),
            )
        };
        let mut counts = Vec::new();
        for entry in counted {
            let (key, value) = entry?;
            if let (Some(group), Ok(n)) = (CountKey::decode(&key), <[u8; 8]>::try_from(&value[..]))
            {
                counts.push((group, u64::from_be_bytes(n)));
            }
        }
        let mut expiries = HashSet::new();
        for entry in expiring {
            expiries.insert(entry?.0.to_vec());
        }
        Ok(Snapshot {
            store: self,
            _hold: hold,
            taken_at,
            counts,
            expiries,
            tables: tables.into_iter(),
            current: None,
        })
    }
}

impl Snapshot<'_> {
    /// The next row, tables in [`Table::ALL`] order.
    pub(super) fn next_row(&mut self) -> Option<Result<Row, BackupError>> {
        loop {
            let Some((table, entries)) = &mut self.current else {
                self.current = Some(self.tables.next()?);
                continue;
            };
            let table = *table;
            let Some(entry) = entries.next() else {
                self.current = None;
                continue;
            };
            return Some(self.row(table, entry).map_err(BackupError::from));
        }
    }

    fn row(
        &self,
        table: Table,
        entry: Result<(crate::store::kv::Bytes, crate::store::kv::Bytes), StoreError>,
    ) -> Result<Row, StoreError> {
        let (key, value) = entry?;
        let (_, mut row) = row(table, &key, &value)?;
        self.store.find_expiry_entry(&mut row, |token_id, at| {
            Ok(self.expiries.contains(&expiry_key(at, token_id)))
        })?;
        Ok(row)
    }
}
