//! Broker connection options (CONTRACT.md §8) and the topology names a
//! namespace yields (CONTRACT.md §3).

use clap::Args;

use crate::broker::{Broker, ConnectError, TlsArgs, redact};
use crate::wire::MessageKind;

/// The default broker URL.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How to reach the broker, for every mmt binary. Its `Debug` shows the URL
/// redacted.
#[derive(Clone, Args)]
pub struct BrokerArgs {
    /// AMQP URL of the broker, amqp:// or amqps:// (it may hold a password:
    /// it is never logged).
    #[arg(long, env = "MMT_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true)]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "MMT_NAMESPACE", default_value = "mmt", value_parser = parse_namespace)]
    pub namespace: Namespace,
    /// TLS for amqps:// URLs.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl std::fmt::Debug for BrokerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerArgs")
            .field("amqp_url", &redact(&self.amqp_url))
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .finish()
    }
}

impl BrokerArgs {
    /// `amqp_url` and `namespace`, without TLS options.
    pub fn new(amqp_url: String, namespace: Namespace) -> Self {
        Self {
            amqp_url,
            namespace,
            tls: TlsArgs::default(),
        }
    }

    /// The broker these options name, ready to connect to.
    pub fn broker(&self) -> Result<Broker, ConnectError> {
        Broker::new(&self.amqp_url, &self.tls)
    }
}

/// A validated namespace: 1 to 100 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace(String);

/// Why a namespace was refused.
#[derive(Debug, thiserror::Error)]
#[error("namespace {0:?} must be 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
pub struct BadNamespace(String);

fn parse_namespace(text: &str) -> Result<Namespace, BadNamespace> {
    Namespace::new(text)
}

impl Namespace {
    /// Validates `text` as a namespace.
    pub fn new(text: &str) -> Result<Self, BadNamespace> {
        let valid = !text.is_empty()
            && text.len() <= 100
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(BadNamespace(text.to_owned()))
        }
    }

    /// The namespace itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `NS.in`: the topic exchange publishers send to.
    pub fn inbound_exchange(&self) -> String {
        format!("{}.in", self.0)
    }

    /// `NS.events`: the topic exchange of outcomes.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.0)
    }

    /// `NS.dead`: the fanout exchange of dead letters (and its queue's name).
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.0)
    }

    /// `NS.dead`: the queue holding what could not be processed.
    pub fn dead_queue(&self) -> String {
        self.dead_exchange()
    }

    /// `NS.<routing key>`: the queue of a message kind.
    pub fn queue(&self, kind: MessageKind) -> String {
        format!("{}.{}", self.0, kind.routing_key())
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let ns = Namespace::new("mmt").expect("valid");
        assert_eq!(ns.inbound_exchange(), "mmt.in");
        assert_eq!(ns.events_exchange(), "mmt.events");
        assert_eq!(ns.dead_exchange(), "mmt.dead");
        assert_eq!(
            ns.queue(MessageKind::LinkAccessTokens),
            "mmt.link.access_tokens"
        );
    }

    #[test]
    fn odd_namespaces_are_refused() {
        for bad in ["", "a b", "x/y", &"n".repeat(101)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
    }
}
