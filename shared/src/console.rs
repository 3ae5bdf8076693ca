//! What the worker offers the console beyond the events of CONTRACT.md §5:
//! a snapshot, a paged token listing and the `worker.stats` body
//! (docs/protocol.md, "Console").
//!
//! None of these types has a field that could hold a raw token: the console
//! sees tokenIds and metadata only.

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::wire::{ErrorCode, Scope, TokenState};

/// The routing key (on `NS.in`) and queue suffix of snapshot requests.
pub const SNAPSHOT_ROUTING_KEY: &str = "console.snapshot";

/// The routing key (on `NS.in`) and queue suffix of token listing requests.
pub const TOKENS_ROUTING_KEY: &str = "console.tokens";

/// The most rows one listing page holds.
pub const MAX_PAGE: u32 = 1000;

/// The most records one listing request examines, so that a filter matching
/// nothing in a large store still answers promptly (with a cursor to go on).
pub const MAX_SCAN: u32 = 50_000;

/// How many recent rejections and lifecycle events the worker keeps.
pub const RECENT_CAPACITY: usize = 200;

/// `console.snapshot`: the body may be `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRequest {
    /// At most this many recent events of each list (default and cap:
    /// [`RECENT_CAPACITY`]; 0 asks for the counts and counters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent: Option<usize>,
}

/// How many tokens are in one (state, scope, integration) group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountRow {
    /// The state (`revoked` counts the tombstones).
    pub state: TokenState,
    /// The scope.
    pub scope: Scope,
    /// The integration.
    pub broker_type: String,
    /// How many tokens.
    pub count: u64,
}

/// The reply to `console.snapshot`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReply {
    /// Always true.
    pub ok: bool,
    /// When the snapshot was taken, RFC 3339 UTC.
    pub at: String,
    /// Token counts by (state, scope, integration), revoked included.
    pub counts: Vec<CountRow>,
    /// The latest `request.rejected` events, oldest first.
    pub recent_rejections: Vec<Event>,
    /// The latest lifecycle events (issued, rotated, refreshed, expired,
    /// revoked), oldest first.
    pub recent_lifecycle: Vec<Event>,
    /// The latest counters, as in `worker.stats`.
    pub stats: WorkerStats,
}

/// `console.tokens`: one page of the token listing, ordered by tokenId.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensRequest {
    /// Start after this tokenId (the previous page's `nextAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many rows (default 100, cap [`MAX_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Keep rows whose tokenId, clientId, brokerType or state contains this
    /// text (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// One token as the console sees it: metadata only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRow {
    /// The tokenId.
    pub token_id: String,
    /// The owning client.
    pub client_id: String,
    /// The integration.
    pub broker_type: String,
    /// The scope.
    pub scope: Scope,
    /// The stored state.
    pub state: TokenState,
    /// When the access token expires (RFC 3339 UTC), if it does.
    pub expires_at: Option<String>,
    /// When the record last changed (the revocation time for a revoked
    /// token), RFC 3339 UTC.
    pub updated_at: String,
}

/// The reply to `console.tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensReply {
    /// Always true.
    pub ok: bool,
    /// The page, ordered by tokenId.
    pub tokens: Vec<TokenRow>,
    /// Pass as `after` for the next page; null at the end of the table.
    pub next_after: Option<String>,
    /// How many records this request examined.
    pub scanned: u64,
}

/// The counters of one consumed queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// The queue's full name.
    pub queue: String,
    /// Deliveries taken since the worker started.
    pub received: u64,
    /// Deliveries acknowledged since the worker started.
    pub acked: u64,
    /// Deliveries per second over the last interval.
    pub rate: f64,
    /// Messages ready in the queue, when the broker told.
    pub depth: Option<u64>,
}

/// How many rejections of one code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeCount {
    /// The error code.
    pub code: ErrorCode,
    /// How many since the worker started.
    pub count: u64,
}

/// The body of `worker.stats`, published every second on `NS.events`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStats {
    /// When the counters were read, RFC 3339 UTC.
    pub at: String,
    /// Seconds since the worker started.
    pub uptime_seconds: u64,
    /// One entry per consumed queue.
    pub queues: Vec<QueueStats>,
    /// `request.rejected` events by code, since the worker started.
    pub rejections: Vec<CodeCount>,
    /// Messages dead-lettered since the worker started.
    pub dead_lettered: u64,
    /// Messages in `NS.dead`, when the broker told.
    pub dead_depth: Option<u64>,
    /// Bytes the store takes on disk.
    pub store_bytes: u64,
    /// The refresh engine's health (CONTRACT.md §9).
    #[serde(default)]
    pub refresh: RefreshStats,
}

/// The refresh engine's health in `worker.stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RefreshStats {
    /// `refresh_concurrency` in force.
    pub concurrency: u64,
    /// Refresh requests in flight now.
    pub in_flight: u64,
    /// Tokens due within the next minute.
    pub due_soon: u64,
    /// Successful refreshes since the worker started.
    pub refreshed: u64,
    /// Failed refreshes since the worker started.
    pub failed: u64,
    /// Tokens past `expiresAt` whose refresh keeps failing (resolve answers
    /// `refresh_pending`).
    pub refresh_pending: u64,
    /// Store records skipped because they do not decode, since start.
    pub skipped_records: u64,
    /// Per configured integration that has failed since start.
    pub integrations: Vec<IntegrationHealth>,
}

/// One integration's refresh health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IntegrationHealth {
    /// The brokerType.
    pub broker_type: String,
    /// Tokens whose last refresh failed.
    pub failing: u64,
    /// The last failure code (`timeout`, `http_503`, `invalid_client`, ...).
    pub last_error: Option<String>,
    /// Whether the provider refuses the operator's client credentials.
    pub unhealthy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_is_valid() {
        assert_eq!(
            serde_json::from_str::<SnapshotRequest>("{}").expect("valid"),
            SnapshotRequest::default()
        );
        assert_eq!(
            serde_json::from_str::<TokensRequest>("{}").expect("valid"),
            TokensRequest::default()
        );
    }

    #[test]
    fn rows_are_camel_case() {
        let row = TokenRow {
            token_id: "tok_1".into(),
            client_id: "acme".into(),
            broker_type: "coinbase".into(),
            scope: Scope::Read,
            state: TokenState::ReauthRequired,
            expires_at: None,
            updated_at: "2026-11-24T00:00:00Z".into(),
        };
        let json = serde_json::to_string(&row).expect("serializes");
        assert_eq!(
            json,
            r#"{"tokenId":"tok_1","clientId":"acme","brokerType":"coinbase","scope":"read","state":"reauth_required","expiresAt":null,"updatedAt":"2026-11-24T00:00:00Z"}"#
        );
    }
}
