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
    /// At most this many recent dead letters (default: as `recent`; cap
    /// [`RECENT_CAPACITY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<usize>,
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
    /// The latest dead letters, oldest first.
    #[serde(default)]
    pub recent_dead_letters: Vec<DeadLetterRow>,
    /// Dead letters by reason since the worker started, most first.
    #[serde(default)]
    pub dead_by_reason: Vec<ReasonCount>,
}

/// The most records a sorted or counted listing examines (a search over
/// every token of a large store).
pub const MAX_SEARCH_SCAN: u32 = 2_000_000;

/// What a listing can be ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SortBy {
    /// The tokenId (the store's own order: pages by cursor, cheapest).
    #[default]
    TokenId,
    /// The owning client.
    ClientId,
    /// The end user.
    EndUserId,
    /// The integration.
    BrokerType,
    /// The scope.
    Scope,
    /// The state.
    State,
    /// The access token's expiry (no expiry sorts last).
    ExpiresAt,
    /// The last change.
    UpdatedAt,
}

/// `console.tokens`: one page of the token listing, ordered by tokenId (by
/// cursor), or searched and sorted over every token (by offset, with a
/// total).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensRequest {
    /// Start after this tokenId (the previous page's `nextAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many rows (default 100, cap [`MAX_PAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Search terms separated by spaces, all of which must match
    /// (case-insensitive). A bare term matches any of tokenId, clientId,
    /// endUserId, accountId, brokerType, scope and state; `client:`,
    /// `user:`, `account:`, `integration:`, `scope:`, `state:` and `id:`
    /// narrow a term to one field, and `expires:none` or `expires:<time>`
    /// keep tokens without expiry or expiring before that RFC 3339 time
    /// (or its prefix, e.g. `2026-12-02`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Order by this field over every matching token; the reply then has a
    /// `total` and pages by `offset` instead of `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortBy>,
    /// With `sort`: largest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub descending: bool,
    /// With `sort`: skip this many matching rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// Exactly this token (the detail pane): the reply holds it or nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Count the matching tokens by client over every token (the reply's
    /// `byClient`, the top few) instead of listing them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_client: bool,
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
    /// The end user (absent for a revoked token: the tombstone keeps none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user_id: Option<String>,
    /// The exchange account (absent for a revoked token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// When the tokenId was minted, RFC 3339 UTC (absent for a revoked
    /// token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The refresh engine's state of the token, when the engine owns it
    /// (CONTRACT.md §9: an active token with a refresh token whose
    /// integration is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<TokenRefresh>,
}

/// The refresh engine's state of one token, from its refresh record: times
/// and codes only, never a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRefresh {
    /// When the engine looks at the token next (refresh ahead of expiry,
    /// retry, or the end of a request in flight), RFC 3339 UTC.
    pub next_at: String,
    /// When it was last refreshed, RFC 3339 UTC, if it ever was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<String>,
    /// Failed refreshes since the last success.
    #[serde(default)]
    pub attempts: u32,
    /// The code of the last failure (`timeout`, `http_503`, ...) while
    /// failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether a refresh request is in flight now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_flight: bool,
    /// Whether the access token is past `expiresAt` while the engine still
    /// tries (resolve answers `refresh_pending`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
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
    /// With `sort` (or `tokenId`): how many tokens match in all, when every
    /// record was examined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// With `sort`: pass as `offset` for the next page; absent at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u32>,
    /// With `byClient`: the clients with the most matching tokens, most
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_client: Vec<ClientCount>,
}

/// One message the worker dead-lettered: where from, why, which and how
/// big; never its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterRow {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The queue it came from (full name).
    pub queue: String,
    /// Why (the `x-mmt-error` header).
    pub reason: String,
    /// The error code answered, when it was bad input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// Its `message_id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The body's size in bytes.
    pub size: u64,
    /// The broker user that published it (its `user_id`), when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_user: Option<String>,
    /// The clientId its body claimed, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The kind of a dead-letter reason: the text before the first `:` and
/// without a trailing `(line N, column M)`, which leaves out the field, line
/// and column that vary from message to message.
pub fn reason_kind(reason: &str) -> &str {
    let head = reason.split(':').next().unwrap_or(reason).trim();
    match head.rfind(" (line ") {
        Some(at) if head.ends_with(')') => &head[..at],
        _ => head,
    }
}

/// How many dead letters of one kind of reason ([`reason_kind`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCount {
    /// The kind of reason ([`reason_kind`]).
    pub reason: String,
    /// How many since the worker started.
    pub count: u64,
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
    /// Consumers of the queue, when the broker told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u32>,
    /// Deliveries this worker holds unacknowledged (received - acked).
    #[serde(default)]
    pub unacked: u64,
    /// Processing latency (taken to acknowledged) over the last interval,
    /// 50th percentile, milliseconds; absent when nothing was processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
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
    /// The reporting worker process, a random id new at every start: tells
    /// one worker's reports from another's; absent from workers before it
    /// was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
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
    /// The store's engine: `fjall` (embedded) or `postgres` (shared by any
    /// number of workers); absent from workers before it was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_engine: Option<String>,
    /// Refusals by client since the worker started, most first (the top
    /// few).
    #[serde(default)]
    pub rejections_by_client: Vec<ClientCount>,
    /// The worker process's CPU use over the last interval, in percent of
    /// one core (Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// The worker process's resident memory in bytes (Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Whether the claimed clientId is trusted (`open`) or checked against
    /// the clients file (`strict`), CONTRACT.md §10.
    #[serde(default)]
    pub identity: IdentityMode,
    /// The refresh engine's health (CONTRACT.md §9).
    #[serde(default)]
    pub refresh: RefreshStats,
    /// The embedded store's purges (CONTRACT.md §13, "Physical deletion");
    /// absent for the shared store and from workers before it was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeStats>,
    /// The key ring (CONTRACT.md §11): the active key, the data keys each
    /// key wraps, the rewrap's progress; absent from workers before it was
    /// told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysStats>,
}

/// The key ring in `worker.stats` (CONTRACT.md §11): `active` and
/// `wrapped` as the contract names them, the rest an extension
/// (docs/protocol.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeysStats {
    /// The id of the key that wraps new data keys.
    pub active: String,
    /// Data keys (live tokens and upstream jobs) by the id of the key that
    /// wraps them, as last counted. A key whose count is 0 (or absent) may
    /// be deleted from the key file.
    pub wrapped: std::collections::BTreeMap<String, u64>,
    /// When `wrapped` was counted (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<String>,
    /// The background rewrap under the active key.
    pub rewrap: RewrapStats,
}

/// The background rewrap of data keys under the active key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RewrapStats {
    /// Whether a pass is running now.
    pub running: bool,
    /// Data keys this worker rewrapped in the current (or last) pass.
    pub done: u64,
    /// Data keys an older key wrapped when the pass began.
    pub total: u64,
    /// The key the current (or last) pass rewraps under: the active key
    /// when it began. Passes of several workers with the same `to` share
    /// one rotation; absent before the first pass and from workers before
    /// it was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The rate bound, data keys a second (`--rewrap-per-sec`).
    pub per_sec: u32,
    /// Data keys this worker rewrapped since it started.
    pub rewrapped_total: u64,
    /// Why the last pass failed, if it did (it is tried again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The embedded store's purges in `worker.stats`: each removes replaced
/// and deleted versions (a revoked token's secret material) from the
/// store's files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PurgeStats {
    /// Whether a deletion waits for a purge.
    pub pending: bool,
    /// Purges done since the worker started.
    pub runs: u64,
    /// Purges that failed (and were tried again) since the worker started.
    pub failed: u64,
    /// How long the last purge took, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    /// From the oldest deletion the last purge covered to its end, in ms:
    /// how long those secrets stayed in the files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_lag_ms: Option<u64>,
}

/// How many refusals one client had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCount {
    /// The client.
    pub client_id: String,
    /// How many.
    pub count: u64,
}

/// How the worker decides who may act for a client (CONTRACT.md §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    /// No clients file: the clientId in a body is trusted.
    #[default]
    Open,
    /// A clients file: the publishing broker user must belong to the client.
    Strict,
}

impl IdentityMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMode::Open => "open",
            IdentityMode::Strict => "strict",
        }
    }
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
    fn a_reason_kind_leaves_out_the_details() {
        assert_eq!(
            reason_kind("body is not valid JSON: line 1, column 2"),
            "body is not valid JSON"
        );
        assert_eq!(reason_kind("no colon"), "no colon");
        assert_eq!(
            reason_kind("body is not valid JSON (line 1, column 2)"),
            "body is not valid JSON"
        );
        assert_eq!(
            reason_kind("missing field `endUserId` (line 1, column 93)"),
            "missing field `endUserId`"
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
            end_user_id: None,
            account_id: None,
            created_at: None,
            refresh: None,
        };
        let json = serde_json::to_string(&row).expect("serializes");
        assert_eq!(
            json,
            r#"{"tokenId":"tok_1","clientId":"acme","brokerType":"coinbase","scope":"read","state":"reauth_required","expiresAt":null,"updatedAt":"2026-11-24T00:00:00Z"}"#
        );
    }
}
