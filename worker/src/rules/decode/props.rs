//! Property tests of [`parse`] for the four inbound messages: any bytes,
//! any JSON object built from the messages' own field names with hostile
//! values, and good bodies with bytes changed. Never a panic; a body is a
//! message exactly when serde reads its text as one; the claim always names the
//! clientId the body gives; and a reason never quotes a value.

use mmt_shared::wire::{
    ConnectionRemoved, IntegrationConnected, LinkAccessTokens, MAX_BODY_BYTES, TokenResolve,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use super::{Message, parse};

/// What hostile values carry; none of it may reach a reason.
const MARKERS: [&str; 4] = ["SECRET", "98765432123456789", "1234.5678", "4.2e-7"];

/// The field names of the four messages (and aliases), so that generated
/// objects reach deep into the shapes.
const FIELDS: &[&str] = &[
    "clientId",
    "endUserId",
    "scope",
    "accessToken",
    "delayedAuth",
    "brokerType",
    "brokerName",
    "accountTokens",
    "account",
    "accountId",
    "accountName",
    "refreshToken",
    "expiresInSeconds",
    "refreshTokenExpiresInSeconds",
    "tokenId",
    "authToken",
    "operation",
];

/// A string that carries a marker, with quotes, escapes, control and
/// non-ASCII characters around it.
fn hostile_text() -> impl Strategy<Value = String> {
    (
        "[a-z]{0,4}",
        prop::sample::select(vec!["\"", "\\", "\u{1}", "é", "\u{2028}", "`", ""]),
    )
        .prop_map(|(head, odd)| format!("{head}{odd}SECRET-TAIL{odd}"))
}

/// A leaf value: often one the shapes accept, often a hostile one.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..100_000).prop_map(Value::from),
        Just(json!(98765432123456789u64)),
        Just(json!(-98765432123456789i64)),
        Just(json!(1234.5678)),
        Just(json!(4.2e-7)),
        prop::sample::select(vec![
            "read",
            "write",
            "admin",
            "",
            "coinbase",
            "deFiWallet",
            "tok_x"
        ])
        .prop_map(Value::from),
        hostile_text().prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => "[a-zA-Z]{1,6}",
        1 => hostile_text(),
    ]
}

/// Any JSON value, nested up to four deep.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object body.
fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// Good bodies of each message, to change bytes of.
fn good_bodies() -> Vec<Vec<u8>> {
    [
        json!({"clientId": "acme", "endUserId": "u1", "scope": "read", "accessToken": {
            "brokerType": "coinbase", "brokerName": "Coinbase", "accountTokens": [{
                "account": {"accountId": "cb-1", "accountName": "Main"},
                "accessToken": "raw-SECRET-a", "refreshToken": "raw-SECRET-r"}],
            "expiresInSeconds": 60, "refreshTokenExpiresInSeconds": 600}}),
        json!({"clientId": "acme", "endUserId": "u1", "scope": "write", "delayedAuth": {
            "brokerType": "x", "refreshToken": "raw-SECRET-r"}}),
        json!({"clientId": "acme", "tokenId": "tok_1", "type": "coinbase"}),
        json!({"clientId": "acme", "authToken": "tok_1", "operation": "write"}),
        json!({"clientId": "acme", "endUserId": "u1", "scope": null}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap_or_default())
    .collect()
}

/// A structural change to a JSON value.
#[derive(Clone, Debug)]
enum Edit {
    /// Removes the value at a place (a field or an array item).
    Remove,
    /// Puts another value at a place.
    Replace(Value),
    /// Adds a field to the object at a place (replacing one of that name).
    Insert(String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Remove),
        value().prop_map(Edit::Replace),
        (key(), value()).prop_map(|(k, v)| Edit::Insert(k, v)),
    ]
}

/// The JSON pointer of every value under `value`, itself included.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Applies `edit` at the place `at` picks among every place of `body`.
/// (Field names with `/` or `~` are not escaped: such a place is missed,
/// and the body left as it is.)
fn apply(body: &mut Value, at: prop::sample::Index, edit: Edit) {
    let mut all = Vec::new();
    pointers(body, "", &mut all);
    let pointer = all.swap_remove(at.index(all.len()));
    match edit {
        Edit::Remove => {
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                return;
            };
            match body.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Edit::Replace(value) => {
            if let Some(place) = body.pointer_mut(&pointer) {
                *place = value;
            }
        }
        Edit::Insert(key, value) => {
            if let Some(Value::Object(map)) = body.pointer_mut(&pointer) {
                map.insert(key, value);
            }
        }
    }
}

/// One message kind's properties on `body`.
fn holds<T: Message>(body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = parse::<T>(body);
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // JSON is UTF-8 text: serde reads it from a `str`.
    let by_serde = std::str::from_utf8(body)
        .is_ok_and(|text| serde_json::from_str::<T>(text).is_ok())
        && is_object
        && body.len() <= MAX_BODY_BYTES;
    prop_assert_eq!(parsed.message.is_ok(), by_serde);
    let claimed = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("clientId").and_then(Value::as_str).map(str::to_owned));
    match &parsed.message {
        Ok(_) => prop_assert_eq!(&parsed.claim.client_id, &claimed),
        Err(reason) => {
            prop_assert!(!reason.is_empty());
            for marker in MARKERS {
                prop_assert!(!reason.contains(marker), "{} in {}", marker, reason);
            }
            if is_object && body.len() <= MAX_BODY_BYTES {
                prop_assert_eq!(&parsed.claim.client_id, &claimed);
            }
        }
    }
    Ok(())
}

fn all_kinds(body: &[u8]) -> Result<(), TestCaseError> {
    holds::<IntegrationConnected>(body)?;
    holds::<ConnectionRemoved>(body)?;
    holds::<TokenResolve>(body)?;
    holds::<LinkAccessTokens>(body)
}

proptest! {
    #[test]
    fn any_bytes_are_a_message_or_a_clean_reason(body in prop::collection::vec(any::<u8>(), 0..600)) {
        all_kinds(&body)?;
    }

    #[test]
    fn any_object_of_the_messages_fields_is_a_message_or_a_clean_reason(body in object()) {
        all_kinds(&serde_json::to_vec(&body).unwrap_or_default())?;
    }

    #[test]
    fn a_good_body_with_fields_removed_replaced_or_added_is_a_message_or_a_clean_reason(
        which in 0usize..5,
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..4),
    ) {
        let mut body: Value =
            serde_json::from_slice(&good_bodies().swap_remove(which)).unwrap_or_default();
        for (at, edit) in edits {
            apply(&mut body, at, edit);
        }
        all_kinds(&serde_json::to_vec(&body).unwrap_or_default())?;
    }

    #[test]
    fn a_good_body_with_bytes_changed_is_a_message_or_a_clean_reason(
        which in 0usize..5,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut body = good_bodies().swap_remove(which);
        for (at, byte) in edits {
            let at = at.index(body.len());
            body[at] = byte;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len()));
        }
        all_kinds(&body)?;
    }
}

#[test]
fn the_good_bodies_are_messages() {
    let bodies = good_bodies();
    assert!(parse::<IntegrationConnected>(&bodies[0]).message.is_ok());
    assert!(parse::<IntegrationConnected>(&bodies[1]).message.is_ok());
    assert!(parse::<ConnectionRemoved>(&bodies[2]).message.is_ok());
    assert!(parse::<TokenResolve>(&bodies[3]).message.is_ok());
    assert!(parse::<LinkAccessTokens>(&bodies[4]).message.is_ok());
}
