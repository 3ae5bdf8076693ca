//! What each message does: decode, validate, apply the lifecycle rules to the
//! store, and say what to reply and which events to publish. No AMQP here:
//! the consumers feed it bytes and carry out its [`Outcome`].

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::{UnixMillis, rfc3339};
use mmt_shared::wire::{
    ConnectedReply, ConnectionRemoved, ErrorCode, ErrorReply, IntegrationConnected,
    IntegrationPayload, IssuedToken, LinkAccessTokens, LinkReply, MAX_BODY_BYTES, MessageKind,
    RemovedReply, ResolveReply, SdkAccessToken, TokenResolve, TokenState,
};
use serde::Serialize;
use zeroize::Zeroizing;

use std::sync::{Arc, RwLock};

use crate::identity::Gate;
use crate::integrations::Integrations;
use crate::lifecycle::{self, ConnectInput, ConnectPlan, Rejection, RevokePlan};
use crate::refresh;
use crate::store::{Found, Identity, Store, StoreError, TokenSecrets};

/// The longest raw token accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// One delivery, as the service sees it.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    /// Which queue it came from.
    pub kind: MessageKind,
    /// The body, as received.
    pub body: &'a [u8],
    /// The `message_id` property.
    pub message_id: Option<&'a str>,
    /// The `timestamp` property (seconds).
    pub timestamp: Option<u64>,
    /// When the worker received it.
    pub received_at: UnixMillis,
    /// The `user_id` property: the broker user that published it, as the
    /// broker verified (CONTRACT.md §10).
    pub user_id: Option<&'a str>,
}

/// What the consumer must do with a delivery.
pub enum Outcome {
    /// Reply (if asked) and publish the events. The reply may hold a raw
    /// token (`token.resolve`): it is wiped after sending.
    Done {
        /// The JSON reply.
        reply: Zeroizing<Vec<u8>>,
        /// What to publish on `NS.events` once the effect is durable.
        events: Vec<Event>,
        /// False when the message id was already processed and the stored
        /// reply is sent again.
        applied: bool,
    },
    /// Bad input: dead-letter the original with `reason`, reply with the
    /// error.
    Invalid {
        /// The error code of the reply.
        code: ErrorCode,
        /// Why (the `x-mmt-error` header and the reply's message).
        reason: String,
    },
    /// Refused before anything was decided or read (CONTRACT.md §10
    /// `forbidden`): reply with the error and publish `event`; a
    /// state-changing message is also dead-lettered with `reason`.
    Refused {
        /// The error code of the reply.
        code: ErrorCode,
        /// The reply's message (and the `x-mmt-error` header).
        reason: String,
        /// The `request.rejected` event.
        event: Box<Event>,
        /// Whether the original goes to `NS.dead`.
        dead_letter: bool,
    },
}

impl Outcome {
    fn invalid(code: ErrorCode, reason: impl Into<String>) -> Self {
        Outcome::Invalid {
            code,
            reason: reason.into(),
        }
    }

    /// The error reply of an [`Outcome::Invalid`].
    pub fn error_reply(code: ErrorCode, reason: &str) -> Vec<u8> {
        to_json(&ErrorReply::new(code, reason)).to_vec()
    }
}

impl From<Rejection> for Outcome {
    fn from(r: Rejection) -> Self {
        Outcome::invalid(r.code, r.message)
    }
}

fn to_json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"ok":false,"error":{{"code":"invalid_message","message":"reply did not serialize: {e}"}}}}"#)
            .into_bytes()
    }))
}

/// The idempotency key of a message: its `message_id`, or one derived from
/// the routing key and the body.
pub fn message_key(kind: MessageKind, message_id: Option<&str>, body: &[u8]) -> String {
    match message_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            let mut data = Vec::with_capacity(kind.routing_key().len() + 1 + body.len());
            data.extend_from_slice(kind.routing_key().as_bytes());
            data.push(0);
            data.extend_from_slice(body);
            let digest = orion::hash::digest(&data)
                .map(|d| hex::encode(d.as_ref()))
                .unwrap_or_default();
            format!("derived:{digest}")
        }
    }
}

fn decode<T: crate::decode::Message>(body: &[u8]) -> Result<T, Outcome> {
    crate::decode::decode(body)
        .map_err(|reason| Outcome::invalid(ErrorCode::InvalidMessage, reason))
}

/// The service: the store and the operator's settings.
pub struct Service {
    store: Store,
    extra_wallet_types: Vec<String>,
    identity: Gate,
    integrations: RwLock<Arc<Integrations>>,
}

impl Service {
    /// A service over `store`; `extra_wallet_types` are wallet integrations
    /// beyond the built-in ones.
    pub fn new(store: Store, extra_wallet_types: Vec<String>) -> Self {
        Self {
            store,
            extra_wallet_types,
            identity: Gate::default(),
            integrations: RwLock::new(Arc::new(Integrations::none())),
        }
    }

    /// Checks every message against `gate` first (CONTRACT.md §10).
    pub fn with_identity(mut self, gate: Gate) -> Self {
        self.identity = gate;
        self
    }

    /// The same service with these integrations (CONTRACT.md §9).
    pub fn with_integrations(self, integrations: Integrations) -> Self {
        self.set_integrations(integrations);
        self
    }

    /// The integrations in force.
    pub fn integrations(&self) -> Arc<Integrations> {
        self.integrations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the integrations (a SIGHUP reload).
    pub fn set_integrations(&self, integrations: Integrations) {
        *self.integrations.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(integrations);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Handles one delivery. `Err` is a store failure worth retrying; bad
    /// input is an `Ok(Outcome::Invalid)`.
    pub fn handle(&self, inbound: &Inbound<'_>) -> Result<Outcome, StoreError> {
        if let Some(forbidden) = self.identity.check(inbound) {
            return Ok(forbidden);
        }
        let mut outcome = self.decide(inbound)?;
        if let Outcome::Done { events, .. } = &mut outcome {
            for event in events {
                event.broker_user = inbound.user_id.map(str::to_owned);
            }
        }
        Ok(outcome)
    }

    fn decide(&self, inbound: &Inbound<'_>) -> Result<Outcome, StoreError> {
        if inbound.body.is_empty() {
            return Ok(Outcome::invalid(ErrorCode::InvalidMessage, "body is empty"));
        }
        if inbound.body.len() > MAX_BODY_BYTES {
            return Ok(Outcome::invalid(
                ErrorCode::InvalidMessage,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        let now = inbound.received_at;
        match inbound.kind {
            MessageKind::IntegrationConnected => match decode::<IntegrationConnected>(inbound.body)
            {
                Ok(msg) => self.mutate(inbound, |s| s.connected(&msg, inbound)),
                Err(invalid) => Ok(invalid),
            },
            MessageKind::ConnectionRemoved => match decode::<ConnectionRemoved>(inbound.body) {
                Ok(msg) => self.mutate(inbound, |s| s.removed(&msg, now)),
                Err(invalid) => Ok(invalid),
            },
            MessageKind::TokenResolve => match decode::<TokenResolve>(inbound.body) {
                Ok(msg) => self.resolve(&msg, now),
                Err(invalid) => Ok(invalid),
            },
            MessageKind::LinkAccessTokens => match decode::<LinkAccessTokens>(inbound.body) {
                Ok(msg) => self.link(&msg),
                Err(invalid) => Ok(invalid),
            },
        }
    }

    /// Runs a state-changing handler under the writer lock, once per message
    /// id: a repeated id gets its original reply and changes nothing.
    fn mutate<'s>(
        &'s self,
        inbound: &Inbound<'_>,
        apply: impl FnOnce(&'s Self) -> Result<Applied<'s>, StoreError>,
    ) -> Result<Outcome, StoreError> {
        let key = message_key(inbound.kind, inbound.message_id, inbound.body);
        let lock = self.store.lock();
        if let Some(reply) = self.store.processed(inbound.kind, &key)? {
            return Ok(Outcome::Done {
                reply: Zeroizing::new(reply),
                events: Vec::new(),
                applied: false,
            });
        }
        match apply(self)? {
            Applied::Invalid(outcome) => Ok(outcome),
            Applied::Stateless { reply } => Ok(Outcome::Done {
                reply,
                events: Vec::new(),
                applied: true,
            }),
            Applied::Change {
                mut change,
                reply,
                events,
            } => {
                change.processed(inbound.kind, &key, &reply)?;
                change.commit(&lock)?;
                Ok(Outcome::Done {
                    reply,
                    events,
                    applied: true,
                })
            }
        }
    }

    fn connected(
        &self,
        msg: &IntegrationConnected,
        inbound: &Inbound<'_>,
    ) -> Result<Applied<'_>, StoreError> {
        let delayed;
        let payload = match (&msg.access_token, &msg.delayed_auth) {
            (Some(payload), None) => payload,
            (None, Some(auth)) => {
                delayed = auth.as_payload();
                &delayed
            }
            _ => {
                return Ok(Applied::Invalid(Outcome::invalid(
                    ErrorCode::InvalidRequest,
                    "give accessToken or delayedAuth, exactly one",
                )));
            }
        };
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("endUserId", &msg.end_user_id))
            .and_then(|()| lifecycle::check_id("accessToken.brokerType", &payload.broker_type))
        {
            return Ok(Applied::Invalid(r.into()));
        }
        if lifecycle::is_wallet(&payload.broker_type, &self.extra_wallet_types) {
            let reply = ConnectedReply {
                ok: true,
                broker_type: payload.broker_type.clone(),
                scope: msg.scope,
                tokens: Vec::new(),
                access_tokens: Vec::new(),
                wallet: true,
            };
            return Ok(Applied::Stateless {
                reply: to_json(&reply),
            });
        }
        if let Err(invalid) = validate_accounts(payload, msg.delayed_auth.is_some()) {
            return Ok(Applied::Invalid(invalid));
        }
        let now = inbound.received_at;
        let at = lifecycle::event_time(inbound.timestamp, now);
        let stamp = rfc3339(now);
        let integrations = self.integrations();
        let mut change = self.store.change();
        let mut tokens = Vec::with_capacity(payload.account_tokens.len());
        let mut events = Vec::with_capacity(payload.account_tokens.len());
        for account in &payload.account_tokens {
            let input = ConnectInput {
                client_id: &msg.client_id,
                end_user_id: &msg.end_user_id,
                broker_type: &payload.broker_type,
                broker_name: payload.broker_name.as_deref().unwrap_or_default(),
                account_id: &account.account.account_id,
                account_name: account.account.account_name.as_deref().unwrap_or_default(),
                scope: msg.scope,
                expires_in_seconds: payload.expires_in_seconds,
                refresh_expires_in_seconds: payload.refresh_token_expires_in_seconds,
                has_refresh_token: account.refresh_token.is_some(),
                at,
            };
            let identity = Identity {
                client_id: input.client_id,
                end_user_id: input.end_user_id,
                broker_type: input.broker_type,
                scope: input.scope,
                account_id: input.account_id,
            };
            let existing = match self.store.token_of(&identity)? {
                Some(token_id) => match self.store.find(&token_id)? {
                    Found::Live { meta, .. } => Some((token_id, meta)),
                    Found::Revoked(_) | Found::Missing => None,
                },
                None => None,
            };
            let plan = lifecycle::connect(existing.as_ref().map(|(_, m)| m), &input, now);
            let (token_id, created, kind) = match (&plan, existing.as_ref()) {
                (ConnectPlan::Rotate(_), Some((id, _))) => {
                    (id.clone(), false, EventKind::TokenRotated)
                }
                _ => (new_token_id(), true, EventKind::TokenIssued),
            };
            let secrets = TokenSecrets {
                access_token: account.access_token.expose().to_owned(),
                refresh_token: account
                    .refresh_token
                    .as_ref()
                    .map(|r| r.expose().to_owned()),
            };
            let meta = plan.meta();
            change.put_token(&token_id, meta, existing.as_ref().map(|(_, m)| m), &secrets)?;
            let previous = match existing {
                Some(_) => self.store.refresh_record(&token_id)?,
                None => None,
            };
            refresh::pass::own(
                &mut change,
                &token_id,
                meta,
                previous.as_ref(),
                integrations.get(&meta.broker_type),
                at,
            )?;
            let mut event = token_event(kind, &stamp, &token_id, meta.state, meta);
            event.message_id = inbound.message_id.map(str::to_owned);
            events.push(event);
            tokens.push(IssuedToken {
                token_id,
                account_id: meta.account_id.clone(),
                created,
            });
        }
        let reply = ConnectedReply {
            ok: true,
            broker_type: payload.broker_type.clone(),
            scope: msg.scope,
            access_tokens: tokens
                .iter()
                .map(|t| SdkAccessToken::new(&t.token_id, &payload.broker_type))
                .collect(),
            tokens,
            wallet: false,
        };
        Ok(Applied::Change {
            change,
            reply: to_json(&reply),
            events,
        })
    }

    fn removed(&self, msg: &ConnectionRemoved, now: UnixMillis) -> Result<Applied<'_>, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("tokenId", &msg.token_id))
        {
            return Ok(Applied::Invalid(r.into()));
        }
        let found = self.store.find(&msg.token_id)?;
        let stamp = rfc3339(now);
        let mut change = self.store.change();
        let (reply, events) = match (lifecycle::revoke(found.lookup(), &msg.client_id), &found) {
            (
                Ok(RevokePlan::Revoke),
                Found::Live {
                    meta,
                    sealed,
                    wrapped,
                },
            ) => {
                change.revoke(&msg.token_id, meta, now)?;
                let revokes_upstream = self
                    .integrations()
                    .get(&meta.broker_type)
                    .is_some_and(|i| i.revoke_url.is_some());
                if revokes_upstream {
                    match self
                        .store
                        .open_secrets(&msg.token_id, meta, sealed, wrapped)
                    {
                        Ok(secrets) => {
                            change.start_upstream_job(&msg.token_id, meta, &secrets, now)?;
                        }
                        Err(error) if error.is_transient() => return Err(error),
                        Err(error) => tracing::error!(
                            token_id = msg.token_id,
                            error = &error as &dyn std::error::Error,
                            "revoked locally; its secrets do not open, so no upstream revocation"
                        ),
                    }
                }
                if let Some(record) = self.store.refresh_record(&msg.token_id)? {
                    change.drop_refresh(&msg.token_id, &record, None);
                }
                let event = token_event(
                    EventKind::TokenRevoked,
                    &stamp,
                    &msg.token_id,
                    TokenState::Revoked,
                    meta,
                );
                (
                    to_json(&RemovedReply {
                        ok: true,
                        revoked: true,
                    }),
                    vec![event],
                )
            }
            (Ok(_), _) => (
                to_json(&RemovedReply {
                    ok: true,
                    revoked: false,
                }),
                Vec::new(),
            ),
            (Err(rejection), _) => {
                let mut event = Event::new(EventKind::RequestRejected, stamp);
                event.token_id = Some(msg.token_id.clone());
                event.client_id = Some(msg.client_id.clone());
                event.code = Some(rejection.code);
                event.queue = Some(MessageKind::ConnectionRemoved.routing_key().to_owned());
                (
                    to_json(&ErrorReply::new(rejection.code, rejection.message)),
                    vec![event],
                )
            }
        };
        Ok(Applied::Change {
            change,
            reply,
            events,
        })
    }

    fn resolve(&self, msg: &TokenResolve, now: UnixMillis) -> Result<Outcome, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("tokenId", &msg.token_id))
        {
            return Ok(r.into());
        }
        let found = self.store.find(&msg.token_id)?;
        let mut verdict = lifecycle::resolve(found.lookup(), &msg.client_id, msg.operation, now);
        if let (Err(rejection), Found::Live { meta, .. }) = (&mut verdict, &found)
            && rejection.code == ErrorCode::ReauthRequired
            && refresh::rules::pending(
                meta,
                self.integrations().get(&meta.broker_type).is_some(),
                now,
            )
        {
            *rejection = Rejection {
                code: ErrorCode::RefreshPending,
                message: "the token is being refreshed at its provider; retry shortly".into(),
            };
        }
        match (verdict, found) {
            (
                Ok(()),
                Found::Live {
                    meta,
                    sealed,
                    wrapped,
                },
            ) => {
                let mut secrets =
                    self.store
                        .open_secrets(&msg.token_id, &meta, &sealed, &wrapped)?;
                let reply = ResolveReply {
                    ok: true,
                    token_id: msg.token_id.clone(),
                    broker_type: meta.broker_type.clone(),
                    account_id: meta.account_id.clone(),
                    scope: meta.scope,
                    access_token: mmt_shared::secret::Secret::new(std::mem::take(
                        &mut secrets.access_token,
                    )),
                    expires_at: meta.expires_at.map(rfc3339),
                };
                Ok(Outcome::Done {
                    reply: to_json(&reply),
                    events: Vec::new(),
                    applied: true,
                })
            }
            (result, found) => {
                let rejection = result.err().unwrap_or_else(|| Rejection {
                    code: ErrorCode::NotFound,
                    message: "no such tokenId for this client".into(),
                });
                let mut event = Event::new(EventKind::RequestRejected, rfc3339(now));
                event.token_id = Some(msg.token_id.clone());
                event.client_id = Some(msg.client_id.clone());
                event.operation = Some(msg.operation);
                event.code = Some(rejection.code);
                event.queue = Some(MessageKind::TokenResolve.routing_key().to_owned());
                if rejection.code != ErrorCode::NotFound {
                    match &found {
                        Found::Live { meta, .. } => {
                            event.broker_type = Some(meta.broker_type.clone());
                            event.scope = Some(meta.scope);
                            event.state = Some(lifecycle::effective_state(meta, now));
                        }
                        Found::Revoked(tomb) => {
                            event.broker_type = Some(tomb.broker_type.clone());
                            event.scope = Some(tomb.scope);
                            event.state = Some(TokenState::Revoked);
                        }
                        Found::Missing => {}
                    }
                }
                Ok(Outcome::Done {
                    reply: to_json(&ErrorReply::new(rejection.code, rejection.message)),
                    events: vec![event],
                    applied: true,
                })
            }
        }
    }

    fn link(&self, msg: &LinkAccessTokens) -> Result<Outcome, StoreError> {
        if let Err(r) = lifecycle::check_id("clientId", &msg.client_id)
            .and_then(|()| lifecycle::check_id("endUserId", &msg.end_user_id))
        {
            return Ok(r.into());
        }
        let access_tokens = self
            .store
            .tokens_of_user(&msg.client_id, &msg.end_user_id)?
            .into_iter()
            .filter(|(_, meta)| lifecycle::listed(meta, msg.scope))
            .map(|(token_id, meta)| SdkAccessToken::new(&token_id, &meta.broker_type))
            .collect();
        Ok(Outcome::Done {
            reply: to_json(&LinkReply {
                ok: true,
                access_tokens,
            }),
            events: Vec::new(),
            applied: true,
        })
    }
}

/// What a state-changing handler decided.
enum Applied<'a> {
    /// Bad input: nothing changes, nothing is recorded.
    Invalid(Outcome),
    /// Acknowledged with nothing stored (a wallet).
    Stateless { reply: Zeroizing<Vec<u8>> },
    /// Writes to commit with the processed-id record.
    Change {
        change: crate::store::Change<'a>,
        reply: Zeroizing<Vec<u8>>,
        events: Vec<Event>,
    },
}

/// Checks the accounts of a payload; a `delayed` one (from `delayedAuth`)
/// has one account, accountId `""` and no access token yet.
fn validate_accounts(payload: &IntegrationPayload, delayed: bool) -> Result<(), Outcome> {
    let accounts = &payload.account_tokens;
    if accounts.is_empty() {
        return Err(Outcome::invalid(
            ErrorCode::InvalidRequest,
            "accessToken.accountTokens is empty: nothing to store",
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(accounts.len());
    for (index, account) in accounts.iter().enumerate() {
        if !delayed {
            lifecycle::check_id("account.accountId", &account.account.account_id)
                .map_err(Outcome::from)?;
        }
        if let Some(first) = seen.insert(account.account.account_id.as_str(), index) {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                format!(
                    "an accountId is listed twice (accessToken.accountTokens[{first}] and [{index}])"
                ),
            ));
        }
        let refresh_len = account
            .refresh_token
            .as_ref()
            .map_or(0, |r| r.expose().len());
        if delayed && refresh_len == 0 {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                "delayedAuth.refreshToken is empty",
            ));
        }
        if !delayed && account.access_token.is_empty() {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                "an accessToken is empty",
            ));
        }
        if account.access_token.expose().len() > MAX_SECRET_BYTES || refresh_len > MAX_SECRET_BYTES
        {
            return Err(Outcome::invalid(
                ErrorCode::InvalidRequest,
                format!("a raw token is longer than {MAX_SECRET_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn token_event(
    kind: EventKind,
    at: &str,
    token_id: &str,
    state: TokenState,
    meta: &lifecycle::TokenMeta,
) -> Event {
    let mut event = Event::new(kind, at.to_owned());
    event.token_id = Some(token_id.to_owned());
    event.client_id = Some(meta.client_id.clone());
    event.broker_type = Some(meta.broker_type.clone());
    event.scope = Some(meta.scope);
    event.state = Some(state);
    event
}

/// A fresh opaque tokenId: `tok_` and 128 random bits in hex.
fn new_token_id() -> String {
    format!("tok_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason<T: crate::decode::Message>(body: &str) -> String {
        match decode::<T>(body.as_bytes()) {
            Err(Outcome::Invalid { reason, code }) => {
                assert_eq!(code, ErrorCode::InvalidMessage);
                reason
            }
            _ => panic!("expected bad input"),
        }
    }

    #[test]
    fn a_raw_token_with_a_quote_in_a_mistyped_field_never_reaches_the_reason() {
        let body = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":"raw\"SECRET-TAIL-XYZ"}}"#;
        let why = reason::<IntegrationConnected>(body);
        assert!(!why.contains("SECRET-TAIL-XYZ"), "{why}");
        assert!(
            why.starts_with(
                "invalid type at `accessToken.accountTokens`: expected an array, found a string"
            ),
            "{why}"
        );
        let misplaced = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":[{"account":"raw-secret-1","accessToken":"t"}]}}"#;
        let why = reason::<IntegrationConnected>(misplaced);
        assert!(!why.contains("raw-secret-1"), "{why}");
        assert!(
            why.contains("at `accessToken.accountTokens[0].account`: expected an object"),
            "{why}"
        );
    }

    #[test]
    fn a_raw_token_sent_as_a_number_never_reaches_the_reason() {
        let body = r#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{"brokerType":"x","accountTokens":[{"account":{"accountId":"c"},"accessToken":98765432123456789}]}}"#;
        let why = reason::<IntegrationConnected>(body);
        assert!(!why.contains("98765432123456789"), "{why}");
        assert!(
            why.contains(
                "at `accessToken.accountTokens[0].accessToken`: expected a string, found a number"
            ),
            "{why}"
        );
    }

    #[test]
    fn an_unknown_scope_or_operation_is_named_without_its_value() {
        let body = r#"{"clientId":"a","endUserId":"u","scope":"raw-secret-2","accessToken":{"brokerType":"x"}}"#;
        let why = reason::<IntegrationConnected>(body);
        assert!(!why.contains("raw-secret-2"), "{why}");
        assert!(
            why.contains("unknown variant at `scope`: expected `read` or `write`"),
            "{why}"
        );
    }

    #[test]
    fn an_operation_or_scope_of_the_wrong_json_kind_names_the_field_not_a_json_error() {
        for value in ["7", "true", "null", r#"["read"]"#] {
            let why = reason::<TokenResolve>(&format!(
                r#"{{"clientId":"a","tokenId":"t","operation":{value}}}"#
            ));
            assert!(
                why.starts_with("invalid type at `operation`: expected `read` or `write`, found "),
                "{value}: {why}"
            );
            let why = reason::<IntegrationConnected>(&format!(
                r#"{{"clientId":"a","endUserId":"u","scope":{value},"accessToken":{{"brokerType":"x"}}}}"#
            ));
            assert!(
                why.starts_with("invalid type at `scope`: expected `read` or `write`, found "),
                "{value}: {why}"
            );
        }
        for value in ["7", "true", r#"["read"]"#] {
            let why = reason::<LinkAccessTokens>(&format!(
                r#"{{"clientId":"a","endUserId":"u","scope":{value}}}"#
            ));
            assert!(
                why.starts_with(
                    "invalid type at `scope`: expected `read` or `write` or null, found "
                ),
                "{value}: {why}"
            );
        }
    }

    #[test]
    fn non_object_bodies_are_refused() {
        assert!(matches!(
            decode::<LinkAccessTokens>(br#"["acme","user-42"]"#),
            Err(Outcome::Invalid { .. })
        ));
    }

    #[test]
    fn derived_ids_depend_on_routing_key_and_body() {
        let a = message_key(MessageKind::IntegrationConnected, None, b"{}");
        assert_eq!(
            a,
            message_key(MessageKind::IntegrationConnected, None, b"{}")
        );
        assert_ne!(a, message_key(MessageKind::ConnectionRemoved, None, b"{}"));
        assert_ne!(
            a,
            message_key(MessageKind::IntegrationConnected, None, b"{ }")
        );
        assert_eq!(
            message_key(MessageKind::IntegrationConnected, Some("m1"), b"{}"),
            "m1"
        );
    }
}
