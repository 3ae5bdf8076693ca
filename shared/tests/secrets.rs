//! Proof that no wire type prints a raw token: at compile time, none of the
//! types that hold one implements `Display` and [`Secret`] wipes itself on
//! drop; at run time, the `Debug` of every message and reply built with a
//! known token never shows it, while the wire JSON still carries it, byte
//! for byte as a plain string would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Display;

use mmt_shared::secret::Secret;
use mmt_shared::wire::{
    AccountToken, DelayedAuthPayload, IntegrationConnected, IntegrationPayload, ResolveReply, Scope,
};
use proptest::prelude::*;
use static_assertions::{assert_impl_all, assert_not_impl_any};
use zeroize::ZeroizeOnDrop;

assert_impl_all!(Secret: ZeroizeOnDrop);
assert_not_impl_any!(Secret: Display);
assert_not_impl_any!(IntegrationConnected: Display);
assert_not_impl_any!(IntegrationPayload: Display);
assert_not_impl_any!(AccountToken: Display);
assert_not_impl_any!(DelayedAuthPayload: Display);
assert_not_impl_any!(ResolveReply: Display);

const ACCESS: &str = "S3CRET-access-9f8e7d";
const REFRESH: &str = "S3CRET-refresh-6c5b4a";

fn assert_hidden(printed: &str) {
    for secret in [ACCESS, REFRESH, "S3CRET"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[test]
fn no_inbound_message_prints_its_raw_tokens() {
    let body = format!(
        r#"{{"clientId":"acme","endUserId":"u1","scope":"read","accessToken":{{
            "brokerType":"coinbase","accountTokens":[
              {{"account":{{"accountId":"cb-1"}},"accessToken":"{ACCESS}","refreshToken":"{REFRESH}"}}]}}}}"#
    );
    let msg: IntegrationConnected = serde_json::from_str(&body).expect("valid");
    assert_hidden(&format!("{msg:?}"));
    assert_hidden(&format!("{msg:#?}"));
    let payload = msg.access_token.as_ref().expect("a payload");
    assert_hidden(&format!("{payload:?}"));
    let account = &payload.account_tokens.as_ref().expect("accounts")[0];
    assert_hidden(&format!("{account:?}"));
    // The values are all there, for the one who may read them.
    assert_eq!(account.access_token.expose(), ACCESS);
    assert_eq!(
        account.refresh_token.as_ref().map(Secret::expose),
        Some(REFRESH)
    );

    let body = format!(
        r#"{{"clientId":"acme","endUserId":"u1","scope":"read",
            "delayedAuth":{{"brokerType":"x","refreshToken":"{REFRESH}"}}}}"#
    );
    let msg: IntegrationConnected = serde_json::from_str(&body).expect("valid");
    assert_hidden(&format!("{msg:?}"));
    let delayed = msg.delayed_auth.as_ref().expect("delayed");
    assert_hidden(&format!("{delayed:?}"));
    assert_hidden(&format!("{:?}", delayed.as_payload()));
    assert_eq!(delayed.refresh_token.expose(), REFRESH);
}

#[test]
fn the_resolve_reply_prints_no_token_and_carries_it_on_the_wire_unchanged() {
    let reply = ResolveReply {
        ok: true,
        token_id: "tok_1".into(),
        broker_type: "coinbase".into(),
        account_id: "cb-1".into(),
        scope: Scope::Read,
        access_token: Secret::new(ACCESS.into()),
        expires_at: None,
    };
    assert_hidden(&format!("{reply:?}"));
    assert_eq!(
        serde_json::to_string(&reply).expect("serializes"),
        format!(
            r#"{{"ok":true,"tokenId":"tok_1","brokerType":"coinbase","accountId":"cb-1","scope":"read","accessToken":"{ACCESS}","expiresAt":null}}"#
        )
    );
}

proptest! {
    /// Any string, escapes and all: a [`Secret`] is the same JSON as the
    /// plain string, both ways, and its `Debug` never shows it.
    #[test]
    fn a_secret_is_on_the_wire_exactly_as_its_string(value in any::<String>()) {
        let secret = Secret::new(value.clone());
        let wire = serde_json::to_string(&secret)?;
        prop_assert_eq!(&wire, &serde_json::to_string(&value)?);
        let back: Secret = serde_json::from_str(&wire)?;
        prop_assert_eq!(back.expose(), value.as_str());
        prop_assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
