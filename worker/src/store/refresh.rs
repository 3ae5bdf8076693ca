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

use super::keys::{expiry_key, prefixed};
use super::{Change, Store, StoreError};
use crate::rules::refresh::RefreshRecord;

const REFRESH: u8 = b'r';
const DUE: u8 = b'd';

fn due_key(due_at: UnixMillis, token_id: &str) -> Vec<u8> {
    let mut key = vec![DUE];
    key.extend_from_slice(&(due_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(token_id.as_bytes());
    key
}

/// (time, tokenId) of a `d` or `e` key.
fn split_time_key(key: &[u8]) -> (UnixMillis, String) {
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
        match self.kv.get(prefixed(REFRESH, token_id.as_bytes()))? {
            Some(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
            None => Ok(None),
        }
    }

    /// TokenIds whose due time is at or before `now`, soonest first, at
    /// most `limit`, with their due time.
    pub fn due_refreshes(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        let end = due_key(now.saturating_add(1), "");
        let mut out = Vec::new();
        for entry in self.kv.range(vec![DUE]..end).take(limit) {
            let (key, _) = entry?;
            out.push(split_time_key(&key));
        }
        Ok(out)
    }

    /// The v1 expiry entries at or before `now`, oldest first, at most
    /// `limit`, with their expiry time.
    pub fn due_expiry_entries(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(UnixMillis, String)>, StoreError> {
        let end = expiry_key(now.saturating_add(1), "");
        let mut out = Vec::new();
        for entry in self.kv.range(vec![super::EXPIRY]..end).take(limit) {
            let (key, _) = entry?;
            out.push(split_time_key(&key));
        }
        Ok(out)
    }

    /// The tokens whose last refresh failed (`attempts` > 0), at most
    /// `limit`, in tokenId order: a scan of every refresh record. A record
    /// that does not decode is left to the pass that meets it.
    pub fn failing_refreshes(
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

    /// How many tokens are due at or before `until`, counting at most `cap`.
    pub fn due_count(&self, until: UnixMillis, cap: usize) -> usize {
        let end = due_key(until.saturating_add(1), "");
        self.kv.range(vec![DUE]..end).take(cap).count()
    }
}

impl Change<'_> {
    /// Makes (or keeps) the token the engine's: its record and due entry
    /// replace `previous`, and its v1 expiry entry at `expires_at` goes.
    pub fn put_refresh(
        &mut self,
        token_id: &str,
        previous: Option<&RefreshRecord>,
        next: &RefreshRecord,
        expires_at: Option<UnixMillis>,
    ) -> Result<(), StoreError> {
        if let Some(prev) = previous {
            self.batch.remove(due_key(prev.due_at, token_id));
        }
        if let Some(at) = expires_at {
            self.batch.remove(expiry_key(at, token_id));
        }
        self.batch.insert(
            prefixed(REFRESH, token_id.as_bytes()),
            postcard::to_stdvec(next)?,
        );
        self.batch.insert(due_key(next.due_at, token_id), []);
        Ok(())
    }

    /// The engine lets go of the token: record and due entry go. When the
    /// token stays active with an expiry, `expires_at` puts its v1 expiry
    /// entry back.
    pub fn drop_refresh(
        &mut self,
        token_id: &str,
        previous: &RefreshRecord,
        expires_at: Option<UnixMillis>,
    ) {
        self.batch.remove(prefixed(REFRESH, token_id.as_bytes()));
        self.batch.remove(due_key(previous.due_at, token_id));
        if let Some(at) = expires_at {
            self.batch.insert(expiry_key(at, token_id), []);
        }
    }

    /// Removes a due entry whose token record cannot be read (it is skipped
    /// for good, counted and logged by the caller; the record stays for an
    /// operator to look at).
    pub fn skip_due(&mut self, due_at: UnixMillis, token_id: &str) {
        self.batch.remove(due_key(due_at, token_id));
    }

    /// Removes a v1 expiry entry whose token record cannot be read.
    pub fn skip_expiry(&mut self, expires_at: UnixMillis, token_id: &str) {
        self.batch.remove(expiry_key(expires_at, token_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypto::MasterKey;

    #[test]
    fn the_due_index_follows_the_record_and_releases_back_to_the_expiry_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), MasterKey::generate().expect("random key")).expect("opens");
        let lock = store.lock();
        let first = RefreshRecord {
            due_at: 5_000,
            ..RefreshRecord::default()
        };
        let mut change = store.change();
        change
            .put_refresh("tok_1", None, &first, Some(9_000))
            .expect("puts");
        change.commit(&lock).expect("commits");
        assert_eq!(store.due_refreshes(4_999, 10).expect("scans"), vec![]);
        assert_eq!(
            store.due_refreshes(5_000, 10).expect("scans"),
            vec![(5_000, "tok_1".to_owned())]
        );
        let later = RefreshRecord {
            due_at: 7_000,
            attempts: 1,
            ..first.clone()
        };
        let mut change = store.change();
        change
            .put_refresh("tok_1", Some(&first), &later, None)
            .expect("puts");
        change.commit(&lock).expect("commits");
        assert_eq!(store.due_refreshes(6_000, 10).expect("scans"), vec![]);
        assert_eq!(
            store.refresh_record("tok_1").expect("reads"),
            Some(later.clone())
        );
        assert_eq!(store.due_count(i64::MAX, 10), 1);
        assert_eq!(
            store.failing_refreshes(10).expect("scans"),
            vec![("tok_1".to_owned(), later.clone())]
        );
        let mut change = store.change();
        change.drop_refresh("tok_1", &later, Some(9_000));
        change.commit(&lock).expect("commits");
        assert_eq!(store.refresh_record("tok_1").expect("reads"), None);
        assert_eq!(store.due_count(i64::MAX, 10), 0);
        assert_eq!(
            store.due_expiries(9_000, 10).expect("scans"),
            vec!["tok_1".to_owned()]
        );
    }
}
