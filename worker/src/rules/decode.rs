//! Parses a message body once: into its message, or into the reason it is
//! not one; either way also into the [`Claim`] that the identity gate reads
//! (the clientId, and the operation a `token.resolve` asks for), so the gate
//! can refuse before anyone learns what the validator found. The reason
//! leaves the process (reply, `x-mmt-error`, event, log),
//! so it is built from structure only: serde's error category, line and
//! column, the field path (`serde_path_to_error`), the JSON kind of the value
//! found there and the message's own shape. Never from serde's message text,
//! which quotes the input it failed on (a raw token in the wrong place).

use mmt_shared::wire::{MAX_BODY_BYTES, Operation};
use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::{Path, Segment};

#[cfg(test)]
mod props;
mod shapes;
#[cfg(test)]
mod tests;

pub(crate) use shapes::Message;
use shapes::Shape;

/// What a body claims, read from the same parse as the message: the
/// clientId it acts for, and the operation a `token.resolve` asks for.
/// Both `None` when the body is not a JSON object or names neither as a
/// string (an unknown operation is `None` too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The `clientId`.
    pub client_id: Option<String>,
    /// The `operation`.
    pub operation: Option<Operation>,
}

/// A body, parsed once.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The message, or why the body is not one: a reason that never holds
    /// any part of the body's values.
    pub message: Result<T, String>,
    /// What the body claims, for the identity gate.
    pub claim: Claim,
}

/// Parses `body` as a `T`.
pub(crate) fn parse<T: Message>(body: &[u8]) -> Parsed<T> {
    if body.is_empty() {
        return Parsed::unclaimed("body is empty".to_owned());
    }
    if body.len() > MAX_BODY_BYTES {
        return Parsed::unclaimed(format!("body is larger than {MAX_BODY_BYTES} bytes"));
    }
    // JSON is UTF-8 (RFC 8259 §8.1), and serde_json skips the strings of
    // ignored fields without checking them: check the whole body first.
    if let Err(error) = std::str::from_utf8(body) {
        return Parsed::unclaimed(format!(
            "body is not valid UTF-8 ({})",
            offset_position(body, error.valid_up_to())
        ));
    }
    // serde also reads a struct from an array: only an object is a message.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Parsed::unclaimed(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => "body must be a JSON object".to_owned(),
                Err(error) => syntax(&error),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => {
                return Parsed {
                    claim: value.claim(),
                    message: Ok(value),
                };
            }
            Err(error) => return Parsed::unclaimed(syntax(&error)),
        },
        Err(error) => error,
    };
    // Not the message: the reason and the claim come from the body's JSON
    // value, read once for both.
    let Ok(root) = serde_json::from_slice::<Value>(body) else {
        return Parsed::unclaimed(syntax(error.inner()));
    };
    if !root.is_object() {
        return Parsed::unclaimed("body must be a JSON object".to_owned());
    }
    Parsed {
        message: Err(format!(
            "{} ({})",
            explain(T::SHAPE, &root, error.path()),
            position(error.inner())
        )),
        claim: Claim {
            client_id: root
                .get("clientId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            operation: root
                .get("operation")
                .and_then(|op| Operation::deserialize(op).ok()),
        },
    }
}

impl<T> Parsed<T> {
    fn unclaimed(reason: String) -> Self {
        Self {
            message: Err(reason),
            claim: Claim::default(),
        }
    }
}

fn position(error: &serde_json::Error) -> String {
    format!("line {}, column {}", error.line(), error.column())
}

/// Where byte `at` of `body` is, as serde_json counts: 1-based line, and
/// 1-based column in bytes.
fn offset_position(body: &[u8], at: usize) -> String {
    let before = body.get(..at).unwrap_or(body);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = match before.iter().rposition(|b| *b == b'\n') {
        Some(newline) => at - newline,
        None => at + 1,
    };
    format!("line {line}, column {column}")
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
