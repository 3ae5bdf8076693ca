//! The events the worker publishes on `NS.events` (CONTRACT.md §5).
//!
//! An event never carries a raw token: the type has no field that could hold
//! one.

use serde::{Deserialize, Serialize};

use crate::wire::{ErrorCode, Operation, Scope, TokenState};

/// The routing key of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A tokenId was minted.
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// Same tokenId, new raw token (the identity connected again).
    #[serde(rename = "token.rotated")]
    TokenRotated,
    /// Same tokenId, same raw token: the identity connected again with the
    /// token already stored (state back to `active`; an extension, see
    /// docs/protocol.md §5).
    #[serde(rename = "token.reconnected")]
    TokenReconnected,
    /// The worker refreshed a token at its provider (CONTRACT.md §9).
    #[serde(rename = "token.refreshed")]
    TokenRefreshed,
    /// A token passed its expiry with no way to refresh: `reauth_required`.
    #[serde(rename = "token.expired")]
    TokenExpired,
    /// A token was revoked by its client.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// A request was refused (`token.resolve`, `connection.removed`, ...).
    #[serde(rename = "request.rejected")]
    RequestRejected,
    /// A message was moved to `NS.dead`.
    #[serde(rename = "message.dead_lettered")]
    MessageDeadLettered,
    /// Periodic counters and rates.
    #[serde(rename = "worker.stats")]
    WorkerStats,
    /// A refresh failed after `expiresAt` (at most once per token per
    /// minute); `reason` says how.
    #[serde(rename = "token.refresh_failed")]
    TokenRefreshFailed,
    /// The provider call of an upstream revocation ended; `ok` says how.
    #[serde(rename = "token.revoked_upstream")]
    TokenRevokedUpstream,
    /// The provider refuses the operator's client credentials.
    #[serde(rename = "integration.unhealthy")]
    IntegrationUnhealthy,
    /// An unhealthy integration answers again.
    #[serde(rename = "integration.healthy")]
    IntegrationHealthy,
}

impl EventKind {
    /// The routing key on `NS.events`.
    pub fn routing_key(self) -> &'static str {
        match self {
            EventKind::TokenIssued => "token.issued",
            EventKind::TokenRotated => "token.rotated",
            EventKind::TokenReconnected => "token.reconnected",
            EventKind::TokenRefreshed => "token.refreshed",
            EventKind::TokenExpired => "token.expired",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::RequestRejected => "request.rejected",
            EventKind::MessageDeadLettered => "message.dead_lettered",
            EventKind::WorkerStats => "worker.stats",
            EventKind::TokenRefreshFailed => "token.refresh_failed",
            EventKind::TokenRevokedUpstream => "token.revoked_upstream",
            EventKind::IntegrationUnhealthy => "integration.unhealthy",
            EventKind::IntegrationHealthy => "integration.healthy",
        }
    }
}

/// A lifecycle event, a rejection or a dead letter. Fields that do not apply
/// to a kind are absent from the JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// What happened (also the routing key).
    pub kind: EventKind,
    /// When it happened, RFC 3339 UTC.
    pub at: String,
    /// The tokenId concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The client concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_type: Option<String>,
    /// The token's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The token's state after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TokenState>,
    /// For `request.rejected`: the operation asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// For `request.rejected`: the error code answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// For `request.rejected` and `message.dead_lettered`: the queue the
    /// message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// For `message.dead_lettered`: why (the `x-mmt-error` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message id the event answers, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The broker user that published the message (its `user_id`
    /// property), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_user: Option<String>,
    /// For `token.revoked_upstream`: whether the provider confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

impl Event {
    /// An event of `kind` at `at` (RFC 3339) with every optional field empty.
    pub fn new(kind: EventKind, at: String) -> Self {
        Self {
            kind,
            at,
            token_id: None,
            client_id: None,
            broker_type: None,
            scope: None,
            state: None,
            operation: None,
            code: None,
            queue: None,
            reason: None,
            message_id: None,
            broker_user: None,
            ok: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_is_the_routing_key() {
        for kind in [
            EventKind::TokenIssued,
            EventKind::TokenRotated,
            EventKind::TokenReconnected,
            EventKind::TokenRefreshed,
            EventKind::TokenExpired,
            EventKind::TokenRevoked,
            EventKind::RequestRejected,
            EventKind::MessageDeadLettered,
            EventKind::WorkerStats,
            EventKind::TokenRefreshFailed,
            EventKind::TokenRevokedUpstream,
            EventKind::IntegrationUnhealthy,
            EventKind::IntegrationHealthy,
        ] {
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.routing_key()));
        }
    }

    #[test]
    fn absent_fields_are_left_out() {
        let event = Event::new(EventKind::TokenIssued, "2026-11-24T00:00:00Z".into());
        let json = serde_json::to_string(&event).expect("serializes");
        assert_eq!(
            json,
            r#"{"kind":"token.issued","at":"2026-11-24T00:00:00Z"}"#
        );
    }
}
