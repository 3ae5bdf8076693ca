//! The writes of one message: one atomic batch, counts included.

use std::collections::BTreeMap;

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{MessageKind, Scope, TokenState};
use zeroize::Zeroizing;

use super::keys::{CountKey, Identity, expiry_key, prefixed};
use super::record::{self, RecordRef};
use super::{Store, StoreError, TOKEN, TokenSecrets, WriteGuard, binding, processed};
use crate::rules::lifecycle::{TokenMeta, Tombstone};

/// The writes of one message, applied atomically by [`Change::commit`].
pub struct Change<'a> {
    pub(super) store: &'a Store,
    pub(super) batch: super::kv::Batch<'a>,
    pub(super) counts: BTreeMap<Vec<u8>, i64>,
}

impl Change<'_> {
    fn count(&mut self, state: TokenState, meta_scope: Scope, broker_type: &str, delta: i64) {
        let key = CountKey {
            state,
            scope: meta_scope,
            broker_type: broker_type.to_owned(),
        }
        .encode();
        *self.counts.entry(key).or_default() += delta;
    }

    /// Stores a token (new, or replacing the live one of the same tokenId)
    /// with fresh secrets under a fresh data key. `previous` is the record it
    /// replaces, if any.
    pub fn put_token(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        previous: Option<&TokenMeta>,
        secrets: &TokenSecrets,
    ) -> Result<(), StoreError> {
        let plain = Zeroizing::new(postcard::to_stdvec(secrets)?);
        let (sealed, wrapped) = self
            .store
            .key
            .seal_token(token_id, &binding(meta), &plain)?;
        let identity = Identity {
            client_id: &meta.client_id,
            end_user_id: &meta.end_user_id,
            broker_type: &meta.broker_type,
            scope: meta.scope,
            account_id: &meta.account_id,
        };
        if let Some(prev) = previous {
            if let Some(at) = prev.expires_at {
                self.batch.remove(expiry_key(at, token_id));
            }
            self.count(prev.state, prev.scope, &prev.broker_type, -1);
        }
        self.count(meta.state, meta.scope, &meta.broker_type, 1);
        self.batch.insert(identity.key(), token_id.as_bytes());
        self.record(
            token_id,
            &RecordRef::Live {
                meta,
                wrapped: &wrapped,
                sealed: &sealed,
            },
        )?;
        if let (TokenState::Active, Some(at)) = (meta.state, meta.expires_at) {
            self.batch.insert(expiry_key(at, token_id), []);
        }
        Ok(())
    }

    /// Moves a live token to `reauth_required` (its secrets stay sealed: a
    /// reconnection replaces them).
    pub fn expire(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        wrapped: &[u8],
        sealed: &[u8],
        now: UnixMillis,
    ) -> Result<TokenMeta, StoreError> {
        let mut next = meta.clone();
        next.state = TokenState::ReauthRequired;
        next.updated_at = now;
        if let Some(at) = meta.expires_at {
            self.batch.remove(expiry_key(at, token_id));
        }
        self.count(meta.state, meta.scope, &meta.broker_type, -1);
        self.count(next.state, next.scope, &next.broker_type, 1);
        self.record(
            token_id,
            &RecordRef::Live {
                meta: &next,
                wrapped,
                sealed,
            },
        )?;
        Ok(next)
    }

    /// Revokes a live token: its record (data key and secrets with it) is
    /// replaced by a tombstone without secrets, and its identity entry and
    /// expiry entry go, in the same batch.
    pub fn revoke(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let identity = Identity {
            client_id: &meta.client_id,
            end_user_id: &meta.end_user_id,
            broker_type: &meta.broker_type,
            scope: meta.scope,
            account_id: &meta.account_id,
        };
        self.batch.remove(identity.key());
        if let Some(at) = meta.expires_at {
            self.batch.remove(expiry_key(at, token_id));
        }
        let tomb = Tombstone {
            client_id: meta.client_id.clone(),
            broker_type: meta.broker_type.clone(),
            scope: meta.scope,
            revoked_at: now,
        };
        self.record(token_id, &RecordRef::Revoked(&tomb))?;
        self.count(meta.state, meta.scope, &meta.broker_type, -1);
        self.count(TokenState::Revoked, meta.scope, &meta.broker_type, 1);
        Ok(())
    }

    fn record(&mut self, token_id: &str, record: &RecordRef<'_>) -> Result<(), StoreError> {
        let value = record::encode(&self.store.key, token_id, record)?;
        self.batch
            .insert(prefixed(TOKEN, token_id.as_bytes()), value);
        Ok(())
    }

    /// Records that a message was processed, with its reply.
    pub fn record_processed(
        &mut self,
        kind: MessageKind,
        message_id: &str,
        reply: &[u8],
    ) -> Result<(), StoreError> {
        self.batch
            .insert(processed::key(kind, message_id), processed::encode(reply)?);
        Ok(())
    }

    /// Applies every write atomically. The caller holds the writer lock; the
    /// counts in memory follow the store once the batch is applied.
    pub(super) fn commit(mut self, _lock: &WriteGuard<'_>) -> Result<(), StoreError> {
        let mut current = self.store.counts.lock().unwrap_or_else(|e| e.into_inner());
        let counts = std::mem::take(&mut self.counts);
        let next: Vec<(Vec<u8>, u64)> = counts
            .into_iter()
            .map(|(key, delta)| {
                let n = current.get(&key).copied().unwrap_or(0);
                (key, n.saturating_add_signed(delta))
            })
            .collect();
        for (key, n) in &next {
            self.batch.insert(key.as_slice(), n.to_be_bytes());
        }
        self.store.kv.apply(self.batch)?;
        current.extend(next);
        Ok(())
    }
}
