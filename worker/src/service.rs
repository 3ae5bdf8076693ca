//! What each message does: decode, validate, apply the lifecycle rules to the
//! store, and say what to reply and which events to publish. No AMQP here:
//! the consumers feed it bytes and carry out its [`Outcome`].

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{
    ConnectionRemoved, ErrorCode, ErrorReply, IntegrationConnected, LinkAccessTokens,
    MAX_BODY_BYTES, MessageKind, TokenResolve, TokenState,
};
use serde::Serialize;
use zeroize::Zeroizing;

use std::sync::{Arc, RwLock};

use crate::identity::Gate;
use crate::integrations::Integrations;
use crate::lifecycle::{self, Rejection};
use crate::store::{Store, StoreError};

mod connected;
mod link;
mod removed;
mod resolve;
#[cfg(test)]
mod tests;

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
