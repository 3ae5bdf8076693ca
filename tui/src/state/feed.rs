//! The model's own forms of the events it lists: a refused request, a
//! lifecycle change and a dead letter, converted from the wire [`Event`] and
//! the snapshot's rows.

use mmt_shared::console::DeadLetterRow;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::{ErrorCode, Operation, Scope};

use crate::timefmt::clock;

/// A queue's name without the namespace (`mmt.token.resolve` is
/// `token.resolve`; a namespace holds no dot).
fn unprefixed(queue: &str) -> &str {
    queue.split_once('.').map_or(queue, |(_, rest)| rest)
}

/// A refused request: a `request.rejected`, or bad input dead-lettered with
/// the code its sender was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// When (RFC 3339).
    pub at: String,
    /// When (`HH:MM:SS`, UTC).
    pub time: String,
    /// Who asked.
    pub client_id: String,
    /// The tokenId presented.
    pub token_id: String,
    /// The operation asked for (none for a revocation).
    pub operation: Option<Operation>,
    /// The token's scope, when the token exists for that client.
    pub scope: Option<Scope>,
    /// The error code answered.
    pub code: Option<ErrorCode>,
    /// The request's queue (`token.resolve`, `connection.removed`).
    pub request: String,
    /// Why, for bad input (the dead letter's `x-mmt-error`).
    pub reason: Option<String>,
}

impl Rejection {
    /// What was asked: `read`, `write`, `revoke`, `connect`, or `-` when
    /// unknown (the same words on screen and in `--dump`).
    pub fn asked(&self) -> &'static str {
        asked(self.operation, &self.request)
    }

    /// Whether this is the refusal the console highlights: a write on a
    /// read-only token.
    pub fn is_scope_mismatch(&self) -> bool {
        self.code == Some(ErrorCode::ScopeMismatch)
    }
}

/// What a refused request asked for, from its operation and queue.
fn asked(operation: Option<Operation>, request: &str) -> &'static str {
    match (operation, unprefixed_request(request)) {
        (Some(operation), _) => operation.as_str(),
        (None, "connection.removed") => "revoke",
        (None, "integration.connected") => "connect",
        (None, "token.resolve") => "resolve",
        (None, "link.access_tokens") => "link",
        (None, _) => "-",
    }
}

/// A request queue's routing key, whether named in full or not.
fn unprefixed_request(request: &str) -> &str {
    if request.matches('.').count() >= 2 {
        unprefixed(request)
    } else {
        request
    }
}

impl From<Event> for Rejection {
    fn from(event: Event) -> Self {
        let request = event.queue.unwrap_or_default();
        Self {
            time: clock(&event.at),
            at: event.at,
            client_id: event.client_id.unwrap_or_default(),
            token_id: event.token_id.unwrap_or_default(),
            operation: event.operation,
            scope: event.scope,
            code: event.code,
            request: unprefixed_request(&request).to_owned(),
            reason: event.reason,
        }
    }
}

/// A message the worker dead-lettered (never its body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// When (RFC 3339).
    pub at: String,
    /// The queue it came from, without the namespace.
    pub queue: String,
    /// Why (`x-mmt-error`).
    pub reason: String,
    /// The code its sender was answered, for bad input.
    pub code: Option<ErrorCode>,
    /// Its message id.
    pub message_id: Option<String>,
    /// Its size in bytes (known once the worker's list arrives).
    pub size: Option<u64>,
    /// The broker user that published it (its `user_id`), when known: the
    /// live event names it; the worker's list does not.
    pub broker_user: Option<String>,
    /// The clientId its body claimed, when known: from the event, or from
    /// the `request.rejected` of the same message (`forbidden`).
    pub client_id: Option<String>,
}

impl DeadLetter {
    /// Whether `other` is the same dead letter (the same message at the same
    /// time, from the same queue).
    pub fn same(&self, other: &DeadLetter) -> bool {
        self.at == other.at && self.queue == other.queue && self.message_id == other.message_id
    }
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(row: DeadLetterRow) -> Self {
        Self {
            queue: unprefixed(&row.queue).to_owned(),
            at: row.at,
            reason: row.reason,
            code: row.code,
            message_id: row.message_id,
            size: Some(row.size),
            broker_user: row.broker_user,
            client_id: row.client_id,
        }
    }
}

impl From<&Event> for DeadLetter {
    fn from(event: &Event) -> Self {
        Self {
            at: event.at.clone(),
            queue: unprefixed(event.queue.as_deref().unwrap_or_default()).to_owned(),
            reason: event.reason.clone().unwrap_or_default(),
            code: event.code,
            message_id: event.message_id.clone(),
            size: None,
            broker_user: event.broker_user.clone(),
            client_id: event.client_id.clone(),
        }
    }
}

/// A lifecycle change of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// When (RFC 3339).
    pub at: String,
    /// When (`HH:MM:SS`, UTC).
    pub time: String,
    /// What happened: `issued`, `rotated`, `reconnected`, `refreshed`,
    /// `expired`, `revoked`.
    pub what: &'static str,
    /// The token.
    pub token_id: String,
    /// Its client.
    pub client_id: String,
    /// Its integration.
    pub broker_type: String,
    /// Its scope.
    pub scope: Option<Scope>,
}

impl From<Event> for Lifecycle {
    fn from(event: Event) -> Self {
        let what = match event.kind {
            EventKind::TokenIssued => "issued",
            EventKind::TokenRotated => "rotated",
            EventKind::TokenReconnected => "reconnected",
            EventKind::TokenRefreshed => "refreshed",
            EventKind::TokenExpired => "expired",
            EventKind::TokenRevoked => "revoked",
            EventKind::RequestRejected => "rejected",
            EventKind::MessageDeadLettered => "dead-lettered",
            EventKind::WorkerStats => "stats",
            EventKind::TokenRefreshFailed => "refresh failed",
            EventKind::TokenRevokedUpstream => "revoked upstream",
            EventKind::IntegrationUnhealthy => "integration unhealthy",
            EventKind::IntegrationHealthy => "integration healthy",
        };
        Self {
            time: clock(&event.at),
            at: event.at,
            what,
            token_id: event.token_id.unwrap_or_default(),
            client_id: event.client_id.unwrap_or_default(),
            broker_type: event.broker_type.unwrap_or_default(),
            scope: event.scope,
        }
    }
}
