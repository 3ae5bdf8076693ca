//! The messages of CONTRACT.md §4, their replies, and the error codes.
//!
//! Requests are `Deserialize` only as far as the worker needs; replies are
//! `Serialize` and `Deserialize` so that publishers and tests can read them.
//! Unknown fields are always accepted and ignored.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The largest message body the worker accepts, in bytes. Larger bodies are
/// dead-lettered as `invalid_message`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The longest identifier (clientId, endUserId, brokerType, accountId,
/// tokenId, ...) the worker accepts, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// The routing keys (and queue suffixes) of the four inbound messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `integration.connected`: store raw tokens, mint or reuse tokenIds.
    IntegrationConnected,
    /// `connection.removed`: revoke a tokenId for good.
    ConnectionRemoved,
    /// `token.resolve`: turn a tokenId into the live exchange token.
    TokenResolve,
    /// `link.access_tokens`: list a user's live tokens as SDK objects.
    LinkAccessTokens,
}

impl MessageKind {
    /// Every kind, in contract order.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::IntegrationConnected,
        MessageKind::ConnectionRemoved,
        MessageKind::TokenResolve,
        MessageKind::LinkAccessTokens,
    ];

    /// The routing key on `NS.in`, which is also the queue name after `NS.`.
    pub fn routing_key(self) -> &'static str {
        match self {
            MessageKind::IntegrationConnected => "integration.connected",
            MessageKind::ConnectionRemoved => "connection.removed",
            MessageKind::TokenResolve => "token.resolve",
            MessageKind::LinkAccessTokens => "link.access_tokens",
        }
    }

    /// Whether the message changes state (durable queue, idempotency record,
    /// flush before ack).
    pub fn mutates(self) -> bool {
        matches!(
            self,
            MessageKind::IntegrationConnected | MessageKind::ConnectionRemoved
        )
    }
}

/// A token's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read-only access.
    Read,
    /// Read and write access (write includes read).
    Write,
}

impl Scope {
    /// Whether a token of this scope may be used for `operation`.
    pub fn allows(self, operation: Operation) -> bool {
        match self {
            Scope::Write => true,
            Scope::Read => operation == Operation::Read,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// What a `token.resolve` caller intends to do with the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A read call on the exchange.
    Read,
    /// A write call (trade, transfer) on the exchange.
    Write,
}

impl Operation {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}

/// The lifecycle state of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Usable.
    Active,
    /// Expired with no way to refresh: the user must reconnect.
    ReauthRequired,
    /// Revoked by its client; the secret is gone.
    Revoked,
}

impl TokenState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::ReauthRequired => "reauth_required",
            TokenState::Revoked => "revoked",
        }
    }
}

/// The error codes of CONTRACT.md §4 and §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A `write` operation on a `read` token.
    ScopeMismatch,
    /// No such tokenId for this client (also: another client's tokenId).
    NotFound,
    /// The token was revoked by its client.
    Revoked,
    /// The token expired and cannot be refreshed: the user must reconnect.
    ReauthRequired,
    /// Well-formed JSON of the right shape whose values break a rule (an
    /// empty or over-long id, an empty `accountTokens`, an account listed
    /// twice, both `accessToken` and `delayedAuth`).
    InvalidRequest,
    /// Not JSON, a missing or mistyped field (neither `accessToken` nor
    /// `delayedAuth`, no `accountTokens` outside a wallet), an unknown scope
    /// or operation, an empty or oversized body.
    InvalidMessage,
    /// The broker user that published the message may not act for the
    /// client it names (CONTRACT.md §10, strict mode).
    Forbidden,
    /// The access token expired while the provider keeps failing to refresh
    /// it: retryable, the user need do nothing (CONTRACT.md §9).
    RefreshPending,
}

impl ErrorCode {
    /// Every code, in contract order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::ScopeMismatch,
        ErrorCode::NotFound,
        ErrorCode::Revoked,
        ErrorCode::ReauthRequired,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidMessage,
        ErrorCode::Forbidden,
        ErrorCode::RefreshPending,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ScopeMismatch => "scope_mismatch",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Revoked => "revoked",
            ErrorCode::ReauthRequired => "reauth_required",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RefreshPending => "refresh_pending",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `integration.connected`: the Link SDK's `onIntegrationConnected` payload
/// with who it belongs to.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationConnected {
    /// The client (tenant) the end user belongs to.
    pub client_id: String,
    /// The client's end user.
    pub end_user_id: String,
    /// The scope the user granted.
    pub scope: Scope,
    /// The SDK's access-token payload (or `delayedAuth`).
    #[serde(default, deserialize_with = "present")]
    pub access_token: Option<IntegrationPayload>,
    /// The SDK's `DelayedAuthPayload`: a refresh token only, refreshed into
    /// an access token at once (CONTRACT.md §9).
    #[serde(default, deserialize_with = "present")]
    pub delayed_auth: Option<DelayedAuthPayload>,
}

/// An optional field that may be absent but not `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The SDK's `DelayedAuthPayload`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayedAuthPayload {
    /// The integration.
    pub broker_type: String,
    /// The integration's display name.
    #[serde(default)]
    pub broker_name: Option<String>,
    /// The raw refresh token.
    pub refresh_token: Secret,
    /// Lifetime of the refresh token, from the message's time.
    #[serde(default)]
    pub refresh_token_expires_in_seconds: Option<u64>,
}

impl DelayedAuthPayload {
    /// The same connection as an access-token payload: one account with
    /// accountId `""`, no access token yet, expired from the start (so it
    /// is refreshed at once).
    pub fn as_payload(&self) -> IntegrationPayload {
        IntegrationPayload {
            broker_type: self.broker_type.clone(),
            broker_name: self.broker_name.clone(),
            account_tokens: Some(vec![AccountToken {
                account: Account {
                    account_id: String::new(),
                    account_name: None,
                },
                access_token: Secret::new(String::new()),
                refresh_token: Some(self.refresh_token.clone()),
            }]),
            expires_in_seconds: Some(0),
            refresh_token_expires_in_seconds: self.refresh_token_expires_in_seconds,
        }
    }
}

/// The SDK's `accessToken` object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationPayload {
    /// The integration (`coinbase`, `binance`, `deFiWallet`, ...).
    pub broker_type: String,
    /// The integration's display name.
    #[serde(default)]
    pub broker_name: Option<String>,
    /// One entry per connected account; each becomes a token. Required
    /// (and not empty) except for self-custody wallets, for which it is
    /// ignored: `None` when the body has no `accountTokens`.
    #[serde(default, deserialize_with = "present")]
    pub account_tokens: Option<Vec<AccountToken>>,
    /// Lifetime of the access tokens, from the message's time.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
    /// Lifetime of the refresh tokens, from the message's time.
    #[serde(default)]
    pub refresh_token_expires_in_seconds: Option<u64>,
}

/// One connected account and its raw tokens.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountToken {
    /// The account at the exchange.
    pub account: Account,
    /// The raw exchange access token.
    pub access_token: Secret,
    /// The raw refresh token, when the exchange issues one.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
}

/// An account at the exchange.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The exchange's account id.
    pub account_id: String,
    /// The account's display name.
    #[serde(default)]
    pub account_name: Option<String>,
}

/// `connection.removed`: revoke a tokenId.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRemoved {
    /// The client revoking its token.
    pub client_id: String,
    /// The tokenId (Mesh's Remove-connection body calls it `authToken`).
    #[serde(alias = "authToken")]
    pub token_id: String,
}

/// `token.resolve`: turn a tokenId into the live exchange token.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResolve {
    /// The client presenting the tokenId.
    pub client_id: String,
    /// The tokenId (or `authToken`).
    #[serde(alias = "authToken")]
    pub token_id: String,
    /// What the caller is about to do with the token.
    pub operation: Operation,
}

/// `link.access_tokens`: a user's live tokens, for a returning user.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkAccessTokens {
    /// The client.
    pub client_id: String,
    /// The client's end user.
    pub end_user_id: String,
    /// Only tokens of this scope, when given.
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// The object a front end passes to the Link SDK for a returning user: the
/// tokenId travels in `accessToken`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SdkAccessToken {
    /// The tokenId (never a raw token).
    pub access_token: String,
    /// The integration.
    pub broker_type: String,
    /// Present and empty, as the contract says.
    pub broker_name: String,
    /// Present and empty, as the contract says.
    pub account_id: String,
    /// Present and empty, as the contract says.
    pub account_name: String,
}

impl SdkAccessToken {
    /// The SDK object for a tokenId.
    pub fn new(token_id: &str, broker_type: &str) -> Self {
        Self {
            access_token: token_id.to_owned(),
            broker_type: broker_type.to_owned(),
            broker_name: String::new(),
            account_id: String::new(),
            account_name: String::new(),
        }
    }
}

/// One tokenId in an `integration.connected` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    /// The stable tokenId.
    pub token_id: String,
    /// The account it stands for.
    pub account_id: String,
    /// True when this message minted it, false when it reused one.
    pub created: bool,
}

/// The reply to `integration.connected`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedReply {
    /// Always true.
    pub ok: bool,
    /// The integration.
    pub broker_type: String,
    /// The scope granted.
    pub scope: Scope,
    /// One entry per account token (empty for a self-custody wallet).
    pub tokens: Vec<IssuedToken>,
    /// The SDK objects for the front end.
    pub access_tokens: Vec<SdkAccessToken>,
    /// Extension: true for a self-custody wallet, for which nothing is stored.
    #[serde(default)]
    pub wallet: bool,
}

/// The reply to `connection.removed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedReply {
    /// Always true.
    pub ok: bool,
    /// False when the token was already revoked.
    pub revoked: bool,
}

/// The reply to `token.resolve`. It carries the raw token: it is never stored
/// or logged.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveReply {
    /// Always true.
    pub ok: bool,
    /// The tokenId asked for.
    pub token_id: String,
    /// The integration.
    pub broker_type: String,
    /// The account.
    pub account_id: String,
    /// The token's scope.
    pub scope: Scope,
    /// The live raw exchange access token.
    pub access_token: Secret,
    /// When the access token expires (RFC 3339 UTC), null when it does not.
    pub expires_at: Option<String>,
}

/// The reply to `link.access_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkReply {
    /// Always true.
    pub ok: bool,
    /// Every live token of that user at that client.
    pub access_tokens: Vec<SdkAccessToken>,
}

/// The body of an error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A sentence for people; never a secret.
    pub message: String,
}

/// `{"ok": false, "error": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Always false.
    pub ok: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

impl ErrorReply {
    /// An error reply with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_connected_accepts_the_sdk_fields_it_ignores() {
        let body = r#"{
          "clientId": "acme", "endUserId": "u1", "scope": "write",
          "accessToken": {
            "brokerType": "coinbase", "brokerName": "Coinbase",
            "brokerBrandInfo": {"logo": "x"}, "tokenId": "ignored",
            "accountTokens": [{
              "account": {"accountId": "a", "accountName": "Main",
                          "fund": 1.5, "cash": 2, "isReconnected": true, "meshAccountId": "m"},
              "accessToken": "raw", "refreshToken": "r"
            }],
            "expiresInSeconds": 60
          }
        }"#;
        let msg: IntegrationConnected = serde_json::from_str(body).expect("valid");
        assert_eq!(msg.scope, Scope::Write);
        let payload = msg.access_token.expect("an access-token payload");
        assert_eq!(payload.account_tokens.map(|a| a.len()), Some(1));
        assert_eq!(payload.expires_in_seconds, Some(60));
    }

    #[test]
    fn unknown_scope_is_rejected() {
        let body =
            r#"{"clientId":"a","endUserId":"u","scope":"admin","accessToken":{"brokerType":"x"}}"#;
        assert!(serde_json::from_str::<IntegrationConnected>(body).is_err());
    }

    #[test]
    fn auth_token_is_accepted_for_token_id() {
        let msg: ConnectionRemoved =
            serde_json::from_str(r#"{"clientId":"a","authToken":"t","type":"coinbase"}"#)
                .expect("valid");
        assert_eq!(msg.token_id, "t");
        let msg: TokenResolve =
            serde_json::from_str(r#"{"clientId":"a","authToken":"t","operation":"read"}"#)
                .expect("valid");
        assert_eq!(msg.token_id, "t");
    }

    #[test]
    fn write_includes_read_but_not_the_reverse() {
        assert!(Scope::Write.allows(Operation::Read));
        assert!(Scope::Write.allows(Operation::Write));
        assert!(Scope::Read.allows(Operation::Read));
        assert!(!Scope::Read.allows(Operation::Write));
    }

    #[test]
    fn error_codes_serialize_as_the_contract_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
