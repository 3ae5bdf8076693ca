//! The refresh engine's store steps, each one atomic change under the writer
//! lock, run on a blocking thread: take ownership of a token at connect
//! ([`own`]), the v1 expiry pass ([`expiry_pass`]), leasing the due tokens
//! ([`lease_pass`]), giving back leases never sent ([`unlease`]) and
//! applying an answer ([`apply`]); and, read only, the failing tokens a
//! restart finds ([`failing`]).
//!
//! A record that does not decode never stops a pass: its index entry is
//! removed (the record stays for an operator to look at), it is counted and
//! logged, and the pass goes on (issue 8, item 2).

use mmt_shared::events::{Event, EventKind};
use mmt_shared::secret::Secret;
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::TokenState;

use crate::config::integrations::DEFAULT_REFRESH_AHEAD_SECS;
use crate::rules::lifecycle::{self, TokenMeta};
use crate::rules::refresh::{self as rules, AfterFailure, Due, ExpiryReason, Failure, Grant};
use crate::service::{Service, token_event};
use crate::store::{Decision, Found, Lease, RefreshRecord, StoreError, TokenSecrets};

/// The most index entries one pass looks at.
pub const PASS_LIMIT: usize = 1024;

/// What a pass did, besides its writes.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// Events to publish once the change is flushed.
    pub events: Vec<Event>,
    /// Records that did not decode and were skipped.
    pub skipped: u64,
    /// Whether anything was written (a flush is due).
    pub changed: bool,
}

/// A token leased for a refresh: the request may go out once the lease is
/// flushed.
pub struct Leased {
    /// The token.
    pub token_id: String,
    /// Its integration.
    pub broker_type: String,
    /// The lease written for it.
    pub lease: Lease,
    /// The refresh token to present.
    pub refresh_token: Secret,
    /// The access token's expiry when leased.
    pub expires_at: Option<UnixMillis>,
}

/// A token whose refreshes were failing when the worker started.
pub struct Failing {
    /// The token.
    pub token_id: String,
    /// Its integration.
    pub broker_type: String,
    /// Its access token's expiry.
    pub expires_at: Option<UnixMillis>,
    /// The code of its last failure.
    pub last_error: Option<String>,
}

/// The live tokens whose last refresh failed, at most `limit`, as the store
/// holds them (so that a restart does not forget what was failing).
pub fn failing(service: &Service, limit: usize) -> Result<Vec<Failing>, StoreError> {
    let store = service.store();
    let mut out = Vec::new();
    for (token_id, record) in store.failing_refreshes(limit)? {
        match store.find(&token_id) {
            Ok(Found::Live { meta, .. }) => out.push(Failing {
                token_id,
                broker_type: meta.broker_type,
                expires_at: meta.expires_at,
                last_error: record.last_error,
            }),
            Ok(_) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(_) => {}
        }
    }
    Ok(out)
}

fn unit() -> f64 {
    rand::random::<f64>()
}

fn expired_event(token_id: &str, meta: &TokenMeta, reason: ExpiryReason, now: UnixMillis) -> Event {
    let mut event = token_event(
        EventKind::TokenExpired,
        &rfc3339(now),
        token_id,
        TokenState::ReauthRequired,
        meta,
    );
    event.reason = reason.as_reason().map(str::to_owned);
    event
}

/// A read that failed: an I/O error stops the pass (worth retrying); a
/// record that does not decode or open is counted, logged and skipped.
fn skip(error: StoreError, token_id: &str, outcome: &mut PassOutcome) -> Result<(), StoreError> {
    if error.is_transient() {
        return Err(error);
    }
    tracing::error!(token_id, %error, "skipping a token record that cannot be read");
    outcome.skipped += 1;
    Ok(())
}

/// The v1 expiry pass over the `e` index: tokens that are not refreshable go
/// to `reauth_required` at their expiry; a refreshable one (its integration
/// configured since it was stored) is handed to the engine, due now.
pub fn expiry_pass(service: &Service, now: UnixMillis) -> Result<PassOutcome, StoreError> {
    let store = service.store();
    let due = store.due_expiry_entries(now, PASS_LIMIT)?;
    if due.is_empty() {
        return Ok(PassOutcome::default());
    }
    let integrations = service.integrations();
    store.write(|tx| {
        let mut outcome = PassOutcome::default();
        for (at, token_id) in due.iter().cloned() {
            let found = match tx.find(&token_id) {
                Ok(found) => found,
                Err(error) => {
                    skip(error, &token_id, &mut outcome)?;
                    tx.skip_expiry(at, &token_id);
                    continue;
                }
            };
            let Found::Live {
                meta,
                sealed,
                wrapped,
            } = found
            else {
                tx.skip_expiry(at, &token_id);
                continue;
            };
            if meta.expires_at != Some(at) || meta.state != TokenState::Active {
                tx.skip_expiry(at, &token_id);
            } else if rules::refreshable(&meta, integrations.get(&meta.broker_type).is_some()) {
                let previous = match tx.refresh_record(&token_id) {
                    Ok(previous) => previous,
                    Err(error) => {
                        skip(error, &token_id, &mut outcome)?;
                        tx.skip_expiry(at, &token_id);
                        continue;
                    }
                };
                let next = RefreshRecord {
                    due_at: now,
                    ..previous.clone().unwrap_or_default()
                };
                tx.put_refresh(&token_id, previous.as_ref(), &next, Some(at))?;
            } else if lifecycle::expires_now(&meta, now) {
                let next = tx.expire(&token_id, &meta, &wrapped, &sealed, now)?;
                outcome
                    .events
                    .push(expired_event(&token_id, &next, ExpiryReason::Expired, now));
            }
        }
        outcome.changed = true;
        Ok(Decision::Commit(outcome))
    })
}

/// Leases up to `limit` due tokens (skipping those `busy` says are in
/// flight here), and settles the other due ones: the refresh token's own
/// expiry, an integration removed, a lease still running.
pub fn lease_pass(
    service: &Service,
    now: UnixMillis,
    limit: usize,
    busy: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Leased>, PassOutcome), StoreError> {
    let store = service.store();
    if limit == 0 {
        return Ok((Vec::new(), PassOutcome::default()));
    }
    // Most ticks find nothing due: look before taking the writer lock.
    if store.due_refreshes(now, 1)?.is_empty() {
        return Ok((Vec::new(), PassOutcome::default()));
    }
    let integrations = service.integrations();
    store.write(|tx| {
        let mut outcome = PassOutcome::default();
        let mut leased = Vec::new();
        for (at, token_id) in tx.due_refreshes(now, PASS_LIMIT)? {
            if leased.len() >= limit {
                break;
            }
            if busy(&token_id) {
                continue;
            }
            let stale = RefreshRecord {
                due_at: at,
                ..RefreshRecord::default()
            };
            let (meta, sealed, wrapped, record) =
                match (tx.find(&token_id), tx.refresh_record(&token_id)) {
                    (
                        Ok(Found::Live {
                            meta,
                            sealed,
                            wrapped,
                        }),
                        Ok(Some(record)),
                    ) => (meta, sealed, wrapped, record),
                    (Err(error), _) | (_, Err(error)) => {
                        skip(error, &token_id, &mut outcome)?;
                        tx.skip_due(at, &token_id);
                        continue;
                    }
                    _ => {
                        tx.drop_refresh(&token_id, &stale, None);
                        continue;
                    }
                };
            if record.due_at != at {
                tx.skip_due(at, &token_id);
                continue;
            }
            let integration = integrations.get(&meta.broker_type);
            let timeout = integration.map_or(std::time::Duration::ZERO, |i| i.timeout);
            match rules::on_due(
                &meta,
                &record,
                integration.is_some(),
                timeout,
                now,
                rand::random(),
            ) {
                Due::Refresh(next) => {
                    let secrets = match store.open_secrets(&token_id, &meta, &sealed, &wrapped) {
                        Ok(secrets) => secrets,
                        Err(error) => {
                            skip(error, &token_id, &mut outcome)?;
                            tx.skip_due(at, &token_id);
                            continue;
                        }
                    };
                    let Some(refresh_token) = secrets.refresh_token.as_ref() else {
                        tx.drop_refresh(&token_id, &record, meta.expires_at);
                        continue;
                    };
                    let refresh_token = refresh_token.clone();
                    tx.put_refresh(&token_id, Some(&record), &next, None)?;
                    if let Some(lease) = next.lease {
                        leased.push(Leased {
                            token_id,
                            broker_type: meta.broker_type.clone(),
                            lease,
                            refresh_token,
                            expires_at: meta.expires_at,
                        });
                    }
                }
                Due::Expire(reason) => {
                    let next = tx.expire(&token_id, &meta, &wrapped, &sealed, now)?;
                    tx.drop_refresh(&token_id, &record, None);
                    outcome
                        .events
                        .push(expired_event(&token_id, &next, reason, now));
                }
                Due::Release => {
                    let back = (meta.state == TokenState::Active)
                        .then_some(meta.expires_at)
                        .flatten();
                    tx.drop_refresh(&token_id, &record, back);
                }
                Due::Wait(next) => tx.put_refresh(&token_id, Some(&record), &next, None)?,
            }
        }
        outcome.changed = true;
        Ok(Decision::Commit((leased, outcome)))
    })
}

/// Gives back leases whose requests never went out (queued at a clean
/// stop): due again now, so the next start need not wait for them to run
/// out. A lease that is no longer the record's is left alone.
pub fn unlease(service: &Service, leases: &[Leased], now: UnixMillis) -> Result<(), StoreError> {
    let store = service.store();
    store.write(|tx| {
        for leased in leases {
            let Some(record) = tx.refresh_record(&leased.token_id)? else {
                continue;
            };
            if record.lease.map(|l| l.id) != Some(leased.lease.id) {
                continue;
            }
            let next = RefreshRecord {
                due_at: now,
                lease: None,
                ..record.clone()
            };
            tx.put_refresh(&leased.token_id, Some(&record), &next, None)?;
        }
        Ok(Decision::Commit(()))
    })
}

/// Applies the answer to a leased refresh, unless the lease is no longer
/// the record's (a reconnection or a revocation came first: the answer is
/// dropped). The new tokens are sealed in the same change as the record.
pub fn apply(
    service: &Service,
    leased: &Leased,
    answer: &Result<Grant, Failure>,
    now: UnixMillis,
) -> Result<Vec<Event>, StoreError> {
    let store = service.store();
    let token_id = leased.token_id.as_str();
    store.write(|tx| {
        let (
            Found::Live {
                meta,
                sealed,
                wrapped,
            },
            Some(record),
        ) = (tx.find(token_id)?, tx.refresh_record(token_id)?)
        else {
            return Ok(Decision::Discard(Vec::new()));
        };
        if record.lease.map(|l| l.id) != Some(leased.lease.id) {
            tracing::info!(
                token_id,
                "refresh answer dropped: the token changed meanwhile"
            );
            return Ok(Decision::Discard(Vec::new()));
        }
        let ahead = service.integrations().get(&meta.broker_type).map_or(
            std::time::Duration::from_secs(DEFAULT_REFRESH_AHEAD_SECS),
            |i| i.refresh_ahead,
        );
        let sent_at = leased.lease.sent_at;
        let stamp = rfc3339(now);
        let events = match answer {
            Ok(grant) => {
                let next_meta = rules::refreshed_meta(&meta, grant, sent_at, now);
                let secrets = TokenSecrets {
                    access_token: grant.access_token.clone(),
                    refresh_token: Some(
                        grant
                            .refresh_token
                            .clone()
                            .unwrap_or_else(|| leased.refresh_token.clone()),
                    ),
                };
                tx.put_token(token_id, &next_meta, Some(&meta), &secrets)?;
                match rules::after_success(&next_meta, ahead, sent_at, now, unit()) {
                    Some(next) => {
                        tx.put_refresh(token_id, Some(&record), &next, next_meta.expires_at)?
                    }
                    None => tx.drop_refresh(token_id, &record, None),
                }
                vec![token_event(
                    EventKind::TokenRefreshed,
                    &stamp,
                    token_id,
                    TokenState::Active,
                    &next_meta,
                )]
            }
            Err(failure) => match rules::after_failure(&meta, &record, failure, now, unit()) {
                AfterFailure::Expire(reason) => {
                    let next = tx.expire(token_id, &meta, &wrapped, &sealed, now)?;
                    tx.drop_refresh(token_id, &record, None);
                    vec![expired_event(token_id, &next, reason, now)]
                }
                AfterFailure::Retry {
                    record: next,
                    failed_event,
                } => {
                    tx.put_refresh(token_id, Some(&record), &next, None)?;
                    if failed_event {
                        let mut event = token_event(
                            EventKind::TokenRefreshFailed,
                            &stamp,
                            token_id,
                            TokenState::Active,
                            &meta,
                        );
                        event.reason = Some(failure.code());
                        vec![event]
                    } else {
                        Vec::new()
                    }
                }
            },
        };
        Ok(Decision::Commit(events))
    })
}
