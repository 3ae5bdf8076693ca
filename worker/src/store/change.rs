//! The writes of one decision, as operations every engine knows: the
//! embedded engine turns them into one atomic batch ([`super::embedded`]),
//! PostgreSQL into statements of one transaction ([`super::postgres`]).
//! Everything that needs the key (sealing, the record's tag) is done here,
//! so a record is the same bytes whatever engine holds it.

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{MessageKind, TokenState};

use super::record::{self, RecordRef};
use super::{RefreshRecord, Store, StoreError, TokenSecrets, UpstreamJob, binding, processed};
use crate::rules::audit::Event as AuditEvent;
use crate::rules::lifecycle::{TokenMeta, Tombstone};
use crate::store::crypto::{KeyId, wrapped_key_id};

/// One write. Applied in order: a later operation sees an earlier one.
pub(super) enum Op {
    /// A live token stored (new, or replacing the live one of its tokenId).
    PutToken {
        token_id: String,
        meta: TokenMeta,
        previous: Option<TokenMeta>,
        record: Vec<u8>,
        key_id: KeyId,
    },
    /// A live token's record with its data key wrapped again under
    /// `key_id` (a rotation, CONTRACT.md §11): nothing else changes.
    Rewrap {
        token_id: String,
        record: Vec<u8>,
        key_id: KeyId,
    },
    /// A live token moved to `reauth_required`.
    Expire {
        token_id: String,
        previous: TokenMeta,
        meta: TokenMeta,
        record: Vec<u8>,
    },
    /// A live token replaced by its tombstone; its identity is free again.
    Revoke {
        token_id: String,
        meta: TokenMeta,
        record: Vec<u8>,
    },
    /// A message's reply, under its processed key.
    Processed { key: Vec<u8>, reply: Vec<u8> },
    /// The refresh engine owns the token with this record; the v1 expiry
    /// entry at `expires_at` goes.
    PutRefresh {
        token_id: String,
        previous_due: Option<UnixMillis>,
        next: RefreshRecord,
        expires_at: Option<UnixMillis>,
    },
    /// The refresh engine lets go; `expires_at` puts the v1 expiry entry
    /// back.
    DropRefresh {
        token_id: String,
        previous_due: UnixMillis,
        expires_at: Option<UnixMillis>,
    },
    /// A due entry whose token cannot be read is skipped for good.
    SkipDue {
        token_id: String,
        due_at: UnixMillis,
    },
    /// An expiry entry whose token cannot be read is skipped for good.
    SkipExpiry {
        token_id: String,
        expires_at: UnixMillis,
    },
    /// An upstream revocation job stored (new or rescheduled).
    PutJob { token_id: String, job: UpstreamJob },
    /// An upstream revocation job destroyed.
    EndJob { token_id: String },
    /// A token copied from another store as it was (`store copy`): live
    /// with its metadata, or revoked with its tombstone.
    ImportToken {
        token_id: String,
        record: Vec<u8>,
        key_id: KeyId,
        live: Option<TokenMeta>,
        revoked: Option<Tombstone>,
        expiry_entry: Option<UnixMillis>,
    },
    /// A named mark (a copy's progress).
    Mark { name: String, value: Vec<u8> },
    /// A line of the audit log (CONTRACT.md §12), its tokenId already
    /// replaced by the token's reference.
    Audit(AuditEvent),
}

/// The writes of one decision, applied atomically when its
/// [`Store::write`] commits.
pub struct Change<'a> {
    pub(super) store: &'a Store,
    pub(super) ops: Vec<Op>,
}

impl<'a> Change<'a> {
    /// No writes yet.
    pub(super) fn new(store: &'a Store) -> Self {
        Self {
            store,
            ops: Vec::new(),
        }
    }
}

impl Change<'_> {
    /// Records `event` in the audit log with the change; `token_id` is
    /// named by its reference, never in clear.
    pub fn audit(
        &mut self,
        mut event: AuditEvent,
        token_id: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(token_id) = token_id {
            event.token_id = Some(self.store.audit_key.token_ref(token_id));
        }
        self.ops.push(Op::Audit(event));
        Ok(())
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
        let plain = secrets.to_plain()?;
        let (sealed, wrapped) = self
            .store
            .ring()
            .seal_token(token_id, &binding(meta), &plain)?;
        let record = record::encode(
            &self.store.macs,
            token_id,
            &RecordRef::Live {
                meta,
                wrapped: &wrapped,
                sealed: &sealed,
            },
        )?;
        self.ops.push(Op::PutToken {
            token_id: token_id.to_owned(),
            meta: meta.clone(),
            previous: previous.cloned(),
            record,
            key_id: wrapped_key_id(&wrapped)?,
        });
        Ok(())
    }

    /// Stores a live token's record again with `wrapped`, its data key
    /// wrapped under another key of the ring; its metadata and sealed
    /// secrets stay as they are.
    pub(super) fn rewrap(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        wrapped: &[u8],
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let record = record::encode(
            &self.store.macs,
            token_id,
            &RecordRef::Live {
                meta,
                wrapped,
                sealed,
            },
        )?;
        self.ops.push(Op::Rewrap {
            token_id: token_id.to_owned(),
            record,
            key_id: wrapped_key_id(wrapped)?,
        });
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
        let record = record::encode(
            &self.store.macs,
            token_id,
            &RecordRef::Live {
                meta: &next,
                wrapped,
                sealed,
            },
        )?;
        self.ops.push(Op::Expire {
            token_id: token_id.to_owned(),
            previous: meta.clone(),
            meta: next.clone(),
            record,
        });
        Ok(next)
    }

    /// Revokes a live token: its record (data key and secrets with it) is
    /// replaced by a tombstone without secrets, and its identity entry and
    /// expiry entry go, in the same change.
    pub fn revoke(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let tomb = Tombstone {
            client_id: meta.client_id.clone(),
            broker_type: meta.broker_type.clone(),
            scope: meta.scope,
            revoked_at: now,
        };
        let record = record::encode(&self.store.macs, token_id, &RecordRef::Revoked(&tomb))?;
        self.ops.push(Op::Revoke {
            token_id: token_id.to_owned(),
            meta: meta.clone(),
            record,
        });
        Ok(())
    }

    /// Records that a message was processed, with its reply.
    pub fn record_processed(
        &mut self,
        kind: MessageKind,
        message_id: &str,
        reply: &[u8],
    ) -> Result<(), StoreError> {
        self.ops.push(Op::Processed {
            key: processed::key(kind, message_id),
            reply: processed::encode(reply)?,
        });
        Ok(())
    }

    /// Makes (or keeps) the token the engine's: its record and due entry
    /// replace `previous`, and its v1 expiry entry at `expires_at` goes.
    pub fn put_refresh(
        &mut self,
        token_id: &str,
        previous: Option<&RefreshRecord>,
        next: &RefreshRecord,
        expires_at: Option<UnixMillis>,
    ) -> Result<(), StoreError> {
        self.ops.push(Op::PutRefresh {
            token_id: token_id.to_owned(),
            previous_due: previous.map(|p| p.due_at),
            next: next.clone(),
            expires_at,
        });
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
        self.ops.push(Op::DropRefresh {
            token_id: token_id.to_owned(),
            previous_due: previous.due_at,
            expires_at,
        });
    }

    /// Removes a due entry whose token record cannot be read (it is skipped
    /// for good, counted and logged by the caller; the record stays for an
    /// operator to look at).
    pub fn skip_due(&mut self, due_at: UnixMillis, token_id: &str) {
        self.ops.push(Op::SkipDue {
            token_id: token_id.to_owned(),
            due_at,
        });
    }

    /// Removes a v1 expiry entry whose token record cannot be read.
    pub fn skip_expiry(&mut self, expires_at: UnixMillis, token_id: &str) {
        self.ops.push(Op::SkipExpiry {
            token_id: token_id.to_owned(),
            expires_at,
        });
    }

    /// Starts the upstream revocation of a token being revoked in this
    /// change, due now.
    pub fn start_upstream_job(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        secrets: &TokenSecrets,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let job = UpstreamJob::seal(&self.store.ring(), token_id, meta, secrets, now)?;
        self.update_upstream_job(token_id, &job)
    }

    /// Stores a job's new schedule.
    pub fn update_upstream_job(
        &mut self,
        token_id: &str,
        job: &UpstreamJob,
    ) -> Result<(), StoreError> {
        self.ops.push(Op::PutJob {
            token_id: token_id.to_owned(),
            job: job.clone(),
        });
        Ok(())
    }

    /// Ends a job: it and its sealed tokens are destroyed.
    pub fn end_upstream_job(&mut self, token_id: &str) {
        self.ops.push(Op::EndJob {
            token_id: token_id.to_owned(),
        });
    }
}
