//! The refresh rules of CONTRACT.md §9 as pure functions of (token record,
//! refresh record, integration, now): when a token is next looked at, what
//! the scheduler does then, and what an answer changes; and the records
//! they read: a token's [`RefreshRecord`] and [`Lease`] (kept by the store),
//! a provider's [`Grant`] or [`Failure`] (classified by the OAuth client).
//! No I/O here.

use std::time::Duration;

use mmt_shared::backoff::Backoff;
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::TokenState;

use mmt_shared::secret::Secret;
use serde::{Deserialize, Serialize};

use crate::rules::lifecycle::TokenMeta;

/// A refresh request that may be in flight: written and flushed before the
/// request goes out, so that no second request for the same token is sent
/// until it has run out (`until` = send time + timeout + margin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Random: the answer is applied only while this lease is the record's.
    pub id: u64,
    /// When the token was leased, never after its request went out (the
    /// new expiry counts from it: at worst a little early).
    pub sent_at: UnixMillis,
    /// When the request is certainly over.
    pub until: UnixMillis,
}

/// The engine's state of one token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// When the scheduler looks at it next (its `d` entry).
    pub due_at: UnixMillis,
    /// Failed refreshes since the last success.
    pub attempts: u32,
    /// The request in flight, if any.
    pub lease: Option<Lease>,
    /// The code of the last failure (`timeout`, `http_503`, ...).
    pub last_error: Option<String>,
    /// When it was last refreshed.
    pub last_refreshed_at: Option<UnixMillis>,
    /// When `token.refresh_failed` was last published for it.
    pub last_failed_event_at: Option<UnixMillis>,
}

/// A successful refresh.
#[derive(Debug)]
pub struct Grant {
    /// The new access token.
    pub access_token: Secret,
    /// A new refresh token, when the provider rotated it.
    pub refresh_token: Option<Secret>,
    /// Lifetime of the new access token (none: no expiry).
    pub expires_in: Option<u64>,
    /// Lifetime of the new refresh token, when given.
    pub refresh_token_expires_in: Option<u64>,
}

/// Why a request did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `invalid_grant`: the refresh token is no good (refresh only).
    InvalidGrant,
    /// `invalid_client` or a 401 without `invalid_grant`: the operator's
    /// credentials are wrong; retried, the integration is unhealthy.
    InvalidClient,
    /// A 4xx the revocation endpoint will not change its mind on (revoke
    /// only).
    Refused(u16),
    /// Worth retrying: timeout, connection error, 5xx, 429, garbage, ...
    Transient {
        /// What happened, for logs, events and the console.
        code: String,
        /// The provider's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
}

impl Failure {
    pub(crate) fn transient(code: impl Into<String>) -> Self {
        Failure::Transient {
            code: code.into(),
            retry_after: None,
        }
    }

    /// The short code stored and shown (`invalid_grant`, `timeout`, ...).
    pub fn code(&self) -> String {
        match self {
            Failure::InvalidGrant => "invalid_grant".into(),
            Failure::InvalidClient => "invalid_client".into(),
            Failure::Refused(status) => format!("http_{status}"),
            Failure::Transient { code, .. } => code.clone(),
        }
    }
}

/// Retries of a failing refresh: 500 ms doubling up to a minute, jittered,
/// never sooner than the provider's `Retry-After`.
pub const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

/// `token.refresh_failed` at most this often per token.
pub const FAILED_EVENT_EVERY: UnixMillis = 60_000;

/// The lease outlives the request's timeout by this much: the time to seal
/// and flush the answer.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The last moment a lease's request may go out. Leases are taken ahead of
/// free request slots (a request that ends starts the next one at once,
/// without waiting for a pass), so a lease may wait up to one `timeout`
/// before its request; one not sent by then is let run out.
pub fn send_by(lease: &Lease, timeout: Duration) -> UnixMillis {
    lease.sent_at.saturating_add(millis(timeout))
}

/// The refresh-ahead window is spread by up to this fraction of itself, so
/// that tokens connected in the same second are not all due in the same one.
const JITTER_FRACTION: f64 = 0.1;

fn millis(d: Duration) -> UnixMillis {
    UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// Whether the engine owns this token: active, with a refresh token, and its
/// brokerType configured.
pub fn refreshable(meta: &TokenMeta, configured: bool) -> bool {
    configured && meta.has_refresh_token && meta.state == TokenState::Active
}

/// Whether a token past `expiresAt` is waiting for a refresh (resolve answers
/// `refresh_pending`) rather than for its user (`reauth_required`).
pub fn pending(meta: &TokenMeta, configured: bool, now: UnixMillis) -> bool {
    refreshable(meta, configured) && meta.refresh_expires_at.is_none_or(|at| at > now)
}

/// When a refreshable token is due: `expiresAt - ahead`, where `ahead` is
/// at most half the lifetime left at `issued_at` and spread earlier by up to
/// a tenth (`unit` in `[0, 1)`); never later than a refresh-ahead before the
/// refresh token's own expiry. `None`: the access token never expires, there
/// is nothing to do.
pub fn due_at(
    meta: &TokenMeta,
    ahead: Duration,
    issued_at: UnixMillis,
    unit: f64,
) -> Option<UnixMillis> {
    let expires_at = meta.expires_at?;
    let window = |deadline: UnixMillis| {
        let life = deadline.saturating_sub(issued_at).max(0);
        let ahead = millis(ahead).min(life / 2);
        let jitter = (ahead as f64 * JITTER_FRACTION * unit.clamp(0.0, 1.0)) as UnixMillis;
        deadline.saturating_sub(ahead).saturating_sub(jitter)
    };
    let due = window(expires_at);
    Some(match meta.refresh_expires_at {
        Some(refresh_deadline) => due.min(window(refresh_deadline)),
        None => due,
    })
}

/// The record of a token that the engine starts to own (or owns anew after
/// a reconnection): due per [`due_at`], no attempt, no lease.
pub fn schedule(
    meta: &TokenMeta,
    ahead: Duration,
    issued_at: UnixMillis,
    unit: f64,
) -> Option<RefreshRecord> {
    due_at(meta, ahead, issued_at, unit).map(|due| RefreshRecord {
        due_at: due,
        ..RefreshRecord::default()
    })
}

/// Why a token goes to `reauth_required`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    /// Not refreshable and past `expiresAt` (v1).
    Expired,
    /// The provider answered `invalid_grant`.
    RefreshRejected,
    /// The refresh token's own expiry passed.
    RefreshTokenExpired,
}

impl ExpiryReason {
    /// The `reason` of the `token.expired` event (`None` for v1 expiry).
    pub fn as_reason(self) -> Option<&'static str> {
        match self {
            ExpiryReason::Expired => None,
            ExpiryReason::RefreshRejected => Some("refresh_rejected"),
            ExpiryReason::RefreshTokenExpired => Some("refresh_token_expired"),
        }
    }
}

/// What the scheduler does with a token whose due time has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Send a refresh now, under this lease (durable before it goes out).
    Refresh(RefreshRecord),
    /// `reauth_required` now.
    Expire(ExpiryReason),
    /// Not the engine's any more (revoked, reauth_required, integration
    /// removed): forget the record; the v1 expiry index takes over.
    Release,
    /// A lease that has not run out yet: look again then.
    Wait(RefreshRecord),
}

/// The decision at a token's due time. `configured`: its brokerType is in
/// the integrations file now; `timeout`: that integration's request timeout;
/// `lease_id`: a fresh random id.
pub fn on_due(
    meta: &TokenMeta,
    record: &RefreshRecord,
    configured: bool,
    timeout: Duration,
    now: UnixMillis,
    lease_id: u64,
) -> Due {
    if !refreshable(meta, configured) {
        return Due::Release;
    }
    if meta.refresh_expires_at.is_some_and(|at| at <= now) {
        return Due::Expire(ExpiryReason::RefreshTokenExpired);
    }
    if let Some(lease) = &record.lease
        && lease.until > now
    {
        return Due::Wait(RefreshRecord {
            due_at: lease.until,
            ..record.clone()
        });
    }
    // The wait for a request slot (at most `timeout`, see [`send_by`]), the
    // request (at most `timeout`) and the margin.
    let until = now.saturating_add(millis(timeout * 2 + LEASE_MARGIN));
    Due::Refresh(RefreshRecord {
        due_at: until,
        lease: Some(Lease {
            id: lease_id,
            sent_at: now,
            until,
        }),
        ..record.clone()
    })
}

/// The token record after a successful refresh sent at `sent_at`.
pub fn refreshed_meta(
    meta: &TokenMeta,
    grant: &Grant,
    sent_at: UnixMillis,
    now: UnixMillis,
) -> TokenMeta {
    let after = |secs: u64| {
        sent_at.saturating_add(
            UnixMillis::try_from(secs)
                .unwrap_or(UnixMillis::MAX)
                .saturating_mul(1000),
        )
    };
    let mut next = meta.clone();
    next.state = TokenState::Active;
    next.updated_at = now;
    next.expires_at = grant.expires_in.map(after);
    next.has_refresh_token = true;
    if grant.refresh_token.is_some() {
        next.refresh_expires_at = grant.refresh_token_expires_in.map(after);
    }
    next
}

/// The refresh record after a success: the next due time, or none when the
/// new access token does not expire.
pub fn after_success(
    next_meta: &TokenMeta,
    ahead: Duration,
    sent_at: UnixMillis,
    now: UnixMillis,
    unit: f64,
) -> Option<RefreshRecord> {
    schedule(next_meta, ahead, sent_at, unit).map(|r| RefreshRecord {
        last_refreshed_at: Some(now),
        ..r
    })
}

/// What a failed refresh leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// `reauth_required` at once (`invalid_grant`).
    Expire(ExpiryReason),
    /// Retry at the record's due time; `failed_event`: publish
    /// `token.refresh_failed` now (the token is past `expiresAt`, and the
    /// last such event is a minute old or more).
    Retry {
        /// The record to store.
        record: RefreshRecord,
        /// Whether to publish `token.refresh_failed`.
        failed_event: bool,
    },
}

/// The decision after a failed refresh; `unit` in `[0, 1)` jitters the
/// backoff.
pub fn after_failure(
    meta: &TokenMeta,
    record: &RefreshRecord,
    failure: &Failure,
    now: UnixMillis,
    unit: f64,
) -> AfterFailure {
    let retry_after = match failure {
        Failure::InvalidGrant => return AfterFailure::Expire(ExpiryReason::RefreshRejected),
        Failure::Transient { retry_after, .. } => *retry_after,
        Failure::InvalidClient | Failure::Refused(_) => None,
    };
    let wait = RETRY
        .delay_with(record.attempts, unit)
        .max(retry_after.unwrap_or_default());
    let mut due = now.saturating_add(millis(wait));
    if let Some(deadline) = meta.refresh_expires_at {
        due = due.min(deadline.max(now));
    }
    let past_expiry = meta.expires_at.is_some_and(|at| at <= now);
    let failed_event = past_expiry
        && record
            .last_failed_event_at
            .is_none_or(|at| now.saturating_sub(at) >= FAILED_EVENT_EVERY);
    AfterFailure::Retry {
        record: RefreshRecord {
            due_at: due,
            attempts: record.attempts.saturating_add(1),
            lease: None,
            last_error: Some(failure.code()),
            last_failed_event_at: if failed_event {
                Some(now)
            } else {
                record.last_failed_event_at
            },
            ..record.clone()
        },
        failed_event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmt_shared::secret::Secret;
    use mmt_shared::wire::Scope;

    const NOW: UnixMillis = 1_795_000_000_000;
    const AHEAD: Duration = Duration::from_secs(300);

    fn meta(expires_in_ms: Option<i64>) -> TokenMeta {
        TokenMeta {
            client_id: "acme".into(),
            end_user_id: "u".into(),
            broker_type: "coinbase".into(),
            broker_name: String::new(),
            account_id: "a".into(),
            account_name: String::new(),
            scope: Scope::Read,
            state: TokenState::Active,
            created_at: NOW,
            updated_at: NOW,
            expires_at: expires_in_ms.map(|ms| NOW + ms),
            refresh_expires_at: None,
            has_refresh_token: true,
        }
    }

    fn grant(refresh: Option<&str>, expires_in: Option<u64>) -> Grant {
        Grant {
            access_token: Secret::new("a2".into()),
            refresh_token: refresh.map(|r| Secret::new(r.into())),
            expires_in,
            refresh_token_expires_in: None,
        }
    }

    #[test]
    fn due_is_the_refresh_ahead_window_before_expiry_at_most_half_the_lifetime() {
        let hour = meta(Some(3_600_000));
        assert_eq!(due_at(&hour, AHEAD, NOW, 0.0), Some(NOW + 3_300_000));
        let jittered = due_at(&hour, AHEAD, NOW, 0.99).expect("due");
        assert!((NOW + 3_270_000..NOW + 3_300_000).contains(&jittered));
        let short = meta(Some(10_000));
        assert_eq!(due_at(&short, AHEAD, NOW, 0.0), Some(NOW + 5_000));
        assert_eq!(due_at(&meta(None), AHEAD, NOW, 0.0), None);
    }

    #[test]
    fn a_refresh_token_expiring_first_pulls_the_due_time_before_it() {
        let mut m = meta(Some(3_600_000));
        m.refresh_expires_at = Some(NOW + 1_000_000);
        assert_eq!(due_at(&m, AHEAD, NOW, 0.0), Some(NOW + 700_000));
    }

    #[test]
    fn a_due_token_is_leased_for_its_wait_and_its_request_plus_a_margin() {
        let m = meta(Some(1_000));
        let Due::Refresh(r) = on_due(
            &m,
            &RefreshRecord::default(),
            true,
            Duration::from_secs(10),
            NOW,
            7,
        ) else {
            panic!("expected a refresh");
        };
        let lease = r.lease.expect("leased");
        assert_eq!(
            (lease.id, lease.sent_at, lease.until),
            (7, NOW, NOW + 25_000)
        );
        assert_eq!(r.due_at, lease.until);
        assert_eq!(send_by(&lease, Duration::from_secs(10)), NOW + 10_000);
    }

    #[test]
    fn a_live_lease_is_waited_for_and_an_expired_one_is_taken_over() {
        let m = meta(Some(1_000));
        let held = RefreshRecord {
            lease: Some(Lease {
                id: 1,
                sent_at: NOW - 1,
                until: NOW + 500,
            }),
            ..RefreshRecord::default()
        };
        assert!(
            matches!(on_due(&m, &held, true, AHEAD, NOW, 2), Due::Wait(r) if r.due_at == NOW + 500)
        );
        assert!(
            matches!(on_due(&m, &held, true, AHEAD, NOW + 500, 2), Due::Refresh(r) if r.lease.is_some_and(|l| l.id == 2))
        );
    }

    #[test]
    fn unconfigured_reauth_or_refresh_token_less_tokens_are_released() {
        let r = RefreshRecord::default();
        assert_eq!(
            on_due(&meta(Some(1)), &r, false, AHEAD, NOW, 1),
            Due::Release
        );
        let mut gone = meta(Some(1));
        gone.state = TokenState::ReauthRequired;
        assert_eq!(on_due(&gone, &r, true, AHEAD, NOW, 1), Due::Release);
        gone = meta(Some(1));
        gone.has_refresh_token = false;
        assert_eq!(on_due(&gone, &r, true, AHEAD, NOW, 1), Due::Release);
    }

    #[test]
    fn the_refresh_tokens_own_expiry_means_reauth() {
        let mut m = meta(Some(1_000));
        m.refresh_expires_at = Some(NOW);
        assert_eq!(
            on_due(&m, &RefreshRecord::default(), true, AHEAD, NOW, 1),
            Due::Expire(ExpiryReason::RefreshTokenExpired)
        );
    }

    #[test]
    fn a_success_stores_the_new_expiry_from_the_send_time_and_keeps_or_replaces_the_refresh_deadline()
     {
        let mut m = meta(Some(1_000));
        m.refresh_expires_at = Some(NOW + 50_000);
        let kept = refreshed_meta(&m, &grant(None, Some(60)), NOW, NOW + 3);
        assert_eq!(kept.expires_at, Some(NOW + 60_000));
        assert_eq!(kept.refresh_expires_at, Some(NOW + 50_000));
        let rotated = refreshed_meta(&m, &grant(Some("r2"), None), NOW, NOW + 3);
        assert_eq!(
            (rotated.expires_at, rotated.refresh_expires_at),
            (None, None)
        );
        assert_eq!(after_success(&rotated, AHEAD, NOW, NOW + 3, 0.0), None);
        let next = after_success(&kept, AHEAD, NOW, NOW + 3, 0.0).expect("scheduled");
        assert_eq!(
            (next.due_at, next.attempts, next.lease),
            (NOW + 25_000, 0, None)
        );
    }

    #[test]
    fn invalid_grant_expires_and_everything_else_backs_off_honouring_retry_after() {
        let m = meta(Some(10_000));
        let r = RefreshRecord {
            attempts: 3,
            ..RefreshRecord::default()
        };
        assert_eq!(
            after_failure(&m, &r, &Failure::InvalidGrant, NOW, 0.0),
            AfterFailure::Expire(ExpiryReason::RefreshRejected)
        );
        let AfterFailure::Retry {
            record,
            failed_event,
        } = after_failure(&m, &r, &Failure::InvalidClient, NOW, 0.0)
        else {
            panic!("expected a retry");
        };
        assert_eq!(
            (record.due_at, record.attempts, failed_event),
            (NOW + 2_000, 4, false)
        );
        assert_eq!(record.last_error.as_deref(), Some("invalid_client"));
        let limited = Failure::Transient {
            code: "http_429".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        let AfterFailure::Retry { record, .. } = after_failure(&m, &r, &limited, NOW, 0.0) else {
            panic!("expected a retry");
        };
        assert_eq!(record.due_at, NOW + 30_000);
    }

    #[test]
    fn refresh_failed_is_published_past_expiry_at_most_once_a_minute() {
        let m = meta(Some(0));
        let failure = Failure::Transient {
            code: "timeout".into(),
            retry_after: None,
        };
        let AfterFailure::Retry {
            record,
            failed_event: true,
        } = after_failure(&m, &RefreshRecord::default(), &failure, NOW, 0.0)
        else {
            panic!("expected a first refresh_failed");
        };
        assert!(matches!(
            after_failure(&m, &record, &failure, NOW + 59_999, 0.0),
            AfterFailure::Retry {
                failed_event: false,
                ..
            }
        ));
        assert!(matches!(
            after_failure(&m, &record, &failure, NOW + 60_000, 0.0),
            AfterFailure::Retry {
                failed_event: true,
                ..
            }
        ));
        let fresh = meta(Some(10_000));
        assert!(matches!(
            after_failure(&fresh, &RefreshRecord::default(), &failure, NOW, 0.0),
            AfterFailure::Retry {
                failed_event: false,
                ..
            }
        ));
    }
}
