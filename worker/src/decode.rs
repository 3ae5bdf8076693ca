//! Decodes a message body, and says what is wrong with one that does not
//! decode. The reason leaves the process (reply, `x-mmt-error`, event, log),
//! so it is built from structure only: serde's error category, line and
//! column, the field path (`serde_path_to_error`), the JSON kind of the value
//! found there and the message's own shape. Never from serde's message text,
//! which quotes the input it failed on (a raw token in the wrong place).

use mmt_shared::wire::{ConnectionRemoved, IntegrationConnected, LinkAccessTokens, TokenResolve};
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::{Path, Segment};

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
    names: &'static [&'static str],
    shape: Shape,
    required: bool,
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
}

impl Message for IntegrationConnected {
    const SHAPE: Shape = CONNECTED;
}

impl Message for ConnectionRemoved {
    const SHAPE: Shape = REMOVED;
}

impl Message for TokenResolve {
    const SHAPE: Shape = RESOLVE;
}

impl Message for LinkAccessTokens {
    const SHAPE: Shape = LINK;
}

/// Decodes `body` as a `T`; `Err` is the reason, which never holds any part
/// of the body's values.
pub(crate) fn decode<T: Message>(body: &[u8]) -> Result<T, String> {
    // serde also reads a struct from an array: only an object is a message.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err("body must be a JSON object".to_owned()),
            Err(error) => Err(syntax(&error)),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => return Ok(value),
            Err(error) => return Err(syntax(&error)),
        },
        Err(error) => error,
    };
    let Ok(root) = serde_json::from_slice::<Value>(body) else {
        return Err(syntax(error.inner()));
    };
    if !root.is_object() {
        return Err("body must be a JSON object".to_owned());
    }
    Err(format!(
        "{} ({})",
        explain(T::SHAPE, &root, error.path()),
        position(error.inner())
    ))
}

fn position(error: &serde_json::Error) -> String {
    format!("line {}, column {}", error.line(), error.column())
}

/// A body that is not JSON: what kind of failure and where.
fn syntax(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "body is not valid JSON: it ends too early",
        serde_json::error::Category::Io => "body could not be read",
        serde_json::error::Category::Syntax | serde_json::error::Category::Data => {
            "body is not valid JSON"
        }
    };
    format!("{what} ({})", position(error))
}

/// Follows `path` through `shape` and `value` and says what is wrong where
/// it ends. Only the shape's own field names and array indices are printed.
fn explain(shape: Shape, root: &Value, path: &Path) -> String {
    let mut shape = shape;
    let mut value = Some(root);
    let mut place = String::new();
    for segment in path.iter() {
        let next = match (segment, unwrap_nullable(shape)) {
            (Segment::Map { key }, Shape::Object(fields)) => fields
                .iter()
                .find_map(|f| f.names.iter().find(|n| **n == key).map(|n| (f.shape, *n)))
                .map(|(field_shape, name)| {
                    if !place.is_empty() {
                        place.push('.');
                    }
                    place.push_str(name);
                    (field_shape, value.and_then(|v| v.get(name)))
                }),
            (Segment::Seq { index }, Shape::List(item)) => {
                place.push_str(&format!("[{index}]"));
                Some((*item, value.and_then(|v| v.get(*index))))
            }
            _ => None,
        };
        match next {
            Some((next_shape, next_value)) => {
                shape = next_shape;
                value = next_value;
            }
            None => break,
        }
    }
    match value {
        Some(value) => mismatch(shape, value, &place),
        None => format!("body does not match the message at `{place}`"),
    }
}

fn unwrap_nullable(shape: Shape) -> Shape {
    match shape {
        Shape::Nullable(inner) => *inner,
        other => other,
    }
}

/// What is wrong with `value` as a `shape`, at `place` (empty: the body).
fn mismatch(shape: Shape, value: &Value, place: &str) -> String {
    let at = if place.is_empty() {
        String::new()
    } else {
        format!(" at `{place}`")
    };
    let fits_kind = match (shape, value) {
        (Shape::Nullable(_), Value::Null) => true,
        (Shape::Nullable(inner), value) => kind_fits(*inner, value),
        (shape, value) => kind_fits(shape, value),
    };
    if !fits_kind {
        return format!(
            "invalid type{at}: expected {}, found {}",
            expected(shape),
            kind_of(value)
        );
    }
    match (unwrap_nullable(shape), value) {
        (inner @ Shape::Choice(_), Value::String(_)) => {
            format!("unknown variant{at}: expected {}", expected(inner))
        }
        (inner @ Shape::Count, Value::Number(_)) => {
            format!("invalid value{at}: expected {}", expected(inner))
        }
        (Shape::Object(fields), Value::Object(map)) => {
            match fields
                .iter()
                .find(|f| f.required && !f.names.iter().any(|n| map.contains_key(*n)))
                .and_then(|f| f.names.first())
            {
                Some(name) if place.is_empty() => format!("missing field `{name}`"),
                Some(name) => format!("missing field `{place}.{name}`"),
                None => format!("body does not match the message{at} (a field given twice?)"),
            }
        }
        _ => format!("body does not match the message{at}"),
    }
}

/// Whether `value` is of the JSON kind `shape` needs.
fn kind_fits(shape: Shape, value: &Value) -> bool {
    matches!(
        (shape, value),
        (Shape::Text | Shape::Choice(_), Value::String(_))
            | (Shape::Count, Value::Number(_))
            | (Shape::Object(_), Value::Object(_))
            | (Shape::List(_), Value::Array(_))
    )
}

/// What `shape` expects, in words.
fn expected(shape: Shape) -> String {
    match shape {
        Shape::Text => "a string".to_owned(),
        Shape::Choice(names) => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            match quoted.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => "nothing".to_owned(),
            }
        }
        Shape::Count => "a non-negative integer".to_owned(),
        Shape::Object(_) => "an object".to_owned(),
        Shape::List(_) => "an array".to_owned(),
        Shape::Nullable(inner) => format!("{} or null", expected(*inner)),
    }
}

/// The JSON kind of `value`: never the value.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        match decode::<T>(body) {
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
        assert!(decode::<T>(&body).is_ok(), "the sample must decode");
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
            match decode::<T>(&body) {
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
            reason_of::<IntegrationConnected>(body)
                .contains("missing field `accessToken.brokerType`")
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
}
