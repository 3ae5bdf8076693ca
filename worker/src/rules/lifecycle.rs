//! The lifecycle rules of CONTRACT.md §2 as pure functions of (stored state,
//! message, now). No broker, no disk: the store and the consumers call these
//! and carry out what they decide.

use mmt_shared::events::EventKind;
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{ErrorCode, MAX_ID_BYTES, Operation, Scope, TokenState};
use serde::{Deserialize, Serialize};

/// The self-custody wallet integrations that need no token, always.
pub const DEFAULT_WALLET_BROKER_TYPES: [&str; 3] = [
    "deFiWallet",
    "cryptocurrencyWallet",
    "cryptocurrencyAddress",
];

/// What the store keeps about a live token, besides its sealed secrets.
/// Nothing here is secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    /// The owning client.
    pub client_id: String,
    /// The client's end user.
    pub end_user_id: String,
    /// The integration.
    pub broker_type: String,
    /// The integration's display name.
    pub broker_name: String,
    /// The exchange account.
    pub account_id: String,
    /// The account's display name.
    pub account_name: String,
    /// The scope granted.
    pub scope: Scope,
    /// The stored state (see [`effective_state`] for the state at a time).
    pub state: TokenState,
    /// When the tokenId was minted.
    pub created_at: UnixMillis,
    /// When the record last changed.
    pub updated_at: UnixMillis,
    /// When the access token expires, if it does.
    pub expires_at: Option<UnixMillis>,
    /// When the refresh token expires, if there is one and it does.
    pub refresh_expires_at: Option<UnixMillis>,
    /// Whether a refresh token is stored.
    pub has_refresh_token: bool,
}

/// What is left of a revoked token: no secret, enough to answer `revoked`
/// to its own client and `not_found` to anyone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The client that owned (and revoked) it.
    pub client_id: String,
    /// The integration.
    pub broker_type: String,
    /// The scope it had.
    pub scope: Scope,
    /// When it was revoked.
    pub revoked_at: UnixMillis,
}

/// What the store holds under a tokenId.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'a> {
    /// A live token (active or reauth_required).
    Live(&'a TokenMeta),
    /// A revoked token.
    Revoked(&'a Tombstone),
    /// Nothing, ever.
    Missing,
}

/// A refusal: the error code and a sentence for the requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The contract's error code.
    pub code: ErrorCode,
    /// Why, for people; never a secret.
    pub message: String,
}

impl Rejection {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Whether `broker_type` is a self-custody wallet: acknowledged, nothing
/// stored, no tokenId.
pub fn is_wallet(broker_type: &str, extra_wallet_types: &[String]) -> bool {
    DEFAULT_WALLET_BROKER_TYPES.contains(&broker_type)
        || extra_wallet_types.iter().any(|w| w == broker_type)
}

/// Checks an identifier field: present, at most [`MAX_ID_BYTES`] bytes.
pub fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        Err(Rejection::new(
            ErrorCode::InvalidRequest,
            format!("{field} must not be empty"),
        ))
    } else if value.len() > MAX_ID_BYTES {
        Err(Rejection::new(
            ErrorCode::InvalidRequest,
            format!("{field} is longer than {MAX_ID_BYTES} bytes"),
        ))
    } else {
        Ok(())
    }
}

/// The time an event happened: the message's timestamp when it has one and
/// it is not in the future (a skewed clock must not extend a token's life),
/// else the time it was received.
pub fn event_time(timestamp_secs: Option<u64>, received_at: UnixMillis) -> UnixMillis {
    timestamp_secs
        .and_then(|s| i64::try_from(s).ok())
        .map(|s| s.saturating_mul(1000))
        .map_or(received_at, |t| t.min(received_at))
}

/// One account of an `integration.connected` message, as the rules see it.
#[derive(Clone, Debug)]
pub struct ConnectInput<'a> {
    /// The client.
    pub client_id: &'a str,
    /// The end user.
    pub end_user_id: &'a str,
    /// The integration.
    pub broker_type: &'a str,
    /// Its display name.
    pub broker_name: &'a str,
    /// The account.
    pub account_id: &'a str,
    /// Its display name.
    pub account_name: &'a str,
    /// The scope granted.
    pub scope: Scope,
    /// Access token lifetime, if any.
    pub expires_in_seconds: Option<u64>,
    /// Refresh token lifetime, if any.
    pub refresh_expires_in_seconds: Option<u64>,
    /// Whether a refresh token came with it.
    pub has_refresh_token: bool,
    /// When the connection happened ([`event_time`]).
    pub at: UnixMillis,
}

/// What the store holds for an identity when it connects again: the tokenId
/// its index points to, what is stored under it, and whether the raw tokens
/// that arrive are the ones already sealed there.
#[derive(Clone, Copy, Debug)]
pub struct Holder<'a> {
    /// The tokenId the identity index points to.
    pub token_id: &'a str,
    /// What is stored under it.
    pub lookup: Lookup<'a>,
    /// Whether the arriving access and refresh tokens equal the stored ones.
    pub same_secrets: bool,
}

/// What to do with one connected account: the whole decision, tokenId
/// included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectPlan {
    /// The tokenId to store under: the holder's, or a newly minted one.
    pub token_id: String,
    /// The record to store.
    pub meta: TokenMeta,
    /// Whether the tokenId was minted by this message (the reply's
    /// `created`).
    pub created: bool,
    /// What to publish: `token.issued` for a new tokenId, `token.rotated`
    /// when the raw token changed, `token.reconnected` when the same raw
    /// token came again (docs/protocol.md §5).
    pub event: EventKind,
}

impl ConnectPlan {
    /// The record to store.
    pub fn meta(&self) -> &TokenMeta {
        &self.meta
    }
}

fn after(at: UnixMillis, seconds: Option<u64>) -> Option<UnixMillis> {
    seconds.map(|s| at.saturating_add(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)))
}

/// The rule for `integration.connected`, given what holds the identity
/// (client, end user, integration, scope, account) if anything does. Only a
/// live token keeps its tokenId: a revoked identity (or none) gets a new one
/// from `mint`, so a revoked tokenId is never brought back.
pub fn connect(
    holder: Option<Holder<'_>>,
    input: &ConnectInput<'_>,
    now: UnixMillis,
    mint: impl FnOnce() -> String,
) -> ConnectPlan {
    let live = holder.and_then(|h| match h.lookup {
        Lookup::Live(meta) => Some((h, meta)),
        Lookup::Revoked(_) | Lookup::Missing => None,
    });
    let meta = TokenMeta {
        client_id: input.client_id.to_owned(),
        end_user_id: input.end_user_id.to_owned(),
        broker_type: input.broker_type.to_owned(),
        broker_name: input.broker_name.to_owned(),
        account_id: input.account_id.to_owned(),
        account_name: input.account_name.to_owned(),
        scope: input.scope,
        state: TokenState::Active,
        created_at: live.map_or(now, |(_, m)| m.created_at),
        updated_at: now,
        expires_at: after(input.at, input.expires_in_seconds),
        refresh_expires_at: if input.has_refresh_token {
            after(input.at, input.refresh_expires_in_seconds)
        } else {
            None
        },
        has_refresh_token: input.has_refresh_token,
    };
    match live {
        Some((holder, _)) => ConnectPlan {
            token_id: holder.token_id.to_owned(),
            meta,
            created: false,
            event: if holder.same_secrets {
                EventKind::TokenReconnected
            } else {
                EventKind::TokenRotated
            },
        },
        None => ConnectPlan {
            token_id: mint(),
            meta,
            created: true,
            event: EventKind::TokenIssued,
        },
    }
}

/// The state of a live token at `now`. An access token past its expiry is
/// never handed out: it is `reauth_required` unless the refresh engine
/// renews it first (resolve says `refresh_pending` instead while a refresh
/// can still save it: [`crate::rules::refresh::pending`]).
pub fn effective_state(meta: &TokenMeta, now: UnixMillis) -> TokenState {
    match (meta.state, meta.expires_at) {
        (TokenState::Active, Some(expires_at)) if expires_at <= now => TokenState::ReauthRequired,
        (state, _) => state,
    }
}

/// Whether the expiry sweep should move this token to `reauth_required` now.
pub fn expires_now(meta: &TokenMeta, now: UnixMillis) -> bool {
    meta.state == TokenState::Active && effective_state(meta, now) == TokenState::ReauthRequired
}

/// The rule for `token.resolve`. `Ok` means: hand out the raw token.
pub fn resolve(
    lookup: Lookup<'_>,
    client_id: &str,
    operation: Operation,
    now: UnixMillis,
) -> Result<(), Rejection> {
    match lookup {
        Lookup::Missing => Err(not_found()),
        Lookup::Revoked(tomb) if tomb.client_id != client_id => Err(not_found()),
        Lookup::Live(meta) if meta.client_id != client_id => Err(not_found()),
        Lookup::Revoked(_) => Err(Rejection::new(
            ErrorCode::Revoked,
            "this tokenId was revoked; the user must connect again",
        )),
        Lookup::Live(meta) => {
            if !meta.scope.allows(operation) {
                Err(Rejection::new(
                    ErrorCode::ScopeMismatch,
                    format!(
                        "a {} token cannot be used for a {} operation",
                        meta.scope.as_str(),
                        operation.as_str()
                    ),
                ))
            } else if effective_state(meta, now) == TokenState::ReauthRequired {
                Err(Rejection::new(
                    ErrorCode::ReauthRequired,
                    "the token expired and cannot be refreshed; the user must reconnect",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// What a `connection.removed` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokePlan {
    /// Destroy the secret, leave a tombstone.
    Revoke,
    /// Already revoked: nothing to do, `revoked: false`.
    AlreadyRevoked,
}

/// The rule for `connection.removed`.
pub fn revoke(lookup: Lookup<'_>, client_id: &str) -> Result<RevokePlan, Rejection> {
    match lookup {
        Lookup::Live(meta) if meta.client_id == client_id => Ok(RevokePlan::Revoke),
        Lookup::Revoked(tomb) if tomb.client_id == client_id => Ok(RevokePlan::AlreadyRevoked),
        _ => Err(not_found()),
    }
}

/// Whether a live token belongs in a `link.access_tokens` answer.
pub fn listed(meta: &TokenMeta, scope: Option<Scope>) -> bool {
    scope.is_none_or(|s| s == meta.scope)
}

fn not_found() -> Rejection {
    Rejection::new(ErrorCode::NotFound, "no such tokenId for this client")
}

#[cfg(test)]
mod tests;
