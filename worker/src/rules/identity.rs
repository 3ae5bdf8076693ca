//! Who may act for which client (CONTRACT.md §10): the pure check of a
//! delivery's broker user (its `user_id` property, which RabbitMQ verifies
//! against the connection's login) against the client its body claims
//! ([`Mode::check`]). No I/O here: the clients file is read by
//! `config::clients_file`, the claim by `rules::decode`, and the service
//! asks before it decides or reads anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use mmt_shared::console::IdentityMode;

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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Strict mode with two clients: acme (`acme-backend`, `acme-gateway`)
    /// and globex (`globex-app`).
    pub(crate) fn strict() -> Mode {
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
}
