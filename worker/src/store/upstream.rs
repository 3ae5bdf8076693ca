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

use super::keys::{prefixed, push_part};
use super::{Change, Store, StoreError, TokenSecrets};
use crate::rules::lifecycle::TokenMeta;

const UPSTREAM: u8 = b'u';

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
    sealed: Vec<u8>,
    wrapped: Vec<u8>,
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

impl Store {
    /// Up to `limit` jobs, in tokenId order; a job that does not decode
    /// comes as its error, so that it cannot hide the others.
    pub fn upstream_jobs(&self, limit: usize) -> Result<Vec<JobEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix([UPSTREAM]).take(limit) {
            let (key, value) = entry?;
            let token_id = String::from_utf8_lossy(key.get(1..).unwrap_or_default()).into_owned();
            out.push((
                token_id,
                postcard::from_bytes(&value).map_err(StoreError::from),
            ));
        }
        Ok(out)
    }

    /// The tokens a job holds.
    pub fn open_job(&self, token_id: &str, job: &UpstreamJob) -> Result<TokenSecrets, StoreError> {
        let plain: Zeroizing<Vec<u8>> = self.key.open_token(
            &seal_id(token_id),
            &job_binding(&job.client_id, &job.broker_type),
            &job.sealed,
            &job.wrapped,
        )?;
        Ok(postcard::from_bytes(&plain)?)
    }
}

impl Change<'_> {
    /// Starts the upstream revocation of a token being revoked in this
    /// change, due now.
    pub fn start_upstream_job(
        &mut self,
        token_id: &str,
        meta: &TokenMeta,
        secrets: &TokenSecrets,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let plain = Zeroizing::new(postcard::to_stdvec(secrets)?);
        let (sealed, wrapped) = self.store.key.seal_token(
            &seal_id(token_id),
            &job_binding(&meta.client_id, &meta.broker_type),
            &plain,
        )?;
        let job = UpstreamJob {
            client_id: meta.client_id.clone(),
            broker_type: meta.broker_type.clone(),
            scope: meta.scope,
            created_at: now,
            due_at: now,
            attempts: 0,
            sealed,
            wrapped,
        };
        self.update_upstream_job(token_id, &job)
    }

    /// Stores a job's new schedule.
    pub fn update_upstream_job(
        &mut self,
        token_id: &str,
        job: &UpstreamJob,
    ) -> Result<(), StoreError> {
        self.batch.insert(
            prefixed(UPSTREAM, token_id.as_bytes()),
            postcard::to_stdvec(job)?,
        );
        Ok(())
    }

    /// Ends a job: it and its sealed tokens are destroyed.
    pub fn end_upstream_job(&mut self, token_id: &str) {
        self.batch.remove(prefixed(UPSTREAM, token_id.as_bytes()));
    }
}
