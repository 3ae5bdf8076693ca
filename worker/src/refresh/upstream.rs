//! Upstream revocation (CONTRACT.md §9, RFC 7009): after a local revocation
//! of a token whose integration has a `revoke_url`, its refresh token and
//! access token are revoked at the provider from a durable sealed job,
//! retried on transient failures for up to 24 h, given up at once on any
//! other 4xx, and destroyed when it ends (`token.revoked_upstream`).

use std::time::Duration;

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::TokenState;

use crate::config::integrations::Integration;
use crate::refresh::oauth::OAuthClient;
use crate::refresh::pass::PASS_LIMIT;
use crate::rules::refresh::{Failure, LEASE_MARGIN, RETRY};
use crate::service::{Service, audit_events};
use crate::store::{Decision, StoreError, TokenSecrets, UpstreamJob};

/// A job gives up this long after the revocation.
pub const GIVE_UP_AFTER: UnixMillis = 24 * 3600 * 1000;

/// A job taken for one attempt.
pub struct JobLease {
    /// The revoked token.
    pub token_id: String,
    /// The job as leased.
    pub job: UpstreamJob,
    /// Its tokens (wiped on drop).
    pub secrets: TokenSecrets,
}

/// What follows an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobNext {
    /// The job ends; `ok`: the provider confirmed.
    End {
        /// Whether the provider confirmed the revocation.
        ok: bool,
    },
    /// Try again at the job's new due time.
    Retry(UpstreamJob),
}

fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// The rule after one attempt (`unit` in `[0, 1)` jitters the backoff).
pub fn after_attempt(
    job: &UpstreamJob,
    result: &Result<(), Failure>,
    now: UnixMillis,
    unit: f64,
) -> JobNext {
    let retry_after = match result {
        Ok(()) => return JobNext::End { ok: true },
        Err(Failure::Refused(_)) | Err(Failure::InvalidGrant) => return JobNext::End { ok: false },
        Err(Failure::Transient { retry_after, .. }) => *retry_after,
        Err(Failure::InvalidClient) => None,
    };
    let wait = RETRY
        .delay_with(job.attempts, unit)
        .max(retry_after.unwrap_or_default());
    let due = now.saturating_add(millis(wait));
    if due >= job.created_at.saturating_add(GIVE_UP_AFTER) {
        return JobNext::End { ok: false };
    }
    JobNext::Retry(job.rescheduled(due, job.attempts.saturating_add(1)))
}

fn ended(token_id: &str, job: &UpstreamJob, ok: bool, now: UnixMillis) -> Event {
    let mut event = Event::new(EventKind::TokenRevokedUpstream, rfc3339(now));
    event.token_id = Some(token_id.to_owned());
    event.client_id = Some(job.client_id.clone());
    event.broker_type = Some(job.broker_type.clone());
    event.scope = Some(job.scope);
    event.state = Some(TokenState::Revoked);
    event.ok = Some(ok);
    event
}

/// Leases up to `limit` due jobs (not `busy`); ends those whose integration
/// or `revoke_url` went away or whose seal does not open.
pub fn lease_jobs(
    service: &Service,
    now: UnixMillis,
    limit: usize,
    busy: &dyn Fn(&str) -> bool,
) -> Result<(Vec<JobLease>, Vec<Event>, u64), StoreError> {
    let store = service.store();
    if limit == 0 {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    // Most ticks find no job: look before taking the writer lock (a tick
    // runs whenever a refresh ends).
    if store.upstream_jobs(1)?.is_empty() {
        return Ok((Vec::new(), Vec::new(), 0));
    }
    let integrations = service.integrations();
    store.write(|tx| {
        let (mut leased, mut events, mut skipped) = (Vec::new(), Vec::new(), 0);
        for (token_id, job) in tx.upstream_jobs(PASS_LIMIT)? {
            if leased.len() >= limit {
                break;
            }
            let job = match job {
                Ok(job) => job,
                Err(error) => {
                    tracing::error!(
                        token_id,
                        error = &error as &dyn std::error::Error,
                        "an upstream revocation job does not decode; dropped"
                    );
                    tx.end_upstream_job(&token_id);
                    skipped += 1;
                    continue;
                }
            };
            if job.due_at > now || busy(&token_id) {
                continue;
            }
            let Some(timeout) = integrations
                .get(&job.broker_type)
                .filter(|i| i.revoke_url.is_some())
                .map(|i| i.timeout)
            else {
                tx.end_upstream_job(&token_id);
                events.push(ended(&token_id, &job, false, now));
                continue;
            };
            let secrets = match store.open_job(&token_id, &job) {
                Ok(secrets) => secrets,
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    tracing::error!(
                        token_id,
                        error = &error as &dyn std::error::Error,
                        "an upstream revocation job does not open; dropped"
                    );
                    tx.end_upstream_job(&token_id);
                    events.push(ended(&token_id, &job, false, now));
                    skipped += 1;
                    continue;
                }
            };
            let job = job.rescheduled(
                now.saturating_add(millis(timeout * 2 + LEASE_MARGIN)),
                job.attempts,
            );
            tx.update_upstream_job(&token_id, &job)?;
            leased.push(JobLease {
                token_id,
                job,
                secrets,
            });
        }
        audit_events(tx, "upstream", &events, None, None)?;
        Ok(Decision::Commit((leased, events, skipped)))
    })
}

/// One attempt: the refresh token, then the access token (RFC 7009 §2.1).
pub async fn attempt(
    client: &OAuthClient,
    integration: &Integration,
    secrets: &TokenSecrets,
) -> Result<(), Failure> {
    let Some(url) = &integration.revoke_url else {
        return Err(Failure::Refused(0));
    };
    if let Some(refresh) = &secrets.refresh_token {
        client
            .revoke(integration, url, refresh, "refresh_token")
            .await?;
    }
    if !secrets.access_token.is_empty() {
        client
            .revoke(integration, url, &secrets.access_token, "access_token")
            .await?;
    }
    Ok(())
}

/// Stores the outcome of an attempt: the job ends (destroyed, event) or
/// waits for its next try.
pub fn finish(
    service: &Service,
    lease: &JobLease,
    result: &Result<(), Failure>,
    now: UnixMillis,
) -> Result<Vec<Event>, StoreError> {
    let store = service.store();
    store.write(|tx| {
        let events = match after_attempt(&lease.job, result, now, rand::random()) {
            JobNext::End { ok } => {
                tx.end_upstream_job(&lease.token_id);
                vec![ended(&lease.token_id, &lease.job, ok, now)]
            }
            JobNext::Retry(job) => {
                tx.update_upstream_job(&lease.token_id, &job)?;
                Vec::new()
            }
        };
        audit_events(tx, "upstream", &events, None, None)?;
        Ok(Decision::Commit(events))
    })
}

#[cfg(test)]
mod tests {
    use mmt_shared::secret::Secret;

    use super::*;
    use crate::store::Store;
    use crate::store::crypto::KeyRing;

    fn job(created_at: UnixMillis) -> UpstreamJob {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(dir.path(), KeyRing::generate().expect("random key")).expect("opens");
        let meta = crate::rules::lifecycle::TokenMeta {
            client_id: "acme".into(),
            end_user_id: "u".into(),
            broker_type: "fx".into(),
            broker_name: String::new(),
            account_id: "a".into(),
            account_name: String::new(),
            scope: mmt_shared::wire::Scope::Read,
            state: TokenState::Active,
            created_at,
            updated_at: created_at,
            expires_at: None,
            refresh_expires_at: None,
            has_refresh_token: true,
        };
        let secrets = TokenSecrets {
            access_token: Secret::new("a".into()),
            refresh_token: Some(Secret::new("r".into())),
        };
        store
            .write(|tx| {
                tx.start_upstream_job("tok_1", &meta, &secrets, created_at)?;
                Ok(Decision::Commit(()))
            })
            .expect("commits");
        let (_, job) = store.upstream_jobs(10).expect("reads").remove(0);
        let job = job.expect("decodes");
        let opened = store.open_job("tok_1", &job).expect("opens");
        assert_eq!(opened.refresh_token.as_ref().map(Secret::expose), Some("r"));
        job
    }

    #[test]
    fn a_200_ends_the_job_ok_and_another_4xx_ends_it_at_once_not_ok() {
        let j = job(0);
        assert_eq!(
            after_attempt(&j, &Ok(()), 1, 0.0),
            JobNext::End { ok: true }
        );
        assert_eq!(
            after_attempt(&j, &Err(Failure::Refused(400)), 1, 0.0),
            JobNext::End { ok: false }
        );
    }

    #[test]
    fn transient_failures_retry_with_backoff_for_up_to_a_day() {
        let j = job(0);
        let failure = Err(Failure::Transient {
            code: "http_503".into(),
            retry_after: Some(Duration::from_secs(5)),
        });
        let JobNext::Retry(next) = after_attempt(&j, &failure, 1_000, 0.0) else {
            panic!("expected a retry");
        };
        assert_eq!((next.due_at, next.attempts), (6_000, 1));
        assert_eq!(
            after_attempt(&j, &failure, GIVE_UP_AFTER - 1_000, 0.0),
            JobNext::End { ok: false }
        );
    }
}
