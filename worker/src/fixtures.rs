//! Fixture files and their replay through the broker.
//!
//! A fixture file holds one message or one scenario (`{"description", "steps":
//! [...]}`); a message and a step have the same shape:
//!
//! ```json
//! { "name": "connect", "routingKey": "integration.connected",
//!   "messageId": "fx-1", "ageSeconds": 7200, "reply": true,
//!   "body": { ... } , "expect": { "ok": true } }
//! ```
//!
//! `rawBody` (a string sent as is) replaces `body` for malformed input.
//! `ageSeconds` sets the `timestamp` property that far in the past. `${run}`
//! inside any string becomes an id unique to this replay, so a scenario can be
//! replayed again into the same worker and still mean what it says. A string
//! `"${connect.tokens.0.tokenId}"` anywhere in a body, message id or
//! expectation is replaced by that field of the reply of the step named
//! `connect`. An expectation is matched as a subset of the reply: objects
//! need only the keys listed, arrays match element by element, `{"$ne": X}`
//! matches anything but X and `{"$present": true}` anything at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use mmt_shared::config::Namespace;
use serde::Deserialize;
use serde_json::Value;

/// RabbitMQ's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// What can go wrong reading or replaying fixtures.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a fixture.
    #[error("{path} is not a fixture")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A `${step.path}` names nothing.
    #[error("step {step}: {reference} names no earlier reply field")]
    Reference {
        /// The step.
        step: String,
        /// The reference.
        reference: String,
    },
    /// The broker link.
    #[error("broker")]
    Amqp(#[from] lapin::Error),
    /// The broker could not route the message.
    #[error(
        "step {step}: the broker could not route {routing_key} (is the worker's topology declared in this namespace?)"
    )]
    Unroutable {
        /// The step.
        step: String,
        /// Its routing key.
        routing_key: String,
    },
    /// The broker refused the message.
    #[error("step {step}: the broker refused the message")]
    Refused {
        /// The step.
        step: String,
    },
    /// No reply came in time.
    #[error("step {step}: no reply within {timeout:?} (is the worker running?)")]
    NoReply {
        /// The step.
        step: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// A reply was not JSON.
    #[error("step {step}: the reply is not JSON")]
    BadReply {
        /// The step.
        step: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// One message to publish (a message file, or a step of a scenario).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// The name later steps use to refer to this step's reply.
    #[serde(default)]
    pub name: Option<String>,
    /// What the step shows, for people.
    #[serde(default)]
    pub note: Option<String>,
    /// The routing key on `NS.in`.
    pub routing_key: String,
    /// The `message_id` property.
    #[serde(default)]
    pub message_id: Option<String>,
    /// The JSON body.
    #[serde(default)]
    pub body: Option<Value>,
    /// A body sent byte for byte (for malformed input).
    #[serde(default)]
    pub raw_body: Option<String>,
    /// The `timestamp` property, this many seconds ago.
    #[serde(default)]
    pub age_seconds: Option<u64>,
    /// Whether to wait for a reply (default: true).
    #[serde(default)]
    pub reply: Option<bool>,
    /// What the reply must contain.
    #[serde(default)]
    pub expect: Option<Value>,
}

impl Step {
    /// A step sending `body` on `routing_key` and waiting for the reply.
    pub fn new(routing_key: &str, body: Value) -> Self {
        Self {
            name: None,
            note: None,
            routing_key: routing_key.to_owned(),
            message_id: None,
            body: Some(body),
            raw_body: None,
            age_seconds: None,
            reply: None,
            expect: None,
        }
    }
}

/// A scenario: steps replayed in order, each with its expected reply.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows.
    pub description: String,
    /// The steps.
    pub steps: Vec<Step>,
}

/// Reads a fixture file: a scenario, or a single message as a one-step
/// scenario.
pub fn load(path: &Path) -> Result<Scenario, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |source| FixtureError::Parse {
        path: path.to_owned(),
        source,
    };
    let value: Value = serde_json::from_str(&text).map_err(parse_error)?;
    if value.get("steps").is_some() {
        serde_json::from_value(value).map_err(parse_error)
    } else {
        let step: Step = serde_json::from_value(value).map_err(parse_error)?;
        Ok(Scenario {
            description: step
                .note
                .clone()
                .unwrap_or_else(|| path.display().to_string()),
            steps: vec![step],
        })
    }
}

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// The step's name (or its position).
    pub name: String,
    /// Its routing key.
    pub routing_key: String,
    /// The reply, if one was asked for.
    pub reply: Option<Value>,
    /// Why the reply did not match the expectation, if it did not.
    pub mismatch: Option<String>,
}

/// Publishes with confirms and `mandatory`, and reads replies through direct
/// reply-to.
pub struct Publisher {
    channel: Channel,
    replies: Consumer,
    exchange: String,
    timeout: Duration,
    next_correlation: u64,
    run_id: String,
    replays: u64,
}

impl Publisher {
    /// Opens a channel on `connection` for `namespace`; `${run}` in a
    /// scenario becomes `run_id` and the scenario's number in this replay.
    pub async fn new(
        connection: &Connection,
        namespace: &Namespace,
        timeout: Duration,
        run_id: String,
    ) -> Result<Self, FixtureError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            channel,
            replies,
            exchange: namespace.inbound_exchange(),
            timeout,
            next_correlation: 0,
            run_id,
            replays: 0,
        })
    }

    /// Publishes one step (already substituted) and waits for its reply when
    /// it asks for one.
    pub async fn send(&mut self, label: &str, step: &Step) -> Result<Option<Value>, FixtureError> {
        let body = match (&step.raw_body, &step.body) {
            (Some(raw), _) => raw.clone().into_bytes(),
            (None, Some(body)) => body.to_string().into_bytes(),
            (None, None) => Vec::new(),
        };
        let want_reply = step.reply.unwrap_or(true);
        self.next_correlation += 1;
        let correlation_id = format!("mmt-publish-{}", self.next_correlation);
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Some(id) = &step.message_id {
            properties = properties.with_message_id(id.as_str().into());
        }
        if let Some(age) = step.age_seconds {
            let now = u64::try_from(mmt_shared::time_fmt::now_millis() / 1000).unwrap_or(0);
            properties = properties.with_timestamp(now.saturating_sub(age));
        }
        if want_reply {
            properties = properties
                .with_reply_to(DIRECT_REPLY_TO.into())
                .with_correlation_id(correlation_id.as_str().into());
        }
        let confirmation = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                step.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(_)) => {
                return Err(FixtureError::Unroutable {
                    step: label.to_owned(),
                    routing_key: step.routing_key.clone(),
                });
            }
            Confirmation::Nack(_) => {
                return Err(FixtureError::Refused {
                    step: label.to_owned(),
                });
            }
        }
        if !want_reply {
            return Ok(None);
        }
        let wait = async {
            while let Some(delivery) = self.replies.next().await {
                let delivery = delivery?;
                let matches = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .is_some_and(|c| c.as_str() == correlation_id);
                if matches {
                    return Ok(Some(delivery.data));
                }
            }
            Ok::<_, FixtureError>(None)
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(Some(data))) => {
                serde_json::from_slice(&data)
                    .map(Some)
                    .map_err(|source| FixtureError::BadReply {
                        step: label.to_owned(),
                        source,
                    })
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) | Err(_) => Err(FixtureError::NoReply {
                step: label.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// Replays a scenario, step by step, checking each expectation.
    pub async fn run(&mut self, scenario: &Scenario) -> Result<Vec<StepReport>, FixtureError> {
        self.replays += 1;
        let run_id = format!("{}-{}", self.run_id, self.replays);
        let mut replies: HashMap<String, Value> = HashMap::new();
        let mut reports = Vec::with_capacity(scenario.steps.len());
        for (index, step) in scenario.steps.iter().enumerate() {
            let label = step
                .name
                .clone()
                .unwrap_or_else(|| format!("step {}", index + 1));
            let mut step = step.clone();
            let run_id = run_id.as_str();
            let resolve = |value: &mut Value| substitute(value, &replies, run_id, &label);
            if let Some(body) = step.body.as_mut() {
                resolve(body)?;
            }
            if let Some(id) = step.message_id.take() {
                let mut value = Value::String(id);
                resolve(&mut value)?;
                step.message_id = Some(
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                );
            }
            let reply = self.send(&label, &step).await?;
            if let (Some(name), Some(reply)) = (&step.name, &reply) {
                replies.insert(name.clone(), reply.clone());
            }
            let mismatch = match (step.expect.as_mut(), &reply) {
                (Some(expect), Some(reply)) => {
                    substitute(expect, &replies, run_id, &label)?;
                    matches(expect, reply, "reply").err()
                }
                (Some(_), None) => Some("an expectation needs a reply".to_owned()),
                _ => None,
            };
            reports.push(StepReport {
                name: label,
                routing_key: step.routing_key.clone(),
                reply,
                mismatch,
            });
        }
        Ok(reports)
    }
}

/// `step.a.0.b`: field `a`, item 0, field `b` of the reply of `step` (a JSON
/// pointer once the dots are slashes).
fn lookup<'a>(replies: &'a HashMap<String, Value>, reference: &str) -> Option<&'a Value> {
    let (step, path) = reference.split_once('.').unwrap_or((reference, ""));
    let pointer: String = path
        .split('.')
        .filter(|part| !part.is_empty())
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect();
    replies.get(step)?.pointer(&pointer)
}

fn substitute(
    value: &mut Value,
    replies: &HashMap<String, Value>,
    run_id: &str,
    step: &str,
) -> Result<(), FixtureError> {
    match value {
        Value::String(text) => {
            if text.contains("${run}") {
                *text = text.replace("${run}", run_id);
            }
            if let Some(reference) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
                let found = lookup(replies, reference).ok_or_else(|| FixtureError::Reference {
                    step: step.to_owned(),
                    reference: reference.to_owned(),
                })?;
                *value = found.clone();
            }
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, replies, run_id, step)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                substitute(item, replies, run_id, step)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `actual` contains `expected` (see the module documentation).
pub fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match expected {
        Value::Object(map) if map.len() == 1 && map.contains_key("$ne") => {
            if Some(actual) == map.get("$ne") {
                Err(format!("{path}: expected anything but {actual}"))
            } else {
                Ok(())
            }
        }
        Value::Object(map) if map.len() == 1 && map.contains_key("$present") => Ok(()),
        Value::Object(map) => {
            let Value::Object(actual_map) = actual else {
                return Err(format!("{path}: expected an object, got {actual}"));
            };
            for (key, want) in map {
                let Some(got) = actual_map.get(key) else {
                    return Err(format!("{path}.{key}: missing"));
                };
                matches(want, got, &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let Value::Array(actual_items) = actual else {
                return Err(format!("{path}: expected an array, got {actual}"));
            };
            if items.len() != actual_items.len() {
                return Err(format!(
                    "{path}: expected {} elements, got {}",
                    items.len(),
                    actual_items.len()
                ));
            }
            for (i, (want, got)) in items.iter().zip(actual_items).enumerate() {
                matches(want, got, &format!("{path}.{i}"))?;
            }
            Ok(())
        }
        scalar if scalar == actual => Ok(()),
        scalar => Err(format!("{path}: expected {scalar}, got {actual}")),
    }
}

/// The reply as printed for people: the raw token of a `token.resolve`
/// reply is replaced by its length.
pub fn redacted(routing_key: &str, reply: &Value) -> Value {
    let mut shown = reply.clone();
    if let (true, Some(token)) = (routing_key == "token.resolve", shown.get_mut("accessToken")) {
        let len = token.as_str().map_or(0, str::len);
        *token = Value::String(format!("<redacted, {len} bytes>"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subset_matching_with_ne_and_present() {
        let actual = json!({"ok": true, "tokens": [{"tokenId": "a", "created": true}], "x": 1});
        assert!(matches(&json!({"ok": true}), &actual, "r").is_ok());
        assert!(matches(&json!({"tokens": [{"created": true}]}), &actual, "r").is_ok());
        assert!(
            matches(
                &json!({"tokens": [{"tokenId": {"$ne": "b"}}]}),
                &actual,
                "r"
            )
            .is_ok()
        );
        assert!(
            matches(
                &json!({"tokens": [{"tokenId": {"$ne": "a"}}]}),
                &actual,
                "r"
            )
            .is_err()
        );
        assert!(matches(&json!({"x": {"$present": true}}), &actual, "r").is_ok());
        assert!(matches(&json!({"y": {"$present": true}}), &actual, "r").is_err());
        assert!(matches(&json!({"tokens": []}), &actual, "r").is_err());
        assert!(matches(&json!({"ok": false}), &actual, "r").is_err());
    }

    #[test]
    fn references_take_fields_of_earlier_replies() {
        let mut replies = HashMap::new();
        replies.insert("c".to_owned(), json!({"tokens": [{"tokenId": "tok_1"}]}));
        let mut body =
            json!({"tokenId": "${c.tokens.0.tokenId}", "keep": "$x", "user": "u-${run}"});
        substitute(&mut body, &replies, "r1", "s").expect("resolves");
        assert_eq!(
            body,
            json!({"tokenId": "tok_1", "keep": "$x", "user": "u-r1"})
        );
        let mut bad = json!("${c.tokens.1.tokenId}");
        assert!(substitute(&mut bad, &replies, "r1", "s").is_err());
        let mut whole = json!("${c}");
        substitute(&mut whole, &replies, "r1", "s").expect("resolves");
        assert_eq!(whole, replies["c"]);
    }

    #[test]
    fn resolve_replies_are_redacted_for_printing() {
        let reply = json!({"ok": true, "accessToken": "raw-secret"});
        let shown = redacted("token.resolve", &reply);
        assert_eq!(shown["accessToken"], json!("<redacted, 10 bytes>"));
        assert_eq!(redacted("link.access_tokens", &reply), reply);
    }
}
