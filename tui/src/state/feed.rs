//! The model's own forms of the events it lists: a refused request and a
//! lifecycle change, converted from the wire [`Event`].

use mmt_shared::events::{Event, EventKind};
use mmt_shared::wire::{ErrorCode, Operation, Scope};

/// The `HH:MM:SS` part of an RFC 3339 time, or the text itself when it is not
/// one.
fn clock(at: &str) -> String {
    at.get(11..19).unwrap_or(at).to_owned()
}

/// A refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
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
}

impl Rejection {
    /// What was asked: `read`, `write`, `revoke`, or `-` when unknown.
    pub fn asked(&self) -> &'static str {
        match (self.operation, self.request.as_str()) {
            (Some(operation), _) => operation.as_str(),
            (None, "connection.removed") => "revoke",
            (None, _) => "-",
        }
    }

    /// Whether this is the refusal the console highlights: a write on a
    /// read-only token.
    pub fn is_scope_mismatch(&self) -> bool {
        self.code == Some(ErrorCode::ScopeMismatch)
    }
}

impl From<Event> for Rejection {
    fn from(event: Event) -> Self {
        Self {
            time: clock(&event.at),
            client_id: event.client_id.unwrap_or_default(),
            token_id: event.token_id.unwrap_or_default(),
            operation: event.operation,
            scope: event.scope,
            code: event.code,
            request: event.queue.unwrap_or_default(),
        }
    }
}

/// A lifecycle change of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// When (`HH:MM:SS`, UTC).
    pub time: String,
    /// What happened: `issued`, `rotated`, `refreshed`, `expired`, `revoked`.
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
            what,
            token_id: event.token_id.unwrap_or_default(),
            client_id: event.client_id.unwrap_or_default(),
            broker_type: event.broker_type.unwrap_or_default(),
            scope: event.scope,
        }
    }
}
