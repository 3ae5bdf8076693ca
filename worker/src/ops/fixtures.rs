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

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::amqp::rpc::DIRECT_REPLY_TO;

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

mod publisher;
mod template;

pub use publisher::{Publisher, StepReport};
pub use template::{matches, redacted};
