//! The refresh engine's part of the store (CONTRACT.md §9). Nothing here is
//! secret: the tokens themselves stay in the sealed token record.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `r` | tokenId | [`RefreshRecord`]: due time, attempts, lease, last error |
//! | `d` | due time (big-endian ms), tokenId | nothing: the due index |
//!
//! A token the engine owns (refreshable: its brokerType configured, a
//! refresh token stored) has a refresh record and one `d` entry, and no `e`
//! entry: the due index says when the worker must look at it next, whether
//! to refresh ahead of expiry, to retry, to take over a lease a crash left
//! behind, or to notice that the refresh token expired. Any other token keeps
//! the v1 `e` expiry index.

use mmt_shared::time_fmt::UnixMillis;

use super::EXPIRY;
use super::{Engine, Store, StoreError};
use crate::rules::refresh::RefreshRecord;

pub(super) const REFRESH: u8 = b'r';
pub(super) const DUE: u8 = b'd';

pub(super) fn due_key(due_at: UnixMillis, token_id: &str) -> Vec<u8> {
    let mut key = vec![DUE];
    key.extend_from_slice(&(due_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(token_id.as_bytes());
    key
}

/// (time, tokenId) of a `d` or `e` key.
pub(super) fn split_time_key(key: &[u8]) -> (UnixMillis, String) {
    let at = key
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, |b| {
            UnixMillis::try_from(u64::from_be_bytes(b)).unwrap_or(0)
        });
    let id = key.get(9..).unwrap_or_default();
    (at, String::from_utf8_lossy(id).into_owned())
}

impl Store {
    /// The refresh record of a token, if the engine owns it.
    pub fn refresh_record(&self, token_id: &str) -> Result<Option<RefreshRecord>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.refresh_record(token_id),
            Engine::Postgres(pg) => pg.refresh_record(token_id),
        }
    }

    /// TokenIds whose due time is at or before `now`, soonest first, at
    /// most `limit`, with their due time.
    pub fn due_refreshes(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.due_entries(DUE, now, limit),
            Engine::Postgres(pg) => pg.due_refreshes(now, limit),
        }
    }

    /// The v1 expiry entries at or before `now`, oldest first, at most
    /// `limit`, with their expiry time.
    pub fn due_expiry_entries(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.due_entries(EXPIRY, now, limit),
            Engine::Postgres(pg) => pg.due_expiry_entries(now, limit),
        }
    }

    /// The tokens whose last refresh failed (`attempts` > 0), at most
    /// `limit`, in tokenId order. A record that does not decode is left to
    /// the pass that meets it.
    pub fn failing_refreshes(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, RefreshRecord)>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.failing_refreshes(limit),
            Engine::Postgres(pg) => pg.failing_refreshes(limit),
        }
    }

    /// How many tokens are due at or before `until`, counting at most `cap`.
    pub fn due_count(&self, until: UnixMillis, cap: usize) -> Result<usize, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => Ok(e.due_count(until, cap)),
            Engine::Postgres(pg) => pg.due_count(until, cap),
        }
    }
}
