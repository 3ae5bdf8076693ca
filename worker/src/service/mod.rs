//! What each message does: parse, ask the identity gate, validate, apply the
//! lifecycle rules to the store, and say what to reply and which events to
//! publish. No AMQP here:
//! the consumers feed it bytes and carry out its [`Outcome`].

use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::UnixMillis;
use mmt_shared::wire::{
    ConnectionRemoved, ErrorCode, ErrorReply, IntegrationConnected, LinkAccessTokens, MessageKind,
    TokenResolve, TokenState,
};
use serde::Serialize;
use zeroize::Zeroizing;

use std::sync::{Arc, RwLock};

use crate::config::integrations::Integration;
use crate::config::integrations::Integrations;
use crate::rules;
use crate::rules::audit::Event as AuditEvent;
use crate::rules::decode::{self, Message};
use crate::rules::identity::Gate;
use crate::rules::lifecycle::{self, Rejection, TokenMeta};
use crate::store::{Change, Decision, Group, RefreshRecord, Store, StoreError, Tx};

mod connected;
mod link;
#[cfg(test)]
mod missing_fields;
mod refusal;
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
        /// The clientId the body claimed, when it could be read (for the
        /// dead letter's record, never for the reply).
        client_id: Option<String>,
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
            client_id: None,
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
    ///
    /// The body is parsed once; the identity gate reads the claim from that
    /// parse and refuses before anything is decided or read, and before the
    /// validator's reason is told (CONTRACT.md §10).
    pub fn handle(&self, inbound: &Inbound<'_>) -> Result<Outcome, StoreError> {
        self.store.group(|group| self.handle_in(group, inbound))
    }

    /// Handles a batch of deliveries as [`Service::handle`] does each, with
    /// their changes committed as one (group commit, see
    /// [`Store::group`]): every outcome is durable once this returns.
    pub fn handle_batch(&self, batch: &[Inbound<'_>]) -> Vec<Result<Outcome, StoreError>> {
        self.store.group(|group| {
            batch
                .iter()
                .map(|inbound| self.handle_in(group, inbound))
                .collect()
        })
    }

    /// Handles one delivery with its writes in `group`.
    fn handle_in(
        &self,
        group: &mut Group<'_>,
        inbound: &Inbound<'_>,
    ) -> Result<Outcome, StoreError> {
        let now = inbound.received_at;
        let mut outcome = match inbound.kind {
            MessageKind::IntegrationConnected => {
                self.gated(inbound, |msg: &IntegrationConnected| {
                    self.mutate(group, inbound, |s, tx| s.connected(tx, msg, inbound))
                })?
            }
            MessageKind::ConnectionRemoved => self.gated(inbound, |msg: &ConnectionRemoved| {
                self.mutate(group, inbound, |s, tx| s.removed(tx, msg, now))
            })?,
            MessageKind::TokenResolve => {
                self.gated(inbound, |msg: &TokenResolve| self.resolve(msg, now))?
            }
            MessageKind::LinkAccessTokens => {
                self.gated(inbound, |msg: &LinkAccessTokens| self.link(msg))?
            }
        };
        if let Outcome::Done { events, .. } = &mut outcome {
            for event in events {
                event.broker_user = inbound.user_id.map(str::to_owned);
            }
        }
        if let Some(refusal) = refusal_audit(inbound, &outcome) {
            // A refusal changes nothing but the audit log, and is not
            // answered before its line is durable.
            group.write(|tx| {
                tx.audit(refusal.clone(), None)?;
                Ok(Decision::Commit(()))
            })?;
        }
        Ok(outcome)
    }

    /// Parses the body as a `T`, asks the identity gate, then validates and
    /// runs `serve`.
    fn gated<T: Message>(
        &self,
        inbound: &Inbound<'_>,
        serve: impl FnOnce(&T) -> Result<Outcome, StoreError>,
    ) -> Result<Outcome, StoreError> {
        let parsed = decode::parse::<T>(inbound.body);
        if let Some(refused) = refusal::check(&self.identity.current(), inbound, &parsed.claim) {
            return Ok(refused);
        }
        let mut outcome = match parsed.message {
            Ok(msg) => serve(&msg)?,
            Err(reason) => Outcome::invalid(ErrorCode::InvalidMessage, reason),
        };
        if let Outcome::Invalid { client_id, .. } = &mut outcome {
            *client_id = parsed.claim.client_id.filter(|c| !c.is_empty());
        }
        Ok(outcome)
    }

    /// Runs a state-changing handler in one store write, once per message
    /// id: a repeated id gets its original reply and changes nothing. The
    /// processed-id record commits with the change it answers.
    fn mutate(
        &self,
        group: &mut Group<'_>,
        inbound: &Inbound<'_>,
        apply: impl Fn(&Self, &mut Tx<'_>) -> Result<Applied, StoreError>,
    ) -> Result<Outcome, StoreError> {
        let key = message_key(inbound.kind, inbound.message_id, inbound.body);
        group.write(|tx| {
            if let Some(reply) = tx.processed(inbound.kind, &key)? {
                return Ok(Decision::Discard(Outcome::Done {
                    reply: Zeroizing::new(reply),
                    events: Vec::new(),
                    applied: false,
                }));
            }
            Ok(match apply(self, tx)? {
                Applied::Invalid(outcome) => Decision::Discard(outcome),
                Applied::Stateless { reply } => Decision::Discard(Outcome::Done {
                    reply,
                    events: Vec::new(),
                    applied: true,
                }),
                Applied::Change { reply, events } => {
                    for event in &events {
                        tx.audit(change_audit(inbound, event), event.token_id.as_deref())?;
                    }
                    tx.record_processed(inbound.kind, &key, &reply)?;
                    Decision::Commit(Outcome::Done {
                        reply,
                        events,
                        applied: true,
                    })
                }
            })
        })
    }
}

/// The audit line of a change a message made (CONTRACT.md §12).
fn change_audit(inbound: &Inbound<'_>, event: &Event) -> AuditEvent {
    AuditEvent {
        kind: inbound.kind.routing_key().to_owned(),
        client_id: event.client_id.clone(),
        token_id: None,
        broker_type: event.broker_type.clone(),
        scope: event.scope.map(|s| s.as_str().to_owned()),
        outcome: event.kind.routing_key().to_owned(),
        message_id: inbound.message_id.map(str::to_owned),
        broker_user: inbound.user_id.map(str::to_owned),
    }
}

/// The audit line of a message refused or rejected as bad input, if it
/// was.
fn refusal_audit(inbound: &Inbound<'_>, outcome: &Outcome) -> Option<AuditEvent> {
    let (code, client_id) = match outcome {
        Outcome::Done { .. } => return None,
        Outcome::Invalid {
            code, client_id, ..
        } => (*code, client_id.clone()),
        Outcome::Refused { code, event, .. } => (*code, event.client_id.clone()),
    };
    Some(AuditEvent {
        kind: inbound.kind.routing_key().to_owned(),
        client_id,
        outcome: code.as_str().to_owned(),
        message_id: inbound.message_id.map(str::to_owned),
        broker_user: inbound.user_id.map(str::to_owned),
        ..AuditEvent::default()
    })
}

/// What a state-changing handler decided.
enum Applied {
    /// Bad input: nothing changes, nothing is recorded.
    Invalid(Outcome),
    /// Acknowledged with nothing stored (a wallet).
    Stateless { reply: Zeroizing<Vec<u8>> },
    /// Writes made in the store write, to commit with the processed-id
    /// record.
    Change {
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

/// At connect (mint or reconnection): the engine owns the token when it is
/// refreshable, with a fresh record; otherwise a record left from before
/// goes. (The bench's direct load calls it as a connect would.)
pub fn own_refresh(
    change: &mut Change<'_>,
    token_id: &str,
    meta: &TokenMeta,
    previous: Option<&RefreshRecord>,
    integration: Option<&Integration>,
    issued_at: UnixMillis,
) -> Result<(), StoreError> {
    let next = integration
        .filter(|_| rules::refresh::refreshable(meta, true))
        .and_then(|i| {
            rules::refresh::schedule(meta, i.refresh_ahead, issued_at, rand::random::<f64>())
        });
    match (next, previous) {
        (Some(next), previous) => change.put_refresh(token_id, previous, &next, meta.expires_at),
        (None, Some(previous)) => {
            change.drop_refresh(token_id, previous, None);
            Ok(())
        }
        (None, None) => Ok(()),
    }
}
