//! Upstream revocation jobs (CONTRACT.md §9, RFC 7009): when a revoked
//! token's integration has a `revoke_url`, its raw tokens are kept, sealed
//! under a data key of their own, in a job written in the same change as
//! the revocation, until the provider answers or the job ends; then the job
//! and its secret are destroyed.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `u` | tokenId | [`UpstreamJob`]: who, when, attempts, and the sealed tokens |

use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::Scope;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::push_part;
use super::{Engine, Store, StoreError, TokenSecrets};
use crate::rules::lifecycle::TokenMeta;
use crate::store::crypto::KeyRing;

pub(super) const UPSTREAM: u8 = b'u';

/// One pending upstream revocation. Only `sealed` holds a secret, sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamJob {
    /// The client that revoked the token.
    pub client_id: String,
    /// The integration.
    pub broker_type: String,
    /// The token's scope.
    pub scope: Scope,
    /// When the token was revoked (the job gives up 24 h later).
    pub created_at: UnixMillis,
    /// When it is tried next (a lease while a request is in flight).
    pub due_at: UnixMillis,
    /// Failed attempts so far.
    pub attempts: u32,
    pub(super) sealed: Vec<u8>,
    pub(super) wrapped: Vec<u8>,
}

/// A job as read: its tokenId and the job, or why it does not decode.
pub type JobEntry = (String, Result<UpstreamJob, StoreError>);

impl UpstreamJob {
    /// The same job, due at `due_at` after `attempts` failures.
    pub fn rescheduled(&self, due_at: UnixMillis, attempts: u32) -> Self {
        Self {
            due_at,
            attempts,
            ..self.clone()
        }
    }
}

fn seal_id(token_id: &str) -> String {
    format!("upstream:{token_id}")
}

fn job_binding(client_id: &str, broker_type: &str) -> Vec<u8> {
    let mut b = Vec::new();
    push_part(&mut b, client_id);
    push_part(&mut b, broker_type);
    b
}

impl UpstreamJob {
    /// A job for a token being revoked, due `now`, its tokens sealed under
    /// a data key of their own.
    pub(super) fn seal(
        key: &KeyRing,
        token_id: &str,
        meta: &TokenMeta,
        secrets: &TokenSecrets,
        now: UnixMillis,
    ) -> Result<Self, StoreError> {
        let plain = secrets.to_plain()?;
        let (sealed, wrapped) = key.seal_token(
            &seal_id(token_id),
            &job_binding(&meta.client_id, &meta.broker_type),
            &plain,
        )?;
        Ok(Self {
            client_id: meta.client_id.clone(),
            broker_type: meta.broker_type.clone(),
            scope: meta.scope,
            created_at: now,
            due_at: now,
            attempts: 0,
            sealed,
            wrapped,
        })
    }
}

impl UpstreamJob {
    /// The same job with its data key wrapped under `ring`'s active key,
    /// when an older key wraps it.
    pub(super) fn rewrapped(
        &self,
        ring: &KeyRing,
        token_id: &str,
    ) -> Result<Option<Self>, StoreError> {
        Ok(ring
            .rewrap(&seal_id(token_id), &self.wrapped)?
            .map(|wrapped| Self {
                wrapped,
                ..self.clone()
            }))
    }
}

impl Store {
    /// Up to `limit` jobs, in tokenId order; a job that does not decode
    /// comes as its error, so that it cannot hide the others.
    pub fn upstream_jobs(&self, limit: usize) -> Result<Vec<JobEntry>, StoreError> {
        match &self.engine {
            Engine::Embedded(e) => e.upstream_jobs(limit),
            Engine::Postgres(pg) => pg.upstream_jobs(limit),
        }
    }

    /// The tokens a job holds.
    pub fn open_job(&self, token_id: &str, job: &UpstreamJob) -> Result<TokenSecrets, StoreError> {
        let plain: Zeroizing<Vec<u8>> = self.with_ring(|ring| {
            ring.open_token(
                &seal_id(token_id),
                &job_binding(&job.client_id, &job.broker_type),
                &job.sealed,
                &job.wrapped,
            )
        })?;
        Ok(postcard::from_bytes(&plain)?)
    }
}
