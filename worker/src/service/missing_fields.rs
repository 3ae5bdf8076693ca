//! Unit tests of CONTRACT.md §6 through [`Service::handle`] on a real
//! store: a message missing a required field is `invalid_message`, whoever
//! finds the field missing (the decoder, or the service for the fields whose
//! need depends on the rest of the message), and nothing is stored for it.

use mmt_shared::time_fmt::now_millis;
use mmt_shared::wire::{ErrorCode, MessageKind};
use serde_json::{Value, json};

use super::{Inbound, Outcome, Service, message_key};
use crate::store::Store;
use crate::store::crypto::KeyRing;

/// A service over a fresh embedded store in `dir`.
fn service(dir: &std::path::Path) -> Service {
    let store = Store::open(dir, KeyRing::generate().expect("random key")).expect("opens");
    Service::new(store, Vec::new())
}

/// What a delivery came to, in a form tests compare.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Answered `{"ok": true, ...}`.
    Ok(Value),
    /// Answered `{"ok": false, ...}` without a dead letter.
    Refusal(String),
    /// Bad input: dead-lettered with this code and reason.
    Invalid(ErrorCode, String),
}

fn handle(service: &Service, kind: MessageKind, body: &Value, id: &str) -> Seen {
    let body = body.to_string();
    let outcome = service
        .handle(&Inbound {
            kind,
            body: body.as_bytes(),
            message_id: Some(id),
            timestamp: None,
            received_at: now_millis(),
            user_id: None,
        })
        .expect("no store failure");
    match outcome {
        Outcome::Done { reply, .. } => {
            let reply: Value = serde_json::from_slice(&reply).expect("a JSON reply");
            if reply["ok"] == true {
                Seen::Ok(reply)
            } else {
                Seen::Refusal(reply["error"]["code"].as_str().unwrap_or("").to_owned())
            }
        }
        Outcome::Invalid { code, reason, .. } => Seen::Invalid(code, reason),
        Outcome::Refused { .. } => panic!("open mode refuses nothing"),
    }
}

/// Asserts `body` on `kind` is dead-lettered `invalid_message` with
/// `reason`, and that nothing was stored: no token, no processed id.
fn assert_missing(kind: MessageKind, body: Value, reason: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let before = service.store().counts().expect("counts");
    assert_eq!(
        handle(&service, kind, &body, "m-1"),
        Seen::Invalid(ErrorCode::InvalidMessage, reason.to_owned()),
        "{body}"
    );
    assert_eq!(service.store().counts().expect("counts"), before, "{body}");
    let key = message_key(kind, Some("m-1"), b"");
    assert!(
        service
            .store()
            .processed(kind, &key)
            .expect("reads")
            .is_none(),
        "{body}"
    );
}

fn connected(payload: Value) -> Value {
    let mut body = json!({"clientId": "acme", "endUserId": "u1", "scope": "read"});
    if let (Value::Object(body), Value::Object(payload)) = (&mut body, payload) {
        body.extend(payload);
    }
    body
}

fn account() -> Value {
    json!({"account": {"accountId": "cb-1"}, "accessToken": "raw-access"})
}

#[test]
fn integration_connected_with_neither_access_token_nor_delayed_auth_is_invalid_message() {
    assert_missing(
        MessageKind::IntegrationConnected,
        connected(json!({})),
        "missing field `accessToken` (or `delayedAuth`)",
    );
}

#[test]
fn an_access_token_payload_without_account_tokens_is_invalid_message() {
    assert_missing(
        MessageKind::IntegrationConnected,
        connected(json!({"accessToken": {"brokerType": "coinbase"}})),
        "missing field `accessToken.accountTokens`",
    );
}

#[test]
fn a_missing_field_is_invalid_message_even_where_a_value_breaks_a_rule_too() {
    // The shape is judged before the values: an empty clientId does not
    // turn a missing field into invalid_request.
    let mut body = connected(json!({"accessToken": {"brokerType": "coinbase"}}));
    body["clientId"] = json!("");
    assert_missing(
        MessageKind::IntegrationConnected,
        body,
        "missing field `accessToken.accountTokens`",
    );
    let mut body = connected(json!({}));
    body["endUserId"] = json!("");
    assert_missing(
        MessageKind::IntegrationConnected,
        body,
        "missing field `accessToken` (or `delayedAuth`)",
    );
}

#[test]
fn account_tokens_given_as_null_is_invalid_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let body = connected(json!({"accessToken": {"brokerType": "coinbase", "accountTokens": null}}));
    match handle(&service, MessageKind::IntegrationConnected, &body, "m-1") {
        Seen::Invalid(ErrorCode::InvalidMessage, reason) => assert!(
            reason.starts_with("invalid type at `accessToken.accountTokens`: expected an array"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wallet_may_leave_account_tokens_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let body = connected(json!({"accessToken": {"brokerType": "deFiWallet"}}));
    match handle(&service, MessageKind::IntegrationConnected, &body, "m-1") {
        Seen::Ok(reply) => assert_eq!(reply["wallet"], true, "{reply}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn values_that_break_a_rule_stay_invalid_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let cases = [
        (
            connected(json!({"accessToken": {"brokerType": "coinbase", "accountTokens": []}})),
            "accessToken.accountTokens is empty: nothing to store",
        ),
        (
            connected(json!({
                "accessToken": {"brokerType": "coinbase", "accountTokens": [account()]},
                "delayedAuth": {"brokerType": "coinbase", "refreshToken": "raw-refresh"},
            })),
            "give accessToken or delayedAuth, not both",
        ),
    ];
    for (i, (body, reason)) in cases.into_iter().enumerate() {
        assert_eq!(
            handle(
                &service,
                MessageKind::IntegrationConnected,
                &body,
                &format!("m-{i}")
            ),
            Seen::Invalid(ErrorCode::InvalidRequest, reason.to_owned()),
            "{body}"
        );
    }
}

/// Every field of a good body of each message, one removed at a time: the
/// message stays good (an optional field) or is `invalid_message` (a
/// required one), never any other code; and exactly the required fields
/// are refused.
#[test]
fn every_field_of_every_message_when_missing_is_optional_or_invalid_message() {
    let access = connected(json!({"accessToken": {
        "brokerType": "coinbase", "brokerName": "Coinbase",
        "accountTokens": [{
            "account": {"accountId": "cb-1", "accountName": "Main"},
            "accessToken": "raw-access", "refreshToken": "raw-refresh"
        }],
        "expiresInSeconds": 60, "refreshTokenExpiresInSeconds": 600
    }}));
    let delayed = connected(json!({"delayedAuth": {
        "brokerType": "coinbase", "brokerName": "Coinbase",
        "refreshToken": "raw-refresh", "refreshTokenExpiresInSeconds": 600
    }}));
    let cases: [(MessageKind, Value, &[&str]); 5] = [
        (
            MessageKind::IntegrationConnected,
            access,
            &[
                "/clientId",
                "/endUserId",
                "/scope",
                "/accessToken",
                "/accessToken/brokerType",
                "/accessToken/accountTokens",
                "/accessToken/accountTokens/0/account",
                "/accessToken/accountTokens/0/account/accountId",
                "/accessToken/accountTokens/0/accessToken",
            ],
        ),
        (
            MessageKind::IntegrationConnected,
            delayed,
            &[
                "/clientId",
                "/endUserId",
                "/scope",
                "/delayedAuth",
                "/delayedAuth/brokerType",
                "/delayedAuth/refreshToken",
            ],
        ),
        (
            MessageKind::ConnectionRemoved,
            json!({"clientId": "acme", "tokenId": "tok_x"}),
            &["/clientId", "/tokenId"],
        ),
        (
            MessageKind::TokenResolve,
            json!({"clientId": "acme", "tokenId": "tok_x", "operation": "read"}),
            &["/clientId", "/tokenId", "/operation"],
        ),
        (
            MessageKind::LinkAccessTokens,
            json!({"clientId": "acme", "endUserId": "u1", "scope": "read"}),
            &["/clientId", "/endUserId"],
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let service = service(dir.path());
    let mut n = 0;
    for (kind, good, required) in cases {
        n += 1;
        assert!(
            matches!(
                handle(&service, kind, &good, &format!("good-{n}")),
                Seen::Ok(_) | Seen::Refusal(_)
            ),
            "{good}"
        );
        let mut pointers = Vec::new();
        every_pointer(&good, "", &mut pointers);
        for pointer in pointers {
            let Some((parent, name)) = pointer.rsplit_once('/') else {
                continue;
            };
            let mut without = good.clone();
            match without.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(name);
                }
                _ => continue,
            }
            n += 1;
            let seen = handle(&service, kind, &without, &format!("m-{n}"));
            if required.contains(&pointer.as_str()) {
                match &seen {
                    Seen::Invalid(ErrorCode::InvalidMessage, reason) => {
                        assert!(reason.starts_with("missing field `"), "{pointer}: {reason}")
                    }
                    other => panic!("{pointer} of {good}: {other:?}"),
                }
            } else {
                assert!(
                    matches!(seen, Seen::Ok(_) | Seen::Refusal(_)),
                    "{pointer} of {good}: {seen:?}"
                );
            }
        }
    }
}

/// The JSON pointer of every value under `value`.
fn every_pointer(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let pointer = format!("{at}/{key}");
                out.push(pointer.clone());
                every_pointer(child, &pointer, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let pointer = format!("{at}/{i}");
                out.push(pointer.clone());
                every_pointer(child, &pointer, out);
            }
        }
        _ => {}
    }
}
