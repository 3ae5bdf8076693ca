//! Unit tests of the bad-input reasons: every field of every message, with
//! hostile values that must never reach a reason.

use serde_json::json;

use mmt_shared::wire::{ConnectionRemoved, IntegrationConnected, LinkAccessTokens, TokenResolve};
use serde_json::Value;

use super::shapes::{Message, Shape};
use super::*;

/// What the hostile values below carry: none of it may reach a reason.
const MARKERS: [&str; 3] = ["SECRET-TAIL", "98765432123456789", "1234.5678"];

/// A body of `shape` that decodes.
fn sample(shape: Shape) -> Value {
    match shape {
        Shape::Text => json!("v"),
        Shape::Choice(names) => json!(names[0]),
        Shape::Count => json!(60),
        Shape::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|f| (f.names[0].to_owned(), sample(f.shape)))
                .collect(),
        ),
        Shape::List(item) => json!([sample(*item)]),
        Shape::Nullable(inner) => sample(*inner),
    }
}

/// Every field of `shape`: (JSON pointer, printed path, its shape).
fn fields(shape: Shape, pointer: &str, place: &str, out: &mut Vec<(String, String, Shape)>) {
    match unwrap_nullable(shape) {
        Shape::Object(list) => {
            for f in list {
                let name = f.names[0];
                let place = if place.is_empty() {
                    name.to_owned()
                } else {
                    format!("{place}.{name}")
                };
                let pointer = format!("{pointer}/{name}");
                out.push((pointer.clone(), place.clone(), f.shape));
                fields(f.shape, &pointer, &place, out);
            }
        }
        Shape::List(item) => {
            let pointer = format!("{pointer}/0");
            let place = format!("{place}[0]");
            out.push((pointer.clone(), place.clone(), *item));
            fields(*item, &pointer, &place, out);
        }
        _ => {}
    }
}

/// Values of every JSON kind, each carrying a marker: quotes,
/// backslashes, control characters, non-ASCII, numbers.
fn hostile() -> Vec<Value> {
    vec![
        json!("raw\"SECRET-TAIL-XYZ"),
        json!("raw\\\"SECRET-TAIL\\"),
        json!("\u{1}\n\tSECRET-TAIL\u{7f}"),
        json!("é\u{2028}`SECRET-TAIL`'"),
        json!(98765432123456789u64),
        json!(-98765432123456789i64),
        json!(1234.5678),
        json!(true),
        json!(null),
        json!(["SECRET-TAIL", 98765432123456789u64]),
        json!({"SECRET-TAIL": "raw\"SECRET-TAIL"}),
    ]
}

/// Whether `value` is a good `shape` (then it is not a hostile case).
fn fits(shape: Shape, value: &Value) -> bool {
    match (shape, value) {
        (Shape::Nullable(_), Value::Null) => true,
        (Shape::Nullable(inner), value) => fits(*inner, value),
        (Shape::Choice(names), Value::String(s)) => names.contains(&s.as_str()),
        (Shape::Count, value) => value.as_u64().is_some(),
        (shape, value) => kind_fits(shape, value),
    }
}

fn reason_of<T: Message>(body: &[u8]) -> String {
    match parse::<T>(body).message {
        Ok(_) => panic!("{} decoded", String::from_utf8_lossy(body)),
        Err(reason) => reason,
    }
}

fn assert_clean(reason: &str) {
    for marker in MARKERS {
        assert!(!reason.contains(marker), "{marker} in {reason}");
    }
}

/// Every field of `T` mistyped with every hostile value: refused, the
/// reason names the field and quotes none of the value.
fn every_field_refused_without_its_value<T: Message>() {
    let good = sample(T::SHAPE);
    let body = serde_json::to_vec(&good).expect("json");
    assert!(parse::<T>(&body).message.is_ok(), "the sample must decode");
    let mut all = Vec::new();
    fields(T::SHAPE, "", "", &mut all);
    assert!(!all.is_empty());
    for (pointer, place, shape) in all {
        for value in hostile().into_iter().filter(|v| !fits(shape, v)) {
            let mut bad = good.clone();
            *bad.pointer_mut(&pointer).expect("sample has the field") = value.clone();
            let body = serde_json::to_vec(&bad).expect("json");
            let reason = reason_of::<T>(&body);
            assert_clean(&reason);
            assert!(
                reason.contains(&format!("`{place}`")),
                "{value} at {place}: {reason}"
            );
        }
    }
}

/// The shape's required fields are exactly the type's: without one the
/// body is refused naming it, without any other it still decodes.
fn required_fields_agree_with_the_type<T: Message>() {
    let good = sample(T::SHAPE);
    let mut all = Vec::new();
    fields(T::SHAPE, "", "", &mut all);
    for (pointer, place, _) in all {
        let Some((parent, name)) = pointer.rsplit_once('/') else {
            continue;
        };
        let mut without = good.clone();
        let Some(Value::Object(map)) = without.pointer_mut(parent) else {
            continue;
        };
        map.remove(name);
        let required = match good.pointer(parent) {
            Some(Value::Object(_)) => {
                required_at(T::SHAPE, &pointer).unwrap_or_else(|| panic!("{pointer}"))
            }
            _ => continue,
        };
        let body = serde_json::to_vec(&without).expect("json");
        match parse::<T>(&body).message {
            Ok(_) => assert!(!required, "{place} is required by the shape only"),
            Err(reason) => {
                assert!(required, "{place} is required by the type only: {reason}");
                assert!(
                    reason.starts_with(&format!("missing field `{place}`")),
                    "{reason}"
                );
            }
        }
    }
}

/// Whether the field at `pointer` (object fields only) is required.
fn required_at(shape: Shape, pointer: &str) -> Option<bool> {
    let mut shape = shape;
    let mut required = None;
    for part in pointer.split('/').skip(1) {
        match unwrap_nullable(shape) {
            Shape::Object(list) => {
                let field = list.iter().find(|f| f.names[0] == part)?;
                required = Some(field.required);
                shape = field.shape;
            }
            Shape::List(item) => {
                required = None;
                shape = *item;
            }
            _ => return None,
        }
    }
    required
}

#[test]
fn required_fields_of_every_message_agree_with_the_wire_types() {
    required_fields_agree_with_the_type::<IntegrationConnected>();
    required_fields_agree_with_the_type::<ConnectionRemoved>();
    required_fields_agree_with_the_type::<TokenResolve>();
    required_fields_agree_with_the_type::<LinkAccessTokens>();
}

#[test]
fn every_mistyped_field_of_integration_connected_is_named_and_never_quoted() {
    every_field_refused_without_its_value::<IntegrationConnected>();
}

#[test]
fn every_mistyped_field_of_connection_removed_is_named_and_never_quoted() {
    every_field_refused_without_its_value::<ConnectionRemoved>();
}

#[test]
fn every_mistyped_field_of_token_resolve_is_named_and_never_quoted() {
    every_field_refused_without_its_value::<TokenResolve>();
}

#[test]
fn every_mistyped_field_of_link_access_tokens_is_named_and_never_quoted() {
    every_field_refused_without_its_value::<LinkAccessTokens>();
}

#[test]
fn a_unicode_escape_in_a_misplaced_value_is_not_decoded_into_the_reason() {
    let body = br#"{"clientId":"a","tokenId":"t","operation":"\u0053ECRET-TAIL"}"#;
    let reason = reason_of::<TokenResolve>(body);
    assert_clean(&reason);
    assert!(
        reason.contains("unknown variant at `operation`: expected `read` or `write`"),
        "{reason}"
    );
}

#[test]
fn every_missing_required_field_is_named() {
    let body = br#"{"clientId":"acme","scope":"read","accessToken":{"brokerType":"x"}}"#;
    assert!(reason_of::<IntegrationConnected>(body).contains("missing field `endUserId`"));
    let body = br#"{"clientId":"a","endUserId":"u","scope":"read","accessToken":{}}"#;
    assert!(
        reason_of::<IntegrationConnected>(body).contains("missing field `accessToken.brokerType`")
    );
    let body = br#"{"clientId":"a"}"#;
    assert!(reason_of::<ConnectionRemoved>(body).contains("missing field `tokenId`"));
}

#[test]
fn what_is_not_json_says_where_and_never_what() {
    let reason = reason_of::<LinkAccessTokens>(b"{\"clientId\": \"SECRET-TAIL");
    assert_eq!(
        reason,
        "body is not valid JSON: it ends too early (line 1, column 25)"
    );
    let reason = reason_of::<LinkAccessTokens>(b"clientId=SECRET-TAIL");
    assert!(
        reason.starts_with("body is not valid JSON (line 1"),
        "{reason}"
    );
    let reason = reason_of::<LinkAccessTokens>(br#"{"clientId":"a","endUserId":"u"} SECRET"#);
    assert!(reason.starts_with("body is not valid JSON"), "{reason}");
    assert_clean(&reason);
}

#[test]
fn a_body_that_is_not_an_object_is_refused_as_such() {
    for body in [
        &br#"["acme","u"]"#[..],
        b"\"SECRET-TAIL\"",
        b"98765432123456789",
    ] {
        assert_eq!(
            reason_of::<LinkAccessTokens>(body),
            "body must be a JSON object"
        );
    }
}

#[test]
fn a_body_that_is_not_utf8_is_not_json_even_in_a_field_that_is_ignored() {
    // serde_json skips an ignored field's string without checking it: the
    // body would decode as a link.access_tokens (found by the property
    // tests in `props`).
    let mut body = br#"{"clientId":"a","endUserId":"u","note":"SECRET-TAIL?"}"#.to_vec();
    let at = body.iter().position(|b| *b == b'?').expect("a ?");
    body[at] = 0x80;
    let reason = reason_of::<LinkAccessTokens>(&body);
    assert_eq!(
        reason,
        format!("body is not valid UTF-8 (line 1, column {})", at + 1)
    );
    let body = b"{\n\"clientId\":\"a\",\n\"endUserId\":\"\xff\"}";
    assert_eq!(
        reason_of::<LinkAccessTokens>(body),
        "body is not valid UTF-8 (line 3, column 14)"
    );
}
