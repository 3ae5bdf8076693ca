//! Who may act for which client (CONTRACT.md §10): the pure check of a
//! delivery's broker user (its `user_id` property, which RabbitMQ verifies
//! against the connection's login) against the client its body claims. No
//! I/O here: the clients file is read by [`crate::clients_file`], the
//! service asks [`Gate::check`] before it decides or reads anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use mmt_shared::console::IdentityMode;
use mmt_shared::events::{Event, EventKind};
use mmt_shared::time_fmt::rfc3339;
use mmt_shared::wire::{ErrorCode, MAX_BODY_BYTES, MessageKind, Operation};
use serde::Deserialize;

use crate::service::{Inbound, Outcome};

/// The reply's message when the publisher gave no `user_id`.
pub const NO_USER_ID: &str = "the message has no user_id property: this worker serves only publishers that name their broker user";

/// The reply's message when the broker user may not act for the client.
/// The same for an unknown user and for a user of another client, so that
/// nobody learns which clients exist; it never depends on a tokenId.
pub const NOT_THIS_CLIENT: &str = "this broker user may not act for the clientId it names";

/// The clients file, validated: per clientId, the broker users that may act
/// for it, and its webhook.
#[derive(Default)]
pub struct Clients {
    clients: BTreeMap<String, Client>,
    users: BTreeSet<String>,
}

/// One client of the clients file.
pub struct Client {
    /// The broker users that may act for it.
    pub broker_users: BTreeSet<String>,
    /// Where its lifecycle events are posted (CONTRACT.md §12).
    pub webhook: Option<Webhook>,
}

/// A client's webhook (CONTRACT.md §12). Not `Debug`: its URL may carry a
/// query the operator considers private.
pub struct Webhook {
    /// The endpoint (`https://`, or `http://` to a loopback host).
    pub url: url::Url,
    /// Where the signing secret is read from.
    pub secret: WebhookSecret,
}

/// Where a webhook's signing secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookSecret {
    /// An environment variable's name.
    Env(String),
    /// A file's path.
    File(PathBuf),
}

/// Client ids and broker users only: a webhook's URL is not printed.
impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.clients.iter().map(|(id, c)| (id, &c.broker_users)))
            .finish()
    }
}

impl Clients {
    /// Clients from `(clientId, client)` pairs.
    pub fn new(clients: impl IntoIterator<Item = (String, Client)>) -> Self {
        let clients: BTreeMap<String, Client> = clients.into_iter().collect();
        let users = clients
            .values()
            .flat_map(|c| c.broker_users.iter().cloned())
            .collect();
        Self { clients, users }
    }

    /// The client `client_id`, if the file names it.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.clients.get(client_id)
    }

    /// Every client, by clientId.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.clients.iter().map(|(id, c)| (id.as_str(), c))
    }

    /// How many clients the file names.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the file names no client.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// How claims are checked.
pub enum Mode {
    /// No clients file: the claimed clientId is trusted.
    Open,
    /// A clients file: the broker user must belong to the claimed client.
    Strict(Clients),
}

/// Why a message is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// No `user_id` property (or an empty one).
    NoUserId,
    /// The broker user is not one of the claimed client's.
    NotThisClient,
}

impl Forbidden {
    /// The reply's message.
    pub fn message(self) -> &'static str {
        match self {
            Forbidden::NoUserId => NO_USER_ID,
            Forbidden::NotThisClient => NOT_THIS_CLIENT,
        }
    }
}

impl Mode {
    /// The mode's name in `worker.stats`.
    pub fn name(&self) -> IdentityMode {
        match self {
            Mode::Open => IdentityMode::Open,
            Mode::Strict(_) => IdentityMode::Strict,
        }
    }

    /// Whether `user_id` may act for `claimed` (the body's clientId, `None`
    /// when the body names none or cannot be read: the body is then refused
    /// as bad input, but only for a user the file knows).
    pub fn check(&self, user_id: Option<&str>, claimed: Option<&str>) -> Result<(), Forbidden> {
        let Mode::Strict(clients) = self else {
            return Ok(());
        };
        let user = user_id
            .filter(|u| !u.is_empty())
            .ok_or(Forbidden::NoUserId)?;
        let allowed = match claimed {
            Some(client) => clients
                .get(client)
                .is_some_and(|c| c.broker_users.contains(user)),
            None => clients.users.contains(user),
        };
        if allowed {
            Ok(())
        } else {
            Err(Forbidden::NotThisClient)
        }
    }
}

/// The clientId a body claims, read without deciding anything else; `None`
/// when the body is too large, is not a JSON object or has no string
/// `clientId`.
pub fn claimed_client(body: &[u8]) -> Option<String> {
    claim(body).and_then(|c| c.client_id)
}

/// The operation a refused `token.resolve` asked for, when it names a known
/// one (for its `request.rejected` event).
fn claimed_operation(body: &[u8]) -> Option<Operation> {
    claim(body)
        .and_then(|c| c.operation)
        .and_then(|op| serde_json::from_value(op).ok())
}

#[derive(Deserialize)]
struct Claim {
    #[serde(rename = "clientId", default)]
    client_id: Option<String>,
    #[serde(default)]
    operation: Option<serde_json::Value>,
}

fn claim(body: &[u8]) -> Option<Claim> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if body.len() > MAX_BODY_BYTES || first != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Claim>(body).ok()
}

/// The current mode, shared by every consumer and replaced on SIGHUP.
#[derive(Clone)]
pub struct Gate(Arc<RwLock<Arc<Mode>>>);

impl Default for Gate {
    fn default() -> Self {
        Self::new(Mode::Open)
    }
}

impl Gate {
    /// A gate in `mode`.
    pub fn new(mode: Mode) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(mode))))
    }

    /// The mode in force now.
    pub fn current(&self) -> Arc<Mode> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `mode` in force for every message checked from now on.
    pub fn replace(&self, mode: Mode) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(mode);
    }

    /// `None` when `inbound` may be served; else the `forbidden` outcome:
    /// decided from the delivery alone, before the store is read, so it is
    /// the same whether or not the token it names exists.
    pub fn check(&self, inbound: &Inbound<'_>) -> Option<Outcome> {
        let mode = self.current();
        if matches!(*mode, Mode::Open) {
            return None;
        }
        // An empty clientId names no client: bad input, refused as such for
        // a user the file knows.
        let claimed = claimed_client(inbound.body).filter(|c| !c.is_empty());
        let why = mode.check(inbound.user_id, claimed.as_deref()).err()?;
        Some(refusal(inbound, claimed, why))
    }
}

/// The `forbidden` outcome of CONTRACT.md §10: the error reply, a
/// `request.rejected` event, and for a state-changing message a dead letter
/// (nothing is lost: it can be replayed once the file is fixed).
fn refusal(inbound: &Inbound<'_>, claimed: Option<String>, why: Forbidden) -> Outcome {
    let mut event = Event::new(EventKind::RequestRejected, rfc3339(inbound.received_at));
    event.client_id = claimed;
    event.code = Some(ErrorCode::Forbidden);
    event.queue = Some(inbound.kind.routing_key().to_owned());
    event.message_id = inbound.message_id.map(str::to_owned);
    event.broker_user = inbound.user_id.map(str::to_owned);
    if inbound.kind == MessageKind::TokenResolve {
        event.operation = claimed_operation(inbound.body);
    }
    Outcome::Refused {
        code: ErrorCode::Forbidden,
        reason: why.message().to_owned(),
        event: Box::new(event),
        dead_letter: inbound.kind.mutates(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Mode {
        let client = |users: &[&str]| Client {
            broker_users: users.iter().map(|u| (*u).to_owned()).collect(),
            webhook: None,
        };
        Mode::Strict(Clients::new([
            ("acme".to_owned(), client(&["acme-backend", "acme-gateway"])),
            ("globex".to_owned(), client(&["globex-app"])),
        ]))
    }

    #[test]
    fn open_mode_trusts_the_claim() {
        assert_eq!(Mode::Open.check(None, Some("acme")), Ok(()));
        assert_eq!(Mode::Open.name(), IdentityMode::Open);
    }

    #[test]
    fn a_user_of_the_claimed_client_is_served() {
        assert_eq!(strict().check(Some("acme-gateway"), Some("acme")), Ok(()));
        assert_eq!(strict().name(), IdentityMode::Strict);
    }

    #[test]
    fn no_user_id_is_forbidden() {
        assert_eq!(strict().check(None, Some("acme")), Err(Forbidden::NoUserId));
        assert_eq!(
            strict().check(Some(""), Some("acme")),
            Err(Forbidden::NoUserId)
        );
    }

    #[test]
    fn a_user_of_another_client_is_forbidden() {
        assert_eq!(
            strict().check(Some("globex-app"), Some("acme")),
            Err(Forbidden::NotThisClient)
        );
    }

    #[test]
    fn an_unknown_user_or_client_is_forbidden_alike() {
        assert_eq!(
            strict().check(Some("guest"), Some("acme")),
            Err(Forbidden::NotThisClient)
        );
        assert_eq!(
            strict().check(Some("acme-backend"), Some("initech")),
            Err(Forbidden::NotThisClient)
        );
        assert_eq!(
            strict().check(Some("guest"), None),
            Err(Forbidden::NotThisClient)
        );
    }

    #[test]
    fn a_known_user_with_an_unreadable_body_goes_on_to_be_refused_as_bad_input() {
        assert_eq!(strict().check(Some("acme-backend"), None), Ok(()));
    }

    #[test]
    fn the_claim_is_the_bodys_string_client_id() {
        assert_eq!(
            claimed_client(br#"{"tokenId":"t","clientId":"acme"}"#).as_deref(),
            Some("acme")
        );
        assert_eq!(claimed_client(br#"{"clientId":7}"#), None);
        assert_eq!(
            claimed_client(br#"{"clientId":"acme","operation":"delete"}"#).as_deref(),
            Some("acme"),
            "an unknown operation does not hide the claim"
        );
        assert_eq!(
            claimed_operation(br#"{"clientId":"acme","operation":"write"}"#),
            Some(Operation::Write)
        );
        assert_eq!(claimed_operation(br#"{"operation":"delete"}"#), None);
        assert_eq!(claimed_client(b"not json"), None);
        assert_eq!(claimed_client(br#"["acme"]"#), None);
        assert_eq!(claimed_client(br#"{"clientId":"a","clientId":"b"}"#), None);
    }

    fn inbound<'a>(kind: MessageKind, body: &'a [u8], user: Option<&'a str>) -> Inbound<'a> {
        Inbound {
            kind,
            body,
            message_id: Some("m-1"),
            timestamp: None,
            received_at: 0,
            user_id: user,
        }
    }

    #[test]
    fn forbidden_is_the_same_whatever_token_is_named() {
        let gate = Gate::new(strict());
        let reply = |token: &str| {
            let body = format!(r#"{{"clientId":"acme","tokenId":"{token}","operation":"read"}}"#);
            match gate.check(&inbound(
                MessageKind::TokenResolve,
                body.as_bytes(),
                Some("globex-app"),
            )) {
                Some(Outcome::Refused {
                    code,
                    reason,
                    event,
                    dead_letter,
                }) => {
                    assert!(!dead_letter, "a read is not dead-lettered");
                    assert_eq!(event.token_id, None);
                    assert_eq!(event.broker_user.as_deref(), Some("globex-app"));
                    Outcome::error_reply(code, &reason)
                }
                _ => panic!("expected forbidden"),
            }
        };
        assert_eq!(reply("tok_existing"), reply("tok_never_minted"));
    }

    #[test]
    fn a_refused_state_change_is_dead_lettered() {
        let gate = Gate::new(strict());
        let body = br#"{"clientId":"acme","tokenId":"t"}"#;
        assert!(matches!(
            gate.check(&inbound(MessageKind::ConnectionRemoved, body, None)),
            Some(Outcome::Refused {
                dead_letter: true,
                ..
            })
        ));
    }

    #[test]
    fn an_empty_client_id_is_left_to_validation_for_a_known_user() {
        let gate = Gate::new(strict());
        let body = br#"{"clientId":"","tokenId":"t","operation":"read"}"#;
        let known = inbound(MessageKind::TokenResolve, body, Some("acme-backend"));
        assert!(gate.check(&known).is_none());
        let unknown = inbound(MessageKind::TokenResolve, body, Some("guest"));
        assert!(gate.check(&unknown).is_some());
    }

    #[test]
    fn a_replaced_mode_applies_to_the_next_check() {
        let gate = Gate::default();
        let body = br#"{"clientId":"acme","endUserId":"u"}"#;
        let msg = inbound(MessageKind::LinkAccessTokens, body, None);
        assert!(gate.check(&msg).is_none());
        gate.replace(strict());
        assert!(gate.check(&msg).is_some());
    }
}
