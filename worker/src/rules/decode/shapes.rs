//! The shapes of the four inbound messages, as far as a bad-input reason
//! needs to know them (they mirror the types in `mmt_shared::wire`; the
//! tests check that they agree).

use mmt_shared::wire::{ConnectionRemoved, IntegrationConnected, LinkAccessTokens, TokenResolve};
use serde::de::DeserializeOwned;

use super::Claim;

/// What a value must look like, as far as a reason needs to say.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// A JSON string.
    Text,
    /// A string among these.
    Choice(&'static [&'static str]),
    /// A non-negative integer.
    Count,
    /// An object with these fields (others are ignored).
    Object(&'static [Field]),
    /// An array of this.
    List(&'static Shape),
    /// `null`, or this.
    Nullable(&'static Shape),
}

/// One field of an object.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    /// Its name, then its aliases.
    pub(crate) names: &'static [&'static str],
    pub(crate) shape: Shape,
    pub(crate) required: bool,
}

const fn required(names: &'static [&'static str], shape: Shape) -> Field {
    Field {
        names,
        shape,
        required: true,
    }
}

const fn optional(names: &'static [&'static str], shape: Shape) -> Field {
    Field {
        names,
        shape,
        required: false,
    }
}

const SCOPE: Shape = Shape::Choice(&["read", "write"]);
const OPTIONAL_TEXT: Shape = Shape::Nullable(&Shape::Text);
const OPTIONAL_COUNT: Shape = Shape::Nullable(&Shape::Count);

const ACCOUNT: Shape = Shape::Object(&[
    required(&["accountId"], Shape::Text),
    optional(&["accountName"], OPTIONAL_TEXT),
]);

const ACCOUNT_TOKEN: Shape = Shape::Object(&[
    required(&["account"], ACCOUNT),
    required(&["accessToken"], Shape::Text),
    optional(&["refreshToken"], OPTIONAL_TEXT),
]);

const PAYLOAD: Shape = Shape::Object(&[
    required(&["brokerType"], Shape::Text),
    optional(&["brokerName"], OPTIONAL_TEXT),
    optional(&["accountTokens"], Shape::List(&ACCOUNT_TOKEN)),
    optional(&["expiresInSeconds"], OPTIONAL_COUNT),
    optional(&["refreshTokenExpiresInSeconds"], OPTIONAL_COUNT),
]);

const DELAYED: Shape = Shape::Object(&[
    required(&["brokerType"], Shape::Text),
    optional(&["brokerName"], OPTIONAL_TEXT),
    required(&["refreshToken"], Shape::Text),
    optional(&["refreshTokenExpiresInSeconds"], OPTIONAL_COUNT),
]);

const CONNECTED: Shape = Shape::Object(&[
    required(&["clientId"], Shape::Text),
    required(&["endUserId"], Shape::Text),
    required(&["scope"], SCOPE),
    optional(&["accessToken"], PAYLOAD),
    optional(&["delayedAuth"], DELAYED),
]);

const REMOVED: Shape = Shape::Object(&[
    required(&["clientId"], Shape::Text),
    required(&["tokenId", "authToken"], Shape::Text),
]);

const RESOLVE: Shape = Shape::Object(&[
    required(&["clientId"], Shape::Text),
    required(&["tokenId", "authToken"], Shape::Text),
    required(&["operation"], Shape::Choice(&["read", "write"])),
]);

const LINK: Shape = Shape::Object(&[
    required(&["clientId"], Shape::Text),
    required(&["endUserId"], Shape::Text),
    optional(&["scope"], Shape::Nullable(&SCOPE)),
]);

/// An inbound message and its shape (which mirrors its type in
/// `mmt_shared::wire`; the tests check that they agree).
pub(crate) trait Message: DeserializeOwned {
    /// What its body looks like.
    const SHAPE: Shape;
    /// What it claims (CONTRACT.md §10).
    fn claim(&self) -> Claim;
}

impl Message for IntegrationConnected {
    const SHAPE: Shape = CONNECTED;
    fn claim(&self) -> Claim {
        Claim::client(&self.client_id)
    }
}

impl Message for ConnectionRemoved {
    const SHAPE: Shape = REMOVED;
    fn claim(&self) -> Claim {
        Claim::client(&self.client_id)
    }
}

impl Message for TokenResolve {
    const SHAPE: Shape = RESOLVE;
    fn claim(&self) -> Claim {
        Claim {
            operation: Some(self.operation),
            ..Claim::client(&self.client_id)
        }
    }
}

impl Message for LinkAccessTokens {
    const SHAPE: Shape = LINK;
    fn claim(&self) -> Claim {
        Claim::client(&self.client_id)
    }
}

impl Claim {
    fn client(client_id: &str) -> Self {
        Self {
            client_id: Some(client_id.to_owned()),
            operation: None,
        }
    }
}
